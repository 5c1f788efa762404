"""``replay:PATH``: recorded answers (OpenAI Batch pairs, chat JSONL, CSV) matched to requests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from recaudit.errors import DataError, ModelSpecError
from recaudit.recommenders import SCORE, Request, load_recommender
from recaudit.recommenders.base import call_recommender
from recaudit.recommenders.replay import MISSING, ReplayRecommender
from tests import gate_recommenders as gr

SYSTEM = "You are a movie recommendation system."


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _input_line(cid: str, req: Request) -> dict[str, Any]:
    return {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": req.chat_dicts(), "max_tokens": 60}}


def _output_line(cid: str, content: str | None = None, *, status: int = 200,
                 error: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"choices": [{"index": 0, "message": {"role": "assistant",
                                                                 "content": content}}],
                            "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
    if status != 200:
        body = {"error": {"message": "context too long"}}
    return {"id": f"batch_req_{cid}", "custom_id": cid,
            "response": None if error else {"status_code": status, "request_id": "r",
                                            "body": body},
            "error": error}


def _one_line_error(capsys, argv: list[str]) -> str:
    from recaudit.cli import main

    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


# -- formats and matching -----------------------------------------------------------------------
def test_openai_batch_pair_is_joined_on_custom_id_with_recorded_failures(tmp_path):
    reqs = [Request.from_prompt(f"I am a fan of {t}.", system=SYSTEM) for t in gr.TITLES[:4]]
    _write_jsonl(tmp_path / "requests.jsonl", [_input_line(f"c{i}", r) for i, r in
                                               enumerate(reqs)])
    # output lines in another order, in a file named as the API names it
    _write_jsonl(tmp_path / "batch_abc_output.jsonl", [
        _output_line("c2", "1. Cold Summit"), _output_line("c0", "1. Alpha Station\n2. Heat"),
        _output_line("c1", error={"code": "server_error", "message": "boom"}),
        _output_line("c3", status=400)])
    rec = load_recommender(f"replay:{tmp_path}")
    assert isinstance(rec, ReplayRecommender) and rec.n_recordings == 4
    out = rec.recommend(reqs)
    assert [r.text for r in out[::2]] == ["1. Alpha Station\n2. Heat", "1. Cold Summit"]
    assert out[0].error is None and out[0].n_prompt_tokens == 7 and out[0].n_output_tokens == 3
    assert out[0].meta["recorded"].endswith("batch_abc_output.jsonl:2")
    assert out[1].error == "recorded batch error: server_error: boom"
    assert out[3].error == "recorded HTTP status 400: context too long"
    assert rec.missing_report() is None  # recorded failures are answers, not missing ones
    # the same messages with another k still match; other messages do not
    assert rec.recommend([Request(reqs[0].messages, k=3)])[0].text.startswith("1. Alpha")
    assert rec.recommend([Request.from_prompt("I am a fan of Alpha Station.")])[0].error \
        == MISSING


def test_chat_jsonl_matches_messages_exactly_and_prompt_records_without_system(tmp_path):
    with_system = Request.from_prompt("Recommend 3 movies.", system=SYSTEM)
    bare = Request.from_prompt("Recommend 3 movies.")
    other_system = Request.from_prompt("Recommend 3 movies.", system="Be brief.")
    path = _write_jsonl(tmp_path / "rec.jsonl", [
        {"messages": with_system.chat_dicts(), "response": "1. Heat", "id": 5},
        {"prompt": "Recommend 3 movies.", "response": "1. Alien"},
        {"prompt": "Recommend 3 movies.", "system": "Be brief.", "response": "1. Up"},
    ])
    rec = load_recommender(f"replay:{path}")
    out = rec.recommend([with_system, bare, other_system,
                         Request.from_prompt("Recommend 3 movies.", system="Other.")])
    assert [r.text for r in out[:3]] == ["1. Heat", "1. Alien", "1. Up"]
    assert out[3].error == MISSING
    assert rec.capabilities == frozenset({"generate"}) and not rec.supports(SCORE)
    scoring = Request(bare.messages, candidates=["Heat", "Alien"])
    assert call_recommender(rec, [scoring])[0].error == f"replay:{path} cannot score candidates"


def test_csv_with_configured_columns_and_system_column(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text('q,sys,a\n"I like Heat, a lot.",,"1. Alien\n2. Up"\n'
                    f"Recommend 2 movies.,{SYSTEM},1. Heat\n", encoding="utf-8")
    rec = load_recommender(f"replay:{path}", prompt_col="q", response_col="a",
                           system_col="sys")
    out = rec.recommend([Request.from_prompt("I like Heat, a lot."),
                         Request.from_prompt("Recommend 2 movies.", system=SYSTEM),
                         Request.from_prompt("Recommend 2 movies.")])
    assert [r.text for r in out[:2]] == ["1. Alien\n2. Up", "1. Heat"]
    assert out[2].error == MISSING
    tsv = tmp_path / "d" / "answers.tsv"
    tsv.parent.mkdir()
    tsv.write_text("prompt\tresponse\nhello\t1. Heat\n", encoding="utf-8")
    assert load_recommender(f"replay:{tsv.parent}").recommend(
        [Request.from_prompt("hello")])[0].text == "1. Heat"


def test_missing_answers_are_counted_failed_and_reported(tmp_path):
    path = _write_jsonl(tmp_path / "r.jsonl", [{"prompt": "known", "response": "1. Heat"},
                                               {"prompt": "asked with a system",
                                                "response": "1. Up"}])
    rec = load_recommender(f"replay:{path}")
    reqs = ([Request.from_prompt("known")]
            + [Request.from_prompt(f"unknown {i}") for i in range(4)]
            + [Request.from_prompt("asked with a system", system=SYSTEM)])
    out = rec.recommend(reqs)
    assert [r.error for r in out] == [None] + [MISSING] * 5
    rec.recommend(reqs[1:2])  # the same missing request again is not a new one
    assert rec.n_missing == 5 and rec.n_requests == 7
    report = rec.missing_report()
    assert report is not None and "\n" not in report
    assert report.startswith("replay: 5 of 7 requests had no recorded answer")
    assert "'unknown 0'; 'unknown 1'; 'unknown 2'" in report and "unknown 3" not in report
    assert "1 of them match a recording's user message" in report


def test_duplicates_first_wins_conflicts_counted_and_success_replaces_failure(tmp_path):
    req = Request.from_prompt("p", system=SYSTEM)
    again = Request.from_prompt("q")
    _write_jsonl(tmp_path / "a.jsonl", [
        {"messages": req.chat_dicts(), "response": "first"},
        {"messages": req.chat_dicts(), "response": "first"},
        {"messages": req.chat_dicts(), "response": "second"}])
    _write_jsonl(tmp_path / "b_in.jsonl", [_input_line("x", again)])
    _write_jsonl(tmp_path / "b_out1.jsonl", [_output_line("x", error={"message": "late"})])
    _write_jsonl(tmp_path / "b_out2.jsonl", [_output_line("x", "retried")])
    rec = load_recommender(f"replay:{tmp_path}")
    assert [r.text for r in rec.recommend([req, again])] == ["first", "retried"]
    assert rec.n_conflicts == 1 and rec.n_recordings == 5


def test_fingerprint_is_the_hash_of_the_recordings(tmp_path):
    path = _write_jsonl(tmp_path / "d" / "r.jsonl", [{"prompt": "p", "response": "1. Heat"}])
    (tmp_path / "d" / "notes.txt").write_text("ignored", encoding="utf-8")
    first = load_recommender(f"replay:{path.parent}")
    same = load_recommender(f"replay:{path.parent}")
    assert first.fingerprint() == same.fingerprint() and len(first.fingerprint()) == 64
    (tmp_path / "d" / "notes.txt").write_text("still ignored", encoding="utf-8")
    assert load_recommender(f"replay:{path.parent}").fingerprint() == first.fingerprint()
    _write_jsonl(path, [{"prompt": "p", "response": "1. Alien"}])
    changed = load_recommender(f"replay:{path.parent}")
    assert changed.fingerprint() != first.fingerprint()
    assert changed.weights_sha256() != first.weights_sha256()
    (tmp_path / "d" / "more.csv").write_text("prompt,response\nq,1. Up\n", encoding="utf-8")
    assert load_recommender(f"replay:{path.parent}").fingerprint() != changed.fingerprint()


# -- bad input: one line, exit 2 -----------------------------------------------------------------
def _raises_one_line(exc: type[Exception], spec: str, match: str, **options: Any) -> None:
    with pytest.raises(exc, match=match) as info:
        load_recommender(spec, **options)
    assert "\n" not in str(info.value)


def test_bad_recordings_raise_one_line_errors(tmp_path):
    _raises_one_line(ModelSpecError, f"replay:{tmp_path / 'nope'}", "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.txt").write_text("x", encoding="utf-8")
    _raises_one_line(DataError, f"replay:{empty}", "no recordings")
    _raises_one_line(DataError, f"replay:{empty / 'README.txt'}", "is not a recording")
    blank = _write_jsonl(tmp_path / "blank" / "r.jsonl", [])
    _raises_one_line(DataError, f"replay:{blank.parent}", "no recorded answers")
    trunc = tmp_path / "t.jsonl"
    trunc.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a", "resp\n',
                     encoding="utf-8")
    _raises_one_line(DataError, f"replay:{trunc}", r"t\.jsonl:2: not valid JSON")
    csv = tmp_path / "c.csv"
    csv.write_text("question,answer\nq,a\n", encoding="utf-8")
    _raises_one_line(DataError, f"replay:{csv}", "no column 'prompt', 'response' "
                     r"\(columns: question, answer\)")
    _raises_one_line(DataError, f"replay:{csv}", "no column 'sys'", prompt_col="question",
                     response_col="answer", system_col="sys")
    batch = tmp_path / "batch"
    _write_jsonl(batch / "in.jsonl", [_input_line("a", Request.from_prompt("p"))])
    _raises_one_line(DataError, f"replay:{batch}", "no batch output file")
    _write_jsonl(batch / "out.jsonl", [_output_line("a", "1. Heat"), _output_line("zz", "x")])
    _raises_one_line(DataError, f"replay:{batch}", r"out\.jsonl:2: custom_id 'zz' is in no "
                     "batch input file")
    _write_jsonl(batch / "out.jsonl", [_output_line("a", "1. Heat")])
    _write_jsonl(batch / "in2.jsonl", [_input_line("a", Request.from_prompt("other"))])
    _raises_one_line(DataError, f"replay:{batch}", "custom_id 'a' also names other messages")
    odd = _write_jsonl(tmp_path / "odd.jsonl", [{"text": "x"}])
    _raises_one_line(DataError, f"replay:{odd}", r"odd\.jsonl:1: not a recording")
    _raises_one_line(ModelSpecError, f"replay:{trunc}", "unknown model_options colour",
                     colour="red")


def test_bad_recordings_exit_2_with_one_line_from_the_cli(tmp_path, capsys):
    trunc = tmp_path / "t.jsonl"
    trunc.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a', encoding="utf-8")
    csv = tmp_path / "c.csv"
    csv.write_text("question,answer\nq,a\n", encoding="utf-8")
    batch = tmp_path / "batch"
    _write_jsonl(batch / "in.jsonl", [_input_line("a", Request.from_prompt("p"))])
    _write_jsonl(batch / "out.jsonl", [_output_line("nope", "x")])
    empty = tmp_path / "empty"
    empty.mkdir()
    for path, needle in [(tmp_path / "missing", "does not exist"), (empty, "no recordings"),
                         (trunc, "t.jsonl:2: not valid JSON"), (csv, "no column 'prompt'"),
                         (batch, "custom_id 'nope'")]:
        err = _one_line_error(capsys, ["recommend", "--model", f"replay:{path}",
                                       "--prompt", "hi"])
        assert needle in err and err.startswith("recaudit: error: ")


# -- audits: live vs replayed --------------------------------------------------------------------
def _audit_config(tmp_path: Path, model: str, out: str) -> Path:
    return gr.write_cli_config(tmp_path, model, out)


def _answer_batch(inputs: Path, output: Path, drop: int = 0) -> int:
    """Answer each batch input line with gate_recommenders.biased, as an API batch would."""
    from recaudit.recommenders.python import render_titles

    lines = [json.loads(x) for x in inputs.read_text(encoding="utf-8").splitlines()]
    rows = [_output_line(x["custom_id"], render_titles(gr.biased(x["body"]["messages"], 10)))
            for x in lines[drop:]]
    _write_jsonl(output, rows[::-1])  # the API does not keep the input order
    return len(lines)


def test_replayed_batch_output_reproduces_the_live_audit(tmp_path, capsys):
    from recaudit.cli import main

    live_cfg = _audit_config(tmp_path, "python:tests.gate_recommenders:biased", "live")
    assert main(["audit", str(live_cfg), "--no-progress", "--format", "json"]) == 0
    live = json.loads((tmp_path / "live" / "results.json").read_text(encoding="utf-8"))
    batch = tmp_path / "batch"
    assert main(["export-requests", str(live_cfg), "--format", "openai-batch",
                 "--out", str(batch / "input.jsonl")]) == 0
    n = _answer_batch(batch / "input.jsonl", batch / "output.jsonl")
    assert n == 6 * 3  # six subjects: neutral + two values
    replay_cfg = _audit_config(tmp_path, f"replay:{batch}", "replay")
    capsys.readouterr()
    assert main(["audit", str(replay_cfg), "--no-progress", "--format", "json",
                 "--strict"]) == 0
    assert "warning" not in capsys.readouterr().err
    replayed = json.loads((tmp_path / "replay" / "results.json").read_text(encoding="utf-8"))
    pl, pr = live["probes"][0], replayed["probes"][0]
    assert pr["status"] == "ok" and pr["n_failed"] == 0 and pr["n_queries"] == 18
    assert pr["metrics"] == pl["metrics"] and pl["metrics"]
    assert any(m["metric"] == "snsr_jaccard" and m["estimate"] > 0 for m in pr["metrics"])
    prov = replayed["provenance"]
    assert prov["model_spec"] == f"replay:{batch}" and len(prov["weights_sha256"]) == 64


def test_missing_answers_warn_and_strict_exits_2(tmp_path, capsys):
    from recaudit.cli import main

    live_cfg = _audit_config(tmp_path, "python:tests.gate_recommenders:biased", "live")
    batch = tmp_path / "batch"
    assert main(["export-requests", str(live_cfg), "--format", "openai-batch",
                 "--out", str(batch / "input.jsonl")]) == 0
    _answer_batch(batch / "input.jsonl", batch / "output.jsonl", drop=2)
    cfg = _audit_config(tmp_path, f"replay:{batch}", "replay")
    capsys.readouterr()
    assert main(["audit", str(cfg), "--no-progress", "--format", "json"]) == 0
    err = capsys.readouterr().err
    assert "recaudit: warning: replay: 2 of 18 requests had no recorded answer" in err
    result = json.loads((tmp_path / "replay" / "results.json").read_text(encoding="utf-8"))
    assert result["probes"][0]["n_failed"] == 2
    assert "incomplete: 2 of 18 requests failed (first: no recorded answer for this request)" \
        in result["probes"][0]["warnings"]
    # failures are not cached: the strict rerun meets the same two missing answers
    err = _one_line_error(capsys, ["audit", str(cfg), "--no-progress", "--format", "json",
                                   "--strict"])
    assert err.startswith("recaudit: error: replay: 2 of 2 requests had no recorded answer")
    assert err.rstrip().endswith("(--strict)")


@pytest.mark.integration
def test_smollm2_batch_round_trip_replays_the_live_audit(tmp_path):
    from recaudit.audit import build_recommender, load_catalog, run_audit
    from recaudit.config import load_config
    from recaudit.engine import Engine
    from recaudit.export import custom_id, plan_requests, request_line

    cfg_path = tmp_path / "a.yaml"
    cfg_path.write_text(
        "model: smollm2\ndecoding: {max_new_tokens: 60}\ncatalog: {source: movielens}\n"
        f"engine: {{cache: {tmp_path / 'c.sqlite'}, progress: false}}\n"
        "stats: {n_bootstrap: 100, n_permutations: 99, min_group_size: 1}\n"
        "probes:\n  - probe: counterfactual\n    params:\n      k: 5\n"
        "      similarities: [jaccard]\n      n_examples: 0\n"
        "      attributes: {gender: [a female, a male]}\n"
        "      subjects: {source: catalog_popular, n: 1}\n", encoding="utf-8")
    cfg = load_config(cfg_path)
    catalog = load_catalog(cfg)
    rec = build_recommender(cfg)
    live = run_audit(cfg, recommender=rec, catalog=catalog, progress=False)
    assert live.provenance.engine["computed"] == 3
    plan = plan_requests(cfg, catalog=catalog)
    assert len(plan.requests) == 3
    engine = Engine(rec, catalog, cache_path=tmp_path / "c.sqlite", progress=False)
    try:
        answers = engine.run(plan.requests)
    finally:
        engine.close()
    assert engine.stats.computed == 0  # the live run's answers, from the cache
    batch = tmp_path / "batch"
    _write_jsonl(batch / "x.input.jsonl",
                 [request_line(r, "openai-batch", cfg, "smollm2") for r in plan.requests])
    _write_jsonl(batch / "x.output.jsonl",
                 [_output_line(custom_id(r), answers[r.key()].response.text)
                  for r in plan.requests])
    replay_cfg = load_config(cfg_path, overrides={"model": f"replay:{batch}"})
    replayed = run_audit(replay_cfg, catalog=catalog, progress=False)
    assert replayed.probes[0].n_failed == 0 and replayed.probes[0].status == "ok"
    dump = [m.model_dump(mode="json") for m in replayed.probes[0].metrics]
    assert dump == [m.model_dump(mode="json") for m in live.probes[0].metrics] and dump


def test_several_recorded_answers_are_the_samples_and_too_few_are_said(tmp_path):
    """A 'response' list and repeated recordings are samples 0, 1, ... in order; a request
    with fewer recorded answers than samples asks fails those samples in one clear line."""
    from recaudit.engine import Engine

    listed, repeated, single = (Request.from_prompt(p) for p in ("listed", "repeated", "one"))
    path = _write_jsonl(tmp_path / "r.jsonl", [
        {"prompt": "listed", "response": ["1. Heat", "1. Alien", "1. Up"]},
        {"prompt": "repeated", "response": "1. Fargo"},
        {"prompt": "one", "response": "1. Heat"},
        {"prompt": "repeated", "response": "1. Brazil"},
        {"prompt": "repeated", "response": "1. Ran"}])
    rec = load_recommender(f"replay:{path}")
    eng = Engine(rec, cache_path=tmp_path / "c.sqlite", samples=3, progress=False)
    answers = eng.run([listed, repeated, single])
    eng.close()
    assert [s.response.text for s in answers[listed.key()].samples] == \
        ["1. Heat", "1. Alien", "1. Up"]
    assert [s.response.text for s in answers[repeated.key()].samples] == \
        ["1. Fargo", "1. Brazil", "1. Ran"]
    one = answers[single.key()].samples
    assert one[0].response.text == "1. Heat"
    assert [s.response.error for s in one[1:]] == [
        "only 1 recorded answers for this request; decoding.samples asks for sample 2",
        "only 1 recorded answers for this request; decoding.samples asks for sample 3"]
    report = rec.missing_report()
    assert report == (f"replay: 1 prompts have fewer recorded answers than decoding.samples "
                      f"asks in {path}; first: 'one' has 1")
    assert rec.recommend([listed])[0].text == "1. Heat"  # one sample: as before
    assert rec.n_missing == 0 and rec.n_conflicts == 4  # later answers still counted
    bad = _write_jsonl(tmp_path / "bad" / "r.jsonl", [{"prompt": "a", "response": []}])
    with pytest.raises(DataError, match="non-empty list of strings"):
        load_recommender(f"replay:{bad}")
