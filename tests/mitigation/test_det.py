"""DetGreedy / DetCons / DetRelaxed / DetConstSort (Geyik et al., KDD 2019) against the paper,
AIF360's ``DeterministicReranking`` and the ``reranking`` package (0.3.6).

Oracle disagreements, each pinned in a named test below and skipped (detected explicitly,
counted) in the randomized agreement tests:

* AIF360, DetGreedy/DetCons/DetRelaxed: the chosen group is the position in the *filtered*
  list of groups (``enumerate`` over ``below_min`` / ``below_max``), used as a group id; the
  wrong group's counter is incremented and the same item is placed again.
* AIF360, all methods: ``IndexError`` once a group runs out of candidates.
* AIF360, DetConstSort: stops in the middle of the last batch once ``rec_size`` items are
  placed; the paper completes the batch (then the top ``k`` is cut), so the two can differ.
* reranking, det_cons: takes the *argmax* of ``ceil(k p) / p`` instead of the paper's argmin.
* reranking, det_cons: ``KeyError`` when the group it picks has run out.
* reranking, det_const_sort: deadline ``maxIndices = k`` with 0-based positions, so an item
  can sink one place past its deadline and break its own minimum count; it inserts a batch
  worst first (the paper: best score first); it returns more than ``k_max`` items.
* reranking, greedy family: falls back to the best remaining item of any group as soon as a
  group of the deciding set has run out, even if another group of that set has candidates.

Where a patched copy of an oracle (the bug switched off in its source, see
``_patched_class``) is available, the randomized tests also require exact agreement with it.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Sequence
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest

from recaudit.mitigation.det import METHODS, det_rerank

GREEDY_FAMILY = ("greedy", "cons", "relaxed")
N_RANDOM = 60


# ----------------------------------------------------------------------------- oracles


def _aif360(groups: Sequence[int], targets: Sequence[float], k: int, method: str,
            fixes: list[tuple[str, str]] | None = None) -> list[int]:
    """AIF360 ``DeterministicReranking`` on one list with scores ``n - position``."""
    pytest.importorskip("aif360")
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from aif360.algorithms.postprocessing import DeterministicReranking
        from aif360.datasets import RegressionDataset

        cls = DeterministicReranking if not fixes else _patched_class(
            "aif360.algorithms.postprocessing.deterministic_reranking", "DeterministicReranking",
            fixes)
        n, n_groups = len(groups), len(targets)
        # RegressionDataset min-max scales every column: give it columns already spanning
        # [0, 1] (every group occurs), so the scaling is the identity; designate every group
        gval = [g / (n_groups - 1) for g in range(n_groups)]
        pos = np.arange(n, dtype=float) / (n - 1)
        df = pd.DataFrame({"id": pos, "g": [gval[g] for g in groups], "score": 1.0 - pos})
        ds = RegressionDataset(df, dep_var_name="score", protected_attribute_names=["g"],
                               privileged_classes=[gval[1:]])
        conv = ds.convert_to_dataframe()[0]
        assert np.array_equal(conv[["id", "g", "score"]].to_numpy(), df.to_numpy())
        rr = cls(unprivileged_groups=[{"g": gval[0]}],
                 privileged_groups=[{"g": v} for v in gval[1:]])
        rtype = {"greedy": "Greedy", "cons": "Conservative", "relaxed": "Relaxed",
                 "constsort": "Constrained"}[method]
        # predict wraps its result in a new RegressionDataset, whose min-max scaling of the
        # group column breaks on a subset of the groups: capture the raw rows instead
        def capture(frame: pd.DataFrame, **_: object) -> SimpleNamespace:
            return SimpleNamespace(frame=frame)

        predict_globals = inspect.unwrap(cls.predict).__globals__
        with mock.patch.dict(predict_globals, {"RegressionDataset": capture}):
            res = rr.fit_predict(ds, rec_size=k, target_prop=list(targets), rerank_type=rtype)
        return [int(i) for i in np.rint(res.frame["id"].to_numpy() * (n - 1))]


def _reranking(groups: Sequence[int], targets: Sequence[float], k: int, method: str,
               fixes: list[tuple[str, str]] | None = None) -> list[int]:
    """``reranking.rerank`` (0.3.6) on one list (it ranks by position)."""
    reranking = pytest.importorskip("reranking")
    alg = {"greedy": "det_greedy", "cons": "det_cons", "relaxed": "det_relaxed",
           "constsort": "det_const_sort"}[method]
    cls = reranking.Reranker if not fixes else _patched_class("reranking.reranker", "Reranker",
                                                               fixes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cls(np.asarray(groups, dtype=np.int64),
                  {g: float(p) for g, p in enumerate(targets)})(k, alg)
    return [int(x) for x in res]


def _ours(groups: Sequence[int], targets: Sequence[float], k: int, method: str) -> list[int]:
    return det_rerank(np.asarray([groups]), targets, k, method)[0].tolist()


# ----------------------------------------------------------------------------- helpers


def _random_case(rng: np.random.Generator) -> tuple[list[int], list[float], int]:
    """A list of 2-4 groups (each present at least once), random targets and k."""
    n_groups = int(rng.integers(2, 5))
    n = int(rng.integers(n_groups, 41))
    mix = rng.dirichlet(np.ones(n_groups))
    groups = rng.choice(n_groups, size=n, p=mix)
    groups[rng.choice(n, size=n_groups, replace=False)] = np.arange(n_groups)
    targets = rng.dirichlet(np.ones(n_groups))
    # half the time a short k (groups rarely run out), else any k up to n
    k = int(rng.integers(1, (n if rng.random() < 0.5 else (n + 1) // 2) + 1))
    return groups.tolist(), targets.tolist(), k


def _trace(groups: Sequence[int], targets: Sequence[float], out: Sequence[int]) -> list[dict]:
    """Per step of ``out``: counts before it, the oracles' belowMin / belowMax sets (exhausted
    groups included, plain float floor / ceil as the oracles compute them), the chosen group
    and which groups have run out."""
    size = np.bincount(np.asarray(groups), minlength=len(targets))
    counts = [0] * len(targets)
    steps = []
    for r, item in enumerate(out, start=1):
        lo = [math.floor(r * p) for p in targets]
        hi = [math.ceil(r * p) for p in targets]
        steps.append({
            "r": r,
            "counts": list(counts),
            "below_min": [g for g, c in enumerate(counts) if c < lo[g]],
            "below_max": [g for g, c in enumerate(counts) if lo[g] <= c < hi[g]],
            "chosen": int(groups[item]),
            "exhausted": [g for g, c in enumerate(counts) if c >= size[g]],
        })
        counts[groups[item]] += 1
    return steps


def _min_count_ok(groups: Sequence[int], targets: Sequence[float], out: Sequence[int]) -> bool:
    """Every prefix r holds at least min(floor(r p_g), #candidates of g) items of each group."""
    size = np.bincount(np.asarray(groups), minlength=len(targets))
    counts = np.zeros(len(targets), dtype=int)
    for r, item in enumerate(out, start=1):
        counts[groups[item]] += 1
        need = np.minimum(np.floor(r * np.asarray(targets) + 1e-9).astype(int), size)
        if np.any(counts < need):
            return False
    return True


def _max_count_ok(groups: Sequence[int], targets: Sequence[float], out: Sequence[int]) -> bool:
    counts = np.zeros(len(targets), dtype=int)
    for r, item in enumerate(out, start=1):
        counts[groups[item]] += 1
        if np.any(counts > np.ceil(r * np.asarray(targets) - 1e-9)):
            return False
    return True


# ----------------------------------------------------------------------------- hand-solved


def test_methods_constant() -> None:
    assert METHODS == ("greedy", "cons", "relaxed", "constsort")


def test_hand_two_groups_greedy_vs_cons_relaxed() -> None:
    # groups [0,0,0,1,1,1], p = (0.4, 0.6), scores 6..1, k = 3.
    # DetGreedy: r=1 lo=(0,0) hi=(1,1): belowMax {0,1}, best head pos0 (g0).
    #            r=2 lo=(0,1): belowMin {1} -> pos3.
    #            r=3 lo=(1,1) hi=(2,2): belowMax {0,1}, best head pos1 (g0).    -> [0, 3, 1]
    # DetCons:   r=1 belowMax {0,1}: ceil(.4)/.4 = 2.5, ceil(.6)/.6 = 1.67 -> g1 pos3.
    #            r=2 lo=(0,1) hi=(1,2), counts (0,1): belowMin {}, belowMax {0,1}:
    #                1/.4 = 2.5 < 2/.6 = 3.33 -> g0 pos0.
    #            r=3 lo=(1,1) hi=(2,2): 2/.4 = 5 > 2/.6 = 3.33 -> g1 pos4.      -> [3, 0, 4]
    # DetRelaxed: ceilings 3 vs 2, 3 vs 4, 5 vs 4 -> same picks as DetCons.       -> [3, 0, 4]
    # DetConstSort: r=1 floors (0,0); r=2 floors (0,1): insert pos3 (deadline 1);
    #            r=3 floors (1,1): insert pos0 (score 6, deadline 2); pos3 above it has
    #            deadline 1 >= 1 and lower score -> swap: [0, 3].
    #            r=4 floors (1,2): insert pos4 -> [0, 3, 4].
    g = [0, 0, 0, 1, 1, 1]
    assert _ours(g, [0.4, 0.6], 3, "greedy") == [0, 3, 1]
    assert _ours(g, [0.4, 0.6], 3, "cons") == [3, 0, 4]
    assert _ours(g, [0.4, 0.6], 3, "relaxed") == [3, 0, 4]
    assert _ours(g, [0.4, 0.6], 3, "constsort") == [0, 3, 4]


def test_hand_three_groups_all_methods_differ() -> None:
    # groups [2,0,1], p = (0.4, 0.45, 0.15), k = 1: r=1 lo=(0,0,0) hi=(1,1,1), all belowMax.
    # DetGreedy: best head overall -> pos0 (g2).
    # DetCons: argmin ceil(p)/p = (2.5, 2.22, 6.67) -> g1 -> pos2.
    # DetRelaxed: argmin ceil(ceil(p)/p) = (3, 3, 7) -> {g0, g1}, best head -> g0 -> pos1.
    # DetConstSort: floors stay 0 until r=3: (1, 1, 0) -> insert pos1 then pos2 (score
    #            order, no swap) -> [1, 2], cut to k=1 -> [1].
    g, p = [2, 0, 1], [0.4, 0.45, 0.15]
    assert [_ours(g, p, 1, m)[0] for m in METHODS] == [0, 2, 1, 1]


def test_hand_constsort_swaps_within_deadline() -> None:
    # groups [0,0,1,1,1,1], p = (0.25, 0.75), k = 4.
    # r=2 floors (0,1): insert pos2 (deadline 1). r=3 floors (0,2): insert pos3 (deadline 2).
    # r=4 floors (1,3): heads pos0 (score 6) and pos4 (score 2), best first.
    #   pos0 goes in at index 2 (deadline 3); pos3 above it (deadline 2 >= 2, score 3 < 6):
    #   swap; pos2 above (deadline 1 >= 1, score 4 < 6): swap -> [0, 2, 3].
    #   pos4 at index 3: pos3 above has a higher score, stays -> [0, 2, 3, 4].
    assert _ours([0, 0, 1, 1, 1, 1], [0.25, 0.75], 4, "constsort") == [0, 2, 3, 4]
    # groups [0,0,0,0,1,1,1,1], p = (.5,.5), k=4: r=2 inserts pos0, pos4 (deadline 1 each);
    # r=4 inserts pos1 at index 2: pos4 above has deadline 1 < 2 so it may not move down.
    assert _ours([0, 0, 0, 0, 1, 1, 1, 1], [0.5, 0.5], 4, "constsort") == [0, 4, 1, 5]


def test_hand_group_runs_out_falls_back_to_best_remaining() -> None:
    # groups [0,1,1,1,1], p = (.5,.5), k = 4, DetGreedy:
    # r=1 belowMax {0,1} -> pos0. r=2 lo=(1,1): belowMin {1} -> pos1.
    # r=3 hi=(2,2): belowMax {0,1} but g0 has run out -> pos2.
    # r=4 lo=hi=(2,2): g1 has its 2, g0 has none left: no eligible group -> best remaining pos3.
    for m in METHODS:
        assert _ours([0, 1, 1, 1, 1], [0.5, 0.5], 4, m) == [0, 1, 2, 3]
    # all of the positive share used up: p = (1, 0), groups [1,0,1,0]
    # r=1, r=2: belowMin {0} -> pos1, pos3; then nothing eligible -> pos0, pos2 by score.
    for m in METHODS:
        assert _ours([1, 0, 1, 0], [1.0, 0.0], 4, m) == [1, 3, 0, 2]


def test_round_robin_list_with_its_own_shares_is_unchanged() -> None:
    # a list cycling through G groups, targets = its own make-up (1/G each): every prefix is
    # already as fair as it can be, and every method returns it unchanged.
    for n_groups in (2, 3, 4):
        g = [i % n_groups for i in range(4 * n_groups)]
        p = [1.0 / n_groups] * n_groups
        for m in METHODS:
            assert _ours(g, p, len(g), m) == list(range(len(g))), (n_groups, m)


def test_exact_products_count_as_integers() -> None:
    # 50 * 0.58 = 28.999999999999996 in floats; the minimum count of g0 at r=50 is 29.
    # groups: g1/g2 alternating 50 times, then 50 of g0; p = (0.58, 0.21, 0.21), k = 50.
    # DetGreedy gives g1/g2 (ahead) their maxima ceil(r * 0.21) and g0 its minima, so g0
    # ends with exactly its minimum at r=50: 29 (a plain floor, as both oracles use: 28).
    g = [1, 2] * 25 + [0] * 50
    out = _ours(g, [0.58, 0.21, 0.21], 50, "greedy")
    assert sum(1 for i in out if g[i] == 0) == 29
    assert _min_count_ok(g, [0.58, 0.21, 0.21], out)


# ----------------------------------------------------------------------------- batches


def test_batch_matches_row_by_row_and_respects_valid() -> None:
    rng = np.random.default_rng(7)
    n_lists, n, n_groups = 40, 25, 3
    groups = rng.integers(0, n_groups, size=(n_lists, n))
    scores = -np.sort(-rng.random((n_lists, n)), axis=1)  # non-increasing along each list
    valid = rng.random((n_lists, n)) < 0.8
    valid[0] = False
    valid[0, :3] = True  # fewer valid candidates than k
    targets = [0.5, 0.3, 0.2]
    k = 10
    for m in METHODS:
        out = det_rerank(groups, targets, k, m, scores=scores, valid=valid)
        assert out.shape == (n_lists, k) and out.dtype.kind == "i"
        for row in range(n_lists):
            idx = np.flatnonzero(valid[row])
            kk = min(k, idx.size)
            sub = det_rerank(groups[row, idx][None], targets, kk, m,
                             scores=scores[row, idx][None])[0]
            expect = np.full(k, -1)
            expect[:kk] = idx[sub]
            np.testing.assert_array_equal(out[row], expect, err_msg=f"{m} row {row}")
        assert np.array_equal(out[0, 3:], np.full(k - 3, -1))


def test_scores_decide_between_group_heads() -> None:
    # same group layout, scores flip which head is better: DetGreedy follows the scores.
    g = np.array([[0, 1, 0, 1]])
    assert det_rerank(g, [0.5, 0.5], 1, "greedy", scores=np.array([[4.0, 3, 2, 1]]))[0, 0] == 0
    assert det_rerank(g, [0.5, 0.5], 1, "greedy", scores=np.array([[3.0, 4, 2, 1]]))[0, 0] == 1


# ----------------------------------------------------------------------------- properties


@pytest.mark.parametrize("method", METHODS)
def test_output_is_a_subset_permutation_of_valid(method: str) -> None:
    rng = np.random.default_rng(11)
    for _ in range(50):
        n_groups = int(rng.integers(2, 5))
        n = int(rng.integers(1, 30))
        groups = rng.integers(0, n_groups, size=(3, n))
        valid = rng.random((3, n)) < 0.7
        k = int(rng.integers(1, n + 1))
        out = det_rerank(groups, rng.dirichlet(np.ones(n_groups)), k, method, valid=valid)
        for row in range(3):
            picked = out[row][out[row] >= 0]
            assert len(picked) == min(k, valid[row].sum())
            assert np.all(out[row][len(picked):] == -1)
            assert len(set(picked.tolist())) == len(picked)
            assert valid[row, picked].all()


@pytest.mark.parametrize("method", GREEDY_FAMILY)
def test_greedy_family_meets_min_and_max_counts_up_to_three_groups(method: str) -> None:
    # Geyik et al.: DetGreedy, DetCons and DetRelaxed are feasible for <= 3 groups; with
    # enough candidates of every group (ceil(k p_g)) the minimum count floor(r p_g) holds at
    # every prefix, and the maximum count ceil(r p_g) always does (picks come from belowMin
    # or belowMax only).
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(300):
        groups, targets, k = _random_case(rng)
        if len(targets) > 3:
            continue
        size = np.bincount(groups, minlength=len(targets))
        if np.any(size < np.ceil(k * np.asarray(targets))):
            continue
        out = _ours(groups, targets, k, method)
        assert _min_count_ok(groups, targets, out), (groups, targets, k)
        assert _max_count_ok(groups, targets, out), (groups, targets, k)
        checked += 1
    assert checked >= 40


def test_detgreedy_can_miss_a_minimum_with_four_groups() -> None:
    # The paper notes DetGreedy is not always feasible for >= 4 groups. groups [0,2,1,3,1,3],
    # p = (0.1, 0.4, 0.1, 0.4), k = 3 (enough candidates: ceil(3 * 0.4) = 2 of g1 and g3):
    # r=1 lo=0 hi=1 for all: best head pos0 (g0). r=2 lo=(0,0,0,0), g0 at its max:
    # belowMax {1,2,3}, best head pos1 (g2). r=3 lo=(0,1,0,1): g1 and g3 both below their
    # minimum with one slot left -> pos2 (g1), and g3 misses floor(3 * 0.4) = 1.
    # DetCons / DetRelaxed serve the big groups first (ceil(p)/p = 2.5 < 10) and meet it.
    g, p = [0, 2, 1, 3, 1, 3], [0.1, 0.4, 0.1, 0.4]
    assert _ours(g, p, 3, "greedy") == [0, 1, 2]
    assert not _min_count_ok(g, p, [0, 1, 2])
    for m in ("cons", "relaxed", "constsort"):
        assert _min_count_ok(g, p, _ours(g, p, 3, m)), m


def test_constsort_always_meets_min_counts() -> None:
    # DetConstSort places every item required at prefix r within the first r positions (any
    # number of groups); groups that run out are capped at their size.
    rng = np.random.default_rng(5)
    for _ in range(200):
        groups, targets, k = _random_case(rng)
        out = _ours(groups, targets, k, "constsort")
        assert _min_count_ok(groups, targets, out), (groups, targets, k)


def test_detgreedy_is_idempotent() -> None:
    # DetGreedy's output meets min and max counts at every prefix (<= 3 groups, enough
    # candidates); run again on that output (scores = new order) it is returned unchanged.
    rng = np.random.default_rng(9)
    checked = 0
    for _ in range(200):
        groups, targets, k = _random_case(rng)
        size = np.bincount(groups, minlength=len(targets))
        if len(targets) > 3 or np.any(size < np.ceil(k * np.asarray(targets))):
            continue
        out = _ours(groups, targets, k, "greedy")
        again = _ours([groups[i] for i in out], targets, k, "greedy")
        assert again == list(range(k))
        checked += 1
    assert checked >= 30


def test_constsort_handles_a_large_batch() -> None:
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 4, size=(1000, 100))
    out = det_rerank(groups, [0.4, 0.3, 0.2, 0.1], 100, "constsort")
    assert out.shape == (1000, 100) and (out >= 0).all()


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"targets": [0.5, 0.4]}, "targets must sum to 1"),
        ({"targets": [1.0]}, "at least 2 groups"),
        ({"targets": [1.2, -0.2]}, "non-negative"),
        ({"k": 30}, r"k=30 is larger than the candidate list \(20\)"),
        ({"k": 0}, "k must be at least 1"),
        ({"method": "fair"}, "unknown method 'fair'; known: greedy, cons, relaxed, constsort"),
        ({"groups": np.full((2, 20), 2)}, r"group ids must lie in 0\.\.1"),
        ({"groups": np.zeros(20, dtype=int)}, "2-D"),
        ({"scores": np.zeros((2, 19))}, "scores has shape"),
        ({"valid": np.ones((2, 20))}, "boolean mask"),
    ],
)
def test_bad_input_raises(kwargs: dict, message: str) -> None:
    args = {"groups": np.zeros((2, 20), dtype=int), "targets": [0.5, 0.5], "k": 5,
            "method": "greedy"} | kwargs
    with pytest.raises(ValueError, match=message):
        det_rerank(args.pop("groups"), args.pop("targets"), args.pop("k"), args.pop("method"),
                   **args)


# ----------------------------------------------------------------------------- patched oracles


def _patched_class(module_name: str, class_name: str, fixes: list[tuple[str, str]]) -> type:
    """``class_name`` of ``module_name`` recompiled with each ``(old, new)`` source fix applied
    (each ``old`` must occur exactly once), so an oracle's known bug can be switched off."""
    import importlib
    import textwrap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = importlib.import_module(module_name)
    source = textwrap.dedent(inspect.getsource(getattr(module, class_name)))
    for old, new in fixes:
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    namespace = dict(vars(module))
    exec(compile(source, f"<patched {module_name}>", "exec"), namespace)
    return namespace[class_name]


# AIF360: use the group id, not the position in the filtered list (two places)
_AIF_GROUP_ID_FIX = [
    ("next_group, next_item = max(enumerate(candidates_bmin), key = lambda x: x[1][score_label])",
     "next_group, next_item = max(zip(below_min, candidates_bmin), "
     "key=lambda x: x[1][score_label])"),
    ("next_group, next_item = max(enumerate(candidates_bmax), key = lambda x: x[1][score_label])",
     "next_group, next_item = max(zip(below_max, candidates_bmax), "
     "key=lambda x: x[1][score_label])"),
]
# AIF360 DetConstSort: complete the last batch as the paper does (we cut to k afterwards)
_AIF_FULL_BATCH_FIX = [("if len(rankedItems) == rec_size:\n", "if False:\n")]
# reranking det_cons: argmin, as in the paper
_RERANKING_ARGMIN_FIX = [("next_attr = max(s, key=lambda x: s[x])",
                          "next_attr = min(s, key=lambda x: s[x])")]
# reranking det_const_sort: 0-based deadline k - 1 for 0-based positions
_RERANKING_DEADLINE_FIX = [("max_indices_dict[last_empty] = k\n",
                            "max_indices_dict[last_empty] = k - 1\n")]
# reranking det_const_sort: insert a batch best first (it sorts positions in reverse)
_RERANKING_BATCH_ORDER_FIX = [("reverse=True,\n", "reverse=False,\n")]


# ----------------------------------------------------------------------------- pinned cases


@pytest.mark.parametrize("method", GREEDY_FAMILY)
def test_aif360_misreads_position_as_group_id(method: str) -> None:
    # groups [0,0,0,1,1], p = (.5,.5), k = 3. Paper: r=1 pos0 (g0); r=2 belowMin {1} -> pos3;
    # r=3 lo=(1,1) hi=(2,2): belowMax {0,1}, best head pos1 -> [0, 3, 1].
    # AIF360 at r=2 takes max over enumerate([head of g1]) -> (0, pos3): it places pos3 but
    # counts it for group 0, so at r=3 group 1 is still "below min" and pos3 is placed again.
    g, p = [0, 0, 0, 1, 1], [0.5, 0.5]
    assert _ours(g, p, 3, method) == [0, 3, 1]
    assert _aif360(g, p, 3, method) == [0, 3, 3]  # duplicate item
    assert _aif360(g, p, 3, method, _AIF_GROUP_ID_FIX) == [0, 3, 1]


@pytest.mark.parametrize("method", METHODS)
def test_aif360_fails_when_a_group_runs_out(method: str) -> None:
    # groups [0,1,1,1,1], p = (.5,.5), k = 4: the only g0 candidate is used at r=1 (at r=2 by
    # DetConstSort); AIF360 then indexes past the end of group 0 (it looks up every group's
    # next candidate). We fall back to the best remaining candidate (hand case above).
    g, p = [0, 1, 1, 1, 1], [0.5, 0.5]
    assert _ours(g, p, 4, method) == [0, 1, 2, 3]
    with pytest.raises(IndexError):
        _aif360(g, p, 4, method, _AIF_GROUP_ID_FIX)


def test_aif360_const_sort_stops_in_the_middle_of_the_last_batch() -> None:
    # groups [2,0,1], p = (0.27, 0.48, 0.25), k = 2. Minimum counts first grow at r=3 (g1:
    # floor(1.44) = 1) and r=4 (g0: floor(1.08) = 1, g2: floor(1.0) = 1).
    # r=3: insert pos2 (g1, deadline 0-based 2) -> [2].
    # r=4: batch {g2: pos0, g0: pos1}, best score first, deadline 3:
    #   pos0 at index 1; pos2 above it (deadline 2 >= 1, lower score): swap -> [0, 2];
    #   the paper completes the batch: pos1 at index 2; pos2 above (deadline 2 >= 2, lower
    #   score): swap -> [0, 1, 2]; top 2 -> [0, 1].
    # AIF360 breaks out of the batch as soon as rec_size items are placed -> [0, 2], a less
    # relevant top 2 that the paper's algorithm never produces.
    g, p = [2, 0, 1], [0.27, 0.48, 0.25]
    assert _ours(g, p, 2, "constsort") == [0, 1]
    assert _aif360(g, p, 2, "constsort") == [0, 2]
    assert _aif360(g, p, 2, "constsort", _AIF_FULL_BATCH_FIX) == [0, 1, 2]


def test_reranking_det_cons_takes_argmax() -> None:
    # groups [0,1], p = (0.6, 0.4), k = 1: belowMax {0,1}; the paper's DetCons takes the
    # argmin of ceil(p)/p = (1.67, 2.5) -> g0 -> pos0 (so do we and AIF360).
    # reranking's det_cons takes max(...) -> g1 -> pos1.
    g, p = [0, 1], [0.6, 0.4]
    assert _ours(g, p, 1, "cons") == [0]
    assert _aif360(g, p, 1, "cons") == [0]
    assert _reranking(g, p, 1, "cons") == [1]
    assert _reranking(g, p, 1, "cons", _RERANKING_ARGMIN_FIX) == [0]


def test_reranking_det_cons_crashes_when_its_pick_ran_out() -> None:
    # groups [0,1,1,1,1,1], p = (.3,.7), k = 4. reranking's det_cons (argmax) takes g0 at r=1
    # and at r=4 (belowMax {0,1}, ceil(4 * .3)/.3 = 6.67 > 3/.7 = 4.29), but g0 has run out;
    # it only probes the last group of its loop for a KeyError, so the lookup of g0's second
    # item raises. Paper / us: r=1 argmin -> g1 pos1; r=2 2/.7 = 2.86 < 1/.3 -> pos2;
    # r=3 1/.3 = 3.33 < 3/.7 -> g0 pos0; r=4 g0 has run out -> g1 pos3.
    g, p = [0, 1, 1, 1, 1, 1], [0.3, 0.7]
    assert _ours(g, p, 4, "cons") == [1, 2, 0, 3]
    with pytest.raises(KeyError):
        _reranking(g, p, 4, "cons")
    assert _reranking(g, p, 4, "cons", _RERANKING_ARGMIN_FIX) == [1, 2, 0, 3]


def test_reranking_const_sort_deadline_off_by_one() -> None:
    # groups [0,0,1,1], p = (.5,.5), k = 4. r=2: insert pos0, pos2 (both required in the top
    # 2). r=4: insert pos1; reranking stores deadline k=4 for 0-based positions, so the pos2
    # above it (deadline 2 >= index 2) is swapped down to index 2, i.e. 1-based position 3:
    # the top 2 [0, 1] holds no group-1 item although floor(2 * 0.5) = 1.
    # With the 0-based deadline k - 1 (AIF360, us) pos2 stays: [0, 2, 1, 3].
    g, p = [0, 0, 1, 1], [0.5, 0.5]
    assert _ours(g, p, 4, "constsort") == [0, 2, 1, 3]
    assert _aif360(g, p, 4, "constsort") == [0, 2, 1, 3]
    theirs = _reranking(g, p, 4, "constsort")
    assert theirs == [0, 1, 2, 3]
    assert not _min_count_ok(g, p, theirs)
    assert _reranking(g, p, 4, "constsort", _RERANKING_DEADLINE_FIX) == [0, 2, 1, 3]


def test_reranking_const_sort_returns_more_than_k() -> None:
    # groups [0,0,0,1,1], p = (.5,.5), k = 3: the last batch (r=4: pos1, pos4) overshoots k;
    # reranking returns all 4 placed items, we cut to k.
    g, p = [0, 0, 0, 1, 1], [0.5, 0.5]
    assert len(_reranking(g, p, 3, "constsort", _RERANKING_DEADLINE_FIX)) == 4
    assert _ours(g, p, 3, "constsort") == [0, 3, 1]


def test_reranking_const_sort_inserts_a_batch_worst_first() -> None:
    # groups [1,0,2,0], p = (.1,.1,.8), k = 2. r=2: floor(1.6) = 1: insert pos2 (g2, deadline
    # 0-based 1); g2 then has run out. r=10: floor(1.0) = 1 for g0 and g1: batch {g1: pos0,
    # g0: pos1}, deadline 9. Paper (best score first): pos0 passes pos2 (deadline 1 >= 1)
    # -> [0, 2]; pos1 may not push pos2 to index 2 -> [0, 2, 1]; top 2 [0, 2].
    # reranking sorts the batch by position in reverse, worst first: pos1 passes pos2 ->
    # [1, 2]; pos0 then may not push pos2 down -> [1, 2, 0]: pos1 takes the slot of pos0.
    g, p = [1, 0, 2, 0], [0.1, 0.1, 0.8]
    assert _ours(g, p, 2, "constsort") == [0, 2]
    assert _reranking(g, p, 2, "constsort", _RERANKING_DEADLINE_FIX)[:2] == [1, 2]
    both_fixes = _RERANKING_DEADLINE_FIX + _RERANKING_BATCH_ORDER_FIX
    assert _reranking(g, p, 2, "constsort", both_fixes)[:2] == [0, 2]


def test_reranking_falls_back_to_top_item_when_a_deciding_group_ran_out() -> None:
    # groups [0,2,2,2,1,1,1], p = (.4,.4,.2), k = 4, DetGreedy:
    # r=1 all belowMax -> pos0 (g0). r=2 lo=(0,0,0) hi=(1,1,1): belowMax {1,2} -> pos1 (g2).
    # r=3 lo=(1,1,0): belowMin {1} -> pos4. r=4 lo=(1,1,0) hi=(2,2,1): belowMax {0,1}; g0 has
    # run out, so we take g1's head pos5. reranking hits a KeyError on g0 and takes the best
    # remaining item overall, pos2 (g2), which exceeds g2's maximum ceil(4 * 0.2) = 1.
    g, p = [0, 2, 2, 2, 1, 1, 1], [0.4, 0.4, 0.2]
    assert _ours(g, p, 4, "greedy") == [0, 1, 4, 5]
    theirs = _reranking(g, p, 4, "greedy")
    assert theirs == [0, 1, 4, 2]
    assert not _max_count_ok(g, p, theirs)


# ----------------------------------------------------------------------------- randomized


def _first_step(steps: list[dict], cond) -> int | None:
    """1-based step of the first trace entry satisfying ``cond``."""
    return next((st["r"] for st in steps if cond(st)), None)


def _deciding(st: dict) -> list[int]:
    return st["below_min"] if st["below_min"] else st["below_max"]


@pytest.mark.parametrize("method", GREEDY_FAMILY)
def test_agrees_with_aif360_greedy_family(method: str) -> None:
    rng = np.random.default_rng(20 + GREEDY_FAMILY.index(method))
    tally = {"cases": 0, "full": 0, "runs_out": 0, "misread_group": 0}
    for _ in range(N_RANDOM):
        groups, targets, k = _random_case(rng)
        ours = _ours(groups, targets, k, method)
        steps = _trace(groups, targets, ours)
        tally["cases"] += 1
        # AIF360 looks up every group's next candidate at every step: IndexError once any
        # group has run out, so compare the steps before that
        out_at = _first_step(steps, lambda st: bool(st["exhausted"]))
        stop = k if out_at is None else out_at - 1
        tally["runs_out"] += out_at is not None
        if stop == 0:
            continue
        # with the group-id fix AIF360 is the paper's algorithm: exact agreement
        assert _aif360(groups, targets, stop, method, _AIF_GROUP_ID_FIX) == ours[:stop]
        # unpatched: exact agreement up to and including the first step at which the chosen
        # group's position in the deciding set differs from its id (that step places the
        # right item but counts it for another group)
        bug_at = _first_step(steps[:stop], lambda st: (
            (st["below_min"] or method == "greedy")
            and _deciding(st).index(st["chosen"]) != st["chosen"]))
        upto = stop if bug_at is None else bug_at
        tally["misread_group"] += bug_at is not None
        tally["full"] += upto == k
        assert _aif360(groups, targets, upto, method) == ours[:upto]
    print(f"aif360 {method}: {tally}")
    assert tally["full"] >= 5  # some cases compared over the whole output


def test_agrees_with_aif360_const_sort() -> None:
    rng = np.random.default_rng(30)
    tally = {"cases": 0, "runs_out": 0, "mid_batch": 0}
    for _ in range(N_RANDOM):
        groups, targets, k = _random_case(rng)
        size = np.bincount(groups, minlength=len(targets))
        last = 1  # the prefix length at which the paper's loop places the k-th item
        while sum(math.floor(last * p) for p in targets) < k:
            last += 1
        due = [math.floor(last * p) for p in targets]
        tally["cases"] += 1
        if any(d > s for d, s in zip(due, size)):
            tally["runs_out"] += 1  # AIF360 would index past the end of a group
            continue
        ours = _ours(groups, targets, k, "constsort")
        assert _aif360(groups, targets, k, "constsort", _AIF_FULL_BATCH_FIX)[:k] == ours
        theirs = _aif360(groups, targets, k, "constsort")
        if theirs != ours:
            assert sum(due) > k  # only when the last batch overshoots k
            tally["mid_batch"] += 1
    print(f"aif360 constsort: {tally}")
    assert tally["cases"] - tally["runs_out"] >= 25


@pytest.mark.parametrize("method", GREEDY_FAMILY)
def test_agrees_with_reranking_greedy_family(method: str) -> None:
    rng = np.random.default_rng(40 + GREEDY_FAMILY.index(method))
    tally = {"cases": 0, "full": 0, "runs_out": 0, "argmax": 0}
    for _ in range(N_RANDOM):
        groups, targets, k = _random_case(rng)
        ours = _ours(groups, targets, k, method)
        steps = _trace(groups, targets, ours)
        tally["cases"] += 1
        # reranking falls back to the top remaining item once a deciding group has run out
        out_at = _first_step(steps, lambda st: bool(set(_deciding(st)) & set(st["exhausted"])))
        stop = k if out_at is None else out_at - 1
        tally["runs_out"] += out_at is not None
        if stop == 0:
            continue
        fixes = _RERANKING_ARGMIN_FIX if method == "cons" else None
        assert _reranking(groups, targets, stop, method, fixes) == ours[:stop]
        upto = stop
        if method == "cons":
            # unpatched det_cons: the first step at which its argmax (ties: its set's order,
            # groups numbered by first appearance) picks another group than the paper's argmin
            code = {g: i for i, g in enumerate(dict.fromkeys(groups))}
            group_of = {i: g for g, i in code.items()}

            def argmax_differs(st: dict) -> bool:
                if st["below_min"]:
                    return False
                urgency = {code[g]: math.ceil(st["r"] * targets[g]) / targets[g]
                           for g in st["below_max"]}
                pick = max(urgency, key=lambda c: urgency[c])
                return group_of[pick] != st["chosen"]

            bug_at = _first_step(steps[:stop], argmax_differs)
            if bug_at is not None:
                upto = bug_at - 1
                tally["argmax"] += 1
            if upto:
                assert _reranking(groups, targets, upto, method) == ours[:upto]
        tally["full"] += upto == k
    print(f"reranking {method}: {tally}")
    if method == "cons":
        assert tally["argmax"] >= N_RANDOM // 2
    else:
        assert tally["full"] >= 10


def test_agrees_with_reranking_const_sort() -> None:
    rng = np.random.default_rng(50)
    tally = {"cases": 0, "deadline": 0, "batch_order": 0, "both": 0}
    both_fixes = _RERANKING_DEADLINE_FIX + _RERANKING_BATCH_ORDER_FIX
    for _ in range(N_RANDOM):
        groups, targets, k = _random_case(rng)
        ours = _ours(groups, targets, k, "constsort")
        tally["cases"] += 1
        # both skip a group that has run out; with both fixes: exact agreement
        assert _reranking(groups, targets, k, "constsort", both_fixes)[:k] == ours
        theirs = _reranking(groups, targets, k, "constsort")[:k]
        if theirs == ours:
            continue
        if _reranking(groups, targets, k, "constsort", _RERANKING_DEADLINE_FIX)[:k] == ours:
            # the deadline alone: one of its items sank past its deadline
            assert not _min_count_ok(groups, targets, theirs)
            tally["deadline"] += 1
        elif _reranking(groups, targets, k, "constsort", _RERANKING_BATCH_ORDER_FIX)[:k] == ours:
            tally["batch_order"] += 1
        else:
            tally["both"] += 1
    print(f"reranking constsort: {tally}")
    assert tally["deadline"] >= 1
