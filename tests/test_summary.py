"""The terminal summary: numbers in the one format (recaudit.formatting), the model's own lists
first and one section per re-ranked variant."""

from __future__ import annotations

from recaudit.results import (AuditResult, MetricRecord, ProbeResult, Provenance, Tradeoff,
                              TradeoffPoint)
from recaudit.summary import headline_metrics, print_summary, variant_sections


def _result(*probes: ProbeResult) -> AuditResult:
    return AuditResult(provenance=Provenance(tool_version="t", model_spec="m"), probes=list(probes))


def test_headline_rows_use_the_one_number_format():
    recs = [MetricRecord(probe="p", metric="snsr_jaccard", attribute="gender", k=10,
                         estimate=0.21349, ci_low=0.15, ci_high=0.27, p_adjusted=0.0004),
            MetricRecord(probe="p", metric="snsr_jaccard", attribute="age", k=10,
                         estimate=0.00002, p_adjusted=0.0123),
            MetricRecord(probe="p", metric="hallucination")]
    result = _result(ProbeResult(id="p", probe="p", metrics=recs))
    assert [row[3] for row in headline_metrics(result)] == [
        "0.213 [0.150, 0.270] p_adj=<0.001",  # was p_adj=0.0004
        "2.0e-05 p_adj=0.012",                # was 0.000 p_adj=0.0123
        "n/a"]


def _mitigated() -> ProbeResult:
    """SNSR of gender at k = 5 and 10 on the original lists and re-ranked by consensus."""
    recs = [MetricRecord(probe="cf", metric="snsr_jaccard", attribute="gender", k=k,
                         estimate=est if variant == "original" else 0.0, variant=variant)
            for variant in ("original", "consensus") for k, est in ((5, 0.25), (10, 0.3))]
    curve = Tradeoff(reranker="consensus", variant="consensus", target="snsr_jaccard", k=10,
                     before_estimate=0.3, points=[TradeoffPoint(
                         variant="consensus", target_estimate=0.0, target_attribute="gender",
                         cost_metric="rerank_jaccard", cost_estimate=0.6)])
    return ProbeResult(id="cf", probe="counterfactual", metrics=recs, tradeoffs=[curve])


def test_the_original_lists_first_then_one_section_per_variant(capsys):
    result = _result(_mitigated())
    # the model's own lists, at the largest k: no consensus number among them
    assert headline_metrics(result) == [("cf", "snsr_jaccard", "gender k=10", "0.300")]
    assert variant_sections(result) == [("cf [consensus]: reranker", [
        ("cf", "snsr_jaccard", "gender k=10", "0.000"),
        ("cf", "reranker target", "snsr_jaccard gender k=10",
         "0.300 -> 0.000; rerank_jaccard 0.600")])]
    print_summary(result)
    out = capsys.readouterr().out
    assert out.index("original lists") < out.index("0.300") < out.index("cf [consensus]")
    assert out.index("cf [consensus]") < out.index("0.000")


def test_a_result_without_variants_has_no_variant_section(capsys):
    result = _result(ProbeResult(id="p", probe="p", metrics=[
        MetricRecord(probe="p", metric="gap", attribute="a", k=10, estimate=0.1)]))
    assert variant_sections(result) == []
    print_summary(result)
    assert "original lists" not in capsys.readouterr().out
