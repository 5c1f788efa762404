"""The ``openai:`` adapter streams: no batch barrier, an AIMD window, achieved concurrency.

An in-memory transport (``httpx.MockTransport``) plays the server; its handler runs in the
adapter's worker threads, so it can hold a request until something else has happened. Every
wait below has a generous limit that only turns a hang into a failure: nothing asserts speed.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import httpx
import pytest

from recaudit.engine import Engine
from recaudit.recommenders.base import Decoding, Request
from recaudit.recommenders.openai import DEFAULT_CONCURRENCY, OpenAIRecommender, _Window

GUARD_S = 10.0  # the longest any handler waits for a condition before it gives up


def _ok(prompt: str) -> httpx.Response:
    return httpx.Response(200, json={"choices": [{"message": {"content": f"1. {prompt}"}}],
                                     "usage": {"prompt_tokens": 5, "completion_tokens": 3}})


def _prompt(request: httpx.Request) -> str:
    return json.loads(request.content)["messages"][-1]["content"]


class Tracker:
    """Counts requests in flight at the transport, and their peak."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = self.peak = self.sent = 0

    def enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.sent += 1
            self.peak = max(self.peak, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1


def _adapter(handler, concurrency: int, **kw) -> OpenAIRecommender:
    kw.setdefault("max_retries", 3)
    kw.setdefault("backoff", 0.001)
    rec = OpenAIRecommender("http://endpoint.test", "m", Decoding(max_new_tokens=8),
                            api_key_env="", concurrency=concurrency,
                            transport=httpx.MockTransport(handler), **kw)
    rec._sleep = lambda s: None  # backoff waits: none (the window, not the sleep, is tested)
    return rec


def _requests(n: int) -> list[Request]:
    return [Request.from_prompt(f"fast {i}") for i in range(n)]


def test_the_default_concurrency_suits_a_serving_engine():
    rec = OpenAIRecommender("http://endpoint.test", "m", api_key_env="")
    try:
        assert rec.streams is True
        assert rec.concurrency == DEFAULT_CONCURRENCY == 32
    finally:
        rec.close()


def test_no_barrier_later_requests_start_and_are_cached_while_a_slow_one_is_pending(tmp_path):
    """One request is held until every other answer of the audit is in the cache file.

    With batches (engine batch_size 2) the slow request's batch would hold back every later
    batch, so the others could never all land while it is pending: the hold would time out.
    """
    n = 13
    cache = tmp_path / "c.sqlite"
    seen: dict[str, object] = {}

    def rows() -> int:
        with sqlite3.connect(cache, timeout=30) as db:  # a reader of its own, as another process
            return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def handler(request: httpx.Request) -> httpx.Response:
        prompt = _prompt(request)
        if prompt == "slow":
            deadline = time.monotonic() + GUARD_S
            while rows() < n - 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            seen["rows while slow pending"] = rows()
        return _ok(prompt)

    rec = _adapter(handler, concurrency=4)
    eng = Engine(rec, cache_path=cache, batch_size=2, progress=False)
    try:
        answers = eng.run([Request.from_prompt("slow")] + _requests(n - 1))
    finally:
        eng.close()
        rec.close()
    assert seen["rows while slow pending"] == n - 1  # all others answered and cached first
    assert len(answers) == n and all(a.ok for a in answers.values())
    assert rows() == n


def test_engine_batch_size_no_longer_limits_an_endpoints_requests_in_flight(tmp_path):
    """The first four requests only answer once four are in flight together (batch_size 1)."""
    tracker = Tracker()
    together = threading.Barrier(4, timeout=GUARD_S)
    broken: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tracker.enter()
        try:
            if _prompt(request) in {f"fast {i}" for i in range(4)}:
                try:
                    together.wait()
                except threading.BrokenBarrierError:
                    broken.append(_prompt(request))
            return _ok(_prompt(request))
        finally:
            tracker.leave()

    rec = _adapter(handler, concurrency=4)
    eng = Engine(rec, cache_path=tmp_path / "c.sqlite", batch_size=1, progress=False)
    try:
        answers = eng.run(_requests(10))
    finally:
        eng.close()
        rec.close()
    assert not broken and tracker.peak == 4
    assert len(answers) == 10 and all(a.ok for a in answers.values())
    conc = eng.stats.to_dict()["concurrency"]  # what the engine reports it achieved
    assert conc["limit"] == 4 and conc["max_in_flight"] == 4
    assert 0 < conc["mean_in_flight"] <= 4 and conc["window"] == 4 and conc["backoffs"] == 0
    assert "max 4 of 4" in eng.stats.concurrency_line()


def test_a_429_round_halves_the_window_once_and_answers_grow_it_back():
    """All 8 first attempts get 429 together: one halving (8 -> 4), then 22 answers refill it."""
    tracker = Tracker()
    together = threading.Barrier(8, timeout=GUARD_S)
    first_round: set[str] = set()
    peak_after_429: list[int] = []
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        prompt = _prompt(request)
        tracker.enter()
        try:
            with lock:
                first = prompt not in first_round and len(first_round) < 8
                if first:
                    first_round.add(prompt)
                elif len(peak_after_429) < 6:  # the first retries/new requests after the 429s
                    peak_after_429.append(tracker.in_flight)
            if first:
                together.wait()
                return httpx.Response(429, text="slow down")
            return _ok(prompt)
        finally:
            tracker.leave()

    rec = _adapter(handler, concurrency=8)
    try:
        out = rec.recommend(_requests(60))
        stats = rec.stream_stats()
    finally:
        rec.close()
    assert all(r.error is None for r in out)
    assert sum(r.meta["attempts"] == 2 for r in out) == 8  # the 429s were retried
    assert tracker.peak == 8 and max(peak_after_429) <= 4  # the window was halved ...
    assert stats["backoffs"] == 1 and stats["min_window"] == 4  # ... once, not 8 times
    assert stats["window"] == 8 and stats["max_in_flight"] == 8  # ... and grew back


def test_window_aimd_rules():
    """Multiplicative decrease once per round, not below 1; additive increase 1/window."""
    abort = threading.Event()
    w = _Window(8)
    epochs = [w.acquire(abort, None) for _ in range(8)]
    assert w.in_flight == 8 and set(epochs) == {0}
    for e in epochs:  # eight 429s of one round
        w.release(e, answered=False, overloaded=True)
    assert w.window == 4 and w.epoch == 1
    for _ in range(4):  # a 429 of the new round halves again, down to 1 at least
        w.release(w.acquire(abort, None), answered=False, overloaded=True)
    assert w.window == 1 and w.backoffs == 5 and w.min_window == 1
    w.release(w.acquire(abort, None), answered=True, overloaded=False)
    assert w.window == 2
    while w.window < 8:
        w.release(w.acquire(abort, None), answered=True, overloaded=False)
    w.release(w.acquire(abort, None), answered=True, overloaded=False)
    assert w.window == 8  # capped at the limit


def test_a_full_window_blocks_until_a_slot_frees_and_abort_wakes_waiters():
    abort = threading.Event()
    w = _Window(2)
    w.window = 1.0
    first = w.acquire(abort, None)
    got: list[int | None] = []
    waiter = threading.Thread(target=lambda: got.append(w.acquire(abort, None)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and not got  # one slot, taken: it waits
    w.release(first, answered=False, overloaded=False)  # a 500, say: the window stays 1
    waiter.join(GUARD_S)
    assert got == [0] and w.window == 1
    stuck = threading.Thread(target=lambda: got.append(w.acquire(abort, None)))
    stuck.start()
    abort.set()
    w.wake()
    stuck.join(GUARD_S)
    assert not stuck.is_alive() and got[-1] is None


def test_retry_after_holds_new_attempts_but_not_its_own_retry():
    abort = threading.Event()
    w = _Window(4)
    owner = object()
    w.hold(0.3, owner)
    t0 = time.monotonic()
    assert w.acquire(abort, owner) is not None and time.monotonic() - t0 < 0.3
    w.acquire(abort, object())
    assert time.monotonic() - t0 >= 0.25  # another request waited for the Retry-After


def test_overload_with_retry_after_is_honoured_by_the_stream():
    """A 503 with Retry-After: its retry waits that long (the hook records it); window halves."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(_prompt(request))
        if len(calls) == 1:
            return httpx.Response(503, headers={"Retry-After": "0.2"}, text="busy")
        return _ok(_prompt(request))

    rec = _adapter(handler, concurrency=1)
    delays: list[float] = []
    rec._sleep = delays.append
    try:
        out = rec.recommend(_requests(3))
        stats = rec.stream_stats()
    finally:
        rec.close()
    assert all(r.error is None for r in out) and delays == [0.2]
    assert stats["backoffs"] == 1 and stats["limit"] == 1 and stats["window"] == 1


def test_closing_the_stream_stops_the_workers_promptly():
    """Ctrl-C in the engine closes the stream: requests not yet sent are never sent."""
    tracker = Tracker()
    release = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        tracker.enter()
        try:
            if _prompt(request) != "fast 0":
                release.wait(GUARD_S)
            return _ok(_prompt(request))
        finally:
            tracker.leave()

    rec = _adapter(handler, concurrency=2)
    try:
        stream = rec.recommend_each(_requests(50))
        first = next(stream)
        release.set()
        stream.close()
    finally:
        rec.close()
    assert first[1].error is None
    assert tracker.sent <= 4  # the window's two slots and at most the two that followed
    assert not any(t.name.startswith("recaudit-openai") for t in threading.enumerate())


@pytest.mark.parametrize("concurrency", [1, 3])
def test_requests_in_flight_never_exceed_the_window(concurrency):
    tracker = Tracker()

    def handler(request: httpx.Request) -> httpx.Response:
        tracker.enter()
        try:
            time.sleep(0.005)
            return _ok(_prompt(request))
        finally:
            tracker.leave()

    rec = _adapter(handler, concurrency=concurrency)
    try:
        out = rec.recommend(_requests(24))
        stats = rec.stream_stats()
    finally:
        rec.close()
    assert all(r.error is None for r in out) and len(out) == 24
    assert tracker.peak <= concurrency and stats["max_in_flight"] <= concurrency


def test_an_audits_results_record_the_concurrency_its_endpoint_achieved(tmp_path, capsys):
    """``recaudit audit`` via openai: 18 requests, one 429 -> provenance.engine.concurrency."""
    from recaudit.cli import main
    from tests.gate_recommenders import TITLES, write_cli_config
    from tests.reliability.fault_server import FaultServer

    server = FaultServer(titles=TITLES, k=10, schedule=["http_429"]).start()
    try:
        cfg = write_cli_config(tmp_path, f"openai:{server.url}#canned", "streamed")
        cfg.write_text(cfg.read_text(encoding="utf-8") + "model_options: {timeout: 5, "
                       "backoff: 0.001, max_retries: 3, concurrency: 4}\n", encoding="utf-8")
        code = main(["audit", str(cfg), "--no-progress", "--format", "json"])
    finally:
        server.stop()
    capsys.readouterr()
    assert code == 0
    engine = json.loads((tmp_path / "streamed" / "results.json").read_text(encoding="utf-8")
                        )["provenance"]["engine"]
    conc = engine["concurrency"]
    assert conc["limit"] == 4 and 1 <= conc["max_in_flight"] <= 4
    assert conc["backoffs"] == 1 and conc["min_window"] == 2 and engine["retried"] == 1
    assert 0 < conc["mean_in_flight"] <= 4 and conc["seconds"] > 0
