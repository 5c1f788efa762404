"""Tests for popularity xQuAD (recaudit.mitigation.xquad, METRICS.md section 7)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recaudit.mitigation.xquad import xquad_rerank

SETTINGS = settings(max_examples=60, deadline=None)
VARIANTS = ("binary", "smooth")
LAM_GRID = [i / 10 for i in range(11)]
LAMS_BELOW_ONE = st.one_of(st.floats(0.0, 0.99), st.just(1.0))


def _random_batch(seed: int, n_lists: int, n: int, p_valid: float = 1.0):
    """Integer-valued relevance (distinct values stay distinct after division by the max)."""
    rng = np.random.default_rng(seed)
    relevance = rng.integers(0, 1000, size=(n_lists, n)).astype(float)
    tail = rng.random((n_lists, n)) < 0.5
    valid = rng.random((n_lists, n)) < p_valid
    pref = rng.integers(0, 21, size=n_lists) / 20
    return relevance, tail, valid, pref


def _head_then_tail(n_head: int, n_tail: int) -> tuple[np.ndarray, np.ndarray]:
    """One list: relevance strictly decreasing with position, head items first, tail last."""
    n = n_head + n_tail
    relevance = np.arange(n, 0, -1, dtype=float)[None, :]
    tail = np.zeros((1, n), dtype=bool)
    tail[0, n_head:] = True
    return relevance, tail


# --------------------------------------------------------------------------- hand-solved cases
def test_binary_hand_case() -> None:
    # relevance 4,3,2,1 -> P(v|u) = 1, .75, .5, .25; tail = [F, F, T, T]; P(tail|u) = .5; lam = .5
    # step 1 (nothing covered, both bonuses .5): 0: .5*1 + .5*.5 = .75, 1: .375 + .25 = .625,
    #        2: .25 + .25 = .5, 3: .125 + .25 = .375                         -> pick 0 (head)
    # step 2 (head covered, head bonus 0): 1: .375, 2: .25 + .25 = .5, 3: .125 + .25 = .375
    #                                                                        -> pick 2 (tail)
    # step 3 (both covered): 1: .375, 3: .125                                -> pick 1
    rel = np.array([[4.0, 3.0, 2.0, 1.0]])
    tail = np.array([[False, False, True, True]])
    got = xquad_rerank(rel, tail, 3, 0.5, variant="binary", tail_preference=0.5)
    np.testing.assert_array_equal(got, [[0, 2, 1]])
    np.testing.assert_array_equal(xquad_rerank(rel, tail, 3, 0.0), [[0, 1, 2]])


def test_binary_and_smooth_differ_hand_case() -> None:
    # P(v|u) = 1, .75, .5, .25; tail = [F, F, T, T]; P(tail|u) = .8, P(head|u) = .2; lam = .8
    # step 1 (empty S, U = 1 for both): 0: .2*1 + .8*.2 = .36, 1: .15 + .16 = .31,
    #        2: .1 + .8*.8 = .74, 3: .05 + .64 = .69                     -> pick 2 (both variants)
    # step 2 (S = {2}, all tail): binary U(tail) = 0, U(head) = 1; smooth U(tail) = 1 - 1 = 0,
    #        U(head) = 1 - 0 = 1 -> same scores: 0: .36, 1: .31, 3: .05     -> pick 0
    # step 3 (S = {2, 0}):
    #   binary: both covered, bonus 0: 1: .15, 3: .05                       -> pick 1
    #   smooth: shares .5 each, U = .5: 1: .15 + .8*.2*.5 = .23, 3: .05 + .8*.8*.5 = .37
    #                                                                       -> pick 3
    rel = np.array([[4.0, 3.0, 2.0, 1.0]])
    tail = np.array([[False, False, True, True]])
    binary = xquad_rerank(rel, tail, 3, 0.8, variant="binary", tail_preference=0.8)
    smooth = xquad_rerank(rel, tail, 3, 0.8, variant="smooth", tail_preference=0.8)
    np.testing.assert_array_equal(binary, [[2, 0, 1]])
    np.testing.assert_array_equal(smooth, [[2, 0, 3]])


def test_per_list_preference_padding_and_normalisation() -> None:
    # Two lists, the second padded (valid = [T, T, F]) and scaled by 100 (normalisation by the
    # max makes the scale irrelevant). P(v|u) = 1, .5 for the valid ones in both lists.
    # list 0, P(tail|u) = 0 (head lover), lam = 1: bonus head = 1, tail = 0 -> head 0 first;
    #   then head covered, everything 0 -> earliest remaining: 1.          -> [0, 1, 2]
    # list 1, P(tail|u) = 1, lam = 1: tail item 1 gets 1, head item 0 gets 0 -> 1 first, then 0,
    #   then no valid candidate left -> -1.                                 -> [1, 0, -1]
    rel = np.array([[2.0, 1.0, 0.5], [200.0, 100.0, np.nan]])
    tail = np.array([[False, True, False], [False, True, False]])
    valid = np.array([[True, True, True], [True, True, False]])
    got = xquad_rerank(rel, tail, 3, 1.0, tail_preference=np.array([0.0, 1.0]), valid=valid)
    np.testing.assert_array_equal(got, [[0, 1, 2], [1, 0, -1]])


def test_tail_count_can_drop_as_lam_grows() -> None:
    # Not a monotone property in general: xQuAD follows the user's preference, it does not
    # maximise the tail. Tail item at the top, P(tail|u) = .1, k = 1:
    # lam = 0 -> the tail item (relevance 1 vs .5); lam = 1 -> bonus .1 (tail) vs .9 (head).
    rel = np.array([[2.0, 1.0]])
    tail = np.array([[True, False]])
    for variant in VARIANTS:
        assert xquad_rerank(rel, tail, 1, 0.0, variant=variant, tail_preference=0.1)[0, 0] == 0
        assert xquad_rerank(rel, tail, 1, 1.0, variant=variant, tail_preference=0.1)[0, 0] == 1


def test_k_zero_and_empty_lists() -> None:
    rel = np.ones((2, 3))
    tail = np.zeros((2, 3), dtype=bool)
    assert xquad_rerank(rel, tail, 0, 0.5).shape == (2, 0)
    got = xquad_rerank(rel, tail, 2, 0.5, valid=np.zeros((2, 3), dtype=bool))
    np.testing.assert_array_equal(got, -np.ones((2, 2)))


# --------------------------------------------------------------------------- properties
@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    n_lists=st.integers(1, 4),
    n=st.integers(1, 12),
    variant=st.sampled_from(VARIANTS),
    data=st.data(),
)
def test_lam_zero_is_relevance_order(seed, n_lists, n, variant, data) -> None:
    k = data.draw(st.integers(0, n))
    relevance, tail, _, pref = _random_batch(seed, n_lists, n)
    got = xquad_rerank(relevance, tail, k, 0.0, variant=variant, tail_preference=pref)
    # stable sort by decreasing relevance: ties keep the earlier position
    np.testing.assert_array_equal(got, np.argsort(-relevance, axis=1, kind="stable")[:, :k])
    # relevance non-increasing with position (ties included) -> exactly the input order
    ranked = -np.sort(-relevance, axis=1)
    got = xquad_rerank(ranked, tail, k, 0.0, variant=variant, tail_preference=pref)
    np.testing.assert_array_equal(got, np.tile(np.arange(k), (n_lists, 1)))


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    n_lists=st.integers(1, 4),
    n=st.integers(1, 12),
    lam=st.floats(0.0, 1.0),
    variant=st.sampled_from(VARIANTS),
    data=st.data(),
)
def test_output_is_a_valid_permutation(seed, n_lists, n, lam, variant, data) -> None:
    k = data.draw(st.integers(0, n))
    relevance, tail, valid, pref = _random_batch(seed, n_lists, n, p_valid=0.7)
    got = xquad_rerank(
        relevance, tail, k, lam, variant=variant, tail_preference=pref, valid=valid
    )
    assert got.shape == (n_lists, k)
    for row, mask in zip(got, valid):
        m = min(k, int(mask.sum()))
        chosen = row[:m]
        assert (row[m:] == -1).all()
        assert len(set(chosen.tolist())) == m
        assert mask[chosen].all()


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 12),
    lam=LAMS_BELOW_ONE,
    variant=st.sampled_from(VARIANTS),
    data=st.data(),
)
def test_within_a_category_relevance_order_is_kept(seed, n, lam, variant, data) -> None:
    # Candidates of one category get the same bonus, so the picks restricted to the head (or
    # to the tail) come in stable relevance order for lam < 1. At lam = 1 relevance has weight
    # 0 and ties go by position, so the order is the input order. lam is kept <= 0.99 (or = 1):
    # for lam within ~1e-13 of 1, (1 - lam) * P(v|u) falls below the float spacing of the bonus
    # and the ranking degrades to position order too.
    k = data.draw(st.integers(0, n))
    relevance, tail, _, pref = _random_batch(seed, 1, n)
    got = xquad_rerank(relevance, tail, k, lam, variant=variant, tail_preference=pref)[0]
    order = np.argsort(-relevance[0], kind="stable").tolist() if lam < 1 else list(range(n))
    for flag in (False, True):
        picks = [int(i) for i in got if tail[0, i] == flag]
        in_cat = [i for i in order if tail[0, i] == flag]
        assert picks == in_cat[: len(picks)]


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 12),
    lam=LAMS_BELOW_ONE,
    data=st.data(),
)
def test_binary_after_coverage_is_relevance_order(seed, n, lam, data) -> None:
    # Binary: once S holds a head and a tail item every bonus is 0, so the rest of the list is
    # the remaining candidates in stable relevance order (position order at lam = 1, where
    # every score is then 0; lam range as in the test above).
    k = data.draw(st.integers(0, n))
    relevance, tail, _, pref = _random_batch(seed, 1, n)
    got = xquad_rerank(relevance, tail, k, lam, variant="binary", tail_preference=pref)[0]
    flags = tail[0, got]
    both = [j for j in range(k) if flags[: j + 1].any() and (~flags[: j + 1]).any()]
    if both:
        first = both[0]
        order = np.argsort(-relevance[0], kind="stable") if lam < 1 else np.arange(n)
        rest = [i for i in order if i not in got[: first + 1]]
        assert got[first + 1 :].tolist() == rest[: k - first - 1]


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 12),
    p_tail=st.floats(0.0, 1.0),
    data=st.data(),
)
def test_binary_lam_one_covers_each_preferred_category(seed, n, p_tail, data) -> None:
    # lam = 1, k >= 2: step 1 takes a category c, after which c's bonus is 0 and the other
    # category's bonus is its P(c'|u); if that is > 0 step 2 takes it. So each category with
    # P(c|u) > 0 and at least one candidate appears in the list.
    k = data.draw(st.integers(2, n))
    relevance, tail, _, _ = _random_batch(seed, 1, n)
    got = xquad_rerank(relevance, tail, k, 1.0, variant="binary", tail_preference=p_tail)[0]
    if p_tail > 0 and tail[0].any():
        assert tail[0, got].any()
    if p_tail < 1 and (~tail[0]).any():
        assert (~tail[0, got]).any()


@SETTINGS
@given(
    n_head=st.integers(0, 10),
    n_tail=st.integers(0, 10),
    p_step=st.integers(0, 20),
    variant=st.sampled_from(VARIANTS),
    data=st.data(),
)
def test_tail_count_never_drops_as_lam_grows_when_tail_is_at_the_bottom(
    n_head, n_tail, p_step, variant, data
) -> None:
    # Fixture: relevance strictly decreasing, all head items above all tail items. Within a
    # category the picks are by relevance, so only the tail count t matters. From any state
    # (h, t) the tail is taken iff lam * D(h, t) > (1 - lam) * (rel(next head) - rel(next tail)),
    # the right side > 0 and D the bonus difference, a function of the state only. If a smaller
    # lam takes the tail (so D > 0), a larger lam does too; coupling the two greedy runs step by
    # step then gives t(larger lam) >= t(smaller lam) at every step. lam and P(tail|u) are on
    # grids so no float near-tie can flip a choice (margins are >= 0.1 * 1/(20 k)).
    if n_head + n_tail == 0:
        return
    k = data.draw(st.integers(0, n_head + n_tail))
    rel, tail = _head_then_tail(n_head, n_tail)
    counts = [
        int(
            tail[0, xquad_rerank(rel, tail, k, lam, variant=variant, tail_preference=p_step / 20)]
            .sum()
        )
        for lam in LAM_GRID
    ]
    assert counts == sorted(counts)
    assert counts[0] == max(0, k - n_head)  # lam = 0: the top k


@SETTINGS
@given(k=st.integers(1, 10), p_tail=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1))
def test_smooth_lam_one_tracks_tail_preference(k, p_tail, seed) -> None:
    # Smooth, lam = 1, non-empty S with tail share s: the tail bonus minus the head bonus is
    # P(tail|u) (1 - s) - P(head|u) s = P(tail|u) - s, so the tail is taken while s < P(tail|u)
    # and the head while s > P(tail|u). By induction |t_j - P(tail|u) j| <= 1 after every step
    # j >= 1, given enough items of both kinds (k of each, shuffled positions).
    rng = np.random.default_rng(seed)
    tail = np.zeros((1, 2 * k), dtype=bool)
    tail[0, rng.permutation(2 * k)[:k]] = True
    rel = rng.integers(0, 1000, size=(1, 2 * k)).astype(float)
    got = xquad_rerank(rel, tail, k, 1.0, variant="smooth", tail_preference=p_tail)[0]
    for j in range(1, k + 1):
        assert abs(tail[0, got[:j]].sum() - p_tail * j) <= 1 + 1e-9


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lam": -0.1}, "lam"),
        ({"lam": 1.5}, "lam"),
        ({"lam": float("nan")}, "lam"),
        ({"k": 4}, "k must be"),
        ({"k": -1}, "k must be"),
        ({"k": 1.5}, "k must be an integer"),
        ({"variant": "soft"}, "variant"),
        ({"tail": np.zeros((1, 2), dtype=bool)}, "tail has shape"),
        ({"tail": np.array([[0, 2, 1]])}, "tail must be"),
        ({"valid": np.ones((2, 3), dtype=bool)}, "valid has shape"),
        ({"valid": np.ones((1, 3))}, "boolean"),
        ({"tail_preference": np.array([0.5, 0.5])}, "tail_preference"),
        ({"tail_preference": 1.2}, "tail_preference"),
        ({"relevance": np.array([[1.0, -1.0, 0.0]])}, "non-negative"),
        ({"relevance": np.array([1.0, 2.0, 3.0])}, "2-D"),
    ],
)
def test_bad_input_raises(kwargs, message) -> None:
    args = {
        "relevance": np.array([[3.0, 2.0, 1.0]]),
        "tail": np.array([[False, True, False]]),
        "k": 2,
        "lam": 0.5,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        xquad_rerank(**args)
