"""The analysis kit: tables, the seeding policy, spreads with their null floor, BH families,
the one small-sample warning and the one severity ladder."""

from __future__ import annotations

import numpy as np
import pytest

from recaudit.config import StatsConfig
from recaudit.probes.kit import Summariser, Table
from recaudit.results import ProbeResult

from .. import gate_recommenders as gr

STATS = StatsConfig(n_bootstrap=300, n_permutations=299, seed=3, min_group_size=10)


def _kit(probe_id: str = "p") -> Summariser:
    return Summariser(ProbeResult(id=probe_id, probe="p"), STATS)


def _table(metric="jaccard", attribute="gender", seed=0, shift=0.0, n=30):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 3, 2))
    x[:, 1] += shift
    return Table(metric, attribute, ["a", "b", "c"], [str(i) for i in range(n)], x, ks=[1, 2])


def test_table_shape_is_checked_and_stored_at_the_largest_k():
    with pytest.raises(ValueError, match="expected"):
        Table("jaccard", None, ["a"], ["0", "1"], np.zeros((3, 1)))
    t = _table()
    stored = t.to_result()
    assert stored.id == "original/jaccard/gender@2" and stored.k == 2
    np.testing.assert_array_equal(stored.matrix(), t.values[:, :, -1])


def test_means_equal_numpy_and_carry_their_table():
    kit = _kit()
    t = _table()
    recs = kit.means(t)
    expected = t.values.mean(axis=0)
    for (cond, k), rec in recs.items():
        ci, kj = ["a", "b", "c"].index(cond), k - 1
        assert rec.estimate == expected[ci, kj]  # bit-identical to numpy's mean
        assert rec.ci_low < rec.estimate < rec.ci_high and rec.n == 30
        assert (rec.table, rec.statistic) == (("original/jaccard/gender@2", "mean") if k == 2
                                              else (None, None))
    assert rec.higher_is_worse is False  # from jaccard's declaration


def test_adding_a_metric_or_an_attribute_moves_no_other_number():
    alone = _kit()
    a = alone.spread(_table(), "snsr")[2]
    crowded = _kit()
    crowded.means(_table("prag_star", seed=5))
    crowded.spread(_table("rbo", "age", seed=6), "snsv")
    b = crowded.spread(_table(), "snsr")[2]
    assert (a.estimate, a.ci_low, a.ci_high, a.p_value, a.null_p95) == \
        (b.estimate, b.ci_low, b.ci_high, b.p_value, b.null_p95)
    other_probe = Summariser(ProbeResult(id="q", probe="p"), STATS).spread(_table(), "snsr")[2]
    # (a spread's CI is bias-corrected and clipped to its range, so its low end may be 0 in both)
    assert other_probe.estimate == a.estimate and other_probe.ci_high != a.ci_high


def test_spread_has_permutation_p_and_null_floor_only_at_the_largest_k():
    kit = _kit()
    recs = kit.spread(_table(shift=0.3), "snsr")
    assert recs[1].p_value is None and recs[1].null_p95 is None
    top = recs[2]
    assert top.p_value < 0.01 and top.estimate > top.null_p95 > top.null_mean > 0
    assert top.metric == "snsr_jaccard" and top.higher_is_worse is True
    assert (top.table, top.statistic) == ("original/jaccard/gender@2", "range")
    ratio = kit.spread(_table(shift=0.3), "ratio", test=False)[2]
    means = _table(shift=0.3).values[:, :, -1].mean(axis=0)
    assert ratio.metric == "jaccard_ratio" and ratio.estimate == means.min() / means.max()
    # untested, yet floored (issue 20: the distance of a ratio from 1 is positive under noise)
    assert ratio.p_value is None and ratio.null_mean is not None
    assert ratio.estimate < ratio.null_mean < 1  # lower is worse: the planted gap is below it


def test_bh_within_a_family_and_the_small_sample_warning():
    kit = _kit()
    p = [kit.spread(_table(attribute=a, seed=i, shift=s), "snsr")[2]
         for i, (a, s) in enumerate([("gender", 0.3), ("age", 0.0), ("race", 0.0)])]
    kit.adjust()
    from recaudit.stats import benjamini_hochberg

    assert [r.p_adjusted for r in p] == list(benjamini_hochberg([r.p_value for r in p]).adjusted)
    small = _kit().means(_table(n=4))[("a", 2)]
    assert small.warning == "only 4 units (< 10): confidence interval unreliable"


def test_severity_ladder_reads_the_declared_null_and_range():
    kit = _kit()
    rec = kit.record("leakage_auc", estimate=0.62)
    assert kit.severity(rec, significant=True) == "high"  # (0.62 - 0.5) / 0.5 = 0.24
    rec = kit.record("snsr_jaccard", estimate=0.15)
    assert kit.severity(rec, significant=True) == "medium"
    assert kit.severity(rec, significant=False) == "info"
    assert kit.severity(kit.record("snsr_jaccard", estimate=0.05), True) == "low"


def test_null_floor_is_calibrated_for_an_unbiased_model_and_exceeded_by_a_biased_one():
    """SNSR of an attribute-blind recommender lies below its own null 95th percentile in about
    95% of seeded repetitions (measured: see the assertion); a planted bias lies above."""
    stats = StatsConfig(n_bootstrap=50, n_permutations=199, seed=0)
    below = above_biased = 0
    reps = 60
    for seed in range(reps):
        res = gr.offline_counterfactual(gr.unbiased, seed=seed, sims=("jaccard",), stats=stats)
        rec = res.metric("snsr_jaccard", attribute="gender", k=10)[0]
        below += rec.estimate <= rec.null_p95
        if seed < 10:
            res = gr.offline_counterfactual(gr.biased, seed=seed, sims=("jaccard",), stats=stats)
            rec = res.metric("snsr_jaccard", attribute="gender", k=10)[0]
            above_biased += rec.estimate > rec.null_p95
    assert 0.85 <= below / reps <= 1.0, below  # nominal 95%: 57 of 60 expected
    assert above_biased == 10


def test_one_bh_family_may_span_two_metrics():
    kit = _kit()
    a = kit.spread(_table("arp", attribute="h", seed=1, shift=0.3), "gap", family="follow")[2]
    b = kit.spread(_table("aplt", attribute="h", seed=2), "gap", family="follow")[2]
    c = kit.spread(_table("jaccard", attribute="h", seed=3), "snsr")[2]  # its own family
    kit.adjust()
    from recaudit.stats import benjamini_hochberg

    assert [a.p_adjusted, b.p_adjusted] == list(
        benjamini_hochberg([a.p_value, b.p_value]).adjusted)
    assert c.p_adjusted == c.p_value  # a family of one is not adjusted


def test_derived_record_with_a_table_statistic_can_be_recomputed_from_its_table():
    from recaudit.metrics.position import cramers_v_of_shares, cramers_v_uniform
    from recaudit.metrics.tables import table_statistic

    rng = np.random.default_rng(0)
    first = rng.choice(4, size=40, p=[0.55, 0.15, 0.15, 0.15])
    onehot = np.eye(4)[first]
    t = Table("first_place_share", "position", list("0123"), [str(i) for i in range(40)],
              onehot)
    kit = _kit()
    counts = onehot.sum(axis=0)
    rec = kit.derived(t, "first_place_v", lambda m: float(cramers_v_of_shares(m)),
                      estimate=cramers_v_uniform(counts), statistic="cramers_v", p_value=0.01,
                      value="all")
    assert rec.value == "all" and rec.statistic == "cramers_v" and rec.p_value == 0.01
    stored = kit.res.unit_table(rec.table) or kit._tables[rec.table]
    again = table_statistic("cramers_v")(stored.matrix(), np.ones((1, 40)))[0]
    assert again == pytest.approx(rec.estimate, abs=1e-12)
    assert rec.ci_low <= rec.estimate <= rec.ci_high
    with pytest.raises(ValueError, match="unknown table statistic"):
        kit.derived(t, "first_place_v", float, estimate=0.1, statistic="nope")


def test_a_finding_on_fewer_units_than_min_group_size_is_rated_low():
    kit = _kit()  # min_group_size 10
    few = kit.record("leakage_auc", estimate=0.9, n=9, p_value=0.001)
    enough = kit.record("leakage_auc", estimate=0.9, n=10, p_value=0.001)
    assert kit.finding(few, "t", "d", alpha=0.05).severity == "low"  # the small-sample cap
    assert kit.finding(enough, "t", "d", alpha=0.05).severity == "high"
    lenient = Summariser(ProbeResult(id="p", probe="p"),
                         StatsConfig(n_bootstrap=50, n_permutations=99, min_group_size=5))
    assert lenient.finding(few, "t", "d", alpha=0.05).severity == "high"
    not_sig = kit.record("leakage_auc", estimate=0.9, n=50, p_value=0.2)
    assert kit.finding(not_sig, "t", "d", alpha=0.05).severity == "info"


def test_the_kit_resamples_with_the_stats_routines():
    from recaudit.stats import bootstrap_counts, percentile_interval, resampled_means

    kit = _kit()
    t = _table()
    rec = kit.means(t)[("b", 2)]
    counts = bootstrap_counts(30, STATS.n_bootstrap,
                              kit.seed("bootstrap", t.metric, t.attribute, t.variant, t.part))
    lo, hi = percentile_interval(resampled_means(t.values, counts), STATS.confidence)
    assert (rec.ci_low, rec.ci_high) == (lo[1, 1], hi[1, 1])


# -- floors: every statistic that is positive under noise (issue 20) -------------------------------
def _theil_of_means(m: np.ndarray) -> float:
    r = m / m.mean()
    return float(np.mean(r * np.log(r)))


def test_a_floored_derived_statistic_gets_a_permutation_floor_and_a_covering_ci():
    """``theil`` declares ``noise_floor``; a probe that passes no null of its own gets the
    permutation null of conditions exchangeable within a unit. 20 seeded tables of 30 users
    with no effect: the estimate lies below the floor's 95th percentile in 20 of 20 (measured;
    the test allows 2 misses) and inside its bias-corrected CI in 20 of 20, and a floor gate
    ``max: 0.002`` passes all 20. A planted effect (+0.3 on one of 3 conditions) lies above
    the floor and fails the gate in 20 of 20 (measured)."""
    from recaudit.gates import evaluate_gates

    gate = {"probe": "p", "metric": "theil", "max": 0.002, "mode": "floor"}
    for shift in (0.0, 0.3):
        below = passed = 0
        for seed in range(20):
            kit = _kit()
            t = _table("benefit", seed=seed, shift=shift)
            est = _theil_of_means(t.values[:, :, -1].mean(axis=0))
            rec = kit.derived(t, "theil", _theil_of_means, estimate=est)
            kit.finish()
            assert rec.null_mean is not None and 0 < rec.null_mean < rec.null_p95
            assert rec.p_value is not None and rec.p_adjusted is not None
            if shift == 0.0:
                assert rec.ci_low <= rec.estimate <= rec.ci_high, (seed, rec)
            below += rec.estimate < rec.null_p95
            (g,) = evaluate_gates(gr.audit_result([kit.res]), [gate])
            passed += g.passed
        if shift == 0.0:
            assert below >= 18 and passed == 20, (below, passed)
        else:
            assert below == 0 and passed == 0, (below, passed)


def test_floored_spread_ci_is_bias_corrected_and_covers_the_estimate():
    """Resampling adds noise to a range, so a spread's plain percentile CI sits above its
    estimate when there is no effect. 20 seeded tables of 15 units x 8 conditions: the plain
    interval lay wholly above the estimate in 2 of 20 (measured), the recorded bias-corrected
    one covers the estimate in 20 of 20."""
    from recaudit.stats import percentile_interval, resampled_means, spread_statistic

    missed_plain = 0
    for seed in range(20):
        kit = _kit()
        x = np.random.default_rng(seed).random((15, 8, 1))
        t = Table("jaccard", "g", [str(c) for c in range(8)], [str(u) for u in range(15)], x,
                  ks=[1])
        rec = kit.spread(t, "snsr")[1]
        assert rec.ci_low <= rec.estimate <= rec.ci_high, (seed, rec)
        boot = resampled_means(t.values, kit.boot_counts(len(t.units), t.metric, t.attribute,
                                                         t.variant, t.part))
        lo, _hi = percentile_interval(spread_statistic("range")(np.moveaxis(boot, 1, -1)),
                                      STATS.confidence)
        missed_plain += lo[-1] > rec.estimate
    assert missed_plain >= 1, missed_plain
