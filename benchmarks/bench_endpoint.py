"""Benchmark: throughput of the ``openai:`` adapter against a local server with a fixed latency.

The server (:class:`CannedServer`, no model) answers ``POST /v1/chat/completions`` with a canned
top-10 list after ``latency`` seconds, and processes at most ``limit`` requests at once (a
semaphore: the rest wait, as in a vLLM or llama.cpp server with ``limit`` slots). Requests per
second are measured at client concurrency 1, 2, 4, 8, 16 (``model_options: {concurrency: N}``),
through the adapter alone (``recommend`` on all requests) and through the engine (batches of
``batch_size``, each waiting for its slowest request). Ideal speed-up over concurrency 1:
``min(c, limit)``; efficiency = measured / ideal.

    python benchmarks/bench_endpoint.py [--latency 0.05] [--limit 8] [--requests 64] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONCURRENCIES = (1, 2, 4, 8, 16)
ANSWER = "\n".join(f"{i}. Movie {i} (199{i % 10})" for i in range(1, 11))


class CannedServer:
    """OpenAI-compatible server on 127.0.0.1 (random port) with a fixed per-request latency.

    At most ``limit`` requests are served at once; ``max_in_flight`` is the most that were.
    """

    def __init__(self, latency: float = 0.05, limit: int = 8) -> None:
        self.latency = latency
        self.slots = threading.BoundedSemaphore(limit)
        self.limit = limit
        self.in_flight = self.max_in_flight = self.served = 0
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
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server.slots:
                    with server._lock:
                        server.in_flight += 1
                        server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    time.sleep(server.latency)
                    with server._lock:
                        server.in_flight -= 1
                        server.served += 1
                self._send({"id": "x", "object": "chat.completion", "model": "canned",
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": ANSWER}}],
                            "usage": {"prompt_tokens": 20, "completion_tokens": 60}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "CannedServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset_peak(self) -> None:
        with self._lock:
            self.max_in_flight = self.in_flight


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
        batch_size: int = 16) -> list[dict]:
    """Rows {what, value, unit, note}: requests/s per concurrency and speed-up over 1."""
    n = n_requests or (32 if quick else 64)
    repeats = 1 if quick else 3
    rows: list[dict] = []
    with CannedServer(latency, limit) as server:
        for via_engine in (False, True):
            path = f"engine (batch_size {batch_size})" if via_engine else "adapter"
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
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--limit", type=int, default=8, help="requests the server serves at once")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16, help="engine batch size")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for row in run(args.quick, args.latency, args.limit, args.requests, args.batch_size):
        print(f"{row['what']:44s} {row['value']:6.2f} {row['unit']}   {row['note']}")


if __name__ == "__main__":
    main()
