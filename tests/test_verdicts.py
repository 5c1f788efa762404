"""verdicts: alpha, the deciding p, significance, harm direction, severity and the small-sample
rule, on hand-computed cases."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest

from recaudit.config import StatsConfig
from recaudit.metrics.specs import MetricSpec
from recaudit.results import AuditResult, MetricRecord, Provenance
from recaudit.verdicts import (
    DEFAULT_ALPHA,
    INCONCLUSIVE,
    MIN_UNITS,
    REFUSAL_SHARE,
    alpha_of,
    ci_excludes_null,
    decision_p,
    enough_units,
    harm_direction,
    inconclusive_label,
    is_significant,
    min_units_of,
    on_harmful_side,
    probe_status,
    record_severity,
    refusal_severity,
    severity,
    small_sample_warning,
    flag_status,
)


def _result(stats: object) -> AuditResult:
    return AuditResult(name="t", provenance=Provenance(tool_version="0", model_spec="m"), probes=[],
                       config={"stats": stats})


def _rec(**kw) -> MetricRecord:
    return MetricRecord(probe="p", metric="m", **kw)


# -- alpha ---------------------------------------------------------------------------------------
def test_alpha_of_a_result_reads_numbers_and_numeric_strings():
    assert alpha_of(_result({"alpha": 0.1})) == 0.1
    assert alpha_of(_result({"alpha": "0.01"})) == 0.01  # a YAML string: read as a number


@pytest.mark.parametrize("bad", [None, "high", 0, 1, 1.5, -0.1, float("nan"), True, [0.1]])
def test_an_invalid_alpha_falls_back_to_the_default(bad):
    assert alpha_of(_result({"alpha": bad})) == DEFAULT_ALPHA == 0.05


def test_alpha_of_a_result_without_stats_and_of_a_stats_config():
    bare = AuditResult(name="t", provenance=Provenance(tool_version="0", model_spec="m"))
    assert alpha_of(bare) == 0.05
    assert alpha_of(StatsConfig(alpha=0.2)) == 0.2
    assert alpha_of(NS(alpha="0.3")) == 0.3


def test_min_units_of_reads_the_configured_override():
    assert min_units_of(StatsConfig()) == MIN_UNITS == 10
    assert min_units_of(StatsConfig(min_group_size=3)) == 3
    assert min_units_of(_result({"min_group_size": 25})) == 25
    assert min_units_of(_result({"min_group_size": "x"})) == MIN_UNITS
    assert min_units_of(_result({"min_group_size": 2.5})) == MIN_UNITS


# -- p-values ------------------------------------------------------------------------------------
def test_an_adjusted_p_of_zero_is_used_not_treated_as_missing():
    rec = _rec(p_value=0.3, p_adjusted=0.0)
    # `rec.p_adjusted or rec.p_value` (an old copy in the report) gives 0.3 here
    assert decision_p(rec) == 0.0
    assert is_significant(rec, 0.05) is True


def test_decision_p_falls_back_to_the_raw_p():
    assert decision_p(_rec(p_value=0.03)) == 0.03
    assert decision_p(_rec()) is None
    assert is_significant(_rec(), 0.05) is None


def test_significance_is_strictly_below_alpha():
    assert is_significant(_rec(p_value=0.01, p_adjusted=0.05), 0.05) is False
    assert is_significant(_rec(p_value=0.01, p_adjusted=0.0499), 0.05) is True
    assert is_significant(_rec(p_value=0.04), 0.01) is False
    assert is_significant(NS(p_value=float("nan"), p_adjusted=None), 0.05) is None


# -- direction -----------------------------------------------------------------------------------
def test_harm_direction_prefers_the_first_declaration():
    gap = MetricSpec("g", "a gap", higher_is_worse=True, null=0.0, range=(0.0, 1.0))
    assert harm_direction(_rec(higher_is_worse=False), gap) is False
    assert harm_direction(_rec(), gap) is True
    assert harm_direction(_rec(), None) is None


def test_on_harmful_side_of_the_null():
    gap = MetricSpec("g", "a gap", higher_is_worse=True, null=0.0)
    ratio = MetricSpec("r", "a ratio", higher_is_worse=False, null=1.0)
    assert on_harmful_side(0.1, gap) is True and on_harmful_side(0.0, gap) is False
    assert on_harmful_side(0.8, ratio) is True and on_harmful_side(1.2, ratio) is False
    assert on_harmful_side(0.1, MetricSpec("s", "share", higher_is_worse=None)) is None
    assert on_harmful_side(None, gap) is None


# -- severity ------------------------------------------------------------------------------------
AUC = MetricSpec("auc", "AUC", higher_is_worse=True, null=0.5, range=(0.0, 1.0))  # span 0.5
GAP = MetricSpec("gap", "gap", higher_is_worse=True, null=0.0, range=(0.0, 1.0))  # span 1
WIDE = MetricSpec("wide", "gap", higher_is_worse=True, null=0.0, range=(0.0, 2.0))  # span 2


@pytest.mark.parametrize("estimate, label", [
    (0.2, "high"),      # |0.2 - 0| / 1 = 0.2: the high bound itself
    (0.1999, "medium"),
    (0.1, "medium"),    # the medium bound itself
    (0.0999, "low"),
    (0.0, "low"),       # significant but at the null: still a finding, the lowest
])
def test_severity_ladder_boundaries(estimate, label):
    assert severity(_rec(estimate=estimate, n=50), GAP, True) == label


def test_severity_measures_from_the_null_on_either_side_and_scales_by_the_range():
    assert severity(_rec(estimate=0.62, n=50), AUC, True) == "high"    # 0.12 / 0.5 = 0.24
    assert severity(_rec(estimate=0.44, n=50), AUC, True) == "medium"  # 0.06 / 0.5 = 0.12
    assert severity(_rec(estimate=0.25, n=50), AUC, True) == "high"    # below the null: 0.5
    assert severity(_rec(estimate=0.39, n=50), WIDE, True) == "medium"   # 0.39 / 2 = 0.195
    assert severity(_rec(estimate=0.19, n=50), WIDE, True) == "low"      # 0.19 / 2 = 0.095
    assert severity(_rec(estimate=0.40, n=50), WIDE, True) == "high"     # 0.40 / 2 = 0.2


def test_severity_is_info_unless_significant_and_medium_without_a_range():
    assert severity(_rec(estimate=0.9, n=50), AUC, False) == "info"
    assert severity(_rec(estimate=0.9, n=50), AUC, None) == "info"
    assert severity(_rec(n=50), AUC, True) == "info"  # no estimate
    pop = MetricSpec("pop", "mean popularity", higher_is_worse=True)
    assert severity(_rec(estimate=123.0, n=50), pop, True) == "medium"
    assert severity(_rec(estimate=0.9, n=50), None, True) == "medium"


def test_a_finding_on_too_few_units_is_never_above_low():
    assert severity(_rec(estimate=0.9, n=MIN_UNITS - 1), AUC, True) == "low"
    assert severity(_rec(estimate=0.9, n=MIN_UNITS), AUC, True) == "high"
    assert severity(_rec(estimate=0.9, n=4), AUC, True, min_units=4) == "high"
    assert severity(_rec(estimate=0.9, n=3), AUC, True, min_units=4) == "low"
    pop = MetricSpec("pop", "mean popularity", higher_is_worse=True)
    assert severity(_rec(estimate=5.0, n=2), pop, True) == "low"
    assert severity(_rec(estimate=0.9), AUC, True) == "high"  # n unknown: not held against it
    assert severity(_rec(estimate=0.9, n=2), AUC, False) == "info"


# -- small samples -------------------------------------------------------------------------------
def test_small_sample_warning():
    assert small_sample_warning(MIN_UNITS) is None
    assert small_sample_warning(0) == "only 0 units (< 10): no confidence interval"
    assert small_sample_warning(1) == "only 1 unit (< 10): no confidence interval"
    assert small_sample_warning(5) == "only 5 units (< 10): confidence interval unreliable"
    assert small_sample_warning(5, min_units=5) is None
    assert enough_units(10) and not enough_units(9) and enough_units(None)


def test_record_severity_of_a_record_no_finding_speaks_for():
    tested = _rec(estimate=0.7, n=50, p_value=0.01, ci_low=0.6, ci_high=0.8)
    assert record_severity(tested, AUC, 0.05) == "high"              # 0.2 / 0.5 = 0.4
    assert record_severity(tested, AUC, 0.005) == "info"             # not significant
    untested = _rec(estimate=0.7, n=50, ci_low=0.6, ci_high=0.8)
    assert ci_excludes_null(untested, AUC) is True
    assert record_severity(untested, AUC, 0.05) == "low"             # CI leaves out 0.5
    covering = _rec(estimate=0.52, n=50, ci_low=0.45, ci_high=0.6)
    assert ci_excludes_null(covering, AUC) is False
    assert record_severity(covering, AUC, 0.05) == "info"
    assert ci_excludes_null(_rec(estimate=0.7), AUC) is None         # no CI
    assert ci_excludes_null(untested, MetricSpec("s", "s", higher_is_worse=None)) is None


def test_refusal_severity_thresholds():
    assert refusal_severity(0.0) is None and refusal_severity(0.0499) is None
    assert refusal_severity(REFUSAL_SHARE) == "medium" and refusal_severity(0.4999) == "medium"
    assert refusal_severity(0.5) == "high" and refusal_severity(1.0) == "high"


def test_refusals_on_too_few_answers_are_never_above_low():
    assert refusal_severity(0.9, n=MIN_UNITS - 1) == "low"   # was high: 2 of 3 answers empty
    assert refusal_severity(0.9, n=MIN_UNITS) == "high"
    assert refusal_severity(0.2, n=4, min_units=4) == "medium"
    assert refusal_severity(0.01, n=2) is None


# -- the small-sample rule for tests and probes --------------------------------------------------
def test_a_significant_test_on_too_few_units_is_inconclusive():
    assert flag_status(True, MIN_UNITS) == "flag"
    assert flag_status(True, MIN_UNITS - 1) == INCONCLUSIVE == "inconclusive"
    assert flag_status(True, None) == "flag"          # n unknown: not held against it
    assert flag_status(True, 3, min_units=3) == "flag"
    assert flag_status(False, 50) == flag_status(None, 50) == "pass"


def test_no_probe_is_flagged_below_the_reliable_number_of_units():
    label = "INCONCLUSIVE (3 units < 10: too few for a verdict)"
    assert inconclusive_label(3) == label
    assert inconclusive_label(1, 5) == "INCONCLUSIVE (1 unit < 5: too few for a verdict)"
    # a significant test and a low finding on 3 units: was FLAGGED
    assert probe_status(["inconclusive"], ["low"], 3) == ("inconclusive", label)
    assert probe_status(["pass"], ["low"], 3) == ("inconclusive", label)
    assert probe_status(["inconclusive"], [], 3, n_failed=2) == ("inconclusive", label)
    # on enough units the same evidence flags it
    assert probe_status(["flag"], ["low"], 20) == ("warn", "FLAGGED")
    assert probe_status(["pass"], ["low"], 20) == ("warn", "FLAGGED")
    # below the rule never FLAGGED, whatever a finding was rated under another threshold
    assert probe_status(["flag"], [], 3) == ("inconclusive", label)
    assert probe_status([], ["high"], 3) == ("inconclusive", label)
    assert probe_status([], ["high"], None) == ("warn", "FLAGGED")  # units unknown
    # nothing to flag: OK, or WARN for failed queries, whatever the units
    assert probe_status(["pass"], [], 3) == ("pass", "OK")
    assert probe_status([], [], 3, n_failed=1) == ("warn", "WARN")
    assert probe_status(["pass"], ["low"], 3, min_units=3) == ("warn", "FLAGGED")
    assert probe_status(["inconclusive"], [], None)[1] == (
        "INCONCLUSIVE (fewer than 10 units: too few for a verdict)")


def test_noise_limit_takes_the_harmful_side_of_the_null():
    from types import SimpleNamespace as S

    from recaudit.verdicts import beyond_noise, noise_limit

    rec = S(null_p95=0.3, null_p05=0.7, higher_is_worse=None)
    assert noise_limit(rec, S(higher_is_worse=True)) == (0.3, "\u2264")
    assert noise_limit(rec, S(higher_is_worse=None)) == (0.3, "\u2264")  # a spread
    assert noise_limit(rec, S(higher_is_worse=False)) == (0.7, "\u2265")
    # the record's own direction comes first; a missing percentile is no limit
    assert noise_limit(S(null_p95=0.3, null_p05=0.7, higher_is_worse=False),
                       S(higher_is_worse=True)) == (0.7, "\u2265")
    assert noise_limit(S(null_p95=0.3, null_p05=None), S(higher_is_worse=False)) is None
    assert beyond_noise(0.5, (0.3, "\u2264")) == pytest.approx(0.2)
    assert beyond_noise(0.5, (0.7, "\u2265")) == pytest.approx(0.2)
    assert beyond_noise(0.8, (0.7, "\u2265")) < 0
