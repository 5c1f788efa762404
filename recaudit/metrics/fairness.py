"""Group fairness of per-user utility (METRICS.md section 2, after CFaiRLLM).

Given one value per unit (e.g. each user's NDCG@k or HR@k) and each unit's group (gender, age,
their intersection), :func:`group_gaps` reports the per-group means and their difference and
ratio through fairlearn's ``MetricFrame`` (optionally with its bootstrap CIs), and
:func:`between_group_generalized_entropy` / :func:`between_group_theil_index` measure the
inequality of benefit between groups as AIF360 defines it (Speicher et al., KDD 2018).

fairlearn is imported lazily, inside :func:`group_gaps`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .specs import declare
import pandas as pd

__all__ = [
    "GroupGaps",
    "between_group_generalized_entropy",
    "between_group_theil_index",
    "generalized_entropy_index",
    "group_gaps",
]


@dataclass(frozen=True)
class GroupGaps:
    """Per-group means of a per-unit value and the gap between groups.

    Attributes
    ----------
    by_group : pandas.Series
        Mean value per group (a MultiIndex for several sensitive features, with NaN for a
        combination of feature values that has no unit).
    counts : pandas.Series
        Number of units per group (same index, 0 for empty combinations): report small
        groups, never drop them.
    difference : float
        ``max - min`` of the group means (fairlearn ``difference(method="between_groups")``).
    ratio : float
        ``min / max`` of the group means (fairlearn ``ratio(method="between_groups")``).
    by_group_ci, difference_ci, ratio_ci :
        ``(low, high)`` bootstrap quantiles from fairlearn when ``n_boot`` was given, else None.
    """

    by_group: pd.Series
    counts: pd.Series
    difference: float
    ratio: float
    by_group_ci: tuple[pd.Series, pd.Series] | None = None
    difference_ci: tuple[float, float] | None = None
    ratio_ci: tuple[float, float] | None = None
    n_boot: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _mean_metric(y_true, y_pred) -> float:  # noqa: ARG001 - MetricFrame signature
    return float(np.mean(np.asarray(y_true, dtype=float)))


def _count_metric(y_true, y_pred) -> int:  # noqa: ARG001
    return int(len(y_true))


def group_gaps(
    values: Sequence[float],
    groups: Any,
    *,
    n_boot: int | None = None,
    ci: tuple[float, float] = (0.025, 0.975),
    random_state: int | None = 0,
) -> GroupGaps:
    r"""Per-group mean of a per-unit value, with the between-group difference and ratio.

    .. math:: \bar v_g = \frac{1}{|g|}\sum_{u \in g} v_u, \quad
              difference = \max_g \bar v_g - \min_g \bar v_g, \quad
              ratio = \frac{\min_g \bar v_g}{\max_g \bar v_g}

    computed with :class:`fairlearn.metrics.MetricFrame` (the value is passed as ``y_true``;
    ``y_pred`` is unused). With ``n_boot`` fairlearn also bootstraps units to give quantile
    CIs for every group mean, the difference and the ratio.

    Source: CFaiRLLM (Deldjoo & Di Noia, arXiv 2403.05668) reports utility gaps across groups;
    fairlearn (Weerts et al., JMLR 2023); METRICS.md section 2.

    Parameters
    ----------
    values : sequence of float
        One value per unit (no NaN: drop undefined units first and report how many).
    groups : array-like, or DataFrame / dict of arrays
        Group label per unit; several columns give intersectional groups.
    n_boot : int, optional
        Bootstrap resamples for CIs (fairlearn ``n_boot``).
    ci : (float, float)
        Quantiles of the bootstrap CI (fairlearn ``ci_quantiles``).
    random_state : int, optional
        Seed of fairlearn's bootstrap.

    Returns
    -------
    GroupGaps

    Examples
    --------
    >>> g = group_gaps([1.0, 0.0, 0.5, 0.5], ["f", "f", "m", "m"])
    >>> g.by_group.to_dict(), g.difference, g.ratio
    ({'f': 0.5, 'm': 0.5}, 0.0, 1.0)
    """
    from fairlearn.metrics import MetricFrame

    v = np.asarray(values, dtype=float).reshape(-1)
    if v.size == 0:
        raise ValueError("no values")
    if np.isnan(v).any():
        raise ValueError("values contain NaN: drop undefined units first and report how many")
    kwargs: dict[str, Any] = {}
    if n_boot is not None:
        kwargs = {"n_boot": int(n_boot), "ci_quantiles": [float(ci[0]), float(ci[1])],
                  "random_state": random_state}
    mf = MetricFrame(
        metrics={"mean": _mean_metric, "count": _count_metric},
        y_true=v,
        y_pred=v,
        sensitive_features=groups,
        **kwargs,
    )
    by_group = mf.by_group["mean"].astype(float)  # NaN for an empty intersection
    counts = mf.by_group["count"].fillna(0).astype(int)
    difference = float(mf.difference(method="between_groups")["mean"])
    ratio = float(mf.ratio(method="between_groups")["mean"])
    if n_boot is None:
        return GroupGaps(by_group, counts, difference, ratio)
    by_group_ci = (
        mf.by_group_ci[0]["mean"].astype(float),
        mf.by_group_ci[1]["mean"].astype(float),
    )
    diff_ci = mf.difference_ci(method="between_groups")
    ratio_ci = mf.ratio_ci(method="between_groups")
    return GroupGaps(
        by_group,
        counts,
        difference,
        ratio,
        by_group_ci=by_group_ci,
        difference_ci=(float(diff_ci[0]["mean"]), float(diff_ci[1]["mean"])),
        ratio_ci=(float(ratio_ci[0]["mean"]), float(ratio_ci[1]["mean"])),
        n_boot=int(n_boot),
    )


def generalized_entropy_index(benefits: Sequence[float], alpha: float = 2) -> float:
    r"""Generalized entropy index of individual benefits (Speicher et al., KDD 2018).

    .. math:: GE(\alpha) = \begin{cases}
              \frac{1}{n\,\alpha(\alpha-1)} \sum_i \big[(b_i/\mu)^\alpha - 1\big]
                  & \alpha \ne 0, 1\\
              \frac{1}{n} \sum_i \frac{b_i}{\mu} \ln\frac{b_i}{\mu} & \alpha = 1 \text{ (Theil)}\\
              -\frac{1}{n} \sum_i \ln\frac{b_i}{\mu} & \alpha = 0
              \end{cases}

    with ``0 ln 0 = 0``. This is AIF360's documented formula; its code agrees for
    ``alpha != 0`` and, for ``alpha = 0``, additionally divides by ``mu`` (we follow the formula).
    Benefits must be non-negative; NaN when their mean is 0.

    Source: AIF360 ``generalized_entropy_index``; METRICS.md section 2.

    Examples
    --------
    >>> generalized_entropy_index([1.0, 1.0, 1.0])
    0.0
    """
    b = np.asarray(benefits, dtype=float).reshape(-1)
    if b.size == 0:
        raise ValueError("no benefits")
    if np.isnan(b).any():
        raise ValueError("benefits contain NaN")
    if (b < 0).any():
        raise ValueError("benefits must be non-negative")
    mu = b.mean()
    if mu == 0:
        return float("nan")
    r = b / mu
    if alpha == 1:
        pos = r > 0
        return float(np.sum(r[pos] * np.log(r[pos])) / r.size)  # 0 ln 0 = 0
    if alpha == 0:
        if (r == 0).any():
            return float("inf")
        return float(-np.mean(np.log(r)))
    return float(np.mean(r**alpha - 1) / (alpha * (alpha - 1)))


def _codes(groups: Any, n: int) -> np.ndarray:
    if isinstance(groups, pd.DataFrame):
        labels = list(groups.itertuples(index=False, name=None))
    elif isinstance(groups, dict):
        labels = list(zip(*(list(col) for col in groups.values()), strict=True))
    else:
        arr = np.asarray(groups, dtype=object)
        labels = [tuple(row) for row in arr] if arr.ndim == 2 else list(arr.reshape(-1))
    if len(labels) != n:
        raise ValueError(f"groups has {len(labels)} labels for {n} benefits")
    codes, _ = pd.factorize(pd.Series(labels, dtype=object), use_na_sentinel=False)
    return np.asarray(codes)


def between_group_generalized_entropy(
    benefits: Sequence[float], groups: Any, alpha: float = 2
) -> float:
    r"""Between-group generalized entropy index: GE of benefits replaced by their group mean.

    Each unit's benefit ``b_i`` is replaced by the mean benefit of its group and
    :func:`generalized_entropy_index` is applied to those values: the between-group component of
    the GE decomposition (Speicher et al., KDD 2018). Equals AIF360's
    ``ClassificationMetric.between_all_groups_generalized_entropy_index`` (and
    ``between_group_generalized_entropy_index`` for two groups) computed over
    ``b_i = y_pred - y_true + 1``; here any non-negative per-user benefit (NDCG, HR) is allowed.

    Source: AIF360 (Bellamy et al. 2018); CFaiRLLM (arXiv 2403.05668); METRICS.md section 2.

    Parameters
    ----------
    benefits : sequence of float
        One non-negative benefit per unit.
    groups : array-like, or DataFrame / dict of arrays
        Group label per unit (several columns = intersectional groups).
    alpha : float
        GE parameter (2 = half the squared coefficient of variation, 1 = Theil).

    Examples
    --------
    >>> round(between_group_generalized_entropy([1, 1, 2, 2], ["a", "a", "b", "b"]), 6)
    0.055556
    """
    b = np.asarray(benefits, dtype=float).reshape(-1)
    codes = _codes(groups, b.size)
    if b.size == 0:
        raise ValueError("no benefits")
    sums = np.bincount(codes, weights=b)
    sizes = np.bincount(codes)
    group_mean = sums / sizes
    return generalized_entropy_index(group_mean[codes], alpha=alpha)


declare("generalized_entropy", "between-group generalized entropy of per-user benefit "
        "(0 = equal; floor: values exchangeable within a user)", higher_is_worse=True, null=0.0,
        noise_floor=True)


def between_group_theil_index(benefits: Sequence[float], groups: Any) -> float:
    """Between-group Theil index: :func:`between_group_generalized_entropy` with ``alpha=1``.

    Source: AIF360 ``between_group_theil_index``; METRICS.md section 2.

    Examples
    --------
    >>> between_group_theil_index([1, 1, 1, 1], ["a", "a", "b", "b"])
    0.0
    """
    return between_group_generalized_entropy(benefits, groups, alpha=1)


declare("theil", "between-group Theil index of per-user benefit (0 = equal; floor: values "
        "exchangeable within a user)", higher_is_worse=True, null=0.0, noise_floor=True)
