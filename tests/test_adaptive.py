"""adaptive.py: budgets, rounds, confidence sequences of records, and adaptive audits end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from recaudit.adaptive import (Budget, RecordLook, decide, judge_sequentially, looks,
                               record_e_path, record_path, record_sequence, unit_order)
from recaudit.errors import EXIT_BUDGET, EXIT_GATE_FAILED, EXIT_OK, ConfigError
from recaudit.results import MetricRecord, ProbeResult, UnitTable
from recaudit.sequential import betting_confidence_sequence

from .gate_recommenders import catalog_csv


# -- budgets -----------------------------------------------------------------------------------
def test_budget_forms_and_costs():
    assert Budget.parse("requests=100") == Budget("requests", 100)
    assert Budget.parse("tokens=5000").cost(120, 80) == 200
    b = Budget.parse("cost=2.5, in=0.5, out=1.5")
    assert (b.kind, b.limit, b.price_in, b.price_out) == ("cost", 2.5, 0.5, 1.5)
    assert b.cost(1000, 2000) == pytest.approx(0.5 + 3.0)
    assert Budget.parse("requests=7").cost(10_000, 10_000) == 1.0


@pytest.mark.parametrize("text", ["", "requests", "requests=ten", "requests=1.5", "tokens=-1",
                                  "cost=2", "cost=2,in=1", "dollars=3", "requests=1,tokens=2",
                                  "requests=nan"])
def test_bad_budgets_are_one_line_config_errors(text):
    with pytest.raises(ConfigError) as err:
        Budget.parse(text)
    assert "\n" not in str(err.value) and "requests=N" in str(err.value)


def test_a_bad_budget_in_the_config_names_its_key(tmp_path):
    from recaudit.config import parse_config

    with pytest.raises(ConfigError, match="engine.budget"):
        parse_config({"name": "x", "model": "python:tests.gate_recommenders:unbiased",
                      "engine": {"budget": "requests=lots"}, "probes": []})


# -- rounds ------------------------------------------------------------------------------------
def test_looks_step_a_sixteenth_up_to_the_cap():
    assert looks(400) == list(range(25, 401, 25))
    assert looks(160) == list(range(10, 161, 10))
    assert looks(100, min_units=10) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert looks(170, min_units=5) == [11, 22, 33, 44, 55, 66, 77, 88, 99, 110, 121, 132, 143,
                                       154, 165, 170]
    assert looks(40, min_units=10) == [10, 20, 30, 40]
    assert looks(7) == [7] and looks(0) == []


def test_unit_order_is_a_seeded_permutation_per_probe_run():
    units = [3, 1, 2, 3, 0]  # repeated units count once
    a = unit_order(units, 0, "counterfactual:fairllm")
    assert sorted(a) == ["0", "1", "2", "3"]
    assert a == unit_order(units, 0, "counterfactual:fairllm")
    many = list(range(50))
    assert unit_order(many, 0, "a") != unit_order(many, 1, "a")
    assert unit_order(many, 0, "a") != unit_order(many, 0, "b")


# -- confidence sequences of records -----------------------------------------------------------
def _table(values, conditions, metric="jaccard"):
    return UnitTable(id="t", metric=metric, conditions=conditions,
                     units=[str(u) for u in range(len(values))],
                     values=[[None if v is None else float(v) for v in row] for row in values])


def _rec(statistic, value=None):
    return MetricRecord(probe="p", metric="snsr_jaccard", statistic=statistic, value=value,
                        table="t", estimate=0.0, n=1)


def test_a_mean_record_is_the_betting_sequence_of_its_column_in_asking_order():
    rng = np.random.default_rng(0)
    x = rng.random((30, 2))
    order = [str(u) for u in rng.permutation(30)]
    got = record_sequence(_rec("mean", "b"), _table(x, ["a", "b"]), order, 0.05)
    lower, upper = betting_confidence_sequence(x[[int(u) for u in order], 1], 0.0, 1.0, 0.05)
    assert got == (lower[-1], upper[-1])
    # units not asked yet are left out; a missing cell is skipped
    x[int(order[0]), 1] = np.nan
    part = record_sequence(_rec("mean", "b"), _table(x, ["a", "b"]), order[:10], 0.05)
    lower, upper = betting_confidence_sequence(x[[int(u) for u in order[1:10]], 1], 0, 1, 0.05)
    assert part == (lower[-1], upper[-1])


def test_a_two_condition_range_is_the_absolute_paired_difference():
    x = np.array([[0.0, 1.0]] * 20)  # the paired difference is -1 for every unit
    lo, hi = record_sequence(_rec("range"), _table(x, ["f", "m"]), [str(u) for u in range(20)],
                             0.01)
    lower, upper = betting_confidence_sequence(np.full(20, -1.0), -1.0, 1.0, 0.01)
    assert (lo, hi) == (-upper[-1], max(abs(lower[-1]), abs(upper[-1])))
    assert 0 < lo < 1 and hi == 1.0


def test_a_group_gap_pairs_the_kth_member_of_each_group():
    """Groups of different units: the k-th arrival of one group against the k-th of the other;
    a mixed table (some units in both) falls back to a sequence per group."""
    rng = np.random.default_rng(3)
    n = 40
    group = np.arange(n) % 2  # alternate arrivals
    x = np.full((n, 2), np.nan)
    x[np.arange(n), group] = rng.random(n)
    order = [str(u) for u in range(n)]
    got = record_sequence(_rec("range"), _table(x, ["a", "b"]), order, 0.05)
    d = x[group == 0, 0] - x[group == 1, 1]
    lower, upper = betting_confidence_sequence(d, -1.0, 1.0, 0.05)
    assert got == (max(0.0, lower[-1], -upper[-1]), max(abs(lower[-1]), abs(upper[-1])))
    mixed = x.copy()
    mixed[0, 1] = 0.5  # one unit in both groups: neither paired nor disjoint
    per_group = record_sequence(_rec("range"), _table(mixed, ["a", "b"]), order, 0.05)
    cols = [betting_confidence_sequence(mixed[~np.isnan(mixed[:, c]), c], 0, 1, 0.025)
            for c in range(2)]
    lows, ups = [c[0][-1] for c in cols], [c[1][-1] for c in cols]
    assert per_group == (max(0.0, max(lows) - min(ups)), max(ups) - min(lows))


def test_record_sequences_cover_the_population_statistic():
    """Time-uniform coverage for range (paired and per-condition), std and ratio.

    The condition sequences are running intersections, so the interval after the last unit
    lies inside every earlier one: covering the truth there is covering it at every look.
    """
    rng = np.random.default_rng(1)
    means = {2: np.array([0.4, 0.5]), 6: np.array([0.3, 0.35, 0.4, 0.45, 0.5, 0.55])}
    truth = {"range": lambda m: m.max() - m.min(), "std": lambda m: m.std(),
             "ratio": lambda m: m.min() / m.max()}
    misses, runs, n = {}, 60, 80
    order = [str(u) for u in range(n)]
    for c, mu in means.items():
        for stat, fn in truth.items():
            miss = 0
            for _ in range(runs):
                x = (rng.random((n, c)) < mu).astype(float)
                lo, hi = record_sequence(_rec(stat), _table(x, [str(i) for i in range(c)]),
                                         order, 0.05)
                miss += not lo - 1e-12 <= fn(mu) <= hi + 1e-12
            misses[(c, stat)] = miss / runs
    assert all(rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs) for rate in misses.values()), \
        misses
    # and the sequences are informative: the paired range excludes 0 for a clear gap
    x = (rng.random((n, 2)) < np.array([0.2, 0.8])).astype(float)
    assert record_sequence(_rec("range"), _table(x, ["a", "b"]), order, 0.05)[0] > 0.2


def test_statistics_without_a_sequence_and_metrics_without_a_range_give_none():
    x = np.zeros((5, 4))
    assert record_sequence(_rec("auc_macro_ovr"), _table(x, list("abcd")), list("01234"),
                           0.05) is None
    assert record_sequence(_rec("range"), _table(x, list("abcd"), metric="no-such-metric"),
                           list("01234"), 0.05) is None


def test_gate_decisions_in_margin_form():
    from recaudit.gates import GateSpec

    probe = ProbeResult(id="p", probe="p", units=[_table([[0.0, 1.0]] * 40, ["f", "m"])])
    order = {"p": [str(u) for u in range(40)]}
    fail = GateSpec(probe="p", metric="snsr_jaccard", max=0.2)
    assert judge_sequentially([_rec("range")], {"p": probe}, order, fail, 0.01)[0] == "fail"
    loose = GateSpec(probe="p", metric="snsr_jaccard", min=0.0, max=1.0)
    assert judge_sequentially([_rec("range")], {"p": probe}, order, loose, 0.01)[0] == "pass"
    few = {"p": order["p"][:3]}
    assert judge_sequentially([_rec("range")], {"p": probe}, few, fail, 0.01)[0] == "undecided"
    no_table = MetricRecord(probe="p", metric="snsr_jaccard", estimate=0.0)
    decision, sequential, _ = judge_sequentially([no_table], {"p": probe}, order, fail, 0.01)
    assert decision == "undecided" and not sequential


class _Gate:
    def __init__(self, max=None, min=None):
        self.max, self.min = max, min


def test_e_values_of_a_mean_at_its_bound_rarely_reach_one_over_alpha():
    """Ville: under H0 (mean = the bound) the e-process crosses 1/alpha in <= alpha of runs."""
    crossed = 0
    for seed in range(300):
        x = np.random.default_rng(seed).binomial(1, 0.3, size=(150, 1)).astype(float)
        e = record_e_path(_rec("mean", "a"), _table(x, ["a"]), [str(u) for u in range(150)],
                          _Gate(max=0.3), at=range(1, 151))
        crossed += max(e) >= 1 / 0.05
    assert crossed / 300 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)
    # and it grows under the alternative: mean 0.6 against max 0.3
    x = np.random.default_rng(0).binomial(1, 0.6, size=(150, 1)).astype(float)
    e = record_e_path(_rec("mean", "a"), _table(x, ["a"]), [str(u) for u in range(150)],
                      _Gate(max=0.3))
    assert e[-1] > 1e3


def test_e_values_of_a_paired_range_and_forms_without_one():
    x = np.random.default_rng(1).uniform(size=(120, 4))
    x[:, 0] = np.clip(x[:, 0] + 0.5, 0, 1)  # condition 0 far above the others
    order = [str(u) for u in range(120)]
    e = record_e_path(_rec("range"), _table(x, list("abcd")), order, _Gate(max=0.1))
    assert e[-1] > 6 * 100  # the average over 6 pairs: one strong pair's share
    fair = np.random.default_rng(2).uniform(size=(120, 4))
    assert record_e_path(_rec("range"), _table(fair, list("abcd")), order,
                         _Gate(max=0.1))[-1] < 10
    # a min bound on a range, a std, a bound the values cannot reach: no e-value
    assert record_e_path(_rec("range"), _table(x, list("abcd")), order, _Gate(min=0.1)) is None
    assert record_e_path(_rec("std"), _table(x, list("abcd")), order, _Gate(max=0.1)) is None
    # a bound at or above the width: the null holds for every law, e stays 1
    assert record_e_path(_rec("range"), _table(x, list("abcd")), order,
                         _Gate(max=1.0)) == [1.0]


def test_the_pass_side_of_a_mean_and_of_a_pair_reads_one_sided_bounds_at_alpha():
    """The pass side is one_sided_bounds (aGRAPA, c = 0.9) on the column or pair, in order."""
    from recaudit.adaptive import TRUNCATION
    from recaudit.sequential import one_sided_bounds

    rng = np.random.default_rng(5)
    x = rng.random((60, 2))
    order = [str(u) for u in rng.permutation(60)]
    rows = [int(u) for u in order]
    (got,) = record_path(_rec("mean", "b"), _table(x, ["a", "b"]), order, 0.01, side="pass")
    lower, upper = one_sided_bounds(x[rows, 1], 0.0, 1.0, 0.01, truncation=TRUNCATION)
    assert got == (lower[-1], upper[-1])
    (got,) = record_path(_rec("range"), _table(x, ["a", "b"]), order, 0.01, side="pass")
    lower, upper = one_sided_bounds(x[rows, 0] - x[rows, 1], -1.0, 1.0, 0.01,
                                    truncation=TRUNCATION)
    assert got == (max(0.0, lower[-1], -upper[-1]), max(abs(lower[-1]), abs(upper[-1])))


def test_the_pass_side_reads_each_pair_at_alpha():
    """Intersection-union: the pass side's upper end is below the fail side's (alpha / pairs)."""
    x = np.random.default_rng(3).uniform(size=(200, 6))
    order = [str(u) for u in range(200)]
    (fl, fu), = record_path(_rec("range"), _table(x, list("abcdef")), order, 0.01)
    (pl, pu), = record_path(_rec("range"), _table(x, list("abcdef")), order, 0.01, side="pass")
    assert pu < fu and pl >= fl
    (fl, fu), = record_path(_rec("std"), _table(x, list("abcdef")), order, 0.01)
    (pl, pu), = record_path(_rec("std"), _table(x, list("abcdef")), order, 0.01, side="pass")
    assert pu < fu
    with pytest.raises(ValueError):
        record_path(_rec("range"), _table(x, list("abcdef")), order, 0.01, side="both")


def test_decide_uses_e_bh_across_records_and_blocks_a_pass_on_a_missing_record():
    gate = _Gate(max=0.1)
    inside = (0.0, 0.05)
    # e-BH at 0.01 over 2 records: both at 150 >= 2 / (2 * 0.01) = 100 -> fail; Bonferroni
    # (e >= 2 / 0.01 = 200 for one of them) would not
    two = [RecordLook("a", inside, 150.0), RecordLook("b", inside, 150.0)]
    decision, how = decide(two, gate, 0.01)
    assert decision == "fail" and "e-BH over 2" in how
    assert decide([RecordLook("a", inside, 150.0), RecordLook("b", inside, 1.0)], gate,
                  0.01)[0] == "pass"
    assert decide([RecordLook("a", inside, 150.0), RecordLook("b", (0.0, 0.2), 1.0)], gate,
                  0.01)[0] == "undecided"
    # a record without an e-value fails on its fail-side CS beyond the bound
    no_e = [RecordLook("a", (0.2, 0.4), None, (0.15, 0.45))]
    assert decide(no_e, gate, 0.01)[0] == "fail"
    # a third record with no sequential form: K = 3, no pass; e-BH at 0.01 * 2 / 3
    assert decide(two[:1] + [RecordLook("b", inside, 1.0)], gate, 0.01, n_records=3)[0] == \
        "undecided"


def test_a_fair_model_rarely_fails_a_sequential_gate_of_several_records():
    """Three attributes, no effect, gate max 0.05 on each gap: false fails <= alpha."""
    from recaudit.gates import GateSpec

    spec = GateSpec(probe="p", metric="snsr_jaccard", max=0.05)
    false_fails = 0
    runs = 100
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        tables = [_table(rng.uniform(size=(160, 2)), list("ab")) for _ in range(3)]
        for i, t in enumerate(tables):
            t.id = f"t{i}"
        probe = ProbeResult(id="p", probe="p", units=tables)
        recs = [MetricRecord(probe="p", metric="snsr_jaccard", statistic="range",
                             table=f"t{i}", attribute=f"a{i}", estimate=0.0, n=1)
                for i in range(3)]
        order, at = [str(u) for u in range(160)], looks(160)
        paths = [(record_path(r, t, order, 0.05, at, side="pass"),
                  record_e_path(r, t, order, spec, at)) for r, t in zip(recs, tables)]
        for i, _ in enumerate(at):
            decision = decide([RecordLook(r.attribute, p[i], e[i]) for r, (p, e)
                               in zip(recs, paths)], spec, 0.05)[0]
            if decision != "undecided":
                false_fails += decision == "fail"
                break
    # judge_sequentially reads the same paths at a look
    order = {"p": [str(u) for u in range(looks(160)[0])]}
    assert judge_sequentially(recs, {"p": probe}, order, spec, 0.05)[0] == decide(
        [RecordLook(r.attribute, p[0], e[0]) for r, (p, e) in zip(recs, paths)], spec,
        0.05)[0]
    assert false_fails / runs <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)


# -- adaptive audits end to end ----------------------------------------------------------------
def _audit_config(tmp_path, function: str, probe: dict, gates: list, *, engine=None,
                  stats=None):
    """An adaptive audit of ``tests.gate_recommenders.<function>`` on the titles catalog."""
    from recaudit.config import parse_config

    csv = tmp_path / "titles.csv"
    if not csv.exists():
        catalog_csv(csv)
    return parse_config({
        "name": f"adaptive-{function}", "model": f"python:tests.gate_recommenders:{function}",
        "catalog": {"source": "csv", "path": str(csv), "id_col": "id", "title_col": "title"},
        "probes": [probe],
        "engine": {"cache": str(tmp_path / f"{function}.sqlite"), "progress": False,
                   "adaptive": True, **(engine or {})},
        "stats": stats or {"n_bootstrap": 200, "n_permutations": 200, "min_group_size": 5},
        "gates": gates})


def _subjects(n: int) -> dict:
    return {"source": "inline", "n": n, "items": [f"Subject {i}" for i in range(n)]}


def _config(tmp_path, function: str, *, gates, engine=None, n_subjects=120):
    return _audit_config(tmp_path, function, {
        "probe": "counterfactual", "id": "cf", "params": {
            "k": 10, "attributes": {"gender": ["a female", "a male"]},
            "similarities": ["jaccard"], "n_examples": 0, "subjects": _subjects(n_subjects)}},
        gates, engine=engine)


GENDER = {"name": "gender", "probe": "cf", "metric": "snsr_jaccard", "attribute": "gender",
          "max": 0.2}


def test_a_biased_recommender_fails_early_and_a_rerun_reuses_the_cache(tmp_path):
    from recaudit.audit import run_audit

    cfg = _config(tmp_path, "biased", gates=[{**GENDER, "max": 0.1}])
    result = run_audit(cfg, progress=False)
    (gate,) = result.gates
    assert not gate.passed and gate.decision == "sequential"
    assert gate.decided_after < 120 and "decided after" in gate.message
    assert gate.path and gate.path[-1]["lower"] > 0.1
    engine = result.provenance.engine
    assert engine["units_asked"] == {"cf": gate.decided_after}
    assert engine["computed"] == 3 * gate.decided_after < 3 * 120  # neutral + 2 values per unit
    (probe,) = result.probes
    assert probe.n_queries == 360 and any("adaptive:" in w for w in probe.warnings)
    again = run_audit(cfg, progress=False)
    assert again.provenance.engine["computed"] == 0
    assert [g.model_dump() for g in again.gates] == [g.model_dump() for g in result.gates]


def test_an_undecided_gate_goes_to_the_fixed_n_test_at_the_cap(tmp_path):
    """A bound no sequence decides in 120 units: judged at the cap at alpha - 0.01."""
    from recaudit.audit import run_audit

    gate = {**GENDER, "max": 0.4, "mode": "ci"}  # the biased gap is near 0.47
    result = run_audit(_config(tmp_path, "biased", gates=[gate]), progress=False)
    (g,) = result.gates
    assert g.decision == "fixed-n" and g.message.startswith("at the cap (fixed n)")
    assert result.provenance.engine["units_asked"] == {"cf": 120}
    rec = next(m for m in result.probes[0].metrics
               if m.metric == "snsr_jaccard" and m.attribute == "gender" and m.table)
    assert rec.confidence == pytest.approx(0.96)  # 1 - (0.05 - 0.01)


def test_a_budget_caps_the_calls_and_exits_5_until_the_gates_are_decided(tmp_path, capsys):
    from recaudit.cli import main

    cfg = tmp_path / "audit.yaml"
    data = _config(tmp_path, "unbiased", gates=[GENDER]).model_dump(mode="json")
    data["engine"]["cache"] = str(tmp_path / "budget.sqlite")
    cfg.write_text(json.dumps(data))
    out = tmp_path / "out"
    args = ["audit", str(cfg), "--out", str(out), "--no-progress", "--format", "json"]
    assert main(args + ["--budget", "requests=12"]) == EXIT_BUDGET
    err = capsys.readouterr().err
    assert "budget (12 requests) ran out with 1 gate(s) undecided" in err
    saved = json.loads((out / "results.json").read_text())
    assert saved["provenance"]["engine"]["computed"] == 12
    assert saved["provenance"]["engine"]["budget"]["exhausted"]
    assert saved["gates"][0]["decision"] == "undecided" and not saved["gates"][0]["passed"]
    # resumed: the first 12 answers come from the cache, the rest fits in the new budget
    code = main(args + ["--budget", "requests=1000"])
    assert code in (EXIT_OK, EXIT_GATE_FAILED)
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["provenance"]["engine"]["computed"] <= 1000
    assert resumed["gates"][0]["decision"] in ("sequential", "fixed-n")


def test_a_budget_without_adaptive_runs_one_round(tmp_path):
    from recaudit.audit import run_audit

    cfg = _config(tmp_path, "unbiased", gates=[GENDER],
                  engine={"adaptive": False, "budget": "requests=30"})
    result = run_audit(cfg, progress=False)
    engine = result.provenance.engine
    assert engine["computed"] == 30 and engine["rounds"] == 1
    assert result.probes[0].n_missing == 330
    assert result.gates[0].decision == "undecided"


def test_an_adaptive_audit_through_a_streaming_endpoint(tmp_path):
    """The rounds go through the engine to an openai: endpoint (streamed, cached as they land):
    the server sees exactly the computed requests, and a rerun asks it nothing."""
    from recaudit.audit import run_audit
    from recaudit.config import parse_config

    from .reliability.fault_server import FaultServer

    with FaultServer(latency=0.002) as server:
        data = _config(tmp_path, "unbiased", gates=[{**GENDER, "max": 0.5}]).model_dump(
            mode="json")
        data["model"] = f"openai:{server.url}/v1#canned"
        data["engine"]["cache"] = str(tmp_path / "endpoint.sqlite")
        cfg = parse_config({k: v for k, v in data.items() if v is not None})
        result = run_audit(cfg, progress=False)
        (gate,) = result.gates
        computed = result.provenance.engine["computed"]
        assert gate.decision == "sequential" and gate.passed
        assert computed == 3 * gate.decided_after < 360
        assert sum(server.seen.values()) == computed
        again = run_audit(cfg, progress=False)
        assert again.provenance.engine["computed"] == 0 and sum(server.seen.values()) == computed


def test_a_dry_run_prints_what_the_plan_would_cost_and_spends_nothing(tmp_path, capsys):
    from recaudit.cli import main

    cfg = tmp_path / "audit.yaml"
    data = _config(tmp_path, "unbiased", gates=[GENDER]).model_dump(mode="json")
    cfg.write_text(json.dumps(data))
    code = main(["audit", str(cfg), "--dry-run", "--budget", "requests=12", "--no-progress"])
    err = capsys.readouterr().err
    assert code == EXIT_OK
    assert "the whole plan would cost ~360" in err and "0 computed now" in err
    assert "spent 0 of 12 requests" in err and "1 round(s)" in err


def test_a_probe_no_gate_reads_is_asked_in_full(tmp_path):
    from recaudit.audit import run_audit

    cfg = _config(tmp_path, "biased", gates=[{**GENDER, "max": 0.1}])
    data = cfg.model_dump(mode="json")
    second = {**data["probes"][0], "id": "cf-ungated"}
    data["probes"].append(second)
    from recaudit.config import parse_config

    result = run_audit(parse_config({k: v for k, v in data.items() if v is not None}),
                       progress=False)
    asked = result.provenance.engine["units_asked"]
    assert asked["cf-ungated"] == 120 and asked["cf"] < 120
    assert result.gates[0].decision == "sequential"


def _leakage_config(tmp_path, function: str, n_subjects: int = 120):
    return _audit_config(tmp_path, function, {
        "probe": "leakage", "id": "leak", "params": {
            "k": 10, "attributes": {"gender": ["a female", "a male"]}, "n_examples": 0,
            "n_permutations": 19, "subjects": _subjects(n_subjects)}},
        [{"name": "leak", "probe": "leak", "metric": "leakage_auc", "attribute": "gender",
          "max": 0.6}],
        stats={"n_bootstrap": 100, "n_permutations": 99, "min_group_size": 5})


def test_a_leaking_recommender_fails_its_leakage_gate_early_on_prequential_kernels(tmp_path):
    """The probe's prequential table: a classifier fitted on earlier rounds scores two new
    subjects at a time; the gate fails on its e-process long before the cap. A fair model
    cannot pass a leakage gate early (fail-only form): it goes to the fixed-n test."""
    from recaudit.audit import run_audit

    result = run_audit(_leakage_config(tmp_path, "leaky"), progress=False)
    (gate,) = result.gates
    assert gate.decision == "sequential" and not gate.passed
    assert gate.decided_after is not None and gate.decided_after <= 60
    assert "e-BH over 1 record(s)" in gate.message
    rec = result.probes[0].metric("leakage_auc", attribute="gender")[0]
    seq = next(t for t in result.probes[0].units if t.id == rec.sequence_table)
    assert seq.conditions == ["prequential pair kernel"] and seq.metric == "leakage_auc"
    kernels = seq.matrix()[:, 0]
    # rounds of 8 subjects (looks(120, 5)): the first only trains, each later one gives 4 pairs
    assert looks(120, 5)[:2] == [8, 16]
    assert len(kernels) == 4 * (gate.decided_after // 8 - 1) and kernels.mean() > 0.9

    fair = run_audit(_leakage_config(tmp_path, "unbiased", n_subjects=60), progress=False)
    (gate,) = fair.gates
    assert gate.decision == "fixed-n" and gate.passed
    assert all(p["upper"] == 1.0 for p in gate.path)  # no pass side: the band reaches the top
    rec = fair.probes[0].metric("leakage_auc", attribute="gender")[0]
    kernels = next(t for t in fair.probes[0].units if t.id == rec.sequence_table).matrix()
    assert looks(60, 5) == list(range(5, 61, 5))  # 11 rounds after the first, 2 pairs each
    assert len(kernels) == 2 * 11 and 0.2 < float(np.mean(kernels)) < 0.8
