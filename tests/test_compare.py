"""recaudit compare: comparability checks, directions, the paired test, BH, rendering, CLI."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from recaudit.results import SCHEMA_VERSION

from recaudit.cli import main
from recaudit.compare import compare_results, first_difference
from recaudit.errors import DataError
from recaudit.metrics.tables import TABLE_STATISTICS, table_statistic
from recaudit.report.markdown import render_comparison
from recaudit.results import MetricSpecModel
from recaudit.stats import SwapMasks, paired_swap_test
from recaudit.verdicts import harm_direction

from . import gate_recommenders as gr
from .gate_recommenders import audit_result, metric, offline_counterfactual, probe_result



def cf_audit(fn, seed=0, **kw):
    return audit_result([offline_counterfactual(fn, seed=seed, **kw)])


# -- comparability -------------------------------------------------------------------------------
def _simple(estimate=0.1, ci=(0.05, 0.15), **probe_kw):
    return audit_result([probe_result([metric("leakage_auc", estimate, probe="leakage",
                                              attribute="gender", ci=ci)],
                                      id="leakage", probe="leakage", **probe_kw)])


def test_refuses_other_schema_version():
    a, b = _simple(), _simple()
    b.schema_version = "2.0"
    with pytest.raises(DataError, match=f"schema version '{SCHEMA_VERSION}' with '2.0'"):
        compare_results(a, b)


def test_refuses_different_probe_params_naming_the_key_path():
    a = _simple(params={"k": 20, "subjects": {"n": 100}})
    b = _simple(params={"k": 10, "subjects": {"n": 100}})
    with pytest.raises(DataError) as info:
        compare_results(a, b)
    assert str(info.value) == "cannot compare: probe leakage params.k: 20 != 10"
    b = _simple(params={"k": 20, "subjects": {"n": 50}})
    with pytest.raises(DataError, match=r"probe leakage params.subjects.n: 100 != 50"):
        compare_results(a, b)
    b = _simple(params={"k": 20, "subjects": {"n": 100}, "extra": 1})
    with pytest.raises(DataError, match=r"params.extra: '\(absent\)' != 1"):
        compare_results(a, b)


def test_refuses_different_catalogs():
    a, b = _simple(), _simple()
    b.config["catalog"]["path"] = "other.csv"
    with pytest.raises(DataError, match="catalog config catalog.path: 'items.csv' != 'other.csv'"):
        compare_results(a, b)
    a, b = _simple(), _simple()
    a.provenance.catalog_sha256, b.provenance.catalog_sha256 = "a" * 64, "b" * 64
    with pytest.raises(DataError, match="catalog content differs"):
        compare_results(a, b)


def test_first_difference():
    assert first_difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2}]}) is None
    assert first_difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]}) == ("a[1].b", 2, 3)
    assert first_difference({"a": [1]}, {"a": [1, 2]}) == ("a", [1], [1, 2])
    assert first_difference({"a": 1}, {"a": True}) == ("a", 1, True)
    assert first_difference({"a": 1}, {"a": 1.0}) is None


def test_nothing_in_common_and_unfinished_probes():
    a = _simple()
    b = audit_result([probe_result([metric("x", 1.0)], id="other", probe="other")])
    with pytest.raises(DataError, match="nothing to compare"):
        compare_results(a, b)
    c = _simple(status="error", error="boom")
    with pytest.raises(DataError, match="nothing to compare"):
        compare_results(a, c)


# -- directions and the CI fallback --------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    ("snsr_jaccard", True), ("snsv_prag_star", True), ("ndcg_gap", True), ("hr_gap", True),
    ("leakage_auc", True), ("hallucination", True), ("jaccard", False), ("rbo", False),
    ("serp_star_normalized", False), ("hr", False), ("ndcg_ratio", False), ("mystery", None)])
def test_direction_comes_from_the_declarations(name, expected):
    rec = metric(name, 0.5)
    p = probe_result([rec])  # describes its metrics, as every probe result does
    rec.higher_is_worse = None
    assert harm_direction(rec, p.specs.get(name)) is expected
    rec.higher_is_worse = False
    assert harm_direction(rec, p.specs.get(name)) is False  # the record's own flag wins
    bare = probe_result([metric(name, 0.5)])
    bare.metrics[0].higher_is_worse = None
    bare.specs = {name: MetricSpecModel(name=name, higher_is_worse=True)}  # e.g. a user metric
    assert harm_direction(bare.metrics[0], bare.specs.get(name)) is True  # from the result


def test_ci_fallback_without_per_unit_data():
    base = _simple(0.55, (0.50, 0.60))
    cmp = compare_results(base, _simple(0.75, (0.70, 0.80)))
    (row,) = cmp.rows
    assert row.status == "regression" and row.method == "CI non-overlap"
    assert "CI non-overlap used" in row.note and row.p_value is None
    assert cmp.regressions == [row] and cmp.improvements == []
    # overlapping intervals: worse beyond tolerance but not significant
    (row,) = compare_results(base, _simple(0.65, (0.58, 0.72))).rows
    assert row.status == "not significant"
    # within tolerance even though the intervals do not overlap
    (row,) = compare_results(_simple(0.55, (0.54, 0.56)),
                             _simple(0.565, (0.56, 0.57)), tolerance=0.02).rows
    assert row.status == "within tolerance"
    # the mirror image is an improvement
    cmp = compare_results(_simple(0.75, (0.70, 0.80)), base)
    assert [r.status for r in cmp.rows] == ["improvement"] and not cmp.regressions


def test_floored_metrics_show_each_sides_floor_and_excess_read_from_the_declaration():
    """leakage_auc declares a noise floor: its row carries both floors and the excess over
    them; a metric without one (hallucination) carries none, even with null_mean recorded."""
    def res(auc, floor):
        return audit_result([probe_result([
            metric("leakage_auc", auc, probe="leakage", attribute="gender", ci=(0.4, 0.9),
                   null_mean=floor, null_p95=floor + 0.1),
            metric("hallucination", 0.1, probe="leakage", attribute="gender", ci=(0.0, 0.2),
                   null_mean=0.05)], id="leakage", probe="leakage")])

    rows = {r.metric: r for r in compare_results(res(0.55, 0.50), res(0.75, 0.52)).rows}
    auc = rows["leakage_auc"]
    assert (auc.baseline_floor, auc.current_floor) == (0.50, 0.52)
    assert "noise floor 0.500 -> 0.520: excess over it 0.050 -> 0.230" in auc.note
    hal = rows["hallucination"]
    assert hal.baseline_floor is None and "noise floor" not in hal.note


def test_direction_unknown_is_never_flagged():
    a = audit_result([probe_result([metric("mystery", 0.1, probe="p", ci=(0.0, 0.2))],
                                   id="p", probe="p")])
    b = audit_result([probe_result([metric("mystery", 0.9, probe="p", ci=(0.8, 1.0))],
                                   id="p", probe="p")])
    (row,) = compare_results(a, b).rows
    assert row.status == "direction unknown" and row.worsening is None


def test_notes_for_probes_in_one_result_only():
    a = _simple()
    b = _simple()
    b.probes.append(probe_result([metric("x", 1.0, probe="new")], id="new", probe="new"))
    cmp = compare_results(a, b)
    assert any("probe new is only in the current results" in n for n in cmp.notes)


# -- the paired permutation test -----------------------------------------------------------------
def _mean_of(column=0):
    fn = table_statistic("mean")
    return lambda v, w: fn(v, w, column)


def test_paired_swap_test_exact_and_random():
    rng = np.random.default_rng(1)
    xb = rng.random((8, 1))
    # identical results: swapping changes nothing, so the test can never reject
    assert paired_swap_test(xb, xb.copy(), _mean_of(), SwapMasks(1000, 0)) == (0.0, 1.0, True)
    constant = np.zeros((8, 1))
    assert paired_swap_test(constant, constant, _mean_of(), SwapMasks(1000, 0)).degenerate
    shifted = paired_swap_test(xb, xb + 0.5, _mean_of(), SwapMasks(1000, 0))
    assert shifted[0] == pytest.approx(0.5) and shifted[1] == pytest.approx(2 / 256)  # exact
    obs, p, _ = paired_swap_test(xb, xb + 0.5, _mean_of(), SwapMasks(100, 0))  # random swaps
    assert obs == pytest.approx(0.5) and 1 / 101 <= p < 0.05
    # range statistic (SNSR) over two columns, with a NaN cell
    xb2 = np.column_stack([xb[:, 0], xb[:, 0]])
    xc2 = xb2 + np.array([0.0, 0.3])
    xc2[0, 0] = np.nan
    rng_fn = table_statistic("range")
    obs, p, _ = paired_swap_test(xb2, xc2, lambda v, w: rng_fn(v, w), SwapMasks(1000, 0))
    assert obs == pytest.approx(np.ptp(np.nanmean(xc2, axis=0))) and p < 0.05
    assert paired_swap_test(xb[:1], xb[:1], _mean_of(), SwapMasks(10, 0)) is None


def _table_for(statistic: str, rng, n: int, scale: float) -> np.ndarray:
    """A unit table ``statistic`` can be computed from, values of magnitude ``scale``."""
    if statistic == "cramers_v":  # one-hot rows: first place per input position
        return np.eye(4)[rng.integers(0, 4, n)]
    if statistic == "auc_macro_ovr":  # per unit, a 2 x 2 block of class probabilities
        p = rng.random((n, 2, 1))
        return np.concatenate([p, 1 - p], axis=2).reshape(n, 4)
    return scale * (1 + rng.random((n, 3)))


@pytest.mark.parametrize("statistic", sorted(TABLE_STATISTICS))
def test_identical_results_tie_at_any_scale(statistic):
    """Identical results (the same model, answers cached): every swap gives the same tables, so
    p = 1 and the row leaves the BH family, whatever the values' magnitude and NaN cells.
    Before (issue 20), ties were judged at 1e-12 absolute: at magnitude 1e6 the rounding of
    the sums (about 1e-10) broke them, p < 1 in about a third of such tables."""
    fn = table_statistic(statistic)
    for seed in range(12):
        rng = np.random.default_rng(seed)
        n = 5 + seed % 8
        for scale in (1e6, 1.0, 1e-9):
            xb = _table_for(statistic, rng, n, scale)
            if seed % 3 == 0 and statistic in ("mean", "range", "std", "ratio"):
                xb[rng.random(xb.shape) < 0.2] = np.nan
            for masks in (SwapMasks(10_000, 0), SwapMasks(99, 0)):  # exact and sampled
                t = paired_swap_test(xb, xb.copy(), lambda v, w: fn(v, w, 0), masks)
                assert t is not None and t.pvalue == 1.0 and t.degenerate, (seed, scale, t)


def test_a_shift_far_below_one_is_detected():
    # Values about 1e-13 shifted by 5e-14: the old absolute tolerance (1e-12) tied every
    # permutation (p = 1, "degenerate"); at the data's own scale the exact p is 2 / 2**8.
    xb = np.random.default_rng(1).random((8, 1)) * 1e-13
    t = paired_swap_test(xb, xb + 5e-14, _mean_of(), SwapMasks(1000, 0))
    assert t.statistic == pytest.approx(5e-14) and t.pvalue == pytest.approx(2 / 256)
    assert not t.degenerate


def _popularity_audit(seed: int, n: int, scale: float = 3000.0):
    """A popularity result whose table holds average popularities (thousands of ratings)."""
    from recaudit.results import UnitTable

    vals = np.random.default_rng(seed).random((n, 2)) * scale
    table = UnitTable(id="arp@10", metric="arp", k=10, conditions=["niche", "blockbuster"],
                      units=[f"u{i}" for i in range(n)], values=vals.tolist())
    means = vals.mean(axis=0)
    recs = [metric("arp", float(means[j]), probe="popularity", attribute="history", value=c,
                   k=10, table="arp@10", statistic="mean")
            for j, c in enumerate(table.conditions)]
    recs.append(metric("arp_gap", float(np.ptp(means)), probe="popularity", k=10,
                       table="arp@10", statistic="range"))
    return audit_result([probe_result(recs, id="popularity", probe="popularity",
                                      units=[table])])


def test_compare_of_a_result_with_itself_never_tests_a_difference():
    # Before (issue 20): 27 of 80 such comparisons (seeds 0-19, n 7-13) put an identical row
    # into the BH family (seeds 0 and 1 at n = 11 and 13 among them).
    for seed, n in [(0, 11), (0, 13), (1, 11), (1, 13), (4, 11), (5, 13), (2, 7)]:
        a = _popularity_audit(seed, n)
        cmp = compare_results(a, copy.deepcopy(a))
        assert len(cmp.rows) == 3
        for row in cmp.rows:
            assert row.method == f"paired permutation ({n} units)"
            assert row.p_value == 1.0 and row.status == "unchanged", row
            assert "outside the BH family" in row.note, row


def test_paired_statistic_recomputed_from_tables_matches_the_stored_one():
    base = cf_audit(gr.unbiased, seed=1)
    cur = cf_audit(gr.biased, seed=1)
    cmp = compare_results(base, cur)
    paired = [r for r in cmp.rows if r.method.startswith("paired permutation")]
    assert paired and all(r.method == "paired permutation (12 units)" for r in paired)
    assert {r.k for r in cmp.rows} == {10, None}  # the largest k only (shares have no k)
    pb, pc = base.probes[0], cur.probes[0]
    for row in paired:
        b = next(m for m in pb.metrics if (m.metric, m.attribute, m.value, m.k) ==
                 (row.metric, row.attribute, row.value, row.k))
        tb, tc = pb.unit_table(b.table), pc.unit_table(b.table)
        col = tb.conditions.index(b.value) if b.statistic == "mean" else None
        fn = table_statistic(b.statistic)
        obs, _, _ = paired_swap_test(tb.matrix(), tc.matrix(), lambda v, w: fn(v, w, col),
                                     SwapMasks(10, 0))
        assert obs == pytest.approx(row.delta, abs=1e-9), row


def test_planted_regression_is_detected():
    cmp = compare_results(cf_audit(gr.unbiased, seed=3), cf_audit(gr.biased, seed=3))
    flagged = {(r.metric, r.attribute, r.value) for r in cmp.regressions}
    assert ("snsr_jaccard", "gender", None) in flagged
    assert ("jaccard", "gender", "a female") in flagged and ("jaccard", "gender", "a girl") \
        in flagged
    assert not any(attr == "age" for _, attr, _ in flagged)  # the planted bias is gender only
    assert not any(v in ("a boy", "a male") for *_, v in flagged)
    reg = next(r for r in cmp.regressions if r.metric == "snsr_jaccard")
    assert reg.p_adjusted is not None and reg.p_adjusted < 0.05 and reg.worsening > 0.02
    text = render_comparison(cmp)
    assert "| **regression** | counterfactual:fairllm | snsr_jaccard | gender, k=10 |" in text
    assert text.splitlines()[4].startswith(f"**{len(cmp.regressions)} regression(s)**")


def test_reseeded_reruns_of_the_same_model_are_not_flagged():
    """Same (unbiased or biased) model, new randomness: 20 reseeded pairs; 0 flagged here,
    4 of 100 (regression or improvement) over other seeds during development."""
    flagged = 0
    for seed in range(20):
        fn = gr.biased if seed % 2 else gr.unbiased
        cmp = compare_results(cf_audit(fn, seed=100 + seed), cf_audit(fn, seed=200 + seed))
        flagged += bool(cmp.regressions)
    assert flagged <= 2, flagged


def test_identical_results_have_no_changes():
    a = cf_audit(gr.unbiased, seed=5)
    cmp = compare_results(a, a.model_copy(deep=True))
    assert not cmp.regressions and not cmp.improvements
    assert {r.status for r in cmp.rows} == {"unchanged"}
    assert all(r.p_value == 1.0 for r in cmp.rows)


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_compare_exit_codes(tmp_path, capsys):
    paths = {}
    for name, res in (("base", cf_audit(gr.unbiased, seed=7)), ("cur", cf_audit(gr.biased, seed=7)),
                      ("rerun", cf_audit(gr.unbiased, seed=8))):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(res.to_json())
    md = tmp_path / "cmp.md"
    assert main(["compare", str(paths["base"]), str(paths["cur"]), "--markdown", str(md)]) == 1
    assert "**regression**" in capsys.readouterr().out and "**regression**" in md.read_text()
    assert main(["compare", str(paths["base"]), str(paths["rerun"])]) == 0
    assert "**no regressions**" in capsys.readouterr().out
    data = json.loads(paths["cur"].read_text())
    data["probes"][0]["params"]["k"] = 20
    data.pop("content_sha256")  # an unsealed file: the edit stands for another audit
    paths["cur"].write_text(json.dumps(data))
    assert main(["compare", str(paths["base"]), str(paths["cur"])]) == 2
    assert "probe counterfactual:fairllm params.k: 10 != 20" in capsys.readouterr().err


# -- real audits (engine, grounding, counterfactual probe) ---------------------------------------
def test_real_audits_planted_regression_flagged_and_reseeded_rerun_not(tmp_path):
    from .gate_recommenders import run_synthetic_audit

    base = run_synthetic_audit(tmp_path, "unbiased", seed=11)
    planted = run_synthetic_audit(tmp_path, "biased", seed=12)  # new model and new randomness
    cmp = compare_results(base, planted)
    flagged = {(r.metric, r.attribute, r.value) for r in cmp.regressions}
    assert {("snsr_jaccard", "gender", None), ("snsr_rbo", "gender", None),
            ("jaccard", "gender", "a female"), ("jaccard", "gender", "a girl")} <= flagged
    assert all(attr == "gender" for _, attr, _ in flagged)
    assert cmp.rows and all(r.method == "paired permutation (12 units)" for r in cmp.rows)
    assert not compare_results(base, run_synthetic_audit(tmp_path, "unbiased", seed=13)).regressions


def test_real_audits_reseeded_reruns_flag_rate():
    """Reruns of one attribute-independent model with new seeds (i vs i+1, 39 pairs).

    Under "same model" BH keeps the chance that a compare flags anything at about alpha = 5%.
    Measured: 3 of 39 pairs here (seeds 0..39); 4 of 118 pairs over three seed batches.
    """
    from .gate_recommenders import unbiased_runs

    runs = unbiased_runs(40)
    flagged = sum(bool(compare_results(runs[i], runs[i + 1]).regressions) for i in range(39))
    assert flagged <= 4, flagged
