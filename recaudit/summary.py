"""A short rich table of an AuditResult for the terminal (stderr-free, plain when piped)."""

from __future__ import annotations

from .formatting import fmt, fmt_ci, fmt_p
from .results import ORIGINAL, AuditResult


def headline_metrics(result: AuditResult) -> list[tuple[str, str, str, str]]:
    """Rows (probe, metric, where, value) of the aggregate metrics a reader looks at first."""
    rows = []
    for p in result.probes:
        if p.status != "ok":  # errored and skipped probes are listed, with why
            what = f"{p.status} ({p.skip_kind})" if p.skip_kind else str(p.status)
            rows.append((p.id, what + (", optional" if p.optional else ""), "", p.error or ""))
            continue
        for m in p.metrics:
            if m.value is not None or m.variant != ORIGINAL:  # per-value rows and mitigation
                continue                                     # variants live in the report
            where = " ".join(x for x in (m.attribute or "", f"k={m.k}" if m.k else "") if x)
            ci = fmt_ci(m.ci_low, m.ci_high)
            p_txt = f" p_adj={fmt_p(m.p_adjusted)}" if m.p_adjusted is not None else ""
            rows.append((p.id, m.metric, where,
                         f"{fmt(m.estimate)}{' ' + ci if ci else ''}{p_txt}"))
        for t in p.tradeoffs:  # one line per reranker: its target before -> after
            pt = next((x for x in t.points if x.variant == t.variant), t.points[0])
            rows.append((p.id, f"mitigation {pt.variant}",
                         f"{t.target}" + (f" k={t.k}" if t.k else ""),
                         f"{fmt(t.before_estimate)} -> {fmt(pt.target_estimate)}; "
                         f"{pt.cost_metric} {fmt(pt.cost_estimate)}"))
    return rows


def print_summary(result: AuditResult, max_rows: int = 40) -> None:
    """Print a result's headline metrics (:func:`headline_metrics`) as a terminal table.

    Every cell is plain text: names, values and messages from a result are never read as rich
    markup (``[/x]`` made rich raise) and lose control characters.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from .report._common import clean

    def plain(*cells: str) -> list[Text]:
        return [Text(clean(x)) for x in cells]

    table = Table(title=plain(f"recaudit: {result.name} ({result.provenance.model_spec})")[0])
    for col in ("probe", "metric", "where", "estimate [CI]"):
        table.add_column(col)
    rows = headline_metrics(result)
    for row in rows[:max_rows]:
        table.add_row(*plain(*row))
    if len(rows) > max_rows:
        table.add_row("...", f"{len(rows) - max_rows} more rows in the report", "", "")
    for g in result.gates:
        table.add_row(*plain("gate", g.name, g.mode,
                             ("PASS " if g.passed else "FAIL ") + g.message))
    Console(highlight=False).print(table)
