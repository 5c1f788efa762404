"""Bootstrap CIs, paired bootstrap, paired permutation test, Benjamini-Hochberg."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from recaudit.metrics.similarity import snsr, snsv
from recaudit.stats import (
    benjamini_hochberg,
    bootstrap_ci,
    paired_bootstrap,
    permutation_test_values,
    small_sample_warning,
)

# ------------------------------------------------------------------------------ bootstrap_ci


def test_bootstrap_ci_basic_properties_and_seed():
    x = np.random.default_rng(0).normal(2.0, 1.0, 50)
    r = bootstrap_ci(x, seed=1)
    assert r.estimate == pytest.approx(x.mean())
    assert r.low < r.estimate < r.high
    assert r.n == 50 and r.n_resamples == 1000 and r.method == "percentile"
    assert not r.flagged
    assert bootstrap_ci(x, seed=1) == r  # reproducible
    assert bootstrap_ci(x, seed=2) != r


def test_bootstrap_percentile_equals_explicit_resampling():
    x = np.random.default_rng(3).exponential(1.0, 40)
    r = bootstrap_ci(x, stat=np.median, n_resamples=300, seed=5)
    rng = np.random.default_rng(5)
    idx = rng.integers(0, x.size, size=(300, x.size))
    boot = np.median(x[idx], axis=1)
    assert (r.low, r.high) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])))
    # A statistic without an ``axis`` argument gives the same numbers (same draws).
    r2 = bootstrap_ci(x, stat=lambda v: float(np.median(v)), n_resamples=300, seed=5)
    assert (r2.low, r2.high) == pytest.approx((r.low, r.high))
    # Basic interval reflects the percentile one around the estimate.
    b = bootstrap_ci(x, stat=np.median, n_resamples=300, seed=5, method="basic")
    assert b.low == pytest.approx(2 * r.estimate - r.high)
    assert b.high == pytest.approx(2 * r.estimate - r.low)


def test_bootstrap_small_and_empty_samples():
    r0 = bootstrap_ci([])
    assert math.isnan(r0.estimate) and math.isnan(r0.low) and math.isnan(r0.high)
    assert r0.flagged and r0.n == 0
    r1 = bootstrap_ci([3.0])
    assert r1.estimate == 3.0 and math.isnan(r1.low) and math.isnan(r1.high) and r1.flagged
    r5 = bootstrap_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert r5.flagged and not math.isnan(r5.low)
    assert not bootstrap_ci(np.arange(30.0)).flagged
    assert bootstrap_ci([1.0, 2.0], min_units=2).warning is None


def test_bootstrap_validation():
    with pytest.raises(ValueError):
        bootstrap_ci([1, 2, 3], method="bca")
    with pytest.raises(ValueError):
        bootstrap_ci([1, 2, 3], confidence=1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([1, 2, 3], n_resamples=0)


def test_bootstrap_ci_coverage_small_n():
    # 95% percentile CIs of a normal mean at n = 25 should cover the truth ~93-95% of the time.
    rng = np.random.default_rng(12345)
    reps, n, mu = 400, 25, 1.0
    hits = 0
    for rep in range(reps):
        x = rng.normal(mu, 2.0, n)
        r = bootstrap_ci(x, n_resamples=400, seed=rep)
        hits += r.low <= mu <= r.high
    coverage = hits / reps
    assert 0.89 <= coverage <= 0.98, coverage


# -------------------------------------------------------------------------- paired_bootstrap


def _matrix(seed=0, n=40, effects=(0.0, 0.1, 0.3)):
    rng = np.random.default_rng(seed)
    unit = rng.normal(0.5, 0.2, (n, 1))  # instruction effect shared by all values
    return unit + np.asarray(effects)[None, :] + rng.normal(0, 0.05, (n, len(effects)))


def test_paired_bootstrap_estimate_and_explicit_resampling():
    m = _matrix()
    r = paired_bootstrap(m, "snsr", n_resamples=300, seed=4)
    means = m.mean(axis=0)
    assert r.estimate == pytest.approx(snsr(means))
    np.testing.assert_allclose(r.value_means, means)
    # Same draws by hand: resample rows jointly, SNSR of column means.
    rng = np.random.default_rng(4)
    idx = rng.integers(0, m.shape[0], size=(300, m.shape[0]))
    boot = np.array([snsr(m[i].mean(axis=0)) for i in idx])
    assert (r.low, r.high) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])))
    boot_means = m[idx].mean(axis=1)
    np.testing.assert_allclose(r.value_low, np.quantile(boot_means, 0.025, axis=0))
    np.testing.assert_allclose(r.value_high, np.quantile(boot_means, 0.975, axis=0))
    # A callable statistic gives the same numbers as the built-in name.
    r_call = paired_bootstrap(m, snsr, n_resamples=300, seed=4)
    assert (r_call.low, r_call.high) == pytest.approx((r.low, r.high))
    r_v = paired_bootstrap(m, "snsv", n_resamples=300, seed=4)
    assert r_v.estimate == pytest.approx(snsv(means))


def test_paired_bootstrap_pairing_matters():
    # Values share a large per-instruction effect: the paired CI of the difference is narrow.
    m = _matrix(effects=(0.0, 0.2))
    r = paired_bootstrap(m, "snsr", seed=0)
    assert 0.15 < r.low < r.estimate < r.high < 0.25


def test_paired_bootstrap_nan_cells_and_small_n():
    m = _matrix(n=30)
    m[3, 1] = np.nan
    r = paired_bootstrap(m, "snsr", n_resamples=200, seed=0)
    assert r.value_means[1] == pytest.approx(np.nanmean(m[:, 1]))
    assert r.low <= r.estimate <= r.high
    r1 = paired_bootstrap(m[:1], "snsr")
    assert r1.flagged and math.isnan(r1.low) and not math.isnan(r1.estimate)
    with pytest.raises(ValueError):
        paired_bootstrap(np.zeros(3))
    with pytest.raises(ValueError):
        paired_bootstrap(m, "gini")


def test_paired_bootstrap_coverage_of_a_difference():
    # SNSR of two values whose true mean difference is 0.2 (far from 0, so SNSR = |diff|).
    rng = np.random.default_rng(99)
    reps, n, hits = 200, 30, 0
    for rep in range(reps):
        base = rng.normal(0.5, 0.2, (n, 1))
        m = base + np.array([[0.0, 0.2]]) + rng.normal(0, 0.1, (n, 2))
        r = paired_bootstrap(m, "snsr", n_resamples=300, seed=rep)
        hits += r.low <= 0.2 <= r.high
    assert 0.87 <= hits / reps <= 0.99


# --------------------------------------------------------------------------- permutation test


def test_permutation_detects_effect_and_respects_plus_one():
    m = np.column_stack([np.zeros(30), np.ones(30)])
    r = permutation_test_values(m, "snsr", n_permutations=499, seed=0)
    assert r.statistic == 1.0
    assert r.pvalue == pytest.approx(1 / 500)  # the smallest possible with +1 correction
    assert r.null_distribution.shape == (499,)


def test_permutation_single_row_is_not_significant():
    # One unit: every relabelling gives the same SNSR, so p = 1.
    r = permutation_test_values([[0.0, 1.0]], "snsr", n_permutations=99, seed=0)
    assert r.pvalue == 1.0


def test_permutation_matches_exact_enumeration():
    # 4 units x 2 values: 2^4 equally likely relabellings under the null; exact p-value of
    # SNSR = |mean difference|.
    m = np.array([[0.1, 0.5], [0.3, 0.2], [0.6, 0.9], [0.4, 0.8]])
    obs = snsr(m.mean(axis=0))
    null = []
    for flips in itertools.product([False, True], repeat=4):
        mm = np.where(np.array(flips)[:, None], m[:, ::-1], m)
        null.append(snsr(mm.mean(axis=0)))
    exact = np.mean(np.array(null) >= obs - 1e-12)
    r = permutation_test_values(m, "snsr", n_permutations=4000, seed=1)
    assert r.pvalue == pytest.approx(exact, abs=0.03)


def test_permutation_pvalues_uniform_under_null():
    rng = np.random.default_rng(2024)
    pvals = []
    for rep in range(300):
        m = rng.normal(0.5, 0.2, (15, 1)) + rng.normal(0, 0.1, (15, 4))  # exchangeable values
        pvals.append(permutation_test_values(m, "snsv", n_permutations=199, seed=rep).pvalue)
    pvals = np.asarray(pvals)
    assert 0.02 <= np.mean(pvals <= 0.05) <= 0.09
    assert 0.40 <= np.mean(pvals <= 0.5) <= 0.60
    assert sps.kstest(pvals, "uniform").pvalue > 0.001


def test_permutation_alternatives_and_validation():
    m = _matrix(n=20)
    g = permutation_test_values(m, "snsr", n_permutations=199, seed=0)
    lo = permutation_test_values(m, "snsr", n_permutations=199, seed=0, alternative="less")
    two = permutation_test_values(m, "snsr", n_permutations=199, seed=0,
                                  alternative="two-sided")
    assert g.pvalue < 0.01 < lo.pvalue
    assert two.pvalue == pytest.approx(min(1.0, 2 * min(g.pvalue, lo.pvalue)))
    with pytest.raises(ValueError):
        permutation_test_values(m, alternative="bigger")
    r = permutation_test_values(np.zeros((0, 3)))
    assert math.isnan(r.pvalue)


# ------------------------------------------------------------------------ Benjamini-Hochberg


def test_bh_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = np.concatenate([rng.uniform(0, 1, 30), rng.uniform(0, 0.01, 5), [0.02, 0.02]])
        res = benjamini_hochberg(p, alpha=0.05)
        expected = sps.false_discovery_control(p, method="bh")
        np.testing.assert_allclose(res.adjusted, expected, rtol=1e-12)
        np.testing.assert_array_equal(res.reject, expected <= 0.05)


def test_bh_hand_vector_and_nan():
    # sorted .01, .03, .04, .5 -> * 4 / rank = .04, .06, .0533, .5 -> step-up min from the top.
    r = benjamini_hochberg([0.01, 0.04, 0.03, 0.5], alpha=0.05)
    np.testing.assert_allclose(r.adjusted, [0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert r.reject.tolist() == [True, False, False, False]
    r = benjamini_hochberg([0.01, np.nan, 0.04], alpha=0.05)
    np.testing.assert_allclose(r.adjusted[[0, 2]], [0.02, 0.04])
    assert math.isnan(r.adjusted[1]) and r.reject.tolist() == [True, False, True]
    assert benjamini_hochberg([]).adjusted.shape == (0,)
    with pytest.raises(ValueError):
        benjamini_hochberg([1.5])


# ----------------------------------------------------------------------- small-sample warning


def test_small_sample_warning():
    assert small_sample_warning(20) is None
    assert "no confidence interval" in small_sample_warning(0)
    assert "unreliable" in small_sample_warning(5)
    assert small_sample_warning(5, minimum=5) is None


def test_bootstrap_unit_means_resamples_whole_units():
    from recaudit.stats import bootstrap_unit_means

    x = np.random.default_rng(3).random((7, 2, 3))
    boot = bootstrap_unit_means(x, 300, np.random.default_rng(11), chunk=128)
    assert boot.shape == (300, 2, 3)
    rng = np.random.default_rng(11)  # same draws, chunk by chunk: counts @ units / n
    counts = np.vstack([rng.multinomial(7, np.full(7, 1 / 7), size=b) for b in (128, 128, 44)])
    np.testing.assert_allclose(boot, np.einsum("bn,nvk->bvk", counts, x) / 7)
    assert np.all(boot >= x.min(axis=0) - 1e-12) and np.all(boot <= x.max(axis=0) + 1e-12)
