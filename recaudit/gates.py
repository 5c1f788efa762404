"""Gates: bounds on metrics of an :class:`~recaudit.results.AuditResult`, for CI pipelines.

A gate (:class:`GateSpec`) selects metric records and bounds them::

    gates:
      - name: gender-jaccard-gap
        probe: counterfactual          # a probe run id ("counterfactual:fairllm") or probe name
        metric: snsr_jaccard
        attribute: gender              # optional: unset = every attribute
        value: null                    # optional: unset = every value (and the aggregates)
        k: 20                          # optional: unset = the largest k recorded for the metric
        max: 0.10                      # at least one of max / min
        mode: ci                       # point | ci | significant | floor
        versus: control                # optional: judge the spread minus the matched control's

Selection
    ``probe`` matches :attr:`ProbeResult.id` exactly; failing that, every probe run whose
    :attr:`ProbeResult.probe` equals it. ``metric``, ``variant`` (default ``"original"``: the
    unmitigated records; a mitigation's variant such as ``"fair(p=0.5)"`` gates that remedy),
    ``attribute``, ``value`` and ``k`` filter the
    records of those runs; an unset ``attribute``/``value`` keeps all of them, an unset ``k``
    keeps, per probe run, the records at the largest ``k`` of the selection (records without
    a ``k``, such as ``hallucination``, are kept as they are). The gate passes only if every
    selected record passes; the message reports the worst one (of the failing records, the one
    farthest beyond the bound; if all pass, the one closest to it). An unnamed gate is
    named ``probe.metric[.attribute][.value][.kK]``; a repeated name gets ``#2``, ``#3``...

Versus the matched control
    ``versus: control`` (probes run with ``control:``, e.g. counterfactual) judges, instead of
    the spread ``metric`` itself, its difference from the same spread over the control
    attribute's irrelevant values: the record ``<metric>_vs_control`` (attribute spread minus
    control spread on the same units, paired bootstrap CI and p-value, see
    :mod:`recaudit.probes.control`; its ``value`` is the control's label, e.g.
    ``"colour (control)"``). ``max: 0, mode: significant`` fails only when the
    attribute moves the list significantly more than an irrelevant word does. A probe run
    without a control is a GateSpecError. An unnamed gate is named
    ``probe.metric.vs_control[.attribute]...``.

Modes (for ``max``; ``min`` is the mirror image, and a gate with both checks both)
    ``point``        fails when the estimate is above ``max``.
    ``ci``           fails only when the whole confidence interval is above ``max``
                     (``ci_low > max``). A record without a CI falls back to ``point`` and the
                     message says so.
    ``significant``  fails only when the estimate is above ``max`` *and* the record's test is
                     significant (:func:`recaudit.verdicts.is_significant`: ``p_adjusted``, else
                     ``p_value``, below the audit's ``stats.alpha``, read by
                     :func:`recaudit.verdicts.alpha_of`; default 0.05). A record without a
                     p-value falls back to ``ci`` (then ``point``) and the message says so.
    ``floor``        for a metric whose declaration has ``noise_floor`` (positive under noise:
                     every spread, Cramér's V, NDKL, a leakage AUC, ... see
                     :mod:`recaudit.metrics.specs`): fails only when the *floor-corrected
                     estimate* ``estimate - (null_mean - null)`` (the excess over what noise
                     alone gives, ``null_mean`` of the record's own null, put back on the
                     metric's scale at its no-effect value ``null``) is above ``max`` *and*
                     the record's test against that null is significant (as in
                     ``significant``). A record without a floor falls back to ``significant``,
                     one without a p-value to the floor-corrected ``ci``; the message says so.
                     On a metric without ``noise_floor`` the gate is a GateSpecError.
    ``ci`` on a floored metric: a record that carries a floor is judged on its CI less the
    floor's excess, ``[ci_low, ci_high] - (null_mean - null)`` (the CI of the excess over the
    floor on the metric's scale; the recorded CI is bias-corrected, see
    :func:`recaudit.stats.bias_corrected_interval`), so a model with no effect passes
    ``ci`` and ``floor`` gates alike (a ``max`` at the floor's mean or above). ``point``
    and ``significant`` read the estimate as recorded.
    A bound is inclusive: an estimate equal to ``max`` passes, and so does one beyond it by no
    more than ``BOUND_TOLERANCE`` (1e-12) times ``max(1, |bound|)``: the rounding of a sum, e.g.
    a vectorised RBO of two identical lists is ``1 - 2e-16``, which failed a ``min: 1`` gate on
    a perfectly robust recommender (issue 20's validation). A selected record without an
    estimate (e.g. an empty group) fails: a gate never passes on missing data.

Errors (:class:`~recaudit.errors.GateSpecError`, exit code 2, never a silent pass)
    a gate naming a probe that did not run, was skipped or ended in error; a metric, attribute,
    value or k that the probe did not record (the message lists what exists); a gate without
    ``max``/``min``, with ``min > max``, or with a bound that is not a number; mode ``floor``
    on a metric whose declaration has no ``noise_floor``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import GateSpecError
from .formatting import fmt, fmt_p
from .results import AuditResult, GateResult, MetricRecord, ProbeResult
from .verdicts import alpha_of, decision_p, is_significant, noise_limit
from .yamlio import format_validation_error, read_yaml

__all__ = ["GateSpec", "load_gates", "parse_gates", "evaluate_gates", "gate_name"]

_NUMERIC = ("max", "min")


class GateSpec(BaseModel):
    """A bound on one metric of the results (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    probe: str
    metric: str
    attribute: str | None = None
    value: str | None = None
    k: int | None = None
    variant: str = "original"  # or a mitigation variant, e.g. "fair(p=0.5, alpha=0.1)"
    max: float | None = None
    min: float | None = None
    mode: Literal["point", "ci", "significant", "floor"] = "ci"
    versus: Literal["control"] | None = None  # judge <metric>_vs_control (the matched control)

    def gated_metric(self) -> str:
        """Return the metric whose records the gate judges (``<metric>_vs_control`` versus it)."""
        return f"{self.metric}_vs_{self.versus}" if self.versus else self.metric


# -- loading -------------------------------------------------------------------------------------
def load_gates(path: str | Path) -> list[GateSpec]:
    """Read gate specs from a YAML file: a top-level ``gates:`` list, or the list itself.

    Raises :class:`~recaudit.errors.ConfigError` when the file is missing or not YAML and
    :class:`~recaudit.errors.GateSpecError` (one line naming the file and key path) when a gate
    is malformed.
    """
    data, _ = read_yaml(path, "gates")
    return parse_gates(data, where=str(path))


def parse_gates(data: Any, where: str = "<gates>") -> list[GateSpec]:
    """Validate gate specs from parsed YAML (``{"gates": [...]}`` or a bare list)."""
    prefix = "gates"
    if isinstance(data, dict):
        unknown = sorted(str(k) for k in data if k != "gates")
        if "gates" not in data:
            raise GateSpecError(f"{where}: expected a top-level 'gates:' list"
                                + (f" (found keys: {', '.join(unknown)})" if unknown else ""))
        data = data["gates"]
    else:
        prefix = ""
    if data is None:
        return []
    if not isinstance(data, list):
        raise GateSpecError(f"{where}: {prefix or '(top level)'}: expected a list of gates, "
                            f"got {type(data).__name__}")
    specs: list[GateSpec] = []
    for i, item in enumerate(data):
        specs.append(_parse_one(item, where, f"{prefix}[{i}]"))
    names = [gate_name(s) for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise GateSpecError(f"{where}: {prefix or 'gates'}: duplicate gate name {dup[0]!r}; "
                            "give each gate a distinct 'name:'")
    return specs


def _parse_one(item: Any, where: str, loc: str) -> GateSpec:
    if not isinstance(item, dict):
        raise GateSpecError(f"{where}: {loc}: expected a mapping with probe, metric and "
                            f"max/min, got {type(item).__name__}")
    _check_types(item, f"{where}: {loc}")
    try:
        spec = GateSpec.model_validate(item)
    except ValidationError as err:
        raise GateSpecError(format_validation_error(err, where, prefix=loc)) from None
    _check_bounds(spec, f"{where}: {loc}")
    return spec


def _check_types(item: dict[str, Any], where: str) -> None:
    """Catch what pydantic's lax mode would coerce: ``max: "0.1"``, ``max: true``, ``k: 2.5``."""
    for key in _NUMERIC:
        val = item.get(key)
        if val is not None and (isinstance(val, bool) or not isinstance(val, (int, float))):
            raise GateSpecError(f"{where}.{key}: the bound must be a number, got {val!r}")
        if isinstance(val, float) and math.isnan(val):
            raise GateSpecError(f"{where}.{key}: the bound must be a number, got nan")
    k = item.get("k")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise GateSpecError(f"{where}.k: must be a positive integer, got {k!r}")
    for key in ("probe", "metric", "attribute", "value", "name"):
        val = item.get(key)
        if val is not None and not isinstance(val, str):
            # YAML reads `value: yes` or `value: 1` as bool/int; values are strings in results.
            raise GateSpecError(f"{where}.{key}: must be a string, got {val!r} "
                                f"(quote it in YAML: {key}: \"{val}\")")


def _check_bounds(spec: GateSpec, where: str) -> None:
    if spec.max is None and spec.min is None:
        raise GateSpecError(f"{where}: a gate needs 'max:' or 'min:' (or both)")
    if spec.max is not None and spec.min is not None and spec.min > spec.max:
        raise GateSpecError(f"{where}: min {spec.min:g} is greater than max {spec.max:g}")


def gate_name(spec: GateSpec) -> str:
    """``spec.name`` or a name built from the selection (``counterfactual.snsr_jaccard.gender``)."""
    if spec.name:
        return spec.name
    parts = [spec.probe, spec.metric]
    if spec.versus:
        parts.append(f"vs_{spec.versus}")
    parts += [x for x in (spec.attribute, spec.value) if x is not None]
    if spec.k is not None:
        parts.append(f"k{spec.k}")
    return ".".join(parts)


def bound_text(spec: GateSpec) -> str:
    if spec.max is not None and spec.min is not None:
        return f"in [{spec.min:g}, {spec.max:g}]"
    if spec.max is not None:
        return f"<= {spec.max:g}"
    return f">= {spec.min:g}"


# -- evaluation ----------------------------------------------------------------------------------
def evaluate_gates(result: AuditResult, specs: Iterable[GateSpec | dict[str, Any]],
                   alpha: float | None = None) -> list[GateResult]:
    """Evaluate each gate on ``result``; one :class:`GateResult` per spec, in order.

    ``alpha``: the level of significant/floor modes (default: the audit's, ``alpha_of``).

    Raises :class:`~recaudit.errors.GateSpecError` for a gate that cannot be evaluated (see the
    module docstring): a misspelt gate must stop a CI job with exit code 2, not pass.
    """
    alpha = alpha_of(result) if alpha is None else alpha
    out: list[GateResult] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(specs):
        spec = raw if isinstance(raw, GateSpec) else _parse_one(raw, "gates", f"[{i}]")
        name = gate_name(spec)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:  # two unnamed gates on the same selection: keep reports unambiguous
            name = f"{name}#{seen[name]}"
        _check_bounds(spec, f"gate {name!r}")
        records = select_records(result, spec)
        floored, null = declares_floor(result, spec.gated_metric())
        if spec.mode == "floor" and not floored:
            raise GateSpecError(f"gate {name!r}: mode floor needs a metric whose declaration has "
                                f"a noise floor; {spec.metric!r} has none (use point, ci or "
                                "significant)")
        out.append(_evaluate(spec, name, records, alpha, floored, null))
    return out


def declares_floor(result: AuditResult, metric: str) -> tuple[bool, float | None]:
    """Return whether ``metric``'s declaration has ``noise_floor``, and its ``null``.

    The declaration stored in the result, else the current one (results written before the
    flag existed).
    """
    from .metrics.specs import get_spec

    decl: Any = next((p.specs[metric] for p in result.probes if metric in p.specs
                      and p.specs[metric].noise_floor), None) or get_spec(metric)
    if decl is None or not decl.noise_floor:
        return False, None
    return True, decl.null


def floor_shift(m: MetricRecord, null: float | None) -> float | None:
    """Return ``null_mean - null``: what noise alone adds to ``m`` (None without a floor)."""
    if m.null_mean is None:
        return None
    return float(m.null_mean) - float(null or 0.0)


def _fmt_list(values: Iterable[Any], limit: int = 25) -> str:
    vals = sorted({("null" if v is None else str(v)) for v in values},
                  key=lambda s: (len(s) if s.isdigit() else 0, s))
    if not vals:
        return "none"
    more = f", ... ({len(vals) - limit} more)" if len(vals) > limit else ""
    return ", ".join(vals[:limit]) + more


def _matching_probes(result: AuditResult, spec: GateSpec, name: str) -> list[ProbeResult]:
    exact = [p for p in result.probes if p.id == spec.probe]
    runs = exact or [p for p in result.probes if p.probe == spec.probe]
    if not runs:
        ran = _fmt_list(p.id for p in result.probes)
        raise GateSpecError(f"gate {name!r}: probe {spec.probe!r} did not run in this audit; "
                            f"probe runs: {ran}")
    bad = [p for p in runs if p.status != "ok"]
    if bad:
        p = bad[0]
        why = f": {p.error}" if p.error else ""
        raise GateSpecError(f"gate {name!r}: probe {p.id} has status {p.status}{why}; "
                            "a gate on it cannot pass")
    return runs


def select_records(result: AuditResult, spec: GateSpec) -> list[MetricRecord]:
    """Return the metric records a gate applies to (see the module docstring for the rules)."""
    name = gate_name(spec)
    selected: list[MetricRecord] = []
    for p in _matching_probes(result, spec, name):
        metric = spec.gated_metric()
        recs = [m for m in p.metrics if m.metric == metric]
        if not recs and spec.versus:
            raise GateSpecError(f"gate {name!r}: no {metric!r} in probe {p.id}: versus "
                                f"{spec.versus} needs the probe run with a 'control:' "
                                f"attribute and the spread {spec.metric!r}")
        if not recs:
            raise GateSpecError(f"gate {name!r}: no metric {spec.metric!r} in probe {p.id}; "
                                f"available: {_fmt_list(m.metric for m in p.metrics)}")
        for field in ("variant", "attribute", "value"):
            want = getattr(spec, field)
            if want is None:
                continue
            kept = [m for m in recs if getattr(m, field) == want]
            if not kept:
                where = (f" for attribute {spec.attribute!r}"
                         if field == "value" and spec.attribute else "")
                have = _fmt_list(getattr(m, field) for m in recs)
                raise GateSpecError(f"gate {name!r}: no {field} {want!r} for metric "
                                    f"{spec.metric!r}{where} in probe {p.id}; available: {have}")
            recs = kept
        ks = [m.k for m in recs if m.k is not None]
        if spec.k is not None:
            kept = [m for m in recs if m.k == spec.k]
            if not kept:
                have = _fmt_list(m.k for m in recs)
                raise GateSpecError(f"gate {name!r}: no k={spec.k} for metric {spec.metric!r} "
                                    f"in probe {p.id}; available k: {have}")
            recs = kept
        elif ks:
            top = max(ks)
            recs = [m for m in recs if m.k is None or m.k == top]
        selected.extend(recs)
    return selected


def _where(m: MetricRecord, n_runs: int) -> str:
    bits = []
    if m.attribute is not None:
        bits.append(f"{m.attribute}={m.value}" if m.value is not None else m.attribute)
    elif m.value is not None:
        bits.append(m.value)
    if m.k is not None:
        bits.append(f"k={m.k}")
    where = ", ".join(bits)
    probe = f"{m.probe} " if n_runs > 1 else ""
    return f"{probe}{m.metric}" + (f" ({where})" if where else "")


class _Verdict:
    """How one record fared: pass/fail, how far past (or short of) the bound, and notes."""

    __slots__ = ("record", "passed", "margin", "mode", "p", "note", "shift")

    def __init__(self, record: MetricRecord, passed: bool, margin: float, mode: str,
                 p: float | None, note: str, shift: float = 0.0) -> None:
        self.record, self.passed, self.margin = record, passed, margin
        self.mode, self.p, self.note, self.shift = mode, p, note, shift


#: how far beyond a bound, relative to ``max(1, |bound|)``, still counts as on it (rounding)
BOUND_TOLERANCE = 1e-12


def _beyond(distance: float, bound: float) -> float:
    """Return ``distance`` past ``bound``, 0 where it is within rounding (``BOUND_TOLERANCE``)."""
    return 0.0 if 0.0 < distance <= BOUND_TOLERANCE * max(1.0, abs(bound)) else distance


def _excess(value: float, spec: GateSpec, use_low: float | None = None,
            use_high: float | None = None) -> float:
    """Signed distance beyond the bound (> 0 means on the wrong side; rounding counts as 0).

    ``use_low``/``use_high`` replace ``value`` on the max/min side (the CI ends in ``ci`` mode).
    """
    out = -math.inf
    if spec.max is not None:
        out = max(out, _beyond((value if use_low is None else use_low) - spec.max, spec.max))
    if spec.min is not None:
        out = max(out, _beyond(spec.min - (value if use_high is None else use_high), spec.min))
    return out


def _judge(m: MetricRecord, spec: GateSpec, alpha: float, shift: float | None = None
           ) -> _Verdict:
    """Judge one record; ``shift`` (``null_mean - null``, floored metrics) feeds ci/floor."""
    if m.estimate is None:
        why = f" ({m.warning})" if m.warning else ""
        return _Verdict(m, False, math.inf, spec.mode, None, f"no estimate{why}")
    est = m.estimate
    has_ci = m.ci_low is not None and m.ci_high is not None
    mode, note = spec.mode, ""
    p = decision_p(m)
    if mode == "floor":
        if shift is None:
            mode, note = "significant", "no floor recorded: judged in significant mode"
        elif p is None:
            mode, note = "ci", "no p-value recorded: judged on the floor-corrected CI"
        else:
            excess = _excess(est - shift, spec)
            significant = bool(is_significant(m, alpha))
            if excess > 0 and not significant:
                note = (f"beyond the bound less the floor but not significant "
                        f"(p={fmt_p(p)} >= {alpha:g})")
            return _Verdict(m, not (excess > 0 and significant), excess, "floor", p, note,
                            shift)
    if mode == "significant":
        if p is None:
            mode = "ci" if has_ci else "point"
            note = f"no p-value recorded: judged in {mode} mode"
        else:
            excess = _excess(est, spec)
            significant = bool(is_significant(m, alpha))
            p_name = "p_adj" if m.p_adjusted is not None else "p (unadjusted)"
            if excess > 0 and not significant:
                note = f"beyond the bound but not significant ({p_name}={fmt_p(p)} >= {alpha:g})"
            elif m.p_adjusted is None:
                note = "no adjusted p-value: raw p used"
            return _Verdict(m, not (excess > 0 and significant), excess, "significant", p, note)
    if mode == "ci":
        if not has_ci:
            mode = "point"
            note = (note + "; " if note else "") + "no CI recorded: judged on the point estimate"
        else:
            d = shift or 0.0  # a floored record: the CI of the excess over its floor
            assert m.ci_low is not None and m.ci_high is not None
            excess = _excess(est - d, spec, use_low=m.ci_low - d, use_high=m.ci_high - d)
            return _Verdict(m, excess <= 0, excess, "ci", p, note, d)
    excess = _excess(est, spec)
    return _Verdict(m, excess <= 0, excess, "point", p, note)


def _side_words(v: _Verdict, spec: GateSpec) -> str:
    m = v.record
    assert m.estimate is not None
    d = v.shift
    less = f" less the floor ({fmt(d)})" if d else ""
    est = m.estimate - d
    above = spec.max is not None and est > spec.max
    if v.mode == "ci":
        if spec.max is not None and m.ci_low is not None and m.ci_low - d > spec.max:
            return f"whole CI{less} above the maximum {spec.max:g}"
        if spec.min is not None and m.ci_high is not None and m.ci_high - d < spec.min:
            return f"whole CI{less} below the minimum {spec.min:g}"
        if _excess(est, spec) > 0:
            return (f"estimate{less} beyond the bound but the CI reaches it: not conclusive, "
                    "passes")
        return f"within the bound{' after the floor' if d else ''}"
    if _excess(est, spec) > 0:
        side = f"above the maximum {spec.max:g}" if above else f"below the minimum {spec.min:g}"
        side = f"estimate{less} {side}" if v.mode == "floor" else side
        if v.mode in ("significant", "floor") and v.p is not None and not v.passed:
            return f"{side} and significant"
        return side
    return f"within the bound{' after the floor' if d else ''}"


def _evaluate(spec: GateSpec, name: str, records: Sequence[MetricRecord], alpha: float,
              floored: bool = False, null: float | None = None) -> GateResult:
    """Judge every record; ``floored``: the metric declares a noise floor at no-effect ``null``."""
    verdicts = [_judge(m, spec, alpha, floor_shift(m, null) if floored else None)
                for m in records]
    # Worst: a failing record before a passing one, then the largest excess beyond the bound.
    worst = max(verdicts, key=lambda v: (not v.passed, v.margin))
    failed = [v for v in verdicts if not v.passed]
    m = worst.record
    n_runs = len({r.probe for r in records})
    desc = _where(m, n_runs)
    if m.estimate is None:
        observed = f"{desc} has no estimate"
    else:
        conf = (f"{round(100 * m.confidence)}% "
                if m.confidence and math.isfinite(m.confidence) else "")
        ci = (f" ({conf}CI {fmt(m.ci_low)} to {fmt(m.ci_high)})"
              if m.ci_low is not None and m.ci_high is not None else " (no CI)")
        observed = f"{desc} = {fmt(m.estimate)}{ci}"
        from .metrics.specs import get_spec

        limit = noise_limit(m, get_spec(m.metric))
        if m.null_mean is not None and floored and limit is not None:
            pct = "95th" if limit[1] == "\u2264" else "5th"
            observed += f", floor {fmt(m.null_mean)} (null mean), {pct} pct {fmt(limit[0])}"
        if spec.mode in ("significant", "floor") and worst.p is not None:
            observed += f", p_adj={fmt_p(worst.p)}" if m.p_adjusted is not None \
                else f", p={fmt_p(worst.p)}"
    verdict = "no estimate" if m.estimate is None else _side_words(worst, spec)
    msg = f"{observed}: {verdict}"
    if worst.note:
        msg += f" [{worst.note}]"
    if len(verdicts) > 1:
        lead = "worst of" if failed else "closest to the bound of"
        msg += f"; {len(failed)} of {len(verdicts)} selected records fail ({lead} them shown)"
    msg += f"; bound {bound_text(spec)}, {spec.mode} mode"
    if spec.mode in ("significant", "floor"):
        msg += f" at alpha {alpha:g}"
    return GateResult(name=name, probe=m.probe, metric=spec.gated_metric(), mode=spec.mode,
                      bound=bound_text(spec), passed=not failed, observed=m.estimate,
                      ci_low=m.ci_low, ci_high=m.ci_high,
                      p_adjusted=decision_p(m),
                      selected=len(verdicts), message=msg)
