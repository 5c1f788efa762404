"""Small static charts as inline SVG strings (matplotlib, no pyplot, no global state).

Text stays text (``svg.fonttype = "none"``), mathtext is off (a ``$`` in a value name is just a
dollar), and matplotlib escapes every label it writes, so a hostile attribute value or item title
cannot become markup. The output is post-processed to be small and safe to inline many times in
one HTML page: no XML header, no metadata, no global ``<style>``, no namespace URLs, no
unreferenced ids, coordinates rounded to 0.1 pt, and every referenced id salted per chart.

Each function takes :class:`~recaudit.results.MetricRecord` objects of one variant (records of
several raise ValueError: a chart never mixes the original lists with a reranker's) and returns
``""`` when there is nothing to draw. The chart's ``data-variant`` attribute names its variant.
"""

from __future__ import annotations

import io
import math
import re
from typing import Any, Iterable, Sequence

from ._common import clean, one_variant, truncate

__all__ = ["value_bars", "aggregate_bars", "k_curves", "PALETTE"]

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000",
           "#F0E442")
_DASHES = ("-", "--", ":", "-.")
LABEL_CHARS = 38


def _rc(chart_id: str) -> dict[str, Any]:
    return {
        "svg.fonttype": "none",
        "svg.hashsalt": f"recaudit-{chart_id}",
        "svg.image_inline": True,
        "text.parse_math": False,
        "text.usetex": False,
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial"],
        "font.size": 8,
        "axes.titlesize": 9,
        "axes.labelsize": 8,
        "axes.edgecolor": "#888888",
        "axes.linewidth": 0.6,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "axes.axisbelow": True,
        "grid.color": "#e5e5e5",
        "grid.linewidth": 0.5,
        "xtick.color": "#444444",
        "ytick.color": "#444444",
        "xtick.major.width": 0.5,
        "ytick.major.width": 0.5,
        "legend.frameon": False,
        "legend.fontsize": 7,
        "path.simplify": True,
    }


def _figure(width: float, height: float, *, left: float, right: float, top: float,
            bottom: float):
    """Return a figure with fixed margins in inches (cheaper than a layout engine: one draw)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height,
                        bottom=bottom / height)
    return fig


def _text_width(labels: Iterable[str], size: float = 8.0) -> float:
    """Rough width in inches of the longest label at ``size`` pt (DejaVu Sans ~0.6 em/char)."""
    longest = max((len(s) for s in labels), default=0)
    return longest * size * 0.6 / 72


_NUM = re.compile(r"-?\d+\.\d+")
_GEOM_ATTR = re.compile(
    r'(\s(?:d|x|y|x1|x2|y1|y2|width|height|transform|points|cx|cy|r|rx|ry|viewBox)=")([^"]*)(")')


def _round(match: re.Match[str]) -> str:
    txt = f"{float(match.group(0)):.1f}"
    if txt.endswith(".0"):
        txt = txt[:-2]
    return "0" if txt == "-0" else txt


def _finish(fig: Any, chart_id: str, title: str, variant: str | None) -> str:
    from matplotlib import rc_context
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    buf = io.StringIO()
    FigureCanvasSVG(fig)
    with rc_context(_rc(chart_id)):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None,
                                                  "Type": None})
    return _postprocess(buf.getvalue(), chart_id, title, variant)


def _postprocess(svg: str, chart_id: str, title: str, variant: str | None = None) -> str:
    svg = re.sub(r"<\?xml[^>]*\?>\s*", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>\s*", "", svg)
    svg = re.sub(r"<!--.*?-->\s*", "", svg, flags=re.S)
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r"<style[^>]*>.*?</style>\s*", "", svg, flags=re.S)  # global CSS rules
    svg = re.sub(r"<defs>\s*</defs>\s*", "", svg)
    svg = re.sub(r'\s+xmlns(?::\w+)?="[^"]*"', "", svg)
    svg = re.sub(r'\s+version="[^"]*"', "", svg, count=1)
    # Ids: keep only the referenced ones (clip paths, markers), which the hash salt makes unique.
    used = set(re.findall(r'(?:href="#|url\(#)([^")]+)', svg))
    svg = re.sub(r'\s+id="([^"]*)"', lambda m: m.group(0) if m.group(1) in used else "", svg)
    svg = _GEOM_ATTR.sub(lambda m: m.group(1) + " ".join(_NUM.sub(_round, m.group(2)).split())
                         + m.group(3), svg)
    svg = re.sub(r">\s+<", "><", svg)
    m = re.match(r'<svg\b([^>]*)>', svg)
    if not m:  # pragma: no cover - matplotlib always writes an <svg> root
        return ""
    attrs = m.group(1)
    width = re.search(r'\swidth="([\d.]+)pt"', attrs)
    attrs = re.sub(r'\s(?:width|height)="[^"]*"', "", attrs)
    style = f' style="max-width:{width.group(1)}pt"' if width else ""
    from markupsafe import escape

    tag = f' data-variant="{escape(clean(variant))}"' if variant is not None else ""
    head = (f'<svg{attrs} class="chart" role="img" aria-label="{escape(clean(title))}"'
            f'{tag}{style}>')
    return head + svg[m.end():].strip()


def _ci_err(est: float, lo: float | None, hi: float | None) -> tuple[float, float]:
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 0.0
    return max(est - lo, 0.0), max(hi - est, 0.0)


def _bars(rows: Sequence[tuple[str, str, float, float | None, float | None]], *, title: str,
          xlabel: str, ref: float | None, chart_id: str, xlim: tuple[float, float] | None,
          grouped: bool, variant: str | None) -> str:
    """Horizontal bars with CI whiskers; ``rows`` = (group, label, estimate, lo, hi)."""
    if not rows:
        return ""
    from matplotlib import rc_context

    groups: list[str] = []
    for g, *_ in rows:
        if g not in groups:
            groups.append(g)
    show_groups = grouped and (len(groups) > 1 or groups[0] != "")
    ylabels: list[str] = []
    heading: list[bool] = []
    ys, est, err_lo, err_hi, colors = [], [], [], [], []
    y = 0
    for gi, g in enumerate(groups):
        if show_groups:
            ylabels.append(truncate(g, LABEL_CHARS))
            heading.append(True)
            y += 1
        for g2, label, e, lo, hi in rows:
            if g2 != g:
                continue
            ylabels.append(("  " if show_groups else "") + truncate(label, LABEL_CHARS))
            heading.append(False)
            ys.append(y)
            est.append(e)
            a, b = _ci_err(e, lo, hi)
            err_lo.append(a)
            err_hi.append(b)
            colors.append(PALETTE[gi % len(PALETTE)])
            y += 1
    n_rows = len(ylabels)
    with rc_context(_rc(chart_id)):
        height = 0.75 + 0.16 * n_rows
        fig = _figure(6.0, height, left=min(0.15 + _text_width(ylabels), 2.6), right=0.15,
                      top=0.3, bottom=0.42)
        ax = fig.add_subplot()
        ax.barh(ys, est, xerr=[err_lo, err_hi], color=colors, alpha=0.85, height=0.72,
                error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#333333"})
        ax.set_yticks(range(n_rows), ylabels)
        for tick, is_head in zip(ax.get_yticklabels(), heading, strict=True):
            if is_head:
                tick.set_fontweight("bold")
                tick.set_color("#222222")
        ax.set_ylim(n_rows - 0.4, -0.6)
        ax.tick_params(axis="y", length=0)
        ax.grid(axis="y", visible=False)
        if ref is not None:
            ax.axvline(ref, color="#B00020", linewidth=0.8, linestyle="--")
        if xlim is not None:
            ax.set_xlim(*xlim)
        elif all(v >= 0 for v in est):
            ax.set_xlim(left=0)
        ax.set_xlabel(clean(xlabel))
        ax.set_title(truncate(title, 120), loc="left")
        return _finish(fig, chart_id, title, variant)


def value_bars(records: Iterable[Any], *, title: str, xlabel: str = "",
               ref: float | None = None, chart_id: str = "bars",
               xlim: tuple[float, float] | None = None) -> str:
    """Per-value estimates with CI whiskers, grouped by attribute (one metric, one k)."""
    records = list(records)
    rows = [(clean(m.attribute or ""), clean(m.value or ""), float(m.estimate), m.ci_low,
             m.ci_high) for m in records if m.estimate is not None]
    return _bars(rows, title=title, xlabel=xlabel, ref=ref, chart_id=chart_id, xlim=xlim,
                 grouped=True, variant=one_variant(records))


def aggregate_bars(records: Iterable[Any], *, title: str, xlabel: str = "",
                   ref: float | None = None, chart_id: str = "agg",
                   xlim: tuple[float, float] | None = None) -> str:
    """One bar per attribute (aggregate records such as leakage AUC or a group gap)."""
    records = list(records)
    rows = [("", clean(m.attribute or "all"), float(m.estimate), m.ci_low, m.ci_high)
            for m in records if m.estimate is not None]
    return _bars(rows, title=title, xlabel=xlabel, ref=ref, chart_id=chart_id, xlim=xlim,
                 grouped=False, variant=one_variant(records))


def k_curves(records: Iterable[Any], *, title: str, ylabel: str = "", series: str = "value",
             chart_id: str = "curves", bands: bool = True) -> str:
    """Estimate against k, one line per ``series`` ("value" or "attribute"), CI as a band."""
    records = list(records)
    variant = one_variant(records)
    by: dict[str, list[tuple[int, float, float | None, float | None]]] = {}
    for m in records:
        if m.k is None or m.estimate is None:
            continue
        key = clean(getattr(m, series) or "")
        by.setdefault(key, []).append((m.k, float(m.estimate), m.ci_low, m.ci_high))
    by = {k: sorted(v) for k, v in by.items() if len({p[0] for p in v}) > 1}
    if not by:
        return ""
    from matplotlib import rc_context

    with rc_context(_rc(chart_id)):
        legend_w = min(0.5 + _text_width((truncate(n, 28) for n in by), 7.0), 2.2)
        fig = _figure(3.3 + legend_w, 2.5, left=0.62, right=legend_w, top=0.3, bottom=0.45)
        ax = fig.add_subplot()
        for i, (name, pts) in enumerate(by.items()):
            ks = [p[0] for p in pts]
            color = PALETTE[i % len(PALETTE)]
            ax.plot(ks, [p[1] for p in pts], color=color, linewidth=1.2,
                    linestyle=_DASHES[(i // len(PALETTE)) % len(_DASHES)],
                    label=truncate(name, 28))
            if bands and len(by) <= 5 and all(p[2] is not None and p[3] is not None for p in pts):
                ax.fill_between(ks, [p[2] for p in pts], [p[3] for p in pts], color=color,
                                alpha=0.12, linewidth=0)
        all_ks = sorted({p[0] for pts in by.values() for p in pts})
        if len(all_ks) <= 12:
            ax.set_xticks(all_ks)
        else:
            from matplotlib.ticker import MaxNLocator
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("k (list length)")
        ax.set_ylabel(clean(ylabel))
        ax.set_title(truncate(title, 80), loc="left")
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), handlelength=1.6)
        return _finish(fig, chart_id, title, variant)


def tradeoff_curve(curve: Any, *, chart_id: str = "tradeoff") -> str:
    """Draw a reranker's trade-off: its target (y) against its cost (x), with CI whiskers.

    One point per swept parameter value, labelled with the value, joined in sweep order; the
    chart's ``data-variant`` is the reranker's main variant (``curve.variant``).
    """
    pts = [p for p in curve.points if p.target_estimate is not None
           and p.cost_estimate is not None]
    if not pts:
        return ""
    from matplotlib import rc_context

    title = f"{curve.reranker}: {curve.target} against {pts[0].cost_metric}"
    with rc_context(_rc(chart_id)):
        fig = _figure(4.6, 2.8, left=0.7, right=0.2, top=0.3, bottom=0.5)
        ax = fig.add_subplot()
        xs = [float(p.cost_estimate) for p in pts]
        ys = [float(p.target_estimate) for p in pts]
        xerr = list(zip(*[_ci_err(x, *p.cost_ci) for x, p in zip(xs, pts, strict=True)],
                        strict=True))
        yerr = list(zip(*[_ci_err(y, *p.target_ci) for y, p in zip(ys, pts, strict=True)],
                        strict=True))
        ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, color=PALETTE[0], linewidth=1.2,
                    marker="o", markersize=3.5, elinewidth=0.7, capsize=2)
        for x, y, p in zip(xs, ys, pts, strict=True):
            if p.value is not None:
                ax.annotate(clean(f"{curve.parameter}={p.value}"), (x, y),
                            textcoords="offset points", xytext=(4, 4), fontsize=6.5)
        ax.set_xlabel(clean(pts[0].cost_metric))
        ax.set_ylabel(clean(curve.target))
        ax.set_title(truncate(title, 90), loc="left")
        return _finish(fig, chart_id, title, curve.variant)


def stopping_path(gate: Any, *, chart_id: str = "path") -> str:
    """Draw an adaptive gate's stopping path: the estimate and its confidence sequence by round.

    x: units asked after each round; the band is the confidence sequence of the gate's
    deciding record, the dashed line the gate's bound (``gate.bound``, e.g. ``"<= 0.1"``).
    """
    path = [e for e in getattr(gate, "path", None) or []
            if e.get("lower") is not None and e.get("upper") is not None]
    if not path:
        return ""
    from matplotlib import rc_context

    title = f"{gate.name}: stopping path"
    with rc_context(_rc(chart_id)):
        fig = _figure(3.6, 2.2, left=0.6, right=0.2, top=0.3, bottom=0.45)
        ax = fig.add_subplot()
        xs = [float(e["units"]) for e in path]
        ax.fill_between(xs, [float(e["lower"]) for e in path], [float(e["upper"]) for e in path],
                        color=PALETTE[0], alpha=0.25, linewidth=0, step=None)
        ys = [float(e["estimate"]) if e.get("estimate") is not None else float("nan")
              for e in path]
        err = list(zip(*[_ci_err(y, e["lower"], e["upper"]) for y, e in zip(ys, path, strict=True)],
                       strict=True))
        ax.errorbar(xs, ys, yerr=err, color=PALETTE[0], marker="o", markersize=3, linewidth=1.2,
                    elinewidth=0.7, capsize=2)
        if len(xs) == 1:
            ax.set_xlim(xs[0] * 0.5, xs[0] * 1.5)
        for bound in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", str(gate.bound)):
            ax.axhline(float(bound), color="#b00", linestyle="--", linewidth=0.9)
        ax.set_xlabel("units asked")
        ax.set_ylabel(clean(gate.metric))
        ax.set_title(truncate(title, 70), loc="left")
        return _finish(fig, chart_id, title, None)
