"""Uncertainty for every reported number: bootstrap CIs, permutation tests, FDR control.

Units are what was sampled: instructions (FaiRLLM), users (CFaiRLLM), requests. Every random
draw comes from a :class:`numpy.random.Generator` seeded by the caller (the analysis kit's
seeding policy, :meth:`recaudit.probes.kit.Summariser.seed`), so a report is reproducible.
These are every resampling routine the analysis kit and compare use:

* :func:`bootstrap_counts` -- a nonparametric bootstrap as multinomial unit counts;
* :func:`column_means` / :func:`resampled_means` -- per-condition means over units (NaN cells
  left out), of the sample and of each bootstrap resample (all conditions of a unit move
  together: a paired bootstrap);
* :func:`percentile_interval` -- the percentile CI of bootstrap replicates;
* :func:`spread_statistic` -- range / std / ratio of condition means;
* :func:`permutation_test_values` -- paired permutation test that the conditions are
  exchangeable within each unit (no attribute effect), and :func:`null_floor` of its null;
* :func:`paired_swap_test` -- paired permutation test of two results on the same units;
* :func:`tie_tolerance` / :func:`permutation_pvalue` -- the one rule every permutation test
  (these two, and a probe's own, e.g. leakage's) judges ties by;
* :func:`benjamini_hochberg` -- adjusted p-values within a family.

The small-sample rule (:data:`recaudit.verdicts.MIN_UNITS`) lives in :mod:`recaudit.verdicts`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "BHResult",
    "NullFloor",
    "PermutationResult",
    "SPREAD_STATISTICS",
    "SwapMasks",
    "SwapTest",
    "benjamini_hochberg",
    "bias_corrected_interval",
    "bootstrap_counts",
    "column_means",
    "null_floor",
    "paired_swap_test",
    "percentile_interval",
    "permutation_pvalue",
    "permutation_test_values",
    "resampled_means",
    "spread_statistic",
    "tie_tolerance",
    "TIE_ULPS",
]

_ALTERNATIVES = ("greater", "less", "two-sided")
# Bound on the number of float64 elements materialised at once when permuting.
_MAX_ELEMENTS = 1 << 22
#: ulps of the data's magnitude, per summed term, within which two statistics are tied
TIE_ULPS = 4


# -- the bootstrap -------------------------------------------------------------------------------
def bootstrap_counts(n_units: int, n_resamples: int, seed: int) -> np.ndarray:
    """``(n_resamples, n_units)`` bootstrap resamples of ``n_units`` units, as counts.

    Drawing ``n`` units with replacement is drawing how often each unit is taken:
    ``counts ~ Multinomial(n, (1/n, ..., 1/n))`` per resample (Efron & Tibshirani, *An
    Introduction to the Bootstrap*, 1993, ch. 6). One count matrix serves every statistic of
    a table, so all conditions and k of a resampled unit move together.

    Examples
    --------
    >>> c = bootstrap_counts(5, 3, seed=0)
    >>> c.shape, c.sum(axis=1).tolist()
    ((3, 5), [5.0, 5.0, 5.0])
    """
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_units, np.full(n_units, 1.0 / n_units),
                           size=int(n_resamples)).astype(float)


def column_means(values: np.ndarray) -> np.ndarray:
    """Means over units (axis 0) with NaN cells left out (NaN where a column has none).

    A table without NaN takes plain ``values.mean(axis=0)``, so its estimate is bit-identical to
    numpy's mean.
    """
    observed = ~np.isnan(values)
    if observed.all():
        return values.mean(axis=0)
    counts = observed.sum(axis=0)
    sums = np.where(observed, values, 0.0).sum(axis=0)
    out = np.full(sums.shape, np.nan)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


def resampled_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    r"""Per-column means of ``values`` (units on axis 0) under each row of bootstrap ``counts``.

    For resample ``b`` and column ``j``: :math:`\bar x_{bj} = \sum_u c_{bu} o_{uj} x_{uj}
    / \sum_u c_{bu} o_{uj}` with ``o`` the non-NaN mask (NaN cells left out; NaN where a
    resample observed none). Returns shape ``(B, *values.shape[1:])``.

    Examples
    --------
    >>> x = np.array([[1.0, np.nan], [3.0, 4.0]])
    >>> resampled_means(x, np.array([[2.0, 0.0], [1.0, 1.0]])).tolist()
    [[1.0, nan], [2.0, 4.0]]
    """
    n = values.shape[0]
    observed = ~np.isnan(values)
    flat_v = np.where(observed, values, 0.0).reshape(n, -1)
    flat_o = observed.reshape(n, -1).astype(float)
    sums, cnt = counts @ flat_v, counts @ flat_o
    out = np.full(sums.shape, np.nan)
    np.divide(sums, cnt, out=out, where=cnt > 0)
    return out.reshape((counts.shape[0], *values.shape[1:]))


def percentile_interval(boot: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the percentile interval ``[q_{a/2}, q_{1-a/2}]`` of replicates (over axis 0).

    ``a = 1 - confidence``; NaN replicates are left out, and a column with none gives NaN
    (Efron & Tibshirani 1993, ch. 13).

    Examples
    --------
    >>> lo, hi = percentile_interval(np.arange(101.0)[:, None], 0.8)
    >>> round(float(lo[0]), 9), round(float(hi[0]), 9)
    (10.0, 90.0)
    """
    tail = (1 - confidence) / 2
    if not boot.shape[0]:
        return (np.full(boot.shape[1:], np.nan),) * 2
    if not np.isnan(boot).any():  # the same quantiles, vectorised (nanquantile loops columns)
        lo, hi = np.quantile(boot, [tail, 1 - tail], axis=0)
        return lo, hi
    with warnings.catch_warnings():  # an all-NaN column (e.g. a ratio of zeros) gives NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(boot, [tail, 1 - tail], axis=0)
    return lo, hi


def bias_corrected_interval(boot: np.ndarray, estimate: Any, confidence: float
                            ) -> tuple[np.ndarray, np.ndarray]:
    r"""Return the percentile interval shifted by the bootstrap's bias (over axis 0).

    For a statistic that is positive under noise (a spread, Cramér's V, NDKL) resampling adds
    noise of its own, so the replicates sit above the estimate and the percentile interval can
    lie wholly above it. With bias :math:`b = \bar T^* - \hat T` (mean of the finite
    replicates minus the estimate) the interval is

    .. math:: [q_{a/2} - b,\; q_{1-a/2} - b]

    (the bias-corrected percentile interval of Efron & Tibshirani 1993, sec. 10.6), centred on
    the estimate like the replicates are centred on their mean. It is the one CI method of
    every record whose metric declares ``noise_floor``; NaN where the estimate or every
    replicate is.

    Examples
    --------
    >>> lo, hi = bias_corrected_interval(np.arange(10.0, 111.0)[:, None], [20.0], 0.8)
    >>> round(float(lo[0]), 9), round(float(hi[0]), 9)
    (-20.0, 60.0)
    """
    lo, hi = percentile_interval(boot, confidence)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        finite = np.where(np.isfinite(boot), boot, np.nan)
        bias = np.nanmean(finite, axis=0) - np.asarray(estimate, dtype=float)
    return lo - bias, hi - bias


class NullFloor(NamedTuple):
    """What a statistic scores under its permutation null: mean, 95th and 5th percentiles."""

    mean: float | None
    p95: float | None
    p05: float | None = None  # the floor of a statistic where lower is worse (a ratio)


def null_floor(null: Any) -> NullFloor:
    """Return the mean, 95th and 5th percentiles of a permutation null distribution.

    That is what a model without any effect scores with this many units. Non-finite values are
    left out; all are None when none is left.

    Examples
    --------
    >>> null_floor(np.arange(21.0))
    NullFloor(mean=10.0, p95=19.0, p05=1.0)
    """
    null = np.asarray(null, dtype=float)
    null = null[np.isfinite(null)]
    if not null.size:
        return NullFloor(None, None, None)
    return NullFloor(float(null.mean()), float(np.quantile(null, 0.95)),
                     float(np.quantile(null, 0.05)))


# -- statistics of condition means -----------------------------------------------------------------
def _range(m: np.ndarray) -> np.ndarray:
    return np.max(m, axis=-1) - np.min(m, axis=-1)


def _std(m: np.ndarray) -> np.ndarray:
    return np.std(m, axis=-1, ddof=0)


def _ratio(m: np.ndarray) -> np.ndarray:
    hi = np.max(m, axis=-1)
    lo = np.min(m, axis=-1)
    out = np.full(np.shape(hi), np.nan)
    np.divide(lo, hi, out=out, where=hi > 0)
    return out


#: statistics of per-condition means over the last axis (vectorised)
SPREAD_STATISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "range": _range, "std": _std, "ratio": _ratio,
}


def spread_statistic(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """Return the spread statistic ``name`` of per-condition means over the last axis.

    ``range`` = max - min (SNSR, a gap), ``std`` = population std (SNSV), ``ratio`` = min / max
    (NaN when max <= 0).
    """
    try:
        return SPREAD_STATISTICS[name]
    except KeyError:
        raise ValueError(f"unknown statistic {name!r}: use one of "
                         f"{', '.join(SPREAD_STATISTICS)}") from None


def _resolve_stat(stat: str | Callable[[np.ndarray], float]) -> Callable[[np.ndarray], np.ndarray]:
    """Return a function of per-value means, applied to each row of a ``(B, V)`` array."""
    if stat == "snsr":
        return _range
    if stat == "snsv":
        return _std
    if isinstance(stat, str) and stat in SPREAD_STATISTICS:
        return SPREAD_STATISTICS[stat]
    if isinstance(stat, str):
        raise ValueError(f"unknown statistic {stat!r}: use 'snsr', 'snsv', "
                         f"{', '.join(map(repr, SPREAD_STATISTICS))} or a callable")
    return lambda m: np.asarray([stat(row) for row in m], dtype=float)


def _as_matrix(matrix: Any) -> np.ndarray:
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D units x values matrix, got shape {m.shape}")
    return m


# -- ties ------------------------------------------------------------------------------------------
def tie_tolerance(magnitude: float, n_terms: int = 1) -> float:
    r"""Return the absolute tolerance within which two statistics of the same data are tied.

    .. math:: \tau = \mathrm{TIE\_ULPS} \cdot \max(1, n) \cdot \varepsilon \cdot s

    with :math:`\varepsilon` the float64 machine epsilon, ``n = n_terms`` the number of terms
    summed into each mean and ``s = magnitude`` that of the values or means the statistic is
    computed from (and of the statistic itself where it is scale-free, e.g. a ratio or an AUC).
    A float sum of ``n`` terms of magnitude at most ``s`` is within :math:`(n - 1)
    \varepsilon s / 2` of the exact sum (Higham, *Accuracy and Stability of Numerical
    Algorithms*, 2002, eq. 4.4), so two statistics that are equal in exact arithmetic but were
    summed in other orders differ by less than :math:`\tau`. The tolerance is that of the
    *data*, never of the statistic alone: a spread of equal means is 0 or 1e-17, whatever the
    means' size, and a tolerance relative to it would tie nothing.

    Examples
    --------
    >>> tie_tolerance(1.0, 40) == 4 * 40 * 2.0 ** -52
    True
    """
    return TIE_ULPS * max(1, int(n_terms)) * float(np.finfo(float).eps) * abs(float(magnitude))


def permutation_pvalue(null: Any, observed: float, tolerance: float,
                       alternative: str = "greater", exact: bool = False) -> float:
    r"""Return the permutation p-value of ``observed`` against its ``null``, ties included.

    A permuted value counts as at least as extreme when it is within ``tolerance`` (from
    :func:`tie_tolerance`) of being so: for ``"greater"`` :math:`T_b \ge T_{obs} - \tau`,
    for ``"less"`` :math:`T_b \le T_{obs} + \tau`, and ``"two-sided"`` doubles the smaller
    one-sided p (capped at 1). With ``B`` sampled permutations,
    :math:`p = (1 + \#\{\text{extreme}\}) / (1 + B)` (Phipson & Smyth 2010); ``exact``:
    the null enumerates every permutation (the observed one included) and
    :math:`p = \#\{\text{extreme}\} / B`. NaN null values are left out; NaN when the
    observed value is NaN or no null value is left.

    Examples
    --------
    >>> permutation_pvalue([0.0, 0.5 - 1e-16, 0.7], 0.5, tie_tolerance(1.0, 10))  # a tie
    0.75
    """
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}")
    null = np.asarray(null, dtype=float).reshape(-1)
    null = null[~np.isnan(null)]
    if np.isnan(observed) or not null.size:
        return float("nan")
    extra = 0 if exact else 1

    def share(hits: int) -> float:
        return (extra + hits) / (extra + null.size)

    p_greater = share(int(np.count_nonzero(null >= observed - tolerance)))
    p_less = share(int(np.count_nonzero(null <= observed + tolerance)))
    if alternative == "greater":
        return float(p_greater)
    if alternative == "less":
        return float(p_less)
    return float(min(1.0, 2 * min(p_greater, p_less)))


# -- the paired permutation test -----------------------------------------------------------------
def _block_means(block: np.ndarray) -> np.ndarray:
    """``(B, V)`` column means of each ``(n, V)`` table of a ``(B, n, V)`` block (NaN left out).

    The one arithmetic of :func:`permutation_test_values` for the observed table and every
    permuted one: a sum over units in unit order, then one division.
    """
    observed = ~np.isnan(block)
    sums = np.where(observed, block, 0.0).sum(axis=1)
    counts = observed.sum(axis=1)
    means = np.full(sums.shape, np.nan)
    np.divide(sums, counts, out=means, where=counts > 0)
    return means


class PermutationResult(NamedTuple):
    """Observed statistic, permutation p-value and the null distribution."""

    statistic: float
    pvalue: float
    n_permutations: int
    null_distribution: np.ndarray


def permutation_test_values(
    matrix: Any,
    stat: str | Callable[[np.ndarray], float] = "snsr",
    n_permutations: int = 2000,
    seed: int | None = 0,
    alternative: str = "greater",
) -> PermutationResult:
    r"""Paired permutation test that the values' labels are exchangeable within each unit.

    Null hypothesis: the attribute value has no effect, so within each unit (row) the values'
    labels can be permuted. Each permutation shuffles every row independently, recomputes the
    column means and ``T = stat(means)`` (e.g. SNSR). With ``B`` permutations and the +1
    correction (Phipson & Smyth 2010), for ``alternative="greater"``:

    .. math:: p = \frac{1 + \#\{b : T_b \ge T_{obs} - \tau\}}{1 + B}

    (``"less"`` counts ``T_b <= T_obs + tau``; ``"two-sided"`` doubles the smaller one-sided p,
    capped at 1): :func:`permutation_pvalue`. The observed table goes through the very
    arithmetic of the permuted ones (the same array operation), and ties are judged at
    ``tau = tie_tolerance(s, n_units)`` with ``s`` the largest of the table's absolute values
    and ``|T_obs|`` (:func:`tie_tolerance`): a table whose rows are constant (an order-blind
    model) gives ``p = 1``. A callable ``stat`` is taken to be on the scale of the means or of
    ``|T_obs|``, as every spread is. NaN cells are left out of means (and move with their row's
    labels).

    Parameters
    ----------
    matrix : array-like, shape (n_units, n_values)
    stat : "snsr", "snsv", a name of :data:`SPREAD_STATISTICS`, or callable of the 1-D
        per-value means
    n_permutations : int
    seed : int
    alternative : {"greater", "less", "two-sided"}

    Returns
    -------
    PermutationResult

    Examples
    --------
    >>> import numpy as np
    >>> m = np.column_stack([np.zeros(30), np.ones(30)])
    >>> permutation_test_values(m, "snsr", n_permutations=999, seed=0).pvalue
    0.001
    >>> flat = np.repeat(np.linspace(0.1, 0.9, 40)[:, None], 5, axis=1)
    >>> permutation_test_values(flat, "snsr", n_permutations=999, seed=0).pvalue
    1.0
    """
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}")
    if int(n_permutations) < 1:
        raise ValueError("n_permutations must be >= 1")
    m = _as_matrix(matrix)
    n, v = m.shape
    fn = _resolve_stat(stat)
    if n == 0 or v == 0:
        return PermutationResult(float("nan"), float("nan"), int(n_permutations), np.array([]))
    rng = np.random.default_rng(seed)
    total = int(n_permutations)
    chunk = max(1, _MAX_ELEMENTS // (n * v))
    t_obs = float("nan")
    parts = []
    for start in range(0, total, chunk):
        b = min(chunk, total - start)
        # Shuffle each row's labels independently in every permutation (NaN moves along).
        block = rng.permuted(np.broadcast_to(m, (b, n, v)).copy(), axis=2)
        if start == 0:  # the observed table first, through the same arithmetic
            block = np.concatenate([m[None], block])
        t = np.asarray(fn(_block_means(block)), dtype=float)
        if start == 0:
            t_obs, t = float(t[0]), t[1:]
        parts.append(t)
    null = np.concatenate(parts)
    if np.isnan(t_obs):
        return PermutationResult(t_obs, float("nan"), total, null)
    finite = np.abs(m[np.isfinite(m)])
    magnitude = max(float(finite.max()) if finite.size else 0.0, abs(t_obs))
    p = permutation_pvalue(null, t_obs, tie_tolerance(magnitude, n), alternative)
    return PermutationResult(t_obs, p, total, null)


class BHResult(NamedTuple):
    """Benjamini-Hochberg adjusted p-values and the rejection mask at ``alpha``."""

    adjusted: np.ndarray
    reject: np.ndarray


def benjamini_hochberg(pvalues: Sequence[float], alpha: float = 0.05) -> BHResult:
    r"""Benjamini-Hochberg step-up control of the false discovery rate.

    With the ``m`` p-values sorted ascending, ``p_(1) <= ... <= p_(m)``:

    .. math:: \tilde p_{(i)} = \min\Big(1, \min_{j \ge i} \frac{m}{j} p_{(j)}\Big)

    and a hypothesis is rejected when ``adjusted <= alpha``. NaN p-values (tests that could not
    run) are not counted in ``m``, keep a NaN adjusted value and are never rejected. Matches
    :func:`scipy.stats.false_discovery_control` with ``method="bh"``.

    Source: Benjamini & Hochberg, JRSS-B 1995.

    Examples
    --------
    >>> r = benjamini_hochberg([0.01, 0.04, 0.03, 0.5], alpha=0.05)
    >>> r.adjusted.round(4).tolist(), r.reject.tolist()
    ([0.04, 0.0533, 0.0533, 0.5], [True, False, False, False])
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    p = np.asarray(pvalues, dtype=float).reshape(-1)
    valid = ~np.isnan(p)
    if ((p[valid] < 0) | (p[valid] > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    adjusted = np.full(p.shape, np.nan)
    pv = p[valid]
    m = pv.size
    if m:
        order = np.argsort(pv, kind="stable")
        scaled = pv[order] * m / np.arange(1, m + 1)
        adj_sorted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
        adj = np.empty(m)
        adj[order] = adj_sorted
        # m / j >= 1, so an adjusted p is never below its raw p; keep rounding from saying so
        adjusted[valid] = np.maximum(adj, pv)
    reject = np.zeros(p.shape, dtype=bool)
    reject[valid] = adjusted[valid] <= alpha
    return BHResult(adjusted, reject)


class SwapMasks:
    """Swap patterns for :func:`paired_swap_test`, cached by the number of units ``n``.

    ``(P, n)`` 0/1 masks (1 = swap that unit's baseline and current rows): all ``2**n`` when
    that is at most ``n_permutations`` (an exact test), else ``n_permutations`` random ones
    seeded by ``(seed, n)``.
    """

    def __init__(self, n_permutations: int, seed: int) -> None:
        self.n_permutations, self.seed = int(n_permutations), seed
        self._cache: dict[int, tuple[np.ndarray, bool]] = {}

    def get(self, n: int) -> tuple[np.ndarray, bool]:
        """Return the masks for ``n`` units and whether they are all ``2**n`` (exact)."""
        if n not in self._cache:
            if 2 ** n <= self.n_permutations:
                codes = np.arange(2 ** n, dtype=np.int64)
                self._cache[n] = (((codes[:, None] >> np.arange(n)) & 1).astype(float), True)
            else:
                rng = np.random.default_rng([self.seed, n])
                self._cache[n] = ((rng.random((self.n_permutations, n)) < 0.5).astype(float),
                                  False)
        return self._cache[n]


class SwapTest(NamedTuple):
    """Observed difference, its p-value, and whether every permutation gave the same value.

    ``degenerate``: the pooled data cannot tell the results apart (e.g. two constant tables);
    such a test can never reject and belongs in no multiple-comparison family.
    """

    statistic: float
    pvalue: float
    degenerate: bool = False


def paired_swap_test(base: np.ndarray, current: np.ndarray,
                     statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     masks: SwapMasks) -> SwapTest | None:
    r"""Two-sided paired permutation test of ``T = stat(current) - stat(base)``.

    ``base`` and ``current`` are ``(n, C)`` tables of the same ``n`` units (row ``u`` of both is
    the same instruction or user). Under the null the two results are exchangeable *per unit*,
    so each permutation swaps the rows of a random subset of units. ``statistic(values,
    weights)`` computes the statistic of the stacked ``(2n, C)`` table under ``(P, 2n)`` unit
    weights (see :mod:`recaudit.metrics.tables`), so all permutations are evaluated at once, and
    the observed ``T`` is the first row of that same call (the same arithmetic as the permuted
    ones). p-value (:func:`permutation_pvalue` of ``|T|``): ``#{|T_perm| >= |T_obs| - tau} /
    2**n`` when exact, ``(1 + #{...}) / (1 + P)`` when sampled, with ``tau =
    tie_tolerance(s, 2n)`` and ``s`` the largest of the tables' absolute values and of both
    results' statistics (:func:`tie_tolerance`). Returns a :class:`SwapTest`, or None when
    fewer than two units or T_obs is undefined.
    """
    base = np.asarray(base, dtype=float)
    current = np.asarray(current, dtype=float)
    n = base.shape[0]
    if n < 2 or base.shape != current.shape:
        return None
    stacked = np.vstack([base, current])
    s, exact = masks.get(n)
    s = np.vstack([np.zeros((1, n)), s])  # row 0: no unit swapped, the observed difference
    with np.errstate(invalid="ignore", divide="ignore"):
        now = np.asarray(statistic(stacked, np.hstack([s, 1 - s])), dtype=float)
        before = np.asarray(statistic(stacked, np.hstack([1 - s, s])), dtype=float)
    t = now - before
    obs, t = float(t[0]), t[1:]
    if np.isnan(obs):
        return None
    t = t[~np.isnan(t)]
    finite = np.abs(stacked[np.isfinite(stacked)])
    magnitude = max([float(finite.max()) if finite.size else 0.0]
                    + [abs(float(x)) for x in (now[0], before[0]) if np.isfinite(x)])
    tol = tie_tolerance(magnitude, 2 * n)
    p = permutation_pvalue(np.abs(t), abs(obs), tol, "greater", exact=exact)
    if np.isnan(p):
        return None
    degenerate = bool(t.size and np.all(np.abs(t - t[0]) <= tol) and abs(obs - t[0]) <= tol)
    return SwapTest(obs, min(1.0, p), degenerate)
