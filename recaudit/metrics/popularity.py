"""Popularity-bias metrics (METRICS.md section 4).

Popularity of an item is the number of distinct training users who interacted with it
(:func:`item_popularity`). The short head is the most popular items that together hold a share
(default 80%) of the interactions (:func:`head_tail_split`); everything else, zero-popularity
items included, is the long tail. Lists are sequences of item ids; an item absent from a
popularity mapping has popularity 0 (nobody interacted with it).

Conventions follow Abdollahpouri et al. (2019) and the Elliot framework (Anelli et al., SIGIR
2021); PopRSP / PopREO follow Zhu, Wang & Caverlee (SIGIR 2020); popularity by output position
follows LLMRank (Hou et al., ECIR 2024).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .specs import declare

__all__ = [
    "HeadTailSplit",
    "aclt",
    "aplt",
    "arp",
    "gini",
    "head_tail_split",
    "item_coverage",
    "item_popularity",
    "one_minus_gini",
    "pop_reo",
    "pop_rsp",
    "popularity_by_position",
    "popularity_lift",
    "user_popularity_groups",
]

_GINI_NORMALIZATIONS = ("n", "n-1")


def _as_dict(popularity: Mapping[Hashable, float] | pd.Series) -> dict[Hashable, float]:
    if isinstance(popularity, pd.Series):
        return popularity.to_dict()
    return dict(popularity)


def item_popularity(
    interactions: pd.DataFrame | Mapping[Hashable, Iterable[Hashable]] | Iterable[tuple],
    *,
    user_col: str = "user",
    item_col: str = "item",
    items: Iterable[Hashable] | None = None,
) -> pd.Series:
    """Popularity of each item = number of distinct training users who interacted with it.

    Source: Abdollahpouri et al. 2019; METRICS.md section 4. Repeated interactions of one user
    with one item count once.

    Parameters
    ----------
    interactions : DataFrame, mapping or iterable of pairs
        A DataFrame with ``user_col`` and ``item_col`` columns, a mapping
        ``user -> iterable of items`` (histories), or an iterable of ``(user, item)`` pairs.
    user_col, item_col : str
        Column names when ``interactions`` is a DataFrame.
    items : iterable, optional
        The whole catalogue. When given, the result is indexed by it in that order and items
        nobody interacted with get 0 (they belong to the long tail); interacted items outside
        it raise ``ValueError``. Otherwise the index is the items in order of first appearance.

    Returns
    -------
    pandas.Series
        Integer counts indexed by item id, named ``"popularity"``.

    Examples
    --------
    >>> item_popularity({"u1": ["a", "b", "a"], "u2": ["a"]}, items=["a", "b", "c"]).tolist()
    [2, 1, 0]
    """
    if isinstance(interactions, pd.DataFrame):
        pairs: Iterable[tuple] = zip(interactions[user_col].tolist(),
                                     interactions[item_col].tolist(), strict=True)
    elif isinstance(interactions, Mapping):
        pairs = ((u, i) for u, hist in interactions.items() for i in hist)
    else:
        pairs = ((u, i) for u, i in interactions)
    counts: Counter = Counter(i for _, i in dict.fromkeys(pairs))  # distinct (user, item)
    if items is not None:
        index = list(dict.fromkeys(items))
        known = set(index)
        missing = [i for i in counts if i not in known]
        if missing:
            raise ValueError(
                f"{len(missing)} interacted item(s) not in the catalogue: {missing[:5]}"
            )
    else:
        index = list(counts)  # Counter keeps first-appearance order
    return pd.Series([counts.get(i, 0) for i in index], index=pd.Index(index, dtype=object),
                     dtype=np.int64, name="popularity")


class HeadTailSplit(NamedTuple):
    """Short head and long tail of a catalogue (frozensets of item ids)."""

    head: frozenset
    tail: frozenset


def head_tail_split(
    popularity: Mapping[Hashable, float] | pd.Series, share: float = 0.8
) -> HeadTailSplit:
    """Split items into the short head and the long tail.

    Items are sorted by decreasing popularity, ties kept in the mapping's order (stable sort).
    The short head is the shortest prefix whose cumulative popularity reaches ``share`` of the
    total; the item whose addition crosses (or reaches) the threshold is included. Everything
    else, zero-popularity items included, is the long tail. With no interactions at all the
    head is empty. "Reaches" allows a relative slack of 1e-12 (``cum >= share * total * (1 -
    1e-12)``) so that the rounding of float sums neither adds an item beyond the one that
    reaches the share (``{"a": 0.1, "b": 0.2, "c": 0.3}`` at 0.5 is ``{"c"}``) nor, at
    ``share=1``, moves zero-popularity items into the head.

    Source: Abdollahpouri et al. 2019 (short head = 20% of items / 80% of ratings, here the
    interaction share is the parameter); METRICS.md section 4.

    Parameters
    ----------
    popularity : mapping item -> popularity
        Pass the whole catalogue (e.g. ``item_popularity(..., items=catalogue)``) so that items
        with zero popularity land in the tail.
    share : float
        Interaction share held by the head, in (0, 1].

    Returns
    -------
    HeadTailSplit

    Examples
    --------
    >>> split = head_tail_split({"a": 5, "b": 3, "c": 1, "d": 1, "e": 0}, share=0.8)
    >>> sorted(split.head), sorted(split.tail)
    (['a', 'b'], ['c', 'd', 'e'])
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    pop = _as_dict(popularity)
    keys = list(pop)
    values = np.asarray([pop[k] for k in keys], dtype=float)
    if values.size and values.min() < 0:
        raise ValueError("popularity must be non-negative")
    total = values.sum()
    if total <= 0:
        return HeadTailSplit(frozenset(), frozenset(keys))
    order = np.argsort(-values, kind="stable")
    cum = np.cumsum(values[order])
    reached = cum >= share * total * (1 - 1e-12)  # tolerant of float rounding (see above)
    n_head = int(np.argmax(reached)) + 1 if reached.any() else len(keys)
    head = frozenset(keys[i] for i in order[:n_head])
    tail = frozenset(keys[i] for i in order[n_head:])
    return HeadTailSplit(head, tail)


def arp(lists: Iterable[Sequence[Hashable]], popularity: Mapping[Hashable, float]) -> float:
    r"""Average Recommendation Popularity.

    .. math:: ARP = \frac{1}{|U|} \sum_{u \in U} \frac{\sum_{i \in L_u} \phi(i)}{|L_u|}

    Mean over users of the mean popularity of the list's entries (a duplicated entry counts
    each time). Empty lists have no mean and are left out of the average; NaN if all are empty.

    Source: Abdollahpouri et al. 2019; Elliot's ARP; METRICS.md section 4.

    Examples
    --------
    >>> arp([["a", "b"], ["c"]], {"a": 4, "b": 2, "c": 1})
    2.0
    """
    pop = _as_dict(popularity)
    per_user = [np.mean([pop.get(i, 0) for i in lst]) for lst in lists if len(lst)]
    return float(np.mean(per_user)) if per_user else float("nan")


def aplt(lists: Iterable[Sequence[Hashable]], long_tail: Collection[Hashable]) -> float:
    r"""Average Percentage of Long Tail items.

    .. math:: APLT = \frac{1}{|U|} \sum_{u} \frac{|\{i \in L_u : i \in \Gamma\}|}{|L_u|}

    Mean over users of the share of list entries in the long tail ``Gamma``. Empty lists are
    left out (no share); NaN if all are empty.

    Source: Abdollahpouri et al. 2019; Elliot's APLT; METRICS.md section 4.

    Examples
    --------
    >>> aplt([["a", "b"], ["c", "d"]], {"b", "c", "d"})
    0.75
    """
    tail = set(long_tail)
    per_user = [sum(i in tail for i in lst) / len(lst) for lst in lists if len(lst)]
    return float(np.mean(per_user)) if per_user else float("nan")


def aclt(lists: Iterable[Sequence[Hashable]], long_tail: Collection[Hashable]) -> float:
    r"""Average Coverage of Long Tail items.

    .. math:: ACLT = \frac{1}{|U|} \sum_{u} |\{i \in L_u : i \in \Gamma\}|

    Mean over users of the count of long-tail entries in the list. An empty list contributes
    0 (a well-defined count); NaN only when there are no users.

    Source: Abdollahpouri et al. 2019; Elliot's ACLT; METRICS.md section 4.

    Examples
    --------
    >>> aclt([["a", "b"], ["c", "d"], []], {"b", "c", "d"})
    1.0
    """
    tail = set(long_tail)
    per_user = [sum(i in tail for i in lst) for lst in lists]
    return float(np.mean(per_user)) if per_user else float("nan")


def _exposure_counts(lists: Iterable[Sequence[Hashable]], n_items: int) -> np.ndarray:
    counts = Counter(i for lst in lists for i in lst)
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    if len(counts) > n_items:
        raise ValueError(
            f"{len(counts)} distinct items recommended but the catalogue has n_items={n_items}"
        )
    x = np.zeros(n_items, dtype=float)
    x[: len(counts)] = sorted(counts.values())
    return np.sort(x)


def gini(lists: Iterable[Sequence[Hashable]], n_items: int, normalization: str = "n") -> float:
    r"""Gini index of item exposure over the whole catalogue (0 = equal exposure).

    Exposure count ``x_i`` = number of list entries equal to item ``i``, for every one of the
    ``n`` catalogue items (never-recommended items contribute zeros). With ``x`` sorted
    ascending and 1-based ``j``:

    .. math:: G = \frac{\sum_{j=1}^{n} (2j - n - 1)\, x_{(j)}}{D \sum_j x_j}

    ``normalization="n"`` (default, the standard Gini): ``D = n``; maximum ``(n-1)/n``.
    ``normalization="n-1"``: ``D = n - 1``, maximum 1, the normaliser of RankSys and Elliot.

    NaN when nothing was recommended. Source: Gini coefficient; Elliot / RankSys "Gini index"
    (Vargas & Castells); METRICS.md section 4. Elliot reports ``1 - G`` under the name "Gini":
    see :func:`one_minus_gini`.

    Parameters
    ----------
    lists : iterable of sequences
        Recommendation lists of all users (already truncated to ``k``).
    n_items : int
        Catalogue size.
    normalization : {"n", "n-1"}

    Examples
    --------
    >>> gini([["a"], ["a"]], n_items=2)
    0.5
    >>> gini([["a"], ["a"]], n_items=2, normalization="n-1")
    1.0
    """
    if normalization not in _GINI_NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_GINI_NORMALIZATIONS}")
    x = _exposure_counts(lists, int(n_items))
    n = x.size
    total = x.sum()
    if total == 0:
        return float("nan")
    j = np.arange(1, n + 1)
    num = float(np.sum((2 * j - n - 1) * x) / total)
    den = n if normalization == "n" else n - 1
    return num / den if den > 0 else 0.0


def one_minus_gini(
    lists: Iterable[Sequence[Hashable]], n_items: int, normalization: str = "n-1"
) -> float:
    """``1 - gini(lists, n_items, normalization)``: what Elliot reports under the name "Gini".

    Higher means *more* equal exposure. The default ``normalization="n-1"`` reproduces Elliot's
    number exactly (its code divides by ``n - 1``); pass ``"n"`` for 1 minus the standard Gini.
    Reports must name it ``one_minus_gini``, never "Gini".

    Source: Elliot, ``elliot/evaluation/metrics/diversity/gini_index``; METRICS.md section 4.

    Examples
    --------
    >>> one_minus_gini([["a"], ["b"]], n_items=2)
    1.0
    """
    return 1.0 - gini(lists, n_items, normalization=normalization)


def item_coverage(
    lists: Iterable[Sequence[Hashable]], n_items: int | None = None
) -> tuple[int, float]:
    """Count the distinct recommended items and their share of the catalogue.

    Source: item coverage / aggregate diversity (Elliot's ItemCoverage); METRICS.md section 4.

    Returns
    -------
    (count, share)
        ``share = count / n_items``; NaN when ``n_items`` is not given.

    Examples
    --------
    >>> item_coverage([["a", "b"], ["b", "c"]], n_items=10)
    (3, 0.3)
    """
    count = len({i for lst in lists for i in lst})
    if n_items is None:
        return count, float("nan")
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    return count, count / n_items


def _rsp_like(num: Sequence[float], den: Sequence[float]) -> float:
    num_a = np.asarray(num, dtype=float)
    den_a = np.asarray(den, dtype=float)
    if (den_a <= 0).any():
        return float("nan")
    prob = num_a / den_a
    mean = prob.mean()
    if mean == 0:
        return float("nan")
    return float(np.std(prob, ddof=0) / mean)


def pop_rsp(
    lists: Sequence[Sequence[Hashable]],
    head: Collection[Hashable],
    tail: Collection[Hashable],
    train: Sequence[Collection[Hashable]] | None = None,
) -> float:
    r"""Popularity-based Ranking-based Statistical Parity (PopRSP).

    For each group ``g`` in {head, tail}:

    .. math:: P_g = \frac{\sum_u |\{i \in L_u : i \in g\}|}{\sum_u |g \setminus I^+_u|}

    (recommended entries in ``g`` over candidate items in ``g``: the group's items not in the
    user's training set ``I^+_u``), and ``PopRSP = std(P) / mean(P)`` with ``ddof=0``.
    0 = parity. NaN when a group has no candidates or nothing is recommended.

    Source: Zhu, Wang & Caverlee, "Measuring and Mitigating Item Under-Recommendation Bias in
    Personalized Ranking Systems", SIGIR 2020; Elliot's PopRSP; METRICS.md section 4.

    Parameters
    ----------
    lists : sequence of sequences
        One recommendation list per user (truncated to ``k``).
    head, tail : collections
        The split of :func:`head_tail_split`.
    train : sequence of collections, optional
        Each user's training items, aligned with ``lists``; excluded from the candidates.
        Without it every group item is a candidate for every user.

    Examples
    --------
    >>> round(pop_rsp([["h1", "t1"], ["h1", "h2"]], {"h1", "h2"}, {"t1", "t2"}), 6)
    0.5
    """
    head, tail = set(head), set(tail)
    if train is not None and len(train) != len(lists):
        raise ValueError("train must be aligned with lists")
    num = [0, 0]
    den = [0, 0]
    for u, lst in enumerate(lists):
        seen = set(train[u]) if train is not None else set()
        for g, group in enumerate((head, tail)):
            num[g] += sum(i in group for i in lst)
            den[g] += len(group - seen) if seen else len(group)
    return _rsp_like(num, den)


def pop_reo(
    lists: Sequence[Sequence[Hashable]],
    head: Collection[Hashable],
    tail: Collection[Hashable],
    test: Sequence[Collection[Hashable]],
    train: Sequence[Collection[Hashable]] | None = None,
) -> float:
    r"""Popularity-based Ranking-based Equal Opportunity (PopREO).

    As :func:`pop_rsp` restricted to each user's held-out test items ``T_u``:

    .. math:: P_g = \frac{\sum_u |\{i \in L_u : i \in g \cap T_u\}|}
              {\sum_u |(g \cap T_u) \setminus I^+_u|}

    and ``PopREO = std(P) / mean(P)`` (``ddof=0``). NaN when a group has no test items or no
    test item is recommended.

    Source: Zhu, Wang & Caverlee, SIGIR 2020; Elliot's PopREO; METRICS.md section 4.

    Examples
    --------
    >>> round(pop_reo([["h1", "t1"], ["h1", "h2"]], {"h1", "h2"}, {"t1", "t2"},
    ...                test=[{"h1", "t1"}, {"h2", "t2"}]), 6)
    0.333333
    """
    head, tail = set(head), set(tail)
    if len(test) != len(lists):
        raise ValueError("test must be aligned with lists")
    if train is not None and len(train) != len(lists):
        raise ValueError("train must be aligned with lists")
    num = [0, 0]
    den = [0, 0]
    for u, lst in enumerate(lists):
        relevant = set(test[u])
        if train is not None:
            relevant -= set(train[u])
        for g, group in enumerate((head, tail)):
            in_g = relevant & group
            num[g] += sum(i in in_g for i in lst)
            den[g] += len(in_g)
    return _rsp_like(num, den)


def user_popularity_groups(
    profiles: Sequence[Collection[Hashable]],
    head: Collection[Hashable],
    niche_share: float = 0.2,
    blockbuster_share: float = 0.2,
) -> list[str]:
    """Label users ``"niche"`` / ``"diverse"`` / ``"blockbuster"`` by their taste for the head.

    Users are ordered by the share of short-head items in their profile (stable: ties keep
    input order); the lowest ``round(niche_share * n)`` are niche, the highest
    ``round(blockbuster_share * n)`` blockbuster, the rest diverse. Users with an empty profile
    are labelled ``"empty"`` and left out of the ordering (reported, not dropped).

    Source: Abdollahpouri, Mansoury, Burke & Mobasher, "The Unfairness of Popularity Bias in
    Recommendation", RMSE@RecSys 2019.

    Examples
    --------
    >>> user_popularity_groups([["h"], ["t"], ["h", "t"], ["h", "t", "t"], ["h", "h", "t"]],
    ...                        head={"h"})
    ['blockbuster', 'niche', 'diverse', 'diverse', 'diverse']
    """
    head = set(head)
    labels = ["empty"] * len(profiles)
    idx = [u for u, prof in enumerate(profiles) if len(prof)]
    ratios = np.asarray([sum(i in head for i in profiles[u]) / len(profiles[u]) for u in idx])
    n = len(idx)
    n_niche = int(round(niche_share * n))
    n_block = int(round(blockbuster_share * n))
    if n_niche + n_block > n:
        raise ValueError("niche_share + blockbuster_share must not exceed 1")
    order = np.argsort(ratios, kind="stable")
    for rank, o in enumerate(order):
        u = idx[int(o)]
        if rank < n_niche:
            labels[u] = "niche"
        elif rank >= n - n_block:
            labels[u] = "blockbuster"
        else:
            labels[u] = "diverse"
    return labels


def popularity_lift(
    lists: Sequence[Sequence[Hashable]],
    profiles: Sequence[Sequence[Hashable]],
    popularity: Mapping[Hashable, float],
    groups: Sequence[Hashable] | None = None,
) -> dict[Any, float]:
    r"""Popularity lift per user group: how much more popular the recommendations are.

    .. math:: \Delta GAP(g) = \frac{GAP_r(g) - GAP_p(g)}{GAP_p(g)}, \quad
              GAP_x(g) = \frac{1}{|g|} \sum_{u \in g} \frac{\sum_{i \in x_u} \phi(i)}{|x_u|}

    with ``x = r`` the recommendation lists and ``x = p`` the user profiles. Positive = the
    recommender amplifies popularity for that group. Users whose list or profile is empty are
    left out of both GAPs; a group left with no users, or with ``GAP_p = 0``, gets NaN.

    Source: Abdollahpouri et al., RMSE@RecSys 2019; METRICS.md section 4.

    Parameters
    ----------
    lists, profiles : sequences aligned by user
    popularity : mapping item -> popularity
    groups : sequence of labels, optional
        One label per user (e.g. from :func:`user_popularity_groups`); ``None`` = one group
        ``"all"``.

    Returns
    -------
    dict label -> lift, in order of first appearance of each label

    Examples
    --------
    >>> popularity_lift([["a"]], [["b"]], {"a": 4, "b": 2})
    {'all': 1.0}
    """
    if len(lists) != len(profiles):
        raise ValueError("lists and profiles must be aligned")
    if groups is None:
        groups = ["all"] * len(lists)
    elif len(groups) != len(lists):
        raise ValueError("groups must be aligned with lists")
    pop = _as_dict(popularity)
    rec: dict[Any, list[float]] = {g: [] for g in dict.fromkeys(groups)}
    prof: dict[Any, list[float]] = {g: [] for g in rec}
    for lst, pr, g in zip(lists, profiles, groups, strict=True):
        if not len(lst) or not len(pr):
            continue
        rec[g].append(float(np.mean([pop.get(i, 0) for i in lst])))
        prof[g].append(float(np.mean([pop.get(i, 0) for i in pr])))
    out: dict[Any, float] = {}
    for g in rec:
        if not rec[g]:
            out[g] = float("nan")
            continue
        gap_r, gap_p = float(np.mean(rec[g])), float(np.mean(prof[g]))
        out[g] = (gap_r - gap_p) / gap_p if gap_p != 0 else float("nan")
    return out


def popularity_by_position(
    lists: Iterable[Sequence[Hashable]], popularity: Mapping[Hashable, float]
) -> np.ndarray:
    """Mean popularity of the item at each output position (0-based).

    Entry ``p`` is the mean popularity over the lists that have a ``p``-th entry; the array is
    as long as the longest list. Source: LLMRank, Hou et al., ECIR 2024 (arXiv 2305.08845),
    popularity-bias analysis; METRICS.md section 4.

    Examples
    --------
    >>> popularity_by_position([["a", "b"], ["b"]], {"a": 4, "b": 2}).tolist()
    [3.0, 2.0]
    """
    pop = _as_dict(popularity)
    lists = [list(lst) for lst in lists]
    width = max((len(lst) for lst in lists), default=0)
    sums = np.zeros(width)
    counts = np.zeros(width)
    for lst in lists:
        vals = np.asarray([pop.get(i, 0) for i in lst], dtype=float)
        sums[: vals.size] += vals
        counts[: vals.size] += 1
    return sums / np.maximum(counts, 1)


# -- declarations (what the popularity probe reports) -------------------------------------------
declare("arp", "average recommendation popularity: mean over lists of the mean popularity "
        "(distinct training users) of the list's items", higher_is_worse=True,
        convention="popularity = distinct training users per item")
declare("aplt", "average percentage of long-tail items: mean share of list items in the long "
        "tail", higher_is_worse=False, range=(0.0, 1.0))
declare("aclt", "average coverage of long-tail items: mean count of long-tail items per list",
        higher_is_worse=False)
declare("gini", "Gini index of item exposure over the whole catalogue (0 = equal exposure)",
        higher_is_worse=True, range=(0.0, 1.0), convention="normalization=n (standard Gini)")
declare("item_coverage", "number of distinct recommended items (aggregate diversity)",
        higher_is_worse=False)
declare("item_coverage_share", "share of the catalogue recommended at least once",
        higher_is_worse=False, range=(0.0, 1.0))
declare("pop_rsp", "PopRSP: std / mean of the head and tail recommendation rates (0 = parity; "
        "floor: each user's head-or-tail picks drawn blind to popularity from the candidates)",
        higher_is_worse=True, null=0.0, range=(0.0, 1.0), noise_floor=True,
        convention="Zhu et al. 2020; candidates exclude the user's training items")
declare("pop_reo", "PopREO: std / mean of the head and tail rates of recommending held-out "
        "items (0 = equal opportunity; floor: each user's head-or-tail hits drawn blind to "
        "popularity from the held-out items)", higher_is_worse=True, null=0.0,
        range=(0.0, 1.0), noise_floor=True,
        convention="Zhu et al. 2020; relevant = the user's held-out items")
declare("popularity_lift", "popularity lift: (GAP of the lists - GAP of the profiles) / GAP of "
        "the profiles (0 = the lists are as popular as the profiles)", higher_is_worse=True,
        null=0.0)
declare("position_popularity", "mean popularity of the item at this output position (LLMRank)",
        higher_is_worse=None)
declare("history_echo", "share of the list's top k that repeats items of the history shown in "
        "the prompt", higher_is_worse=True, range=(0.0, 1.0), role="answer_quality")
