"""Exposure, skew@k and NDKL (Geyik et al. 2019) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recaudit.metrics.exposure import exposure_weights, group_exposure_share, ndkl, skew_at_k

L2 = math.log2


def test_exposure_weights():
    np.testing.assert_allclose(exposure_weights(4), [1, 1 / L2(3), 0.5, 1 / L2(5)])
    assert exposure_weights(0).shape == (0,)
    with pytest.raises(ValueError):
        exposure_weights(-1)


def test_group_exposure_share_hand_vector():
    groups = {"a": "x", "b": "y", "c": "y", "d": "z"}
    lists = [["a", "b"], ["c", "a", "b"]]
    # x: rank 1 in list 1 (1) + rank 2 in list 2 (1/log2 3);
    # y: rank 2 in list 1 (1/log2 3) + ranks 1 and 3 in list 2 (1 + 0.5); z: never shown.
    x = 1 + 1 / L2(3)
    y = 1 / L2(3) + 1 + 0.5
    share = group_exposure_share(lists, groups)
    assert share["x"] == pytest.approx(x / (x + y))
    assert share["y"] == pytest.approx(y / (x + y))
    assert share["z"] == 0.0
    assert sum(share.values()) == pytest.approx(1.0)


def test_group_exposure_share_missing_items_and_empty():
    with pytest.raises(KeyError, match="no group"):
        group_exposure_share([["q"]], {"a": "x"})
    share = group_exposure_share([["q", "a"]], {"a": "x"}, default="other")
    assert share["other"] == pytest.approx(1 / (1 + 1 / L2(3)))
    assert all(math.isnan(v) for v in group_exposure_share([[]], {"a": "x"}).values())


def test_skew_at_k():
    g = {"a": 1, "b": 0, "c": 0, "d": 1}
    # top-4 share of group 1 = 2/4; desired 0.5 -> ln(1) = 0.
    assert skew_at_k(["a", "b", "c", "d"], g, 1, 0.5, k=4) == pytest.approx(0.0)
    # top-2 share = 1/2, desired 0.25 -> ln 2.
    assert skew_at_k(["a", "b", "c", "d"], g, 1, 0.25, k=2) == pytest.approx(math.log(2))
    # top-3 share = 1/3, desired 0.5 -> ln(2/3).
    assert skew_at_k(["a", "b", "c", "d"], g, 1, 0.5, k=3) == pytest.approx(math.log(2 / 3))
    assert skew_at_k(["b", "c"], g, 1, 0.5, k=2) == -math.inf
    # k beyond the list: share over the entries present, 2/2.
    assert skew_at_k(["a", "d"], g, 1, 0.5, k=10) == pytest.approx(math.log(2))
    assert math.isnan(skew_at_k([], g, 1, 0.5, k=3))
    with pytest.raises(ValueError):
        skew_at_k(["a"], g, 1, 0.0, k=1)


def test_ndkl_hand_vector():
    g = {"a": 0, "b": 1, "c": 0, "d": 1}
    desired = {0: 0.5, 1: 0.5}
    # i=1: D = (1, 0): KL = ln(1/0.5) = ln 2, weight 1.
    # i=2: D = (.5, .5): KL = 0, weight 1/log2 3.  NDKL = ln 2 / (1 + 1/log2 3) = 0.425001.
    expected = math.log(2) / (1 + 1 / L2(3))
    assert ndkl(["a", "b"], g, desired) == pytest.approx(expected)
    assert ndkl(["a", "b"], g, desired) == pytest.approx(0.425001, abs=1e-6)
    # i=3: D = (2/3, 1/3): KL = 2/3 ln(4/3) + 1/3 ln(2/3), weight 0.5.
    kl3 = 2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3)
    got = ndkl(["a", "b", "c"], g, desired)
    assert got == pytest.approx((math.log(2) + 0.5 * kl3) / (1 + 1 / L2(3) + 0.5))
    # k truncates.
    assert ndkl(["a", "b", "c"], g, desired, k=2) == pytest.approx(expected)


def test_ndkl_extremes_and_validation():
    g = {"a": 0, "b": 1}
    assert ndkl(["a", "a"], {"a": 0}, {0: 1.0}) == 0.0
    assert ndkl(["a", "b"], g, {0: 1.0}) == math.inf  # group 1 has desired share 0
    assert math.isnan(ndkl([], g, {0: 0.5, 1: 0.5}))
    with pytest.raises(ValueError, match="sum to 1"):
        ndkl(["a"], g, {0: 0.5, 1: 0.4})


def test_topk_group_share_item_shares_and_resolve_target():
    from recaudit.metrics.exposure import item_shares, resolve_target, topk_group_share

    g = {"a": 0, "b": 1, "c": 1}
    np.testing.assert_allclose(topk_group_share(["a", "b", "c"], g, [0, 1], k=3), [1 / 3, 2 / 3])
    np.testing.assert_allclose(topk_group_share(["a", "b"], g, [0, 1, 2], k=1), [1, 0, 0])
    # consistent with skew@k: ln(share / desired)
    share = topk_group_share(["a", "b", "c"], g, [1], k=3)[0]
    assert skew_at_k(["a", "b", "c"], g, 1, 0.5, k=3) == pytest.approx(math.log(share / 0.5))
    assert np.isnan(topk_group_share([], g, [0], k=2)).all()
    assert item_shares(g) == {0: pytest.approx(1 / 3), 1: pytest.approx(2 / 3)}
    assert item_shares({}) == {}
    t = resolve_target(["h", "t"], {"t": 0.5}, {"h": 0.2, "t": 0.8})
    assert t == {"h": pytest.approx(0.5), "t": 0.5}
    t = resolve_target(["x", "y", "z"], {"x": 0.4}, {"x": 0.0, "y": 0.0, "z": 0.0})
    assert t == {"x": 0.4, "y": pytest.approx(0.3), "z": pytest.approx(0.3)}
    assert resolve_target(["x", "y"], {}, {"x": 0.25, "y": 0.75}) == {"x": 0.25, "y": 0.75}
    with pytest.raises(ValueError, match="target group 'q' does not exist"):
        resolve_target(["x"], {"q": 0.1}, {"x": 1.0})
    with pytest.raises(ValueError, match="sum to at most 1"):
        resolve_target(["x", "y"], {"x": 0.6, "y": 0.6}, {})
