"""Statistics of a unit table under unit weights: how a record is computed from its table.

A unit table holds ``values[u, c]`` for unit ``u`` and condition ``c`` (NaN = missing). A record
names its table and its ``statistic``; :func:`table_statistic` recomputes it under ``P`` weight
vectors over the units at once (``weights`` of shape ``(P, U)``: bootstrap counts, or the 0/1
masks of a paired swap test), which is all that compare needs to re-test any probe's records.

==================  ===========================================================================
statistic           value under unit weights ``w``
==================  ===========================================================================
``mean``            the weighted mean of condition ``column`` (NaN cells left out)
``range``           max - min over the conditions of the weighted condition means (SNSR, gap)
``std``             population std of the weighted condition means (SNSV)
``ratio``           min / max of the weighted condition means (NaN when max <= 0)
``cramers_v``       Cramér's V against uniform of the weighted condition means read as shares
                    (one-hot rows: first-place shares per input position)
``auc_macro_ovr``   conditions ``"t -> c"`` hold each unit's out-of-fold probability of value c
                    for its list of true value t; the macro one-vs-rest AUC of those rows, each
                    row weighted by its unit's weight
==================  ===========================================================================
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["TABLE_STATISTICS", "table_statistic", "weighted_condition_means"]


def weighted_condition_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(P, C)`` means of each condition under each weight vector; NaN cells left out."""
    observed = ~np.isnan(values)
    sums = weights @ np.where(observed, values, 0.0)
    counts = weights @ observed.astype(float)
    out = np.full(sums.shape, np.nan)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


def _spread(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    def statistic(values: np.ndarray, weights: np.ndarray, column: int | None = None
                  ) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return fn(weighted_condition_means(values, weights))
    return statistic


def _mean(values: np.ndarray, weights: np.ndarray, column: int | None = None) -> np.ndarray:
    col = 0 if column is None else column
    return weighted_condition_means(values[:, [col]], weights)[:, 0]


def _range(m: np.ndarray) -> np.ndarray:
    return np.max(m, axis=-1) - np.min(m, axis=-1)


def _std(m: np.ndarray) -> np.ndarray:
    return np.std(m, axis=-1)


def _ratio(m: np.ndarray) -> np.ndarray:
    hi, lo = np.max(m, axis=-1), np.min(m, axis=-1)
    out = np.full(hi.shape, np.nan)
    np.divide(lo, hi, out=out, where=hi > 0)
    return out


def _cramers_v(m: np.ndarray) -> np.ndarray:
    from .position import cramers_v_of_shares

    return cramers_v_of_shares(m)


def _auc_macro_ovr(values: np.ndarray, weights: np.ndarray, column: int | None = None
                   ) -> np.ndarray:
    from .classification import auc_macro_ovr

    n_units, cells = values.shape
    n_values = int(round(np.sqrt(cells)))
    if n_values * n_values != cells:
        raise ValueError(f"an auc_macro_ovr table needs V*V conditions, got {cells}")
    proba = values.reshape(n_units * n_values, n_values)
    y = np.tile(np.arange(n_values), n_units)
    return np.asarray(auc_macro_ovr(y, proba, np.repeat(weights, n_values, axis=1)), dtype=float)


#: statistic name -> ``f(values (U, C), weights (P, U), column) -> (P,)``
TABLE_STATISTICS: dict[str, Callable[..., np.ndarray]] = {
    "mean": _mean, "range": _spread(_range), "std": _spread(_std),
    "ratio": _spread(_ratio), "cramers_v": _spread(_cramers_v), "auc_macro_ovr": _auc_macro_ovr,
}


def table_statistic(name: str) -> Callable[..., np.ndarray]:
    """Return the function computing statistic ``name`` from a table under unit weights."""
    try:
        return TABLE_STATISTICS[name]
    except KeyError:
        raise ValueError(f"unknown table statistic {name!r}; known: "
                         f"{', '.join(TABLE_STATISTICS)}") from None
