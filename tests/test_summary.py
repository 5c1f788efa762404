"""The terminal summary writes numbers in the one format (recaudit.formatting)."""

from __future__ import annotations

from recaudit.results import AuditResult, MetricRecord, ProbeResult, Provenance
from recaudit.summary import headline_metrics


def test_headline_rows_use_the_one_number_format():
    recs = [MetricRecord(probe="p", metric="snsr_jaccard", attribute="gender", k=10,
                         estimate=0.21349, ci_low=0.15, ci_high=0.27, p_adjusted=0.0004),
            MetricRecord(probe="p", metric="snsr_jaccard", attribute="age", k=10,
                         estimate=0.00002, p_adjusted=0.0123),
            MetricRecord(probe="p", metric="hallucination")]
    result = AuditResult(provenance=Provenance(tool_version="t", model_spec="m"),
                         probes=[ProbeResult(id="p", probe="p", metrics=recs)])
    assert [row[3] for row in headline_metrics(result)] == [
        "0.213 [0.150, 0.270] p_adj=<0.001",  # was p_adj=0.0004
        "2.0e-05 p_adj=0.012",                # was 0.000 p_adj=0.0123
        "n/a"]
