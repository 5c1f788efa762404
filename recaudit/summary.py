"""A short rich table of an AuditResult for the terminal (stderr-free, plain when piped).

One section per set of lists: the model's own (original) lists of every probe first, then one
section per probe and re-ranked variant (:func:`recaudit.report._common.split_variants`), so no
section mixes a reranker's numbers into the model's.
"""

from __future__ import annotations

from .formatting import fmt, fmt_ci, fmt_p
from .report._common import (VariantView, aggregates, per_value, probe_small_sample,
                             probe_verdict, split_variants, tradeoff_rows)
from .results import AuditResult, MetricRecord, ProbeResult
from .verdicts import alpha_of, min_units_of

Row = tuple[str, str, str, str]  # (probe, metric, where, estimate [CI] p_adj)


def _row(probe_id: str, m: MetricRecord) -> Row:
    where = " ".join(x for x in (m.attribute or "", f"k={m.k}" if m.k else "") if x)
    ci = fmt_ci(m.ci_low, m.ci_high)
    p_txt = f" p_adj={fmt_p(m.p_adjusted)}" if m.p_adjusted is not None else ""
    return probe_id, m.metric, where, f"{fmt(m.estimate)}{' ' + ci if ci else ''}{p_txt}"


def _metric_rows(p: ProbeResult) -> list[Row]:
    """Rows of one variant's probe view: its aggregate metrics at their largest k.

    A probe whose metrics are all per group (exposure's NDKL) shows its declared headline
    metrics per group instead.
    """
    recs = aggregates(p, variant=None) or [m for name in p.headline
                                           for m in per_value(p, name, variant=None)]
    return [_row(p.id, m) for m in recs]


def headline_metrics(result: AuditResult) -> list[Row]:
    """Rows (probe, metric, where, value) of the model's own lists, a reader looks at first.

    Per probe: the rows of :func:`_metric_rows` for its first variant (the original lists); an
    errored or skipped probe is one row saying why.
    """
    rows: list[Row] = []
    for p in result.probes:
        if p.status != "ok":  # errored and skipped probes are listed, with why
            what = f"{p.status} ({p.skip_kind})" if p.skip_kind else str(p.status)
            rows.append((p.id, what + (", optional" if p.optional else ""), "", p.error or ""))
            continue
        rows += _metric_rows(split_variants(p)[0].probe)
    return rows


def verdict_rows(result: AuditResult) -> list[Row]:
    """One row (probe, "verdict", "", label) per probe, as the reports label it.

    The label is :func:`recaudit.report._common.probe_verdict`'s (FLAGGED, INCONCLUSIVE below
    the small-sample rule, OK, ...), followed by the probe's small-sample warning if any.
    """
    alpha, min_units = alpha_of(result), min_units_of(result)
    rows: list[Row] = []
    for p in result.probes:
        label = probe_verdict(p, alpha, min_units).label
        small = probe_small_sample(p, min_units)
        rows.append((p.id, "verdict", "", label + (f"; {small}" if small else "")))
    return rows


def _variant_rows(p: ProbeResult, view: VariantView) -> list[Row]:
    """Rows of one re-ranked variant: its metrics (:func:`_metric_rows`), then its trade-off.

    The trade-off line is the curve point measured on this variant's lists (the main point of
    a reranker, or one point of its sweep).
    """
    rows = _metric_rows(view.probe)
    for t in tradeoff_rows(p, view.variant):
        where = f"{t['target']}" + (f" {t['attribute']}" if t["attribute"] else "") + (
            f" k={t['k']}" if t["k"] else "")
        rows.append((p.id, "reranker target", where,
                     f"{fmt(t['before'])} -> {fmt(t['after'])}; {t['cost_metric']} "
                     f"{fmt(t['cost'])}"))
    return rows


def variant_sections(result: AuditResult) -> list[tuple[str, list[Row]]]:
    """One (title, rows) section per probe and re-ranked variant, in the report's order.

    The title names the probe, the variant and what its lists are (a reranker's, a baseline cut
    to k, a point of a sweep).
    """
    out = []
    for p in result.probes:
        if p.status != "ok":
            continue
        for view in split_variants(p)[1:]:
            out.append((f"{p.id} [{view.variant}]: {view.kind}", _variant_rows(p, view)))
    return out


def print_summary(result: AuditResult, max_rows: int = 40) -> None:
    """Print a result's headline metrics as a terminal table, one section per variant.

    The probes' verdicts first (:func:`verdict_rows`), the model's own lists next
    (:func:`headline_metrics`, at most ``max_rows`` rows), then one
    section per re-ranked variant (:func:`variant_sections`, at most ``max_rows // 4`` rows
    each), then the gates. Every cell is plain text: names, values and messages from a result
    are never read as rich markup (``[/x]`` made rich raise) and lose control characters.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from .report._common import clean

    def plain(*cells: str) -> list[Text]:
        return [Text(clean(x)) for x in cells]

    def add(rows: list[Row], cap: int) -> None:
        for row in rows[:cap]:
            table.add_row(*plain(*row))
        if len(rows) > cap:
            table.add_row("...", f"{len(rows) - cap} more rows in the report", "", "")

    table = Table(title=plain(f"recaudit: {result.name} ({result.provenance.model_spec})")[0])
    for col in ("probe", "metric", "where", "estimate [CI]"):
        table.add_column(col)
    add(verdict_rows(result), max_rows)
    table.add_section()
    sections = variant_sections(result)
    if sections:
        table.add_row(*plain("original lists", "", "", ""), style="bold")
    add(headline_metrics(result), max_rows)
    for title, rows in sections:
        table.add_section()
        table.add_row(*plain(title, "", "", ""), style="bold")
        add(rows, max(max_rows // 4, 1))
    if result.gates:
        table.add_section()
    for g in result.gates:
        table.add_row(*plain("gate", g.name, g.mode,
                             ("PASS " if g.passed else "FAIL ") + g.message))
    Console(highlight=False).print(table)
