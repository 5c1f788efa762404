"""Compare two audits of the same probes: which metrics regressed, and is it more than noise?

:func:`compare_results` refuses to compare results that are not comparable (different results
schema version, different probe parameters, different catalog configuration or content): it
raises :class:`~recaudit.errors.DataError` naming the first differing key path, e.g.
``probe counterfactual:fairllm params.k: 20 != 10``.

Rows
    One row per metric record present (with an estimate) in both results, for every probe run
    that finished in both: aggregate records (``value`` empty: SNSR, SNSV, gaps, AUC) and
    per-value records (Sim(a), hallucination per value). Like gates, only the largest ``k`` of
    each (metric, attribute, value) is compared unless ``all_k=True``.

Direction (which way is worse)
    The record's own ``higher_is_worse`` when the probe set it; otherwise this table:

    ========================================================  =====================
    metric name                                               worse when it is
    ========================================================  =====================
    ``snsr_*``, ``snsv_*``, ``*_gap``, ``*_difference``,      higher
    ``leakage_auc``, ``hallucination``, ``theil_index``,
    ``generalized_entropy``, ``gini``
    ``jaccard``, ``serp_star``, ``serp_star_normalized``,     lower
    ``prag_star``, ``rbo``, ``ndcg*``, ``hr*``, ``hit*``,
    ``precision*``, ``recall*``, ``mrr*``, ``*_ratio``
    anything else                                             unknown: shown, never flagged
    ========================================================  =====================

Significance
    *Paired permutation test* where both results hold per-unit data for the same units (the
    same instructions: ``ProbeResult.records`` with the same subjects). The per-unit statistic is
    recomputed from the stored records (for ``counterfactual``: the similarity of each
    instruction's counterfactual list to its neutral list, from the stored item ids), the metric
    is recomputed from column means over units (identity for Sim(a); max - min for SNSR;
    population std for SNSV), and the test swaps baseline and current *per unit* (all values of
    one instruction together), ``n_permutations`` random times, or all ``2**n`` swap patterns
    when that is fewer (an exact test). The p-value is two-sided: ``#{|T_perm| >= |T_obs|}``
    over the ``2**n`` patterns, or ``(1 + #{...}) / (1 + n_permutations)`` when sampled.
    Every row of the comparison is tested (the tolerance is an effect-size floor, not a filter
    before testing), and Benjamini-Hochberg adjusts the p-values of all tested rows together:
    under "same model, new randomness" the chance that a compare flags anything is about
    ``alpha``.
    When only some units are in both results, the test pairs those (the row's note says how
    many). Where per-unit data are missing (a probe without an extractor, e.g. ``leakage``; a
    per-value ``hallucination`` when records carry no per-query share) or fewer than two units
    are common, the row falls back to *CI non-overlap* (the two bootstrap CIs do not overlap;
    conservative, not BH-adjusted), which the row's ``method`` and note say.

Verdict
    ``regression``: worse by more than ``tolerance`` (metric units) *and* significant
    (``p_adjusted < alpha``, or non-overlapping CIs in the fallback). ``improvement``: the mirror.
    Otherwise ``within tolerance``, ``not significant`` or ``direction unknown``.

Other probes can supply per-unit data by registering an extractor in :data:`UNIT_EXTRACTORS`
(probe name -> ``fn(ProbeResult, keys) -> {key: UnitTable}``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal

import numpy as np

from .errors import DataError
from .results import AuditResult, MetricRecord, ProbeResult

__all__ = ["Comparison", "ComparisonRow", "UnitTable", "UNIT_EXTRACTORS", "compare_results",
           "render_comparison", "worse_direction", "first_difference"]

Key = tuple[str, str | None, str | None, int | None]  # (metric, attribute, value, k)
Stat = Literal["mean", "range", "std"]

_HIGHER_PREFIX = ("snsr_", "snsv_")
_HIGHER_SUFFIX = ("_gap", "_difference")
_HIGHER_EXACT = {"leakage_auc", "hallucination", "empty_list", "theil", "theil_index",
                 "generalized_entropy", "gini"}
_LOWER_EXACT = {"jaccard", "serp_star", "serp_star_normalized", "prag_star", "rbo"}
_LOWER_PREFIX = ("ndcg", "hr", "hit", "precision", "recall", "mrr")
_LOWER_SUFFIX = ("_ratio",)


def worse_direction(metric: str, higher_is_worse: bool | None = None) -> bool | None:
    """True if higher is worse, False if lower is worse, None if unknown (see module table)."""
    if higher_is_worse is not None:
        return bool(higher_is_worse)
    if metric in _HIGHER_EXACT or metric.startswith(_HIGHER_PREFIX) \
            or metric.endswith(_HIGHER_SUFFIX):
        return True
    if metric in _LOWER_EXACT or metric.startswith(_LOWER_PREFIX) \
            or metric.endswith(_LOWER_SUFFIX):
        return False
    return None


# -- comparability -------------------------------------------------------------------------------
def _short(v: Any, limit: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def first_difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first key path where two JSON-like values differ, with both values; None if equal."""
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
        for i, (x, y) in enumerate(zip(a, b)):
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


# -- per-unit data -------------------------------------------------------------------------------
@dataclass
class UnitTable:
    """Per-unit values behind one metric record.

    ``values[i, j]``: unit ``units[i]``, column ``j`` (one column per attribute value; NaN where
    a unit has no value). The metric is ``stat`` of the column means: ``mean`` (one column: its
    mean), ``range`` (max - min, SNSR) or ``std`` (population std, SNSV).
    """

    units: list[str]
    values: np.ndarray
    stat: Stat = "mean"


def _apply_stat(col_means: np.ndarray, stat: Stat) -> np.ndarray:
    """``col_means`` (..., C) -> (...)."""
    if stat == "mean":
        return col_means[..., 0]
    if stat == "range":
        return np.max(col_means, axis=-1) - np.min(col_means, axis=-1)
    return np.std(col_means, axis=-1)


def _counterfactual_units(probe: ProbeResult, keys: Iterable[Key]) -> dict[Key, UnitTable]:
    """Recompute per-instruction similarities from the stored lists of a counterfactual run."""
    from .metrics.similarity import similarity_matrix

    params = probe.params or {}
    sims_known = set(params.get("similarities") or ())
    attributes: dict[str, list[str]] = params.get("attributes") or {}
    if not isinstance(attributes, dict) or not probe.records:
        return {}
    neutral: dict[str, list[str]] = {}
    lists: dict[tuple[str, str, str], list[str]] = {}
    for r in probe.records:
        unit = r.get("subject", r.get("unit"))
        ids = r.get("item_ids")
        if unit is None or ids is None:
            continue
        unit = str(unit)
        if r.get("attribute") is None:
            neutral[unit] = [str(i) for i in ids]
        else:
            lists[(str(r["attribute"]), str(r.get("value")), unit)] = [str(i) for i in ids]
    wanted: dict[tuple[str, int], set[Key]] = {}  # (attribute, k) -> keys
    for key in keys:
        metric, attr, value, k = key
        sim = metric.split("_", 1)[1] if metric.startswith(("snsr_", "snsv_")) else metric
        if sim not in sims_known or attr not in attributes or k is None:
            continue
        wanted.setdefault((attr, k), set()).add(key)
    out: dict[Key, UnitTable] = {}
    rbo_p = float(params.get("rbo_p", 0.9))
    for (attr, k), want in wanted.items():
        values = list(attributes[attr])
        units = [u for u in neutral if all((attr, v, u) in lists for v in values)]
        if not units:
            continue
        s_lists = [lists[(attr, v, u)] for u in units for v in values]
        n_lists = [neutral[u] for u in units for v in values]
        sims = sorted({(m.split("_", 1)[1] if m.startswith(("snsr_", "snsv_")) else m)
                       for m, *_ in want})
        mats = similarity_matrix(s_lists, n_lists, k_values=[k], metrics=tuple(sims), p=rbo_p)
        for key in want:
            metric, _, value, _ = key
            if metric.startswith(("snsr_", "snsv_")):
                x = mats[metric.split("_", 1)[1]][:, 0].reshape(len(units), len(values))
                out[key] = UnitTable(units, x, "range" if metric.startswith("snsr_") else "std")
            elif value in values:
                x = mats[metric][:, 0].reshape(len(units), len(values))
                out[key] = UnitTable(units, x[:, [values.index(value)]], "mean")
    # hallucination / empty-list share per query, where the probe stored it per record
    for key in keys:
        metric, attr, value, _ = key
        if metric not in ("hallucination", "empty_list"):
            continue
        per = {}
        for r in probe.records:
            if r.get("attribute") == attr and r.get("value") == value \
                    and isinstance(r.get(metric), (int, float)):
                per[str(r.get("subject", r.get("unit")))] = float(r[metric])
        if per:
            units = sorted(per)
            out[key] = UnitTable(units, np.array([[per[u]] for u in units]), "mean")
    return out


#: probe name -> function(ProbeResult, keys) -> {key: UnitTable}: per-unit data for paired tests.
UNIT_EXTRACTORS: dict[str, Callable[[ProbeResult, Iterable[Key]], dict[Key, UnitTable]]] = {
    "counterfactual": _counterfactual_units,
}


# -- the paired test -----------------------------------------------------------------------------
class _Masks:
    """Swap masks (P x n, 1 = swap baseline and current for that unit), cached by n."""

    def __init__(self, n_permutations: int, seed: int) -> None:
        self.n_permutations, self.seed = n_permutations, seed
        self._cache: dict[int, tuple[np.ndarray, bool]] = {}

    def get(self, n: int) -> tuple[np.ndarray, bool]:
        if n not in self._cache:
            if 2 ** n <= self.n_permutations:  # exact: every one of the 2^n swap patterns
                codes = np.arange(2 ** n, dtype=np.int64)
                masks = ((codes[:, None] >> np.arange(n)) & 1).astype(float)
                self._cache[n] = (masks, True)
            else:
                rng = np.random.default_rng([self.seed, n])
                masks = (rng.random((self.n_permutations, n)) < 0.5).astype(float)
                self._cache[n] = (masks, False)
        return self._cache[n]


def paired_swap_test(base: UnitTable, cur: UnitTable, masks: _Masks
                     ) -> tuple[float, float, int] | None:
    """Two-sided paired permutation test of ``stat(cur) - stat(base)`` over common units.

    Returns ``(observed difference, p-value, number of units)``, or None with < 2 common units.
    """
    common = [u for u in base.units if u in set(cur.units)]
    if len(common) < 2 or base.values.shape[1] != cur.values.shape[1]:
        return None
    ib = {u: i for i, u in enumerate(base.units)}
    ic = {u: i for i, u in enumerate(cur.units)}
    xb = base.values[[ib[u] for u in common]].astype(float)
    xc = cur.values[[ic[u] for u in common]].astype(float)
    vb, vc = ~np.isnan(xb), ~np.isnan(xc)
    xb0, xc0 = np.where(vb, xb, 0.0), np.where(vc, xc, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        obs = float(_apply_stat((xc0.sum(0) / vc.sum(0))[None], cur.stat)[0]
                    - _apply_stat((xb0.sum(0) / vb.sum(0))[None], base.stat)[0])
    if math.isnan(obs):
        return None
    s, exact = masks.get(len(common))
    d_sum, d_cnt = xb0 - xc0, vb.astype(float) - vc.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        # permuted current = rows swapped in from the baseline where s = 1 (and vice versa)
        cur_m = (xc0.sum(0) + s @ d_sum) / (vc.sum(0) + s @ d_cnt)
        base_m = (xb0.sum(0) - s @ d_sum) / (vb.sum(0) - s @ d_cnt)
        t = _apply_stat(cur_m, cur.stat) - _apply_stat(base_m, base.stat)
    t = t[~np.isnan(t)]
    tol = 1e-12 * max(1.0, abs(obs))
    hits = int(np.sum(np.abs(t) >= abs(obs) - tol))
    p = hits / len(t) if exact else (1 + hits) / (1 + len(t))
    return obs, min(1.0, p), len(common)


# -- the comparison ------------------------------------------------------------------------------
@dataclass
class ComparisonRow:
    probe: str
    metric: str
    attribute: str | None
    value: str | None
    k: int | None
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

    @property
    def delta(self) -> float:
        """current - baseline."""
        return self.current - self.baseline

    @property
    def worsening(self) -> float | None:
        """How much worse the current result is (negative = better); None if unknown."""
        if self.higher_is_worse is None:
            return None
        return self.delta if self.higher_is_worse else -self.delta

    @property
    def where(self) -> str:
        bits = []
        if self.attribute is not None:
            bits.append(self.attribute + (f"={self.value}" if self.value is not None else ""))
        elif self.value is not None:
            bits.append(self.value)
        if self.k is not None:
            bits.append(f"k={self.k}")
        return ", ".join(bits)


@dataclass
class Comparison:
    baseline: str
    current: str
    tolerance: float
    alpha: float
    rows: list[ComparisonRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[ComparisonRow]:
        return [r for r in self.rows if r.status == "regression"]

    @property
    def improvements(self) -> list[ComparisonRow]:
        return [r for r in self.rows if r.status == "improvement"]


def _key(m: MetricRecord) -> Key:
    return (m.metric, m.attribute, m.value, m.k)


def _select(records: list[MetricRecord], all_k: bool) -> dict[Key, MetricRecord]:
    out = {_key(m): m for m in records if m.estimate is not None}
    if all_k:
        return out
    top: dict[tuple[str, str | None, str | None], int] = {}
    for (metric, attr, value, k) in out:
        if k is not None:
            top[(metric, attr, value)] = max(k, top.get((metric, attr, value), k))
    return {key: m for key, m in out.items()
            if key[3] is None or key[3] == top[(key[0], key[1], key[2])]}


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
    masks = _Masks(n_permutations, seed)
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
        extractor = UNIT_EXTRACTORS.get(pb.probe)
        units_b = extractor(pb, keys) if extractor else {}
        units_c = extractor(pc, keys) if extractor else {}
        for key in keys:
            b, c = mb[key], mc[key]
            hiw = c.higher_is_worse if c.higher_is_worse is not None else b.higher_is_worse
            row = ComparisonRow(probe=pb.id, metric=key[0], attribute=key[1], value=key[2],
                                k=key[3], baseline=float(b.estimate), current=float(c.estimate),
                                higher_is_worse=worse_direction(key[0], hiw),
                                baseline_ci=_ci(b), current_ci=_ci(c))
            cmp.rows.append(row)
            test = None
            if key in units_b and key in units_c:
                test = paired_swap_test(units_b[key], units_c[key], masks)
            if test is not None:
                _, p, n_units = test
                row.p_value = p
                row.method = f"paired permutation ({n_units} units)"
                total = len(set(units_b[key].units) | set(units_c[key].units))
                if n_units < total:
                    row.note = f"paired on the {n_units} of {total} units present in both"
                tested.append(row)
            elif None not in (*row.baseline_ci, *row.current_ci):
                row.method = "CI non-overlap"
                blo, bhi = row.baseline_ci
                clo, chi = row.current_ci
                row.significant = bool(chi < blo or clo > bhi)  # type: ignore[operator]
                row.note = "no paired per-unit data: CI non-overlap used"
            else:
                row.note = "no per-unit data and no CIs: not tested"
    if not compared_any:
        raise DataError("nothing to compare: no probe run finished in both results")
    for row, padj in zip(tested, _bh([r.p_value for r in tested])):  # type: ignore[misc]
        row.p_adjusted = padj
        row.significant = padj < alpha
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


# -- rendering -----------------------------------------------------------------------------------
_ORDER = {"regression": 0, "improvement": 1, "not significant": 2, "within tolerance": 3,
          "direction unknown": 4, "unchanged": 5}


def _f(x: float | None, digits: int = 3) -> str:
    if x is None:
        return ""
    if x != 0 and abs(x) < 10 ** -digits:
        return f"{x:.1e}"
    return f"{x:.{digits}f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_comparison(cmp: Comparison, max_rows: int | None = None) -> str:
    """Markdown: a verdict line, notes, and one table row per compared metric (worst first)."""
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
            return _f(v) + (f" [{_f(ci[0])}, {_f(ci[1])}]" if None not in ci else "")
        worse = {True: "higher", False: "lower", None: "?"}[r.higher_is_worse]
        method = r.method + (f"; {r.note}" if r.note else "")
        status = f"**{r.status}**" if r.status in ("regression", "improvement") else r.status
        lines.append("| " + " | ".join(_cell(x) for x in (
            status, r.probe, r.metric, r.where, est(r.baseline, r.baseline_ci),
            est(r.current, r.current_ci), f"{r.delta:+.3f}", worse, _f(r.p_value, 4),
            _f(r.p_adjusted, 4), method)) + " |")
    if hidden:
        lines.append("")
        lines.append(f"({hidden} more rows not shown)")
    return "\n".join(lines)
