"""report/story: the executive summary reads as a story (what was asked, what the model did, what
is beyond noise and the control, what a reranker would cost), from declarations only."""

from __future__ import annotations

from html import escape

from recaudit.probes.control import declare_versus_control
from recaudit.report import html_report, markdown_summary
from recaudit.report.story import story
from recaudit.results import (AuditResult, MetricRecord, ProbeResult, Provenance, Tradeoff,
                              TradeoffPoint)

VS = declare_versus_control("snsr_jaccard")


def _rec(metric: str, attribute: str | None = None, **kw) -> MetricRecord:
    return MetricRecord(probe="cf", metric=metric, attribute=attribute, k=10, **kw)


def _probe(n: int = 20) -> ProbeResult:
    recs = [
        # beyond the floor (p against the floor < alpha), and beyond the control
        _rec("snsr_jaccard", "gender", estimate=0.30, null_mean=0.05, null_p95=0.10,
             p_value=0.001, p_adjusted=0.002, n=n, ci_low=0.2, ci_high=0.4),
        # within the floor; within the control
        _rec("snsr_jaccard", "age", estimate=0.08, null_mean=0.05, null_p95=0.10,
             p_value=0.4, p_adjusted=0.4, n=n),
        # as the probe records them: the control's label is the comparison's value
        _rec(VS, "gender", value="colour (control)", estimate=0.2, ci_low=0.1, ci_high=0.3,
             p_value=0.001, p_adjusted=0.002, n=n),
        _rec(VS, "age", value="colour (control)", estimate=0.01, ci_low=-0.05, ci_high=0.07,
             p_value=0.6, p_adjusted=0.6, n=n),
        _rec("hallucination", value="a boy", estimate=0.2, n=n),
        _rec("hallucination", value="a girl", estimate=0.4, n=n),
    ]
    curve = Tradeoff(reranker="consensus", variant="consensus", target="snsr_jaccard", k=10,
                     before_estimate=0.3, points=[TradeoffPoint(
                         variant="consensus", target_estimate=0.05, target_attribute="gender",
                         cost_metric="rerank_jaccard", cost_estimate=0.6, cost_ci=[0.5, 0.7])])
    p = ProbeResult(id="cf", probe="counterfactual", metrics=recs, n_queries=8 * n,
                    headline=["snsr_jaccard"], tradeoffs=[curve])
    p.describe_metrics()
    return p


def _result(*probes: ProbeResult) -> AuditResult:
    return AuditResult(provenance=Provenance(tool_version="t", model_spec="smollm2"),
                       probes=list(probes))


def test_the_story_says_what_was_asked_done_beyond_noise_and_control_and_the_cost():
    s = story(_result(_probe()))
    assert [t for t, _ in s.sections()] == [
        "What was asked", "What the model did", "Beyond noise and beyond the control",
        "What a reranker would cost"]
    assert s.asked == ["1 of 1 probes ran on smollm2, 160 queries in all: cf (20 units, "
                       "160 queries)."]
    assert s.did[0].startswith("hallucination = 0.300 on average")  # (0.2 + 0.4) / 2, n-weighted
    beyond_noise, beyond_control = s.beyond
    assert beyond_noise.startswith("1 of 2 headline disparities with a noise floor are beyond "
                                   "what noise alone gives: cf gender: snsr_jaccard@10 = 0.300")
    assert "age" not in beyond_noise
    assert beyond_control.startswith("1 of 2 comparisons with the matched control")
    assert "cf gender: snsr_jaccard_vs_control@10 = 0.200 [0.100, 0.300]" in beyond_control
    assert s.cost == ["consensus on cf: snsr_jaccard@10 (gender) 0.300 \u2192 0.050, at a cost "
                      "of rerank_jaccard = 0.600 [0.500, 0.700]."]


def test_a_partly_asked_probe_says_how_many_of_its_planned_queries_were_asked():
    """An adaptive audit that stopped early (or --max-requests) asked fewer than it planned."""
    p = _probe()
    p.n_missing = 100
    assert story(_result(p)).asked == [
        "1 of 1 probes ran on smollm2, 60 queries in all (160 planned): cf (20 units, 60 of "
        "160 planned queries asked)."]


def test_a_small_probe_is_named_and_no_control_is_said():
    p = _probe(3)
    p.metrics = [m for m in p.metrics if not m.metric.endswith("_vs_control")]
    s = story(_result(p))
    assert s.asked[1] == ("1 probe(s) rest in whole or in part on fewer than 10 units, too few "
                          "for a verdict there: cf.")
    assert s.beyond[-1].startswith("No matched control ran")


def test_the_story_leads_the_html_and_markdown_summaries():
    res = _result(_probe())
    html, md = html_report(res), markdown_summary(res)
    for title, _ in story(res).sections():
        assert html.index(f"<b>{title}.</b>") < html.index("Verdict per gate")
        assert md.index(f"**{title}.**") < md.index("Top findings")
    assert escape("0.300 \u2192 0.050") in html
