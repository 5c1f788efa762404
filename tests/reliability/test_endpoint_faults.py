"""Every endpoint fault of tests/reliability/fault_server.py, through the openai adapter and
through ``recaudit audit``, with the exact expected behaviour.

Policy (recaudit/recommenders/openai.py): transient faults (429, 5xx, slow, hung, trickling or
cut-short answers, a reply that is not HTTP) and malformed bodies are retried with backoff and
give the canned answer once the server recovers; when retries run out the request fails with
one line naming the URL, the attempts and the last failure, and the probe says it is
incomplete. A well-formed answer whose content is not text fails at once. 401/403/404 stop the
audit with exit 2 (an input error: key, URL or model name); an audit in which every request
failed exits 3 (README). A malformed body never becomes an answer.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from recaudit.cli import main
from recaudit.errors import EndpointError
from recaudit.recommenders.base import Decoding, Request
from recaudit.recommenders import openai as openai_adapter
from recaudit.recommenders.openai import OpenAIRecommender
from tests.gate_recommenders import TITLES, write_cli_config
from tests.reliability import tally
from tests.reliability.fault_server import MALFORMED, TRANSIENT, FaultServer

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 0.4  # the client's limit (connect, each read, the body); slow_s is well past it
KEY = "sk-planted-4f1c9e0d"


@pytest.fixture
def serve():
    """``serve(**kw)`` starts a FaultServer; at teardown it is stopped, its faults are counted
    in the tally, and no handler thread may be left running."""
    servers: list[FaultServer] = []

    def start(**kw) -> FaultServer:
        kw.setdefault("slow_s", 3.0)
        kw.setdefault("trickle_s", 0.05)
        servers.append(FaultServer(**kw).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
        tally.add("faults injected", server.faults_served)
    left = [t.name for t in threading.enumerate() if "process_request" in t.name]
    assert left == [], f"server handler threads still running: {left}"


def client(server: FaultServer, **kw) -> tuple[OpenAIRecommender, list[float]]:
    """An adapter on ``server`` whose backoff waits are recorded instead of slept."""
    kw.setdefault("timeout", TIMEOUT)
    kw.setdefault("max_retries", 3)
    rec = OpenAIRecommender(server.url, "canned", Decoding(max_new_tokens=32), **kw)
    delays: list[float] = []
    rec._sleep = delays.append
    return rec, delays


def ask(rec: OpenAIRecommender, *prompts: str):
    requests = [Request.from_prompt(p, k=5) for p in prompts]
    try:
        return rec.recommend(requests), requests
    finally:
        rec.close()


def assert_one_line(text: str | None) -> None:
    assert text and "\n" not in text and "Traceback" not in text, text


@pytest.mark.parametrize("fault", sorted(TRANSIENT))
def test_transient_fault_is_retried_and_the_answer_is_the_recovered_one(serve, fault):
    server = serve(schedule=[fault, fault], retry_after="7")
    rec, delays = client(server)
    (resp,), (req,) = ask(rec, "I am a fan of Red Canyon.")
    assert resp.error is None, resp.error
    assert resp.text == server.answer_for(req.chat_dicts())
    assert resp.meta["attempts"] == 3
    assert server.served == {fault: 2, "ok": 1}
    if fault.endswith("retry_after"):
        assert delays == [7.0, 7.0]  # Retry-After replaces the backoff
    else:
        # backoff 0.5 s * 2**(attempt-1), times a jitter in [0.5, 1.5)
        assert len(delays) == 2 and 0.25 <= delays[0] < 0.75 and 0.5 <= delays[1] < 1.5


@pytest.mark.parametrize("fault,reason", [
    ("http_429", "HTTP 429: "), ("http_500", "HTTP 500: "), ("http_503", "HTTP 503: "),
    ("slow", f"timed out after {TIMEOUT:g} s"), ("hang", f"timed out after {TIMEOUT:g} s"),
    ("trickle", f"timed out after {TIMEOUT:g} s"),
    ("close_mid_body", "RemoteProtocolError: peer closed connection"),
    ("not_http", "RemoteProtocolError: "),
])
def test_transient_fault_that_persists_fails_that_request_only(serve, fault, reason):
    server = serve(schedule=[fault] * 3)
    rec, delays = client(server, max_retries=2, concurrency=1)
    (bad, good), (_, good_req) = ask(rec, "I am a fan of Red Canyon.", "I am a fan of Iron Gate.")
    assert_one_line(bad.error)
    assert bad.error.startswith(f"endpoint {server.url}/v1/chat/completions failed after "
                                f"3 attempt(s): {reason}"), bad.error
    assert bad.text == "" and bad.meta["attempts"] == 3 and len(delays) == 2
    assert good.error is None and good.text == server.answer_for(good_req.chat_dicts())


@pytest.mark.parametrize("fault", sorted(MALFORMED - {"content_not_string"}))
def test_malformed_body_is_retried_and_never_becomes_an_answer(serve, fault):
    server = serve(schedule=[fault] * 3 + [fault])
    rec, delays = client(server, max_retries=2, concurrency=1)
    (bad, good), (_, good_req) = ask(rec, "I am a fan of Red Canyon.", "I am a fan of Iron Gate.")
    assert_one_line(bad.error)
    reason = {"not_json": "body is not JSON ('<html>", "truncated_json": "body is not JSON",
              "deep_json": "body is nested too deep",
              "bad_gzip": "body cannot be decoded (",
              }.get(fault, "no choices[0].message.content")
    assert f"failed after 3 attempt(s): malformed response: {reason}" in bad.error, bad.error
    assert bad.text == "" and bad.item_ids is None
    # the fourth fault went to the second request, which was retried and recovered
    assert len(delays) == 3
    assert good.error is None and good.text == server.answer_for(good_req.chat_dicts())
    assert good.meta["attempts"] == 2


def test_large_body_is_read_up_to_the_cap_and_refused_past_it(serve, monkeypatch):
    server = serve(schedule=["huge_body"] * 4)
    rec, _ = client(server, concurrency=1, timeout=10.0)
    (resp,), (req,) = ask(rec, "I am a fan of Red Canyon.")  # 2 MiB: under the 16 MiB cap
    assert resp.error is None and resp.text == server.answer_for(req.chat_dicts())
    monkeypatch.setattr(openai_adapter, "MAX_BODY_BYTES", 2**20)
    rec, _ = client(server, concurrency=1, timeout=10.0, max_retries=2)
    (resp,), _ = ask(rec, "I am a fan of Red Canyon.")
    assert_one_line(resp.error)
    assert resp.error.endswith("failed after 3 attempt(s): malformed response: body larger "
                               "than 1,048,576 bytes"), resp.error
    assert resp.text == "" and server.served == {"huge_body": 4}


def test_content_that_is_not_text_fails_at_once(serve):
    server = serve(schedule=["content_not_string"])
    rec, delays = client(server)
    (resp,), _ = ask(rec, "I am a fan of Red Canyon.")
    assert_one_line(resp.error)
    assert resp.error == (f"endpoint {server.url}/v1/chat/completions: message content is list, "
                          "not text, finish_reason 'stop'")
    assert resp.text == "" and delays == [] and sum(server.served.values()) == 1


@pytest.mark.parametrize("fault,message", [
    ("http_401", "rejected the API key (HTTP 401); check $RA_FAULT_KEY: "),
    ("http_403", "refused access to model 'canned' (HTTP 403); check $RA_FAULT_KEY: "),
    ("http_404", "has no model 'canned' or no such route (HTTP 404): "),
])
def test_permanent_status_stops_at_once_without_the_key(serve, monkeypatch, fault, message):
    monkeypatch.setenv("RA_FAULT_KEY", KEY)
    server = serve(schedule=[fault])
    rec, delays = client(server, api_key_env="RA_FAULT_KEY", concurrency=1)
    with pytest.raises(EndpointError) as exc:
        ask(rec, *[f"I am a fan of {t}." for t in TITLES[:6]])
    text = str(exc.value)
    assert_one_line(text)
    assert text.startswith(f"endpoint {server.url}/v1/chat/completions {message}"), text
    assert KEY not in text and delays == []
    assert sum(server.served.values()) == 1  # the five queued requests were cancelled


def test_missing_key_is_named_and_an_echoed_key_is_masked(monkeypatch):
    monkeypatch.delenv("RA_FAULT_KEY", raising=False)
    reject = httpx.MockTransport(lambda r: httpx.Response(401, text="no key"))
    rec = OpenAIRecommender("http://127.0.0.1:9", "m", api_key_env="RA_FAULT_KEY",
                            transport=reject)
    with pytest.raises(EndpointError, match=r"HTTP 401\); \$RA_FAULT_KEY is not set: no key$"):
        ask(rec, "x")
    monkeypatch.setenv("RA_FAULT_KEY", KEY)
    echo = httpx.MockTransport(lambda r: httpx.Response(
        401, json={"error": f"invalid key {r.headers['authorization'].split()[-1]}"}))
    rec = OpenAIRecommender("http://127.0.0.1:9", "m", api_key_env="RA_FAULT_KEY",
                            transport=echo)
    with pytest.raises(EndpointError) as exc:
        ask(rec, "x")
    assert KEY not in str(exc.value) and "invalid key ***" in str(exc.value)
    tally.add("bad inputs", 2)


def test_ctrl_c_stops_a_worker_waiting_out_retry_after(serve):
    """SIGINT while a worker sleeps for Retry-After: recommend() raises at once and the worker
    does not retry (it used to wait the 30 s out, then send the request again)."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, (
        "SIGINT does not raise KeyboardInterrupt in this process (see tests/conftest.py)")
    server = serve(schedule=["http_429_retry_after"], retry_after="30")
    rec = OpenAIRecommender(server.url, "canned", timeout=TIMEOUT, max_retries=3)  # real waits
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            ask(rec, "I am a fan of Red Canyon.")
    finally:
        timer.cancel()
    assert server.served == {"http_429_retry_after": 1}
    assert not [t for t in threading.enumerate() if t.name.startswith("recaudit-openai")]


def test_ctrl_c_test_passes_in_a_suite_started_with_sigint_ignored(tmp_path):
    """Issue 19's flaky failure: ``make test`` run as a background job of a non-interactive
    shell inherits SIGINT ignored, and Python keeps it so: the test above then waited the 30 s
    out and failed "DID NOT RAISE KeyboardInterrupt" (1 failed, every other test passed, and it
    passed when rerun from a terminal). tests/conftest.py gives the suite Python's handler."""
    test = f"{Path(__file__).relative_to(REPO)}::test_ctrl_c_stops_a_worker_waiting_out_retry_after"
    inherited = ("import signal, sys; assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN, "
                 "'SIGINT was not inherited ignored'; import pytest; sys.exit(pytest.main(["
                 f"'-q', '-p', 'no:cacheprovider', '--basetemp', {str(tmp_path / 'run')!r}, "
                 f"{test!r}]))")
    # `cmd &` in `sh -c`: job control is off, so the shell starts cmd with SIGINT ignored
    proc = subprocess.run(["sh", "-c", '"$@" & wait $!', "sh", sys.executable, "-c", inherited],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 passed" in proc.stdout, proc.stdout[-3000:]


def test_server_limits_concurrency_and_latency_without_losing_requests(serve):
    server = serve(latency=0.05, max_concurrency=2)
    rec, _ = client(server, concurrency=6)
    out, reqs = ask(rec, *[f"I am a fan of {t}." for t in TITLES[:12]])
    assert [r.text for r in out] == [server.answer_for(q.chat_dicts()) for q in reqs]
    assert server.max_in_flight == 2


# -- the audit, end to end --------------------------------------------------------------------

def audit(tmp_path, server: FaultServer, name: str, capsys,
          retries: int = 3, concurrency: int = 4) -> tuple[int, str, dict | None]:
    """``recaudit audit`` of a small counterfactual config (18 requests) against ``server``."""
    cfg = write_cli_config(tmp_path, f"openai:{server.url}#canned", name)
    # (the cache is shared, but the fingerprint holds the server's port: nothing is reused)
    cfg.write_text(cfg.read_text(encoding="utf-8")
                   + f"model_options: {{timeout: {TIMEOUT}, backoff: 0.001, "
                   f"max_retries: {retries}, concurrency: {concurrency}}}\n",
                   encoding="utf-8")
    capsys.readouterr()
    code = main(["audit", str(cfg), "--no-progress", "--format", "json"])
    err = capsys.readouterr().err
    path = tmp_path / name / "results.json"
    return code, err, json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def measured(result: dict) -> list:
    """Every probe's metrics and raw records (text, grounded list, error per request)."""
    return [(p["metrics"], p["records"]) for p in result["probes"]]


def test_audit_through_transient_faults_equals_a_clean_audit(tmp_path, serve, capsys,
                                                             monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    clean = serve(titles=TITLES, k=10)
    code, err, expected = audit(tmp_path, clean, "clean", capsys)
    assert code == 0 and err == "", err
    flaky = serve(titles=TITLES, k=10, seed=3, rates={
        "http_429": 0.1, "http_503": 0.1, "not_json": 0.05, "close_mid_body": 0.05,
        "hang": 0.05})
    # 7 attempts: a request fails only if all 7 draw a fault (0.35**7, about 1 in 1,600)
    code, err, result = audit(tmp_path, flaky, "flaky", capsys, retries=6)
    assert code == 0 and err == "", err
    assert flaky.faults_served >= 5  # seeded: the draw is fixed per request and attempt
    engine = result["provenance"]["engine"]
    assert engine["failed"] == 0 and engine["computed"] == 18
    # every fault costs a retry; so may an answer that came after the client's 0.4 s timeout
    # (a loaded CI machine: seen once, 15 retries for 14 faults). Every attempt reaches the
    # server, which records each: the 18 answers kept, every other attempt retried.
    assert engine["retried"] >= 1 and engine["retries"] >= flaky.faults_served
    assert engine["retries"] == sum(flaky.served.values()) - 18
    assert measured(result) == measured(expected)
    ((metrics, records),) = measured(result)
    assert metrics and len(records) == 18 and all(r["item_ids"] for r in records)
    assert KEY not in json.dumps(result)


def test_audit_with_one_request_failing_for_good_is_marked_incomplete(tmp_path, serve, capsys):
    # one at a time: the first request gets a 500 on all four attempts, the other 17 an answer
    server = serve(titles=TITLES, k=10, schedule=["http_500"] * 4)
    code, err, result = audit(tmp_path, server, "partial", capsys, concurrency=1)
    assert code == 0 and err == "", err
    (probe,) = result["probes"]
    assert probe["n_failed"] == 1 and result["provenance"]["engine"]["failed"] == 1
    warning = (f"incomplete: 1 of 18 requests failed (first: endpoint {server.url}/v1/chat/"
               "completions failed after 4 attempt(s): HTTP 500: ")
    assert any(w.startswith(warning) for w in probe["warnings"]), probe["warnings"]
    failed = [r for r in probe["records"] if r["error"]]
    assert len(failed) == 1 and failed[0]["text"] == "" and failed[0]["item_ids"] is None


def test_audit_with_a_rejected_key_exits_2_in_one_line(tmp_path, serve, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server = serve(rates={"http_401": 1.0})
    code, err, result = audit(tmp_path, server, "denied", capsys)
    assert code == 2 and result is None
    assert_one_line(err.strip())
    assert err.startswith(f"recaudit: error: endpoint {server.url}/v1/chat/completions rejected "
                          "the API key (HTTP 401); check $OPENAI_API_KEY: "), err
    assert KEY not in err
    gc.collect()  # an unclosed client's sockets would warn now (ResourceWarning is an error)
    tally.add("bad inputs")


def test_audit_whose_every_answer_is_malformed_exits_3_and_keeps_the_errors(tmp_path, serve,
                                                                           capsys):
    server = serve(rates={"truncated_json": 1.0})
    code, err, result = audit(tmp_path, server, "garbage", capsys)
    assert code == 3, err
    assert_one_line(err.strip())
    assert err.startswith("recaudit: error: all 18 model requests failed, nothing was measured "
                          f"(first: endpoint {server.url}/v1/chat/completions failed after 4 "
                          "attempt(s): malformed response: body is not JSON"), err
    assert server.served == {"truncated_json": 18 * 4}
    (probe,) = result["probes"]
    assert probe["n_failed"] == 18
    assert any(w.startswith("incomplete: 18 of 18 requests failed") for w in probe["warnings"])
    assert result["provenance"]["engine"]["retried"] == 18
    assert len(probe["records"]) == 18  # no truncated body became a text or a list
    assert all(r["text"] == "" and r["item_ids"] is None and "malformed response" in r["error"]
               for r in probe["records"])
