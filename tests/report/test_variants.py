"""Variants never mix: every table and chart of HTML, Markdown and JUnit shows one variant,
labelled (the terminal summary: tests/test_summary.py); the original lists come first and each
reranker has its own section.

The result is demo-shaped (:func:`fixtures.make_mitigated`): the counterfactual probe re-ranked
by consensus (SNSR 0 for every attribute, every value's Sim(a) equal) and the profile probe by a
FA*IR sweep at k = 5 (a baseline cut to 5, a main point and a sweep point).
"""

from __future__ import annotations

import re

import pytest

from recaudit.report import _common as c
from recaudit.report import charts, junit_xml, markdown_summary
from recaudit.results import ORIGINAL, AuditResult, MetricRecord, ProbeResult, Provenance

from .fixtures import CONSENSUS, CUT, FAIR, FAIR_SWEEP, K, make_mitigated, mitigated_html

CF_SECTION = 'id="r-probe-counterfactual-fairllm-section"'


@pytest.fixture(scope="module")
def result():
    return make_mitigated()


def _cf(result: AuditResult) -> ProbeResult:
    return next(p for p in result.probes if p.probe == "counterfactual")


def _records(p: ProbeResult, metric: str, variant: str, k: int | None = K) -> dict[str, float]:
    return {m.attribute: m.estimate for m in p.metrics
            if m.metric == metric and m.variant == variant and m.k == k and m.value is None}


def _variant_blocks(html: str) -> list[tuple[str, str]]:
    """(data-variant, html) of each variant section of the page, in page order."""
    parts = re.split(r'<div class="variant v-[a-z]+" data-variant="([^"]*)">', html)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def _estimates(html: str) -> list[str]:
    """The estimates of a table's cells, as shown (without a warning sign)."""
    return [x.strip() for x in re.findall(r'<span class="est">([^<&]*)', html)]


def _table_after(html: str, heading: str) -> str:
    start = html.index(heading)
    return html[start:html.index("</table>", start)]


# -- the one split ---------------------------------------------------------------------------------
def test_split_variants_puts_the_original_first_and_names_what_each_variant_is(result):
    profile = next(p for p in result.probes if p.probe == "profile")
    views = c.split_variants(profile)
    assert [v.variant for v in views] == [ORIGINAL, CUT, FAIR, FAIR_SWEEP]
    assert [v.kind for v in views] == ["original", "baseline", "reranker", "sweep"]
    for v in views:
        assert {m.variant for m in v.probe.metrics} == {v.variant}
        assert all(t.variant == v.variant for t in v.probe.tradeoffs)
    assert [len(v.probe.tradeoffs) for v in views] == [0, 0, 1, 0]
    assert views[0].probe.warnings and not any(v.probe.warnings for v in views[1:])
    cf = c.split_variants(_cf(result))
    assert [v.variant for v in cf] == [ORIGINAL, CONSENSUS]
    assert {u.variant for u in cf[1].probe.units} == {CONSENSUS}
    assert cf[0].probe.findings and cf[0].probe.examples and not cf[1].probe.examples
    assert sum(len(v.probe.metrics) for v in cf) == len(_cf(result).metrics)


def test_a_probe_without_original_records_starts_with_its_first_variant():
    recs = [MetricRecord(probe="m", metric="gap", attribute=a, estimate=e, variant=v)
            for v in ("x(p=1)", "x(p=2)") for a, e in (("gender", 0.3), ("age", 0.1))]
    p = ProbeResult(id="m", probe="m", metrics=recs)
    assert c.variant_names(p) == ["x(p=1)", "x(p=2)"]
    assert [m.variant for m in c.headline(p)] == ["x(p=1)", "x(p=1)"]  # was both variants


def test_charts_and_tables_refuse_records_of_two_variants(result):
    cf = _cf(result)
    mixed = [m for m in cf.metrics if m.metric == "jaccard" and m.attribute == "gender"]
    with pytest.raises(ValueError, match="several variants"):
        charts.k_curves(mixed, title="t")
    with pytest.raises(ValueError, match="several variants"):
        charts.value_bars([m for m in mixed if m.k == K], title="t")
    with pytest.raises(ValueError, match="several variants"):
        c.one_variant(mixed)
    one = [m for m in mixed if m.variant == CONSENSUS]
    assert 'data-variant="consensus"' in charts.k_curves(one, title="t")


# -- HTML ------------------------------------------------------------------------------------------
def test_the_original_per_attribute_table_shows_the_original_records(result):
    html = mitigated_html()
    section = html[html.index(CF_SECTION):]
    table = _table_after(section, "Disparity per attribute")
    rows = re.findall(r"<tr><td>([^<]*)</td>(.*?)</tr>", table, flags=re.S)
    shown = {attr: _estimates(cells)[0] for attr, cells in rows}
    expected = {a: c.num(e) for a, e in _records(_cf(result), "snsr_jaccard", ORIGINAL).items()}
    assert shown == expected  # the old report showed the consensus variant's 0.000 here
    assert set(expected.values()) != {"0.000"}


def test_each_variant_has_its_own_section_original_first(result):
    blocks = _variant_blocks(mitigated_html())
    cf = [v for v, body in blocks if "counterfactual:fairllm" in body[:600]]
    profile = [v for v, body in blocks if "<h3" in body[:400] and "profile" in body[:600]]
    assert cf == [ORIGINAL, CONSENSUS]
    assert profile == [ORIGINAL, CUT, FAIR, FAIR_SWEEP]
    consensus = next(body for v, body in blocks if v == CONSENSUS)
    assert '<span class="variant-tag">consensus</span>' in consensus
    table = _table_after(consensus, "Disparity per attribute")
    assert set(_estimates(table)) == {"0.000"}
    assert "Mitigation: what each reranker changed" in consensus  # its trade-off, in its section
    assert "Most divergent cases" not in consensus  # examples are the original lists'


def test_no_chart_or_table_mixes_variants():
    blocks = _variant_blocks(mitigated_html())
    n_charts = 0
    for variant, body in blocks:
        for tag in re.findall(r"<(?:svg|table)\b[^>]*>", body):
            if 'class="chart"' in tag or tag.startswith("<table data-variant"):
                assert f'data-variant="{variant}"' in tag, (variant, tag[:200])
                n_charts += tag.startswith("<svg")
    assert n_charts >= 20


def test_each_value_is_drawn_once_and_curves_follow_one_variant(result):
    html = mitigated_html()
    section = html[html.index(CF_SECTION):]
    bars = re.search(r'<svg[^>]*aria-label="Sim\(a\) = jaccard[^"]*"[^>]*>.*?</svg>', section,
                     flags=re.S).group(0)
    assert 'data-variant="original"' in bars
    assert len(re.findall(r">\s*a girl</text>", bars)) == 1  # was twice, unlabelled
    assert "[original]" in bars  # its title names the variant of a probe with several


# -- checks, JUnit, Markdown -----------------------------------------------------------------------
def test_a_variant_test_is_named_and_does_not_flag_the_model():
    recs = [MetricRecord(probe="p", metric="gap", attribute="gender", k=10, estimate=e,
                         p_value=pv, p_adjusted=pv, variant=v)
            for v, e, pv in ((ORIGINAL, 0.01, 0.8), ("rr", 0.4, 0.001))]
    p = ProbeResult(id="p", probe="p", metrics=recs)
    tests = c.probe_tests(p, 0.05)
    assert [t.name for t in tests] == ["gender: gap@10", "gender: gap@10 [rr]"]
    assert len({t.id for t in tests}) == 2  # were one id twice
    assert c.probe_verdict(p, 0.05).label == "OK"  # was FLAGGED by the reranker's test
    assert c.probe_verdict(c.split_variants(p)[1].probe, 0.05).label == "FLAGGED"


def test_junit_names_every_variant_test_once(result):
    names = re.findall(r'<testcase [^>]*name="([^"]*)"', junit_xml(result))
    assert len(names) == len(set(names))
    assert any("[consensus]" in n for n in names)


def test_markdown_probe_table_is_the_original_and_each_variant_has_its_own_table(result):
    text = markdown_summary(result)
    row = next(line for line in text.splitlines() if line.startswith("| counterfactual"))
    assert "[original]" in row
    snsr = _records(_cf(result), "snsr_jaccard", ORIGINAL)
    assert f"{c.num(snsr['gender'])} [" in row
    heads = re.findall(r"^#### (.*)$", text, flags=re.M)
    assert heads == ["counterfactual:fairllm [consensus]", "profile [original@\u200b5]",
                     "profile [fair(p=0.5)@\u200b5]", "profile [fair(p=0.7)@\u200b5]"]
    block = text.split("#### counterfactual:fairllm [consensus]")[1].split("####")[0]
    assert "reranker:" in block and "snsr\\_jaccard | gender · k=20 | 0.000" in block
    sweep = text.split("#### profile [fair(p=0.7)@\u200b5]")[1].split("<details>")[0]
    assert sweep.count("(reranker target)") == 1 and "0.100 before, 0.600 after" in sweep


def test_answer_quality_limits_read_the_original_lists_only(result):
    lim = c.limitations(result)
    assert lim.hallucination
    cf = _cf(result)
    own = {id(m) for m in cf.metrics if m.variant == ORIGINAL}
    assert all(id(m) in own for pid, _, m in lim.hallucination if pid == cf.id)


def test_single_variant_reports_are_unchanged():
    p = ProbeResult(id="p", probe="p", metrics=[
        MetricRecord(probe="p", metric="gap", attribute="a", k=k, estimate=0.1 * k)
        for k in (1, 2)])
    result = AuditResult(provenance=Provenance(tool_version="t", model_spec="m"), probes=[p])
    from recaudit.report import html_report

    html = html_report(result)
    assert 'class="variant-tag"' not in html and "[original]" not in html
    assert "Re-ranked variants" not in markdown_summary(result)
