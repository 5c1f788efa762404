"""Similarity metrics (METRICS.md section 1): public vectors, hand vectors, RBO references,
and the vectorised batch version against the scalar reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recaudit.metrics import similarity as sim_mod
from recaudit.metrics.similarity import (
    SIMILARITY_METRICS,
    jaccard,
    prag_star,
    rbo,
    serp_star,
    similarity_matrix,
    snsr,
    snsv,
)

K = 20
ITEMS = [f"i{j}" for j in range(K)]

# ------------------------------------------------------------------ public vectors (METRICS.md)


def test_public_vector_identical():
    assert jaccard(ITEMS, ITEMS) == 1.0
    assert serp_star(ITEMS, ITEMS) == pytest.approx(0.273810, abs=5e-7)
    assert prag_star(ITEMS, ITEMS) == 1.0


def test_public_vector_reversed():
    rev = ITEMS[::-1]
    assert serp_star(ITEMS, rev) == pytest.approx(0.273810, abs=5e-7)
    assert prag_star(ITEMS, rev) == 0.0
    assert jaccard(ITEMS, rev) == 1.0


def test_public_vector_disjoint():
    other = [f"j{j}" for j in range(K)]
    for f in (jaccard, serp_star, prag_star):
        assert f(ITEMS, other) == 0.0
    assert serp_star(ITEMS, other, variant="normalized") == 0.0
    assert rbo(ITEMS, other, p=0.9) == 0.0


@pytest.mark.parametrize("k", [1, 2, 5, 10, 20, 50])
def test_serp_fairllm_maximum_formula(k):
    # Identical lists of length K: sum_{p=0}^{K-1} (K - p + 1) = K(K+3)/2 over 2K(K+1).
    lst = list(range(k))
    assert serp_star(lst, lst) == pytest.approx((k + 3) / (4 * (k + 1)), rel=1e-15)
    assert serp_star(lst, lst, variant="normalized") == pytest.approx(1.0, rel=1e-15)


# ------------------------------------------------------------------------------ hand vectors


def test_hand_vector_short_lists():
    S, N = ["a", "b", "c"], ["b", "a", "d"]
    # Jaccard: {a,b} / {a,b,c,d} = 2/4.
    assert jaccard(S, N) == 0.5
    # SERP* fairllm: L_s = L_n = 3; weights L_s - p + 1 = 4, 3, 2; c(a)=c(b)=1, c(c)=0
    # -> (4 + 3) / (2 * 3 * 4) = 7/24.
    assert serp_star(S, N) == pytest.approx(7 / 24)
    # SERP* normalized: weights 3, 2, 1; a, b in N -> (3 + 2) / 6.
    assert serp_star(S, N, variant="normalized") == pytest.approx(5 / 6)
    # PRAG*: pos_N a=1, b=0, c absent. (a,b): 1<0 no; (a,c): c not in N -> 1; (b,c): 1 -> 2/3.
    assert prag_star(S, N) == pytest.approx(2 / 3)
    # RBO p=0.9, equal lengths: X1=0, X2=2, X3=2.
    # (0.1/0.9) * (2/2 * 0.81 + 2/3 * 0.729) + 2/3 * 0.729 = 0.144 + 0.486 = 0.63.
    assert rbo(S, N, p=0.9) == pytest.approx(0.63, rel=1e-12)


def test_hand_vector_duplicates():
    S, N = ["a", "a", "b"], ["a", "b", "a"]
    assert jaccard(S, N) == 1.0
    # fairllm counts occurrences: c(a, N) = 2, c(b, N) = 1; weights 4, 3, 2
    # -> (4*2 + 3*2 + 2*1) / 24 = 16/24.
    assert serp_star(S, N) == pytest.approx(2 / 3)
    # normalized uses the indicator: (3 + 2 + 1) / 6 = 1.
    assert serp_star(S, N, variant="normalized") == 1.0
    # PRAG* with last positions a -> 2, b -> 1: keys (2, 2, 1), no pair strictly increasing.
    assert prag_star(S, N) == 0.0
    # RBO de-duplicates: [a, b] vs [a, b] -> 1.
    assert rbo(S, N, p=0.9) == pytest.approx(1.0)


def test_prag_uses_last_position_in_neutral_list():
    # pos_N(a) = 2 (last a), pos_N(b) = 1 -> 2 < 1 is false -> 0 (first positions would give 1).
    assert prag_star(["a", "b"], ["a", "b", "a"]) == 0.0
    assert prag_star(["a", "b"], ["a", "b"]) == 1.0


def test_uneven_lengths():
    # S=[a], N=[a,b]: Jaccard 1/2; SERP* fairllm weight (1 - 0 + 1) = 2 over 2*2*3 = 1/6;
    # normalized 1/1; PRAG* L_s = 1 and S != N -> 0.
    assert jaccard(["a"], ["a", "b"]) == 0.5
    assert serp_star(["a"], ["a", "b"]) == pytest.approx(1 / 6)
    assert serp_star(["a"], ["a", "b"], variant="normalized") == 1.0
    assert prag_star(["a"], ["a", "b"]) == 0.0
    assert prag_star(["a"], ["a"]) == 1.0
    # S=[a,b], N=[a]: fairllm weight 3 * 1 over 2*1*2 = 3/4; normalized 2 / 3;
    # PRAG* single pair (a in N, b not) -> 1.
    assert serp_star(["a", "b"], ["a"]) == pytest.approx(0.75)
    assert serp_star(["a", "b"], ["a"], variant="normalized") == pytest.approx(2 / 3)
    assert prag_star(["a", "b"], ["a"]) == 1.0
    # RBO_ext([a], [a, b]): s=1, l=2, X1=1, X2=1:
    # (0.1/0.9) * ((0.9 + 0.81/2) + 1*(2-1)/(1*2)*0.81) + (0/2 + 1/1) * 0.81 = 0.19 + 0.81 = 1.
    assert rbo(["a"], ["a", "b"], p=0.9) == pytest.approx(1.0)


def test_empty_lists():
    assert jaccard([], []) == 1.0
    assert jaccard(["a"], []) == 0.0 and jaccard([], ["a"]) == 0.0
    for variant in ("fairllm", "normalized"):
        assert serp_star([], [], variant=variant) == 0.0
        assert serp_star(["a"], [], variant=variant) == 0.0
        assert serp_star([], ["a"], variant=variant) == 0.0
    assert prag_star([], []) == 0.0
    assert prag_star(["a", "b"], []) == 0.0
    assert prag_star([], ["a"]) == 0.0
    assert rbo([], [], p=0.9) == 1.0
    assert rbo(["a"], [], p=0.9) == 0.0
    assert rbo([], ["a"], p=0.9) == 0.0


def test_asymmetry_serp_and_prag():
    S, N = ["a", "b", "c"], ["a"]
    assert serp_star(S, N) != serp_star(N, S)
    assert prag_star(S, N) != prag_star(N, S)


def test_serp_variant_validated():
    with pytest.raises(ValueError, match="variant"):
        serp_star(["a"], ["a"], variant="paper")


# ---------------------------------------------------------------------------------------- RBO

# Published reference values: RBO_ext from William Webber's reference implementation, as
# recorded in the test data of the `rbo` Rust crate (github.com/mpetri/rbo,
# test_data/uneven_abc.json), first list = the alphabet a..z.
WEBBER_UNEVEN = [
    ("akdwcjomxrubqitenhspyl", 0.1, 0.948509),
    ("av", 0.2, 0.900000),
    ("aptkn", 0.2, 0.892587),
    ("b", 0.2, 0.092574),
    ("ma", 0.4, 0.200001),
    ("auzemcwhrtjvbfqxyk", 0.4, 0.772647),
    ("karfvodcjmwgzlypebunq", 0.9, 0.468431),
    ("f", 0.9, 0.053090),
    ("zclx", 0.9, 0.233312),
]


@pytest.mark.parametrize(("other", "p", "expected"), WEBBER_UNEVEN)
def test_rbo_matches_webber_reference(other, p, expected):
    alphabet = list("abcdefghijklmnopqrstuvwxyz")
    assert rbo(alphabet, list(other), p=p) == pytest.approx(expected, abs=1e-6)
    assert rbo(list(other), alphabet, p=p) == pytest.approx(expected, abs=1e-6)


def test_rbo_published_even_example():
    # rankmeasures README (Scala port of RBO_ext): RBO([1..5], [2,3,4,1,5], 0.9) = 0.828.
    # By hand: X = 0,1,2,4,5 -> (0.1/0.9)(0.5*.81 + 2/3*.729 + .6561 + .59049) + .59049 = 0.828.
    assert rbo([1, 2, 3, 4, 5], [2, 3, 4, 1, 5], p=0.9) == pytest.approx(0.828, abs=1e-12)


def _rbo_series(S, N, p, depth=4000):
    """Brute force: (1-p) sum_d p^(d-1) A_d with the extrapolated agreement of WMZ10 sec. 4.

    For d <= s: A_d = X_d / d. For s < d <= l: the short list's unseen items are assumed to
    agree at rate X_s / s, A_d = (X_d + X_s (d - s) / s) / d. Beyond l, A_d = A_l.
    """
    a, b = list(dict.fromkeys(S)), list(dict.fromkeys(N))
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    s, l = len(short), len(long_)  # noqa: E741 - Webber et al.'s notation

    def overlap(d):
        return len(set(short[: min(d, s)]) & set(long_[:d]))

    x_s = overlap(s)
    total = 0.0
    for d in range(1, depth + 1):
        if d <= s:
            agree = overlap(d) / d
        elif d <= l:
            agree = (overlap(d) + x_s * (d - s) / s) / d
        else:
            agree = (overlap(l) + x_s * (l - s) / s) / l
        total += (1 - p) * p ** (d - 1) * agree
    return total


@pytest.mark.parametrize("p", [0.5, 0.8, 0.9])
def test_rbo_equals_brute_force_series(p):
    rng = np.random.default_rng(7)
    for _ in range(25):
        S = list(rng.permutation(30)[: rng.integers(1, 12)])
        N = list(rng.permutation(30)[: rng.integers(1, 12)])
        assert rbo(S, N, p=p) == pytest.approx(_rbo_series(S, N, p), abs=1e-12)


def test_rbo_properties():
    assert rbo(ITEMS, ITEMS, p=0.9) == pytest.approx(1.0)
    S, N = ["a", "b", "c", "d"], ["b", "a", "x"]
    assert rbo(S, N, p=0.7) == pytest.approx(rbo(N, S, p=0.7))
    # Top-weighted: a swap at the top costs more than a swap at the bottom.
    base = list("abcdefgh")
    top_swap = list("bacdefgh")
    bottom_swap = list("abcdefhg")
    assert rbo(base, top_swap, p=0.9) < rbo(base, bottom_swap, p=0.9)


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1.5])
def test_rbo_p_validated(p):
    with pytest.raises(ValueError, match="0 < p < 1"):
        rbo(["a"], ["a"], p=p)


# --------------------------------------------------------------------------------- SNSR / SNSV


def test_snsr_snsv_values():
    sims = {"a boy": 0.8, "a girl": 0.5, "a male": 0.6, "a female": 0.7}
    assert snsr(sims) == pytest.approx(0.3)
    # population std of (0.8, 0.5, 0.6, 0.7): mean 0.65, deviations^2 sum = 0.05, /4 -> sqrt.
    assert snsv(sims) == pytest.approx(math.sqrt(0.05 / 4))


def test_snsv_is_half_snsr_for_two_values():
    for a, b in [(0.3, 0.9), (0.25, 0.25), (1.0, 0.0)]:
        sims = {"x": a, "y": b}
        assert snsv(sims) == pytest.approx(snsr(sims) / 2, abs=1e-15)


def test_snsr_accepts_sequences_and_rejects_empty():
    assert snsr([0.1, 0.4]) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        snsr({})
    with pytest.raises(ValueError):
        snsv([])


# ------------------------------------------------------------------------------- batch version


def _reference(S_lists, N_lists, k_values, p):
    fns = {
        "jaccard": jaccard,
        "serp_star": serp_star,
        "serp_star_normalized": lambda s, n: serp_star(s, n, variant="normalized"),
        "prag_star": prag_star,
        "rbo": lambda s, n: rbo(s, n, p=p),
    }
    return {
        m: np.array([[f(s[:k], n[:k]) for k in k_values] for s, n in zip(S_lists, N_lists)])
        for m, f in fns.items()
    }


def _random_lists(rng, n, vocab, max_len):
    out = []
    for _ in range(n):
        length = int(rng.integers(0, max_len + 1))
        out.append([f"m{int(x)}" for x in rng.integers(0, vocab, length)])
    return out


@pytest.mark.parametrize(("seed", "vocab", "max_len", "p"), [
    (0, 6, 6, 0.9),   # tiny vocabulary: many duplicates and overlaps
    (1, 15, 12, 0.5),
    (2, 40, 20, 0.98),
])
def test_batch_equals_scalar(seed, vocab, max_len, p):
    rng = np.random.default_rng(seed)
    S_lists = _random_lists(rng, 300, vocab, max_len)
    N_lists = _random_lists(rng, 300, vocab, max_len)
    # A few structured pairs: identical, reversed, empty, single items.
    S_lists += [ITEMS, ITEMS, [], ["a"], ["a"], [], ["a", "a", "a"]]
    N_lists += [ITEMS, ITEMS[::-1], [], ["a"], [], ["a"], ["a"]]
    k_values = list(range(1, max_len + 3))  # beyond the longest list too
    got = similarity_matrix(S_lists, N_lists, k_values=k_values, p=p)
    ref = _reference(S_lists, N_lists, k_values, p)
    assert set(got) == set(SIMILARITY_METRICS)
    for m in SIMILARITY_METRICS:
        assert got[m].shape == (len(S_lists), len(k_values))
        np.testing.assert_allclose(got[m], ref[m], rtol=0, atol=1e-12, err_msg=m)


def test_batch_chunking_gives_same_result(monkeypatch):
    rng = np.random.default_rng(3)
    S_lists = _random_lists(rng, 60, 10, 8)
    N_lists = _random_lists(rng, 60, 10, 8)
    full = similarity_matrix(S_lists, N_lists, p=0.9)
    monkeypatch.setattr(sim_mod, "_CHUNK_ELEMENTS", 200)  # forces chunks of one pair
    chunked = similarity_matrix(S_lists, N_lists, p=0.9)
    for m in SIMILARITY_METRICS:
        np.testing.assert_array_equal(full[m], chunked[m])


def test_batch_defaults_subset_and_inputs():
    S_lists = [("a", "b", "c"), np.array([1, 2])]
    N_lists = [["c", "b"], [2, 1, 3, 4]]
    out = similarity_matrix(S_lists, N_lists, metrics=("jaccard", "rbo"), p=0.8)
    assert set(out) == {"jaccard", "rbo"}
    assert out["jaccard"].shape == (2, 4)  # default k = 1..longest list
    assert out["jaccard"][0, 2] == pytest.approx(jaccard(["a", "b", "c"], ["c", "b"]))
    assert out["rbo"][1, 3] == pytest.approx(rbo([1, 2], [2, 1, 3, 4], p=0.8))
    # The public K = 20 vectors through the batch path.
    pub = similarity_matrix([ITEMS, ITEMS], [ITEMS, ITEMS[::-1]], k_values=[20], p=0.9)
    assert pub["serp_star"][:, 0] == pytest.approx([0.273810] * 2, abs=5e-7)
    assert pub["prag_star"][:, 0].tolist() == [1.0, 0.0]


def test_batch_edge_cases_and_validation():
    out = similarity_matrix([], [], k_values=[1, 2], p=0.9)
    assert all(v.shape == (0, 2) for v in out.values())
    out = similarity_matrix([[]], [[]], p=0.9)
    assert out["jaccard"].tolist() == [[1.0]] and out["rbo"].tolist() == [[1.0]]
    assert out["serp_star"].tolist() == [[0.0]] and out["prag_star"].tolist() == [[0.0]]
    with pytest.raises(ValueError, match="aligned"):
        similarity_matrix([["a"]], [], p=0.9)
    with pytest.raises(ValueError, match="unknown metric"):
        similarity_matrix([["a"]], [["a"]], metrics=("ndcg",), p=0.9)
    with pytest.raises(ValueError, match=">= 1"):
        similarity_matrix([["a"]], [["a"]], k_values=[0, 1], p=0.9)
    with pytest.raises(ValueError, match="0 < p < 1"):
        similarity_matrix([["a"]], [["a"]], p=1.0)


def test_batch_long_lists():
    # Lists longer than 126 items take the int32 key path of PRAG*.
    rng = np.random.default_rng(11)
    S_lists = [list(rng.integers(0, 150, 140)), list(rng.permutation(140)), []]
    N_lists = [list(rng.integers(0, 150, 135)), list(range(140)), list(range(5))]
    k_values = [1, 2, 60, 127, 135, 140, 150]
    got = similarity_matrix(S_lists, N_lists, k_values=k_values, p=0.95)
    ref = _reference(S_lists, N_lists, k_values, 0.95)
    for m in SIMILARITY_METRICS:
        np.testing.assert_allclose(got[m], ref[m], rtol=0, atol=1e-12, err_msg=m)


EXACT = ("jaccard", "serp_star", "serp_star_normalized", "prag_star")  # integer numerators


def _fairllm_table(rng, n_inst, n_values, K, vocab):
    """Instruction-major pairs; one neutral list object per instruction (as the probe passes)."""
    S_lists, N_lists = [], []
    for m in range(n_inst):
        kind = m % 4
        neutral = [f"m{int(x)}" for x in rng.integers(0, vocab, int(rng.integers(0, K + 1)))]
        for v in range(n_values):
            if kind == 0:  # disjoint from the neutral list
                s = [f"x{int(x)}" for x in rng.integers(0, vocab, K)]
            elif kind == 1:  # a perturbed copy, cut short at random (possibly empty)
                s = [x if rng.random() < 0.7 else f"m{int(rng.integers(0, vocab))}"
                     for x in neutral][: int(rng.integers(0, K + 1))]
            else:  # random lists over a small vocabulary: many repeats, lengths 0..K
                s = [f"m{int(x)}" for x in rng.integers(0, vocab, int(rng.integers(0, K + 1)))]
            S_lists.append(s)
            N_lists.append(neutral)
    S_lists += [[], ["a"], [], ["a", "a"]]
    N_lists += [[], [], ["a"], ["a", "a", "b"]]
    return S_lists, N_lists


@pytest.mark.parametrize(("seed", "K", "vocab", "bitmask_width"), [
    (0, 20, 8, 52),    # FaiRLLM's K, bitmask kernel (float32 masks)
    (1, 20, 30, 52),
    (2, 40, 12, 52),   # float64 masks
    (3, 20, 8, 0),     # general kernel for every metric
    (4, 52, 20, 52),   # the widest bitmask lists
])
def test_vectorised_table_equals_scalar_functions_exactly(monkeypatch, seed, K, vocab,
                                                          bitmask_width):
    monkeypatch.setattr(sim_mod, "_BITMASK_WIDTH", bitmask_width)
    rng = np.random.default_rng(seed)
    S_lists, N_lists = _fairllm_table(rng, 24, 6, K, vocab)
    assert any(len(set(s)) < len(s) for s in S_lists)  # repeats are exercised
    k_values = sorted({1, 2, 3, K - 1, K, K + 5} | set(rng.integers(1, K, 4).tolist()))
    got = similarity_matrix(S_lists, N_lists, k_values=k_values, p=0.9)
    ref = _reference(S_lists, N_lists, k_values, 0.9)
    for m in EXACT:  # bit for bit, not merely close
        np.testing.assert_array_equal(got[m], ref[m], err_msg=m)
    np.testing.assert_allclose(got["rbo"], ref["rbo"], rtol=0, atol=1e-12)
    # All k at once equals one k at a time, and the default k = 1..longest list.
    one = similarity_matrix(S_lists, N_lists, k_values=[K], metrics=EXACT, p=0.9)
    for m in EXACT:
        np.testing.assert_array_equal(one[m][:, 0], got[m][:, k_values.index(K)], err_msg=m)


def test_shared_neutral_objects_and_copies_agree():
    rng = np.random.default_rng(7)
    S_lists, N_lists = _fairllm_table(rng, 12, 5, 20, 10)
    copies = [list(n) for n in N_lists]  # every pair its own neutral list object
    assert len({id(n) for n in N_lists}) < len({id(n) for n in copies})
    shared = similarity_matrix(S_lists, N_lists, p=0.9)
    separate = similarity_matrix(S_lists, copies, p=0.9)
    for m in SIMILARITY_METRICS:
        np.testing.assert_array_equal(shared[m], separate[m], err_msg=m)


def test_bitmask_and_general_kernels_agree_bitwise(monkeypatch):
    rng = np.random.default_rng(8)
    S_lists, N_lists = _fairllm_table(rng, 20, 4, 20, 6)
    fast = similarity_matrix(S_lists, N_lists, k_values=[5, 20], metrics=EXACT, p=0.9)
    monkeypatch.setattr(sim_mod, "_BITMASK_WIDTH", 0)
    general = similarity_matrix(S_lists, N_lists, k_values=[5, 20], metrics=EXACT, p=0.9)
    for m in EXACT:
        np.testing.assert_array_equal(fast[m], general[m], err_msg=m)
