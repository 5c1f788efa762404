"""Anytime-valid primitives of recaudit.sequential: the hedged betting and empirical-Bernstein
confidence sequences (time-uniform coverage, width, the capital formula by hand, pinned values of
the paper's authors' code), the one-sided betting e-process (Ville under the null, power under an
alternative), e-BH, and the margin-gate decisions taken at an audit's looks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recaudit import sequential
from recaudit.sequential import (
    betting_capital,
    betting_confidence_sequence,
    betting_e_value,
    e_bh,
    eb_confidence_sequence,
    margin_decision,
    sequential_margin_test,
)

ALPHA = 0.05


def _slack(runs: int, alpha: float = ALPHA) -> float:
    """alpha plus three Monte Carlo standard errors of a rate over ``runs`` runs."""
    return alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def _ever_missed(lower, upper, mean) -> bool:
    return bool(((lower > mean) | (upper < mean)).any())


def _naive_clt(x):
    """The fixed-n 95% CLT interval, recomputed at every t (what peeking does)."""
    t = np.arange(1, x.size + 1)
    m = np.cumsum(x) / t
    sd = np.sqrt(np.maximum(np.cumsum(x**2) / t - m**2, 0.0))
    h = 1.96 * sd / np.sqrt(t)
    return (m - h)[9:], (m + h)[9:]  # from t = 10 on


# Time-uniform miscoverage: the true mean outside the interval at ANY t <= n.
RUNS, N = 200, 200
DISTS = {
    "bernoulli(0.3)": (lambda r: r.binomial(1, 0.3, N).astype(float), 0.3),
    "beta(2,5)": (lambda r: r.beta(2, 5, N), 2 / 7),
}


@pytest.mark.parametrize("dist", sorted(DISTS))
def test_confidence_sequences_cover_the_mean_at_all_times(dist):
    draw, mean = DISTS[dist]
    miss_bet = miss_eb = miss_naive = 0
    for seed in range(RUNS):
        x = draw(np.random.default_rng(seed))
        miss_bet += _ever_missed(*betting_confidence_sequence(x, 0.0, 1.0, ALPHA, grid_size=200),
                                 mean)
        miss_eb += _ever_missed(*eb_confidence_sequence(x, 0.0, 1.0, ALPHA), mean)
        miss_naive += _ever_missed(*_naive_clt(x), mean)
    assert miss_naive / RUNS > _slack(RUNS)  # the harness bites: peeking at a CI fails it
    assert miss_bet / RUNS <= _slack(RUNS)
    assert miss_eb / RUNS <= _slack(RUNS)


def test_coverage_on_a_paired_difference_scale():
    # values in {-1, 0, 1} with mean 0.1, bounds [-1, 1]: the rescaling to [0, 1] is right
    miss = 0
    for seed in range(RUNS):
        x = np.random.default_rng(seed).choice([-1.0, 0.0, 1.0], p=[0.15, 0.6, 0.25], size=N)
        lower, upper = betting_confidence_sequence(x, -1.0, 1.0, ALPHA, grid_size=200)
        assert lower.min() >= -1.0 and upper.max() <= 1.0
        miss += _ever_missed(lower, upper, 0.1)
    assert miss / RUNS <= _slack(RUNS)


def test_betting_is_narrower_than_eb_and_both_shrink():
    runs = 40
    draws = ((lambda r: r.beta(2, 5, N), 0.0),
             (lambda r: r.choice([-1.0, 0.0, 1.0], p=[0.15, 0.6, 0.25], size=N), -1.0))
    for draw, lo in draws:
        narrower, w50, w200 = 0, [], []
        for seed in range(runs):
            x = draw(np.random.default_rng(seed))
            bl, bu = betting_confidence_sequence(x, lo, 1.0, ALPHA)
            el, eu = eb_confidence_sequence(x, lo, 1.0, ALPHA)
            narrower += (bu[-1] - bl[-1]) < (eu[-1] - el[-1])
            w50.append(bu[49] - bl[49])
            w200.append(bu[-1] - bl[-1])
            # running intersection: nested intervals
            assert (np.diff(bl) >= 0).all() and (np.diff(bu) <= 0).all()
            assert (np.diff(el) >= 0).all() and (np.diff(eu) <= 0).all()
        assert narrower / runs >= 0.8
        assert np.mean(w200) < 0.7 * np.mean(w50)


# ------------------------------------------------------------------- the capital, by hand
def _hand_capital(x, m, alpha, theta=0.5, c=0.5, combine="sum"):
    """K_t(m) of Waudby-Smith & Ramdas (2024), Sec. 4, one observation at a time, for x in [0,1]."""
    out = []
    k_plus = k_minus = 1.0
    sum_x = sum_dev = 0.0
    var_prev = 0.25  # sigma2_hat_0
    for t, xt in enumerate(x, start=1):
        lam_dot = math.sqrt(2 * math.log(2 / alpha) / (var_prev * t * math.log(1 + t)))
        lam_plus = lam_dot if m == 0 else min(lam_dot, c / m)
        lam_minus = lam_dot if m == 1 else min(lam_dot, c / (1 - m))
        k_plus *= 1 + lam_plus * (xt - m)
        k_minus *= 1 - lam_minus * (xt - m)
        if combine == "sum":
            out.append(theta * k_plus + (1 - theta) * k_minus)
        else:
            out.append(max(theta * k_plus, (1 - theta) * k_minus))
        sum_x += xt
        mu_t = (0.5 + sum_x) / (t + 1)
        sum_dev += (xt - mu_t) ** 2
        var_prev = (0.25 + sum_dev) / (t + 1)
    return out


@pytest.mark.parametrize("combine", ["sum", "max"])
def test_capital_matches_a_hand_computation(combine):
    x = [0.2, 0.9, 0.5, 0.7]
    ms = [0.0, 0.1, 0.25, 0.5, 0.8, 1.0]
    got = betting_capital(x, 0.0, 1.0, ms, alpha=0.1, combine=combine)
    want = np.array([_hand_capital(x, m, 0.1, combine=combine) for m in ms]).T
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # and in the units of a paired difference: x -> 2x - 1, m -> 2m - 1 leaves K unchanged
    got2 = betting_capital(2 * np.array(x) - 1, -1.0, 1.0, 2 * np.array(ms) - 1, alpha=0.1,
                           combine=combine)
    np.testing.assert_allclose(got2, want, rtol=1e-12)


def test_capital_first_step_literal():
    # t = 1, x = 0.2, alpha = 0.05: lambda_dot = sqrt(2 log 40 / (1/4 log 2)) = 6.52 > 2, so
    # m = 0.5: K+ = 1 + 1 * (-0.3) = 0.7, K- = 1 + 1 * 0.3 = 1.3, sum 1.0, max 0.65;
    # m = 0.25: K+ = 1 + 2 * (-0.05) = 0.9, K- = 1 + (2/3) * 0.05 = 31/30
    k_sum = betting_capital([0.2], 0.0, 1.0, [0.5, 0.25])[0]
    k_max = betting_capital([0.2], 0.0, 1.0, [0.5, 0.25], combine="max")[0]
    np.testing.assert_allclose(k_sum, [1.0, 0.45 + 31 / 60], rtol=1e-12)
    np.testing.assert_allclose(k_max, [0.65, 31 / 60], rtol=1e-12)


# Pinned against reference implementations, computed once on this input:
#  betting: confseq 0.0.11 (Waudby-Smith's package), hedged_cs(x, alpha=0.05, breaks=1000,
#    running_intersection=True) for "max", and betting_cs(..., convex_comb=True) with the same
#    lambda_predmix_eb(alpha=alpha/2) bets for "sum" (its grid has 1001 points);
#  EB: ville 0.1.0 EmpiricalBernsteinCS(bounds=(0, 1), alpha=0.05, c=0.5) (Theorem 2 as
#    printed; confseq's predmix_empbern_twosided_cs centres v_i on the unregularised mean).
PIN_X = [0.29, 0.19, 0.16, 0.28, 0.21, 0.09, 0.44, 0.37, 0.11, 0.24, 0.46, 0.15, 0.08, 0.3, 0.2,
         0.12, 0.53, 0.04, 0.41, 0.53, 0.36, 0.16, 0.27, 0.32, 0.06, 0.66, 0.36, 0.35, 0.17, 0.36,
         0.03, 0.32, 0.58, 0.51, 0.16, 0.26, 0.24, 0.21, 0.29, 0.15]
PIN_MAX = {5: (0.0, 0.758), 10: (0.104, 0.6), 20: (0.16, 0.478), 40: (0.202, 0.401)}
PIN_SUM = {5: (0.0, 0.758), 10: (0.104, 0.6), 20: (0.16, 0.478), 40: (0.203, 0.401)}
PIN_EB = {5: (0.0, 1.0), 10: (0.0, 0.9846609897), 20: (0.0, 0.6399675075),
          40: (0.0806018644, 0.4703981356)}


def test_pinned_against_reference_implementations():
    for combine, pins in (("max", PIN_MAX), ("sum", PIN_SUM)):
        lower, upper = betting_confidence_sequence(PIN_X, 0.0, 1.0, 0.05, grid_size=1001,
                                                   combine=combine)
        for t, (lo, hi) in pins.items():
            assert (lower[t - 1], upper[t - 1]) == pytest.approx((lo, hi), abs=1e-9), (combine, t)
    lower, upper = eb_confidence_sequence(PIN_X, 0.0, 1.0, 0.05)
    for t, (lo, hi) in PIN_EB.items():
        assert (lower[t - 1], upper[t - 1]) == pytest.approx((lo, hi), abs=1e-9), t


def test_blocks_over_time_change_nothing(monkeypatch):
    x = np.random.default_rng(3).beta(2, 5, 150)
    whole = betting_confidence_sequence(x, 0.0, 1.0, grid_size=300)
    monkeypatch.setattr(sequential, "_MAX_ELEMENTS", 700)  # blocks of 2 rows
    np.testing.assert_array_equal(betting_confidence_sequence(x, 0.0, 1.0, grid_size=300)[0],
                                  whole[0])
    np.testing.assert_array_equal(betting_confidence_sequence(x, 0.0, 1.0, grid_size=300)[1],
                                  whole[1])


def test_an_emptied_intersection_keeps_the_last_interval():
    lower, upper = sequential._running_intersection(np.array([0.0, 0.5, 0.1, 0.55]),
                                                    np.array([1.0, 0.6, 0.3, 0.9]))
    assert lower.tolist() == [0.0, 0.5, 0.5, 0.55]
    assert upper.tolist() == [1.0, 0.6, 0.6, 0.6]
    # a drifting stream (100 ones, then zeros) empties it for real: never lower > upper
    # (after the ones the CS sits above 0.9; the zeros then exclude all of it)
    x = np.r_[np.ones(100), np.zeros(300)]
    for lo_, hi_ in (betting_confidence_sequence(x, 0.0, 1.0, grid_size=200),
                     eb_confidence_sequence(x, 0.0, 1.0)):
        assert lo_[99] > 0.9
        assert (lo_ <= hi_).all() and lo_[-1] == lo_[99] and hi_[-1] < 0.93


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        betting_confidence_sequence([0.5, 1.2], 0.0, 1.0)
    with pytest.raises(ValueError):
        eb_confidence_sequence([0.5, np.nan], 0.0, 1.0)
    with pytest.raises(ValueError):
        betting_confidence_sequence([0.5], 1.0, 0.0)
    with pytest.raises(ValueError):
        betting_confidence_sequence([0.5], 0.0, 1.0, alpha=1.5)
    with pytest.raises(ValueError):
        betting_capital([0.5], 0.0, 1.0, [0.5], combine="mean")


# --------------------------------------------------------------------------------- e-values
def test_e_process_keeps_ville_under_the_null():
    runs = 1000
    for p, side in ((0.5, "greater"), (0.5, "less"), (0.4, "greater"), (0.6, "less")):
        crossed = sum(
            betting_e_value(np.random.default_rng(s).binomial(1, p, N).astype(float), 0.0, 1.0,
                            0.5, side).max() >= 1 / ALPHA
            for s in range(runs))
        assert crossed / runs <= _slack(runs), (p, side)


def test_e_process_crosses_quickly_under_an_alternative():
    first = []
    for s in range(100):
        x = np.random.default_rng(s).binomial(1, 0.8, N).astype(float)
        e = betting_e_value(x, 0.0, 1.0, 0.5, "greater")
        assert (e > 0).all()
        hit = np.flatnonzero(e >= 1 / ALPHA)
        first.append(hit[0] + 1 if hit.size else N + 1)
        # the wrong side sees no evidence
        assert betting_e_value(x, 0.0, 1.0, 0.5, "less").max() < 1 / ALPHA
    assert max(first) <= 100 and np.median(first) <= 25
    # on a paired-difference scale, a mean of 0.3 against 0: same story, bounds [-1, 1]
    x = np.random.default_rng(0).choice([-1.0, 0.0, 1.0], p=[0.1, 0.5, 0.4], size=N)
    assert betting_e_value(x, -1.0, 1.0, 0.0, "greater").max() >= 1 / ALPHA


def test_e_value_hand_computation():
    # one-sided bets use log(1/alpha): lambda_dot_1 = sqrt(2 log 20 / (1/4 log 2)) ~ 5.9,
    # truncated at c / m0 = 0.5 / 0.25 = 2 (greater) or c / (1 - m0) = 2/3 (less)
    e = betting_e_value([1.0, 0.0], 0.0, 1.0, 0.25, "greater")
    assert e[0] == pytest.approx(1 + 2 * 0.75)
    e_less = betting_e_value([1.0], 0.0, 1.0, 0.25, "less")
    assert e_less[0] == pytest.approx(1 - (2 / 3) * 0.75)
    with pytest.raises(ValueError):
        betting_e_value([0.5], 0.0, 1.0, 0.5, "two-sided")
    with pytest.raises(ValueError):
        betting_e_value([0.5], 0.0, 1.0, 1.5)


# ------------------------------------------------------------------------------------ e-BH
def _ebh_by_definition(e, alpha):
    k_total = len(e)
    ranked = sorted(e, reverse=True)
    ks = [k for k in range(1, k_total + 1) if ranked[k - 1] >= k_total / (k * alpha)]
    if not ks:
        return [False] * k_total
    order = sorted(range(k_total), key=lambda i: -e[i])[: max(ks)]
    return [i in order for i in range(k_total)]


def test_e_bh_hand_cases():
    # K = 4, alpha = 0.1: thresholds K / (k alpha) = 40, 20, 13.3, 10 -> k* = 2
    assert e_bh([40.0, 25.0, 3.0, 1.0], 0.1).tolist() == [True, True, False, False]
    assert e_bh([3.0, 1.0, 25.0, 40.0], 0.1).tolist() == [False, False, True, True]
    # step-up: e_[1] = 15 < 40, yet k = 3 qualifies (15 >= 13.3), so all three go
    assert e_bh([15.0, 1.0, 15.0, 15.0], 0.1).tolist() == [True, False, True, True]
    assert not e_bh([1.0, 2.0, 5.0, 9.9], 0.1).any()  # all small: none
    assert not e_bh([], 0.1).any()
    # NaN: not counted in K, never rejected (K = 2 here: thresholds 20, 10)
    assert e_bh([25.0, np.nan, 11.0], 0.1).tolist() == [True, False, True]
    with pytest.raises(ValueError):
        e_bh([1.0, -2.0])


e_lists = st.lists(st.floats(0.0, 1e4, allow_nan=False), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(e_lists, st.sampled_from([0.05, 0.1, 0.2]))
def test_e_bh_matches_its_definition(e, alpha):
    assert e_bh(e, alpha).tolist() == _ebh_by_definition(e, alpha)


@settings(max_examples=150, deadline=None)
@given(e_lists.flatmap(lambda e: st.tuples(
    st.just(e), st.lists(st.floats(0.0, 1e4, allow_nan=False), min_size=len(e),
                         max_size=len(e)))),
    st.sampled_from([0.05, 0.1, 0.2]))
def test_e_bh_rejects_a_superset_when_every_e_value_grows(pair, alpha):
    e, growth = pair
    before = e_bh(e, alpha)
    after = e_bh(np.array(e) + np.array(growth), alpha)
    assert not (before & ~after).any()


# ---------------------------------------------------------------------------- margin gates
@pytest.mark.parametrize("lower, upper, want", [
    (-0.1, 0.1, "pass"),
    (0.25, 0.4, "fail"),        # wholly above +bound
    (-0.4, -0.25, "fail"),      # wholly below -bound
    (0.1, 0.3, "undecided"),    # straddles +bound
    (-0.3, -0.1, "undecided"),  # straddles -bound
    (-0.3, 0.3, "undecided"),   # wider than the band
    (-0.1, 0.2, "undecided"),   # touching the bound is not inside it
    (0.2, 0.3, "undecided"),    # ... nor beyond it
])
def test_margin_decision_two_sided(lower, upper, want):
    assert margin_decision(lower, upper, 0.2) == want


@pytest.mark.parametrize("lower, upper, want", [
    (-0.9, 0.1, "pass"),        # only the upper end matters
    (0.25, 0.4, "fail"),
    (0.1, 0.3, "undecided"),
    (-0.4, -0.25, "pass"),      # far below: passes a one-sided gate (fails a two-sided one)
])
def test_margin_decision_one_sided(lower, upper, want):
    assert margin_decision(lower, upper, 0.2, two_sided=False) == want


def test_margin_decision_rejects_bad_input():
    with pytest.raises(ValueError):
        margin_decision(0.3, 0.1, 0.2)
    with pytest.raises(ValueError):
        margin_decision(-0.1, 0.1, -0.2)


def _diffs(seed, probs, n=600):
    return np.random.default_rng(seed).choice([-1.0, 0.0, 1.0], p=probs, size=n)


LOOKS = [25, 50, 100, 200, 400, 600]


def test_margin_test_passes_a_null_effect_before_n():
    for seed in range(5):
        r = sequential_margin_test(_diffs(seed, [0.1, 0.8, 0.1]), -1.0, 1.0, 0.2, ALPHA,
                                   looks=LOOKS)
        assert r.decision == "pass" and r.n < 600
        assert r.n == LOOKS[r.look]
        assert -0.2 < r.lower[r.look] and r.upper[r.look] < 0.2
        earlier = [margin_decision(a, b, 0.2) for a, b in zip(r.lower[:r.look], r.upper[:r.look])]
        assert set(earlier) <= {"undecided"}


def test_margin_test_fails_a_large_effect_early():
    for seed in range(5):
        r = sequential_margin_test(_diffs(seed, [0.1, 0.3, 0.6]), -1.0, 1.0, 0.2, ALPHA,
                                   looks=LOOKS)  # mean 0.5
        assert r.decision == "fail" and r.n <= 200 and r.lower[r.look] > 0.2


def test_margin_test_decides_at_looks_only():
    x = _diffs(1, [0.1, 0.3, 0.6])
    every = sequential_margin_test(x, -1.0, 1.0, 0.2, ALPHA)  # looks = 1..n
    assert every.decision == "fail" and every.look == every.n - 1
    looks = [20, 40, 80, 160]
    r = sequential_margin_test(x, -1.0, 1.0, 0.2, ALPHA, looks=looks)
    assert r.decision == "fail" and r.n in looks
    # the first look at or after the first decided t (the CS only shrinks)
    assert r.n == min(n for n in looks if n >= every.n)
    assert r.lower.tolist() == every.lower[np.array(looks) - 1].tolist()


def test_margin_test_one_sided_undecided_and_eb():
    # mean 0.5 against a one-sided bound of 0.8: passes; too few units: undecided
    x = _diffs(2, [0.1, 0.3, 0.6])
    assert sequential_margin_test(x, -1.0, 1.0, 0.8, ALPHA, two_sided=False).decision == "pass"
    r = sequential_margin_test(x[:10], -1.0, 1.0, 0.2, ALPHA)
    assert (r.decision, r.look, r.n) == ("undecided", None, None)
    assert sequential_margin_test(x, -1.0, 1.0, 0.2, ALPHA, method="eb").decision == "fail"
    for bad in ([40, 20], [0, 10], [10, 10_000], [1.5, 3]):
        with pytest.raises(ValueError):
            sequential_margin_test(x, -1.0, 1.0, 0.2, ALPHA, looks=bad)


def test_betting_e_value_outside_is_valid_at_both_ends_and_bets_on_the_favoured_side():
    """Ville on the null's two edges (mean = high, mean = low), and growth on either side."""
    from recaudit.sequential import betting_e_value_outside

    runs, crossed = 300, {0.6: 0, 0.4: 0}
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        for p in crossed:  # Bernoulli(p) on [0, 1] against 0.4 <= mean <= 0.6
            e = betting_e_value_outside(rng.binomial(1, p, 200), 0.0, 1.0, 0.4, 0.6,
                                        alpha=0.05)
            crossed[p] += e.max() >= 1 / 0.05
    for p, n in crossed.items():
        assert n / runs <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / runs), (p, n)
    rng = np.random.default_rng(1)
    assert betting_e_value_outside(rng.binomial(1, 0.9, 200), 0, 1, 0.4, 0.6)[-1] > 1e4
    assert betting_e_value_outside(rng.binomial(1, 0.1, 200), 0, 1, 0.4, 0.6)[-1] > 1e4
    assert betting_e_value_outside(rng.binomial(1, 0.5, 200), 0, 1, 0.4, 0.6)[-1] < 20
    with pytest.raises(ValueError):
        betting_e_value_outside([0.5], 0.0, 1.0, 0.6, 0.4)


# ------------------------------------------------------------------ aGRAPA bets, one-sided bounds
def test_grapa_e_value_hand_computation():
    """aGRAPA: lambda_t = (mu_{t-1} - m0) / (sigma2_{t-1} + (mu_{t-1} - m0)^2), capped at c/m0.

    t = 1: mu_0 = 1/2, sigma2_0 = 1/4, m0 = 1/4: lambda = 0.25 / 0.3125 = 0.8 (cap 0.9 / 0.25);
    z = 1 gives 1 + 0.8 * 0.75 = 1.6. t = 2: mu_1 = 3/4, sigma2_1 = (1/4 + 1/16) / 2 =
    0.15625, lambda = 0.5 / 0.40625; z = 0 gives the factor 1 - 0.25 * 0.5 / 0.40625.
    """
    e = betting_e_value([1.0, 0.0], 0.0, 1.0, 0.25, "greater", truncation=0.9, bets="grapa")
    assert e[0] == pytest.approx(1.6)
    assert e[1] == pytest.approx(1.6 * (1 - 0.25 * 0.5 / 0.40625))
    # "less" at m0 = 0.9: lambda = (0.9 - 0.5) / (0.25 + 0.16), below the cap 0.5 / 0.1
    e = betting_e_value([0.0], 0.0, 1.0, 0.9, "less", truncation=0.5, bets="grapa")
    assert e[0] == pytest.approx(1 + 0.4 / 0.41 * 0.9)
    # the cap binds: "less" at m0 = 0.6 with c = 0.1: 0.1 / 0.26 = 0.385 > 0.1 / 0.4 = 0.25
    e = betting_e_value([0.0], 0.0, 1.0, 0.6, "less", truncation=0.1, bets="grapa")
    assert e[0] == pytest.approx(1 + 0.25 * 0.6)
    # no evidence yet for the side: no bet (lambda = max(0, ...) = 0)
    assert betting_e_value([1.0], 0.0, 1.0, 0.75, "greater", bets="grapa")[0] == 1.0
    with pytest.raises(ValueError):
        betting_e_value([0.5], 0.0, 1.0, 0.5, bets="kelly")
    with pytest.raises(ValueError):
        betting_e_value([0.5], 0.0, 1.0, 0.5, bets="grapa", truncation=1.0)


@pytest.mark.parametrize("side,p", [("greater", 0.5), ("less", 0.5), ("greater", 0.45),
                                    ("less", 0.55)])
def test_grapa_e_process_keeps_ville_under_the_null(side, p):
    runs = 600
    crossed = sum(
        betting_e_value(np.random.default_rng(s).binomial(1, p, N).astype(float), 0.0, 1.0,
                        0.5, side, truncation=0.9, bets="grapa").max() >= 1 / ALPHA
        for s in range(runs))
    assert crossed / runs <= _slack(runs), (side, p, crossed)


def test_grapa_bets_stop_earlier_than_plug_in_bets_on_low_variance_differences():
    """Paired differences of spread 0.24 on [-1, 1], mean 0.2 against 0.1: the plug-in bet is
    held down by the range (c = 1/2) and shrinks like 1/sqrt(t log t); aGRAPA bets near Kelly."""
    first = {"plugin": [], "grapa": []}
    for s in range(50):
        d = np.clip(np.random.default_rng(s).normal(0.2, 0.24, 400), -1, 1)
        for bets, c in (("plugin", 0.5), ("grapa", 0.9)):
            e = betting_e_value(d, -1.0, 1.0, 0.1, "greater", alpha=0.01, truncation=c,
                                bets=bets)
            hit = np.flatnonzero(e >= 100)
            first[bets].append(hit[0] + 1 if hit.size else 401)
    assert np.mean(first["grapa"]) < 0.8 * np.mean(first["plugin"]), first


@pytest.mark.parametrize("dist", sorted(DISTS))
def test_one_sided_bounds_each_miss_at_most_alpha(dist):
    draw, mean = DISTS[dist]
    below = above = 0
    for seed in range(RUNS):
        lower, upper = sequential.one_sided_bounds(draw(np.random.default_rng(seed)), 0.0, 1.0,
                                                   ALPHA)
        assert (lower <= upper).all() and (np.diff(lower) >= 0).all()
        assert (np.diff(upper) <= 0).all()
        below += bool((lower > mean).any())
        above += bool((upper < mean).any())
    assert below / RUNS <= _slack(RUNS) and above / RUNS <= _slack(RUNS), (below, above)


def test_one_sided_bounds_beat_the_hedged_sequence_on_low_variance_differences():
    """Each side at alpha, aGRAPA bets: tighter than the two-sided hedged CS at alpha."""
    d = np.clip(np.random.default_rng(0).normal(0.0, 0.24, 300), -1, 1)
    lower, upper = sequential.one_sided_bounds(d, -1.0, 1.0, 0.01)
    h_lower, h_upper = betting_confidence_sequence(d, -1.0, 1.0, 0.01)
    assert upper[-1] < h_upper[-1] and lower[-1] > h_lower[-1]
    assert upper[-1] - lower[-1] < 0.95 * (h_upper[-1] - h_lower[-1])
    with pytest.raises(ValueError):
        sequential.one_sided_bounds(d, -1.0, 1.0, 0.01, grid_size=2)
    with pytest.raises(ValueError):
        sequential.one_sided_bounds(d, -1.0, 1.0, 0.01, bets="kelly")


# Pinned from confseq 0.0.11's betting_strategies.lambda_aKelly(x, m, trunc_scale=0.9) (its
# aGRAPA bet: prior mean 1/2, variance 1/4, one fake observation), kept to the side under test
# (max(0, lambda) for "greater", max(0, -lambda) for "less"), on PIN_X; e_t = prod(1 +- lambda
# (x - m)). Agreement at the time of pinning: 5e-12 (greater, m = 0.15), 2e-13 (less, 0.4).
PIN_GRAPA = {(0.15, "greater"): {5: 1.5866311106, 10: 3.3430686014, 20: 30.3204667434,
                                 40: 7340.5965801685},
             (0.4, "less"): {5: 1.7685039855, 10: 4.5285732601, 20: 17.500298355,
                             40: 225.2998396049}}


def test_grapa_e_values_pinned_against_confseq():
    for (m, side), pins in PIN_GRAPA.items():
        e = betting_e_value(PIN_X, 0.0, 1.0, m, side, truncation=0.9, bets="grapa")
        for t, want in pins.items():
            assert e[t - 1] == pytest.approx(want, rel=1e-9), (m, side, t)
