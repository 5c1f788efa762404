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


# -- helpers of the position probe -----------------------------------------------------------------
def test_ranking_from_scores_breaks_ties_by_item_not_input_order():
    from recaudit.metrics.position import ranking_from_scores

    assert ranking_from_scores([0.1, 0.5, 0.1], ["b", "c", "a"]) == ["c", "a", "b"]
    # the same scores in another input order give the same ranking
    assert ranking_from_scores([0.1, 0.1, 0.5], ["a", "b", "c"]) == ["c", "a", "b"]
    assert ranking_from_scores([float("nan"), 0.0], ["a", "b"]) == ["b", "a"]
    with pytest.raises(ValueError):
        ranking_from_scores([1.0], ["a", "b"])


def test_cramers_v_uniform():
    from recaudit.metrics.position import cramers_v_uniform

    assert cramers_v_uniform([7, 0, 0]) == pytest.approx(1.0)
    assert cramers_v_uniform([3, 3, 3]) == 0.0
    # chi2 = ((6-4)^2 + (2-4)^2 + 0) / 4 = 2; V = sqrt(2 / (12 * 2)) by hand
    assert cramers_v_uniform([6, 2, 4]) == pytest.approx(math.sqrt(2 / 24))
    assert math.isnan(cramers_v_uniform([0, 0]))


def test_tied_ndcg_hr_matches_utility_without_ties_and_averages_ties():
    from recaudit.metrics.position import candidate_scores_from_ranking, tied_ndcg_hr
    from recaudit.metrics.utility import hit_rate_at_k, ndcg_at_k

    cands = list("abcdefghij")
    rng = np.random.default_rng(0)
    for _ in range(20):
        ranked = list(rng.permutation(cands))
        scores = candidate_scores_from_ranking(ranked, cands)
        for k in (1, 3, 10):
            t = int(rng.integers(10))
            ndcg, hr = tied_ndcg_hr(scores, t, k)
            assert ndcg == pytest.approx(ndcg_at_k(ranked, [cands[t]], k))
            assert hr == hit_rate_at_k(ranked, [cands[t]], k)
    # a, b parsed; c, d, e tie on ranks 2..4: with k = 3 only rank 2 counts
    scores = candidate_scores_from_ranking(["a", "b"], list("abcde"))
    assert tied_ndcg_hr(scores, 3, 3) == pytest.approx((1 / math.log2(4) / 3, 1 / 3))


def test_fast_tau_equals_kendall_tau_union():
    from recaudit.metrics.position import _tau_union_fast

    rng = np.random.default_rng(1)
    items = list(range(12))
    for _ in range(50):
        a = list(rng.permutation(items)[: rng.integers(0, 12)])
        b = list(rng.permutation(items)[: rng.integers(0, 12)])
        want, got = kendall_tau_union(a, b), _tau_union_fast(a, b)
        assert (math.isnan(want) and math.isnan(got)) or got == pytest.approx(want, abs=1e-12)


def test_pairwise_consistency():
    from recaudit.metrics.position import pairwise_consistency
    from recaudit.metrics.similarity import rbo

    a, b, c = list("abcd"), list("abdc"), list("dcba")
    r, t = pairwise_consistency([a, b, c], p=0.8)
    assert r == pytest.approx(np.mean([rbo(a, b, p=0.8), rbo(a, c, p=0.8), rbo(b, c, p=0.8)]))
    assert t == pytest.approx(np.mean([kendall_tau_union(x, y)
                                       for x, y in ((a, b), (a, c), (b, c))]))
    assert pairwise_consistency([a, a]) == pytest.approx((1.0, 1.0))
    assert all(math.isnan(x) for x in pairwise_consistency([a]))


def test_cramers_v_of_shares_equals_the_count_version():
    from recaudit.metrics.position import cramers_v_of_shares, cramers_v_uniform

    rng = np.random.default_rng(5)
    for _ in range(20):
        counts = rng.integers(0, 9, size=int(rng.integers(2, 8))).astype(float)
        if counts.sum() == 0:
            continue
        assert float(cramers_v_of_shares(counts)) == pytest.approx(cramers_v_uniform(counts))
    assert np.isnan(cramers_v_of_shares(np.zeros(3)))
    batch = cramers_v_of_shares(np.array([[1.0, 0.0], [0.5, 0.5]]))
    np.testing.assert_allclose(batch, [1.0, 0.0])
