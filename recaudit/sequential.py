r"""Anytime-valid inference for adaptive audits: confidence sequences, e-processes, e-BH.

An adaptive audit samples units (prompts, users) in rounds and, after each round, asks of every
gate whether it is already decided. A fixed-n confidence interval looked at after every round
loses its coverage; a *confidence sequence* (CS) does not: ``P(mu in C_t for all t) >= 1 -
alpha``, so it may be read at any, data-dependent, stopping time (Ville's inequality for
nonnegative supermartingales: ``P(sup_t K_t >= 1/alpha) <= alpha`` when ``E K_0 = 1``).

Everything here is for the mean of i.i.d. observations bounded in a known ``[lo, hi]`` (e.g. a
paired difference in ``[-1, 1]``), rescaled internally to ``z = (x - lo) / (hi - lo)`` in
``[0, 1]``:

* :func:`betting_capital` -- the hedged capital process ``K_t(m)`` on candidate means;
* :func:`betting_confidence_sequence` -- its CS ``{m : K_t(m) < 1/alpha}``;
* :func:`eb_confidence_sequence` -- the closed-form predictable plug-in empirical-Bernstein
  CS (cheaper and wider);
* :func:`one_sided_bounds` -- a lower and an upper one-sided CS, each at ``alpha`` (aGRAPA
  bets), for intersection-union decisions;
* :func:`betting_e_value` -- a one-sided betting e-process against ``mean <= m0`` (or ``>=``);
* :func:`e_bh` -- e-BH, FDR control over many e-values under arbitrary dependence;
* :func:`margin_decision` / :func:`sequential_margin_test` -- pass / fail / undecided of a
  margin gate, decided only at the audit's looks.

Source for the CSs and the bets: Waudby-Smith & Ramdas, "Estimating means of bounded random
variables by betting", JRSS-B 86(1), 2024 (online 2023; arXiv:2010.09686), Section 4
(Theorems 2, 3).
Both CSs are reported as their running intersection ``[max_{s<=t} l_s, min_{s<=t} u_s]``,
which is a CS whenever the per-time sets are (it is their intersection over time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

__all__ = [
    "MarginTest",
    "betting_capital",
    "betting_confidence_sequence",
    "betting_e_value",
    "betting_e_value_outside",
    "e_bh",
    "eb_confidence_sequence",
    "margin_decision",
    "one_sided_bounds",
    "sequential_margin_test",
]

Decision = Literal["pass", "fail", "undecided"]
Bets = Literal["plugin", "grapa"]
# Bound on the number of float64 elements of a (time x grid) block materialised at once.
_MAX_ELEMENTS = 1 << 21


# -- shared pieces -------------------------------------------------------------------------------
def _check_alpha(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return float(alpha)


def _rescale(x: Any, lo: float, hi: float) -> np.ndarray:
    """``(x - lo) / (hi - lo)`` as a 1-d float array, checking that ``x`` lies in ``[lo, hi]``."""
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"need finite lo < hi, got [{lo}, {hi}]")
    x = np.asarray(x, dtype=float).reshape(-1)
    if not x.size:
        raise ValueError("no observations")
    if np.isnan(x).any() or (x < lo).any() or (x > hi).any():
        raise ValueError(f"observations must lie in [{lo}, {hi}] (and not be NaN)")
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def _predictable_moments(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Return the running mean and variance before each step: ``(mu_{t-1}, sigma2_{t-1})``.

    .. math::

        \hat\mu_t = \frac{1/2 + \sum_{i\le t} z_i}{t + 1}, \quad
        \hat\sigma^2_t = \frac{1/4 + \sum_{i\le t} (z_i - \hat\mu_i)^2}{t + 1}

    with ``mu_0 = 1/2``, ``sigma2_0 = 1/4`` (Waudby-Smith & Ramdas 2024, Section 4).
    """
    t = np.arange(1, z.size + 1, dtype=float)
    mu = (0.5 + np.cumsum(z)) / (t + 1)
    var = (0.25 + np.cumsum((z - mu) ** 2)) / (t + 1)
    return np.concatenate(([0.5], mu[:-1])), np.concatenate(([0.25], var[:-1]))


def _plugin_bets(z: np.ndarray, log_term: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Predictable plug-in bets ``lambda_t`` and means ``mu_{t-1}`` for ``z`` in ``[0, 1]``.

    .. math::

        \dot\lambda_t = \sqrt{\frac{2\,L}{\hat\sigma^2_{t-1}\, t \log(1 + t)}}

    with the moments of :func:`_predictable_moments` and ``L = log_term`` (``log(2/alpha)`` for
    a two-sided CS, ``log(1/alpha)`` one-sided); Waudby-Smith & Ramdas 2024, Section 4 (PrPl
    bets). Each ``lambda_t`` uses ``z_1..z_{t-1}`` only (predictable).
    """
    mu_prev, var_prev = _predictable_moments(z)
    t = np.arange(1, z.size + 1, dtype=float)
    return np.sqrt(2.0 * log_term / (var_prev * t * np.log1p(t))), mu_prev


def _one_sided_bets(z: np.ndarray, m: np.ndarray, side: str, bets: str, alpha: float,
                    truncation: float) -> np.ndarray:
    r"""Predictable bets ``lambda_t(m) >= 0`` (rows: t, columns: each ``m``) for one side.

    ``side="greater"`` bets that the mean exceeds ``m`` (factor ``1 + lambda (z - m)``, capped
    at ``c/m``); ``"less"`` that it falls short (factor ``1 - lambda (z - m)``, capped at
    ``c/(1-m)``). ``bets="plugin"``: :func:`_plugin_bets` with ``log(1/alpha)``, the same for
    every ``m``. ``bets="grapa"``: aGRAPA, the Kelly bet of a second-order expansion of the log
    wealth,

    .. math:: \lambda_t(m) = \frac{\max(0, \pm(\hat\mu_{t-1} - m))}
              {\hat\sigma^2_{t-1} + (\hat\mu_{t-1} - m)^2}

    (Waudby-Smith & Ramdas 2024, Section 5.1 and Appendix B), which keeps betting as hard as the
    evidence so far warrants instead of shrinking like ``1/sqrt(t log t)``: the choice for a
    test that should stop early. Either is predictable, so validity does not depend on it.
    """
    m = np.atleast_1d(np.asarray(m, dtype=float))
    with np.errstate(divide="ignore"):
        cap = truncation / m if side == "greater" else truncation / (1.0 - m)
    if bets == "plugin":
        lam = _plugin_bets(z, np.log(1.0 / alpha))[0][:, None]
    else:
        mu_prev, var_prev = _predictable_moments(z)
        gap = mu_prev[:, None] - m[None, :]
        if side == "less":
            gap = -gap
        lam = np.maximum(gap, 0.0) / (var_prev[:, None] + gap ** 2)
    return np.minimum(lam, cap[None, :])


def _check_bets(bets: str, truncation: float) -> None:
    if bets not in ("plugin", "grapa"):
        raise ValueError(f"bets must be 'plugin' or 'grapa', got {bets!r}")
    if not 0.0 < truncation < 1.0:
        raise ValueError(f"truncation must be in (0, 1), got {truncation}")


def _check_bet_params(theta: float, truncation: float, combine: str) -> None:
    if not 0.0 < theta < 1.0:
        raise ValueError(f"theta must be in (0, 1), got {theta}")
    if not 0.0 < truncation < 1.0:
        raise ValueError(f"truncation must be in (0, 1), got {truncation}")
    if combine not in ("sum", "max"):
        raise ValueError(f"combine must be 'sum' or 'max', got {combine!r}")


def _log_capital_blocks(z: np.ndarray, m: np.ndarray, alpha: float, theta: float,
                        truncation: float, combine: str):
    """Yield ``(rows, log K_t(m))`` blocks over time; see :func:`betting_capital`."""
    lam, _ = _plugin_bets(z, np.log(2.0 / alpha))
    with np.errstate(divide="ignore"):
        cap_up, cap_down = truncation / m, truncation / (1.0 - m)  # inf at m = 0 / m = 1
    log_up = np.zeros(m.size)
    log_down = np.zeros(m.size)
    log_theta, log_rest = np.log(theta), np.log1p(-theta)
    step = max(1, _MAX_ELEMENTS // max(1, m.size))
    for start in range(0, z.size, step):
        rows = slice(start, min(start + step, z.size))
        diff = z[rows, None] - m[None, :]
        up = log_up + np.cumsum(np.log1p(np.minimum(lam[rows, None], cap_up) * diff), axis=0)
        down = log_down + np.cumsum(np.log1p(-np.minimum(lam[rows, None], cap_down) * diff),
                                    axis=0)
        log_up, log_down = up[-1], down[-1]
        if combine == "sum":
            yield rows, np.logaddexp(log_theta + up, log_rest + down)
        else:
            yield rows, np.maximum(log_theta + up, log_rest + down)


def _running_intersection(lower: np.ndarray, upper: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """``[max_{s<=t} l_s, min_{s<=t} u_s]``, carrying the last nonempty interval forward.

    The intersection can only empty on the event (of probability at most alpha) that some
    ``C_s`` missed the mean; any superset of an empty set is still a valid CS, so there the
    previous interval is kept instead of reporting ``lower > upper``.
    """
    lo_run, hi_run = np.maximum.accumulate(lower), np.minimum.accumulate(upper)
    if (lo_run <= hi_run).all():
        return lo_run, hi_run
    lo_out, hi_out = lower.copy(), upper.copy()
    for t in range(1, lower.size):
        a, b = max(lo_out[t - 1], lower[t]), min(hi_out[t - 1], upper[t])
        lo_out[t], hi_out[t] = (a, b) if a <= b else (lo_out[t - 1], hi_out[t - 1])
    return lo_out, hi_out


# -- confidence sequences -----------------------------------------------------------------------
def betting_capital(x: Any, lo: float, hi: float, m: Any, alpha: float = 0.05, *,
                    theta: float = 0.5, truncation: float = 0.5,
                    combine: Literal["sum", "max"] = "sum") -> np.ndarray:
    r"""Hedged capital ``K_t(m)`` for ``t = 1..n`` (rows) and each candidate mean ``m`` (columns).

    With ``z``, ``m`` rescaled to ``[0, 1]`` and :math:`\dot\lambda_t` the predictable plug-in
    bet (``log(2/alpha)`` in it; :func:`_plugin_bets`):

    .. math::

        \lambda^+_t(m) = \min(\dot\lambda_t, c/m), \qquad
        \lambda^-_t(m) = \min(\dot\lambda_t, c/(1-m)),

        K^+_t(m) = \prod_{i\le t} (1 + \lambda^+_i(m)(z_i - m)), \qquad
        K^-_t(m) = \prod_{i\le t} (1 - \lambda^-_i(m)(z_i - m)),

        K_t(m) = \theta K^+_t(m) + (1-\theta) K^-_t(m) \quad (\texttt{combine="sum"})
        \quad\text{or}\quad \max\{\theta K^+_t(m), (1-\theta) K^-_t(m)\} \quad (\texttt{"max"}).

    ``c = truncation`` (the paper's 1/2 or 3/4) keeps every factor at least ``1 - c > 0``.
    Under mean ``m`` both products are nonnegative martingales with ``K_0 = 1``, so either
    combination is a nonnegative (super)martingale and ``P(sup_t K_t(m) >= 1/alpha) <= alpha``
    (Ville). ``"max"`` is Theorem 3 of Waudby-Smith & Ramdas (2024) exactly (its CS is an
    interval); ``"sum"`` is the convex combination (a martingale itself, so a CS at least as
    tight). Computed as cumulative sums of ``log1p`` terms.

    Examples
    --------
    >>> betting_capital([0.2], 0.0, 1.0, [0.5, 0.25]).round(6).tolist()
    [[1.0, 0.966667]]
    """
    alpha = _check_alpha(alpha)
    _check_bet_params(theta, truncation, combine)
    z = _rescale(x, lo, hi)
    mm = _rescale(m, lo, hi)
    out = np.empty((z.size, mm.size))
    for rows, log_k in _log_capital_blocks(z, mm, alpha, theta, truncation, combine):
        with np.errstate(over="ignore"):
            out[rows] = np.exp(log_k)
    return out


def betting_confidence_sequence(x: Any, lo: float, hi: float, alpha: float = 0.05, *,
                                grid_size: int = 1000, theta: float = 0.5,
                                truncation: float = 0.5,
                                combine: Literal["sum", "max"] = "sum"
                                ) -> tuple[np.ndarray, np.ndarray]:
    r"""Hedged-capital betting CS for the mean: ``(lower_t, upper_t)`` for ``t = 1..n``.

    .. math:: C_t = \{m \in [lo, hi] : K_t(m) < 1/\alpha\}

    with ``K_t`` of :func:`betting_capital` (Waudby-Smith & Ramdas 2024, Theorem 3 and
    Section 4.2: hedged capital, predictable plug-in bets, ``theta = 1/2``, ``c = 1/2``). It
    satisfies ``P(mu in C_t for all t >= 1) >= 1 - alpha``. ``K_t`` is evaluated on
    ``grid_size`` equally spaced candidate means over ``[lo, hi]`` (endpoints included); the
    reported interval runs from the grid point below the first kept one to the grid point above
    the last kept one, so it contains the hull of ``C_t`` whatever lies between grid points (no
    grid point kept: the neighbours of the one with the least capital). The hull of ``C_t``
    (``C_t`` is an interval under ``combine="max"``, nearly always one under ``"sum"``) is a
    valid CS too. The returned path is the running intersection over ``t``.

    Cost: ``O(n * grid_size)`` time, memory bounded by blocks over time.

    Examples
    --------
    >>> x = np.random.default_rng(0).binomial(1, 0.3, size=400)
    >>> lower, upper = betting_confidence_sequence(x, 0.0, 1.0)
    >>> bool(lower[-1] < 0.3 < upper[-1]), bool(upper[-1] - lower[-1] < upper[49] - lower[49])
    (True, True)
    """
    alpha = _check_alpha(alpha)
    _check_bet_params(theta, truncation, combine)
    if grid_size < 3:
        raise ValueError(f"grid_size must be at least 3, got {grid_size}")
    z = _rescale(x, lo, hi)
    grid = np.linspace(0.0, 1.0, int(grid_size))
    last = grid.size - 1
    lo_idx = np.empty(z.size, dtype=int)
    hi_idx = np.empty(z.size, dtype=int)
    threshold = np.log(1.0 / alpha)
    for rows, log_k in _log_capital_blocks(z, grid, alpha, theta, truncation, combine):
        inside = log_k < threshold
        kept = inside.any(axis=1)
        first = np.argmax(inside, axis=1)
        final = last - np.argmax(inside[:, ::-1], axis=1)
        least = np.argmin(log_k, axis=1)
        lo_idx[rows] = np.maximum(np.where(kept, first, least) - 1, 0)
        hi_idx[rows] = np.minimum(np.where(kept, final, least) + 1, last)
    lower, upper = _running_intersection(grid[lo_idx], grid[hi_idx])
    span = float(hi) - float(lo)
    return float(lo) + span * lower, float(lo) + span * upper


def eb_confidence_sequence(x: Any, lo: float, hi: float, alpha: float = 0.05, *,
                           truncation: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    r"""Predictable plug-in empirical-Bernstein CS (PrPl-EB): ``(lower_t, upper_t)``.

    Closed form (Waudby-Smith & Ramdas 2024, Theorem 2), on ``z`` rescaled to ``[0, 1]``:

    .. math::

        \lambda_t = \min\Big(\sqrt{\frac{2\log(2/\alpha)}{\hat\sigma^2_{t-1}\,t\log(1+t)}},
        \; c\Big), \qquad
        v_i = 4 (z_i - \hat\mu_{i-1})^2, \qquad
        \psi_E(\lambda) = \frac{-\log(1-\lambda) - \lambda}{4},

        C_t = \frac{\sum_i \lambda_i z_i}{\sum_i \lambda_i}
        \pm \frac{\log(2/\alpha) + \sum_i v_i \psi_E(\lambda_i)}{\sum_i \lambda_i}

    (``c = truncation``, 1/2 or 3/4 in the paper; :math:`\hat\mu, \hat\sigma^2` as in
    :func:`betting_capital`), clipped to ``[lo, hi]`` and intersected over time. Cheaper than
    the betting CS (``O(n)``, no grid) and typically wider.

    Examples
    --------
    >>> x = np.random.default_rng(0).binomial(1, 0.3, size=400)
    >>> lower, upper = eb_confidence_sequence(x, 0.0, 1.0)
    >>> bool(lower[-1] < 0.3 < upper[-1])
    True
    """
    alpha = _check_alpha(alpha)
    if not 0.0 < truncation < 1.0:
        raise ValueError(f"truncation must be in (0, 1), got {truncation}")
    z = _rescale(x, lo, hi)
    log_term = np.log(2.0 / alpha)
    lam, mu_prev = _plugin_bets(z, log_term)
    lam = np.minimum(lam, truncation)
    psi = (-np.log1p(-lam) - lam) / 4.0
    lam_sum = np.cumsum(lam)
    centre = np.cumsum(lam * z) / lam_sum
    radius = (log_term + np.cumsum(4.0 * (z - mu_prev) ** 2 * psi)) / lam_sum
    lower, upper = _running_intersection(np.clip(centre - radius, 0.0, 1.0),
                                         np.clip(centre + radius, 0.0, 1.0))
    span = float(hi) - float(lo)
    return float(lo) + span * lower, float(lo) + span * upper


# -- e-values ------------------------------------------------------------------------------------
def betting_e_value(x: Any, lo: float, hi: float, null_mean: float,
                    side: Literal["greater", "less"] = "greater", *, alpha: float = 0.05,
                    truncation: float = 0.5, bets: Bets = "plugin") -> np.ndarray:
    r"""One-sided betting e-process ``E_t``, ``t = 1..n``, against a null on the mean.

    ``side="greater"`` tests ``H0: mean <= null_mean`` (large ``E_t``: the mean exceeds it);
    ``side="less"`` tests ``H0: mean >= null_mean``. With ``z``, ``m0`` rescaled to ``[0, 1]``:

    .. math::

        E_t = \prod_{i\le t} (1 + \lambda_i (z_i - m_0)), \quad
        \lambda_i = \min(\dot\lambda_i, c/m_0) \;\; (\text{greater}), \qquad
        E_t = \prod_{i\le t} (1 - \lambda_i (z_i - m_0)), \quad
        \lambda_i = \min(\dot\lambda_i, c/(1 - m_0)) \;\; (\text{less}),

    :math:`\dot\lambda_i \ge 0` the predictable bet of :func:`_one_sided_bets` (``bets``: the
    plug-in bet with ``log(1/alpha)``, or aGRAPA; ``alpha`` only tunes the plug-in bets, not
    validity), ``c = truncation`` so each factor is at least
    ``1 - c > 0``. The bets have the sign that profits under the alternative, so for every mean
    in ``H0`` ``E_t`` is a nonnegative supermartingale with ``E_0 = 1`` and
    ``P(sup_t E_t >= 1/alpha) <= alpha`` (Ville); ``E_tau`` is an e-value at any stopping time
    ``tau`` (Waudby-Smith & Ramdas 2024, Section 4; one-sided capital process).

    Examples
    --------
    >>> e = betting_e_value(np.ones(20), 0.0, 1.0, 0.5, "greater")
    >>> bool(e[-1] > 20), bool((np.diff(e) > 0).all())
    (True, True)
    """
    alpha = _check_alpha(alpha)
    _check_bets(bets, truncation)
    if side not in ("greater", "less"):
        raise ValueError(f"side must be 'greater' or 'less', got {side!r}")
    z = _rescale(x, lo, hi)
    m0 = float(_rescale([null_mean], lo, hi)[0])
    lam = _one_sided_bets(z, np.array([m0]), side, bets, alpha, truncation)[:, 0]
    sign = 1.0 if side == "greater" else -1.0
    with np.errstate(invalid="ignore"):
        terms = np.log1p(sign * lam * (z - m0))
    with np.errstate(over="ignore"):
        return np.exp(np.cumsum(terms))


def betting_e_value_outside(x: Any, lo: float, hi: float, low: float, high: float, *,
                            alpha: float = 0.05, truncation: float = 0.5,
                            bets: Bets = "plugin") -> np.ndarray:
    r"""Betting e-process ``E_t`` against ``H0: low <= mean <= high`` (``lo < low <= high < hi``).

    Each step bets on the side the running mean of the earlier observations points to: against
    ``mean <= high`` (the ``greater`` factor of :func:`betting_e_value` at ``high``) when
    :math:`\bar x_{t-1}` is at least the interval's midpoint, else against ``mean >= low``
    (the ``less`` factor at ``low``); the first step bets ``greater``; ``bets`` as in
    :func:`betting_e_value`. The side and the bet are
    predictable, and under ``H0`` either factor has conditional mean at most 1, so ``E_t`` is a
    nonnegative supermartingale (Ville: ``P(sup_t E_t >= 1/alpha) <= alpha``). One process
    instead of the average of the two one-sided ones keeps all the capital on the side the
    data favour.

    Examples
    --------
    >>> e = betting_e_value_outside(np.full(30, -0.9), -1.0, 1.0, -0.1, 0.1)
    >>> bool(e[-1] > 100)
    True
    """
    alpha = _check_alpha(alpha)
    _check_bets(bets, truncation)
    if not float(lo) < float(low) <= float(high) < float(hi):
        raise ValueError(f"need lo < low <= high < hi, got {lo}, {low}, {high}, {hi}")
    z = _rescale(x, lo, hi)
    m_high = float(_rescale([high], lo, hi)[0])
    m_low = float(_rescale([low], lo, hi)[0])
    lam_up = _one_sided_bets(z, np.array([m_high]), "greater", bets, alpha, truncation)[:, 0]
    lam_down = _one_sided_bets(z, np.array([m_low]), "less", bets, alpha, truncation)[:, 0]
    n = z.size
    earlier = np.concatenate(([np.inf], np.cumsum(z)[:-1] / np.arange(1, n)))
    up = earlier >= (m_low + m_high) / 2
    terms = np.where(up, np.log1p(lam_up * (z - m_high)), np.log1p(-lam_down * (z - m_low)))
    with np.errstate(over="ignore"):
        return np.exp(np.cumsum(terms))


def one_sided_bounds(x: Any, lo: float, hi: float, alpha: float = 0.05, *,
                     grid_size: int = 1000, truncation: float = 0.9, bets: Bets = "grapa"
                     ) -> tuple[np.ndarray, np.ndarray]:
    r"""Return a lower and an upper one-sided CS of the mean, *each* at ``alpha``.

    ``(lower_t, upper_t)`` for ``t = 1..n``:

    .. math::

        L_t = \inf\{m : K^+_t(m) < 1/\alpha\}, \qquad U_t = \sup\{m : K^-_t(m) < 1/\alpha\},

        K^\pm_t(m) = \prod_{i\le t} (1 \pm \lambda^\pm_i(m)(z_i - m))

    with the one-sided bets of :func:`_one_sided_bets` (default aGRAPA, truncated at ``c/m``
    and ``c/(1-m)``). Under mean ``m`` each ``K^pm(m)`` is a nonnegative supermartingale, so
    ``P(exists t: mu < L_t) <= alpha`` and ``P(exists t: mu > U_t) <= alpha`` (Ville); together
    ``[L_t, U_t]`` is a CS at ``2 alpha``. What this is for: an intersection-union decision
    that needs only one side per null ("the mean lies below ``b``": ``U_t < b``, wrong with
    probability at most ``alpha`` whatever the other side does), where the two-sided hedged CS
    would spend ``alpha`` over both sides. Evaluated on ``grid_size`` candidate means, reported
    conservatively (the grid point beyond the last excluded one) and as running bounds
    (``max_{s<=t} L_s``, ``min_{s<=t} U_s``; where they would cross, the last interval is kept).

    Examples
    --------
    >>> x = np.random.default_rng(0).binomial(1, 0.3, size=400)
    >>> lower, upper = one_sided_bounds(x, 0.0, 1.0, 0.05)
    >>> bool(lower[-1] < 0.3 < upper[-1]), bool(upper[-1] - lower[-1] < 0.2)
    (True, True)
    """
    alpha = _check_alpha(alpha)
    _check_bets(bets, truncation)
    if grid_size < 3:
        raise ValueError(f"grid_size must be at least 3, got {grid_size}")
    z = _rescale(x, lo, hi)
    grid = np.linspace(0.0, 1.0, int(grid_size))
    last = grid.size - 1
    threshold = np.log(1.0 / alpha)
    lo_idx = np.empty(z.size, dtype=int)
    hi_idx = np.empty(z.size, dtype=int)
    log_up = np.zeros(grid.size)
    log_down = np.zeros(grid.size)
    step = max(1, _MAX_ELEMENTS // grid.size)
    for start in range(0, z.size, step):
        rows = slice(start, min(start + step, z.size))
        diff = z[rows, None] - grid[None, :]
        # bets of these rows: computed on the whole prefix (predictable moments), then sliced
        lam_up = _one_sided_bets(z[: rows.stop], grid, "greater", bets, alpha, truncation)[rows]
        lam_down = _one_sided_bets(z[: rows.stop], grid, "less", bets, alpha,
                                   truncation)[rows]
        with np.errstate(invalid="ignore"):
            up = log_up + np.cumsum(np.log1p(np.nan_to_num(lam_up * diff)), axis=0)
            down = log_down + np.cumsum(np.log1p(np.nan_to_num(-lam_down * diff)), axis=0)
        log_up, log_down = up[-1], down[-1]
        kept_up = up < threshold  # m not excluded from below
        kept_down = down < threshold
        first = np.where(kept_up.any(axis=1), np.argmax(kept_up, axis=1), np.argmin(up, axis=1))
        final = np.where(kept_down.any(axis=1), last - np.argmax(kept_down[:, ::-1], axis=1),
                         np.argmin(down, axis=1))
        lo_idx[rows] = np.maximum(first - 1, 0)
        hi_idx[rows] = np.minimum(final + 1, last)
    lower, upper = _running_intersection(grid[lo_idx], grid[hi_idx])
    span = float(hi) - float(lo)
    return float(lo) + span * lower, float(lo) + span * upper


def e_bh(e_values: Sequence[float] | np.ndarray, alpha: float = 0.05) -> np.ndarray:
    r"""Return the e-BH rejections: a boolean mask over the hypotheses.

    With ``K`` e-values and :math:`e_{[k]}` the ``k``-th largest,

    .. math:: k^* = \max\{k : e_{[k]} \ge K / (k\,\alpha)\}

    and the ``k*`` hypotheses with the largest e-values are rejected (none when no ``k``
    qualifies); equivalently, every ``i`` with ``e_i >= K / (k* alpha)``, so ties are treated
    alike. Controls the FDR at ``alpha`` under arbitrary dependence between the e-values. NaN
    e-values (tests that could not run) are not counted in ``K`` and never rejected, as in
    :func:`recaudit.stats.benjamini_hochberg`.

    Source: Wang & Ramdas, "False discovery rate control with e-values", JRSS-B 84(3), 2022.

    Examples
    --------
    >>> e_bh([40.0, 25.0, 3.0, 1.0], alpha=0.1).tolist()
    [True, True, False, False]
    """
    alpha = _check_alpha(alpha)
    e = np.asarray(e_values, dtype=float).reshape(-1)
    valid = ~np.isnan(e)
    if (e[valid] < 0).any():
        raise ValueError("e-values must be nonnegative")
    reject = np.zeros(e.shape, dtype=bool)
    ev = e[valid]
    n = ev.size
    if not n:
        return reject
    ranked = np.sort(ev)[::-1]
    k = np.arange(1, n + 1)
    passing = np.flatnonzero(ranked * k * alpha >= n)
    if passing.size:
        k_star = int(passing[-1]) + 1
        reject[valid] = ev * k_star * alpha >= n
    return reject


# -- margin gates --------------------------------------------------------------------------------
def margin_decision(lower: float, upper: float, bound: float, two_sided: bool = True
                    ) -> Decision:
    """Return the state of a margin gate given one confidence interval ``[lower, upper]``.

    Two-sided (``|mean| < bound`` is the target): ``"pass"`` if ``-bound < lower`` and
    ``upper < bound``; ``"fail"`` if ``lower > bound`` or ``upper < -bound``; otherwise
    ``"undecided"``. One-sided (``mean < bound`` is the target): ``"pass"`` if
    ``upper < bound``, ``"fail"`` if ``lower > bound``, otherwise ``"undecided"``.

    Examples
    --------
    >>> margin_decision(-0.1, 0.1, 0.2), margin_decision(0.3, 0.5, 0.2)
    ('pass', 'fail')
    """
    lower, upper, bound = float(lower), float(upper), float(bound)
    if np.isnan([lower, upper, bound]).any() or lower > upper:
        raise ValueError(f"need lower <= upper and a bound, got [{lower}, {upper}], {bound}")
    if two_sided:
        if bound < 0:
            raise ValueError(f"a two-sided bound must be >= 0, got {bound}")
        if -bound < lower and upper < bound:
            return "pass"
        if lower > bound or upper < -bound:
            return "fail"
        return "undecided"
    if upper < bound:
        return "pass"
    if lower > bound:
        return "fail"
    return "undecided"


class MarginTest(NamedTuple):
    """Outcome of :func:`sequential_margin_test`.

    ``decision`` is final (the CS only shrinks, so a decided gate stays decided); ``look`` is
    the index into ``looks`` of the first look at which it was decided and ``n`` the sample size
    there (both None while undecided); ``lower``/``upper`` are the CS at each look.
    """

    decision: Decision
    look: int | None
    n: int | None
    looks: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def sequential_margin_test(x: Any, lo: float, hi: float, bound: float, alpha: float = 0.05,
                           two_sided: bool = True, looks: Sequence[int] | None = None, *,
                           method: Literal["betting", "eb"] = "betting",
                           grid_size: int = 1000) -> MarginTest:
    """Decide a margin gate from a confidence sequence read at the audit's looks.

    ``x`` holds the per-unit values in sampling order (bounded in ``[lo, hi]``); ``looks`` the
    sample sizes after each round, strictly increasing, the last at most ``len(x)`` (default:
    every ``t = 1..n``). The CS (:func:`betting_confidence_sequence`, or
    :func:`eb_confidence_sequence` with ``method="eb"``) is built from ``x[:looks[-1]]``; at
    each look :func:`margin_decision` is applied and the first decided look is final. As the
    CS holds at all ``t`` at once, stopping at a data-dependent look keeps the error at most
    ``alpha``: ``P(pass | |mean| >= bound) <= alpha`` and ``P(fail | |mean| <= bound) <=
    alpha``. Several gates decided on the same units need their alphas split (or e-BH).

    Examples
    --------
    >>> x = np.random.default_rng(1).choice([-1.0, 0.0, 1.0], p=[0.1, 0.8, 0.1], size=1000)
    >>> r = sequential_margin_test(x, -1.0, 1.0, 0.2, looks=[100, 200, 400, 800, 1000])
    >>> r.decision, r.n in (100, 200, 400, 800, 1000)
    ('pass', True)
    """
    alpha = _check_alpha(alpha)
    x = np.asarray(x, dtype=float).reshape(-1)
    if looks is None:
        steps = np.arange(1, x.size + 1)
    else:
        steps = np.asarray(looks).reshape(-1)
        if (not steps.size or not np.issubdtype(steps.dtype, np.integer)
                or steps[0] < 1 or (np.diff(steps) <= 0).any() or steps[-1] > x.size):
            raise ValueError(f"looks must be strictly increasing integers in [1, {x.size}], "
                             f"got {list(looks)}")
    data = x[: int(steps[-1])]
    if method == "betting":
        lower, upper = betting_confidence_sequence(data, lo, hi, alpha, grid_size=grid_size)
    elif method == "eb":
        lower, upper = eb_confidence_sequence(data, lo, hi, alpha)
    else:
        raise ValueError(f"method must be 'betting' or 'eb', got {method!r}")
    lower, upper = lower[steps - 1], upper[steps - 1]
    for i, (a, b) in enumerate(zip(lower, upper, strict=True)):
        state = margin_decision(a, b, bound, two_sided)
        if state != "undecided":
            return MarginTest(state, i, int(steps[i]), steps, lower, upper)
    return MarginTest("undecided", None, None, steps, lower, upper)
