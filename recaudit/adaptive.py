"""Adaptive audits and budgets: ask units in seeded rounds, stop once every gate is decided.

Rounds
    Each probe's planned queries are grouped by unit (``QueryKey.unit``: an instruction, a
    user, a candidate list) and the units put in a seeded random order (:func:`unit_order`).
    A probe no gate reads is asked in full in the first round (nothing can decide it early).
    Round r asks the queries of the first ``looks[r]`` units (:func:`looks`: steps of
    ``max(min_units, ceil(n / 16))`` up to n, the cap, which is today's fixed plan). Every round
    goes through the engine, so answers are cached as they land: a rerun, or an interrupted
    adaptive audit, resumes from the cache.

Sequential gates, in margin form
    After each round each probe is analysed on the units asked so far and each gate's selected
    records are judged on anytime-valid confidence sequences (CS) of their *population*
    statistic (:func:`record_sequence`), computed from the record's unit table in the order the
    units were asked, with the values bounded by the table metric's declared range:

    * ``mean`` of one condition: the betting CS of
      :func:`recaudit.sequential.betting_confidence_sequence` (Waudby-Smith & Ramdas 2023);
    * ``range`` over at most 8 conditions, on paired cells (every unit has every condition)
      or on groups of different units (one cell each): the CS of each pair's difference at
      alpha / pairs (the k-th observed cell of one condition paired with the k-th of the
      other: a unit's own difference on paired cells), range = max |d_ij|;
    * ``range`` (more conditions) / ``std`` / ``ratio`` of the condition means: a CS for each
      of the C condition means at level alpha / C (Bonferroni), combined by interval
      arithmetic:
      range in [max(0, max_c l_c - min_c u_c), max_c u_c - min_c l_c];
      std in [range_low / sqrt(2C), range_high / 2] (C values spanning r have a population
      std between r / sqrt(2C) and r / 2); ratio in [min_c l_c / max_c u_c, min_c u_c /
      max_c l_c] for positive means.

    A record with a ``sequence_table`` (the leakage AUC: a classifier fitted on earlier rounds
    scores each later pair of units, :func:`prequential_path`) has a fail-only form: its
    betting e-process against "the statistic is at most ``max``"; nothing shows an AUC of the
    best possible classifier lies *below* a bound, so its gates pass only at the cap. Other
    statistics (Cramér's V) have no sequential form here: their gates are decided at the cap.
    A gate (K records) is judged after each round by :func:`decide`, in margin form:

    * **pass** once every record's *pass-side* interval lies within the bounds (``max``: upper
      <= max; ``min``: lower >= min). Intersection-union: a false pass needs the sequence of a
      record (of a pair, of one of two condition means) that truly lies beyond the bound to
      miss, so the pass side needs no multiplicity correction (each pair at alpha, each
      condition mean at alpha / 2; :func:`record_path` ``side="pass"``). Only the bound on the
      side of the gate's limit can err, so the pass side reads one-sided bounds, each at that
      level (:func:`recaudit.sequential.one_sided_bounds`);
    * **fail** once e-BH (Wang & Ramdas 2022) over the records' stopped e-values
      (:func:`record_e_path`: betting e-processes against "the statistic lies within the
      bounds", aGRAPA bets) rejects one, or, for a record with no e-value form, once its CS
      at alpha / K lies beyond a bound. When the model truly meets the gate on every record,
      e-BH's FDR is the chance of any false fail, so a gate fails falsely with probability at
      most alpha.

    The CS bounds the population statistic, whose no-effect value is the metric's null (0 for
    a spread), so a fair model can pass early without a floor correction: the noise floor
    describes the sample statistic, which the CS does not use.

Hybrid
    Sequential decisions spend ``SEQUENTIAL_ALPHA`` (0.01) of the audit's alpha. A gate still
    undecided at the cap is judged by the fixed-n gate with the rest, alpha - 0.01, on an
    analysis whose CIs are at 1 - (alpha - 0.01). Each gate's error thus stays within alpha,
    and an adaptive audit never asks more than the fixed plan.

Budgets (:class:`Budget`, ``--budget``)
    ``requests=N`` (model calls), ``tokens=M`` (prompt tokens, as the plan estimates them, plus
    each request's output-token bound ``max_new_tokens``) or ``cost=C,in=P,out=Q`` (P and Q
    per 1,000 input and output tokens, the same token counts). Before each round the requests
    that fit in what is left are run and the rest deferred; cached answers cost nothing. An
    audit whose budget runs out with a gate undecided exits with code 5
    (:data:`recaudit.errors.EXIT_BUDGET`); the deferred work resumes from the cache.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .errors import ConfigError
from .results import GateResult, MetricRecord, ProbeResult, UnitTable
from .sequential import (betting_confidence_sequence, betting_e_value,
                         betting_e_value_outside, e_bh, one_sided_bounds)

__all__ = ["Budget", "SEQUENTIAL_ALPHA", "SEQUENTIAL_STATISTICS", "GateTrack", "looks",
           "unit_order", "record_path", "record_sequence", "record_e_path", "prequential_path",
           "judge_sequentially",
           "RecordLook", "decide", "AdaptiveRounds"]

#: the share of each gate's alpha spent on sequential decisions (the rest: the fixed-n gate)
SEQUENTIAL_ALPHA = 0.01
#: table statistics with a confidence sequence (:func:`record_sequence`)
SEQUENTIAL_STATISTICS = ("mean", "range", "std", "ratio")
#: a range over at most this many conditions uses the CS of each pair's paired difference
PAIRED_RANGE_MAX_CONDITIONS = 8
#: the first look asks at least ceil(n / FIRST_LOOK_DIVISOR) units
FIRST_LOOK_DIVISOR = 16
#: the bets of the pass-side bounds and of the fail-side e-processes: aGRAPA, truncated at
#: c = 0.9 (each factor at least 0.1). Any predictable bet keeps validity; aGRAPA with c = 0.9
#: used 25-50% of the calls where the plug-in bets at c = 0.5 used 37-68% (docs/VALIDATION.md).
BETS, TRUNCATION = "grapa", 0.9


# -- budgets -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """A cap on what an audit may spend: requests, tokens, or a cost from per-1k prices."""

    kind: str  # "requests" | "tokens" | "cost"
    limit: float
    price_in: float = 0.0
    price_out: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "Budget":
        """Read ``requests=N``, ``tokens=M`` or ``cost=C,in=P,out=Q`` (ConfigError otherwise)."""
        parts = dict(p.split("=", 1) for p in str(text).replace(" ", "").split(",")
                     if "=" in p)
        bad = ConfigError(f"budget {text!r}: use requests=N, tokens=M or cost=C,in=P,out=Q "
                          "(prices per 1,000 input and output tokens)")
        if not parts or not re.fullmatch(r"[a-z_]+=[^,]+(,[a-z_]+=[^,]+)*",
                                         str(text).replace(" ", "")):
            raise bad
        try:
            nums = {k: float(v) for k, v in parts.items()}
        except ValueError:
            raise bad from None
        if any(not math.isfinite(v) or v < 0 for v in nums.values()):
            raise bad
        if set(nums) == {"requests"} or set(nums) == {"tokens"}:
            kind = next(iter(nums))
            if nums[kind] != int(nums[kind]):
                raise bad
            return cls(kind, nums[kind])
        if set(nums) == {"cost", "in", "out"}:
            return cls("cost", nums["cost"], nums["in"], nums["out"])
        raise bad

    def cost(self, prompt_tokens: int, output_tokens: int) -> float:
        """Return what one request of these sizes costs in the budget's unit."""
        if self.kind == "requests":
            return 1.0
        if self.kind == "tokens":
            return float(prompt_tokens + output_tokens)
        return (prompt_tokens * self.price_in + output_tokens * self.price_out) / 1000.0

    def describe(self, spent: float | None = None) -> str:
        """One line: the limit, and what was spent when given."""
        unit = {"requests": "requests", "tokens": "tokens", "cost": "(cost units)"}[self.kind]
        limit = f"{self.limit:g} {unit}"
        if self.kind == "cost":
            limit += f" at {self.price_in:g} in / {self.price_out:g} out per 1k tokens"
        return limit if spent is None else f"{spent:g} of {limit}"


# -- rounds ------------------------------------------------------------------------------------
def looks(n_units: int, min_units: int = 10) -> list[int]:
    """Return the sample sizes after each round: steps of ``max(min_units, ceil(n / 16))``.

    At most 16 rounds; the last is the cap ``n`` (the sequences are valid at every look, so
    more looks cost only analysis time).

    >>> looks(160)[:3], len(looks(160)), looks(400)[:2], looks(12), looks(0)
    ([10, 20, 30], 16, [25, 50], [12], [])
    """
    if n_units <= 0:
        return []
    step = min(n_units, max(min_units, -(-n_units // FIRST_LOOK_DIVISOR)))
    return list(range(step, n_units, step)) + [n_units]


def unit_order(units: Sequence[Any], seed: int, run_id: str) -> list[str]:
    """Return the distinct units (as strings) in a seeded random order, fixed per probe run."""
    distinct = list(dict.fromkeys(str(u) for u in units))
    digest = hashlib.sha256(f"{seed}:{run_id}:adaptive".encode()).hexdigest()
    rng = np.random.default_rng(int(digest[:15], 16))
    return [distinct[i] for i in rng.permutation(len(distinct))]


# -- confidence sequences of a record ----------------------------------------------------------
def _value_range(table: UnitTable) -> tuple[float, float] | None:
    from .metrics.specs import get_spec

    spec = get_spec(table.metric)
    rng = getattr(spec, "range", None) if spec is not None else None
    if rng is None or not all(math.isfinite(v) for v in rng) or rng[1] <= rng[0]:
        return None
    return float(rng[0]), float(rng[1])


def _column_path(x: np.ndarray, lo: float, hi: float, alpha: float,
                 at: Sequence[int], one_sided: bool = False) -> np.ndarray:
    """Return the CS of one column's mean after each of the first ``at`` units: (looks, 2).

    NaN cells are left out; the sequence is predictable, so its value after n units depends
    on those units alone and one pass over all of them serves every look. ``one_sided``: the
    lower and upper bounds of :func:`recaudit.sequential.one_sided_bounds`, each at ``alpha``
    (for the pass side); else the two-sided betting CS at ``alpha``.
    """
    present = ~np.isnan(x)
    out = np.tile([lo, hi], (len(at), 1)).astype(float)
    if not present.any():
        return out
    values = np.clip(x[present], lo, hi)
    lower, upper = (one_sided_bounds(values, lo, hi, alpha, truncation=TRUNCATION, bets=BETS)
                    if one_sided else betting_confidence_sequence(values, lo, hi, alpha))
    seen = np.cumsum(present)
    for i, n in enumerate(at):
        k = int(seen[min(n, len(x)) - 1]) if n > 0 else 0
        if k:
            out[i] = lower[k - 1], upper[k - 1]
    return out


def record_path(record: MetricRecord, table: UnitTable, order: Sequence[str], alpha: float,
                at: Sequence[int] | None = None, *, side: str = "fail"
                ) -> list[tuple[float, float]] | None:
    """Return the record's confidence-sequence interval after each of ``at`` units asked.

    ``order``: the units in the order they were asked (units of the table not in it are left
    out); ``at``: prefix lengths of that order (default: all of it); ``alpha``: the level of
    this record's sequence. None: the record has no sequential form. See the module docstring.

    ``side="fail"``: a CS of the statistic at ``alpha`` (the pairs at alpha / pairs, the
    condition means at alpha / C). ``side="pass"``: the interval that may only be read to
    *pass* (upper <= max, lower >= min), by intersection-union: a false pass needs the CS of
    one pair that truly lies beyond the bound to miss (each pair at ``alpha``), or of one of
    the two condition means that span it (each mean at ``alpha / 2``). Each bound of a pass-side
    interval is one-sided (:func:`recaudit.sequential.one_sided_bounds`): a false pass past
    ``max`` needs the *upper* bound to miss, so it alone spends the level.
    """
    if side not in ("fail", "pass"):
        raise ValueError(f"side must be 'fail' or 'pass', got {side!r}")
    stat = record.statistic
    prepared = _prepared(record, table, order, at, SEQUENTIAL_STATISTICS)
    if prepared is None:
        return None
    lo, hi, x, at = prepared
    if stat == "mean":
        col = table.conditions.index(record.value)  # type: ignore[arg-type]
        return [tuple(r) for r in _column_path(x[:, col], lo, hi, alpha, at,
                                                 one_sided=side == "pass").tolist()]
    n_cond = len(table.conditions)
    if n_cond < 2:
        return None
    if _paired_form(stat, x):
        return _paired_range(x, lo, hi, alpha, at, union=side == "fail")
    level = alpha / n_cond if side == "fail" else alpha / 2
    cs = np.stack([_column_path(x[:, c], lo, hi, level, at, one_sided=side == "pass")
                   for c in range(n_cond)], axis=1)  # (looks, C, 2)
    out = []
    for low, up in zip(cs[:, :, 0], cs[:, :, 1], strict=True):
        r_low, r_high = max(0.0, float(low.max() - up.min())), float(up.max() - low.min())
        if stat == "range":
            out.append((r_low, r_high))
        elif stat == "std":
            out.append((r_low / math.sqrt(2 * n_cond), r_high / 2))
        elif low.min() <= 0:  # ratio = min / max of the means: unbounded below a zero mean
            if lo < 0:
                return None
            out.append((0.0, 1.0))
        else:
            out.append((float(low.min() / up.max()), float(min(1.0, up.min() / low.max()))))
    return out


def _prepared(record: MetricRecord, table: UnitTable, order: Sequence[str],
              at: Sequence[int] | None, statistics: Sequence[str]
              ) -> tuple[float, float, np.ndarray, list[int]] | None:
    """Return (lo, hi, the rows in the order asked, the looks) of a record with a form here."""
    bounds = _value_range(table)
    if record.statistic not in statistics or bounds is None or (
            record.statistic == "mean" and record.value not in table.conditions):
        return None
    x = _ordered(table, order)
    looks_at = [len(x)] if at is None else [min(int(n), len(x)) for n in at]
    return bounds[0], bounds[1], x, looks_at


def _ordered(table: UnitTable, order: Sequence[str]) -> np.ndarray:
    """Return the table's rows (units x conditions) in the order asked, others left out."""
    index = {u: i for i, u in enumerate(table.units)}
    rows = [index[u] for u in order if u in index]
    return table.matrix()[rows] if rows else np.empty((0, len(table.conditions)))


def _e_process(x: np.ndarray, lo: float, hi: float, bound: float, side: str,
               other: float | None = None) -> np.ndarray:
    """Return the betting e-process against ``mean <= bound`` (``greater``) or ``>= bound``.

    ``other``: a ``greater`` test's lower bound as well, for the null ``other <= mean <=
    bound`` (:func:`recaudit.sequential.betting_e_value_outside`), reduced to one side where
    the other cannot be crossed. For x in [lo, hi]: all ones where the null holds for every law
    on [lo, hi] (nothing can reject it), NaN where it holds for none (no e-value form).
    """
    if other is not None:
        if other > bound:
            return np.full(x.size, np.nan)
        if other <= lo:
            return _e_process(x, lo, hi, bound, "greater")
        if bound >= hi:
            return _e_process(x, lo, hi, other, "less")
        return betting_e_value_outside(np.clip(x, lo, hi), lo, hi, other, bound,
                                       alpha=SEQUENTIAL_ALPHA, truncation=TRUNCATION,
                                       bets=BETS)
    if (side == "greater" and bound >= hi) or (side == "less" and bound <= lo):
        return np.ones(x.size)
    if (side == "greater" and bound < lo) or (side == "less" and bound > hi) or \
            bound in (lo, hi):
        return np.full(x.size, np.nan)
    return betting_e_value(np.clip(x, lo, hi), lo, hi, bound, side,  # type: ignore[arg-type]
                           alpha=SEQUENTIAL_ALPHA, truncation=TRUNCATION, bets=BETS)


def _at_looks(values: np.ndarray, seen: np.ndarray, at: Sequence[int]) -> np.ndarray:
    """``values[k - 1]`` with k the observations seen after each of ``at`` units (1 at k = 0)."""
    out = np.ones(len(at))
    for r, n in enumerate(at):
        k = int(seen[n - 1]) if n > 0 and len(seen) else 0
        if k:
            out[r] = values[k - 1]
    return out


def record_e_path(record: MetricRecord, table: UnitTable, order: Sequence[str], spec: Any,
                  at: Sequence[int] | None = None) -> list[float] | None:
    """Return the record's e-value against "the gate holds" after each of ``at`` units.

    The null is the gate's pass region (``min <= statistic <= max``); a large value is evidence
    that the statistic lies beyond a bound. ``mean``: the one-sided betting e-process of
    :func:`recaudit.sequential.betting_e_value` against ``mean <= max`` (or ``mean >= min``);
    with both bounds, :func:`recaudit.sequential.betting_e_value_outside` against ``min <= mean
    <= max`` (each step bets on the side the earlier units point to). ``range`` in the paired
    form (at most 8 conditions, ``max`` only): the average over pairs of the latter against
    ``-max <= d_ij <= max``; under the null every pair's difference lies within ``±max``, so
    each term, and their average, is an e-process. The value at a stopping time is an e-value
    (Ville), which e-BH combines across a gate's records (:func:`judge_sequentially`). None: no
    e-value form (the gate's fail side then reads the record's confidence sequence).
    """
    stat = record.statistic
    prepared = _prepared(record, table, order, at, ("mean", "range"))
    if prepared is None:
        return None
    lo, hi, x, at = prepared
    if stat == "mean":
        col = x[:, table.conditions.index(record.value)]  # type: ignore[arg-type]
        present = ~np.isnan(col)
        if spec.max is None and spec.min is None:
            return None
        process = (_e_process(col[present], lo, hi, spec.max, "greater", spec.min)
                   if spec.max is not None else _e_process(col[present], lo, hi, spec.min,
                                                           "less"))
        e = _at_looks(process, np.cumsum(present), at)
    else:
        if spec.min is not None or spec.max is None or not _paired_form(stat, x):
            return None
        width = hi - lo
        terms = []
        for i, j in _pairs(x.shape[1]):
            xi, xj = x[:, i], x[:, j]
            oi, oj = np.flatnonzero(~np.isnan(xi)), np.flatnonzero(~np.isnan(xj))
            m = min(oi.size, oj.size)
            d = np.clip(xi[oi[:m]] - xj[oj[:m]], -width, width)
            seen = np.minimum(np.cumsum(~np.isnan(xi)), np.cumsum(~np.isnan(xj)))
            terms.append(_at_looks(_e_process(d, -width, width, spec.max, "greater",
                                              -spec.max), seen, at)
                         if m else np.ones(len(at)))
        e = np.mean(terms, axis=0)
    if np.isnan(e).any():
        return None
    return [float(v) for v in e]


def prequential_path(record: MetricRecord, table: UnitTable, order: Sequence[str], spec: Any,
                     alpha: float, at: Sequence[int] | None = None
                     ) -> tuple[list[tuple[float, float]], list[float] | None] | None:
    """Return a fail-only form from the record's ``sequence_table`` (``table`` here).

    The table's one column holds prequential observations (each from a model fitted on
    earlier rounds; :attr:`recaudit.results.MetricRecord.sequence_table`) whose conditional
    means are each at most the statistic's population value. Returns, after each of ``at``
    units: the interval ``[L, hi]`` with ``L`` the one-sided lower bound at ``alpha`` of their
    running mean (:func:`recaudit.sequential.one_sided_bounds`; ``hi`` the value range's top:
    nothing here can show the statistic lies *below* a bound, so such a record never passes
    early), and the betting e-process against ``mean <= max`` (None without a ``max`` inside
    the range). Under "the statistic is at most ``max``" every conditional mean is at most
    ``max``, so the product stays a nonnegative supermartingale (Ville). None: no values.
    """
    bounds = _value_range(table)
    if bounds is None or len(table.conditions) != 1:
        return None
    lo, hi = bounds
    x = _ordered(table, order)[:, 0]
    looks_at = [len(x)] if at is None else [min(int(n), len(x)) for n in at]
    present = ~np.isnan(x)
    if not present.any():
        return None
    values = np.clip(x[present], lo, hi)
    lower, _ = one_sided_bounds(values, lo, hi, alpha, truncation=TRUNCATION, bets=BETS)
    seen = np.cumsum(present)
    path = [(float(lower[k - 1]) if k else lo, hi)
            for k in (int(seen[n - 1]) if n > 0 else 0 for n in looks_at)]
    e = None
    if spec.max is not None and lo < spec.max < hi:
        e = [float(v) for v in _at_looks(_e_process(values, lo, hi, spec.max, "greater"),
                                         seen, looks_at)]
    return path, e


def record_sequence(record: MetricRecord, table: UnitTable, order: Sequence[str],
                    alpha: float) -> tuple[float, float] | None:
    """Return the record's confidence-sequence interval now (:func:`record_path`'s last)."""
    path = record_path(record, table, order, alpha)
    return None if path is None else path[-1]


def _pair_path(xi: np.ndarray, xj: np.ndarray, width: float, alpha: float,
               at: Sequence[int], one_sided: bool = False) -> np.ndarray:
    """Return the CS of ``mean_i - mean_j`` after each of ``at`` units: (looks, 2).

    The k-th observed cell of condition i is paired with the k-th observed cell of condition
    j: on paired cells (every unit has both) that is each unit's own difference; on groups of
    different units, two independent units, so the differences are independent with mean
    ``mean_i - mean_j`` either way. ``one_sided``: as in :func:`_column_path`.
    """
    oi, oj = np.flatnonzero(~np.isnan(xi)), np.flatnonzero(~np.isnan(xj))
    m = min(oi.size, oj.size)
    out = np.tile([-width, width], (len(at), 1)).astype(float)
    if not m:
        return out
    d = np.clip(xi[oi[:m]] - xj[oj[:m]], -width, width)
    lower, upper = (one_sided_bounds(d, -width, width, alpha, truncation=TRUNCATION, bets=BETS)
                    if one_sided else betting_confidence_sequence(d, -width, width, alpha))
    seen_i, seen_j = np.cumsum(~np.isnan(xi)), np.cumsum(~np.isnan(xj))
    for r, n in enumerate(at):
        k = min(int(seen_i[n - 1]), int(seen_j[n - 1])) if n > 0 else 0
        if k:
            out[r] = lower[k - 1], upper[k - 1]
    return out


def _pairs(n_cond: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n_cond) for j in range(i + 1, n_cond)]


def _paired_form(stat: str | None, x: np.ndarray) -> bool:
    """Return whether a range is read from pairs.

    At most 8 conditions, on paired cells (every unit has every condition) or on groups of
    different units (one cell each).
    """
    cells = (~np.isnan(x)).sum(axis=1)
    return (stat == "range" and 2 <= x.shape[1] <= PAIRED_RANGE_MAX_CONDITIONS and len(x) > 0
            and bool((cells == x.shape[1]).all() or (cells <= 1).all()))


def _paired_range(x: np.ndarray, lo: float, hi: float, alpha: float,
                  at: Sequence[int], union: bool = True) -> list[tuple[float, float]]:
    """Range of C condition means from the CS of each pair's difference (:func:`_pair_path`).

    range = max over pairs of |mean_i - mean_j|; each pair's differences lie in
    [lo - hi, hi - lo], and its CS at alpha / (pairs) (``union``; else at alpha, for the pass
    side) bounds |d_ij| in [max(0, l, -u), max(|l|, |u|)].
    """
    n_cond = x.shape[1]
    pairs = _pairs(n_cond)
    width = hi - lo
    level = alpha / len(pairs) if union else alpha
    r_low, r_high = np.zeros(len(at)), np.zeros(len(at))
    for i, j in pairs:
        path = _pair_path(x[:, i], x[:, j], width, level, at, one_sided=not union)
        r_low = np.maximum(r_low, np.maximum(path[:, 0], -path[:, 1]))
        r_high = np.maximum(r_high, np.abs(path).max(axis=1))
    return [(float(a), float(b)) for a, b in zip(r_low, r_high, strict=True)]


def _passes(interval: tuple[float, float], spec: Any) -> bool:
    """Whether a pass-side interval lies inside the gate's bounds."""
    lower, upper = interval
    return (spec.max is None or upper <= spec.max) and (spec.min is None or lower >= spec.min)


def _beyond(interval: tuple[float, float], spec: Any) -> bool:
    """Whether a fail-side interval lies beyond one of the gate's bounds."""
    lower, upper = interval
    return (spec.max is not None and lower > spec.max) or (spec.min is not None
                                                          and upper < spec.min)


@dataclass
class GateTrack:
    """One gate through the rounds: its decision so far and its path (one entry per look)."""

    decision: str = "undecided"  # "pass" | "fail" | "undecided"
    decided_after: int | None = None  # units when decided
    sequential: bool = True  # False: some record has no sequential form
    path: list[dict[str, Any]] = field(default_factory=list)
    how: str = ""  # what decided it, in words


@dataclass(frozen=True)
class RecordLook:
    """One record of a gate at one look: what :func:`decide` reads.

    ``interval``: the pass-side interval (:func:`record_path`, ``side="pass"``); ``e_value``:
    :func:`record_e_path`'s value, None without an e-value form; ``fail_interval``: then the
    fail-side CS at alpha / K (None: not computed, or no sequential form).
    """

    name: str
    interval: tuple[float, float]
    e_value: float | None = None
    fail_interval: tuple[float, float] | None = None


def decide(records: Sequence[RecordLook], spec: Any, alpha: float, n_records: int | None = None
           ) -> tuple[str, str]:
    """Return a gate's decision at one look and what decided it, in words.

    * **Pass** when every record's pass-side interval lies inside the bounds (at ``alpha``).
      Intersection-union: a false pass needs the sequence of a record that truly lies beyond
      the bound to miss, so there is no correction across records.
    * **Fail** when e-BH (:func:`recaudit.sequential.e_bh`) at ``alpha * K_e / K`` rejects
      "the gate holds" for one of the K_e records with an e-value, or when the fail-side CS
      (at ``alpha / K``) of one of the others lies beyond a bound. When every record truly
      holds, e-BH's FDR is the chance of any false fail: the gate fails falsely with
      probability at most ``alpha``.

    ``n_records``: K, when some of the gate's records have no sequential form (they are not
    in ``records`` and keep the gate from passing).
    """
    k_all = max(1, n_records if n_records is not None else len(records))
    with_e = [r for r in records if r.e_value is not None]
    if with_e:
        level = alpha * len(with_e) / k_all
        e = [float(r.e_value) for r in with_e]  # type: ignore[arg-type]
        if e_bh(e, level).any():
            worst = with_e[int(np.argmax(e))]
            return "fail", (f"e-BH over {len(e)} record(s) at {level:g}: e = "
                            f"{worst.e_value:.3g} for {worst.name}")
    for r in records:
        if r.e_value is None and r.fail_interval is not None and _beyond(r.fail_interval, spec):
            lower, upper = r.fail_interval
            return "fail", (f"the {100 * (1 - alpha / k_all):g}% confidence sequence "
                            f"[{lower:.4g}, {upper:.4g}] of {r.name} lies beyond the bound")
    if records and len(records) == k_all and all(_passes(r.interval, spec) for r in records):
        return "pass", (f"every record's {100 * (1 - alpha):g}% confidence sequence lies "
                        "inside the bound")
    return "undecided", ""


def judge_sequentially(records: Sequence[MetricRecord], probes: dict[str, ProbeResult],
                       orders: dict[str, list[str]], spec: Any, alpha: float
                       ) -> tuple[str, bool, dict[str, Any]]:
    """Judge a gate's records at the sequential level ``alpha`` (:func:`decide`).

    Returns the decision, whether every record has a sequential form, and the path entry of
    the record closest to undecided (``n``, ``estimate``, ``lower``, ``upper`` of its
    pass-side interval, its ``e_value`` where it has one, and ``how``: what decided).
    """
    k_all = max(1, len(records))
    looks_now: list[RecordLook] = []
    entry: dict[str, Any] = {}
    sequential = True
    for rec in records:
        probe = probes.get(rec.probe)
        table = next((t for t in probe.units if t.id == rec.table), None) if probe else None
        order = orders.get(rec.probe, [])
        path = None if table is None else record_path(rec, table, order, alpha, side="pass")
        fail_iv = None
        if path is not None and table is not None:
            e_path = record_e_path(rec, table, order, spec)
            if e_path is None:
                fail_iv = record_sequence(rec, table, order, alpha / k_all)
        else:
            sequence = next((t for t in probe.units if t.id == rec.sequence_table),
                            None) if probe and rec.sequence_table else None
            form = None if sequence is None else prequential_path(rec, sequence, order, spec,
                                                                  alpha)
            if form is None or form[1] is None:
                sequential = False
                continue
            path, e_path = form
        e_value = None if e_path is None else e_path[-1]
        look = RecordLook(_record_name(rec), path[-1], e_value, fail_iv)
        looks_now.append(look)
        if not entry or not _passes(look.interval, spec):
            entry = {"n": rec.n, "estimate": rec.estimate, "lower": look.interval[0],
                     "upper": look.interval[1]}
            if e_value is not None:
                entry["e_value"] = e_value
    decision, how = decide(looks_now, spec, alpha, k_all)
    if how:
        entry["how"] = how
    return decision, sequential, entry


def _record_name(rec: MetricRecord) -> str:
    parts = [rec.metric] + [f"{k}={v}" for k, v in (("attribute", rec.attribute),
                                                     ("value", rec.value), ("k", rec.k)) if v]
    return " ".join(str(p) for p in parts)


# -- the driver --------------------------------------------------------------------------------
class AdaptiveRounds:
    """Run planned probes in rounds of units, under an optional budget; stop when decided.

    ``measure(item, answers, extra, units)`` analyses one planned probe on the queries of
    ``units`` (a dict: each unit asked so far -> the round it was asked in; all units when
    None); ``gates`` the config's gate specs; ``adaptive`` False
    runs one round of every unit (a budget alone).
    """

    def __init__(self, planned: Sequence[Any], extra: dict[str, list[Any]], engine: Any,
                 measure: Callable[..., ProbeResult], gates: Sequence[Any], *, seed: int,
                 alpha: float, adaptive: bool, budget: Budget | None,
                 min_units: int = 10, say: Callable[[str], None] | None = None) -> None:
        self.planned, self.extra, self.engine, self.measure = planned, extra, engine, measure
        self.gates, self.alpha, self.adaptive, self.budget = list(gates), alpha, adaptive, budget
        self.say = say or (lambda line: None)
        self.orders = {item.probe.run_id: unit_order([q.key.unit for q in item.queries],
                                                     seed, item.probe.run_id)
                       for item in planned if item.queries}
        # a probe no gate reads is asked in full in the first round: nothing decides it early
        gated = {item.probe.run_id for item in planned if item.queries
                 and any(self._gate_touches(g, item.probe.run_id) for g in self.gates)}
        self.looks = {run: (looks(len(o), min_units) if adaptive and run in gated else [len(o)])
                      for run, o in self.orders.items()}
        self.tracks: dict[int, GateTrack] = {i: GateTrack() for i in range(len(self.gates))}
        self.spent = 0.0
        self.budget_exhausted = False
        self.rounds = 0
        self.asked: dict[str, int] = {run: 0 for run in self.orders}
        self.answers: dict[str, Any] = {}

    # budget ---------------------------------------------------------------------------------
    def _affordable(self, requests: list[Any]) -> int | None:
        """How many of the engine's misses fit in what is left (None: no budget)."""
        if self.budget is None or self.engine.dry_run:  # a dry run spends nothing
            return None
        from .engine import approx_tokens

        unique, cached, _, _ = self.engine.plan(requests)
        max_new = self.engine.recommender.decoding.max_new_tokens
        left, n = self.budget.limit - self.spent, 0
        for key in (k for k in unique if k not in cached):
            c = self.budget.cost(approx_tokens(unique[key]), max_new)
            if c > left + 1e-12:
                self.budget_exhausted = True
                break
            left -= c
            n += 1
        self.spent = self.budget.limit - left
        return n

    # rounds ---------------------------------------------------------------------------------
    def arrival(self, run: str, n: int | None = None) -> dict[str, int]:
        """Map the first ``n`` units of ``run`` (all: None), in asking order, to their rounds.

        The round each was asked in, 0 the first.
        """
        n = len(self.orders[run]) if n is None else n
        rounds = np.searchsorted(self.looks[run], np.arange(n), side="right")
        return {u: int(k) for u, k in zip(self.orders[run][:n], rounds, strict=True)}

    def _units_now(self, run: str, r: int) -> list[str]:
        ls = self.looks[run]
        return self.orders[run][:ls[min(r, len(ls) - 1)]]

    def _round_requests(self, r: int, active: set[str]) -> list[Any]:
        reqs = []
        for item in self.planned:
            run = item.probe.run_id
            if not item.queries or run not in active:
                continue
            keep = set(self._units_now(run, r))
            reqs += [q.request for q in item.queries if str(q.key.unit) in keep]
            reqs += [q.request for q in self.extra.get(run, [])
                     if str(getattr(q.key, "unit", None)) in keep]
        return reqs

    def run(self, evaluate: Callable[[list[ProbeResult]], dict[str, ProbeResult]]
            ) -> list[ProbeResult]:
        """Ask round by round; return the probe results on the units asked.

        ``evaluate(results)`` returns the probe results by run id that gates select from.
        """
        active = set(self.orders)
        results: dict[str, ProbeResult] = {}
        max_rounds = max((len(v) for v in self.looks.values()), default=0)
        if self.budget is not None:
            whole = self._round_requests(max_rounds, active)
            self.say(f"budget: {self.budget.describe()}; the whole plan would cost "
                     f"~{self._plan_cost(whole):g} (cached answers are free)")
        for r in range(max_rounds):
            reqs = self._round_requests(r, active)
            cap = self._affordable(reqs)
            saved = self.engine.max_requests
            if cap is not None:
                self.engine.max_requests = cap if saved is None else min(cap, saved)
            try:
                self.answers.update(self.engine.run(reqs))
            finally:
                self.engine.max_requests = saved
            self.rounds = r + 1
            for item in self.planned:
                run = item.probe.run_id
                if item.queries and run in active:
                    units = self._units_now(run, r)
                    self.asked[run] = len(units)
                    results[run] = self.measure(item, self.answers, self.extra.get(run, []),
                                                self.arrival(run, len(units)))
            if not self.adaptive or self.budget_exhausted or self.engine.dry_run:
                break
            self._look(evaluate(list(results.values())), r)
            undecided = [i for i, t in self.tracks.items() if t.decision == "undecided"]
            if not undecided:
                break
            # a probe goes on only while a gate on it is undecided
            active = {run for run in active
                      if any(self._gate_touches(self.gates[i], run) for i in undecided)}
            if not active:
                break
        planned = sum(len(i.queries) for i in self.planned if i.queries)
        asked = self.requests_asked()
        units = sum(self.asked.values())
        self.say(f"{'adaptive' if self.adaptive else 'budget'}: {self.rounds} round(s) over "
                 f"{units} of {sum(len(o) for o in self.orders.values())} units: "
                 f"{asked} of {planned} planned requests ({100 * asked / max(1, planned):.0f}%), "
                 f"{self.engine.stats.computed} computed now"
                 + (f"; spent {self.budget.describe(round(self.spent, 6))}"
                    if self.budget is not None else ""))
        return list(results.values())

    def requests_asked(self) -> int:
        """Return the planned requests of the units asked so far (cached or computed)."""
        total = 0
        for item in self.planned:
            if item.queries:
                run = item.probe.run_id
                asked = set(self.orders[run][:self.asked[run]])
                total += sum(1 for q in item.queries if str(q.key.unit) in asked)
        return total

    def _plan_cost(self, requests: list[Any]) -> float:
        from .engine import approx_tokens

        assert self.budget is not None
        unique, cached, _, _ = self.engine.plan(requests)
        max_new = self.engine.recommender.decoding.max_new_tokens
        return sum(self.budget.cost(approx_tokens(r), max_new) for k, r in unique.items()
                   if k not in cached)

    def _gate_touches(self, spec: Any, run: str) -> bool:
        item = next(i for i in self.planned if i.probe.run_id == run)
        return spec.probe in (run, item.probe.name)

    def _look(self, probes: dict[str, ProbeResult], r: int) -> None:
        from .errors import GateSpecError
        from .gates import select_records

        result_like = _Probes(list(probes.values()))
        for i, spec in enumerate(self.gates):
            track = self.tracks[i]
            if track.decision != "undecided":
                continue
            try:
                records = select_records(result_like, spec)  # type: ignore[arg-type]
            except GateSpecError:
                track.sequential = False
                continue
            decision, sequential, entry = judge_sequentially(
                records, probes, self.orders, spec, SEQUENTIAL_ALPHA)
            track.sequential = track.sequential and sequential
            runs = {rec.probe for rec in records}
            n = sum(self.asked.get(run, 0) for run in runs)
            how = entry.pop("how", "")
            if entry:
                track.path.append({"round": r + 1, "units": n, **entry})
            if decision != "undecided":
                track.decision, track.decided_after, track.how = decision, n, how

    def gate_result(self, i: int, fixed: GateResult | None) -> GateResult:
        """Return the gate's final result: its sequential decision, else ``fixed`` (the cap's)."""
        track = self.tracks[i]
        if track.decision != "undecided":
            msg = f"decided after {track.decided_after} units (sequential): {track.how}"
            base = fixed.model_dump() if fixed is not None else {}
            base.update(passed=track.decision == "pass", decision="sequential",
                        decided_after=track.decided_after, path=track.path,
                        message=msg + (f"; {base['message']}" if base.get("message") else ""))
            return GateResult(**base)
        assert fixed is not None
        how = "at the cap (fixed n)" if not self.budget_exhausted else \
            "undecided: the budget ran out"
        return fixed.model_copy(update={
            "decision": "fixed-n" if not self.budget_exhausted else "undecided",
            "passed": fixed.passed and not self.budget_exhausted,
            "path": track.path, "message": f"{how}: {fixed.message}"})


class _Probes:
    """The slice of an AuditResult that gate selection reads (its probes)."""

    def __init__(self, probes: list[ProbeResult]) -> None:
        self.probes = probes
