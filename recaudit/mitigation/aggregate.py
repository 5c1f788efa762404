"""Rank aggregation: one consensus list from many rankings of (partly) the same items.

Two uses in recaudit:

* **counterfactual consensus** -- the same instruction asked once per value of a sensitive
  attribute ("a male fan", "a female fan", ...) gives one top-k list per value; their aggregate
  is a single list that no longer depends on the value;
* **permutation self-consistency** (PSC; Tang et al., NAACL 2024, "Found in the Middle:
  Permutation Self-Consistency Improves Listwise Ranking in Large Language Models") -- ``B``
  rankings of one candidate set, each produced from a shuffled input order, are aggregated so
  that the model's positional bias averages out.

Inputs are rankings of item ids, best first. They may be *partial* (top-k lists holding
different items) or *full* (every list a permutation of the same items). The item set ``U`` is
the union of all lists, or ``universe`` when given; ``n = |U|``.

Conventions shared by every function here:

* **first-appearance order** -- the items of ``U`` in the order met when reading ranking 0 top
  to bottom, then ranking 1, and so on, followed by items of ``universe`` that no ranking
  lists, in ``universe`` order; it is the last tie-breaker everywhere, so results never depend
  on hashing or on sort stability;
* ``k`` (``None`` or an int >= 1) truncates the aggregate to its first ``k`` items; ``k > n``
  returns all ``n``;
* bad input (no rankings, no items, an item twice in one ranking, ``k < 1``, an item outside
  ``universe``, too many items for exact Kemeny) raises ``ValueError`` with a one-line message.

References
----------
J.-C. de Borda (1781), "Memoire sur les elections au scrutin".
J. G. Kemeny (1959), "Mathematics without numbers", Daedalus 88.
C. Dwork, R. Kumar, M. Naor, D. Sivakumar (2001), "Rank aggregation methods for the Web",
WWW '01 (aggregation of partial lists).
R. Fagin, R. Kumar, D. Sivakumar (2003), "Comparing top k lists", SODA '03 (Kendall distance
with penalty ``p = 0`` for pairs both missing from a list).
R. Tang, X. Zhang, X. Ma, J. Lin, F. Ture (2024), "Found in the Middle: Permutation
Self-Consistency Improves Listwise Ranking in Large Language Models", NAACL 2024.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from fractions import Fraction
from typing import Literal

import numpy as np

__all__ = [
    "borda",
    "borda_positions",
    "borda_scores",
    "kemeny",
    "pairwise_preferences",
    "total_kendall_distance",
]

AbsentRule = Literal["zero", "share"]

# The subset DP holds 2**n costs; past this even an explicit ``max_items`` is refused.
_KEMENY_HARD_LIMIT = 20


# --------------------------------------------------------------------------- validation


def _check_k(k: int | None) -> None:
    if k is None:
        return
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an int >= 1 or None, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _index(
    rankings: Sequence[Sequence[Hashable]], universe: Sequence[Hashable] | None
) -> tuple[list[Hashable], list[list[int]]]:
    """Validate ``rankings`` and return (items in first-appearance order, rankings as indices)."""
    if isinstance(rankings, (str, bytes)):
        raise ValueError("rankings must be a sequence of rankings, got a single string")
    rankings = list(rankings)
    if not rankings:
        raise ValueError("rankings is empty: need at least one ranking")
    pos: dict[Hashable, int] = {}
    items: list[Hashable] = []
    lists: list[list[int]] = []
    for b, ranking in enumerate(rankings):
        if isinstance(ranking, (str, bytes)):
            raise ValueError(f"ranking {b} is a string, not a sequence of item ids")
        seen: set[Hashable] = set()
        row = []
        for item in ranking:
            if item in seen:
                raise ValueError(f"ranking {b} lists item {item!r} more than once")
            seen.add(item)
            if item not in pos:
                pos[item] = len(items)
                items.append(item)
            row.append(pos[item])
        lists.append(row)
    if universe is not None:
        if isinstance(universe, (str, bytes)):
            raise ValueError("universe must be a sequence of item ids, got a single string")
        uni = list(universe)
        if len(set(uni)) != len(uni):
            raise ValueError("universe lists an item more than once")
        outside = [item for item in items if item not in set(uni)]
        if outside:
            raise ValueError(f"item {outside[0]!r} is ranked but not in universe")
        for item in uni:
            if item not in pos:
                pos[item] = len(items)
                items.append(item)
    if not items:
        raise ValueError("rankings contain no items")
    return items, lists


# --------------------------------------------------------------------------- Borda


def _borda_key(
    n: int, lists: list[list[int]], absent: AbsentRule
) -> tuple[np.ndarray, list[tuple[int, Fraction | float, int]]]:
    """Doubled (hence integer) Borda scores and the sort key of every item index."""
    if absent not in ("zero", "share"):
        raise ValueError(f"absent must be 'zero' or 'share', got {absent!r}")
    twice = np.zeros(n, dtype=np.int64)
    pos_sum = np.zeros(n, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    for row in lists:
        length = len(row)
        idx = np.asarray(row, dtype=np.int64)
        j = np.arange(length, dtype=np.int64)
        if absent == "share" and length < n:
            # the n - length missing items share the points n - length, ..., 1 equally
            twice += n - length + 1
            twice[idx] -= n - length + 1
        twice[idx] += 2 * (n - j)
        pos_sum[idx] += j
        count[idx] += 1
    keys = [
        (
            -int(twice[i]),
            Fraction(int(pos_sum[i]), int(count[i])) if count[i] else float("inf"),
            i,
        )
        for i in range(n)
    ]
    return twice, keys


def borda_scores(
    rankings: Sequence[Sequence[str]],
    *,
    universe: Sequence[str] | None = None,
    absent: AbsentRule = "zero",
) -> dict[str, float]:
    """Borda score of every item, in first-appearance order.

    For one ranking of length ``L`` over ``n`` items, the item at 0-based position ``j`` gets

    .. math:: s(j) = n - j,

    so in a full ranking (``L = n``) the best item gets ``n`` points and the last ``1``
    (permsc's ``BordaRankAggregator`` orders by mean position, which is the same order on full
    rankings: the Borda score is ``B * (n - mean position)``). An item missing from a partial
    list gets, per ``absent``:

    * ``"zero"`` (default) -- 0 points (partial Borda of Dwork et al. 2001): a listed item
      always beats an unlisted one, and longer lists hand out more points;
    * ``"share"`` -- the points ``n - L, ..., 1`` of the unfilled positions split equally among
      the ``n - L`` missing items, i.e. ``(n - L + 1) / 2`` each (the expected score over all
      completions of the list); every list then hands out ``n (n + 1) / 2`` points.

    The score of an item is the sum over the rankings (Borda 1781).

    Parameters
    ----------
    rankings
        Rankings of item ids, best first; partial lists allowed.
    universe
        The item set ``U``; default the union of ``rankings``. Items of ``universe`` that no
        ranking lists score as missing everywhere.
    absent
        ``"zero"`` or ``"share"``, as above.

    Returns
    -------
    dict
        ``{item: score}``; scores are multiples of 1/2, exact in floating point.
    """
    items, lists = _index(rankings, universe)
    twice, _ = _borda_key(len(items), lists, absent)
    return {item: float(twice[i]) / 2 for i, item in enumerate(items)}


def borda(
    rankings: Sequence[Sequence[str]],
    *,
    k: int | None = None,
    universe: Sequence[str] | None = None,
    absent: AbsentRule = "zero",
) -> list[str]:
    """Borda-count aggregate of (possibly partial) rankings.

    Items are sorted by their Borda score (see :func:`borda_scores`; item at position ``j``
    scores ``n - j``, missing items ``0`` by default), highest first. Ties are broken
    deterministically by

    1. the better (smaller) mean 0-based position over the rankings that list the item (an item
       no ranking lists comes after every listed one), then
    2. first-appearance order (ranking 0 top to bottom, then ranking 1, ..., then ``universe``).

    On full rankings step 1 never decides (equal scores mean equal mean positions), so ties go
    to the order of the first ranking.

    Parameters
    ----------
    rankings
        Rankings of item ids, best first; partial lists allowed.
    k
        Return only the first ``k`` items (all when ``None``).
    universe
        The item set ``U``; default the union of ``rankings``.
    absent
        ``"zero"`` (default) or ``"share"``: points of a missing item, see :func:`borda_scores`.

    Returns
    -------
    list
        A permutation of ``U`` (its top ``k`` when ``k`` is given).
    """
    _check_k(k)
    items, lists = _index(rankings, universe)
    _, keys = _borda_key(len(items), lists, absent)
    order = [key[2] for key in sorted(keys)]
    return [items[i] for i in order[:k]]


def borda_positions(orders: np.ndarray) -> np.ndarray:
    """Vectorised Borda aggregation of full rankings of candidate indices (PSC batches).

    ``orders[..., b, j]`` is the candidate index (``0 .. n-1``) that ranking ``b`` puts at
    position ``j``; every ranking must be a permutation of ``0 .. n-1``. With
    ``pos[b, c]`` the position of candidate ``c`` in ranking ``b``, candidates are sorted by
    ascending total position ``sum_b pos[b, c]`` -- the same order as descending Borda score
    ``sum_b (n - pos[b, c])`` -- ties broken by the position in ranking 0 (the first-appearance
    order of :func:`borda`, which this matches exactly on string ids). This is the aggregation
    step of permutation self-consistency (Tang et al. 2024) with the Borda aggregator.

    Parameters
    ----------
    orders
        Integer array ``(B, n)`` (one request, ``B`` shuffled rankings) or ``(G, B, n)`` (``G``
        requests).

    Returns
    -------
    numpy.ndarray
        ``int64`` array ``(n,)`` or ``(G, n)``: aggregated order(s), best first.
    """
    arr = np.asarray(orders)
    if arr.ndim not in (2, 3):
        raise ValueError(f"orders must be a (B, n) or (G, B, n) array, got {arr.ndim}-D")
    if arr.size == 0:
        raise ValueError(f"orders is empty (shape {arr.shape})")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"orders must hold integer candidate indices, got dtype {arr.dtype}")
    n = arr.shape[-1]
    batch = arr.reshape(-1, arr.shape[-2], n).astype(np.int64)
    if not np.array_equal(np.sort(batch, axis=-1), np.broadcast_to(np.arange(n), batch.shape)):
        raise ValueError(f"every ranking in orders must be a permutation of 0..{n - 1}")
    g, b, _ = batch.shape
    pos = np.empty_like(batch)
    gi = np.arange(g)[:, None, None]
    bi = np.arange(b)[None, :, None]
    pos[gi, bi, batch] = np.arange(n, dtype=np.int64)
    key = pos.sum(axis=1) * n + pos[:, 0, :]  # total position first, then position in ranking 0
    out = np.argsort(key, axis=-1, kind="stable").astype(np.int64)
    return out[0] if arr.ndim == 2 else out


# --------------------------------------------------------------------------- Kemeny


def _preference_matrix(n: int, lists: list[list[int]]) -> np.ndarray:
    pref = np.zeros((n, n), dtype=np.int64)
    for row in lists:
        rank = np.full(n, len(row), dtype=np.int64)  # missing items tie below the listed ones
        rank[np.asarray(row, dtype=np.int64)] = np.arange(len(row))
        pref += rank[:, None] < rank[None, :]
    return pref


def pairwise_preferences(
    rankings: Sequence[Sequence[str]], *, universe: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Pairwise preference counts ``P[a, b]`` = number of rankings preferring ``a`` to ``b``.

    A ranking prefers ``a`` to ``b`` when it lists both with ``a`` first, or lists ``a`` but not
    ``b`` (an item in a top-k list beats every item the list leaves out, Dwork et al. 2001). A
    ranking listing neither expresses no preference.

    Returns
    -------
    (items, P)
        Items in first-appearance order and the ``int64`` matrix ``(n, n)`` indexed like them.
    """
    items, lists = _index(rankings, universe)
    return items, _preference_matrix(len(items), lists)


def total_kendall_distance(
    ranking: Sequence[str],
    rankings: Sequence[Sequence[str]],
    *,
    universe: Sequence[str] | None = None,
) -> int:
    """Total Kendall tau distance ``sum_b K(ranking, rankings[b])`` -- the Kemeny objective.

    ``K`` counts the pairs ``{a, b}`` on which ``rankings[b]`` has a preference (see
    :func:`pairwise_preferences`) and ``ranking`` orders the other way; pairs missing from a
    partial list count 0 (Fagin et al. 2003, penalty ``p = 0``). For full rankings this is the
    plain number of discordant pairs. Equivalently ``sum over a before b in ranking of P[b, a]``.

    ``ranking`` must be a full ranking of ``U`` (the union of ``rankings``, or ``universe``).
    """
    items, pref = pairwise_preferences(rankings, universe=universe)
    where = {item: i for i, item in enumerate(items)}
    cand = list(ranking)
    if len(cand) != len(items) or set(cand) != set(items):
        raise ValueError("ranking must be a permutation of all aggregated items")
    idx = np.asarray([where[item] for item in cand], dtype=np.int64)
    later = np.triu(np.ones((len(idx), len(idx)), dtype=bool), 1)  # later[i, j]: i before j
    return int(pref[idx[:, None], idx[None, :]].T[later].sum())


def _kemeny_order(pref: np.ndarray) -> list[int]:
    """Exact Kemeny order of indices 0..n-1; ties go to the lexicographically smallest order.

    ``g[R]`` is the least number of disagreements among the items of ``R`` when they fill the
    last ``|R|`` places (pairs with an item outside ``R`` are already paid for):
    ``g[R] = min over i in R of (sum_{r in R} P[r, i] + g[R - {i}])``, ``i`` going first.
    """
    n = pref.shape[0]
    size = 1 << n
    masks = np.arange(size, dtype=np.int64)
    bits = ((masks[:, None] >> np.arange(n, dtype=np.int64)) & 1).astype(bool)
    popcount = bits.sum(axis=1)
    g = np.zeros(size, dtype=np.int64)
    big = np.iinfo(np.int64).max // 4
    for layer in range(1, n + 1):
        sub = masks[popcount == layer]
        first_cost = bits[sub].astype(np.int64) @ pref  # [R, i] = sum_{r in R} P[r, i]
        best = np.full(sub.shape[0], big, dtype=np.int64)
        for i in range(n):
            has = bits[sub, i]
            cand = np.where(has, first_cost[:, i] + g[sub & ~(1 << i)], big)
            np.minimum(best, cand, out=best)
        g[sub] = best
    order: list[int] = []
    rest = size - 1
    while rest:
        cost = bits[rest].astype(np.int64) @ pref
        for i in range(n):
            if rest >> i & 1 and cost[i] + g[rest & ~(1 << i)] == g[rest]:
                order.append(i)
                rest &= ~(1 << i)
                break
    return order


def kemeny(
    rankings: Sequence[Sequence[str]],
    *,
    k: int | None = None,
    max_items: int = 12,
    universe: Sequence[str] | None = None,
) -> list[str]:
    r"""Exact Kemeny-optimal aggregate (Kemeny 1959) of (possibly partial) rankings.

    Returns a full ranking ``pi`` of ``U`` minimising the total Kendall tau distance

    .. math:: \sum_b K(\pi, \tau_b) = \sum_{a \prec_\pi c} P[c, a],

    where ``P[c, a]`` counts the rankings preferring ``c`` to ``a``
    (:func:`pairwise_preferences`): a ranking prefers the earlier of two listed items, and a
    listed item to an unlisted one; two items both missing from a list are no preference there
    (Dwork et al. 2001; Fagin et al. 2003 ``K^(0)``). On full rankings this is the classic
    Kemeny rule, as in permsc's ``KemenyOptimalAggregator``.

    Solved exactly by dynamic programming over subsets, ``O(2^n n^2)`` time and ``O(2^n n)``
    memory. Among several optimal rankings the one returned is the lexicographically smallest
    when items are compared in :func:`borda` order (score, then mean position, then first
    appearance) -- so ties follow the Borda consensus rather than any one input list.

    Parameters
    ----------
    rankings
        Rankings of item ids, best first; partial lists allowed.
    k
        Return the first ``k`` items of the optimal full ranking (all when ``None``); this is a
        prefix of the Kemeny ranking, not a separately optimised top-k list.
    max_items
        Refuse ``n > max_items`` (at most 20): the cost doubles with every item.
    universe
        The item set ``U``; default the union of ``rankings``.

    Returns
    -------
    list
        A permutation of ``U`` (its top ``k`` when ``k`` is given).
    """
    _check_k(k)
    if isinstance(max_items, bool) or not isinstance(max_items, (int, np.integer)):
        raise ValueError(f"max_items must be an int, got {max_items!r}")
    if not 1 <= max_items <= _KEMENY_HARD_LIMIT:
        raise ValueError(f"max_items must be in 1..{_KEMENY_HARD_LIMIT}, got {max_items}")
    items, lists = _index(rankings, universe)
    n = len(items)
    if n > max_items:
        raise ValueError(
            f"Kemeny aggregation is exact only up to {max_items} items (got {n}); use borda"
        )
    _, keys = _borda_key(n, lists, "zero")
    tie_order = np.asarray([key[2] for key in sorted(keys)], dtype=np.int64)
    pref = _preference_matrix(n, lists)[tie_order[:, None], tie_order[None, :]]
    order = _kemeny_order(pref)
    return [items[int(tie_order[i])] for i in order[:k]]
