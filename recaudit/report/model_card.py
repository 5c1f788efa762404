"""``model_card.md``: the audit as a Hugging Face model card.

The YAML front matter is built by ``huggingface_hub`` (:class:`huggingface_hub.ModelCardData`
with one :class:`huggingface_hub.EvalResult` per headline metric, which it writes as
``model-index``), so the Hub and ``huggingface_hub.ModelCard.load`` read the estimates. Offline:
nothing here talks to the Hub. The mapping, per headline record of each probe that ran (the
records :func:`recaudit.report._common.headline` picks: declared headline aggregates at the
largest k, on the probe's first variant, the model's own lists where there are any):

* task: ``type`` :data:`TASK_TYPE`, ``name`` :data:`TASK_NAME`;
* dataset: ``type`` the probe's registered name, ``name`` its run id, ``config`` its suite;
* metric: ``type`` the metric's name, ``value`` the estimate, ``name`` the metric and where it
  was measured, ``config`` its convention, ``args`` its attribute, value, k and variant.

The format has no field for a confidence interval, a p-value or a null floor, so those go into
the card's Markdown only (the headline table under "## Evaluation"), never into invented keys;
a record without an estimate is left out of the metadata and said so in the table.

The body has "## Evaluation" (verdict, the story, headline metrics with their CIs, adjusted
p-values and null floors, the gate verdicts, probes that did not run), "## Bias, risks and
limitations" (largest findings, small groups, warnings, method notes), "## Provenance" and a
link to the full HTML report next to the card. Every string from the result is escaped with
:func:`recaudit.report.markdown.md` in the Markdown; in the YAML it is one cleaned line
(no control character, whitespace collapsed) that the YAML writer quotes as it needs.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import ConfigError
from ..formatting import fmt, fmt_ci, fmt_p
from ..results import ORIGINAL, AuditResult, MetricRecord, ProbeResult
from . import _common as c
from .markdown import md
from .story import story

__all__ = ["DEFAULT_NAME", "TASK_TYPE", "TASK_NAME", "headline_records", "eval_results",
           "card_data", "model_card_markdown", "render_model_card"]

DEFAULT_NAME = "model_card.md"
TASK_TYPE = "recommendation"
TASK_NAME = "Recommender fairness audit (recaudit)"
META_LIMIT = 200          # characters of one YAML string
MAX_ROWS = 40             # rows of a limitation list


def _hub() -> Any:
    """Import ``huggingface_hub`` (installed with transformers), or raise one ConfigError line."""
    try:
        return importlib.import_module("huggingface_hub")
    except ImportError:
        raise ConfigError("format 'model-card' needs huggingface_hub: "
                          "pip install huggingface_hub") from None


def _line(text: Any, limit: int = META_LIMIT) -> str:
    """One line for the YAML front matter: no control character, whitespace collapsed."""
    return " ".join(c.truncate(text, limit).split())


def _where(m: MetricRecord) -> str:
    """``race, k=20`` (and ``variant fair(p=0.5)`` for records of re-ranked lists)."""
    parts = [m.attribute or "", m.value or "", f"k={m.k}" if m.k is not None else "",
             f"variant {m.variant}" if m.variant != ORIGINAL else ""]
    return ", ".join(p for p in parts if p)


def _metric_args(m: MetricRecord) -> dict[str, Any] | None:
    args: dict[str, Any] = {}
    if m.attribute:
        args["attribute"] = _line(m.attribute)
    if m.value:
        args["value"] = _line(m.value)
    if m.k is not None:
        args["k"] = m.k
    if m.variant != ORIGINAL:
        args["variant"] = _line(m.variant)
    return args or None


def headline_records(result: AuditResult) -> list[tuple[ProbeResult, MetricRecord]]:
    """(probe, record) of every headline record of every probe that ran, in probe order."""
    return [(p, m) for p in result.probes if p.status == "ok" for m in c.headline(p)]


def eval_results(result: AuditResult) -> list[Any]:
    """One :class:`huggingface_hub.EvalResult` per headline record with an estimate."""
    hub = _hub()
    out = []
    for p, m in headline_records(result):
        if m.estimate is None:
            continue
        where = _where(m)
        out.append(hub.EvalResult(
            task_type=TASK_TYPE, task_name=TASK_NAME,
            dataset_type=_line(p.probe), dataset_name=_line(p.id),
            dataset_config=_line(p.suite) if p.suite else None,
            metric_type=_line(m.metric), metric_value=m.estimate,
            metric_name=_line(f"{m.metric} ({where})" if where else m.metric),
            metric_config=_line(m.convention) if m.convention else None,
            metric_args=_metric_args(m)))
    return out


def card_data(result: AuditResult) -> Any:
    """Return the card's metadata: a :class:`huggingface_hub.ModelCardData` (``model-index``)."""
    hub = _hub()
    results = eval_results(result)
    tags = ["recaudit", "fairness-audit"]
    for p in result.probes:
        tags += [_line(t, 60) for t in p.tags if _line(t, 60) and _line(t, 60) not in tags]
    return hub.ModelCardData(model_name=_line(c.labels([result])[0]),
                             eval_results=results or None, tags=tags)


def _num_or_dash(x: float | None) -> str:
    return "\u2013" if x is None else fmt(x)


def _evaluation(result: AuditResult, lines: list[str], report_link: str | None) -> None:
    v = c.verdict(result)
    alpha, conf = c.alpha_of(result), c.conf_pct(c.confidence_of(result))
    lines += ["## Evaluation", "",
              f"**Verdict: {md(v.label, 40)}** \u2014 {md(v.text, 200)}. Audit "
              f"\u201c{md(result.name, 80)}\u201d, significance level alpha = {alpha:g}, "
              f"{conf} confidence intervals.", ""]
    for title, sentences in story(result).sections():
        lines += [f"**{title}.** " + " ".join(md(x, 600) for x in sentences), ""]
    records = headline_records(result)
    lines += ["### Headline metrics", ""]
    if records:
        lines += [
            "Each probe's headline metrics at the largest k. The `model-index` metadata of "
            "this card holds each estimate; the Hugging Face format has no field for a "
            "confidence interval, a p-value or a null floor, so they are given here only. "
            "*Null mean* and *noise alone*: the mean of the statistic under its permutation "
            "null and its 95th percentile (\u2264; its 5th, \u2265, where lower is worse): what "
            "a model without the effect scores with this many units; *self floor*: the 95th "
            "percentile of the spread that the model's disagreement with itself gives "
            "(repeated samples); \u2013: not recorded.", "",
            f"| probe | metric | where | estimate | {conf} CI | p (adjusted) | null mean "
            "| noise alone | self floor | n |",
            "|---|---|---|---|---|---|---|---|---|---|"]
        missing = 0
        for p, m in records:
            missing += m.estimate is None
            limit = c.noise(p, m)
            noise = "\u2013" if limit is None else f"{limit[1]} {fmt(limit[0])}"
            p_text = fmt_p(m.p_adjusted) if m.p_adjusted is not None else (
                f"{fmt_p(m.p_value)} (raw)" if m.p_value is not None else "\u2013")
            lines.append(
                f"| {md(p.id, 60)} | {md(m.metric, 60)} | {md(_where(m), 80)} "
                f"| {fmt(m.estimate)} | {fmt_ci(m.ci_low, m.ci_high) or chr(0x2013)} "
                f"| {p_text} | {_num_or_dash(m.null_mean)} | {noise} "
                f"| {_num_or_dash(m.self_floor)} | {m.n if m.n is not None else chr(0x2013)} |")
        if missing:
            lines += ["", f"{missing} headline record(s) have no estimate (n/a) and are not in "
                      "the `model-index` metadata."]
        lines.append("")
    else:
        lines += ["No probe recorded a headline metric; the `model-index` metadata is empty.",
                  ""]
    lines += ["### Gates", ""]
    if result.gates:
        lines += ["| verdict | gate | probe | metric | bound | mode | observed [CI] |",
                  "|---|---|---|---|---|---|---|"]
        for g in sorted(result.gates, key=lambda g: g.passed):
            observed = c.value_text(g.observed, g.ci_low, g.ci_high, g.p_adjusted)
            if g.decision == "sequential" and g.decided_after is not None:
                observed += f"; decided after {g.decided_after} units (sequential)"
            elif g.decision == "fixed-n":
                observed += "; at the cap (fixed n)"
            elif g.decision == "undecided":
                observed += "; undecided: the budget ran out"
            lines.append(f"| {'PASS' if g.passed else '**FAIL**'} | {md(g.name, 80)} "
                         f"| {md(g.probe, 60)} | {md(g.metric, 60)} | {md(g.bound, 40)} "
                         f"| {md(g.mode, 20)} | {observed} |")
        lines.append("")
    else:
        lines += ["No gates configured: the findings are for review.", ""]
    not_run = [p for p in result.probes if p.status != "ok"]
    if not_run:
        lines += ["### Probes that did not run", ""]
        lines += [f"- {md(p.id, 60)} ({md(p.status, 20)}): "
                  f"{md(p.error or 'no reason recorded', 300)}" for p in not_run]
        lines.append("")
    if report_link:
        lines += [f"The full report, with every table and chart: "
                  f"[{md(report_link, 80)}]({quote(report_link)}).", ""]
    else:
        lines += ["The full report, with every table and chart, is written by `recaudit report "
                  "results.json --format html`.", ""]


def _limitations(result: AuditResult, lines: list[str]) -> None:
    lines += ["## Bias, risks and limitations", ""]
    top = c.top_findings(result, 5)
    if top:
        lines += ["Largest findings of this audit:", ""]
        for i, f in enumerate(top, 1):
            small = f" \u26a0 {md(f.small_sample, 200)}." if f.small_sample else ""
            lines.append(f"{i}. **{md(f.severity, 10)}** \u00b7 {md(f.probe, 60)}: "
                         f"{md(f.title, 240)}. {md(f.detail, 600)}{small}")
        lines.append("")
    else:
        lines += ["No finding was recorded.", ""]
    lim = c.limitations(result, max_rows=MAX_ROWS)
    if lim.sample_sizes:
        lines += ["Sample sizes:", ""]
        lines += [f"- {md(pid, 60)}: {md(text, 200)}" for pid, text in lim.sample_sizes]
        lines.append("")
    if lim.small_groups:
        lines += ["Small or empty groups (reported, not dropped):", ""]
        lines += [f"- {md(pid, 60)}: {md(where, 120)} \u2014 {md(w, 200)}"
                  for pid, where, w in lim.small_groups]
        lines.append("")
    if lim.probe_warnings:
        lines += ["Warnings:", ""]
        lines += [f"- {md(pid, 60)}: {md(w, 300)}" for pid, w in lim.probe_warnings]
        lines.append("")
    lines += ["Method notes:", ""]
    lines += [f"- {md(note, 600)}" for note in lim.method]
    lines.append("")


def _provenance(result: AuditResult, lines: list[str]) -> None:
    pr = result.provenance
    rows = [("results hash (sha256)", result.results_hash()),
            ("recaudit version", pr.tool_version), ("model spec", pr.model_spec),
            ("model fingerprint", pr.model_fingerprint), ("weights sha256", pr.weights_sha256),
            ("config sha256", pr.config_sha256), ("catalog sha256", pr.catalog_sha256),
            ("seeds", ", ".join(f"{k}={v}" for k, v in sorted(pr.seeds.items())) or None),
            ("started / finished", f"{pr.started_at or '?'} \u2192 {pr.finished_at or '?'}")]
    lines += ["## Provenance", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {md(value, 200) if value else 'not recorded'} |"
              for name, value in rows]
    lines.append("")


def model_card_markdown(result: AuditResult, report_link: str | None = "index.html") -> str:
    """Return the model card: YAML front matter (``model-index``) and the Markdown body.

    ``report_link``: the HTML report's file name next to the card (None: no link).
    """
    if not isinstance(result, AuditResult):
        raise TypeError("a model card describes one AuditResult")
    label = c.labels([result])[0]
    lines = [f"# Model card: {md(label, 120)}", "",
             f"Fairness audit of {md(result.provenance.model_spec, 120)} by recaudit "
             f"{md(result.provenance.tool_version, 20)}, written from results.json (results "
             f"hash `{result.results_hash()[:16]}`). Technical evidence, not legal advice.", ""]
    _evaluation(result, lines, report_link)
    _limitations(result, lines)
    _provenance(result, lines)
    front = card_data(result).to_yaml()
    return f"---\n{front}\n---\n\n" + "\n".join(lines)


def render_model_card(result: AuditResult, path: str | Path,
                      report_link: str | None = "index.html") -> Path:
    """Write the model card to ``path`` (a directory gets :data:`DEFAULT_NAME`); return it."""
    out = Path(path)
    if out.is_dir() or not out.suffix:
        out = out / DEFAULT_NAME
    text = model_card_markdown(result, report_link=report_link)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
