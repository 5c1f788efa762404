"""The small-sample rule in every renderer: below the reliable number of units no probe is
FLAGGED (HTML, Markdown, terminal summary, checks) and every probe shows the same warning."""

from __future__ import annotations

import re
from html import escape

import pytest

from recaudit.report import _common as c
from recaudit.report import html_report, markdown_summary
from recaudit.report.markdown import md as md_escape
from recaudit.results import AuditResult, Finding, MetricRecord, ProbeResult, Provenance
from recaudit.summary import print_summary, verdict_rows
from recaudit.verdicts import MIN_UNITS, small_sample_warning


def _probe(n: int, run_id: str = "counterfactual:fairllm") -> ProbeResult:
    """A probe on ``n`` units with one significant test and one low finding."""
    rec = MetricRecord(probe=run_id, metric="snsr_jaccard", attribute="gender", k=10,
                       estimate=0.12, ci_low=0.05, ci_high=0.2, p_value=0.001,
                       p_adjusted=0.002, n=n, higher_is_worse=True)
    probe = ProbeResult(id=run_id, probe="counterfactual", metrics=[rec], n_queries=3 * n,
                        findings=[Finding(probe=run_id, severity="low", effect=0.12,
                                          title="gender: SNSR 0.120", detail="a low one")])
    probe.describe_metrics()
    return probe


def _result(*probes: ProbeResult, stats: dict | None = None) -> AuditResult:
    return AuditResult(provenance=Provenance(tool_version="t", model_spec="m"),
                       config={"stats": stats or {}}, probes=list(probes))


def test_a_three_unit_probe_is_inconclusive_in_every_renderer(capsys):
    res = _result(_probe(3))
    label = "INCONCLUSIVE (3 units < 10: too few for a verdict)"
    # was FLAGGED: a significant test and a low finding flagged it whatever its units
    assert c.probe_verdict(res.probes[0], 0.05).label == label
    (test,) = c.probe_tests(res.probes[0], 0.05)
    assert test.status == "inconclusive" and "on only 3 units (< 10)" in test.detail
    html = html_report(res)
    assert "FLAGGED" not in html and escape(label) in html
    md = markdown_summary(res)
    assert "FLAGGED" not in md and label in md
    assert verdict_rows(res)[0][3].startswith(label)
    print_summary(res)
    out = " ".join(capsys.readouterr().out.split())
    assert "FLAGGED" not in out and "INCONCLUSIVE" in out
    assert all(x.status != "flag" for x in c.checks(res))


def test_a_twenty_unit_probe_is_still_flagged_in_every_renderer(capsys):
    res = _result(_probe(20))
    assert c.probe_verdict(res.probes[0], 0.05).label == "FLAGGED"
    assert [x.status for x in c.checks(res) if x.kind == "test"] == ["flag"]
    assert re.search(r"badge b-warn\">FLAGGED<", html_report(res))
    assert "FLAGGED" in markdown_summary(res)
    assert verdict_rows(res)[0][3] == "FLAGGED"
    print_summary(res)
    assert "FLAGGED" in capsys.readouterr().out
    assert "INCONCLUSIVE" not in html_report(res) + markdown_summary(res)


def test_the_rule_follows_the_configured_threshold():
    lenient = _result(_probe(3), stats={"min_group_size": 3})
    assert c.probe_verdict(lenient.probes[0], 0.05, 3).label == "FLAGGED"
    assert "FLAGGED" in markdown_summary(lenient)
    strict = _result(_probe(20), stats={"min_group_size": 25})
    assert "INCONCLUSIVE (20 units < 25" in markdown_summary(strict)


def _exposure_like(n: int) -> ProbeResult:
    """Records per group only (no aggregate), a finding, no test: exposure's shape."""
    recs = [MetricRecord(probe="exposure", metric="skew_at_k", attribute="genre", value=g,
                         k=10, estimate=e, ci_low=e - 0.1, ci_high=e + 0.1, n=n)
            for g, e in (("Drama", 0.4), ("Comedy", -0.3))]
    return ProbeResult(id="exposure", probe="exposure", metrics=recs, n_queries=n,
                       findings=[Finding(probe="exposure", severity="low", effect=0.4,
                                         title="genre: 'Drama' is over-represented")])


def _untested(n: int) -> ProbeResult:
    rec = MetricRecord(probe="position", metric="ndcg_gap", k=10, estimate=0.01, n=n)
    return ProbeResult(id="position", probe="position", metrics=[rec], n_queries=n)


def test_every_probe_below_the_rule_shows_the_same_warning():
    probes = [_probe(3), _exposure_like(3), _untested(3)]
    res = _result(*probes)
    warnings = {c.probe_small_sample(p) for p in probes}
    assert len(warnings) == 1
    (warning,) = warnings
    assert warning.startswith(small_sample_warning(3, MIN_UNITS))
    html, md = html_report(res), markdown_summary(res)
    assert html.count(escape(warning)) >= len(probes)  # exposure's did not carry it before
    assert md.count(md_escape(warning, 300)) >= len(probes)
    # the probes that would be flagged are inconclusive; the one without evidence is OK
    labels = [c.probe_verdict(p, 0.05).label for p in probes]
    assert labels == ["INCONCLUSIVE (3 units < 10: too few for a verdict)"] * 2 + ["OK"]
    # each top finding of a small-sample probe carries it
    assert all(f.small_sample == warning for f in c.top_findings(res, 3))
    assert c.probe_small_sample(_probe(10)) is None


@pytest.mark.parametrize("n", [3, 20])
def test_a_reranker_variant_below_the_rule_is_judged_on_its_own_units(n):
    probe = _probe(20)
    probe.metrics.append(probe.metrics[0].model_copy(update={"variant": "fair", "n": n}))
    views = c.split_variants(probe)
    assert c.probe_verdict(views[0].probe, 0.05).label == "FLAGGED"
    assert c.probe_verdict(views[1].probe, 0.05).label == (
        "FLAGGED" if n >= MIN_UNITS else "INCONCLUSIVE (3 units < 10: too few for a verdict)")


def test_a_finding_rated_high_under_a_lower_threshold_is_not_flagged_nor_high_below_the_rule():
    """A result measured with ``min_group_size: 3`` and reported under the default rule (the
    old demo's exposure findings: HIGH on 3 requests)."""
    probe = _exposure_like(3)
    probe.findings[0].severity = "high"
    res = _result(probe)
    assert c.probe_verdict(probe, 0.05).label.startswith("INCONCLUSIVE")  # was FLAGGED
    (top,) = c.top_findings(res, 1)
    assert top.severity == "low" and top.small_sample  # was high
    lenient = _result(probe, stats={"min_group_size": 3})
    assert c.top_findings(lenient, 1)[0].severity == "high"


def _demo_exposure(usable: int, requests: int = 10) -> ProbeResult:
    """The demo's exposure probe: 10 requests (hallucination over all of them), skews on the
    ``usable`` lists that had a catalog item, and a skew finding on those."""
    probe = _exposure_like(usable)
    probe.n_queries = requests
    probe.metrics.append(MetricRecord(probe="exposure", metric="hallucination", k=10,
                                      estimate=0.3, ci_low=0.2, ci_high=0.4, n=requests))
    probe.findings[0].n = usable
    return probe


def test_a_probe_is_judged_on_the_units_behind_its_findings_not_its_largest_record():
    """The demo's exposure probe read FLAGGED on 7 usable lists: its verdict took the largest
    n of its records (10 requests)."""
    probe = _demo_exposure(7)
    assert c.probe_units(probe) == 10 and c.fewest_units(probe) == 7
    assert c.probe_verdict(probe, 0.05).label == \
        "INCONCLUSIVE (7 units < 10: too few for a verdict)"
    warning = c.probe_small_sample(probe)
    assert warning.startswith("some of its tests or findings rest on "
                              + small_sample_warning(7, MIN_UNITS))
    res = _result(probe)
    assert "FLAGGED" not in html_report(res) + markdown_summary(res)
    (top,) = c.top_findings(res, 1)
    assert top.severity == "low" and top.small_sample.startswith(small_sample_warning(7))
    enough = _demo_exposure(10)
    assert c.probe_verdict(enough, 0.05).label == "FLAGGED"
    assert c.probe_small_sample(enough) is None


def test_a_solid_test_flags_the_probe_beside_a_small_finding():
    probe = _probe(20)
    probe.findings[0].n = 4  # a finding on a subgroup of 4 units
    assert c.probe_verdict(probe, 0.05).label == "FLAGGED"  # its 20-unit test flagged
    assert c.probe_small_sample(probe).startswith("some of its tests or findings rest on only 4")
