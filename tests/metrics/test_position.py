"""Position-bias helpers (LLMRank scoring, first-position chi-square, Kendall tau on union)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recaudit.metrics.position import (
    candidate_scores_from_ranking,
    first_position_chi2,
    kendall_tau_union,
)


def test_candidate_scores_full_ranking():
    cands = ["a", "b", "c", "d"]
    # j-th returned gets N - j: d 4, b 3, a 2, c 1.
    assert candidate_scores_from_ranking(["d", "b", "a", "c"], cands).tolist() == [2, 3, 1, 4]


def test_candidate_scores_missing_hallucinated_and_repeated():
    cands = ["a", "b", "c", "d", "e"]
    # "x" is not a candidate and the second "c" is a repeat: neither uses a rank.
    # c -> 5, a -> 4; b, d, e missing -> the minimum 1.
    got = candidate_scores_from_ranking(["c", "x", "a", "c"], cands)
    assert got.tolist() == [4, 1, 5, 1, 1]
    # One missing candidate gets exactly what it would as the last returned one.
    one_missing = candidate_scores_from_ranking(["a", "b", "c", "d"], cands)
    assert one_missing.tolist() == [5, 4, 3, 2, 1]
    assert candidate_scores_from_ranking([], cands).tolist() == [1] * 5
    with pytest.raises(ValueError, match="distinct"):
        candidate_scores_from_ranking(["a"], ["a", "a"])


def test_first_position_chi2_matches_formula():
    counts = [30, 10, 10, 10, 40]
    # E = 100 / 5 = 20; chi2 = (100 + 100 + 100 + 100 + 400) / 20 = 40, dof 4.
    res = first_position_chi2(counts)
    assert res.statistic == pytest.approx(40.0)
    assert res.dof == 4 and res.n == 100
    # Survival function of chi-square with 4 dof at 40: exp(-20) * (1 + 20).
    assert res.pvalue == pytest.approx(math.exp(-20) * 21, rel=1e-9)
    assert first_position_chi2([5, 5, 5]).pvalue == pytest.approx(1.0)


def test_first_position_chi2_degenerate():
    res = first_position_chi2([0, 0, 0])
    assert math.isnan(res.statistic) and math.isnan(res.pvalue) and res.n == 0
    assert math.isnan(first_position_chi2([7]).pvalue)
    with pytest.raises(ValueError):
        first_position_chi2([1, -1])


def test_kendall_tau_union_hand_vectors():
    assert kendall_tau_union(list("abc"), list("abc")) == pytest.approx(1.0)
    assert kendall_tau_union(list("abc"), list("cba")) == pytest.approx(-1.0)
    # a = [x, y, z], b = [y, x, w]; union x, y, z, w; missing tied last (rank 3).
    # ranks a = (0, 1, 2, 3), b = (1, 0, 3, 2): discordant (x,y), (z,w); 4 concordant -> 1/3.
    assert kendall_tau_union(["x", "y", "z"], ["y", "x", "w"]) == pytest.approx(1 / 3)
    # Ties from missing items: a = [x, y], b = [z] -> ranks a (0, 1, 2), b (1, 1, 0):
    # C = 0, D = 2, tau-b = -2 / sqrt(3 * 2).
    assert kendall_tau_union(["x", "y"], ["z"]) == pytest.approx(-2 / np.sqrt(6))


def test_kendall_tau_union_degenerate():
    assert math.isnan(kendall_tau_union(["x"], ["x"]))
    assert math.isnan(kendall_tau_union([], ["x", "y"]))  # a ties everything
