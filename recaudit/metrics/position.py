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

__all__ = [
    "ChiSquareResult",
    "candidate_scores_from_ranking",
    "first_position_chi2",
    "kendall_tau_union",
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
