"""report/_common reads every verdict from recaudit.verdicts: alpha, the deciding p, the
severity of a derived finding (with the small-sample cap)."""

from __future__ import annotations

from recaudit.report import _common as c
from recaudit.results import AuditResult, MetricRecord, ProbeResult, Provenance


def _result(*records: MetricRecord, stats: dict | None = None) -> AuditResult:
    probe = ProbeResult(id="leakage", probe="leakage", metrics=list(records), headline=[
        "leakage_auc"])
    probe.describe_metrics()
    return AuditResult(provenance=Provenance(tool_version="t", model_spec="m"),
                       config={"stats": stats or {}}, probes=[probe])


def _auc(estimate: float, attribute: str = "gender", **kw) -> MetricRecord:
    kw.setdefault("ci_low", estimate - 0.05)
    kw.setdefault("ci_high", estimate + 0.05)
    return MetricRecord(probe="leakage", metric="leakage_auc", attribute=attribute,
                        estimate=estimate, confidence=0.95, higher_is_worse=True, **kw)


def test_a_string_alpha_is_read_as_a_number():
    res = _result(_auc(0.7, p_value=0.07, n=50), stats={"alpha": "0.1"})
    assert c.alpha_of(res) == 0.1  # was 0.05: the report did not coerce, the gates did
    (test,) = c.probe_tests(res.probes[0], c.alpha_of(res))
    assert test.status == "flag" and "significant at alpha=0.1" in test.detail


def test_an_adjusted_p_of_zero_is_the_p_the_top_finding_quotes():
    res = _result(_auc(0.7, p_value=0.3, p_adjusted=0.0, n=50))
    (top,) = c.top_findings(res, 1)
    # `p_adjusted or p_value` quoted the raw 0.3 under the name p_adj
    assert "Significant at alpha=0.05 (p_adj=<0.001)" in top.detail


def test_derived_findings_use_the_one_ladder_and_the_small_sample_cap():
    res = _result(_auc(0.7, "gender", p_value=0.001, n=50),   # 0.2 / 0.5 = 0.4 -> high
                  _auc(0.56, "age", p_value=0.001, n=50),     # 0.06 / 0.5 = 0.12 -> medium
                  _auc(0.9, "race", p_value=0.001, n=4),      # 4 units < 10 -> at most low
                  _auc(0.7, "region", n=50),                  # no test, CI leaves out 0.5
                  _auc(0.52, "income", n=50))                 # no test, CI covers 0.5
    sev = {f.title.split(":")[0]: f.severity for f in c.top_findings(res, 5)}
    assert sev == {"gender": "high", "age": "medium", "race": "low", "region": "low",
                   "income": "info"}
    lenient = _result(_auc(0.9, "race", p_value=0.001, n=4), stats={"min_group_size": 3})
    assert c.top_findings(lenient, 1)[0].severity == "high"


def test_a_floored_metric_shows_its_floor_and_excess_read_from_the_declaration():
    """leakage_auc declares ``noise_floor``: the derived finding quotes the floor's mean, its
    95th percentile and the excess over the floor; without a recorded floor it says so."""
    res = _result(_auc(0.7, "gender", p_value=0.001, n=50, null_mean=0.52, null_p95=0.6),
                  _auc(0.6, "age", p_value=0.001, n=50))
    text = {f.title.split(":")[0]: f.detail for f in c.top_findings(res, 2)}
    assert ("Noise alone gives 0.520 on average, up to 0.600 (null 95th percentile); the "
            "excess over the floor is 0.180.") in text["gender"]
    assert "Positive under noise alone; no floor recorded for this value." in text["age"]
    assert res.probes[0].specs["leakage_auc"].noise_floor


def test_the_excess_ci_decides_whether_an_untested_floored_record_leaves_its_null():
    """An untested AUC whose CI [0.55, 0.65] leaves out 0.5 but whose floor is 0.58: the CI
    of the excess over the floor, [0.47, 0.57], covers 0.5."""
    res = _result(_auc(0.6, null_mean=0.58, null_p95=0.66))
    rec = res.probes[0].metrics[0]
    assert c.ci_excludes_null(rec, res.probes[0].specs["leakage_auc"])
    assert c.excess_ci_excludes_null(res.probes[0], rec) is False


def test_a_lower_is_worse_floor_is_the_null_5th_percentile_everywhere_it_is_shown():
    """An impact ratio: noise alone gives *at least* its null's 5th percentile, not 'up to'
    its 95th (the story, the floor sentence, the HTML cell and a gate's message)."""
    import recaudit.metrics.selection  # noqa: F401  (declares impact_ratio_min_max)
    from recaudit.gates import GateSpec, evaluate_gates
    from recaudit.report import html_report
    from recaudit.report.story import story

    rec = MetricRecord(probe="cand", metric="impact_ratio_min_max", attribute="race", k=1,
                       estimate=0.5, ci_low=0.4, ci_high=0.6, confidence=0.95, n=60,
                       p_value=0.001, p_adjusted=0.001, null_mean=0.85, null_p95=0.99,
                       null_p05=0.7)
    probe = ProbeResult(id="cand", probe="candidate_groups", metrics=[rec],
                        headline=["impact_ratio_min_max"])
    probe.describe_metrics()
    res = AuditResult(provenance=Provenance(tool_version="t", model_spec="m"), probes=[probe])
    assert c.noise(probe, rec) == (0.7, "\u2265")
    assert ("down to 0.700 (null 5th percentile); the shortfall below the floor is 0.350"
            in c.floor_text(probe, rec))
    beyond = story(res).beyond[0]
    assert "(noise alone \u2265 0.700)" in beyond and "0.990" not in beyond
    html = html_report(res)
    assert "noise alone \u2265 0.700" in html and "noise alone \u2264 0.990" not in html
    (gate,) = evaluate_gates(res, [GateSpec(probe="cand", metric="impact_ratio_min_max",
                                            min=0.8)])
    assert "5th pct 0.700" in gate.message and "95th pct" not in gate.message


def test_confidence_levels_print_with_at_most_two_decimals():
    """A Bonferroni level (1 - 0.05/3) prints 98.33%, not 98.3333%."""
    assert c.conf_pct(1 - 0.05 / 3) == "98.33%"
    assert (c.conf_pct(0.95), c.conf_pct(0.96), c.conf_pct(None)) == ("95%", "96%", "95%")
