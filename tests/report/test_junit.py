"""JUnit XML: one testcase per gate and per probe check, metrics as properties, safe XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped

from recaudit.report import junit_xml, render_all
from recaudit.report import _common as c
from recaudit.results import Finding, ProbeResult

from .fixtures import HOSTILE, make_minimal, shared_pair


@pytest.fixture(scope="module")
def result():
    return shared_pair()[0]


@pytest.fixture(scope="module")
def xml_text(result) -> str:
    return junit_xml(result)


def _cases(root: ET.Element) -> list[ET.Element]:
    return root.findall(".//testcase")


def test_parses_with_junitparser_and_counts_add_up(tmp_path, result):
    path = render_all(result, tmp_path, formats=("junit",), names={"junit": "gates.xml"})["junit"]
    assert path.name == "gates.xml"
    xml = JUnitXml.fromfile(str(path))
    suites = {s.name: s for s in xml}
    assert set(suites) == {"recaudit.gates", "recaudit.probes", "recaudit.checks",
                           "recaudit.findings"}
    checks = c.checks(result)
    n_findings = sum(1 for p in result.probes for f in p.findings if f.severity != "info")
    assert xml.tests == len(checks) + n_findings
    assert xml.failures == sum(1 for g in result.gates if not g.passed) == 2
    assert xml.errors == 1 and xml.skipped == 1
    gates = suites["recaudit.gates"]
    outcome = {case.name: [type(r) for r in case.result] for case in gates}
    assert outcome == {"race-jaccard-gap": [Failure], "leakage-auc": [Failure],
                       "hallucination": []}
    probes = {case.name: [type(r) for r in case.result] for case in suites["recaudit.probes"]}
    assert probes["popularity ran"] == [Error] and probes["position ran"] == [Skipped]
    assert probes["profile ran"] == []


def test_failures_carry_the_gate_message(xml_text):
    root = ET.fromstring(xml_text.encode("utf-8"))
    fail = root.find(".//testcase[@name='race-jaccard-gap']/failure")
    assert fail is not None and fail.get("type") == "GateFailed"
    assert "`pipe` <b>bold</b>" in fail.get("message")  # plain text after XML unescaping


def test_metrics_are_properties(xml_text):
    root = ET.fromstring(xml_text.encode("utf-8"))
    case = root.find(".//testcase[@name='counterfactual:fairllm ran']")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["probe"] == "counterfactual" and props["n_failed"] == "3"
    assert float(props["snsr_jaccard.race.k20"]) == pytest.approx(0.2224, abs=1e-3)
    gate = root.find(".//testcase[@name='race-jaccard-gap']")
    gp = {p.get("name"): p.get("value") for p in gate.iter("property")}
    assert gp["bound"] == "<= 0.1" and gp["mode"] == "ci" and float(gp["ci_low"]) > 0.1
    suite = root.find("testsuite[@name='recaudit.gates']")
    sp = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert len(sp["results_hash"]) == 64 and sp["model_spec"] == "smollm2"


def test_significant_ungated_differences_pass_but_are_flagged(xml_text, result):
    root = ET.fromstring(xml_text.encode("utf-8"))
    flagged = [case for case in root.find("testsuite[@name='recaudit.checks']")
               if any(p.get("name") == "flagged" for p in case.iter("property"))]
    n_flag = sum(1 for x in c.checks(result) if x.status == "flag")
    assert len(flagged) == n_flag > 0
    for case in flagged:
        assert case.find("failure") is None and case.find("error") is None
        assert case.find("system-out").text.startswith("FLAGGED (not gated)")
    passed = [case for case in root.iter("testcase") if case.find("system-out") is not None
              and "not significant" in case.find("system-out").text]
    assert passed, "checks that passed are listed too"
    findings = root.find("testsuite[@name='recaudit.findings']")
    assert {p.get("value") for case in findings for p in case.iter("property")
            if p.get("name") == "severity"} == {"high", "medium"}


def test_hostile_and_control_characters_make_valid_xml():
    r = make_minimal()
    bad = "\x00\x1b[31m\x07" + "".join(HOSTILE) + "]]> \ufffe & \"'"
    r.probes.append(ProbeResult(id=f"p{HOSTILE[0]}", probe="x", status="error", error=bad))
    r.probes.append(ProbeResult(id="q", probe="x", findings=[
        Finding(probe="q", severity="high", title=bad, detail=bad)]))
    text = junit_xml(r)
    root = ET.fromstring(text.encode("utf-8"))  # well-formed despite NUL, ESC, BEL, U+FFFE
    err = root.find(".//testcase/error")
    assert HOSTILE[0] in err.get("message") and "\x00" not in err.get("message")
    assert "<script>" not in text and "&lt;script&gt;" in text
    found = root.find("testsuite[@name='recaudit.findings']/testcase")
    assert found is not None and HOSTILE[1] in found.get("name")


def test_minimal_and_comparison():
    root = ET.fromstring(junit_xml(make_minimal()).encode("utf-8"))
    assert root.get("tests") == "0" and [s.get("name") for s in root] == ["recaudit.gates"]
    pair = list(shared_pair())
    root = ET.fromstring(junit_xml(pair).encode("utf-8"))
    names = [s.get("name") for s in root]
    assert "recaudit[smollm2].gates" in names
    assert "recaudit[embedding:all-MiniLM-L6-v2].gates" in names
    assert int(root.get("tests")) == sum(int(s.get("tests")) for s in root)
    assert int(root.get("failures")) == sum(1 for r in pair for g in r.gates if not g.passed)
