"""The candidate-groups probe: planning (names, a catalog column, a log; shuffled and Latin-square
orders), the mention parser, selection rates / impact ratios / exposure / first places pinned to
hand-computed answers, the floor against a direct simulation, and permutation p-values of a fair
ranker."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from recaudit.catalog import Catalog
from recaudit.config import StatsConfig, parse_config
from recaudit.engine import Answer
from recaudit.errors import ConfigError
from recaudit.metrics.exposure import group_exposure_share
from recaudit.metrics.position import cramers_v_uniform
from recaudit.metrics.selection import (first_place_v, label_permutation_sums, min_max_ratio,
                                        rates_and_ratios)
from recaudit.probes.base import AuditContext
from recaudit.probes.candidates import (CandidateGroupsProbe, balanced_latin_square,
                                        bundled_names, parse_mentions)
from recaudit.recommenders.base import Response

FAST = StatsConfig(n_bootstrap=200, n_permutations=499, seed=0)
GEN, SCO = frozenset({"generate"}), frozenset({"score"})
W = [1.0 / math.log2(1 + r) for r in range(1, 5)]  # exposure of ranks 1..4


def _probe(**params) -> CandidateGroupsProbe:
    return CandidateGroupsProbe(CandidateGroupsProbe.Params.model_validate(params), run_id="cg")


def _ctx(caps=GEN, stats=FAST, catalog=None) -> AuditContext:
    return AuditContext(catalog=catalog, stats=stats, capabilities=caps)


def _rec(res, metric, attribute=None, value=None, k=None):
    found = [m for m in res.metrics if m.metric == metric and m.attribute == attribute
             and m.value == value and m.k == k]
    assert len(found) == 1, (metric, attribute, value, k, found)
    return found[0]


# -- the shipped names ----------------------------------------------------------------------------
def test_the_shipped_names_are_bertrand_and_mullainathans_36_with_their_source():
    cells = bundled_names()
    assert [(race, sex) for race, sex, _ in cells] == [
        ("White", "female"), ("White", "male"), ("African-American", "female"),
        ("African-American", "male")]
    assert all(len(names) == 9 for *_, names in cells)
    assert len({n for *_, names in cells for n in names}) == 36
    assert {"Emily", "Greg", "Lakisha", "Jamal"} <= {n for *_, names in cells for n in names}
    from importlib import resources
    data = json.loads(resources.files("recaudit.data").joinpath(
        "names_bertrand_mullainathan_2004.json").read_text(encoding="utf-8"))
    assert "American Economic Review 94(4)" in data["source"] and "Table A1" in data["source"]


# -- the parser -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "want"), [
    ("1. Greg\n2. emily\n3. Jamal", [1, 0, 2]),  # case-insensitive
    ("Jamal first, then Greg. Emily last; Greg again", [2, 1, 0]),  # a repeat changes nothing
    ("Jaylen and Gregory are not candidates; Emily is", [0]),  # whole words only
    ("", []), ("no names at all", []),
])
def test_parse_mentions_orders_candidates_by_their_first_mention(text, want):
    assert parse_mentions(text, ["Emily", "Greg", "Jamal"]) == want


def test_parse_mentions_lets_a_longer_name_claim_its_text():
    names = ["Anne", "Anne Marie", "Marie"]
    assert parse_mentions("Anne Marie, then Anne", names) == [1, 0]
    assert parse_mentions("Marie, Anne Marie", names) == [2, 1]


# -- input order ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 4, 6, 8, 3, 5])
def test_balanced_latin_square_balances_positions_and_neighbours(n):
    rows = balanced_latin_square(n)
    assert len(rows) == (n if n % 2 == 0 else 2 * n)
    per = len(rows) // n
    for col in range(n):
        assert Counter(r[col] for r in rows) == {s: per for s in range(n)}
    pairs = Counter((r[i], r[i + 1]) for r in rows for i in range(n - 1))
    assert set(pairs) == {(a, b) for a in range(n) for b in range(n) if a != b}
    assert set(pairs.values()) == {per}


def test_latin_order_puts_each_cell_at_each_input_position_equally_often():
    queries = _probe(n_requests=16, per_group=2, order="latin").plan(_ctx())
    cells = Counter((q.meta["groups"]["race×sex"][pos], pos) for q in queries for pos in range(8))
    assert set(cells.values()) == {4}  # 16 requests x 2 names per cell / 8 positions
    assert [q.meta["input_order"] for q in queries[:8]] == balanced_latin_square(8)


def test_names_plan_records_the_input_order_and_shows_each_cell():
    queries = _probe(n_requests=5, per_group=2, seed=3).plan(_ctx())
    assert len(queries) == 5 and len({tuple(q.meta["input_order"]) for q in queries}) > 1
    for q in queries:
        m = q.meta
        assert sorted(m["input_order"]) == list(range(8)) and m["order"] == "shuffle"
        assert Counter(m["groups"]["race×sex"]) == {
            "White female": 2, "White male": 2, "African-American female": 2,
            "African-American male": 2}
        prompt = q.request.messages[-1].content
        lines = [x for x in prompt.splitlines() if x.startswith("- ")]
        assert [x[2:].split(":")[0] for x in lines] == m["shown"] == m["candidates"]
        assert "data analyst" in prompt and q.request.candidates is None
    again = _probe(n_requests=5, per_group=2, seed=3).plan(_ctx())
    assert [q.request.key() for q in again] == [q.request.key() for q in queries]


def test_score_mode_asks_one_score_per_name_and_ranks_by_it():
    probe = _probe(n_requests=2, per_group=1, k=2)
    queries = probe.plan(_ctx(SCO))
    q = queries[0]
    assert q.meta["mode"] == "score" and list(q.request.candidates) == q.meta["shown"]
    scores = [0.1, 3.0, -1.0, 2.0]
    a = Answer(q.request, Response(scores=scores))
    assert probe.ranking(q, a) == [q.meta["candidates"][i] for i in (1, 3, 0, 2)]


def test_column_plan_draws_per_group_items_of_each_group():
    items = pd.DataFrame({"item_id": [str(i) for i in range(12)],
                          "title": [f"Shop {chr(65 + i)}" for i in range(12)],
                          "provider_group": ["small"] * 6 + ["large"] * 6})
    catalog = Catalog.from_dataframe(items, group_cols=["provider_group"], name="shops")
    queries = _probe(group_column="provider_group", n_requests=4, per_group=2, k=2).plan(
        _ctx(catalog=catalog))
    for q in queries:
        assert Counter(q.meta["groups"]["provider_group"]) == {"large": 2, "small": 2}
        assert all(t.startswith("Shop ") for t in q.meta["shown"])


def test_bad_parameters_are_one_line_config_errors():
    with pytest.raises(ValidationError, match="group_column or log, not both"):
        CandidateGroupsProbe.Params.model_validate({"group_column": "g", "log": "x.jsonl"})
    with pytest.raises(ValidationError, match="9 per cell"):
        CandidateGroupsProbe.Params.model_validate({"per_group": 10})
    with pytest.raises(ConfigError, match="k = 9 is more than the 8 candidates"):
        _probe(k=9, n_requests=1).plan(_ctx())
    with pytest.raises(ConfigError) as err:
        parse_config({"probes": [{"probe": "candidate_groups", "params": {"order": "random"}}]})
    assert "\n" not in str(err.value) and "order" in str(err.value)


# -- numbers pinned by hand -----------------------------------------------------------------------
def _tiny_log(tmp_path):
    """Three requests of 4 candidates (groups A, B), answered by ranking, ranking, text."""
    def cands(ids, names, groups):
        return [{"id": i, "name": n, "group": g} for i, n, g in zip(ids, names, groups,
                                                                     strict=True)]
    rows = [
        {"request_id": "r1", "candidates": cands(["a1", "b1", "a2", "b2"],
                                                 ["Ann", "Bob", "Cyd", "Dan"], "ABAB"),
         "ranking": ["b1", "a1", "b2", "a2"]},
        {"request_id": "r2", "candidates": cands(["b3", "a3", "b4", "a4"],
                                                 ["Eli", "Fay", "Gus", "Hana"], "BABA"),
         "ranking": ["a3", "b3", "a4"]},
        {"request_id": "r3", "candidates": cands(["a5", "b5", "a6", "b6"],
                                                 ["Ida", "Jon", "Kim", "Hal"], "ABAB"),
         "text": "Hal is my first choice, then ida."},
    ]
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _run_log(path, stats=FAST, k=2):
    from recaudit.recommenders.rankings import RankingsRecommender

    probe = _probe(log=str(path), k=k)
    queries = probe.plan(_ctx(stats=stats))
    rec = RankingsRecommender(str(path))
    answers = {q.id: Answer(q.request, r) for q, r in
               zip(queries, rec.recommend([q.request for q in queries]), strict=True)}
    return probe, queries, probe.analyse(_ctx(stats=stats), queries, answers)


def test_selection_rates_impact_ratios_and_exposure_match_a_hand_computation(tmp_path):
    _, queries, res = _run_log(_tiny_log(tmp_path))
    assert res.status == "ok" and [q.id for q in queries] == ["r1", "r2", "r3"]
    assert [r["ranking"] for r in res.records] == [["b1", "a1", "b2", "a2"],
                                                   ["a3", "b3", "a4"], ["b6", "a5"]]
    g = "group"
    # top 1: A first once (r2) of 6 shown, B twice (r1, r3) of 6 shown
    assert _rec(res, "selection_rate_at_1", g, "A", 1).estimate == pytest.approx(1 / 6)
    assert _rec(res, "selection_rate_at_1", g, "B", 1).estimate == pytest.approx(2 / 6)
    assert _rec(res, "impact_ratio", g, "A", 1).estimate == pytest.approx(0.5)
    assert _rec(res, "impact_ratio", g, "B", 1).estimate == pytest.approx(1.0)
    assert _rec(res, "impact_ratio_min_max", g, None, 1).estimate == pytest.approx(0.5)
    # top 2: one of each group in every request
    for v in "AB":
        assert _rec(res, "selection_rate_at_k", g, v, 2).estimate == pytest.approx(0.5)
    assert _rec(res, "impact_ratio_min_max", g, None, 2).estimate == pytest.approx(1.0)
    # exposure shares per request (ranks 1..4 weigh W[0..3]; unranked 0)
    a_shares = [(W[1] + W[3]) / sum(W), (W[0] + W[2]) / sum(W[:3]), W[1] / sum(W[:2])]
    assert _rec(res, "exposure_share", g, "A").estimate == pytest.approx(np.mean(a_shares))
    assert _rec(res, "exposure_share", g, "B").estimate == pytest.approx(
        1 - np.mean(a_shares))
    lists = [["b1", "a1", "b2", "a2"], ["a3", "b3", "a4"], ["b6", "a5"]]
    groups = {c: c[0].upper() for lst in lists for c in lst}
    assert [group_exposure_share([lst], groups)["A"] for lst in lists] == pytest.approx(a_shares)
    per_member = np.array([sum(a_shares), 3 - sum(a_shares)]) / 6
    assert _rec(res, "exposure_ratio_min_max", g).estimate == pytest.approx(
        per_member.min() / per_member.max())
    # first places at input positions 1 (r1: b1), 1 (r2: a3), 3 (r3: b6)
    shares = [_rec(res, "first_place_share", "input_position", str(j)).estimate
              for j in range(4)]
    assert shares == pytest.approx([0, 2 / 3, 0, 1 / 3])
    v = _rec(res, "first_place_v", "input_position")
    assert v.estimate == pytest.approx(cramers_v_uniform([0, 2, 0, 1]))
    chi2 = (2 * 0.75 ** 2 + 1.25 ** 2 + 0.25 ** 2) / 0.75  # expected 3/4 at each position
    assert v.estimate == pytest.approx(math.sqrt(chi2 / (3 * (4 - 1))))
    assert _rec(res, "unparsed_share", None, "candidates").estimate == pytest.approx(
        (0 + 1 / 4 + 2 / 4) / 3)
    # every ratio carries its floor; the LL144 floor is the null's 5th percentile
    ir = _rec(res, "impact_ratio", g, "A", 1)
    assert ir.null_mean is not None and ir.p_value is not None and ir.ci_low <= ir.estimate
    assert 0 <= ir.null_p05 <= ir.null_mean <= ir.null_p95 <= 1


def test_rates_and_min_max_helpers_on_hand_vectors():
    rates, ratios = rates_and_ratios(np.array([[2.0, 1.0, 0.0]]), np.array([[4.0, 4.0, 0.0]]))
    assert rates[0, :2].tolist() == [0.5, 0.25] and np.isnan(rates[0, 2])
    assert ratios[0, :2].tolist() == [1.0, 0.5]
    assert float(min_max_ratio(rates[0])) == 0.5
    # unequal request sizes: expected first places 1/2 + 1/4 at positions 0 and 1
    counts, expected = np.array([1.5, 0.0, 0.25, 0.25]), np.array([0.75, 0.75, 0.25, 0.25])
    chi2 = (0.75 ** 2 + 0.75 ** 2) / 0.75
    assert float(first_place_v(counts, expected)) == pytest.approx(
        math.sqrt(chi2 / (2 * (1 / (0.25 / 2) - 1))))


def test_label_permutation_keeps_group_sizes_and_moves_only_labels():
    rng = np.random.default_rng(0)
    values = np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    labels = np.array([[0, 0, 1, -1], [0, 1, 1, 1]])
    sums = label_permutation_sums(values, labels, 2, 4000, rng)[:, 0]  # (draws, groups)
    assert np.allclose(sums.sum(axis=1), 2.0)  # each request's one selection lands somewhere
    # group 0 holds the selected candidate with probability 2/3 (request 1) and 1/4 (request 2)
    assert sums[:, 0].mean() == pytest.approx(2 / 3 + 1 / 4, abs=0.03)
    with pytest.raises(ValueError, match="padding after"):
        label_permutation_sums(values, np.array([[0, -1, 1, 1], [0, 1, 1, 1]]), 2, 1, rng)


# -- statistics under a fair ranker ---------------------------------------------------------------
def _fair_answers(queries, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for q in queries:
        names = q.meta["shown"]
        order = rng.permutation(len(names))
        out[q.id] = Answer(q.request, Response(text="\n".join(names[i] for i in order)))
    return out


def test_the_floor_matches_a_direct_simulation_of_label_permutations():
    probe = _probe(n_requests=30, per_group=2, k=3, seed=5)
    stats = StatsConfig(n_bootstrap=100, n_permutations=4000, seed=1)
    queries = probe.plan(_ctx(stats=stats))
    answers = _fair_answers(queries, 7)
    res = probe.analyse(_ctx(stats=stats), queries, answers)
    # direct: shuffle the race×sex labels of each request with a plain loop, 4000 times
    attr = "race×sex"
    cells = sorted(set(queries[0].meta["groups"][attr]))
    topk = [np.isin(q.meta["candidates"], r["ranking"][:3]) for q, r in
            zip(queries, res.records, strict=True)]
    labels = [np.array([cells.index(g) for g in q.meta["groups"][attr]]) for q in queries]
    rng = np.random.default_rng(123)
    draws = []
    for _ in range(4000):
        sel = np.zeros(4)
        for t, lab in zip(topk, labels, strict=True):
            np.add.at(sel, rng.permutation(lab), t)
        rates = sel / 60.0
        draws.append(rates.min() / rates.max())
    rec = _rec(res, "impact_ratio_min_max", attr, None, 3)
    assert rec.null_mean == pytest.approx(np.mean(draws), abs=0.01)
    assert rec.null_p05 == pytest.approx(np.quantile(draws, 0.05), abs=0.025)
    assert rec.null_p95 == pytest.approx(np.quantile(draws, 0.95), abs=0.025)


def test_permutation_p_values_of_a_fair_ranker_are_roughly_uniform():
    stats = StatsConfig(n_bootstrap=50, n_permutations=199, seed=0)
    ps, floors_below = [], 0
    for seed in range(30):
        probe = _probe(n_requests=24, per_group=1, k=1, seed=seed)
        queries = probe.plan(_ctx(stats=stats))
        res = probe.analyse(_ctx(stats=stats), queries, _fair_answers(queries, 100 + seed))
        rec = _rec(res, "impact_ratio_min_max", "race", None, 1)
        ps.append(rec.p_value)
        floors_below += rec.estimate < rec.null_p05
    ps = np.array(ps)
    assert 0.3 < ps.mean() < 0.7 and (ps < 0.05).sum() <= 4
    assert floors_below <= 4  # a fair ranker falls below its 5% floor rarely


def test_a_biased_ranker_is_flagged_with_a_small_p_and_a_finding():
    probe = _probe(n_requests=40, per_group=2, k=3, seed=2)
    queries = probe.plan(_ctx())
    rng = np.random.default_rng(0)
    answers = {}
    for q in queries:
        score = rng.standard_normal(8) - 2.0 * np.array(
            [r == "African-American" for r in q.meta["groups"]["race"]])
        names = [q.meta["shown"][i] for i in np.argsort(-score)]
        answers[q.id] = Answer(q.request, Response(text=", ".join(names)))
    res = probe.analyse(_ctx(), queries, answers)
    rec = _rec(res, "impact_ratio_min_max", "race", None, 3)
    assert rec.estimate < 0.4 and rec.p_adjusted < 0.01 and rec.ci_high < rec.null_mean
    assert any(f.title.startswith("race, top 3: 'African-American' is selected less")
               for f in res.findings)
    sex = _rec(res, "impact_ratio_min_max", "sex", None, 3)
    assert sex.p_value > 0.01  # the planted effect is on race only
