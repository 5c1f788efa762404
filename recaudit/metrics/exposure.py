"""Exposure and provider-side fairness (METRICS.md section 6).

Exposure of the item at 1-based rank ``r`` is ``1 / log2(1 + r)`` (the DCG position discount).
Item groups (providers, head/tail, genres) come from a mapping ``item -> group``. Skew@k and
NDKL compare the group make-up of a ranking with a desired distribution (Geyik, Ambler &
Kenthapadi, "Fairness-Aware Ranking in Search & Recommendation Systems with Application to
LinkedIn Talent Search", KDD 2019).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .specs import declare

__all__ = ["exposure_weights", "group_exposure_share", "ndkl", "skew_at_k", "item_shares",
           "resolve_target", "topk_group_share"]


def exposure_weights(n: int) -> np.ndarray:
    r"""Position exposure ``1 / log2(1 + r)`` for ranks ``r = 1..n``.

    Source: the DCG discount (Järvelin & Kekäläinen 2002) as the exposure model of
    Singh & Joachims, KDD 2018; METRICS.md section 6.

    Examples
    --------
    >>> exposure_weights(3).round(4).tolist()
    [1.0, 0.6309, 0.5]
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return 1.0 / np.log2(1.0 + np.arange(1, int(n) + 1))


declare("exposure_share", "share of the position exposure 1/log2(1+r) of a list that an item "
        "group receives", higher_is_worse=None, range=(0.0, 1.0),
        convention="per list, averaged over lists")
declare("topk_share", "share of a list's top-k entries that belong to an item group",
        higher_is_worse=None, range=(0.0, 1.0))


def _group_of(item: Hashable, item_group: Mapping[Hashable, Any], default: Any) -> Any:
    try:
        return item_group[item]
    except KeyError:
        if default is None:
            raise KeyError(f"item {item!r} has no group (pass default=... to assign one)") from None
        return default


def group_exposure_share(
    lists: Iterable[Sequence[Hashable]],
    item_group: Mapping[Hashable, Any],
    *,
    default: Any = None,
) -> dict[Any, float]:
    r"""Share of the total position exposure that each item group receives.

    .. math:: share(g) = \frac{\sum_u \sum_{r} \mathbb{1}[group(L_{u,r}) = g] / \log_2(1+r)}
              {\sum_u \sum_{r} 1 / \log_2(1+r)}

    Every group that appears in ``item_group`` (and ``default``, if used) is in the result,
    with 0.0 when it got no exposure. NaN shares when the lists are all empty.

    Parameters
    ----------
    lists : iterable of sequences
        Ranked lists (truncated to ``k``).
    item_group : mapping item -> group
    default : optional
        Group for items missing from ``item_group``; ``None`` (default) raises ``KeyError``.

    Examples
    --------
    >>> s = group_exposure_share([["a", "b"]], {"a": "x", "b": "y"})
    >>> round(s["x"], 4), round(s["y"], 4)
    (0.6131, 0.3869)
    """
    groups = list(dict.fromkeys(item_group.values()))
    if default is not None and default not in groups:
        groups.append(default)
    totals = dict.fromkeys(groups, 0.0)
    grand = 0.0
    for lst in lists:
        w = exposure_weights(len(lst))
        for item, weight in zip(lst, w, strict=True):
            g = _group_of(item, item_group, default)
            totals[g] = totals.get(g, 0.0) + float(weight)
            grand += float(weight)
    if grand == 0:
        return {g: float("nan") for g in totals}
    return {g: v / grand for g, v in totals.items()}


def _prefix(ranked: Sequence[Hashable], k: int | None) -> list:
    ranked = list(ranked)
    if k is None:
        return ranked
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return ranked[: int(k)]


def skew_at_k(
    ranked: Sequence[Hashable],
    item_group: Mapping[Hashable, Any],
    group: Any,
    desired_share: float,
    k: int,
    *,
    default: Any = None,
) -> float:
    r"""Skew of a group in the top ``k`` relative to its desired share.

    .. math:: Skew_g@k = \ln \frac{N_{k,g} / k'}{p_g}

    with ``N_{k,g}`` the number of top-``k`` entries in group ``g`` and ``k' = min(k, |list|)``.
    0 = the desired share, < 0 under-represented (``-inf`` when absent), > 0 over-represented.
    NaN for an empty list.

    Source: Geyik, Ambler & Kenthapadi, KDD 2019, eq. 1; METRICS.md section 6.

    Examples
    --------
    >>> round(skew_at_k(["a", "b", "c", "d"], {"a": 1, "b": 0, "c": 0, "d": 0}, 1, 0.5, k=4), 6)
    -0.693147
    """
    if not 0.0 < desired_share <= 1.0:
        raise ValueError(f"desired_share must be in (0, 1], got {desired_share!r}")
    top = _prefix(ranked, k)
    if not top:
        return float("nan")
    count = sum(_group_of(i, item_group, default) == group for i in top)
    if count == 0:
        return -math.inf
    return math.log((count / len(top)) / desired_share)


def ndkl(
    ranked: Sequence[Hashable],
    item_group: Mapping[Hashable, Any],
    desired: Mapping[Any, float],
    k: int | None = None,
    *,
    default: Any = None,
) -> float:
    r"""Compute NDKL, the normalized discounted cumulative KL-divergence of a ranking's groups.

    .. math:: NDKL(\tau) = \frac{1}{Z} \sum_{i=1}^{|\tau|} \frac{1}{\log_2(i+1)}
              d_{KL}(D_{\tau_i} \,\|\, D), \quad Z = \sum_{i=1}^{|\tau|} \frac{1}{\log_2(i+1)}

    where ``D_{tau_i}`` is the group distribution of the top ``i`` entries and ``D`` the desired
    distribution; ``d_KL(P || Q) = sum_j P_j ln(P_j / Q_j)`` (natural log, ``0 ln 0 = 0``).
    0 = every prefix matches ``D``; ``inf`` when a prefix holds a group with desired share 0
    (or absent from ``desired``). NaN for an empty ranking.

    Source: Geyik, Ambler & Kenthapadi, KDD 2019, section 4.1.2; METRICS.md section 6.

    Parameters
    ----------
    ranked : sequence
    item_group : mapping item -> group
    desired : mapping group -> share (must sum to 1)
    k : int, optional
        Evaluate the top ``k`` only.

    Examples
    --------
    >>> ndkl(["a", "b"], {"a": 0, "b": 1}, {0: 0.5, 1: 0.5}) > 0
    True
    """
    target = {g: float(v) for g, v in desired.items()}
    if any(v < 0 for v in target.values()) or not math.isclose(sum(target.values()), 1.0,
                                                                 rel_tol=0, abs_tol=1e-9):
        raise ValueError("desired shares must be non-negative and sum to 1")
    top = _prefix(ranked, k)
    if not top:
        return float("nan")
    labels = [_group_of(i, item_group, default) for i in top]
    counts: dict[Any, int] = {}
    total = 0.0
    z = 0.0
    for i, g in enumerate(labels, start=1):
        counts[g] = counts.get(g, 0) + 1
        kl = 0.0
        for grp, c in counts.items():
            share = c / i
            q = target.get(grp, 0.0)
            kl += math.inf if q == 0 else share * math.log(share / q)
        weight = 1.0 / math.log2(i + 1)
        total += weight * kl
        z += weight
    return total / z


# Lower is worse: a group's harm is under-exposure (skew < 0); an over-exposed group shows up as
# the under-exposure of the others (the shares sum to 1), and NDKL measures both directions.
declare("skew_at_k", "ln(share of the group in the top k / desired share) (0 = as desired, < 0 "
        "under-represented; floor: a group-blind model drawing groups at catalog shares)",
        higher_is_worse=False, null=0.0, noise_floor=True,
        convention="Geyik et al. 2019, of the mean top-k share over lists")
declare("ndkl", "NDKL: position-discounted KL divergence of the top-k group make-up from the "
        "desired shares (0 = as desired; floor: a group-blind model drawing groups at catalog "
        "shares)", higher_is_worse=True, null=0.0, noise_floor=True,
        convention="Geyik et al. 2019, natural log")


def topk_group_share(ranked: Sequence[Hashable], item_group: Mapping[Hashable, Any],
                     groups: Sequence[Any], k: int, *, default: Any = None) -> np.ndarray:
    r"""Return the share of the top ``k`` entries in each of ``groups``; NaN for an empty list.

    The share is ``N_{k,g} / k'`` with ``k' = min(k, |list|)``, the numerator and denominator
    of :func:`skew_at_k`.

    Examples
    --------
    >>> topk_group_share(["a", "b", "c"], {"a": 0, "b": 1, "c": 1}, [0, 1], k=2).tolist()
    [0.5, 0.5]
    """
    top = _prefix(ranked, k)
    if not top:
        return np.full(len(groups), np.nan)
    labels = [_group_of(i, item_group, default) for i in top]
    return np.array([sum(lab == g for lab in labels) / len(top) for g in groups], dtype=float)


def item_shares(item_group: Mapping[Hashable, Any]) -> dict[Any, float]:
    """Return the share of the items in each group (the catalog's own make-up).

    Groups come in order of first appearance.

    Examples
    --------
    >>> item_shares({"a": "x", "b": "y", "c": "y", "d": "y"})
    {'x': 0.25, 'y': 0.75}
    """
    counts: dict[Any, int] = {}
    for g in item_group.values():
        counts[g] = counts.get(g, 0) + 1
    n = sum(counts.values())
    return {g: c / n for g, c in counts.items()} if n else {}


def resolve_target(groups: Sequence[Any], given: Mapping[Any, float],
                   fallback: Mapping[Any, float]) -> dict[Any, float]:
    """Return the desired share of each of ``groups``, completing the ``given`` ones.

    The ``given`` shares are kept as they are; the rest of the mass (``1 - sum(given)``) is
    split over the other groups in proportion to ``fallback`` (e.g. the catalog's shares;
    equally when those are all 0).

    Examples
    --------
    >>> t = resolve_target(["h", "t", "x"], {"t": 0.5}, {"h": 0.1, "t": 0.6, "x": 0.3})
    >>> {g: round(v, 6) for g, v in t.items()}
    {'h': 0.125, 't': 0.5, 'x': 0.375}
    """
    unknown = [g for g in given if g not in groups]
    if unknown:
        raise ValueError(f"target group {unknown[0]!r} does not exist; groups: "
                         + ", ".join(map(str, groups)))
    vals = [float(v) for v in given.values()]
    if any(not 0.0 <= v <= 1.0 for v in vals) or sum(vals) > 1.0 + 1e-9:
        raise ValueError("target shares must lie in [0, 1] and sum to at most 1")
    rest = [g for g in groups if g not in given]
    left = max(0.0, 1.0 - sum(vals))
    weight = {g: float(fallback.get(g, 0.0)) for g in rest}
    total = sum(weight.values())
    out = {}
    for g in groups:
        if g in given:
            out[g] = float(given[g])
        elif total > 0:
            out[g] = left * weight[g] / total
        else:
            out[g] = left / len(rest)
    return out
