"""``summary.md``: the verdict, gates, top findings and a headline table per probe.

Meant for a pull-request comment or ``$GITHUB_STEP_SUMMARY`` (GitHub-flavoured Markdown), so it
stays short (under :data:`MAX_CHARS`; a PR comment holds 65,536) and every string that comes from
a result is escaped with :func:`md`: no HTML, no link, no code span, no table break, no @mention
and no autolink can come out of model output, attribute values or messages.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from ..results import AuditResult, GateResult, ProbeResult
from ..verdicts import min_units_of
from . import _common as c
from .story import story

__all__ = ["markdown_summary", "render_markdown", "md"]

MAX_CHARS = 60_000
ICON = {"pass": "\u2705", "fail": "\u274c", "warn": "\u26a0\ufe0f", "flag": "\u26a0\ufe0f",
        "error": "\U0001f6d1", "skipped": "\u23ed\ufe0f", "none": "\u2139\ufe0f",
        "inconclusive": "\u2754"}
_ESCAPE = re.compile(r"([\\`*_\[\]|~$#!{}])")


def md(text: object, limit: int = 300) -> str:
    """Escape ``text`` for inline use in GitHub Markdown (also inside a table cell)."""
    s = c.truncate(text, limit)
    s = " ".join(s.split())  # newlines would end a table row or start a block
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _ESCAPE.sub(r"\\\1", s)
    s = re.sub(r"@(?=[A-Za-z0-9_-])", "@\u200b", s)     # no @mentions / team mentions
    s = re.sub(r"(?i)(https?|ftp|javascript|data|vbscript|file)(\s*):", "\\1\u200b\\2:", s)
    s = re.sub(r"(?i)\bwww\.", "www\u200b.", s)         # no autolinks
    return s


def _gate_row(g: GateResult) -> str:
    obs = c.num(g.observed)
    ci_txt = c.ci(g.ci_low, g.ci_high)
    if ci_txt:
        obs += f" {ci_txt}"
    if g.p_adjusted is not None:
        obs += f" p_adj={c.pval(g.p_adjusted)}"
    return (f"| {ICON['pass' if g.passed else 'fail']} {'PASS' if g.passed else 'FAIL'} "
            f"| {md(g.name, 80)} | {md(g.probe, 60)} | {md(g.metric, 60)} | {obs} "
            f"| {md(g.bound, 40)} | {md(g.mode, 20)} |")


def _headline_cell(records: list, limit: int = 4) -> str:
    parts = []
    for m in records[:limit]:
        where = " ".join(x for x in (m.attribute or "", f"k={m.k}" if m.k is not None else "")
                         if x)
        parts.append(f"{md(m.metric, 40)} {md(where, 60)}: {c.estimate_text(m)}")
    if len(records) > limit:
        parts.append(f"\u2026 {len(records) - limit} more")
    return "<br>".join(parts) or "\u2013"


def _one(result: AuditResult, label: str | None, lines: list[str], level: str = "##") -> None:
    v = c.verdict(result)
    alpha, min_units = c.alpha_of(result), min_units_of(result)
    title = f"{ICON.get(v.status, '')} recaudit: **{v.label}**"
    title += f" \u2014 {md(label, 80)}" if label else f" \u2014 {md(result.name, 80)}"
    lines += [f"{level} {title}", ""]
    pr = result.provenance
    lines += [f"{md(v.text, 200)}. Model {md(pr.model_spec, 120)} \u00b7 recaudit "
              f"{md(pr.tool_version, 20)} \u00b7 alpha={alpha:g} \u00b7 results hash "
              f"`{result.results_hash()[:16]}`", ""]
    if pr.batch_invariance and pr.batch_invariance.startswith("no"):
        lines += [f"Batch-invariant: {md(pr.batch_invariance, 300)}", ""]
    for title, sentences in story(result).sections():
        lines += [f"**{title}.** " + " ".join(md(x, 600) for x in sentences), ""]
    sub = level + "#"
    if result.gates:
        lines += [f"{sub} Gates", "",
                  "| verdict | gate | probe | metric | observed [CI] | bound | mode |",
                  "|---|---|---|---|---|---|---|"]
        lines += [_gate_row(g) for g in sorted(result.gates, key=lambda g: g.passed)]
        lines.append("")
    else:
        lines += ["No gates configured: nothing here fails CI.", ""]
    top = c.top_findings(result, 3)
    if top:
        lines += [f"{sub} Top findings", ""]
        for i, f in enumerate(top, 1):
            tag = " (largest measured effect)" if f.derived else ""
            small = f" \u26a0 {md(f.small_sample, 200)}." if f.small_sample else ""
            lines.append(f"{i}. **{md(f.severity, 10)}** \u00b7 {md(f.probe, 60)}: "
                         f"{md(f.title, 240)}{tag}. {md(f.detail, 400)}{small}")
        lines.append("")
    if result.probes:
        lines += [f"{sub} Probes", "", "| probe | status | queries | headline (largest k) |",
                  "|---|---|---|---|"]
        variants = {p.id: (p, c.split_variants(p)) for p in result.probes if p.status == "ok"}
        for p in result.probes:
            pv = c.probe_verdict(p, alpha, min_units)
            status = f"{ICON.get(pv.status, '')} {pv.label}"
            small = c.probe_small_sample(p, min_units)
            if small:
                status += f"<br>{md(small, 200)}"
            if p.status != "ok":
                lines.append(f"| {md(p.id, 60)} | {status} | \u2013 | {md(p.error or '', 200)} |")
                continue
            q = (f"{p.n_queries}" + (f" ({p.n_failed} failed)" if p.n_failed else "")
                 if p.n_queries else "\u2013")
            views = variants[p.id][1]
            own = views[0]
            tag = f" [{md(own.variant, 60)}]" if len(views) > 1 else ""
            lines.append(f"| {md(p.id, 60)}{tag} | {status} | {q} "
                         f"| {_headline_cell(c.headline(own.probe))} |")
        lines.append("")
        _variants(variants, lines, sub)
    checks = c.checks(result)
    attention = [x for x in checks if x.status != "pass"]
    passed = [x for x in checks if x.status == "pass"]
    lines += [f"<details><summary>All checks: {len(passed)} passed, {len(attention)} need "
              "attention</summary>", "", "| status | kind | probe | check | detail |",
              "|---|---|---|---|---|"]
    for x in attention + passed:
        lines.append(f"| {ICON.get(x.status, '')} {x.status} | {x.kind} | {md(x.probe or '', 40)} "
                     f"| {md(x.name, 120)} | {md(x.detail, 200)} |")
    lines += ["", "</details>", ""]


def _variants(views: dict[str, tuple[ProbeResult, list[c.VariantView]]], lines: list[str],
              level: str) -> None:
    """One section per probe and re-ranked variant, after the probes' own (original) lists.

    Each holds that variant's headline metrics and, for a reranker or a point of its sweep,
    the reranker's target before and after and its cost.
    """
    rest = [(pid, p, v) for pid, (p, vs) in views.items() for v in vs[1:]]
    if not rest:
        return
    lines += [f"{level} Re-ranked variants", "",
              "The probe table above shows the model's own lists only; each variant below is "
              "the same probe measured on other lists, in its own table.", ""]
    for pid, p, v in rest:
        lines += [f"{level}# {md(pid, 60)} [{md(v.variant, 80)}]", "",
                  f"{md(v.kind, 20)}: {md(v.note, 300)}", ""]
        records, points = c.headline(v.probe), c.tradeoff_rows(p, v.variant)
        if not records and not points:
            lines += ["No aggregate metric: see the HTML report.", ""]
            continue
        lines += ["| metric | where | estimate [CI] p |", "|---|---|---|"]
        for m in records:
            lines.append(f"| {md(m.metric, 40)} | {md(c.where(m), 80)} | {c.estimate_text(m)} |")
        for t in points:
            where = " ".join(x for x in (t["attribute"] or "", f"k={t['k']}" if t["k"] else "")
                             if x)
            lines.append(f"| {md(t['target'], 40)} (reranker target) | "
                         f"{md(where, 60)} | {c.num(t['before'])} "
                         f"before, {c.num(t['after'])} after; {md(t['cost_metric'], 40)} "
                         f"{c.num(t['cost'])} |")
        lines.append("")


def markdown_summary(results: AuditResult | Sequence[AuditResult]) -> str:
    """Return the Markdown summary (one result, or several with a comparison table first)."""
    rs = c.coerce_results(results)
    labels = c.labels(rs)
    lines: list[str] = []
    if len(rs) > 1:
        lines += ["## recaudit: model comparison", "",
                  "| probe | metric | attribute | k | " + " | ".join(md(x, 40) for x in labels)
                  + " |", "|---|---|---|---|" + "---|" * len(rs)]
        lines.append("| **verdict** | | | | " + " | ".join(
            f"{ICON.get(v.status, '')} {v.label}" for v in map(c.verdict, rs)) + " |")
        for row in c.comparison(rs):
            cells = [c.estimate_text(m) if m is not None else "\u2013" for m in row.cells]
            lines.append(f"| {md(row.probe, 40)} | {md(row.metric, 40)} | "
                         f"{md(row.attribute or '', 40)} | {row.k if row.k is not None else ''} | "
                         + " | ".join(cells) + " |")
        lines.append("")
        for r, lab in zip(rs, labels, strict=True):
            _one(r, lab, lines, level="###")
    else:
        _one(rs[0], None, lines)
    lines.append("_Full report: index.html (HTML) \u00b7 machine-readable: results.json. "
                 "Not legal advice._")
    text = "\n".join(lines) + "\n"
    if len(text) > MAX_CHARS:  # keep it postable: cut whole lines, say so
        cut = text[:MAX_CHARS].rsplit("\n", 1)[0]
        if cut.count("<details>") > cut.count("</details>"):
            cut += "\n\n</details>"
        text = cut + "\n\n_Summary truncated; see index.html for everything._\n"
    return text


def render_markdown(results: AuditResult | Sequence[AuditResult], path: str | Path) -> Path:
    """Write the Markdown summary to ``path``; return it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown_summary(results), encoding="utf-8")
    return out


# -- comparisons ---------------------------------------------------------------------------------
_ORDER = {"regression": 0, "improvement": 1, "not significant": 2, "within tolerance": 3,
          "direction unknown": 4, "unchanged": 5}


_CELL_ESCAPE = re.compile(r"([\\`\[\]|])")


def _cell(text: str) -> str:
    """Make text safe for one comparison table cell.

    One line; no HTML, link, image, code span, table break, autolink or @mention from the text
    (``**bold**`` of our own status words stays).
    """
    s = " ".join(c.clean(text).split())
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _CELL_ESCAPE.sub(r"\\\1", s)
    s = re.sub(r"@(?=[A-Za-z0-9_-])", "@\u200b", s)
    s = re.sub(r"(?i)(https?|ftp|javascript|data|vbscript|file)(\s*):", "\\1\u200b\\2:", s)
    return re.sub(r"(?i)\bwww\.", "www\u200b.", s)


def render_comparison(cmp: Any, max_rows: int | None = None) -> str:
    """Render a :class:`recaudit.compare.Comparison` as Markdown.

    A verdict line, notes, and one table row per compared metric (worst first).
    """
    n_reg, n_imp = len(cmp.regressions), len(cmp.improvements)
    verdict = (f"**{n_reg} regression(s)**" if n_reg else "**no regressions**") + \
        f", {n_imp} improvement(s) over {len(cmp.rows)} compared metric(s)"
    lines = ["## recaudit compare", "",
             f"Baseline: {_cell(cmp.baseline)}; current: {_cell(cmp.current)}.", "",
             f"{verdict} (tolerance {cmp.tolerance:g} in metric units, alpha {cmp.alpha:g}, "
             "BH-adjusted).", ""]
    for note in cmp.notes:
        lines.append(f"- {_cell(note)}")
    if cmp.notes:
        lines.append("")
    rows = sorted(cmp.rows, key=lambda r: (_ORDER.get(r.status, 9), -(r.worsening or 0)))
    if max_rows is not None and len(rows) > max_rows:
        hidden = len(rows) - max_rows
        rows = rows[:max_rows]
    else:
        hidden = 0
    lines.append("| status | probe | metric | where | baseline [CI] | current [CI] | change "
                 "| worse if | p | p_adj | method |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        def est(v: float, ci: tuple[float | None, float | None]) -> str:
            interval = c.ci(*ci)
            return c.num(v) + (f" {interval}" if interval else "")
        worse = {True: "higher", False: "lower", None: "?"}[r.higher_is_worse]
        method = r.method + (f"; {r.note}" if r.note else "")
        status = f"**{r.status}**" if r.status in ("regression", "improvement") else r.status
        lines.append("| " + " | ".join(_cell(x) for x in (
            status, r.probe, r.metric, r.where, est(r.baseline, r.baseline_ci),
            est(r.current, r.current_ci), f"{r.delta:+.3f}", worse, c.pval(r.p_value),
            c.pval(r.p_adjusted), method)) + " |")
    if hidden:
        lines.append("")
        lines.append(f"({hidden} more rows not shown)")
    return "\n".join(lines)
