"""model_card.md: Hugging Face metadata (read back by huggingface_hub) and the evaluation.

The result is built by hand with known numbers: two headline SNSR records at the largest k with
CIs, adjusted p-values and null floors, one headline record without an estimate, records the
card must leave out (a smaller k, per-value records), a failing gate and hostile strings in the
model spec, the probe id and an attribute value.
"""

from __future__ import annotations

import re
import socket

import pytest
import yaml
from huggingface_hub import EvalResult, ModelCard
from huggingface_hub.repocard_data import (eval_results_to_model_index,
                                           model_index_to_eval_results)
from markdown_it import MarkdownIt

from recaudit.report import model_card_markdown, render_all
from recaudit.report.model_card import TASK_NAME, TASK_TYPE, eval_results
from recaudit.results import AuditResult, GateResult, MetricRecord, ProbeResult, Provenance

from .fixtures import make_minimal

PROBE_ID = "cf|</td><script>alert(1)</script>"
HOSTILE_ATTR = "a | b </td>`x`"
MODEL_SPEC = "hf:org/m<b>x</b>\n---\nevil: 1"


def _snsr(attribute: str, k: int, estimate: float | None, **kw) -> MetricRecord:
    return MetricRecord(probe=PROBE_ID, metric="snsr_jaccard", attribute=attribute, k=k,
                        estimate=estimate, confidence=0.95, n=40, **kw)


def floored_result() -> AuditResult:
    p = ProbeResult(id=PROBE_ID, probe="counterfactual", suite="fairllm", n_queries=120,
                    tags=["fairness", "robustness"], headline=["snsr_jaccard"])
    p.metrics = [
        _snsr("gender", 5, 0.9, ci_low=0.8, ci_high=1.0),  # not the largest k: left out
        _snsr("gender", 10, 0.25, ci_low=0.1, ci_high=0.4, p_value=0.01, p_adjusted=0.02,
              null_mean=0.05, null_p95=0.12, self_floor=0.08),
        _snsr(HOSTILE_ATTR, 10, 0.0625, ci_low=0.0, ci_high=0.125, p_value=0.5,
              p_adjusted=0.5, null_mean=0.04, null_p95=0.11),
        _snsr("age", 10, None, warning="no complete unit"),
        MetricRecord(probe=PROBE_ID, metric="jaccard", attribute="gender", value="a girl",
                     k=10, estimate=0.7, ci_low=0.6, ci_high=0.8, n=40),  # per value
    ]
    p.describe_metrics()
    gate = GateResult(name="gender | gap", probe=PROBE_ID, metric="snsr_jaccard", mode="ci",
                      bound="<= 0.2", passed=False, observed=0.25, ci_low=0.1, ci_high=0.4,
                      p_adjusted=0.02, selected=3)
    return AuditResult(name="card-test", provenance=Provenance(
        tool_version="0.1.0", model_spec=MODEL_SPEC, model_fingerprint="ab" * 32,
        started_at="2026-01-02T03:04:05+00:00"), probes=[p], gates=[gate],
        config={"stats": {"alpha": 0.05}})


@pytest.fixture(scope="module")
def result() -> AuditResult:
    return floored_result()


@pytest.fixture()
def offline(monkeypatch):
    """Any socket connection fails the test: the card must never reach the Hub."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model card tried to open a network connection")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def card_path(result, tmp_path_factory):
    out = tmp_path_factory.mktemp("card")
    (out / "index.html").write_text("<p>written by the audit</p>", encoding="utf-8")
    return render_all(result, out, formats=("model_card",))["model-card"]


def _front(text: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", text, flags=re.S)
    assert match, text[:200]
    return yaml.safe_load(match.group(1))


def test_hub_parser_reads_the_headline_metrics(card_path, offline):
    assert card_path.name == "model_card.md"
    card = ModelCard.load(card_path)
    got = card.data.eval_results
    # the two headline records with an estimate, at the largest k (10), in record order
    assert [(r.metric_type, r.metric_value, r.metric_args) for r in got] == [
        ("snsr_jaccard", 0.25, {"attribute": "gender", "k": 10}),
        ("snsr_jaccard", 0.0625, {"attribute": HOSTILE_ATTR, "k": 10})]
    first = got[0]
    assert (first.task_type, first.task_name) == (TASK_TYPE, TASK_NAME)
    assert (first.dataset_type, first.dataset_name, first.dataset_config) == (
        "counterfactual", PROBE_ID, "fairllm")
    assert first.metric_name == "snsr_jaccard (gender, k=10)"
    assert first.verified is None and first.source_url is None
    # YAML kept the hostile strings as they are, on one line, and started no key of its own
    assert card.data.model_name == "hf:org/m<b>x</b> --- evil: 1"
    assert "evil" not in card.data.to_dict()
    assert {"recaudit", "fairness-audit", "fairness", "robustness"} <= set(card.data.tags)


def test_model_index_round_trip(card_path, result):
    front = _front(card_path.read_text(encoding="utf-8"))
    assert set(front) == {"tags", "model-index"}  # no invented keys: CIs are in the notes
    metrics = front["model-index"][0]["results"][0]["metrics"]
    assert all(set(m) <= {"type", "value", "name", "config", "args"} for m in metrics)
    name, parsed = model_index_to_eval_results(front["model-index"])
    assert name == "hf:org/m<b>x</b> --- evil: 1"
    assert parsed == eval_results(result)
    assert all(isinstance(r, EvalResult) for r in parsed)
    assert eval_results_to_model_index(name, parsed) == front["model-index"]


def test_evaluation_table_has_cis_p_values_and_floors(card_path):
    text = card_path.read_text(encoding="utf-8")
    assert "## Evaluation" in text and "## Bias, risks and limitations" in text
    assert "| probe | metric | where | estimate | 95% CI | p (adjusted) | null mean " \
           "| noise alone | self floor | n |" in text
    probe = "cf\\|&lt;/td&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
    assert (f"| {probe} | snsr\\_jaccard | gender, k=10 | 0.250 | [0.100, 0.400] | 0.020 "
            "| 0.050 | \u2264 0.120 | 0.080 | 40 |") in text
    assert (f"| {probe} | snsr\\_jaccard | a \\| b &lt;/td&gt;\\`x\\`, k=10 | 0.062 "
            "| [0.000, 0.125] | 0.500 | 0.040 | \u2264 0.110 | \u2013 | 40 |") in text
    assert f"| {probe} | snsr\\_jaccard | age, k=10 | n/a | \u2013 | \u2013 |" in text
    assert "1 headline record(s) have no estimate (n/a)" in text
    assert "0.900" not in text and "a girl" not in text  # smaller k, per-value: not headline
    assert (f"| **FAIL** | gender \\| gap | {probe} | snsr\\_jaccard | &lt;= 0.2 | ci "
            "| 0.250 [0.100, 0.400] p_adj=0.020 |") in text
    assert "**Verdict: FAIL** \u2014 1 of 1 gates failed" in text
    assert "[index.html](index.html)" in text


def test_limitations_and_provenance(card_path, result):
    text = card_path.read_text(encoding="utf-8")
    limits = text.split("## Bias, risks and limitations", 1)[1].split("## Provenance")[0]
    high = next(line for line in limits.splitlines() if line.startswith("1. "))
    # the floored record: excess over the floor 0.25 - 0.05 = 0.200, beyond its self floor 0.08
    assert "**high**" in high and "snsr\\_jaccard@\u200b10 = 0.250" in high
    assert "up to 0.120 (null 95th percentile); the excess over the floor is 0.200" in high
    assert "- cf\\|&lt;/td&gt;&lt;script&gt;alert(1)&lt;/script&gt;: age \u2014 no complete unit" \
        in limits
    assert "120 queries (0 failed); n per estimate 40" in limits
    assert "| model spec | hf:org/m&lt;b&gt;x&lt;/b&gt; --- evil: 1 |" in text
    assert f"| results hash (sha256) | {result.results_hash()} |" in text


def test_markdown_carries_no_markup_from_the_result(card_path):
    body = card_path.read_text(encoding="utf-8").split("\n---\n", 1)[1]
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(body)
    assert "<script" not in html and "<b>" not in html and "</td><script" not in html
    assert "&lt;/td&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown as text
    for block in re.findall(r"(?:^\|.*\|\n)+", body, flags=re.M):  # no row lost a column
        rows = block.strip("\n").split("\n")
        assert len({len(re.findall(r"(?<!\\)\|", row)) for row in rows}) == 1, rows
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs == ["index.html"]  # the one link is ours


def test_link_follows_the_html_report_name_and_aliases(result, tmp_path):
    written = render_all(result, tmp_path, formats=("modelcard", "model-card", "html"),
                         names={"html": "full report.html", "model-card": "README.md"})
    assert list(written) == ["model-card", "html"] and written["model-card"].name == "README.md"
    assert "[full report.html](full%20report.html)" in written["model-card"].read_text(
        encoding="utf-8")  # none written yet: linked because it is written in this call
    alone = render_all(result, tmp_path / "alone", formats=("card",))["model-card"].read_text(
        encoding="utf-8")  # no HTML report there: no dead link
    assert 'href' not in MarkdownIt().render(alone.split("\n---\n", 1)[1])
    assert "written by `recaudit report results.json --format html`" in alone


def test_result_without_metrics_or_gates(offline):
    text = model_card_markdown(make_minimal())
    card = ModelCard(text)
    assert card.data.eval_results is None and card.data.model_name == "python:m:f"
    assert "No probe recorded a headline metric" in text
    assert "No gates configured" in text and "## Bias, risks and limitations" in text


def test_an_adaptive_gate_says_how_it_was_decided(result):
    """decided after n units (sequential), at the cap (fixed n), or undecided (budget)."""
    gates = [g.model_copy(update=u) for g, u in zip(result.gates * 3, [
        {"decision": "sequential", "decided_after": 40, "name": "seq"},
        {"decision": "fixed-n", "name": "cap"},
        {"decision": "undecided", "name": "budget"}], strict=True)]
    text = model_card_markdown(result.model_copy(update={"gates": gates}))
    rows = {line.split(" | ")[1]: line for line in text.splitlines()
            if line.startswith("| **FAIL** |")}
    assert rows["seq"].endswith("p_adj=0.020; decided after 40 units (sequential) |")
    assert rows["cap"].endswith("p_adj=0.020; at the cap (fixed n) |")
    assert rows["budget"].endswith("p_adj=0.020; undecided: the budget ran out |")
