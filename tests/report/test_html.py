"""The HTML report: self-contained, escaped, complete; plus render_all and the results schema."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from markupsafe import escape

from recaudit.errors import ConfigError
from recaudit.report import charts, html_report, render_all, render_html, save_result
from recaudit.report import _common as c
from recaudit.report.html import compliance_rows, partial_for, template_root
from recaudit.results import AuditResult, Finding, MetricRecord, ProbeResult, schema_path

from .fixtures import HOSTILE, make_minimal, make_small, pair_html, shared_pair


@pytest.fixture(scope="module")
def page() -> str:
    return pair_html()


@pytest.fixture(scope="module")
def pair() -> list[AuditResult]:
    return list(shared_pair())


# -- self-contained and safe ---------------------------------------------------------------------
def test_no_script_no_external_resource(page):
    low = page.lower()
    assert "<script" not in low
    assert "<link" not in low and "@import" not in low and "<iframe" not in low
    assert re.findall(r"https?://", page) == []  # not even a namespace URL
    assert re.findall(r"<[^>]*\s(?:src|srcset|data|poster|action)\s*=", low) == []
    assert [u for u in re.findall(r"url\(([^)]*)\)", page) if not u.startswith("#")] == []
    assert [h for h in re.findall(r'href="([^"]*)"', page) if not h.startswith("#")] == []
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_hostile_text_is_escaped(page):
    for s in HOSTILE:
        assert str(escape(s)) in page, s
    assert "<img src=x" not in page
    assert 'href="javascript' not in page.lower()
    assert "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")
    assert "document.title='pwned'" not in page  # the quote is escaped too
    assert "document.title=&#39;pwned&#39;" in page


def test_template_syntax_in_data_is_not_evaluated(page):
    assert "{{ 7*7 }}" in page and "{% raw %}" in page
    assert "a 49 person" not in page


def test_control_characters_are_removed(page):
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f]", page)


def test_charts_are_inline_svg_with_unique_ids(page):
    svgs = re.findall(r"<svg\b.*?</svg>", page, flags=re.S)
    assert len(svgs) >= 20
    for svg in svgs:
        assert "<?xml" not in svg and "<style" not in svg and "<metadata" not in svg
        assert 'class="chart"' in svg and 'aria-label="' in svg
    ids = re.findall(r'\sid="([^"]+)"', page)
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    assert dupes == []
    refs = set(re.findall(r'(?:href="#|url\(#)([^")]+)', page))
    assert refs <= set(ids), refs - set(ids)
    # a hostile attribute value used as a chart label is escaped by matplotlib
    assert any("&lt;img src=x onerror=alert(1)&gt;" in svg for svg in svgs)


def test_chart_labels_escaped_and_mathtext_off():
    recs = [MetricRecord(probe="p", metric="m", attribute="<b>a</b>", value=v, k=3, estimate=0.4,
                         ci_low=0.3, ci_high=0.5) for v in ("<script>x</script>", "$x$ & y")]
    svg = charts.value_bars(recs, title="t <i>", chart_id="t1")
    assert "<script" not in svg and "&lt;script&gt;x&lt;/script&gt;" in svg
    assert "$x$ &amp; y" in svg and "<b>" not in svg and "<i>" not in svg
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert charts.value_bars([], title="empty") == ""
    one_k = [MetricRecord(probe="p", metric="m", attribute="a", value="v", k=5, estimate=0.1)]
    assert charts.k_curves(one_k, title="x") == ""


def test_size_is_bounded(page):
    assert len(page.encode("utf-8")) < 1_000_000


# -- content -------------------------------------------------------------------------------------
def test_sections_in_order(page, pair):
    heads = ["Model comparison", "Executive summary: smollm2", "Gates", "counterfactual:fairllm",
             "All checks", "Limitations", "Provenance",
             "Executive summary: embedding:all-MiniLM-L6-v2",
             "Compliance mapping and sign-off"]
    at = 0
    for h in heads:  # each heading found after the previous one
        found = re.search(rf"<h[23][^>]*>{re.escape(h)}", page[at:])
        assert found, h
        at += found.end()
    for label in ("smollm2", "embedding:all-MiniLM-L6-v2"):
        assert f"{label}: FAIL" in page or f"{label}: PASS" in page


def test_executive_summary_verdicts_and_findings(pair):
    r = pair[0]
    v = c.verdict(r)
    assert (v.status, v.label) == ("fail", "FAIL") and "2 of 3 gates failed" in v.text
    assert c.verdict(pair[1]).label == "PASS, INCOMPLETE"  # gates pass, a probe errored
    top = c.top_findings(r, 3)
    assert len(top) == 3 and not any(f.derived for f in top)
    assert top[0].severity == "high" and "race" in top[0].title
    verdicts = {p.id: c.probe_verdict(p, 0.05).label for p in r.probes}
    assert c.probe_verdict(pair[1].probes[0], 0.05).label == "WARN"  # 3 failed queries
    assert verdicts == {"counterfactual:fairllm": "FLAGGED", "profile": "FLAGGED",
                        "leakage": "FLAGGED", "mitigation:fair": "OK", "popularity": "ERROR",
                        "position": "SKIPPED"}


def test_top_findings_fall_back_to_largest_effects_with_cis():
    r = shared_pair()[0].model_copy(deep=True)
    for p in r.probes:
        p.findings = []
    top = c.top_findings(r, 3)
    assert len(top) == 3 and all(f.derived for f in top)
    assert all("CI [" in f.detail for f in top)
    assert len({(f.probe, f.title.split(":")[0]) for f in top}) == 3
    # the largest significant effects first, rated by the one ladder (verdicts.severity):
    # leakage AUC 0.75: |0.75 - 0.5| / 0.5 = 0.5 -> high; SNSR 0.222 / 1 -> high;
    # hr gap 0.14 / 1 -> medium
    assert [(f.probe, f.severity) for f in top] == [
        ("leakage", "high"), ("counterfactual:fairllm", "high"), ("profile", "medium")]


def test_every_check_is_listed_including_passed(page, pair):
    for r in pair:
        checks = c.checks(r)
        kinds = Counter(x.kind for x in checks)
        assert kinds["gate"] == 3 and kinds["probe"] == 6 and kinds["test"] > 10
        assert kinds["consistency"] == 1  # 'an American' under country, continent and typo
        for x in checks:
            assert str(escape(x.name)) in page, x.name
    assert ">Passed (" in page


def test_probe_sections_tables_and_examples(page):
    for pid in ("counterfactual:fairllm", "profile", "leakage", "mitigation:fair", "popularity",
                "position"):
        assert f">{pid} <span class=\"badge" in page, pid
    assert "Disparity per attribute (SNSR at k = 20)" in page
    assert "Sim(a) per value at k = 20" in page
    assert "Group utility gaps" in page and "Leakage AUC per attribute" in page
    assert "Most divergent cases" in page and "Raw model output" in page
    assert "lambda sweep" in page  # the generic partial renders a reranker's own table
    assert "Probe ended in error" in page and "Probe skipped" in page
    assert "[0.182, 0.272]" in page  # CIs shown next to estimates


def test_limitations_and_provenance(page, pair):
    assert "only 8 instructions" in page and "group of 4 users" in page
    assert "Unusable answers" in page
    for r in pair:
        pr = r.provenance
        assert r.results_hash() in page
        for value in (pr.model_fingerprint, pr.weights_sha256, pr.config_sha256,
                      pr.catalog_sha256, pr.started_at, pr.finished_at):
            assert value in page
        assert str(escape(pr.config_text)) in page  # verbatim, escaped
        assert str(escape(pr.command_line)) in page
    assert "transformers 4.50.0" in page and "stats=0" in page


def test_compliance_and_signoff(page, pair):
    rows = compliance_rows(pair)
    assert [r["article"] for r in rows] == ["Art. 10(2)(f)", "Art. 10(2)(g)", "Art. 15",
                                            "Annex IV 2(g)", "Art. 34", "Art. 35",
                                            "Bias audit, impact ratio"]
    by = {r["article"]: r for r in rows}
    assert by["Art. 10(2)(g)"]["status"] == "evidence"  # a mitigation reranker was evaluated
    assert "Robustness: counterfactual:fairllm" in by["Art. 15"]["tested"]  # tagged robustness
    assert by["Bias audit, impact ratio"]["status"] == "not applicable"
    annex = by["Annex IV 2(g)"]  # test reports dated and signed: recaudit cannot know the signer
    assert annex["status"] == "partial"
    assert ("for: counterfactual:fairllm, profile, leakage, mitigation:fair; potentially "
            "discriminatory impacts: counterfactual:fairllm, profile, leakage.") in annex["tested"]
    assert "popularity" not in annex["tested"]  # in error: no metrics, nothing to sign for
    assert "'recaudit bundle --sign KEY'" in annex["tested"]
    assert "cannot know who the responsible person is" in annex["note"]
    assert str(escape(annex["note"])) in page  # rendered by the generic row template
    bare = {r["article"]: r for r in compliance_rows([make_minimal()])}["Annex IV 2(g)"]
    assert (bare["status"], bare["tested"]) == (
        "not covered", "No probe finished: no test report to date or sign.")
    assert "Not legal advice." in page
    for field in ("name", "role / function", "date", "signature", "Prepared by",
                  "Reviewed by", "Approved by"):
        assert f">{field}<" in page
    assert "Impact ratios (NYC LL144 shape)" in page


def test_ll144_row_is_partial_evidence_when_a_probe_records_group_impact_ratios():
    """Selection rates with the probe's own impact ratios (role group_ratio: a ranking of
    candidates) make the LL144 row partial evidence; hit rates alone stay 'not applicable'."""
    import recaudit.metrics.selection  # noqa: F401  (declares the selection metrics)

    def rec(metric, value, estimate, **kw):
        return MetricRecord(probe="cand", metric=metric, attribute="race", value=value, k=3,
                            estimate=estimate, n=80, **kw)

    probe = ProbeResult(id="cand", probe="candidate_groups", metrics=[
        rec("selection_rate_at_k", "A", 0.24), rec("selection_rate_at_k", "B", 0.51),
        rec("impact_ratio", "A", 0.47, null_p05=0.85), rec("impact_ratio", "B", 1.0,
                                                              null_p05=0.83)])
    probe.describe_metrics()
    people = make_minimal()
    people.probes = [probe]
    row = {r["article"]: r for r in compliance_rows([people])}["Bias audit, impact ratio"]
    assert row["status"] == "partial" and "independent auditor" in row["note"]
    assert "impact-ratio table below" in row["tested"]
    page = html_report(people)
    assert "0.850 (below)" in page  # A's ratio 0.47 against its floor 0.85
    bare = {r["article"]: r for r in compliance_rows([make_minimal()])}
    assert bare["Bias audit, impact ratio"]["status"] == "not applicable"


def test_minimal_result_renders():
    page = html_report(make_minimal())
    assert "No gates were configured" in page and "No probe ran." in page
    assert "NO GATES" in page and make_minimal().results_hash() in page
    assert "Model comparison" not in page


def test_unknown_probe_uses_generic_partial():
    r = make_minimal()
    r.probes.append(ProbeResult(
        id="brand-new", probe="brand_new",
        metrics=[MetricRecord(probe="brand-new", metric="weird_score", attribute="gender",
                              value=v, k=5, estimate=e, ci_low=e - 0.1, ci_high=e + 0.1)
                 for v, e in (("f", 0.3), ("m", 0.5))]
        + [MetricRecord(probe="brand-new", metric="weird_gap", attribute="gender", estimate=0.2,
                        p_value=0.01, p_adjusted=0.02, higher_is_worse=True)],
        findings=[Finding(probe="brand-new", severity="low", title="weird <b>gap</b>")],
        examples=[{"query": "q <script>", "answer": ["x", {"y": 1}]}]))
    page = html_report(r)
    assert "probe brand_new" in page and "weird_gap" in page and "weird_score" in page
    assert "weird &lt;b&gt;gap&lt;/b&gt;" in page and "q &lt;script&gt;" in page
    assert partial_for("brand_new") == "partials/probe_generic.html"


def test_partial_lookup():
    assert partial_for("counterfactual") == "partials/probe_counterfactual.html"
    assert partial_for("profile") == "partials/probe_profile.html"
    assert partial_for("leakage") == "partials/probe_leakage.html"
    assert partial_for("../../etc/passwd") == "partials/probe_generic.html"
    assert partial_for("") == "partials/probe_generic.html"
    root = Path(str(template_root()))
    for name in ("report.html.j2", "report.css", "executive_summary.html", "provenance.html",
                 "compliance.html", "gates.html", "checks.html", "limitations.html",
                 "partials/probe_generic.html"):
        assert (root / name).is_file(), name


def test_deterministic_output():
    r = make_small()
    assert html_report(r) == html_report(r)


# -- files ---------------------------------------------------------------------------------------
def test_render_all_and_save(tmp_path):
    r = make_small()
    out = render_all(r, tmp_path / "a", formats=("html", "md", "junit", "json"),
                     names={"md": "step.md"})
    assert {k: p.name for k, p in out.items()} == {"html": "index.html", "md": "step.md",
                                                   "junit": "junit.xml", "json": "results.json"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in out.values())
    assert AuditResult.load(out["json"]).results_hash() == r.results_hash()
    saved = save_result(r, tmp_path / "b")
    assert sorted(p.name for p in saved.values()) == ["index.html", "junit.xml", "results.json",
                                                      "summary.md"]
    with pytest.raises(ConfigError, match="unknown report format 'docx'"):
        render_all(r, tmp_path / "c", formats=("html", "docx"))
    assert not (tmp_path / "c" / "index.html").exists()
    with pytest.raises(ConfigError, match="json"):
        render_all([r, r], tmp_path / "d", formats=("json",))
    assert render_html([r, r], tmp_path / "e").name == "index.html"


def test_report_package_does_not_import_torch(tmp_path):
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from tests.report.fixtures import make_small\n"
            "from recaudit.report import render_all\n"
            "r = make_small(); r.probes = r.probes[:1]\n"
            "render_all(r, %r)\n"
            "bad = [m for m in ('torch', 'transformers', 'sentence_transformers') "
            "if m in sys.modules]\n"
            "assert not bad, bad\n") % (str(Path(__file__).resolve().parents[2]), str(tmp_path))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- schema --------------------------------------------------------------------------------------
def test_results_json_validates_against_schema(tmp_path):
    from jsonschema import Draft202012Validator

    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    full = shared_pair()[0].model_copy(deep=True)
    for p in full.probes:  # every record shape, fewer records (jsonschema is slow)
        p.metrics = [m for m in p.metrics if m.k in (None, 1, 5, 20)
                     and m.attribute in (None, "gender", "custom", "gender×age")]
    for r in (full, make_minimal()):
        path = save_result(r, tmp_path / r.provenance.model_spec.replace(":", "_"),
                           formats=("json",))
        doc = json.loads(path["json"].read_text(encoding="utf-8"))
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        assert errors == [], errors[0].message if errors else ""
    bad = json.loads(make_minimal().to_json())
    bad["probes"] = [{"id": "x", "probe": "x", "status": "exploded", "metrics": [
        {"probe": "x", "metric": "m", "estimate": "high"}]}]
    bad["surprise"] = 1
    messages = [e.message for e in validator.iter_errors(bad)]
    assert any("exploded" in m for m in messages)
    assert any("high" in m for m in messages)
    assert any("surprise" in m for m in messages)


def test_probes_without_metrics_or_with_gaps_render():
    r = make_minimal()
    for name in ("counterfactual", "profile", "leakage", "something_else"):
        r.probes.append(ProbeResult(id=name, probe=name, params={"similarities": ["jaccard"]},
                                    findings=[Finding(probe=name, severity="medium", title="a"),
                                              Finding(probe=name, severity="high", title="b",
                                                      effect=0.3)]))
    r.probes.append(ProbeResult(id="holes", probe="counterfactual", metrics=[
        MetricRecord(probe="holes", metric="jaccard", attribute="gender", value="a girl", k=20,
                     n=0, warning="no responses"),
        MetricRecord(probe="holes", metric="snsr_jaccard", attribute="gender", k=20)]))
    page = html_report(r)
    for name in ("counterfactual", "profile", "leakage", "something_else", "holes"):
        assert f'id="r-probe-{name.replace("_", "-")}"' in page
    assert page.index(">b</span>") < page.index(">a</span>")  # high before medium
    assert "no responses" in page
