"""``recaudit export-requests``: every request an audit makes, as OpenAI Batch input or JSONL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import jsonschema
import pytest

from recaudit.cli import main
from recaudit.probes import AuditContext, Probe, ProbeParams, Query
from recaudit.probes.registry import _REGISTRY
from recaudit.recommenders.base import GENERATE, SCORE, Recommender, Request, Response
from recaudit.recommenders.replay import message_key
from recaudit.results import ProbeResult
from tests import gate_recommenders as gr

BATCH_INPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["custom_id", "method", "url", "body"],
    "additionalProperties": False,
    "properties": {
        "custom_id": {"type": "string", "pattern": "^req-[0-9a-f]{32}$", "maxLength": 64},
        "method": {"const": "POST"},
        "url": {"const": "/v1/chat/completions"},
        "body": {
            "type": "object",
            "required": ["model", "messages"],
            "properties": {
                "model": {"type": "string", "minLength": 1},
                "messages": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["role", "content"],
                    "additionalProperties": False,
                    "properties": {"role": {"enum": ["system", "user", "assistant"]},
                                   "content": {"type": "string"}}}},
                "max_tokens": {"type": "integer", "minimum": 1},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "seed": {"type": "integer"},
            },
        },
    },
}


def _config(tmp_path: Path, probes: str, extra: str = "") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    items = tmp_path / "items.csv"
    items.write_text("id,title\n" + "".join(f"{i},{t}\n" for i, t in enumerate(gr.TITLES)),
                     encoding="utf-8")
    cfg = tmp_path / "a.yaml"
    cfg.write_text(
        "model: python:tests.gate_recommenders:biased\n"
        "decoding: {max_new_tokens: 77, temperature: 0.5, seed: 3}\n"
        f"engine: {{cache: {tmp_path / 'c.sqlite'}, progress: false}}\n"
        "stats: {n_bootstrap: 100, n_permutations: 99, min_group_size: 2}\n"
        f"catalog: {{source: csv, path: {items}}}\n"
        f"probes:\n{probes}{extra}out: {tmp_path / 'out'}\n", encoding="utf-8")
    return cfg


COUNTERFACTUAL = (
    "  - probe: counterfactual\n    params:\n      k: 10\n      similarities: [jaccard]\n"
    "      n_examples: 0\n      attributes: {gender: [a female, a male], age: [a young]}\n"
    "      subjects: {source: inline, items: [Alpha Station, Blue Harbor, Cold Summit]}\n")


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_openai_batch_export_validates_and_ids_are_unique_and_stable(tmp_path, capsys):
    cfg = _config(tmp_path, COUNTERFACTUAL)
    out = tmp_path / "x" / "input.jsonl"
    assert main(["export-requests", str(cfg), "--format", "openai-batch", "--out",
                 str(out)]) == 0
    assert "12 requests written to" in capsys.readouterr().err  # 3 subjects x (1 + 3)
    lines = _lines(out)
    validator = jsonschema.Draft202012Validator(BATCH_INPUT_SCHEMA)
    for line in lines:
        validator.validate(line)
    ids = [x["custom_id"] for x in lines]
    assert len(set(ids)) == len(ids) == 12
    body = lines[0]["body"]
    assert body["model"] == "python:tests.gate_recommenders:biased"
    assert (body["max_tokens"], body["temperature"], body["seed"]) == (77, 0.5, 3)
    assert body["messages"][0] == {"role": "system",
                                   "content": "You are a movie recommendation system."}
    assert all(x["custom_id"] == "req-" + message_key(x["body"]["messages"])[:32]
               for x in lines)
    again = tmp_path / "again.jsonl"
    assert main(["export-requests", str(cfg), "--format", "openai-batch", "--out", str(again),
                 "--model", "gpt-4o-mini"]) == 0
    other = _lines(again)
    assert [x["custom_id"] for x in other] == ids  # the same ids in the same order
    assert {x["body"]["model"] for x in other} == {"gpt-4o-mini"}


def test_schema_rejects_what_the_batch_api_rejects():
    good = {"custom_id": "req-" + "0" * 32, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}
    jsonschema.validate(good, BATCH_INPUT_SCHEMA)
    for bad in ({**good, "method": "GET"}, {**good, "url": "/v1/embeddings"},
                {k: v for k, v in good.items() if k != "custom_id"},
                {**good, "body": {"model": "m", "messages": []}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, BATCH_INPUT_SCHEMA)


# -- dedup, scoring requests and probes that need another capability -----------------------------
class _Params(ProbeParams):
    pass


class MixedProbe(Probe):
    """Plans duplicates (same messages, another k too) and one scoring request."""

    Params = _Params

    def plan(self, ctx: AuditContext) -> list[Query]:
        a = Request.from_prompt("Recommend movies.", k=5)
        return [Query("a", a), Query("a-again", Request.from_prompt("Recommend movies.", k=5)),
                Query("a-k3", Request(a.messages, k=3)),
                Query("b", Request.from_prompt("Other movies.", k=5)),
                Query("score", Request(a.messages, candidates=["Alpha Station", "Blue Harbor"]))]

    def analyse(self, ctx: AuditContext, queries: list[Query], answers: dict) -> ProbeResult:
        return ProbeResult(id=self.run_id, probe=self.name, suite=self.suite, params={})


class ScoreOnlyProbe(MixedProbe):
    """Needs candidate scores: a chat endpoint cannot serve it."""

    requires = frozenset({SCORE})


@pytest.fixture
def restore_registry():
    before = dict(_REGISTRY)
    yield
    _REGISTRY.clear()
    _REGISTRY.update(before)


def test_dedup_by_messages_and_left_out_requests_are_reported(tmp_path, capsys,
                                                              restore_registry):
    probes = ("  - probe: tests.test_export:MixedProbe\n"
              "  - probe: tests.test_export:ScoreOnlyProbe\n")
    cfg = _config(tmp_path, probes)
    out = tmp_path / "r.jsonl"
    assert main(["export-requests", str(cfg), "--format", "jsonl", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "2 requests written to" in err and "(5 planned" in err
    assert "1 scoring requests left out" in err
    assert "probes skipped: tests.test_export:ScoreOnlyProbe (skipped: the export lacks score)" \
        in err
    assert _lines(out) == [{"messages": [{"role": "user", "content": "Recommend movies."}]},
                           {"messages": [{"role": "user", "content": "Other movies."}]}]


def test_jsonl_to_stdout_answered_replays_every_request(tmp_path, capsys):
    from recaudit.recommenders import load_recommender
    from recaudit.recommenders.python import render_titles

    cfg = _config(tmp_path, COUNTERFACTUAL)
    capsys.readouterr()
    assert main(["export-requests", str(cfg), "--format", "jsonl"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 12 and all(set(x) == {"messages"} for x in lines)
    rec_file = tmp_path / "answers.jsonl"
    rec_file.write_text("".join(
        json.dumps({**x, "response": render_titles(gr.biased(x["messages"], 10))}) + "\n"
        for x in lines), encoding="utf-8")
    rec = load_recommender(f"replay:{rec_file}")
    reqs = [Request(x["messages"], k=10) for x in lines]
    assert all(r.error is None for r in rec.recommend(reqs)) and rec.missing_report() is None


class _Recorder(Recommender):
    capabilities = frozenset({GENERATE})

    def __init__(self) -> None:
        super().__init__(spec="recorder")
        self.seen: list[Request] = []

    def fingerprint(self) -> str:
        return "recorder"

    def recommend(self, requests: Sequence[Request]) -> list[Response]:
        self.seen.extend(requests)
        return [Response(text="1. Heat") for _ in requests]


def test_export_plans_exactly_the_requests_run_audit_sends(tmp_path):
    """Probes and a model-backed reranker (psc) on MovieLens: the same message lists."""
    from recaudit.audit import run_audit
    from recaudit.config import load_config
    from recaudit.export import plan_requests

    cfg_path = tmp_path / "m.yaml"
    cfg_path.write_text(
        f"engine: {{cache: {tmp_path / 'c.sqlite'}, progress: false}}\n"
        "stats: {n_bootstrap: 100, n_permutations: 99, min_group_size: 2}\n"
        "catalog: {source: movielens}\n"
        "probes:\n  - probe: position\n    params: {n_candidates: 5, positions: [0, 2], "
        "n_users: 3}\n  - probe: counterfactual\n    params: {k: 5, n_examples: 0, "
        "attributes: {gender: [a female, a male]}, subjects: {source: catalog_popular, n: 2}}\n"
        "mitigation:\n  - reranker: psc\n    params: {B: 2}\n    sweep: []\n", encoding="utf-8")
    cfg = load_config(cfg_path)
    rec = _Recorder()
    run_audit(cfg, recommender=rec, progress=False)
    plan = plan_requests(cfg)
    sent = {message_key(r.messages) for r in rec.seen}
    assert {message_key(r.messages) for r in plan.requests} == sent
    assert len(plan.requests) == len(sent)
    plain = plan_requests(cfg.model_copy(update={"mitigation": []}))
    assert len(plain.requests) < len(plan.requests)  # psc's shuffled copies are in the export


def test_bad_export_arguments_exit_2_in_one_line(tmp_path, capsys):
    cfg = _config(tmp_path, COUNTERFACTUAL)
    capsys.readouterr()
    assert main(["export-requests", str(cfg), "--format", "csv"]) == 2
    # argparse shows the usage first, as for every command; the error is its own line
    assert "error: argument --format: invalid choice: 'csv'" in \
        capsys.readouterr().err.strip().splitlines()[-1]
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    for argv, needle in [
            (["export-requests", str(tmp_path / "none.yaml"), "--format", "jsonl"],
             "none.yaml"),
            (["export-requests", str(_config(tmp_path / "e", "  []\n")), "--format", "jsonl"],
             "no probes"),
            (["export-requests", str(cfg), "--format", "jsonl", "--out",
              str(blocker / "x.jsonl")], "cannot write"),
    ]:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert needle in err and err.startswith("recaudit: error: ") \
            and err.count("\n") == 1, err
