"""Classification metrics: ROC AUC for the attribute-leakage probe (METRICS.md section 3).

The AUC is computed as the Mann-Whitney pair statistic, so it can be evaluated for many
bootstrap weightings of the same scores at once. Fitting the classifier whose scores are
evaluated lives in :mod:`recaudit.probes.leakage`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .specs import declare

__all__ = ["auc_binary", "auc_macro_ovr"]


def auc_binary(positive: np.ndarray, score: np.ndarray, weights: np.ndarray | None = None
               ) -> Any:
    r"""ROC AUC of scores for a binary label.

    .. math:: AUC = \frac{1}{|P|\,|N|} \sum_{i \in P} \sum_{j \in N}
              \left( [s_i > s_j] + \tfrac{1}{2} [s_i = s_j] \right)

    The share of (positive, negative) pairs ranked correctly, ties counting one half; equals
    ``sklearn.metrics.roc_auc_score``. With ``weights`` each pair counts ``w_i w_j``.

    Source: Hanley & McNeil (1982), the AUC as the Mann-Whitney U statistic divided by
    ``|P| |N|``; METRICS.md section 3.

    Parameters
    ----------
    positive : array of bool, shape (n,)
        Which rows are positive.
    score : array of float, shape (n,)
        Higher = more likely positive.
    weights : array of float, shape (B, n), optional
        Row weights (e.g. bootstrap counts), one weighting per row of the array.

    Returns
    -------
    float or numpy.ndarray
        The AUC (NaN without both classes); with ``weights`` the B weighted AUCs (NaN where a
        weighting leaves a class with zero weight).

    Examples
    --------
    >>> auc_binary([True, True, False, False], [0.9, 0.4, 0.4, 0.1])
    0.875
    """
    pos = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=float)
    sp, sn = score[pos], score[~pos]
    if weights is None:
        if sp.size == 0 or sn.size == 0:
            return float("nan")
        return float(np.mean((sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])))
    w = np.asarray(weights, dtype=float)
    if sp.size == 0 or sn.size == 0:
        return np.full(w.shape[0], np.nan)
    pair = (sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])
    wp, wn = w[:, pos], w[:, ~pos]
    num = np.einsum("bj,bj->b", wp @ pair, wn)
    den = wp.sum(axis=1) * wn.sum(axis=1)
    out = np.full(w.shape[0], np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def auc_macro_ovr(y: np.ndarray, proba: np.ndarray, weights: np.ndarray | None = None) -> Any:
    r"""Macro one-vs-rest ROC AUC of class probabilities.

    .. math:: AUC_{macro} = \frac{1}{C} \sum_{c=1}^{C} AUC(y = c,\ p_{\cdot c})

    The unweighted mean over classes of the binary AUC (:func:`auc_binary`) of ``proba[:, c]``
    for class ``c`` against the rest; with two classes, the binary AUC of ``proba[:, 1]``.
    Equals ``sklearn.metrics.roc_auc_score(y, proba, multi_class="ovr", average="macro")``.

    Source: Fawcett (2006), one-vs-rest multi-class AUC; METRICS.md section 3.

    Parameters
    ----------
    y : array of int, shape (n,)
        Class labels ``0 .. C-1``.
    proba : array of float, shape (n, C)
        Predicted probability of each class.
    weights : array of float, shape (B, n), optional
        As in :func:`auc_binary`.

    Returns
    -------
    float or numpy.ndarray
        The AUC, or the B weighted AUCs.

    Examples
    --------
    >>> import numpy as np
    >>> auc_macro_ovr(np.array([0, 1, 2]), np.eye(3))
    1.0
    """
    if proba.shape[1] == 2:
        return auc_binary(y == 1, proba[:, 1], weights)
    aucs = [auc_binary(y == c, proba[:, c], weights) for c in range(proba.shape[1])]
    return float(np.mean(aucs)) if weights is None else np.mean(aucs, axis=0)


declare("leakage_auc", "AUC of a classifier guessing the stated attribute value from the list "
        "(0.5 = no leakage; floor: values exchangeable within a subject, the cross-validation "
        "refitted)", higher_is_worse=True, null=0.5, range=(0.0, 1.0), noise_floor=True)
declare("leakage_auc_ovr", "one-vs-rest AUC of guessing this value from the list "
        "(0.5 = no leakage; floor: values exchangeable within a subject, the cross-validation "
        "refitted)", higher_is_worse=True, null=0.5, range=(0.0, 1.0), noise_floor=True)
