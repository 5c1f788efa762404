"""Load: the engine with the openai adapter holds 1,000 queued requests against a slow, faulty
server (10% 429/5xx, 1% hung, seeded), finishes all of them, loses none, keeps memory and
threads bounded, and reports the retried ones (``EngineStats.retried`` / ``retries``).
"""

from __future__ import annotations

import threading
import tracemalloc

from recaudit.engine import Engine, ResponseCache
from recaudit.recommenders.base import Decoding, Request
from recaudit.recommenders.openai import OpenAIRecommender
from tests.reliability import tally
from tests.reliability.fault_server import FaultServer

N = 1000
CONCURRENCY = 32
# 10% of attempts get 429/500/503, 1% hang (the client gives up on those after TIMEOUT)
RATES = {"http_429": 0.04, "http_500": 0.03, "http_503": 0.03, "hang": 0.01}
TIMEOUT = 0.75
# Peak Python allocation while the engine runs (tracemalloc, both sides of the socket). What
# must be held: 1,000 requests, responses and answers of a few hundred bytes each, in the
# engine's dicts, plus one batch of HTTP buffers: measured 4.6 MiB. 32 MiB leaves room
# for allocator noise yet fails if every attempt's body were kept or a buffer per queued
# request were allocated up front (64 KiB x 1,000 = 62 MiB).
PEAK_BYTES = 32 * 2**20


class _ThreadPeak:
    """Samples ``threading.active_count()`` every 20 ms until stopped."""

    def __init__(self) -> None:
        self.peak = threading.active_count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, threading.active_count())

    def __enter__(self) -> "_ThreadPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_thousand_requests_through_a_slow_faulty_endpoint(tmp_path):
    requests = [Request.from_prompt(f"I am user {i}. Recommend 5 movies.", k=5)
                for i in range(N)]
    server = FaultServer(latency=0.003, max_concurrency=CONCURRENCY, rates=RATES, seed=7,
                         hang_s=30.0).start()
    rec = OpenAIRecommender(server.url, "canned", Decoding(max_new_tokens=64),
                            concurrency=CONCURRENCY, timeout=TIMEOUT, max_retries=8,
                            backoff=0.01)
    engine = Engine(rec, None, cache_path=tmp_path / "cache.sqlite", batch_size=4 * CONCURRENCY,
                    progress=False)
    threads_before = threading.active_count()
    tracemalloc.start()
    try:
        with _ThreadPeak() as threads:
            answers = engine.run(requests)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        engine.close()
        rec.close()
        server.stop()
    tally.add("faults injected", server.faults_served)

    # all finished, none lost, each the answer to its own request
    assert len(answers) == N
    wrong = [r.prompt for r in requests
             if answers[r.key()].response.text != server.answer_for(r.chat_dicts())]
    assert wrong == [], f"{len(wrong)} answers do not match their request, e.g. {wrong[:3]}"
    assert all(a.response.error is None and not a.cached for a in answers.values())
    cache = ResponseCache(tmp_path / "cache.sqlite")
    assert cache.count(rec.fingerprint()) == N
    cache.close()

    # the faults happened at the stated rates; every attempt the server saw beyond the first of
    # each request is counted as a retry (a busy machine may also time out a normal answer, or
    # lose an attempt in transport before the server sees it: up to 1% more)
    attempts = sum(server.served.values())
    assert 0.07 * attempts <= server.faults_served - server.served["hang"] <= 0.13 * attempts
    assert 1 <= server.served["hang"] <= 0.02 * attempts
    stats = engine.stats.to_dict()
    assert stats["computed"] == N and stats["failed"] == 0
    assert server.served["ok"] >= N and stats["retries"] >= server.faults_served
    assert attempts - N <= stats["retries"] <= attempts - N + N // 100
    print(f"\n{N} requests: {attempts} attempts served ({dict(server.served)}), "
          f"{stats['retried']} retried, {stats['retries']} retries, peak "
          f"{peak / 2**20:.1f} MiB traced, {threads.peak - threads_before} extra threads at peak")
    retried = sum(a.response.meta["attempts"] > 1 for a in answers.values())
    assert stats["retried"] == retried and 0.05 * N <= retried <= stats["retries"]

    # bounded: server slots, memory, threads (a thread per queued request would be 1,000+)
    assert server.max_in_flight <= CONCURRENCY
    assert peak < PEAK_BYTES, f"peak Python allocation {peak / 2**20:.1f} MiB"
    hung = server.served["hang"]
    # client workers + server handlers (one per open connection, and each hung one)
    assert threads.peak <= threads_before + 2 * CONCURRENCY + hung + 16, threads.peak
    assert not [t for t in threading.enumerate() if "process_request" in t.name]
