"""The audit told as a story, for the top of the executive summary.

What was asked, what the model did, what is beyond noise and the control, and what a reranker
would cost. One :class:`Story` per result, read by the HTML executive summary and the Markdown
summary. It reads only what every probe result declares (records, their metric declarations, floors,
``<spread>_vs_control`` records, trade-off curves): no probe is named here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..results import AuditResult, MetricRecord, ProbeResult
from ..verdicts import beyond_noise, is_significant, min_units_of
from . import _common as c

__all__ = ["Story", "story"]

#: suffix of a matched-control comparison (``snsr_jaccard_vs_control``; gates' ``versus:``)
VERSUS_CONTROL = "_vs_control"
#: how many items a story line names before "and n more"
SHOWN = 3


@dataclass
class Story:
    """Four short paragraphs, each a list of sentences (plain text, escaped by the renderer).

    ``asked``: the model, the probes, their units and queries; ``did``: the model's answers
    (shares of unusable answers); ``beyond``: which disparities are beyond the noise floor and
    which beyond the matched control; ``cost``: what each reranker gains and costs.
    """

    asked: list[str] = field(default_factory=list)
    did: list[str] = field(default_factory=list)
    beyond: list[str] = field(default_factory=list)
    cost: list[str] = field(default_factory=list)

    def sections(self) -> list[tuple[str, list[str]]]:
        """Return (heading, sentences) per non-empty paragraph, in reading order."""
        named = [("What was asked", self.asked), ("What the model did", self.did),
                 ("Beyond noise and beyond the control", self.beyond),
                 ("What a reranker would cost", self.cost)]
        return [(title, lines) for title, lines in named if lines]


def _where(m: MetricRecord) -> str:
    at = f"@{m.k}" if m.k is not None else ""
    return f"{m.attribute or 'overall'}: {m.metric}{at}"


def _listed(items: list[str]) -> str:
    more = len(items) - SHOWN
    return "; ".join(items[:SHOWN]) + (f"; and {more} more" if more > 0 else "")


def _asked(result: AuditResult, min_units: int) -> list[str]:
    ran = [p for p in result.probes if p.status == "ok"]
    total = sum(p.n_queries - p.n_missing for p in ran)
    planned = sum(p.n_queries for p in ran)
    parts = []
    for p in ran:
        n, fewest = c.probe_units(p), c.fewest_units(p)
        queries = (f"{p.n_queries} queries" if not p.n_missing else
                   f"{p.n_queries - p.n_missing} of {p.n_queries} planned queries asked"
                   ) if p.n_queries else "no queries of its own"
        units = ("units not recorded" if n is None else f"{n} units" if fewest in (None, n)
                 else f"{n} units, {fewest} behind some tests")
        parts.append(f"{p.id} ({units}, {queries})")
    out = [f"{len(ran)} of {len(result.probes)} probes ran on "
           f"{c.clean(result.provenance.model_spec)}, {total} queries in all"
           + (f" ({planned} planned)" if planned != total else "") + ": "
           + ", ".join(parts) + "."]
    small = [p.id for p in ran if c.probe_small_sample(p, min_units)]
    if small:
        out.append(f"{len(small)} probe(s) rest in whole or in part on fewer than {min_units} "
                   f"units, too few for a verdict there: {', '.join(small)}.")
    not_run = [f"{p.id} ({p.status})" for p in result.probes if p.status != "ok"]
    if not_run:
        out.append(f"Not run: {', '.join(not_run)}.")
    return out


def _did(result: AuditResult) -> list[str]:
    """Per answer-quality metric: its mean over every answer it counts (weighted by ``n``)."""
    totals: dict[str, list[float]] = {}
    specs: dict[str, ProbeResult] = {}
    for p in result.probes:
        if p.status != "ok":
            continue
        own = c.variant_names(p)[0]
        for m in c.at_max_k(x for x in p.metrics if x.variant == own):
            if c.has_role(p, m.metric, "answer_quality") and m.estimate is not None:
                w = float(m.n or 1)
                acc = totals.setdefault(m.metric, [0.0, 0.0])
                acc[0] += w * m.estimate
                acc[1] += w
                specs.setdefault(m.metric, p)
    out = []
    for metric, (total, weight) in totals.items():
        desc = c.metric_text(metric, specs[metric].specs).split(";")[0]
        out.append(f"{metric} = {c.num(total / weight)} on average over the answers it counts"
                   + (f" ({desc})" if desc else "") + ".")
    return out or ["No answer-quality metric was recorded."]


def _beyond(result: AuditResult, alpha: float) -> list[str]:
    floored, beyond, control, over, tested, sig_only = 0, [], 0, [], 0, []
    for p in result.probes:
        if p.status != "ok":
            continue
        own = c.variant_names(p)[0]
        for m in c.headline(p):
            if m.metric.endswith(VERSUS_CONTROL) or m.estimate is None:
                continue
            limit = c.noise(p, m)
            if not c.has_floor(p, m.metric) or limit is None:
                if c.null_of(p, m) is not None and is_significant(m, alpha) is not None:
                    tested += 1
                    if is_significant(m, alpha):
                        sig_only.append((c.effect(p, m) or 0.0,
                                         f"{p.id} {_where(m)} = {c.num(m.estimate)}"))
                continue
            floored += 1
            sig = is_significant(m, alpha)
            if sig or (sig is None and beyond_noise(m.estimate, limit) > 0):
                beyond.append((beyond_noise(m.estimate, limit),
                               f"{p.id} {_where(m)} = {c.num(m.estimate)} "
                               f"(noise alone {limit[1]} {c.num(limit[0])})"))
        for m in p.metrics:  # each attribute's comparison is a per-value record
            if (m.variant != own or not m.metric.endswith(VERSUS_CONTROL)
                    or m.estimate is None):
                continue
            control += 1
            if is_significant(m, alpha):
                over.append((m.estimate, f"{p.id} {_where(m)} = {c.num(m.estimate)} "
                                         f"{c.ci(m.ci_low, m.ci_high)}".rstrip()))
    out = []
    if floored:
        beyond.sort(key=lambda t: -t[0])
        out.append(f"{len(beyond)} of {floored} headline disparities with a noise floor are "
                   "beyond what noise alone gives" + (": " + _listed([t[1] for t in beyond])
                                                       if beyond else "") + ".")
    if tested:
        sig_only.sort(key=lambda t: -t[0])
        out.append(f"{len(sig_only)} of {tested} tested headline disparities without a noise "
                   f"floor are significant at alpha={alpha:g}"
                   + (": " + _listed([t[1] for t in sig_only]) if sig_only else "") + ".")
    if control:
        over.sort(key=lambda t: -t[0])
        out.append(f"{len(over)} of {control} comparisons with the matched control (an "
                   "irrelevant attribute in the same place of the same prompts) are "
                   f"significantly larger than the control's at alpha={alpha:g}"
                   + (": " + _listed([t[1] for t in over]) if over else
                      "; each is within what an irrelevant word changes") + ".")
    elif floored or tested:
        out.append("No matched control ran: a disparity beyond the noise floor may be prompt "
                   "sensitivity (any changed word), not the attribute.")
    return out or ["No disparity with a noise floor or a matched control was recorded."]


def _cost(result: AuditResult) -> list[str]:
    out = []
    for p in result.probes:
        if p.status != "ok":
            continue
        for t in p.tradeoffs:
            main = next((pt for pt in t.points if pt.variant == t.variant), None)
            if main is None:
                continue
            at = f"@{t.k}" if t.k is not None else ""
            where = f" ({main.target_attribute})" if main.target_attribute else ""
            cost_ci = c.ci(*main.cost_ci) if main.cost_ci else ""
            out.append(f"{c.clean(t.reranker)} on {p.id}: {t.target}{at}{where} "
                       f"{c.num(t.before_estimate)} \u2192 {c.num(main.target_estimate)}, at a "
                       f"cost of {main.cost_metric} = {c.num(main.cost_estimate)}"
                       + (f" {cost_ci}" if cost_ci else "") + ".")
    return out


def story(result: AuditResult) -> Story:
    """Tell ``result`` as a :class:`Story` (the model's own lists; rerankers in ``cost``)."""
    alpha, min_units = c.alpha_of(result), min_units_of(result)
    return Story(asked=_asked(result, min_units), did=_did(result),
                 beyond=_beyond(result, alpha), cost=_cost(result))
