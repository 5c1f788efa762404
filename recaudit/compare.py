"""Compare two audits of the same probes: which metrics regressed, beyond noise.

:func:`compare_results` refuses to compare results that are not comparable (different results
schema version, different probe parameters, different catalog configuration or content): it
raises :class:`~recaudit.errors.DataError` naming the first differing key path, e.g.
``probe counterfactual:fairllm params.k: 20 != 10``.

Rows
    One row per metric record present (with an estimate) in both results, for every probe run
    that finished in both, keyed by (metric, attribute, value, k, variant). Like gates, only
    the largest ``k`` of each is compared unless ``all_k=True``.

Direction (which way is worse)
    :func:`recaudit.verdicts.harm_direction`: the record's ``higher_is_worse``, else the metric's
    declaration stored in the probe result (:mod:`recaudit.metrics.specs`); current before
    baseline. A metric without a direction is shown, never flagged.

Significance
    *Paired permutation test* for every record that names the unit table it was computed from
    (``MetricRecord.table`` / ``statistic``, written by the analysis kit for every probe): the
    statistic is recomputed from both results' tables on the units present in both (the same
    instructions or users), and the test swaps baseline and current *per unit* (all conditions
    of one unit together), ``n_permutations`` random times, or all ``2**n`` swap patterns when
    that is fewer (an exact test): :func:`recaudit.stats.paired_swap_test`. The p-value is
    two-sided; the observed difference is computed like the swapped ones and ties are judged at
    the data's magnitude (:func:`recaudit.stats.tie_tolerance`), so a result compared with
    itself gives p = 1 and a row no swap can change leaves the BH family. Every row is tested
    (the tolerance is an effect-size floor, not a filter before testing), and Benjamini-Hochberg
    adjusts the p-values of all tested rows together: under "same model, new randomness" the
    chance that a compare flags anything is about ``alpha``.
    When only some units are in both results, the test pairs those (the row's note says how
    many). Where a record has no table (or fewer than two units are common), the row falls
    back to *CI non-overlap* (conservative, not BH-adjusted), which its ``method`` says.

Verdict
    ``regression``: worse by more than ``tolerance`` (metric units) *and* significant
    (:func:`recaudit.verdicts.is_significant`: ``p_adjusted < alpha``; or non-overlapping CIs in
    the fallback). ``improvement``: the mirror.
    Otherwise ``within tolerance``, ``not significant`` or ``direction unknown``.

The Markdown rendering of a comparison is :func:`recaudit.report.markdown.render_comparison`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


from .errors import DataError
from .formatting import fmt
from .metrics.tables import table_statistic
from .results import AuditResult, MetricRecord, ProbeResult
from .stats import SwapMasks, paired_swap_test
from .verdicts import harm_direction, is_significant

__all__ = ["Comparison", "ComparisonRow", "compare_results", "first_difference"]

Key = tuple[str, str | None, str | None, int | None, str]  # (metric, attribute, value, k, variant)


# -- comparability -------------------------------------------------------------------------------
def _short(v: Any, limit: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def first_difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """Return the first key path where two JSON-like values differ, with both values, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in a:
                return (sub, "(absent)", b[key])
            if key not in b:
                return (sub, a[key], "(absent)")
            diff = first_difference(a[key], b[key], sub)
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            diff = first_difference(x, y, f"{path}[{i}]")
            if diff:
                return diff
        return None
    if isinstance(a, bool) == isinstance(b, bool) and a == b:
        return None
    return (path or "(value)", a, b)


def _check_comparable(base: AuditResult, cur: AuditResult) -> list[str]:
    if base.schema_version != cur.schema_version:
        raise DataError(f"cannot compare results of schema version {base.schema_version!r} "
                        f"with {cur.schema_version!r}; re-run one audit with this recaudit")
    notes: list[str] = []
    cat_a, cat_b = base.config.get("catalog"), cur.config.get("catalog")
    if cat_a is not None and cat_b is not None:
        diff = first_difference(cat_a, cat_b, "catalog")
        if diff:
            raise DataError(f"cannot compare: catalog config {diff[0]}: {_short(diff[1])} != "
                            f"{_short(diff[2])}")
    sha_a, sha_b = base.provenance.catalog_sha256, cur.provenance.catalog_sha256
    if sha_a and sha_b and sha_a != sha_b:
        raise DataError(f"cannot compare: the catalog content differs (sha256 {sha_a[:12]} != "
                        f"{sha_b[:12]})")
    by_id = {p.id: p for p in cur.probes}
    for p in base.probes:
        q = by_id.get(p.id)
        if q is None:
            continue
        if p.probe != q.probe:
            raise DataError(f"cannot compare: probe run {p.id} is probe {p.probe!r} in the "
                            f"baseline and {q.probe!r} in the current results")
        diff = first_difference(p.params, q.params, "params")
        if diff:
            raise DataError(f"cannot compare: probe {p.id} {diff[0]}: {_short(diff[1])} != "
                            f"{_short(diff[2])}")
    st_a, st_b = base.config.get("stats") or {}, cur.config.get("stats") or {}
    for key in ("confidence", "n_bootstrap"):
        if key in st_a and key in st_b and st_a[key] != st_b[key]:
            notes.append(f"stats.{key} differs ({st_a[key]} vs {st_b[key]}): CIs are not alike")
    return notes


def _declares_floor(pb: ProbeResult, pc: ProbeResult, metric: str) -> bool:
    """Tell whether ``metric`` declares ``noise_floor`` (stored in either result, else now)."""
    from .metrics.specs import get_spec

    stored = [p.specs[metric] for p in (pc, pb) if metric in p.specs]
    if any(s.noise_floor for s in stored):
        return True
    current = get_spec(metric)
    return bool(current is not None and current.noise_floor)


# -- per-unit data -------------------------------------------------------------------------------
def _unit_test(pb: ProbeResult, pc: ProbeResult, b: MetricRecord, c: MetricRecord,
               masks: SwapMasks) -> tuple[Any, int, int] | None:
    """Paired swap test of one record from the unit tables both results stored for it.

    Returns ``(SwapTest, units paired, units in either)``, or None where either has no table
    for the record, the tables' conditions differ, or fewer than two units are in both.
    """
    tb, tc = pb.unit_table(b.table), pc.unit_table(c.table)
    if tb is None or tc is None or b.statistic is None or b.statistic != c.statistic \
            or tb.conditions != tc.conditions:
        return None
    try:
        fn = table_statistic(b.statistic)
    except ValueError:
        return None
    column = tb.conditions.index(b.value) if b.statistic == "mean" and b.value in \
        tb.conditions else None
    if b.statistic == "mean" and column is None:
        return None
    common = [u for u in tb.units if u in set(tc.units)]
    ib = {u: i for i, u in enumerate(tb.units)}
    ic = {u: i for i, u in enumerate(tc.units)}
    xb, xc = tb.matrix()[[ib[u] for u in common]], tc.matrix()[[ic[u] for u in common]]
    test = paired_swap_test(xb, xc, lambda v, w: fn(v, w, column), masks)
    if test is None:
        return None
    return test, len(common), len(set(tb.units) | set(tc.units))


# -- the comparison ------------------------------------------------------------------------------
@dataclass
class ComparisonRow:
    """One metric record compared: both estimates and CIs, the test, and the status."""

    probe: str
    metric: str
    attribute: str | None
    value: str | None
    k: int | None
    variant: str
    baseline: float
    current: float
    higher_is_worse: bool | None
    baseline_ci: tuple[float | None, float | None] = (None, None)
    current_ci: tuple[float | None, float | None] = (None, None)
    method: str = "not tested"
    p_value: float | None = None
    p_adjusted: float | None = None
    significant: bool = False
    status: str = "unchanged"
    note: str = ""
    #: for a metric whose declaration has ``noise_floor``: each side's floor (``null_mean``,
    #: what noise alone scores), None where not recorded
    baseline_floor: float | None = None
    current_floor: float | None = None

    @property
    def delta(self) -> float:
        """Return current - baseline."""
        return self.current - self.baseline

    @property
    def worsening(self) -> float | None:
        """Return how much worse the current result is (negative = better); None if unknown."""
        if self.higher_is_worse is None:
            return None
        return self.delta if self.higher_is_worse else -self.delta

    @property
    def where(self) -> str:
        """Return where the record lies: ``attribute=value, k=K[, variant]``."""
        bits = []
        if self.attribute is not None:
            bits.append(self.attribute + (f"={self.value}" if self.value is not None else ""))
        elif self.value is not None:
            bits.append(self.value)
        if self.k is not None:
            bits.append(f"k={self.k}")
        if self.variant != "original":
            bits.append(self.variant)
        return ", ".join(bits)


@dataclass
class Comparison:
    """The comparison of two results: its settings, one row per compared record, notes."""

    baseline: str
    current: str
    tolerance: float
    alpha: float
    rows: list[ComparisonRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[ComparisonRow]:
        """Return the rows that regressed."""
        return [r for r in self.rows if r.status == "regression"]

    @property
    def improvements(self) -> list[ComparisonRow]:
        """Return the rows that improved."""
        return [r for r in self.rows if r.status == "improvement"]


def _key(m: MetricRecord) -> Key:
    return (m.metric, m.attribute, m.value, m.k, m.variant)


def _select(records: list[MetricRecord], all_k: bool) -> dict[Key, MetricRecord]:
    out = {_key(m): m for m in records if m.estimate is not None}
    if all_k:
        return out
    top: dict[tuple, int] = {}
    for (metric, attr, value, k, variant) in out:
        if k is not None:
            top[(metric, attr, value, variant)] = max(k, top.get((metric, attr, value, variant), k))
    return {key: m for key, m in out.items()
            if key[3] is None or key[3] == top[(key[0], key[1], key[2], key[4])]}


def _ci(m: MetricRecord) -> tuple[float | None, float | None]:
    return (m.ci_low, m.ci_high)


def _bh(pvals: list[float]) -> list[float]:
    if not pvals:
        return []
    from .stats import benjamini_hochberg

    return [float(x) for x in benjamini_hochberg(pvals).adjusted]


def compare_results(baseline: AuditResult, current: AuditResult, tolerance: float = 0.02,
                    alpha: float = 0.05, *, n_permutations: int = 10000, seed: int = 0,
                    all_k: bool = False) -> Comparison:
    """Compare ``current`` against ``baseline``; see the module docstring for every rule.

    Raises :class:`~recaudit.errors.DataError` when the two are not comparable.
    """
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise DataError(f"tolerance must be a non-negative number, got {tolerance}")
    if not 0 < alpha < 1:
        raise DataError(f"alpha must be between 0 and 1, got {alpha}")
    notes = _check_comparable(baseline, current)
    cmp = Comparison(baseline=f"{baseline.name} ({baseline.provenance.model_spec})",
                     current=f"{current.name} ({current.provenance.model_spec})",
                     tolerance=tolerance, alpha=alpha, notes=notes)
    cur_by_id = {p.id: p for p in current.probes}
    base_ids = {p.id for p in baseline.probes}
    for pid in sorted(set(cur_by_id) - base_ids):
        cmp.notes.append(f"probe {pid} is only in the current results: not compared")
    masks = SwapMasks(n_permutations, seed)
    tested: list[ComparisonRow] = []
    compared_any = False
    for pb in baseline.probes:
        pc = cur_by_id.get(pb.id)
        if pc is None:
            cmp.notes.append(f"probe {pb.id} is only in the baseline: not compared")
            continue
        if pb.status != "ok" or pc.status != "ok":
            cmp.notes.append(f"probe {pb.id} did not finish in both (baseline {pb.status}, "
                             f"current {pc.status}): not compared")
            continue
        compared_any = True
        mb, mc = _select(pb.metrics, all_k), _select(pc.metrics, all_k)
        keys = [k for k in mb if k in mc]
        missing = len(set(mb) ^ set(mc))
        if missing:
            cmp.notes.append(f"probe {pb.id}: {missing} metric record(s) with an estimate in "
                             "only one of the results: not compared")
        for key in keys:
            b, c = mb[key], mc[key]
            row = ComparisonRow(probe=pb.id, metric=key[0], attribute=key[1], value=key[2],
                                k=key[3], variant=key[4], baseline=float(b.estimate),
                                current=float(c.estimate),
                                higher_is_worse=harm_direction(
                                    c, pc.specs.get(c.metric), b, pb.specs.get(b.metric)),
                                baseline_ci=_ci(b), current_ci=_ci(c))
            cmp.rows.append(row)
            if _declares_floor(pb, pc, key[0]):
                row.baseline_floor, row.current_floor = b.null_mean, c.null_mean
            test = _unit_test(pb, pc, b, c, masks)
            if test is not None:
                swap, n_units, total = test
                row.p_value = swap.pvalue
                row.method = f"paired permutation ({n_units} units)"
                if n_units < total:
                    row.note = f"paired on the {n_units} of {total} units present in both"
                if swap.degenerate:  # no permutation differs: it can never reject
                    row.p_adjusted = swap.pvalue
                    row.note = "; ".join(filter(None, [row.note, "no variation between the "
                                                       "results: outside the BH family"]))
                else:
                    tested.append(row)
            elif None not in (*row.baseline_ci, *row.current_ci):
                row.method = "CI non-overlap"
                blo, bhi = row.baseline_ci
                clo, chi = row.current_ci
                row.significant = bool(chi < blo or clo > bhi)  # type: ignore[operator]
                row.note = "no paired per-unit data: CI non-overlap used"
            else:
                row.note = "no per-unit data and no CIs: not tested"
            if row.baseline_floor is not None and row.current_floor is not None:
                row.note = "; ".join(filter(None, [row.note, (
                    f"noise floor {fmt(row.baseline_floor)} -> {fmt(row.current_floor)}: "
                    f"excess over it {fmt(row.baseline - row.baseline_floor)} -> "
                    f"{fmt(row.current - row.current_floor)}")]))
    if not compared_any:
        raise DataError("nothing to compare: no probe run finished in both results")
    for row, padj in zip(tested, _bh([r.p_value for r in tested]),  # type: ignore[misc]
                         strict=True):
        row.p_adjusted = padj
        row.significant = bool(is_significant(row, alpha))
    for row in cmp.rows:
        w = row.worsening
        if w is None:
            row.status = "direction unknown"
        elif abs(w) <= tolerance:
            row.status = "within tolerance" if w != 0 else "unchanged"
        elif not row.significant:
            row.status = "not significant"
        else:
            row.status = "regression" if w > 0 else "improvement"
    if tested:
        cmp.notes.append(f"Benjamini-Hochberg across {len(tested)} paired tests")
    return cmp
