"""Uncertainty for every reported number: bootstrap CIs, permutation tests, FDR control.

Units are what was sampled: instructions (FaiRLLM) or users (CFaiRLLM). Every function takes a
``seed`` and draws from a :class:`numpy.random.Generator`, so a report is reproducible.

* :func:`bootstrap_ci` -- CI of a statistic of a 1-D sample of units.
* :func:`paired_bootstrap` -- CI of a function of per-value means of a ``units x values`` matrix
  (e.g. SNSR / SNSV over attribute values), resampling units jointly so that the values of one
  instruction stay together.
* :func:`permutation_test_values` -- paired permutation test that the values are exchangeable
  within each unit (no attribute effect).
* :func:`benjamini_hochberg` -- adjusted p-values across attributes / metrics.
* :func:`small_sample_warning` -- the one message every small or empty group carries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "BHResult",
    "BootstrapResult",
    "PairedBootstrapResult",
    "PermutationResult",
    "benjamini_hochberg",
    "bootstrap_ci",
    "bootstrap_unit_means",
    "paired_bootstrap",
    "permutation_test_values",
    "small_sample_warning",
    "spread_statistic",
    "SPREAD_STATISTICS",
    "SwapMasks",
    "SwapTest",
    "paired_swap_test",
]

#: Default number of units below which results carry a small-sample warning.
MIN_UNITS = 20

_METHODS = ("percentile", "basic")
_ALTERNATIVES = ("greater", "less", "two-sided")
# Bound on the number of float64 elements materialised at once when resampling.
_MAX_ELEMENTS = 1 << 22


def small_sample_warning(n: int, minimum: int = MIN_UNITS) -> str | None:
    """A one-line warning when ``n`` units are too few for a reliable interval, else ``None``.

    Below about 20 units percentile-bootstrap intervals are noticeably too narrow (they
    under-cover) and permutation p-values are coarse; with fewer than 2 units there is no
    interval at all.

    Examples
    --------
    >>> small_sample_warning(500) is None
    True
    >>> small_sample_warning(1)
    'only 1 unit (< 20): no confidence interval'
    """
    n = int(n)
    if n >= minimum:
        return None
    unit = "unit" if n == 1 else "units"
    if n < 2:
        return f"only {n} {unit} (< {minimum}): no confidence interval"
    return f"only {n} {unit} (< {minimum}): confidence interval unreliable"


@dataclass(frozen=True)
class BootstrapResult:
    """Point estimate and bootstrap confidence interval over units."""

    estimate: float
    low: float
    high: float
    confidence: float
    n: int
    n_resamples: int
    method: str
    seed: int | None
    warning: str | None = None

    @property
    def flagged(self) -> bool:
        """True when the sample is small (see :func:`small_sample_warning`)."""
        return self.warning is not None


@dataclass(frozen=True)
class PairedBootstrapResult(BootstrapResult):
    """:class:`BootstrapResult` of a function of per-value means, plus per-value mean CIs."""

    value_means: np.ndarray | None = None
    value_low: np.ndarray | None = None
    value_high: np.ndarray | None = None


def _check_common(n_resamples: int, confidence: float, method: str) -> None:
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")


def _interval(
    estimate: float, boot: np.ndarray, confidence: float, method: str
) -> tuple[float, float]:
    boot = boot[~np.isnan(boot)]
    if boot.size == 0 or np.isnan(estimate):
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0
    q_lo, q_hi = np.quantile(boot, [tail, 1.0 - tail])
    if method == "basic":
        return float(2 * estimate - q_hi), float(2 * estimate - q_lo)
    return float(q_lo), float(q_hi)


def _apply_stat(stat: Callable[..., Any], samples: np.ndarray) -> np.ndarray:
    """``stat`` over the rows of ``samples``: vectorised when it accepts ``axis``."""
    try:
        out = np.asarray(stat(samples, axis=1), dtype=float)
        if out.shape == (samples.shape[0],):
            return out
    except TypeError:
        pass
    return np.asarray([stat(row) for row in samples], dtype=float)


def bootstrap_ci(
    x: Sequence[float],
    stat: Callable[..., Any] = np.mean,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
    method: str = "percentile",
    *,
    min_units: int = MIN_UNITS,
) -> BootstrapResult:
    r"""Nonparametric bootstrap CI of ``stat`` over the units of ``x``.

    Draws ``n_resamples`` samples of ``n`` units with replacement (all at once, as an index
    matrix; ``stat`` is called with ``axis=1`` when it supports it) and reports the
    ``percentile`` interval ``[q_{a/2}, q_{1-a/2}]`` or the ``basic`` interval
    ``[2 theta - q_{1-a/2}, 2 theta - q_{a/2}]``.

    With ``n = 0`` every number is NaN; with ``n = 1`` the estimate exists but the bounds are
    NaN; below ``min_units`` the result carries a warning (``result.flagged``).

    Source: Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13.

    Parameters
    ----------
    x : sequence of float
        One value per unit (instruction, user).
    stat : callable
        Statistic of a 1-D sample (ideally accepting ``axis``), default the mean.
    n_resamples, confidence, seed, method :
        Bootstrap settings; ``method`` in {"percentile", "basic"}.

    Examples
    --------
    >>> r = bootstrap_ci([0.0, 1.0] * 20, seed=0)
    >>> r.estimate, r.low < 0.5 < r.high, r.flagged
    (0.5, True, False)
    """
    _check_common(n_resamples, confidence, method)
    arr = np.asarray(x, dtype=float).reshape(-1)
    n = arr.size
    warning = small_sample_warning(n, min_units)
    common = dict(confidence=confidence, n=n, n_resamples=int(n_resamples), method=method,
                  seed=seed, warning=warning)
    if n == 0:
        return BootstrapResult(float("nan"), float("nan"), float("nan"), **common)
    estimate = float(stat(arr))
    if n == 1:
        return BootstrapResult(estimate, float("nan"), float("nan"), **common)
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_ELEMENTS // n)
    parts = []
    for start in range(0, int(n_resamples), chunk):
        b = min(chunk, int(n_resamples) - start)
        idx = rng.integers(0, n, size=(b, n))
        parts.append(_apply_stat(stat, arr[idx]))
    boot = np.concatenate(parts)
    low, high = _interval(estimate, boot, confidence, method)
    return BootstrapResult(estimate, low, high, **common)


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
    """A spread of per-condition means over the last axis: ``range`` = max - min (SNSR, a gap),
    ``std`` = population std (SNSV), ``ratio`` = min / max (NaN when max <= 0)."""
    try:
        return SPREAD_STATISTICS[name]
    except KeyError:
        raise ValueError(f"unknown statistic {name!r}: use one of "
                         f"{', '.join(SPREAD_STATISTICS)}") from None


def _resolve_stat(stat: str | Callable[[np.ndarray], float]) -> Callable[[np.ndarray], np.ndarray]:
    """A function of per-value means, applied to each row of a ``(B, V)`` array."""
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


def _weighted_means(weights: np.ndarray, values: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Per-column means of ``values`` under row weights (one weight vector per output row)."""
    sums = weights @ values
    counts = weights @ observed
    out = np.full(sums.shape, np.nan)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


def bootstrap_unit_means(x: np.ndarray, n_resamples: int, rng: np.random.Generator,
                         chunk: int = 250) -> np.ndarray:
    """Means over axis 0 of ``x`` for ``n_resamples`` bootstrap resamples of its rows (units).

    Returns shape ``(n_resamples, *x.shape[1:])``. Resampling is done by counts (multinomial),
    so memory stays ``O(n_resamples * n_units)``.
    """
    n = x.shape[0]
    flat = x.reshape(n, -1)
    out = np.empty((n_resamples, flat.shape[1]))
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=b)  # (b, n)
        out[start:start + b] = counts @ flat / n
    return out.reshape((n_resamples, *x.shape[1:]))


def _as_matrix(matrix: Any) -> np.ndarray:
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D units x values matrix, got shape {m.shape}")
    return m


def paired_bootstrap(
    matrix: Any,
    stat: str | Callable[[np.ndarray], float] = "snsr",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
    method: str = "percentile",
    *,
    min_units: int = MIN_UNITS,
) -> PairedBootstrapResult:
    r"""Bootstrap CI of a function of per-value means, resampling units (rows) jointly.

    ``matrix[u, a]`` is the similarity of unit ``u`` (an instruction) under value ``a``. The
    estimate is ``stat(m)`` with ``m_a`` the mean of column ``a``; each resample draws ``n`` rows
    with replacement, keeping a row's values together (the values are paired by instruction),
    and recomputes the column means (as a weight-count matrix product, all resamples at once).
    NaN cells (a failed generation) are left out of their column's mean.

    Parameters
    ----------
    matrix : array-like, shape (n_units, n_values)
    stat : "snsr", "snsv" or callable
        ``"snsr"`` = max - min of the means, ``"snsv"`` = their population std (METRICS.md
        section 1); a callable receives the 1-D array of per-value means.
    n_resamples, confidence, seed, method :
        As in :func:`bootstrap_ci`.

    Returns
    -------
    PairedBootstrapResult
        Also holds ``value_means`` and percentile CIs of each column mean.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.column_stack([np.linspace(0, 1, 30), np.linspace(0, 1, 30) + 0.2])
    >>> r = paired_bootstrap(m, "snsr", seed=0)
    >>> round(r.estimate, 6), round(r.low, 6), round(r.high, 6)
    (0.2, 0.2, 0.2)
    """
    _check_common(n_resamples, confidence, method)
    m = _as_matrix(matrix)
    n, v = m.shape
    fn = _resolve_stat(stat)
    warning = small_sample_warning(n, min_units)
    common = dict(confidence=confidence, n=n, n_resamples=int(n_resamples), method=method,
                  seed=seed, warning=warning)
    observed = ~np.isnan(m)
    values = np.where(observed, m, 0.0)
    obs_f = observed.astype(float)
    point = _weighted_means(np.ones((1, n)), values, obs_f)
    estimate = float(fn(point)[0]) if n and v else float("nan")
    nan_v = np.full(v, np.nan)
    if n < 2:
        return PairedBootstrapResult(estimate, float("nan"), float("nan"), **common,
                                     value_means=point[0], value_low=nan_v, value_high=nan_v)
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_ELEMENTS // n)
    stats_parts, mean_parts = [], []
    for start in range(0, int(n_resamples), chunk):
        b = min(chunk, int(n_resamples) - start)
        idx = rng.integers(0, n, size=(b, n))
        flat = (np.arange(b)[:, None] * n + idx).ravel()
        weights = np.bincount(flat, minlength=b * n).reshape(b, n).astype(float)
        means = _weighted_means(weights, values, obs_f)
        mean_parts.append(means)
        stats_parts.append(np.asarray(fn(means), dtype=float))
    boot = np.concatenate(stats_parts)
    boot_means = np.concatenate(mean_parts)
    low, high = _interval(estimate, boot, confidence, method)
    bounds = [_interval(float(point[0, a]), boot_means[:, a], confidence, "percentile")
              for a in range(v)]
    return PairedBootstrapResult(
        estimate, low, high, **common,
        value_means=point[0],
        value_low=np.asarray([b[0] for b in bounds]),
        value_high=np.asarray([b[1] for b in bounds]),
    )


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

    .. math:: p = \frac{1 + \#\{b : T_b \ge T_{obs}\}}{1 + B}

    (``"less"`` counts ``T_b <= T_obs``; ``"two-sided"`` doubles the smaller one-sided p,
    capped at 1). Comparisons allow a relative tolerance of ``100 eps`` so that permutations
    tying the observed value count as at least as extreme. NaN cells are left out of means.

    Parameters
    ----------
    matrix : array-like, shape (n_units, n_values)
    stat : "snsr", "snsv" or callable of the 1-D per-value means
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
    """
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}")
    if int(n_permutations) < 1:
        raise ValueError("n_permutations must be >= 1")
    m = _as_matrix(matrix)
    n, v = m.shape
    fn = _resolve_stat(stat)
    observed = ~np.isnan(m)
    obs_f = observed.astype(float)
    values = np.where(observed, m, 0.0)
    if n == 0 or v == 0:
        return PermutationResult(float("nan"), float("nan"), int(n_permutations), np.array([]))
    t_obs = float(fn(_weighted_means(np.ones((1, n)), values, obs_f))[0])
    rng = np.random.default_rng(seed)
    total = int(n_permutations)
    chunk = max(1, _MAX_ELEMENTS // (n * v))
    parts = []
    for start in range(0, total, chunk):
        b = min(chunk, total - start)
        # Shuffle each row's labels independently in every permutation (NaN moves along).
        block = rng.permuted(np.broadcast_to(m, (b, n, v)).copy(), axis=2)
        obs_b = ~np.isnan(block)
        sums = np.where(obs_b, block, 0.0).sum(axis=1)
        counts = obs_b.sum(axis=1)
        means = np.full(sums.shape, np.nan)
        np.divide(sums, counts, out=means, where=counts > 0)
        parts.append(np.asarray(fn(means), dtype=float))
    null = np.concatenate(parts)
    if np.isnan(t_obs):
        return PermutationResult(t_obs, float("nan"), total, null)
    gamma = abs(t_obs) * np.finfo(float).eps * 100
    p_greater = (1 + np.count_nonzero(null >= t_obs - gamma)) / (1 + total)
    p_less = (1 + np.count_nonzero(null <= t_obs + gamma)) / (1 + total)
    if alternative == "greater":
        p = p_greater
    elif alternative == "less":
        p = p_less
    else:
        p = min(1.0, 2 * min(p_greater, p_less))
    return PermutationResult(t_obs, float(p), total, null)


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
    """Swap patterns for :func:`paired_swap_test`: ``(P, n)`` 0/1 masks (1 = swap that unit's
    baseline and current rows), all ``2**n`` when that is at most ``n_permutations`` (an exact
    test), else ``n_permutations`` random ones seeded by ``(seed, n)``; cached by ``n``."""

    def __init__(self, n_permutations: int, seed: int) -> None:
        self.n_permutations, self.seed = int(n_permutations), seed
        self._cache: dict[int, tuple[np.ndarray, bool]] = {}

    def get(self, n: int) -> tuple[np.ndarray, bool]:
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
    """Observed difference, its p-value, and whether every permutation gave the same value
    (``degenerate``: the pooled data cannot tell the results apart, e.g. two constant tables;
    such a test can never reject and belongs in no multiple-comparison family)."""

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
    weights (see :mod:`recaudit.metrics.tables`), so all permutations are evaluated at once.
    p-value: ``#{|T_perm| >= |T_obs|} / 2**n`` when exact, ``(1 + #{...}) / (1 + P)`` when
    sampled. Returns a :class:`SwapTest`, or None when fewer than two units or T_obs is
    undefined.
    """
    base = np.asarray(base, dtype=float)
    current = np.asarray(current, dtype=float)
    n = base.shape[0]
    if n < 2 or base.shape != current.shape:
        return None
    stacked = np.vstack([base, current])
    ones, zeros = np.ones((1, n)), np.zeros((1, n))
    with np.errstate(invalid="ignore", divide="ignore"):
        obs = float(statistic(stacked, np.hstack([zeros, ones]))[0]
                    - statistic(stacked, np.hstack([ones, zeros]))[0])
    if np.isnan(obs):
        return None
    s, exact = masks.get(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = statistic(stacked, np.hstack([s, 1 - s])) - statistic(stacked, np.hstack([1 - s, s]))
    t = t[~np.isnan(t)]
    tol = 1e-12 * max(1.0, abs(obs))
    hits = int(np.sum(np.abs(t) >= abs(obs) - tol))
    p = hits / len(t) if exact else (1 + hits) / (1 + len(t))
    degenerate = bool(t.size and np.all(np.abs(t - t[0]) <= tol) and abs(obs - t[0]) <= tol)
    return SwapTest(obs, min(1.0, float(p)), degenerate)
