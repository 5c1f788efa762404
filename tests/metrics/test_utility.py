"""Top-k utility metrics (binary relevance) against hand-computed values."""

from __future__ import annotations

import math

import pytest

from recaudit.metrics.utility import hit_rate_at_k, ndcg_at_k, recall_at_k

L2 = math.log2


def test_hit_rate():
    assert hit_rate_at_k(["a", "b", "c"], {"c"}, k=2) == 0.0
    assert hit_rate_at_k(["a", "b", "c"], {"c"}, k=3) == 1.0
    assert hit_rate_at_k(["a", "b", "c"], {"c"}, k=10) == 1.0  # k beyond the list
    assert hit_rate_at_k([], {"c"}, k=3) == 0.0


def test_ndcg_single_relevant_item_by_position():
    # One relevant item at 1-based rank r: NDCG = 1 / log2(r + 1) (IDCG = 1).
    lst = ["a", "b", "c", "d"]
    for r, item in enumerate(lst, start=1):
        assert ndcg_at_k(lst, {item}, k=4) == pytest.approx(1 / L2(r + 1))
    assert ndcg_at_k(lst, {"d"}, k=3) == 0.0


def test_ndcg_idcg_uses_min_k_and_relevant():
    # relevant {a, b, c, d}, list [x, a, b], k = 3:
    # DCG = 1/log2(3) + 1/log2(4) = 0.630930 + 0.5; IDCG over min(3, 4) = 3 ranks
    # = 1 + 0.630930 + 0.5 -> 1.130930 / 2.130930 = 0.530721.
    got = ndcg_at_k(["x", "a", "b"], {"a", "b", "c", "d"}, k=3)
    assert got == pytest.approx((1 / L2(3) + 1 / L2(4)) / (1 + 1 / L2(3) + 1 / L2(4)))
    assert got == pytest.approx(0.530721, abs=1e-6)
    # |relevant| < k: IDCG over |relevant| ranks, so a perfect list scores 1.
    assert ndcg_at_k(["a", "b", "x", "y"], {"a", "b"}, k=4) == pytest.approx(1.0)


def test_duplicates_earn_credit_once():
    # [a, a]: DCG = 1 (second a earns nothing), IDCG = 1 -> 1, never above 1.
    assert ndcg_at_k(["a", "a"], {"a"}, k=2) == pytest.approx(1.0)
    # [x, a, a] with relevant {a, b}: DCG 1/log2(3), IDCG 1 + 1/log2(3).
    assert ndcg_at_k(["x", "a", "a"], {"a", "b"}, k=3) == pytest.approx(
        (1 / L2(3)) / (1 + 1 / L2(3)))
    assert recall_at_k(["a", "b", "a"], {"a", "c"}, k=3) == 0.5


def test_recall():
    assert recall_at_k(["a", "b", "c"], {"a", "c", "z"}, k=3) == pytest.approx(2 / 3)
    assert recall_at_k(["a", "b", "c"], {"a", "c", "z"}, k=1) == pytest.approx(1 / 3)


def test_no_relevant_items_is_nan_and_k_validated():
    for f in (hit_rate_at_k, ndcg_at_k, recall_at_k):
        assert math.isnan(f(["a"], set(), k=1))
        with pytest.raises(ValueError):
            f(["a"], {"a"}, k=0)
        with pytest.raises(ValueError):
            f(["a"], {"a"}, k=1.5)
