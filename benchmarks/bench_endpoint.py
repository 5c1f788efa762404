"""Benchmark: throughput of the ``openai:`` adapter against a local server with canned latencies.

The server (:class:`CannedServer`, no model) answers ``POST /v1/chat/completions`` with a canned
top-10 list after ``latency`` seconds, and processes at most ``limit`` requests at once (a
semaphore: the rest wait, as in a vLLM or llama.cpp server with ``limit`` slots).

* **Equal latencies**: requests per second at client concurrency 1, 2, 4, 8, 16
  (``model_options: {concurrency: N}``), through the adapter alone (``recommend`` on all
  requests) and through the engine (which streams every request to the adapter). Ideal
  speed-up over concurrency 1: ``min(c, limit)``; efficiency = measured / ideal.
* **Uneven latencies** (:func:`uneven_rows`): a server with 32 slots where every fourth request
  takes ``slow`` seconds instead of ``fast`` (default 1.0 s vs 0.1 s). Its ceiling is
  ``slots / mean latency`` requests per second (mean latency measured at the server). Side by
  side in one run, through the engine: the old batched path (the engine cuts batches of 16 and
  each waits for its slowest request: ``streams`` switched off; at the old default concurrency
  4 and at 32) and the streaming path at concurrency 32. Target: streaming at 32 reaches >= 80%
  of the ceiling.

    python benchmarks/bench_endpoint.py [--latency 0.05] [--limit 8] [--requests 64] [--quick]
        [--only equal|uneven]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONCURRENCIES = (1, 2, 4, 8, 16)
ANSWER = "\n".join(f"{i}. Movie {i} (199{i % 10})" for i in range(1, 11))


class _Listener(ThreadingHTTPServer):
    request_queue_size = 256  # listen backlog: 32+ clients connect at once (default 5)


class CannedServer:
    """OpenAI-compatible server on 127.0.0.1 (random port) with canned per-request latencies.

    At most ``limit`` requests are served at once; ``max_in_flight`` is the most that were.
    Every request takes ``latency`` seconds, or ``slow_latency`` when given for a prompt whose
    number (the ``N`` of ``[tag N]``) is ``slow_every - 1`` modulo ``slow_every``.
    ``service_seconds`` sums the latencies served (mean latency = it / ``served``).
    """

    def __init__(self, latency: float = 0.05, limit: int = 8, slow_latency: float | None = None,
                 slow_every: int = 4) -> None:
        self.latency = latency
        self.slow_latency = slow_latency
        self.slow_every = slow_every
        self.slots = threading.BoundedSemaphore(limit)
        self.limit = limit
        self.in_flight = self.max_in_flight = self.served = 0
        self.service_seconds = 0.0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers
            disable_nagle_algorithm = True  # TCP_NODELAY, as real servers (else +40 ms/request)

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send({"object": "list", "data": [{"id": "canned", "object": "model"}]})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                latency = server.latency_of(body)
                with server.slots:
                    with server._lock:
                        server.in_flight += 1
                        server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    time.sleep(latency)
                    with server._lock:
                        server.in_flight -= 1
                        server.served += 1
                        server.service_seconds += latency
                self._send({"id": "x", "object": "chat.completion", "model": "canned",
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": ANSWER}}],
                            "usage": {"prompt_tokens": 20, "completion_tokens": 60}})

        self.httpd = _Listener(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "CannedServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def latency_of(self, body: bytes) -> float:
        """Seconds this request takes: ``slow_latency`` for every ``slow_every``-th prompt."""
        if self.slow_latency is None:
            return self.latency
        match = _NUMBER.search(body.decode("utf-8", "replace"))
        slow = match is not None and int(match.group(1)) % self.slow_every == self.slow_every - 1
        return self.slow_latency if slow else self.latency

    def reset_peak(self) -> None:
        with self._lock:
            self.max_in_flight = self.in_flight
            self.served, self.service_seconds = 0, 0.0


_NUMBER = re.compile(r"\[[^\]]* (\d+)\]")


def _requests(n: int, tag: str):
    from recaudit.recommenders.base import Request

    return [Request.from_prompt(f"[{tag} {i}] I am a fan of Heat. Recommend 10 movies.", k=10)
            for i in range(n)]


def _adapter(url: str, concurrency: int):
    from recaudit.recommenders.base import Decoding
    from recaudit.recommenders.openai import OpenAIRecommender

    return OpenAIRecommender(url, "canned", Decoding(max_new_tokens=64), api_key_env="",
                             concurrency=concurrency, max_retries=0, timeout=30.0)


def measure(server: CannedServer, concurrency: int, n: int, via_engine: bool,
            batch_size: int, repeats: int) -> tuple[float, int]:
    """(best requests/s over ``repeats``, peak requests in flight at the server)."""
    from recaudit.engine import Engine

    best, peak = 0.0, 0
    with _adapter(server.url, concurrency) as rec, tempfile.TemporaryDirectory() as tmp:
        rec.recommend(_requests(concurrency, "warm-up"))  # open the connections
        engine = Engine(rec, None, cache_path=Path(tmp) / "cache.sqlite", batch_size=batch_size,
                        progress=False) if via_engine else None
        for rep in range(repeats):
            reqs = _requests(n, f"c{concurrency} e{via_engine} r{rep}")  # never cached
            server.reset_peak()
            t0 = time.perf_counter()
            if engine is not None:
                responses = [a.response for a in engine.run(reqs).values()]
            else:
                responses = rec.recommend(reqs)
            dt = time.perf_counter() - t0
            failed = sum(r.error is not None for r in responses)
            if failed or len(responses) != n:
                raise RuntimeError(f"{failed} of {n} requests failed at concurrency {concurrency}")
            best, peak = max(best, n / dt), max(peak, server.max_in_flight)
        if engine is not None:
            engine.close()
    return best, peak


def run(quick: bool = False, latency: float = 0.05, limit: int = 8, n_requests: int | None = None,
        batch_size: int = 16, uneven: bool = True) -> list[dict]:
    """Rows {what, value, unit, note}: requests/s per concurrency and speed-up over 1.

    Then (``uneven``) :func:`uneven_rows`: old batched vs streaming against uneven latencies.
    """
    n = n_requests or (32 if quick else 64)
    repeats = 1 if quick else 3
    rows: list[dict] = []
    with CannedServer(latency, limit) as server:
        for via_engine in (False, True):
            path = "engine (streaming)" if via_engine else "adapter"
            base = None
            for c in CONCURRENCIES:
                rps, peak = measure(server, c, n, via_engine, batch_size, repeats)
                base = base or rps
                ideal = min(c, limit)
                rows.append({
                    "what": f"openai: {path}, concurrency {c}",
                    "value": round(rps / base, 2), "unit": "x vs concurrency 1",
                    "note": f"{rps:.1f} req/s; ideal {ideal}x (server limit {limit}, "
                            f"{latency * 1e3:g} ms/request); efficiency {rps / base / ideal:.0%}; "
                            f"peak in flight {peak}; {n} requests, best of {repeats}"})
    return rows + (uneven_rows(quick) if uneven else [])


def measure_uneven(server: CannedServer, concurrency: int, n: int, streaming: bool,
                   batch_size: int = 16) -> dict:
    """One engine run of ``n`` fresh requests: req/s, server mean latency, client concurrency.

    ``streaming`` False switches the adapter's ``streams`` off, so the engine cuts batches of
    ``batch_size`` and each waits for its slowest request (the path before streaming).
    """
    from recaudit.engine import Engine

    with _adapter(server.url, concurrency) as rec, tempfile.TemporaryDirectory() as tmp:
        rec.streams = streaming
        rec.recommend(_requests(concurrency, "warm-up"))  # open the connections
        engine = Engine(rec, None, cache_path=Path(tmp) / "cache.sqlite", batch_size=batch_size,
                        progress=False)
        reqs = _requests(n, f"c{concurrency} s{streaming}")  # never cached
        server.reset_peak()
        t0 = time.perf_counter()
        responses = [a.response for a in engine.run(reqs).values()]
        dt = time.perf_counter() - t0
        conc = engine.stats.concurrency or {}
        engine.close()
    failed = sum(r.error is not None for r in responses)
    if failed or len(responses) != n:
        raise RuntimeError(f"{failed} of {n} requests failed at concurrency {concurrency}")
    return {"rps": n / dt, "seconds": dt, "mean_latency": server.service_seconds / server.served,
            "peak": server.max_in_flight, "mean_in_flight": conc.get("mean_in_flight"),
            "window": conc.get("window")}


def uneven_rows(quick: bool = False, fast: float = 0.1, slow: float = 1.0, slots: int = 32
                ) -> list[dict]:
    """Rows: % of the uneven server's ceiling, old batched (c 4, c 32) vs streaming (c 32).

    Ceiling = ``slots`` / mean latency (the latencies the server served in that run). The
    streaming run has enough requests (512, about 5 s) that the last slow requests' tail is a
    small part of it; the batched runs, whose rate does not depend on their length, take 128
    (64 with ``quick``).
    """
    n_stream, n_batched = 512, (64 if quick else 128)
    rows: list[dict] = []
    with CannedServer(fast, slots, slow_latency=slow) as server:
        for label, c, streaming, n in (("old: batches of 16, concurrency 4", 4, False, n_batched),
                                       ("old: batches of 16, concurrency 32", 32, False,
                                        n_batched),
                                       ("new: streaming, concurrency 32", 32, True, n_stream)):
            m = measure_uneven(server, c, n, streaming)
            ceiling = slots / m["mean_latency"]
            row = {"what": f"openai: uneven latencies, {label}",
                   "value": round(100 * m["rps"] / ceiling, 1), "unit": "% of server ceiling",
                   "note": f"{m['rps']:.1f} req/s of {ceiling:.1f} ({slots} slots / "
                           f"{m['mean_latency'] * 1e3:.0f} ms mean; a quarter {slow * 1e3:g} ms, "
                           f"the rest {fast * 1e3:g} ms); mean in flight {m['mean_in_flight']}, "
                           f"peak at server {m['peak']}; {n} requests in {m['seconds']:.1f} s"}
            if streaming:
                row["key"] = "endpoint_uneven_ceiling"
                row["note"] += "; target >= 80%"
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--limit", type=int, default=8, help="requests the server serves at once")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16, help="engine batch size")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("equal", "uneven"), default=None)
    args = parser.parse_args()
    rows: list[dict] = []
    if args.only != "uneven":
        rows += run(args.quick, args.latency, args.limit, args.requests, args.batch_size,
                    uneven=False)
    if args.only != "equal":
        rows += uneven_rows(args.quick)
    for row in rows:
        print(f"{row['what']:60s} {row['value']:6.1f} {row['unit']}   {row['note']}")


if __name__ == "__main__":
    main()
