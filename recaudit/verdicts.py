"""Every verdict on a number, in one place.

Alpha, the deciding p-value, significance, the direction of harm, severity and the small-sample
rule. The analysis kit (:mod:`recaudit.probes.kit`), the gates, compare and the report all ask this
module; none of them decides these on its own, so a finding, a gate and a report line can never
disagree about whether a record is significant or how severe it is.

* :func:`alpha_of` -- the significance level of a result or a stats configuration;
* :func:`decision_p` -- the p-value a decision uses (``p_adjusted``, else ``p_value``);
* :func:`is_significant` -- that p below alpha (``None`` when there is no p);
* :func:`harm_direction` / :func:`on_harmful_side` -- which way is worse, and whether an
  estimate lies on that side of the declared null;
* :func:`severity` -- the one ladder (``info`` / ``low`` / ``medium`` / ``high``), with the
  small-sample cap; :func:`record_severity` for a record no probe finding speaks for;
  :func:`refusal_severity` for answers without a catalog item;
* :func:`ci_excludes_null` -- whether a record's CI leaves out the declared null;
* :func:`noise_limit` / :func:`beyond_noise` -- what noise alone gives on the harmful side
  (the null's 95th percentile, or its 5th for a lower-is-worse metric);
* :data:`MIN_UNITS`, :func:`min_units_of`, :func:`enough_units`, :func:`small_sample_warning` --
  the small-sample rule; :func:`flag_status` and :func:`probe_status` apply it to a statistical
  test and to a probe (below the rule nothing is ``FLAGGED``: it is :func:`inconclusive_label`).

This module imports nothing from the package, so any room may import it.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

__all__ = [
    "DEFAULT_ALPHA",
    "INCONCLUSIVE",
    "LADDER",
    "MIN_UNITS",
    "SEVERITIES",
    "alpha_of",
    "ci_excludes_null",
    "decision_p",
    "enough_units",
    "harm_direction",
    "noise_limit",
    "beyond_noise",
    "inconclusive_label",
    "is_significant",
    "min_units_of",
    "on_harmful_side",
    "probe_status",
    "record_severity",
    "refusal_severity",
    "REFUSAL_SHARE",
    "severity",
    "small_sample_warning",
    "flag_status",
]

#: significance level when a result or configuration gives none (or an invalid one)
DEFAULT_ALPHA = 0.05

#: The small-sample rule: the fewest units (instructions, users, requests) for which a
#: confidence interval is called reliable and a finding may be rated above ``low``.
#:
#: Why 10: the percentile-bootstrap interval of a mean is about ``mean +- z * s_n / sqrt(n)``
#: with the plug-in ``s_n = s * sqrt((n - 1) / n)``, i.e. a z-interval that is too narrow. For
#: normal data its coverage at a nominal 95% is ``P(|t_{n-1}| < 1.96 * sqrt((n - 1) / n))``:
#: 84.6% at n = 5, 89.1% at n = 8, 90.4% at n = 10, 92.1% at n = 15, 92.9% at n = 20
#: (Hesterberg, "What teachers should know about the bootstrap", Am. Stat. 2015, sec. 3.2;
#: skewed data do worse). From 10 units on the shortfall stays below five points; below it,
#: it grows fast. A paired permutation test on ``n < 10`` units is also coarse: with 2**n
#: swap patterns its smallest p-value is 2 / 2**n (0.0625 at n = 5). It is the default of
#: ``stats.min_group_size``, which a configuration may override (:func:`min_units_of`).
MIN_UNITS = 10

#: severity labels, least to most severe
SEVERITIES = ("info", "low", "medium", "high")

#: severity ladder on ``|estimate - null| / largest possible distance from null``: the first
#: bound reached gives the label, none gives ``low``
LADDER = ((0.2, "high"), (0.1, "medium"))


#: share of answers without a catalog item (refusals, unparseable text) from which they are a
#: finding (:func:`refusal_severity`)
REFUSAL_SHARE = 0.05


def _valid_level(value: Any) -> float | None:
    """Return ``value`` as a float strictly between 0 and 1, else None (a bool is None)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and 0.0 < x < 1.0 else None


def _stats_setting(obj: Any, key: str) -> Any:
    """Read ``key`` of the stats settings of ``obj``.

    ``obj`` is an AuditResult (its ``config["stats"]``), a config mapping (``{"stats": {...}}``
    or the stats mapping itself) or a StatsConfig.
    """
    config = getattr(obj, "config", None)
    if isinstance(config, dict):
        obj = config.get("stats")
    elif isinstance(obj, dict) and isinstance(obj.get("stats"), dict):
        obj = obj["stats"]
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def alpha_of(obj: Any) -> float:
    """Return the significance level of a result or a stats configuration.

    ``obj`` is an :class:`~recaudit.results.AuditResult` (read from its ``config["stats"]
    ["alpha"]``), a config mapping, or a :class:`~recaudit.config.StatsConfig`-like object with
    ``alpha``. A string such as ``"0.1"`` is read as a number; a missing value, a bool, or
    anything not strictly between 0 and 1 gives :data:`DEFAULT_ALPHA`.

    Examples
    --------
    >>> alpha_of({"stats": {"alpha": "0.1"}}), alpha_of({"stats": {"alpha": 2}})
    (0.1, 0.05)
    """
    alpha = _valid_level(_stats_setting(obj, "alpha"))
    return DEFAULT_ALPHA if alpha is None else alpha


def min_units_of(obj: Any) -> int:
    """Return the small-sample threshold in force.

    That is the configuration's ``stats.min_group_size`` (the user's override; read like
    :func:`alpha_of`), else :data:`MIN_UNITS`.
    """
    raw = _stats_setting(obj, "min_group_size")
    if raw is None or isinstance(raw, bool):
        return MIN_UNITS
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return MIN_UNITS
    return int(value) if math.isfinite(value) and value >= 1 and value == int(value) \
        else MIN_UNITS


def decision_p(rec: Any) -> float | None:
    """Return the p-value a decision uses: ``p_adjusted`` when it is not None, else ``p_value``.

    An adjusted p of ``0.0`` is a p-value like any other (not "missing").

    Examples
    --------
    >>> from types import SimpleNamespace as R
    >>> decision_p(R(p_adjusted=0.0, p_value=0.3)), decision_p(R(p_adjusted=None, p_value=0.3))
    (0.0, 0.3)
    """
    p_adjusted = getattr(rec, "p_adjusted", None)
    return p_adjusted if p_adjusted is not None else getattr(rec, "p_value", None)


def is_significant(rec: Any, alpha: float) -> bool | None:
    """Tell whether ``decision_p(rec) < alpha``; ``None`` without a p-value (or with a NaN)."""
    p = decision_p(rec)
    if p is None or not math.isfinite(p):
        return None
    return bool(p < alpha)


def harm_direction(*declared: Any) -> bool | None:
    """Return which way is worse: higher (``True``), lower (``False``) or unknown (``None``).

    Each argument is anything with ``higher_is_worse`` (a metric record, a metric declaration,
    a comparison row) or None; the first that declares a direction decides, so
    ``harm_direction(record, spec)`` prefers the record's own direction to its metric's.
    """
    for obj in declared:
        worse = getattr(obj, "higher_is_worse", None)
        if worse is not None:
            return bool(worse)
    return None


def noise_limit(rec: Any, spec: Any) -> tuple[float, str] | None:
    """Return how far noise alone takes a floored statistic on its harmful side, and the sign.

    ``(null_p95, "\u2264")`` (noise alone gives at most the null's 95th percentile) unless
    the record (else its metric) is lower-is-worse (an impact ratio), then ``(null_p05,
    "\u2265")``: noise alone gives at least the 5th percentile. None: no such percentile.

    Examples
    --------
    >>> from types import SimpleNamespace as S
    >>> rec = S(null_p95=0.3, null_p05=0.7)
    >>> noise_limit(rec, S(higher_is_worse=True)), noise_limit(rec, S(higher_is_worse=False))
    ((0.3, '≤'), (0.7, '≥'))
    """
    if harm_direction(rec, spec) is False:
        low = getattr(rec, "null_p05", None)
        return None if low is None else (float(low), "\u2265")
    high = getattr(rec, "null_p95", None)
    return None if high is None else (float(high), "\u2264")


def beyond_noise(estimate: float, limit: tuple[float, str]) -> float:
    """Return how far ``estimate`` lies beyond :func:`noise_limit` (positive: beyond it)."""
    value, sign = limit
    return estimate - value if sign == "\u2264" else value - estimate


def on_harmful_side(estimate: float | None, spec: Any) -> bool | None:
    """Tell whether ``estimate`` lies (strictly) on the harmful side of ``spec``'s null.

    ``True`` above the null for a higher-is-worse metric (below it for a lower-is-worse one),
    ``False`` at the null or on the other side, ``None`` when the estimate, the null or the
    direction is unknown.

    Examples
    --------
    >>> from types import SimpleNamespace as S
    >>> ratio = S(higher_is_worse=False, null=1.0)
    >>> on_harmful_side(0.8, ratio), on_harmful_side(1.0, ratio), on_harmful_side(0.8, S())
    (True, False, None)
    """
    worse = harm_direction(spec)
    null = getattr(spec, "null", None)
    if estimate is None or null is None or worse is None or not math.isfinite(estimate):
        return None
    return bool(estimate > null) if worse else bool(estimate < null)


def enough_units(n: int | None, min_units: int = MIN_UNITS) -> bool:
    """Tell whether ``n`` units are enough for a reliable CI and a finding above ``low``.

    An unknown ``n`` (None) is not held against a record.
    """
    return n is None or int(n) >= min_units


def small_sample_warning(n: int, min_units: int = MIN_UNITS) -> str | None:
    """Return a one-line warning when ``n`` units are too few for a reliable CI, else None.

    Below :data:`MIN_UNITS` (or the configured override) percentile-bootstrap intervals
    under-cover and permutation p-values are coarse; with fewer than 2 units there is no
    interval at all.

    Examples
    --------
    >>> small_sample_warning(500) is None
    True
    >>> small_sample_warning(1)
    'only 1 unit (< 10): no confidence interval'
    """
    n = int(n)
    if n >= min_units:
        return None
    unit = "unit" if n == 1 else "units"
    if n < 2:
        return f"only {n} {unit} (< {min_units}): no confidence interval"
    return f"only {n} {unit} (< {min_units}): confidence interval unreliable"


def severity(rec: Any, spec: Any, significant: bool | None, *,
             min_units: int = MIN_UNITS) -> str:
    """Rate a finding about record ``rec`` of metric ``spec`` on the one severity ladder.

    ``info`` unless ``significant`` (and an estimate exists). Otherwise the relative distance
    ``rel = |estimate - null| / max(|hi - null|, |null - lo|)`` from the declared null (0 when
    none is declared) within the declared range ``[lo, hi]`` picks the label from
    :data:`LADDER`: ``high`` from 0.2, ``medium`` from 0.1, else ``low``. A metric without a
    finite declared range is ``medium`` (significant, but nothing to scale it by). The
    small-sample rule caps it: a record on fewer than ``min_units`` units
    (:data:`MIN_UNITS` by default) is never rated above ``low``.

    Examples
    --------
    >>> from types import SimpleNamespace as S
    >>> auc = S(null=0.5, range=(0.0, 1.0))
    >>> severity(S(estimate=0.62, n=50), auc, True), severity(S(estimate=0.62, n=5), auc, True)
    ('high', 'low')
    """
    estimate = getattr(rec, "estimate", None)
    if not significant or estimate is None:
        return "info"
    rng = getattr(spec, "range", None) if spec is not None else None
    if not (rng and all(math.isfinite(float(b)) for b in rng)):
        label = "medium"
    else:
        null = spec.null if spec.null is not None else 0.0
        span = max(abs(rng[1] - null), abs(null - rng[0])) or 1.0
        rel = abs(estimate - null) / span
        label = next((name for bound, name in LADDER if rel >= bound), "low")
    if not enough_units(getattr(rec, "n", None), min_units):
        return "low"
    return label


def ci_excludes_null(rec: Any, spec: Any) -> bool | None:
    """Tell whether ``rec``'s confidence interval leaves out ``spec``'s declared null.

    True when the null lies strictly outside ``[ci_low, ci_high]``; ``None`` without a CI or a
    declared null.
    """
    null = getattr(spec, "null", None) if spec is not None else None
    lo, hi = getattr(rec, "ci_low", None), getattr(rec, "ci_high", None)
    if null is None or lo is None or hi is None:
        return None
    return not lo <= null <= hi


def record_severity(rec: Any, spec: Any, alpha: float, *, min_units: int = MIN_UNITS) -> str:
    """Rate a record that no probe finding speaks for (a report's derived finding).

    A tested record: :func:`severity` at :func:`is_significant`. An untested one (no p-value)
    whose CI leaves out the declared null: ``low`` (an effect without a test is never rated
    above ``low``). Anything else: ``info``.
    """
    significant = is_significant(rec, alpha)
    if significant is not None:
        return severity(rec, spec, significant, min_units=min_units)
    if ci_excludes_null(rec, spec) and getattr(rec, "estimate", None) is not None:
        return "low"
    return "info"


def refusal_severity(share: float, n: int | None = None,
                     min_units: int = MIN_UNITS) -> str | None:
    """Rate answers that grounded to no catalog item by their share of all ``n`` answers.

    ``None`` (no finding) below :data:`REFUSAL_SHARE`; ``high`` from one half on (most answers
    are unusable); ``medium`` in between. The small-sample rule caps it: a share of fewer than
    ``min_units`` answers is never rated above ``low`` (an unknown ``n`` is not held against it).

    Examples
    --------
    >>> refusal_severity(0.04), refusal_severity(0.05), refusal_severity(0.5)
    (None, 'medium', 'high')
    >>> refusal_severity(0.5, n=4)
    'low'
    """
    if share < REFUSAL_SHARE:
        return None
    if not enough_units(n, min_units):
        return "low"
    return "high" if share >= 0.5 else "medium"


#: the status and label of a probe or a test whose evidence rests on too few units
INCONCLUSIVE = "inconclusive"


def inconclusive_label(n: int | None, min_units: int = MIN_UNITS) -> str:
    """Return the label a probe or test gets instead of ``FLAGGED`` below the small-sample rule.

    Examples
    --------
    >>> inconclusive_label(3)
    'INCONCLUSIVE (3 units < 10: too few for a verdict)'
    """
    if n is None:
        return f"INCONCLUSIVE (fewer than {min_units} units: too few for a verdict)"
    unit = "unit" if int(n) == 1 else "units"
    return f"INCONCLUSIVE ({int(n)} {unit} < {min_units}: too few for a verdict)"


def flag_status(significant: bool | None, n: int | None, min_units: int = MIN_UNITS) -> str:
    """Return the status of one statistical test: ``flag``, ``inconclusive`` or ``pass``.

    A significant test on at least ``min_units`` units (or on an unknown number) is ``flag``;
    a significant one on fewer is ``inconclusive`` (its p-value is coarse and its interval
    under-covers, :data:`MIN_UNITS`); anything else is ``pass``.

    Examples
    --------
    >>> flag_status(True, 20), flag_status(True, 3), flag_status(False, 3)
    ('flag', 'inconclusive', 'pass')
    """
    if not significant:
        return "pass"
    return "flag" if enough_units(n, min_units) else INCONCLUSIVE


def probe_status(test_statuses: Sequence[str], finding_severities: Sequence[str],
                 n_units: int | None, *, finding_units: Sequence[int | None] | None = None,
                 n_failed: int = 0, min_units: int = MIN_UNITS) -> tuple[str, str]:
    """Return a probe's ``(status, label)`` from its tests, its findings and its units.

    ``test_statuses`` are :func:`flag_status` of the probe's tests (each judged on its own
    units); ``finding_severities`` its findings' severities and ``finding_units`` the units each
    rests on (``Finding.n``; None or missing: the probe's); ``n_units`` the most units any of its
    records rests on (None: unknown, not held against it); ``n_failed`` its failed queries.

    * ``("warn", "FLAGGED")``: a test flagged, or a finding (``low`` or above) rests on at
      least ``min_units`` units, and so does the probe;
    * ``("inconclusive", inconclusive_label(n))``: it would be flagged, but only on fewer than
      ``min_units`` units (``n``: the fewest units behind what would flag it; no probe is
      FLAGGED below the rule, whatever its findings were rated under another threshold);
    * ``("warn", "WARN")``: nothing flagged, but queries failed; ``("pass", "OK")`` otherwise.

    Examples
    --------
    >>> probe_status(["inconclusive"], ["low"], 3)
    ('inconclusive', 'INCONCLUSIVE (3 units < 10: too few for a verdict)')
    >>> probe_status(["flag"], ["low"], 20)
    ('warn', 'FLAGGED')
    >>> probe_status(["pass"], ["low"], 10, finding_units=[7])
    ('inconclusive', 'INCONCLUSIVE (7 units < 10: too few for a verdict)')
    """
    enough = enough_units(n_units, min_units)
    units = list(finding_units or [])
    units += [None] * (len(finding_severities) - len(units))
    found = [n_units if u is None else u
             for s, u in zip(finding_severities, units, strict=False) if s != "info"]
    solid = "flag" in test_statuses or any(enough_units(u, min_units) for u in found)
    if solid and enough:
        return "warn", "FLAGGED"
    small = [u for u in found if u is not None and not enough_units(u, min_units)]
    if solid or found or INCONCLUSIVE in test_statuses:  # only on too few units
        n = n_units if not enough else min(small) if small else None
        return INCONCLUSIVE, inconclusive_label(n, min_units)
    return ("warn", "WARN") if n_failed else ("pass", "OK")
