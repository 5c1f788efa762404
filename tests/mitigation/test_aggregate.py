"""Rank aggregation (recaudit.mitigation.aggregate): hand-solved cases, properties, bad input,
and agreement with permsc 0.0.6 (Tang et al. 2024's reference code) on full rankings.

permsc is loaded as an oracle without its package ``__init__`` (which imports its LLM client):
its ``aggregator`` subpackage only uses relative imports, numba and pulp, so it is imported
under a private package name whose ``__path__`` is permsc's directory.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import sys
import types
import warnings
from collections.abc import Sequence

import numpy as np
import pytest

from recaudit.mitigation.aggregate import (
    borda,
    borda_positions,
    borda_scores,
    kemeny,
    pairwise_preferences,
    total_kendall_distance,
)

_ORACLE = "_recaudit_permsc_oracle"


@pytest.fixture(scope="module")
def permsc_agg() -> types.ModuleType:
    """``permsc.aggregator`` (Borda, Kemeny ILP, utils) without ``permsc/__init__``."""
    try:
        spec = importlib.util.find_spec("permsc")
    except (ImportError, ValueError) as exc:  # pragma: no cover - depends on the venv
        pytest.skip(f"permsc oracle not installed: {exc}")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("permsc oracle not installed (pip install --no-deps permsc==0.0.6)")
    if _ORACLE not in sys.modules:
        pkg = types.ModuleType(_ORACLE)
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules[_ORACLE] = pkg
    try:
        return importlib.import_module(f"{_ORACLE}.aggregator")
    except ImportError as exc:  # pragma: no cover - depends on the venv
        pytest.skip(f"permsc aggregators cannot be loaded (need numba, pulp): {exc}")


def _prefs(rankings: Sequence[Sequence[str]], items: Sequence[str]) -> np.ndarray:
    """permsc preference array: row b lists item indices best first, -1 padding."""
    where = {item: i for i, item in enumerate(items)}
    out = np.full((len(rankings), len(items)), -1, dtype=np.int64)
    for b, ranking in enumerate(rankings):
        out[b, : len(ranking)] = [where[item] for item in ranking]
    return out


def _permsc_kemeny(agg: types.ModuleType, prefs: np.ndarray) -> np.ndarray:
    """permsc's exact Kemeny ILP (pulp/CBC), silencing pulp's own v4 DeprecationWarnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return agg.KemenyOptimalAggregator().aggregate(prefs, verbose=False)


def _random_full(rng: np.random.Generator, n: int, b: int) -> list[list[str]]:
    items = [f"i{j}" for j in range(n)]
    return [[items[j] for j in rng.permutation(n)] for _ in range(b)]


_PERMS: dict[int, np.ndarray] = {}


def _brute_force(rankings: Sequence[Sequence[str]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(items, every permutation of their indices, its total Kendall distance) by enumeration."""
    items, pref = pairwise_preferences(rankings)
    n = len(items)
    if n not in _PERMS:
        _PERMS[n] = np.array(list(itertools.permutations(range(n))), dtype=np.int64)
    perms = _PERMS[n]
    pos = np.argsort(perms, axis=1)  # pos[p, a]: place of item a in permutation p
    before = pos[:, :, None] < pos[:, None, :]  # [p, a, c]: a before c
    cost = (before * pref.T[None, :, :]).sum(axis=(1, 2))  # sum_{a before c} P[c, a]
    return items, perms, cost


# --------------------------------------------------------------------------- Borda by hand


def test_borda_full_rankings_by_hand() -> None:
    # n = 3, points 3, 2, 1 by position.
    # a: 3 + 2 + 3 = 8; b: 2 + 3 + 1 = 6; c: 1 + 1 + 2 = 4
    rankings = [["a", "b", "c"], ["b", "a", "c"], ["a", "c", "b"]]
    assert borda_scores(rankings) == {"a": 8.0, "b": 6.0, "c": 4.0}
    assert borda(rankings) == ["a", "b", "c"]
    assert borda(rankings, k=2) == ["a", "b"]
    assert borda(rankings, k=10) == ["a", "b", "c"]


def test_borda_full_tie_goes_to_first_appearance() -> None:
    # a: 2 + 1 = 3, b: 1 + 2 = 3, mean positions both 0.5 -> first appearance decides
    assert borda([["a", "b"], ["b", "a"]]) == ["a", "b"]
    assert borda([["b", "a"], ["a", "b"]]) == ["b", "a"]


def test_borda_partial_zero_and_tie_by_mean_position() -> None:
    # union {a, b, c}, n = 3; absent items 0 points.
    # L1 = [a, b]: a 3, b 2.   L2 = [c, a, b]: c 3, a 2, b 1.
    # a = 5, b = 3, c = 3 -> b, c tie; mean position b (1 + 2) / 2 = 1.5, c 0 / 1 = 0 -> c first
    rankings = [["a", "b"], ["c", "a", "b"]]
    assert borda_scores(rankings) == {"a": 5.0, "b": 3.0, "c": 3.0}
    assert borda(rankings) == ["a", "c", "b"]


def test_borda_partial_share_convention_differs_from_zero() -> None:
    # n = 3.  L1 = [a]: a 3.  L2 = [b, c, a]: b 3, c 2, a 1.
    # zero:  a 3 + 1 = 4,  b 0 + 3 = 3,  c 0 + 2 = 2   -> [a, b, c]
    # share: L1 leaves 2 items to share points 2 + 1 -> 1.5 each:
    #        a 4,  b 1.5 + 3 = 4.5,  c 1.5 + 2 = 3.5   -> [b, a, c]
    rankings = [["a"], ["b", "c", "a"]]
    assert borda(rankings) == ["a", "b", "c"]
    assert borda_scores(rankings, absent="share") == {"a": 4.0, "b": 4.5, "c": 3.5}
    assert borda(rankings, absent="share") == ["b", "a", "c"]
    # every list hands out n (n + 1) / 2 = 6 points under "share"
    assert sum(borda_scores(rankings, absent="share").values()) == 2 * 6


def test_borda_universe_adds_unlisted_items_last_in_universe_order() -> None:
    # n = |universe| = 3: a gets 3, b and c 0 and never listed -> universe order
    assert borda([["a"]], universe=["b", "a", "c"]) == ["a", "b", "c"]
    assert borda([["a"]], universe=["c", "a", "b"]) == ["a", "c", "b"]
    assert borda_scores([["a"]], universe=["c", "a", "b"]) == {"a": 3.0, "c": 0.0, "b": 0.0}


# --------------------------------------------------------------------------- Kemeny by hand


def test_kemeny_unique_majority_order_differs_from_borda() -> None:
    # 3 x [a, b, c], 2 x [b, c, a].
    # P[a,b] = 3, P[b,a] = 2; P[a,c] = 3, P[c,a] = 2; P[b,c] = 5, P[c,b] = 0.
    # Kemeny [a, b, c]: P[b,a] + P[c,a] + P[c,b] = 2 + 2 + 0 = 4 (the majority order).
    # Borda: a 3*3 + 2*1 = 11, b 3*2 + 2*3 = 12, c 3*1 + 2*2 = 7 -> [b, a, c], distance
    #        P[a,b] + P[c,b] + P[c,a] = 3 + 0 + 2 = 5.
    rankings = [["a", "b", "c"]] * 3 + [["b", "c", "a"]] * 2
    assert kemeny(rankings) == ["a", "b", "c"]
    assert borda(rankings) == ["b", "a", "c"]
    assert total_kendall_distance(["a", "b", "c"], rankings) == 4
    assert total_kendall_distance(["b", "a", "c"], rankings) == 5
    _, _, cost = _brute_force(rankings)
    # all six orders (cost = sum over a before c of P[c, a]; each order + its reverse = 15):
    # abc 2+2+0 = 4, bac 3+0+2 = 5, bca 0+3+3 = 6, acb 2+2+5 = 9, cab 3+5+2 = 10, cba 5+3+3 = 11
    assert sorted(cost.tolist()) == [4, 5, 6, 9, 10, 11]
    assert kemeny(rankings, k=1) == ["a"]


def test_kemeny_condorcet_cycle_tie_broken_by_borda_then_first_appearance() -> None:
    # [a,b,c], [b,c,a], [c,a,b]: P[a,b] = P[b,c] = P[c,a] = 2, reverse pairs 1.
    # Each rotation costs 1 + 2 + 1 = 4 (e.g. [a,b,c]: P[b,a] + P[c,a] + P[c,b]); each
    # reversed rotation 2 + 1 + 2 = 5. Three optima; Borda scores all 6 and mean positions all
    # 1, so the tie-break order is first appearance a < b < c -> lexicographically smallest.
    rankings = [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    _, _, cost = _brute_force(rankings)
    assert sorted(cost.tolist()) == [4, 4, 4, 5, 5, 5]
    assert kemeny(rankings) == ["a", "b", "c"]
    assert kemeny([rankings[1], rankings[2], rankings[0]]) == ["b", "c", "a"]


def test_kemeny_partial_lists_listed_item_beats_unlisted() -> None:
    # [a, b], [b], [b]: P[a,b] = 1 (list 1); P[b,a] = 2 (b listed, a not, in lists 2 and 3).
    # [b, a] costs 1, [a, b] costs 2.
    rankings = [["a", "b"], ["b"], ["b"]]
    items, pref = pairwise_preferences(rankings)
    assert items == ["a", "b"] and pref.tolist() == [[0, 1], [2, 0]]
    assert kemeny(rankings) == ["b", "a"]
    assert total_kendall_distance(["b", "a"], rankings) == 1
    # two items missing from the same list carry no preference: [a], [b] -> P = 1 both ways,
    # both orders cost 1; Borda ties too (2 points, position 0 each) -> first appearance.
    assert pairwise_preferences([["a"], ["b"], ["c"]])[1].tolist() == [
        [0, 1, 1], [1, 0, 1], [1, 1, 0]
    ]
    assert kemeny([["a"], ["b"]]) == ["a", "b"]
    assert kemeny([["b"], ["a"]]) == ["b", "a"]


def test_kemeny_partial_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    pool = [f"m{j}" for j in range(7)]
    for _ in range(15):
        rankings = [
            [pool[j] for j in rng.permutation(7)[: rng.integers(1, 6)]]
            for _ in range(int(rng.integers(2, 6)))
        ]
        items, perms, cost = _brute_force(rankings)
        result = kemeny(rankings)
        assert total_kendall_distance(result, rankings) == cost.min()
        # tie-break: lexicographically smallest optimum in Borda order
        rank = {item: r for r, item in enumerate(borda(rankings))}
        optima = [[items[i] for i in p] for p in perms[cost == cost.min()]]
        assert result == min(optima, key=lambda o: [rank[x] for x in o])


# --------------------------------------------------------------------------- permsc oracle


def test_borda_agrees_with_permsc_on_full_rankings(permsc_agg: types.ModuleType) -> None:
    rng = np.random.default_rng(2024)
    aggregator = permsc_agg.BordaRankAggregator()
    ties_seen = 0
    for case in range(30):
        n = int(rng.integers(2, 21))
        b = int(rng.integers(1, 11))
        rankings = _random_full(rng, n, b)
        if case % 5 == 0:  # a ranking and its reverse: every item ties
            rankings = [rankings[0], rankings[0][::-1]]
        items = sorted(rankings[0])
        theirs = [items[i] for i in aggregator.aggregate(_prefs(rankings, items))]
        scores = borda_scores(rankings)
        ours = borda(rankings)
        # permsc orders by mean position; Borda score = B * (n - mean position)
        assert [scores[x] for x in theirs] == sorted(scores.values(), reverse=True)
        # identical modulo ties: re-sorting permsc's order with our tie-break gives ours
        first = {item: j for j, item in enumerate(rankings[0])}
        assert sorted(theirs, key=lambda x: (-scores[x], first[x])) == ours
        if len(set(scores.values())) == n:
            assert theirs == ours
        else:
            ties_seen += 1
    assert ties_seen >= 6


def test_kemeny_agrees_with_permsc_on_full_rankings(permsc_agg: types.ModuleType) -> None:
    rng = np.random.default_rng(1959)
    unique_seen = 0
    for _ in range(30):
        n = int(rng.integers(2, 9))
        rankings = _random_full(rng, n, int(rng.integers(1, 8)))
        items = sorted(rankings[0])
        prefs = _prefs(rankings, items)
        theirs = [items[i] for i in _permsc_kemeny(permsc_agg, prefs)]
        ours = kemeny(rankings)
        _, _, cost = _brute_force(rankings)
        best = int(cost.min())
        # same objective: ours, permsc's ILP and the enumeration all reach the optimum
        assert total_kendall_distance(ours, rankings) == best
        assert total_kendall_distance(theirs, rankings) == best
        # and both implementations count Kendall distance the same way
        where = {item: i for i, item in enumerate(items)}
        ours_prefs = np.array([where[x] for x in ours], dtype=np.int64)
        assert permsc_agg.compute_preferences_kendall_tau(prefs, ours_prefs) == best
        if int((cost == best).sum()) == 1:
            unique_seen += 1
            assert theirs == ours
    assert unique_seen >= 10


def test_permsc_borda_partial_convention_differs(permsc_agg: types.ModuleType) -> None:
    # [x, y], [y], [y]. permsc averages positions over the lists that contain an item:
    # x: 0 / 1 = 0, y: (1 + 0 + 0) / 3 = 1/3 -> [x, y]: an item named once at the top beats one
    # that two of three lists put first. Borda for partial lists (absent 0, Dwork et al. 2001):
    # n = 2, x: 2, y: 1 + 2 + 2 = 5 -> [y, x]. Our definition is the stated one; permsc's rule
    # is mean-rank-of-present, which coincides with Borda only on full rankings.
    rankings = [["x", "y"], ["y"], ["y"]]
    items = ["x", "y"]
    theirs = [items[i] for i in permsc_agg.BordaRankAggregator().aggregate(_prefs(rankings, items))]
    assert theirs == ["x", "y"]
    assert borda(rankings) == ["y", "x"]
    # "share": lists 2 and 3 leave x the one free point (2 - 1 + 1) / 2 = 1:
    # x 2 + 1 + 1 = 4, y 1 + 2 + 2 = 5 -> [y, x] as well
    assert borda_scores(rankings, absent="share") == {"x": 4.0, "y": 5.0}
    assert borda(rankings, absent="share") == ["y", "x"]


def test_permsc_kemeny_partial_convention_differs(permsc_agg: types.ModuleType) -> None:
    # Same lists. permsc's CDK graph only counts pairs listed together in one ranking, so only
    # list 1 (x before y) counts -> [x, y]. With "a listed item beats an unlisted one"
    # (Dwork et al. 2001; Fagin et al. 2003 K^(0)): P[x,y] = 1, P[y,x] = 2 -> [y, x], cost 1
    # versus 2. Both are optimal for their own objective; ours is the documented one.
    rankings = [["x", "y"], ["y"], ["y"]]
    items = ["x", "y"]
    prefs = _prefs(rankings, items)
    theirs = [items[i] for i in _permsc_kemeny(permsc_agg, prefs)]
    assert theirs == ["x", "y"]
    assert kemeny(rankings) == ["y", "x"]
    assert total_kendall_distance(theirs, rankings) == 2
    assert total_kendall_distance(["y", "x"], rankings) == 1


# --------------------------------------------------------------------------- batch helper


def test_borda_positions_matches_borda_and_batches() -> None:
    rng = np.random.default_rng(3)
    g, b, n = 50, 7, 9
    orders = np.stack([np.stack([rng.permutation(n) for _ in range(b)]) for _ in range(g)])
    orders[0, 1] = orders[0, 0][::-1]  # force ties in request 0
    orders[0, 2:] = np.stack([orders[0, 0], orders[0, 1]] * 3)[: b - 2]
    batch = borda_positions(orders)
    assert batch.shape == (g, n) and batch.dtype == np.int64
    for gi in range(g):
        expect = [int(x) for x in borda([[str(c) for c in row] for row in orders[gi]])]
        assert batch[gi].tolist() == expect
        assert borda_positions(orders[gi]).tolist() == expect
    # hand case: [0,1,2], [1,0,2]: total positions 0 -> 1, 1 -> 1, 2 -> 4; tie -> ranking 0
    assert borda_positions(np.array([[0, 1, 2], [1, 0, 2]])).tolist() == [0, 1, 2]
    assert borda_positions(np.array([[1, 0, 2], [0, 1, 2]])).tolist() == [1, 0, 2]


def test_borda_positions_bad_input() -> None:
    with pytest.raises(ValueError, match="permutation"):
        borda_positions(np.array([[0, 1, 1]]))
    with pytest.raises(ValueError, match="permutation"):
        borda_positions(np.array([[0, 1, 3]]))
    with pytest.raises(ValueError, match="2-D|3-D|1-D"):
        borda_positions(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="integer"):
        borda_positions(np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="empty"):
        borda_positions(np.zeros((0, 3), dtype=np.int64))


# --------------------------------------------------------------------------- properties


def test_properties_on_random_partial_lists() -> None:
    rng = np.random.default_rng(11)
    pool = [f"p{j}" for j in range(10)]
    for _ in range(25):
        rankings = [
            [pool[j] for j in rng.permutation(10)[: rng.integers(1, 8)]]
            for _ in range(int(rng.integers(1, 6)))
        ]
        union = {x for r in rankings for x in r}
        for result in (borda(rankings), borda(rankings, absent="share"), kemeny(rankings)):
            assert len(result) == len(union) and set(result) == union
        assert borda(rankings, k=3) == borda(rankings)[:3]
        assert kemeny(rankings, k=2) == kemeny(rankings)[:2]
        # Kemeny minimises the total distance, Borda does not
        assert total_kendall_distance(kemeny(rankings), rankings) <= total_kendall_distance(
            borda(rankings), rankings
        )


def test_copies_of_one_ranking_return_it() -> None:
    rng = np.random.default_rng(5)
    for n in (1, 2, 6, 11):
        ranking = [f"c{j}" for j in rng.permutation(n)]
        for b in (1, 4):
            assert borda([ranking] * b) == ranking
            assert kemeny([ranking] * b) == ranking
        assert borda_positions(np.array([[int(x[1:]) for x in ranking]] * 3)).tolist() == [
            int(x[1:]) for x in ranking
        ]
    top = ["q", "r", "s"]  # partial copies too
    assert borda([top] * 3, universe=["s", "t", "r", "q"]) == ["q", "r", "s", "t"]
    assert kemeny([top] * 3, universe=["s", "t", "r", "q"]) == ["q", "r", "s", "t"]


def test_result_does_not_depend_on_which_list_comes_first_without_ties() -> None:
    # counterfactual consensus: reordering the attribute values must not change the aggregate
    rankings = [["a", "b", "c", "d"], ["b", "a", "d"], ["a", "c", "b"]]
    # Borda n = 4: a 4+3+4 = 11, b 3+4+2 = 9, c 2+0+3 = 5, d 1+2+0 = 3 (no ties)
    assert borda_scores(rankings) == {"a": 11.0, "b": 9.0, "c": 5.0, "d": 3.0}
    for perm in itertools.permutations(rankings):
        assert borda(list(perm)) == ["a", "b", "c", "d"]
        assert kemeny(list(perm)) == kemeny(rankings)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("fn", [borda, kemeny])
def test_bad_input(fn) -> None:
    with pytest.raises(ValueError, match="rankings is empty"):
        fn([])
    with pytest.raises(ValueError, match="no items"):
        fn([[], []])
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        fn([["a"]], k=0)
    with pytest.raises(ValueError, match="k must be an int"):
        fn([["a"]], k=1.5)
    with pytest.raises(ValueError, match="ranking 1 lists item 'b' more than once"):
        fn([["a", "b"], ["b", "c", "b"]])
    with pytest.raises(ValueError, match="ranking 0 is a string"):
        fn(["abc"])
    with pytest.raises(ValueError, match="'z' is ranked but not in universe"):
        fn([["a", "z"]], universe=["a", "b"])
    with pytest.raises(ValueError, match="universe lists an item more than once"):
        fn([["a"]], universe=["a", "a"])


def test_kemeny_too_many_items() -> None:
    rankings = [[f"x{j}" for j in range(40)]]
    msg = r"^Kemeny aggregation is exact only up to 12 items \(got 40\); use borda$"
    with pytest.raises(ValueError, match=msg):
        kemeny(rankings)
    with pytest.raises(ValueError, match=r"up to 3 items \(got 4\)"):
        kemeny([["a", "b"], ["c", "d"]], max_items=3)
    with pytest.raises(ValueError, match="max_items must be in 1..20"):
        kemeny([["a"]], max_items=40)
    assert borda(rankings, k=3) == ["x0", "x1", "x2"]


def test_borda_bad_absent_rule() -> None:
    with pytest.raises(ValueError, match="absent must be 'zero' or 'share'"):
        borda([["a"]], absent="half")  # type: ignore[arg-type]


def test_total_kendall_distance_needs_a_full_ranking() -> None:
    with pytest.raises(ValueError, match="permutation of all aggregated items"):
        total_kendall_distance(["a"], [["a", "b"]])
