"""Position bias in LLM rankers (METRICS.md section 5, after LLMRank, arXiv 2305.08845).

A ranker receives ``N`` candidates (the held-out item at a chosen input position) and returns an
ordering. :func:`candidate_scores_from_ranking` turns the parsed output into per-candidate
scores (also the Borda scores summed by the bootstrapping mitigation);
:func:`first_position_chi2` tests whether every input position is ranked first equally often;
:func:`kendall_tau_union` measures ranking consistency across input permutations.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import NamedTuple

import numpy as np

from .specs import declare

__all__ = [
    "ChiSquareResult",
    "candidate_scores_from_ranking",
    "cramers_v_uniform",
    "first_position_chi2",
    "kendall_tau_union",
    "pairwise_consistency",
    "ranking_from_scores",
    "tied_ndcg_hr",
]


def candidate_scores_from_ranking(
    ranked: Sequence[Hashable], candidates: Sequence[Hashable]
) -> np.ndarray:
    r"""Score each candidate from a parsed ranking: the ``j``-th returned candidate gets ``N - j``.

    ``N = len(candidates)``, ``j`` is 0-based and counts returned *candidates* only: entries
    that are not candidates (hallucinations) and repeats of an already returned candidate are
    skipped without using up a rank. Candidates missing from the output all get the minimum of
    the scheme, ``1 = N - (N - 1)``, i.e. they tie last (a single missing candidate gets exactly
    what it would have got as the last returned).

    Source: LLMRank (Hou et al., ECIR 2024, arXiv 2305.08845) output parsing; METRICS.md
    section 5.

    Returns
    -------
    ndarray of float, aligned with ``candidates``

    Examples
    --------
    >>> candidate_scores_from_ranking(["c", "x", "a", "c"], ["a", "b", "c", "d"]).tolist()
    [3.0, 1.0, 4.0, 1.0]
    """
    candidates = list(candidates)
    n = len(candidates)
    index = {c: i for i, c in enumerate(candidates)}
    if len(index) != n:
        raise ValueError("candidates must be distinct")
    scores = np.ones(n, dtype=float)  # the minimum, N - (N - 1)
    j = 0
    done: set = set()
    for item in ranked:
        if item in index and item not in done:
            done.add(item)
            scores[index[item]] = n - j
            j += 1
    return scores


class ChiSquareResult(NamedTuple):
    """Chi-square goodness-of-fit test against the uniform distribution."""

    statistic: float
    pvalue: float
    dof: int
    n: int


def first_position_chi2(counts: Sequence[float]) -> ChiSquareResult:
    r"""Test whether each input position is ranked first equally often (uniform if unbiased).

    ``counts[p]`` = number of trials in which the candidate at input position ``p`` came out
    first. Pearson's chi-square against equal expected counts:

    .. math:: \chi^2 = \sum_p \frac{(O_p - E)^2}{E}, \quad E = \frac{\sum_p O_p}{P},
              \quad dof = P - 1

    computed with :func:`scipy.stats.chisquare`. NaN statistic and p-value when there are no
    trials or fewer than two positions. Expected counts below 5 make the chi-square
    approximation poor; check ``n``.

    Source: LLMRank (arXiv 2305.08845), position bias analysis; METRICS.md section 5.

    Examples
    --------
    >>> first_position_chi2([10, 10, 10, 10]).pvalue
    1.0
    """
    from scipy import stats

    obs = np.asarray(counts, dtype=float).reshape(-1)
    if (obs < 0).any():
        raise ValueError("counts must be non-negative")
    n = int(round(obs.sum()))
    if obs.size < 2 or n == 0:
        return ChiSquareResult(float("nan"), float("nan"), max(obs.size - 1, 0), n)
    res = stats.chisquare(obs)
    return ChiSquareResult(float(res.statistic), float(res.pvalue), obs.size - 1, n)


def kendall_tau_union(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    r"""Kendall's tau-b between two rankings over the union of their items.

    Each item of the union gets its (first-occurrence) position in each ranking; items missing
    from a ranking are tied last in it (position = number of distinct items of that ranking).
    Tau-b (:func:`scipy.stats.kendalltau`) accounts for those ties. NaN when the union has fewer
    than two items or one ranking puts every item in a single tie.

    Source: LLMRank (arXiv 2305.08845) ranking consistency; METRICS.md section 5.

    Examples
    --------
    >>> kendall_tau_union(["a", "b", "c"], ["a", "b", "c"])
    1.0
    >>> kendall_tau_union(["a", "b", "c"], ["c", "b", "a"])
    -1.0
    """
    from scipy import stats

    ra = {x: i for i, x in enumerate(dict.fromkeys(a))}
    rb = {x: i for i, x in enumerate(dict.fromkeys(b))}
    union = list(dict.fromkeys([*ra, *rb]))
    if len(union) < 2:
        return float("nan")
    xa = np.asarray([ra.get(x, len(ra)) for x in union], dtype=float)
    xb = np.asarray([rb.get(x, len(rb)) for x in union], dtype=float)
    if np.all(xa == xa[0]) or np.all(xb == xb[0]):
        return float("nan")
    return float(stats.kendalltau(xa, xb).statistic)


def ranking_from_scores(scores: Sequence[float], candidates: Sequence[Hashable],
                        tie_key: Sequence[Hashable] | None = None) -> list[Hashable]:
    """Candidates ordered by score, highest first (a scoring ranker's ranking).

    Ties are broken by ``tie_key`` (default: the candidates themselves), never by input order,
    so tied scores cannot create a position effect of their own. NaN scores rank last.

    Examples
    --------
    >>> ranking_from_scores([0.1, 0.5, 0.1], ["b", "c", "a"])
    ['c', 'a', 'b']
    """
    cands = list(candidates)
    sc = np.asarray(scores, dtype=float).reshape(-1)
    if sc.size != len(cands):
        raise ValueError(f"{sc.size} scores for {len(cands)} candidates")
    keys = list(tie_key) if tie_key is not None else cands
    sc = np.where(np.isnan(sc), -np.inf, sc)
    order = sorted(range(len(cands)), key=lambda i: (-sc[i], str(keys[i])))
    return [cands[i] for i in order]


def cramers_v_uniform(counts: Sequence[float]) -> float:
    r"""Effect size of a goodness-of-fit test against uniform: Cramér's V.

    .. math:: V = \sqrt{\frac{\chi^2}{n (P - 1)}}

    with Pearson's :math:`\chi^2` of :func:`first_position_chi2`, ``n`` trials and ``P``
    positions. 0 = every position is first equally often; 1 = one position is always first.
    NaN without trials or with fewer than two positions.

    Examples
    --------
    >>> cramers_v_uniform([5, 0, 0, 0])
    1.0
    >>> cramers_v_uniform([2, 2, 2, 2])
    0.0
    """
    res = first_position_chi2(counts)
    if not np.isfinite(res.statistic) or res.dof < 1:
        return float("nan")
    return float(min(1.0, np.sqrt(res.statistic / (res.n * res.dof))))


def cramers_v_of_shares(shares: np.ndarray) -> np.ndarray:
    r"""Compute Cramér's V against uniform from shares over ``P`` positions (the last axis).

    The shares are rescaled to sum to 1: :math:`V = \sqrt{P \sum_i (s_i - 1/P)^2 / (P - 1)}`,
    equal to :func:`cramers_v_uniform` of counts proportional to the shares. NaN where the
    shares sum to 0 or are not finite, or with fewer than two positions.

    Examples
    --------
    >>> float(cramers_v_of_shares(np.array([1.0, 0, 0, 0])))
    1.0
    >>> float(cramers_v_of_shares(np.array([0.25, 0.25, 0.25, 0.25])))
    0.0
    """
    s = np.asarray(shares, dtype=float)
    n_pos = s.shape[-1]
    total = s.sum(axis=-1, keepdims=True)
    if n_pos < 2:
        return np.full(s.shape[:-1], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = s / total
        v = np.sqrt(np.minimum(1.0, n_pos * ((s - 1 / n_pos) ** 2).sum(axis=-1) / (n_pos - 1)))
    return np.where(np.isfinite(total[..., 0]) & (total[..., 0] > 0), v, np.nan)


def _tau_union_fast(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Compute :func:`kendall_tau_union` without scipy's per-call overhead.

    O(n^2) numpy; equal to it up to round-off (tested).
    """
    ra = {x: i for i, x in enumerate(dict.fromkeys(a))}
    rb = {x: i for i, x in enumerate(dict.fromkeys(b))}
    union = list(dict.fromkeys([*ra, *rb]))
    if len(union) < 2:
        return float("nan")
    xa = np.asarray([ra.get(x, len(ra)) for x in union], dtype=float)
    xb = np.asarray([rb.get(x, len(rb)) for x in union], dtype=float)
    iu = np.triu_indices(len(union), 1)
    da = np.sign(xa[:, None] - xa[None, :])[iu]
    db = np.sign(xb[:, None] - xb[None, :])[iu]
    na, nb = float(np.abs(da).sum()), float(np.abs(db).sum())  # pairs not tied in a / in b
    if na == 0 or nb == 0:
        return float("nan")
    return float(min(1.0, max(-1.0, (da * db).sum() / np.sqrt(na * nb))))


def pairwise_consistency(rankings: Sequence[Sequence[Hashable]], p: float = 0.9
                         ) -> tuple[float, float]:
    """Mean RBO and mean Kendall tau (union, missing items tied last) over all pairs of rankings.

    ``rankings`` are the rankings one ranker gave to independently shuffled copies of the same
    candidates; a ranker that ignores input order gives 1.0 and 1.0. RBO is
    :func:`recaudit.metrics.similarity.rbo` with persistence ``p``; tau is
    :func:`kendall_tau_union`. NaN with fewer than two rankings (tau NaN pairs are left out).

    Examples
    --------
    >>> pairwise_consistency([["a", "b", "c"], ["a", "b", "c"]])
    (1.0, 1.0)
    """
    from itertools import combinations

    from .similarity import rbo

    pairs = list(combinations(range(len(rankings)), 2))
    if not pairs:
        return float("nan"), float("nan")
    r = [float(rbo(rankings[i], rankings[j], p=p)) for i, j in pairs]
    t = [_tau_union_fast(rankings[i], rankings[j]) for i, j in pairs]
    t = [x for x in t if np.isfinite(x)]
    return float(np.mean(r)), (float(np.mean(t)) if t else float("nan"))


def tied_ndcg_hr(scores: Sequence[float], target: int, k: int) -> tuple[float, float]:
    r"""NDCG@k and HR@k of the one relevant candidate ``target``, ties resolved at random.

    With ``g`` candidates scoring strictly higher and ``t`` (itself included) scoring the same,
    the relevant item's 0-based rank is uniform on ``g .. g+t-1``; both metrics are their
    expectations over that rank (ideal DCG = 1 with one relevant item):

    .. math:: \mathrm{NDCG@k} = \frac{1}{t} \sum_{r=g}^{g+t-1} \frac{[r < k]}{\log_2(r+2)},
              \quad \mathrm{HR@k} = \frac{1}{t} \sum_{r=g}^{g+t-1} [r < k]

    Without ties this is exactly :func:`recaudit.metrics.utility.ndcg_at_k` /
    :func:`~recaudit.metrics.utility.hit_rate_at_k` of the ranked list. Candidates an LLM
    ranker never returned share the minimum score (:func:`candidate_scores_from_ranking`), so an
    unparsed relevant item gets the average over the tail, never a rank set by its input
    position (LLMRank's ``topk`` breaks such ties by index).

    Examples
    --------
    >>> tied_ndcg_hr([3.0, 2.0, 1.0], 1, 10)
    (0.6309297535714575, 1.0)
    >>> tuple(round(x, 6) for x in tied_ndcg_hr([3.0, 1.0, 1.0], 2, 2))
    (0.315465, 0.5)
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    sc = np.asarray(scores, dtype=float).reshape(-1)
    if not 0 <= target < sc.size:
        raise ValueError(f"target {target} out of range for {sc.size} candidates")
    x = sc[target]
    g = int((sc > x).sum())
    t = int((sc == x).sum())
    ranks = np.arange(g, g + t)
    hit = ranks < k
    return float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean()), float(hit.mean())


declare("first_place_share", "share of rankings whose first item was shown at this input "
        "position (1/N each if unbiased)", higher_is_worse=None, range=(0.0, 1.0),
        convention="independently shuffled copies of each user's candidates")
declare("first_place_v", "Cramér's V of the first-place counts per input position against "
        "uniform (0 = no position preferred; floor: each ranking's first place at a uniformly "
        "random input position)", higher_is_worse=True, null=0.0, range=(0.0, 1.0),
        convention="Pearson chi-square goodness of fit, dof = N - 1", noise_floor=True)
declare("rank_consistency_rbo", "RBO between rankings of independently shuffled copies of the "
        "same candidates (1 = order-insensitive)", higher_is_worse=False, range=(0.0, 1.0))
declare("rank_consistency_tau", "Kendall tau-b on the union between rankings of independently "
        "shuffled copies of the same candidates (1 = order-insensitive)",
        higher_is_worse=False, range=(-1.0, 1.0), convention="missing items tied last")
declare("unparsed_share", "share of candidates not found in the ranker's output (they tie "
        "last)", higher_is_worse=True, range=(0.0, 1.0), role="answer_quality")
