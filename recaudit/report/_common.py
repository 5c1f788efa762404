"""What every renderer shares: checks, top findings, headline metrics and limitations.

All of an :class:`~recaudit.results.AuditResult`, and the audit's verdict line. Renderers
(HTML, Markdown, JUnit) only lay these out; they compute nothing of their own, so the three
outputs never disagree about what passed. Alpha, significance and severity are
:mod:`recaudit.verdicts`'s and numbers are :mod:`recaudit.formatting`'s (``num``, ``pval`` and
``ci`` here are its :func:`~recaudit.formatting.fmt`, :func:`~recaudit.formatting.fmt_p` and
:func:`~recaudit.formatting.fmt_ci`, under the names the templates use).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from ..formatting import fmt as num
from ..formatting import fmt_ci as ci
from ..formatting import fmt_p as pval
from ..formatting import is_number
from ..results import ORIGINAL, AuditResult, Finding, MetricRecord, ProbeResult
from ..verdicts import (MIN_UNITS, SEVERITIES, alpha_of, ci_excludes_null, decision_p,
                        enough_units, harm_direction, is_significant, min_units_of, noise_limit,
                        probe_status, record_severity, small_sample_warning, flag_status)

__all__ = ["alpha_of", "ci", "num", "pval"]  # re-exported for the renderers and templates

HEADLINE_CAP = 12


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def clean(text: Any) -> str:
    """``str(text)`` without control characters (XML 1.0 forbids them; terminals act on them)."""
    if text is None:
        return ""
    return _CONTROL.sub("\ufffd", str(text))


def truncate(text: Any, limit: int) -> str:
    s = clean(text)
    return s if len(s) <= limit else s[: max(limit - 1, 0)] + "\u2026"


def metric_text(metric: str, specs: Any = None) -> str:
    """Return the declared one-line description of ``metric`` (from a result's ``specs``)."""
    spec = (specs or {}).get(metric)
    return clean(getattr(spec, "description", "")) if spec is not None else ""


def spec_of(p: ProbeResult, metric: str) -> Any:
    """Return a metric's declaration as the probe result recorded it (None if it did not)."""
    return p.specs.get(metric)


def has_floor(p: ProbeResult, metric: str) -> bool:
    """Tell whether ``metric``'s declaration has ``noise_floor`` (stored, else current)."""
    from ..metrics.specs import get_spec

    stored = spec_of(p, metric)
    if stored is not None and stored.noise_floor:
        return True
    current = get_spec(metric)
    return bool(current is not None and current.noise_floor)


def noise(p: ProbeResult, m: MetricRecord) -> tuple[float, str] | None:
    """Return :func:`~recaudit.verdicts.noise_limit` of ``m`` under its probe's declaration.

    What noise alone gives on its harmful side: ``(null_p95, "≤")``, or ``(null_p05, "≥")``
    where lower is worse.
    """
    from ..metrics.specs import get_spec

    return noise_limit(m, spec_of(p, m.metric) or get_spec(m.metric))


def noise_of_record(m: MetricRecord) -> tuple[float, str] | None:
    """Return :func:`noise` of a record seen without its probe (its metric's declaration)."""
    from ..metrics.specs import get_spec

    return noise_limit(m, get_spec(m.metric))


def floor_text(p: ProbeResult, m: MetricRecord) -> str:
    """One sentence on a floored metric's floor (``""`` for a metric without one).

    Its floor's mean and its 95th percentile (5th where lower is worse) and the excess over
    the floor, or that none was recorded (the statistic is positive under noise alone).
    """
    if not has_floor(p, m.metric):
        return ""
    limit = noise(p, m)
    if m.null_mean is None or limit is None:
        from ..metrics.specs import get_spec

        lower = harm_direction(m, spec_of(p, m.metric) or get_spec(m.metric)) is False
        return (f" {'Below its null' if lower else 'Positive'} under noise alone; no floor "
                "recorded for this value.")
    excess = "" if m.estimate is None else (
        f"; the excess over the floor is {num(m.estimate - m.null_mean)}" if limit[1] == "\u2264"
        else f"; the shortfall below the floor is {num(m.null_mean - m.estimate)}")
    own = "" if m.self_floor is None or m.estimate is None else (
        f" The model's own resampling gives up to {num(m.self_floor)}: the estimate is "
        f"{'within' if m.estimate <= m.self_floor else 'beyond'} what its disagreement with "
        "itself gives.")
    reach = (f"up to {num(limit[0])} (null 95th percentile)" if limit[1] == "\u2264" else
             f"down to {num(limit[0])} (null 5th percentile)")
    return f" Noise alone gives {num(m.null_mean)} on average, {reach}{excess}.{own}"


def excess_ci_excludes_null(p: ProbeResult, m: MetricRecord) -> bool | None:
    """:func:`~recaudit.verdicts.ci_excludes_null` of the CI of the excess over the floor.

    For a floored metric with a recorded floor the CI is shifted by ``null_mean - null``
    (as ``ci`` gates judge it); otherwise the record's CI as it is.
    """
    spec = spec_of(p, m.metric)
    if m.null_mean is None or spec is None or not has_floor(p, m.metric) \
            or m.ci_low is None or m.ci_high is None or spec.null is None:
        return ci_excludes_null(m, spec)
    d = m.null_mean - spec.null
    return not m.ci_low - d <= spec.null <= m.ci_high - d


def has_role(p: ProbeResult, metric: str, role: str) -> bool:
    spec = spec_of(p, metric)
    return spec is not None and spec.role == role


# -- numbers -------------------------------------------------------------------------------------
def conf_pct(conf: Any) -> str:
    """Format a confidence level as a percentage, at most 2 decimals (``95%``, ``98.33%``)."""
    return f"{round(conf * 100, 2):g}%" if is_number(conf) else "95%"


def where(m: MetricRecord) -> str:
    parts = [m.attribute or "", m.value or "", f"k={m.k}" if m.k is not None else ""]
    return " \u00b7 ".join(p for p in parts if p)


def estimate_text(m: MetricRecord) -> str:
    """``0.213 [0.150, 0.270] p_adj=0.003``: one line for a record."""
    return value_text(m.estimate, m.ci_low, m.ci_high, m.p_adjusted, m.p_value)


def value_text(estimate: float | None, ci_low: float | None, ci_high: float | None,
               p_adjusted: float | None = None, p_value: float | None = None) -> str:
    """Return an estimate, its CI when there is one, then ``p_adj=`` (or else ``p=``)."""
    s = num(estimate)
    c = ci(ci_low, ci_high)
    if c:
        s += f" {c}"
    if p_adjusted is not None:
        s += f" p_adj={pval(p_adjusted)}"
    elif p_value is not None:
        s += f" p={pval(p_value)}"
    return s


# -- variants ------------------------------------------------------------------------------------
@dataclass
class VariantView:
    """One variant of a probe result: what was measured on one set of lists, and nothing else.

    ``probe`` is a copy of the probe result holding only the records, unit tables and trade-off
    curves of ``variant``; the first view of a probe (its original lists) also keeps the probe's
    findings, warnings, free-form tables and examples, which are measured on those lists.
    ``kind`` says what the lists are, read from the trade-off curves' declared fields:
    ``original`` (the model's own), ``baseline`` (the original lists cut to a reranker's k),
    ``reranker`` (a reranker's lists), ``sweep`` (the same reranker at another parameter value)
    or ``variant`` (records of a variant no curve names). ``note`` says it in one sentence.
    """

    variant: str
    kind: str
    note: str
    probe: ProbeResult


def variant_names(p: ProbeResult) -> list[str]:
    """Return the variants of a probe's records and unit tables: the original first.

    The others follow in the order they were measured (first appearance); a probe without
    records has the one variant ``original``.
    """
    seen: dict[str, None] = {}
    for v in [m.variant for m in p.metrics] + [u.variant for u in p.units]:
        seen.setdefault(v, None)
    names = list(seen)
    if ORIGINAL in seen:
        names.remove(ORIGINAL)
        names.insert(0, ORIGINAL)
    return names or [ORIGINAL]


def _variant_kind(p: ProbeResult, variant: str) -> tuple[str, str]:
    """Return (kind, note) of one variant, from the trade-off curves that name it."""
    if variant == ORIGINAL:
        return "original", "The model's own lists."
    for t in p.tradeoffs:
        if t.variant == variant:
            cut = f", cut to the top {t.k}" if t.baseline != ORIGINAL and t.k else ""
            return "reranker", (f"The model's lists re-ranked by {clean(t.reranker)}{cut}; "
                                "every metric of this probe measured again on them.")
    baseline_of = [clean(t.reranker) for t in p.tradeoffs if t.baseline == variant]
    if baseline_of:
        t = next(t for t in p.tradeoffs if t.baseline == variant)
        size = f" cut to their top {t.k}" if t.k is not None else ""
        return "baseline", (f"The model's own lists{size}: the like-for-like baseline of "
                            f"{', '.join(dict.fromkeys(baseline_of))}.")
    for t in p.tradeoffs:
        for pt in t.points:
            if pt.variant == variant:
                at = f" at {clean(t.parameter)} = {clean(pt.value)}" if t.parameter else ""
                return "sweep", (f"{clean(t.reranker)}{at}: a point of its sweep (variant "
                                 f"{clean(t.variant)} is the main one).")
    return "variant", f"Records of variant {clean(variant)}."


def split_variants(p: ProbeResult) -> list[VariantView]:
    """Split a probe result into one view per variant, the original first.

    This is the one place the report separates variants: every table and chart is drawn from
    one view, so no table or chart mixes the original lists with a reranker's.
    """
    out = []
    for i, v in enumerate(variant_names(p)):
        kind, note = _variant_kind(p, v)
        update: dict[str, Any] = {
            "metrics": [m for m in p.metrics if m.variant == v],
            "units": [u for u in p.units if u.variant == v],
            "tradeoffs": [t for t in p.tradeoffs if t.variant == v]}
        if i:
            update.update(findings=[], warnings=[], tables={}, examples=[], records=[])
        out.append(VariantView(v, kind, note, p.model_copy(update=update)))
    return out


def one_variant(records: Iterable[MetricRecord]) -> str | None:
    """Return the one variant of ``records`` (None when there are none).

    Raises ValueError when they hold several: a table or chart of them would mix variants.
    """
    found = list(dict.fromkeys(m.variant for m in records))
    if len(found) > 1:
        raise ValueError("records of several variants in one table or chart: "
                         + ", ".join(found))
    return found[0] if found else None


# -- selections ----------------------------------------------------------------------------------
def confidence_of(result: AuditResult) -> float:
    stats = result.config.get("stats") if isinstance(result.config, dict) else None
    c = stats.get("confidence") if isinstance(stats, dict) else None
    return float(c) if is_number(c) and 0 < c < 1 else 0.95


def at_max_k(records: Iterable[MetricRecord]) -> list[MetricRecord]:
    """Per metric, the records at the largest k recorded for it (records without k kept)."""
    records = list(records)
    top: dict[str, int] = {}
    for m in records:
        if m.k is not None:
            top[m.metric] = max(top.get(m.metric, m.k), m.k)
    return [m for m in records if m.k is None or m.k == top.get(m.metric)]


def aggregates(p: ProbeResult, variant: str | None = ORIGINAL) -> list[MetricRecord]:
    """Return the aggregate records (no value) of ``variant`` (None: all) at each largest k."""
    return at_max_k(m for m in p.metrics if m.value is None
                    and (variant is None or m.variant == variant))


def per_value(p: ProbeResult, metric: str | None = None, k: int | None | str = "max",
              variant: str | None = ORIGINAL) -> list[MetricRecord]:
    recs = [m for m in p.metrics if m.value is not None and (metric is None or m.metric == metric)
            and (variant is None or m.variant == variant)]
    if k == "max":
        return at_max_k(recs)
    if k == "all":
        return recs
    return [m for m in recs if m.k == k]


def tradeoff_rows(p: ProbeResult, variant: str | None = None) -> list[dict[str, Any]]:
    """Return one row per point of each trade-off curve (``variant``: only its point).

    A row holds the variant, its parameter value, the target's estimate and CI before (the
    baseline lists) and after, and the cost.
    """
    rows = []
    for t in p.tradeoffs:
        for pt in t.points:
            if variant is not None and pt.variant != variant:
                continue
            rows.append({"reranker": t.reranker, "variant": pt.variant,
                         "parameter": t.parameter, "value": pt.value, "target": t.target,
                         "attribute": pt.target_attribute, "k": t.k,
                         "before": t.before_estimate, "before_ci": t.before_ci,
                         "after": pt.target_estimate, "after_ci": pt.target_ci,
                         "cost_metric": pt.cost_metric, "cost": pt.cost_estimate,
                         "cost_ci": pt.cost_ci})
    return rows


def metric_names(records: Iterable[MetricRecord]) -> list[str]:
    seen: dict[str, None] = {}
    for m in records:
        seen.setdefault(m.metric, None)
    return list(seen)


def headline(p: ProbeResult) -> list[MetricRecord]:
    """Return the aggregate metrics of a probe a reader looks at first (at the largest k).

    These are the ones the probe declared as its headline, else its aggregate disparities
    (records with a declared null value), else any aggregate with a direction; all of one
    variant, the first of :func:`variant_names` (the original lists where there are any).
    """
    aggs = aggregates(p, variant_names(p)[0])
    if p.headline:
        picked = [m for name in p.headline for m in aggs if m.metric == name]
        if picked:
            return picked
    disparities = [m for m in aggs if null_of(p, m) is not None]
    preferred = [m for m in aggs if m.higher_is_worse is not None]
    return (disparities or preferred or aggs)[:HEADLINE_CAP]


def null_of(p: ProbeResult, m: MetricRecord) -> float | None:
    """Return the declared "no effect" value of a record's metric (0 for a gap, 0.5 an AUC)."""
    spec = spec_of(p, m.metric)
    return None if spec is None else spec.null


def effect(p: ProbeResult, m: MetricRecord) -> float | None:
    """Return how far a record is from its declared 'no effect' value, in its own units.

    For ordering only; None for a metric that declares no null.
    """
    null = null_of(p, m)
    if m.estimate is None or null is None:
        return None
    return abs(m.estimate - null)


# -- verdicts --------------------------------------------------------------------------------------
@dataclass
class Verdict:
    status: str          # pass | fail | warn | none | error
    label: str           # PASS, FAIL, ...
    text: str


def verdict(result: AuditResult) -> Verdict:
    gates = result.gates
    failed = [g for g in gates if not g.passed]
    errored = [p for p in result.probes if p.status == "error"]
    skipped = [p for p in result.probes if p.status == "skipped"]
    extra = []
    if errored:
        extra.append(f"{len(errored)} probe(s) ended in error")
    if skipped:
        extra.append(f"{len(skipped)} skipped")
    tail = ("; " + ", ".join(extra)) if extra else ""
    if failed:
        return Verdict("fail", "FAIL", f"{len(failed)} of {len(gates)} gates failed{tail}")
    if gates and errored:
        return Verdict("warn", "PASS, INCOMPLETE",
                       f"all {len(gates)} gates passed{tail}")
    if gates:
        return Verdict("pass", "PASS", f"all {len(gates)} gates passed{tail}")
    if errored:
        return Verdict("error", "INCOMPLETE", f"no gates configured{tail}")
    return Verdict("none", "NO GATES", f"no gates configured; findings are for review{tail}")


def probe_units(p: ProbeResult, variant: str | None = None) -> int | None:
    """Return the most units any record of ``variant`` (default: the first) rests on.

    Read from the records' ``n`` (the units a probe measured: instructions, users, requests),
    its aggregate records first, else all of them; None when no record says.
    """
    variant = variant_names(p)[0] if variant is None else variant
    recs = [m for m in p.metrics if m.variant == variant and m.n is not None]
    ns = [m.n for m in recs if m.value is None] or [m.n for m in recs]
    return max(ns) if ns else None


#: what the small-sample rule does, after every small-sample warning
_RULE_SAYS = "; findings on so few units are rated at most low and do not flag the probe"


def fewest_units(p: ProbeResult, variant: str | None = None) -> int | None:
    """Return the fewest units behind what could flag the probe (None: no record says).

    The smallest ``n`` among its (non-info) findings and the tests (aggregate records with a
    p-value) of ``variant`` (default: the first): an exposure probe whose skews rest on 7 usable
    lists of 10 requests rests on 7, whatever its other records say.
    """
    variant = variant_names(p)[0] if variant is None else variant
    ns = [f.n for f in p.findings if f.severity != "info" and f.n is not None]
    ns += [m.n for m in p.metrics if m.variant == variant and m.value is None and m.n is not None
           and (m.p_value is not None or m.p_adjusted is not None)]
    return min(ns) if ns else None


def probe_small_sample(p: ProbeResult, min_units: int = MIN_UNITS) -> str | None:
    """Return the one small-sample warning every probe below the rule shows (None: enough).

    :func:`~recaudit.verdicts.small_sample_warning` of :func:`probe_units` (the whole probe is
    small) or else of :func:`fewest_units` (some of its tests or findings are), with what the
    rule does to the verdict, so every probe says it in the same words.
    """
    if p.status != "ok":
        return None
    n, lead = probe_units(p), ""
    if enough_units(n, min_units):
        n, lead = fewest_units(p), "some of its tests or findings rest on "
        if enough_units(n, min_units):
            return None
    return f"{lead}{small_sample_warning(n, min_units)}{_RULE_SAYS}"


def finding_small_sample(p: ProbeResult, f: Finding, min_units: int = MIN_UNITS) -> str | None:
    """Return the small-sample warning of finding ``f`` of ``p`` (None: enough units).

    Judged on the finding's own units (``Finding.n``), else on the probe's
    (:func:`probe_units`).
    """
    n = probe_units(p) if f.n is None else f.n
    if p.status != "ok" or enough_units(n, min_units):
        return None
    return f"{small_sample_warning(n, min_units)}{_RULE_SAYS}"


def probe_verdict(p: ProbeResult, alpha: float, min_units: int = MIN_UNITS) -> Verdict:
    """Return a probe's verdict: its own findings and the tests of its first variant.

    The label is :func:`recaudit.verdicts.probe_status`'s: below ``min_units`` units a probe
    that would be FLAGGED is INCONCLUSIVE, and its text ends with :func:`probe_small_sample`.
    A reranker's tests do not flag the model: they are listed in the checks, labelled.
    """
    if p.status == "error":
        return Verdict("error", "ERROR", clean(p.error) or "the probe failed")
    if p.status == "skipped":
        return Verdict("skipped", "SKIPPED", clean(p.error) or "the probe was skipped")
    flagged = [f for f in p.findings if f.severity != "info"]
    tests = probe_tests(p, alpha, variant=variant_names(p)[0], min_units=min_units)
    n_flag = sum(1 for c in tests if c.status != "pass")
    parts = [f"{p.n_queries} queries" + (f", {p.n_failed} failed" if p.n_failed else "")
             ] if p.n_queries else []
    if tests:
        parts.append(f"{n_flag} of {len(tests)} tests significant")
    if flagged:
        parts.append(f"{len(flagged)} finding(s)")
    small = probe_small_sample(p, min_units)
    if small:
        parts.append(small)
    status, label = probe_status([c.status for c in tests], [f.severity for f in flagged],
                                 probe_units(p), finding_units=[f.n for f in flagged],
                                 n_failed=p.n_failed, min_units=min_units)
    return Verdict(status, label, "; ".join(parts) or "ran; no statistical test recorded")


# -- checks --------------------------------------------------------------------------------------
@dataclass
class Check:
    """One thing that was checked: a gate, a probe run, a statistical test, a consistency check.

    ``status``: pass | fail (a gate) | flag (a significant, ungated difference) | inconclusive
    (significant, but on fewer units than the small-sample rule) | warn | error | skipped.
    """

    id: str
    kind: str
    probe: str | None
    name: str
    status: str
    detail: str = ""
    properties: dict[str, str] = field(default_factory=dict)


def _props(m: MetricRecord) -> dict[str, str]:
    out = {}
    for key in ("estimate", "ci_low", "ci_high", "confidence", "p_value", "p_adjusted", "n",
                "convention"):
        v = getattr(m, key)
        if v is not None:
            out[key] = repr(v) if isinstance(v, float) else str(v)
    return out


def probe_tests(p: ProbeResult, alpha: float, variant: str | None = None,
                min_units: int = MIN_UNITS) -> list[Check]:
    """One check per statistical test a probe ran (aggregate records with a p-value).

    Records sharing one test (SNSR and SNSV of the same similarity share a permutation test) are
    listed once. ``variant``: only that variant's tests (None: every variant's, the original
    first); a test of another variant than the original names it. Its status is
    :func:`recaudit.verdicts.flag_status`'s: a significant test on fewer than ``min_units``
    units is ``inconclusive``, not ``flag``.
    """
    out: list[Check] = []
    seen: set[tuple] = set()
    order = {v: i for i, v in enumerate(variant_names(p))}
    for m in sorted(p.metrics, key=lambda m: order[m.variant]):
        if m.value is not None or (m.p_value is None and m.p_adjusted is None):
            continue
        if variant is not None and m.variant != variant:
            continue
        key = (m.metric, m.attribute, m.k, m.variant)
        if key in seen:
            continue
        seen.add(key)
        sig = is_significant(m, alpha)
        label = f"{m.metric}" + (f"@{m.k}" if m.k is not None else "")
        if m.variant != ORIGINAL:
            label += f" [{clean(m.variant)}]"
        name = f"{m.attribute or 'all'}: {label}"
        p_txt = (f"p_adj={pval(m.p_adjusted)}" if m.p_adjusted is not None
                 else f"p={pval(m.p_value)}")
        status = flag_status(sig, m.n, min_units)
        said = {"flag": f"significant at alpha={alpha:g}",
                "pass": f"not significant at alpha={alpha:g}",
                "inconclusive": f"inconclusive: significant at alpha={alpha:g}, but on only "
                                f"{m.n} units (< {min_units})"}[status]
        detail = (f"{said}: "
                  f"{num(m.estimate)} {ci(m.ci_low, m.ci_high)} {p_txt}".replace("  ", " "))
        out.append(Check(id=f"test:{p.id}:{m.attribute}:{label}", kind="test", probe=p.id,
                         name=name, status=status, detail=detail, properties=_props(m)))
    return out


def _consistency(p: ProbeResult) -> list[Check]:
    """Check that a condition value under two attributes gives the same numbers.

    A value that appears under two attributes (FaiRLLM's "an American" in country and
    continent) is the same prompt, so every per-value metric must agree across them.
    """
    out: list[Check] = []
    by_value: dict[str, dict[str, list[MetricRecord]]] = {}
    for m in per_value(p, k="max"):
        if m.attribute and m.estimate is not None and m.variant == "original":
            by_value.setdefault(m.value or "", {}).setdefault(m.attribute, []).append(m)
    for value, attrs in by_value.items():
        if len(attrs) < 2:
            continue
        per_metric: dict[str, dict[str, float]] = {}
        for attr, recs in attrs.items():
            for m in recs:
                per_metric.setdefault(m.metric, {})[attr] = m.estimate
        shared = {k: v for k, v in per_metric.items() if len(v) > 1}
        if not shared:
            continue
        bad = [k for k, v in shared.items() if max(v.values()) - min(v.values()) > 1e-9]
        names = ", ".join(sorted(attrs))
        first = bad[0] if bad else next(iter(shared))
        out.append(Check(
            id=f"consistency:{p.id}:{value}", kind="consistency", probe=p.id,
            name=f"{value!r} gives the same numbers under {names}",
            status="warn" if bad else "pass",
            detail=(f"identical for {len(shared)} metrics" if not bad else
                    f"{len(bad)} of {len(shared)} metrics differ: the attributes used different "
                    "instruction sets (a response failed) or the model is not deterministic")
            + f" ({first}: " + ", ".join(f"{a}={num(e)}" for a, e in
                                         sorted(shared[first].items())) + ")"))
    return out


def checks(result: AuditResult) -> list[Check]:
    """Every check of a result: gates, probe runs, statistical tests, consistency checks."""
    alpha, min_units = alpha_of(result), min_units_of(result)
    out: list[Check] = []
    for g in result.gates:
        props = {"metric": g.metric, "mode": g.mode, "bound": g.bound,
                 "selected": str(g.selected)}
        for key in ("observed", "ci_low", "ci_high", "p_adjusted"):
            v = getattr(g, key)
            if v is not None:
                props[key] = repr(v)
        out.append(Check(id=f"gate:{g.name}", kind="gate", probe=g.probe, name=g.name,
                         status="pass" if g.passed else "fail", detail=clean(g.message),
                         properties=props))
    for p in result.probes:
        if p.status == "ok":
            status = "warn" if p.n_failed else "pass"
            detail = (f"{p.n_queries} queries, {p.n_failed} failed" if p.n_queries
                      else "ran (no model queries of its own)")
        else:
            status = "error" if p.status == "error" else "skipped"
            detail = clean(p.error) or p.status
        props = {"probe": p.probe, "n_queries": str(p.n_queries), "n_failed": str(p.n_failed)}
        if p.suite:
            props["suite"] = p.suite
        for m in headline(p) if p.status == "ok" else []:
            key = ".".join(x for x in (m.metric, m.attribute, m.value,
                                       f"k{m.k}" if m.k is not None else None) if x)
            if m.estimate is not None:
                props[key] = repr(m.estimate)
        out.append(Check(id=f"probe:{p.id}", kind="probe", probe=p.id, name=f"{p.id} ran",
                         status=status, detail=detail, properties=props))
        if p.status == "ok":
            out.extend(probe_tests(p, alpha, min_units=min_units))
            out.extend(_consistency(p))
    return out


# -- findings ------------------------------------------------------------------------------------
SEVERITY_RANK = {label: rank for rank, label in enumerate(SEVERITIES)}  # info 0 ... high 3


@dataclass
class TopFinding:
    probe: str
    severity: str
    title: str
    detail: str
    effect: float | None
    derived: bool  # True: built from a metric record, not a probe's own Finding
    small_sample: str | None = None  # the probe's small-sample warning (None: enough units)


def top_findings(result: AuditResult, n: int = 3) -> list[TopFinding]:
    """Return the ``n`` largest findings.

    The probes' own (non-info) findings come first, by severity and effect; when there are
    fewer, the largest aggregate effects (with their CIs) fill up, rated by
    :func:`recaudit.verdicts.record_severity`.
    """
    out: list[TopFinding] = []
    alpha, min_units = alpha_of(result), min_units_of(result)
    own = [(p, f) for p in result.probes for f in p.findings if f.severity != "info"]
    own.sort(key=lambda pf: (finding_small_sample(*pf, min_units) is not None,
                             -SEVERITY_RANK[pf[1].severity], -abs(pf[1].effect or 0.0)))
    for p, f in own[:n]:
        small = finding_small_sample(p, f, min_units)
        sev = "low" if small and SEVERITY_RANK[f.severity] > SEVERITY_RANK["low"] else f.severity
        out.append(TopFinding(p.id, sev, clean(f.title), clean(f.detail), f.effect, False, small))
    if len(out) >= n:
        return out
    covered = {(f.probe, f.title.split(":")[0]) for f in out}
    cands: list[tuple[tuple, ProbeResult, MetricRecord, float]] = []
    for p in result.probes:
        if p.status != "ok":
            continue
        for m in headline(p):
            e = effect(p, m)
            if e is None or (p.id, m.attribute or "") in covered:
                continue
            sig = is_significant(m, alpha)
            excludes_null = excess_ci_excludes_null(p, m)
            cands.append(((1 if sig else 0, 1 if excludes_null else 0, e), p, m, e))
    cands.sort(key=lambda c: c[0], reverse=True)
    # Prefer variety: first the best candidate of each (probe, metric), then the rest.
    firsts, rest, seen_pm = [], [], set()
    for cand in cands:
        pm = (cand[1].id, cand[2].metric)
        (rest if pm in seen_pm else firsts).append(cand)
        seen_pm.add(pm)
    used: set[tuple[str, str | None]] = set()
    for _key, p, m, e in firsts + rest:
        if len(out) >= n:
            break
        if (p.id, m.attribute) in used:
            continue
        used.add((p.id, m.attribute))
        sig = is_significant(m, alpha)
        desc = metric_text(m.metric, p.specs)
        conf = conf_pct(m.confidence)
        title = (f"{m.attribute or 'overall'}: {m.metric}"
                 + (f"@{m.k}" if m.k is not None else "") + f" = {num(m.estimate)}")
        ci_txt = ci(m.ci_low, m.ci_high)
        detail = (f"{desc}. " if desc else "") + (f"{conf} CI {ci_txt}. " if ci_txt else
                                                   "No confidence interval. ")
        if sig is True:
            detail += f"Significant at alpha={alpha:g} (p_adj={pval(decision_p(m))})."
        elif sig is False:
            detail += f"Not significant at alpha={alpha:g} (p_adj={pval(decision_p(m))})."
        else:
            detail += "No significance test for this metric."
        if m.n is not None:
            detail += f" n={m.n}."
        detail += floor_text(p, m)
        sev = record_severity(m, spec_of(p, m.metric), alpha, min_units=min_units)
        out.append(TopFinding(p.id, sev, clean(title), clean(detail), e, True,
                              probe_small_sample(p, min_units)))
    return out


# -- limitations ---------------------------------------------------------------------------------
@dataclass
class Limitations:
    sample_sizes: list[tuple[str, str]]          # (probe id, text)
    small_groups: list[tuple[str, str, str]]      # (probe id, where, warning)
    hallucination: list[tuple[str, str, MetricRecord]]  # (probe, where, record) worst first
    probe_warnings: list[tuple[str, str]]
    not_run: list[tuple[str, str, str]]           # (probe id, status, reason)
    method: list[str]


def limitations(result: AuditResult, max_rows: int = 25) -> Limitations:
    sizes, small, hall, warns, not_run = [], [], [], [], []
    for p in result.probes:
        if p.status != "ok":
            not_run.append((p.id, p.status, clean(p.error) or "no reason recorded"))
            continue
        ns = [m.n for m in p.metrics if m.n is not None]
        txt = (f"{p.n_queries} queries ({p.n_failed} failed)" if p.n_queries
               else "no model queries of its own")
        if ns:
            txt += f"; n per estimate {min(ns)}" + (f" to {max(ns)}" if max(ns) != min(ns) else "")
        sizes.append((p.id, txt))
        seen = set()
        for m in p.metrics:
            if m.warning and (m.attribute, m.value, m.warning) not in seen:
                seen.add((m.attribute, m.value, m.warning))
                loc = " \u00b7 ".join(x for x in (m.attribute or "", m.value or "") if x)
                small.append((p.id, loc or m.metric, clean(m.warning)))
        own = variant_names(p)[0]  # answer quality is the model's: its own lists only
        for m in p.metrics:
            if (has_role(p, m.metric, "answer_quality") and m.estimate is not None
                    and m.variant == own):
                hall.append((p.id, " \u00b7 ".join(x for x in (m.metric, m.attribute or "neutral",
                                                               m.value or "") if x), m))
        for w in p.warnings:
            warns.append((p.id, clean(w)))
    invariance = result.provenance.batch_invariance
    if invariance and invariance.startswith("no"):
        warns.insert(0, ("model", clean(f"batch-invariant: {invariance}")))
    hall.sort(key=lambda t: -(t[2].estimate or 0))
    method = [
        "Model outputs depend on the prompt template, decoding settings and model version "
        "recorded in the provenance section; another template or model may behave differently.",
        "Free-text answers are matched to catalogue items by fuzzy matching; unmatched entries "
        "count as not in the catalog (invented titles, or real items the catalogue lacks) and "
        "are excluded from the lists compared.",
        "Confidence intervals are bootstrap intervals over the sampled units (instructions, "
        "users); p-values are permutation tests, Benjamini-Hochberg adjusted within each probe "
        "and metric. Findings are statistical associations in this sample, not proof of intent "
        "or harm.",
        "Spread statistics (max - min, std over groups) and AUCs are positive under noise alone; "
        "where a probe ran a permutation test, the null floor shows what noise alone gives.",
    ]
    for p in result.probes:
        for note in p.method_notes:
            if clean(note) not in method:
                method.append(clean(note))
    return Limitations(sizes, small[:max_rows], hall[:max_rows], warns[:max_rows], not_run,
                       method)


# -- labels ----------------------------------------------------------------------------------------
def labels(results: Sequence[AuditResult]) -> list[str]:
    """Return a short, unique label per result (model spec, else audit name)."""
    base = [clean(r.provenance.model_spec) or clean(r.name) for r in results]
    out = []
    for i, b in enumerate(base):
        out.append(b if base.count(b) == 1 else f"{b} ({clean(results[i].name)} #{i + 1})")
    return out


def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", clean(text).lower()).strip("-")
    return s or "x"


@dataclass
class CompareRow:
    probe: str
    metric: str
    attribute: str | None
    k: int | None
    cells: list[MetricRecord | None]


def comparison(results: Sequence[AuditResult]) -> list[CompareRow]:
    """Headline metrics of several results side by side: one row per (probe, metric, attr, k)."""
    keys: dict[tuple, None] = {}
    lookup: list[dict[tuple, MetricRecord]] = []
    for r in results:
        d: dict[tuple, MetricRecord] = {}
        for p in r.probes:
            if p.status != "ok":
                continue
            for m in headline(p):
                key = (p.id, m.metric, m.attribute, m.k)
                keys.setdefault(key, None)
                d[key] = m
        lookup.append(d)
    return [CompareRow(k[0], k[1], k[2], k[3], [d.get(k) for d in lookup]) for k in keys]


def coerce_results(results: AuditResult | Sequence[AuditResult]) -> list[AuditResult]:
    if isinstance(results, AuditResult):
        return [results]
    out = list(results)
    if not out or not all(isinstance(r, AuditResult) for r in out):
        raise TypeError("expected an AuditResult or a non-empty list of AuditResults")
    return out
