"""A model-free OpenAI-compatible server on 127.0.0.1 that injects faults, for reliability tests.

``POST /v1/chat/completions`` answers a canned, deterministic numbered list of titles derived
from the request's messages (:func:`canned_answer`); ``GET /v1/models`` lists the one model.
A ``ThreadingHTTPServer`` runs in a thread on a free port of 127.0.0.1 only.

Each chat request gets at most one fault (:data:`FAULTS`), chosen by, in this order:

* ``schedule``: a list consumed one entry per chat request in arrival order (``None`` = serve);
* ``rates``: ``{fault: probability}`` drawn from ``random.Random(f"{seed}:{digest}:{attempt}")``
  where ``digest`` is the sha256 of the messages and ``attempt`` counts how often the server has
  seen them, so a request's faults do not depend on thread scheduling.

``latency`` delays every answer; ``max_concurrency`` lets that many requests be answered at
once (others queue, like a server with that many slots). Everything is bounded: a ``hang``
waits for :meth:`FaultServer.stop` (at most ``hang_s``), ``slow`` answers after ``slow_s``, and
:meth:`~FaultServer.stop` shuts open connections so every handler thread ends.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = (
    "not_json",            # HTTP 200, an HTML page
    "truncated_json",      # HTTP 200, a valid answer cut in half
    "no_choices",          # HTTP 200, JSON without "choices"
    "empty_choices",       # "choices": []
    "no_message",          # choices[0] without "message"
    "no_content",          # message without "content"
    "content_not_string",  # "content": a list
    "deep_json",           # HTTP 200, JSON nested deeper than any parser's recursion limit
    "bad_gzip",            # HTTP 200, "Content-Encoding: gzip" on a body that is not gzip
    "huge_body",           # HTTP 200, a valid answer padded to 2 MiB of whitespace
    "http_401", "http_403", "http_404", "http_429", "http_429_retry_after",
    "http_500", "http_502", "http_503", "http_503_retry_after",
    "slow",                # answers correctly after slow_s (past the client's timeout)
    "hang",                # reads the request, never answers (until stop(), at most hang_s)
    "close_mid_body",      # Content-Length larger than the bytes sent, then close
    "trickle",             # a valid answer, one byte every trickle_s (no read ever times out)
    "not_http",            # a reply that is not HTTP at all
)
#: Faults after which a retry can succeed.
TRANSIENT = frozenset({"http_429", "http_429_retry_after", "http_500", "http_502", "http_503",
                       "http_503_retry_after", "slow", "hang", "close_mid_body", "trickle",
                       "not_http"})
#: Faults that are the server's answer, not a transport failure: the body is not a usable answer.
MALFORMED = frozenset({"not_json", "truncated_json", "no_choices", "empty_choices",
                       "no_message", "no_content", "content_not_string", "deep_json",
                       "bad_gzip"})

TITLES = ("Alpha Station", "Blue Harbor", "Cold Summit", "Desert Echo", "Ember Road",
          "Frozen Lake", "Golden Hour", "Hidden Valley", "Iron Gate", "Jade River",
          "Lost Signal", "Midnight Train", "Northern Lights", "Ocean Drive", "Quiet Storm",
          "Red Canyon", "Silver Screen", "Twelve Bridges", "Velvet Night", "Winter Garden")


def messages_digest(messages: Any) -> str:
    """sha256 of the messages as canonical JSON (the server's name for a request)."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode("utf-8")).hexdigest()


def canned_answer(messages: Any, k: int = 5, titles: tuple[str, ...] | list[str] = TITLES) -> str:
    """The answer to ``messages``: ``k`` distinct titles picked by a generator seeded with the
    messages' digest, as a numbered list (``"1. Alpha Station\\n2. ..."``)."""
    picks = random.Random(messages_digest(messages)).sample(list(titles), min(k, len(titles)))
    return "\n".join(f"{i}. {t}" for i, t in enumerate(picks, 1))


def _completion(model: str, content: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-canned", "object": "chat.completion", "created": 1_700_000_000,
            "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}}


class FaultServer:
    """OpenAI-compatible test server with per-request fault injection (see the module docstring).

    Parameters
    ----------
    model_name
        The model served; a request naming another model gets HTTP 404.
    k, titles
        Length and vocabulary of the canned lists.
    latency
        Seconds each chat answer waits (inside the concurrency limit).
    max_concurrency
        Requests answered at once; ``None`` for no limit.
    schedule, rates, seed
        Fault choice (module docstring).
    slow_s, hang_s, trickle_s, retry_after
        Delay of ``slow``; bound of ``hang``; pause between the bytes of ``trickle``; the
        ``Retry-After`` value of ``http_*_retry_after`` faults.
    """

    def __init__(self, *, model_name: str = "canned", k: int = 5,
                 titles: tuple[str, ...] | list[str] = TITLES, latency: float = 0.0,
                 max_concurrency: int | None = None, schedule: list[Any] | None = None,
                 rates: dict[str, float] | None = None, seed: int = 0, slow_s: float = 3.0,
                 hang_s: float = 60.0, trickle_s: float = 0.1, retry_after: str = "0") -> None:
        for fault in list(rates or {}) + [f for f in schedule or [] if f is not None]:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        self.model_name = model_name
        self.k = k
        self.titles = tuple(titles)
        self.latency = latency
        self.schedule = list(schedule or [])
        self.rates = dict(rates or {})
        self.seed = seed
        self.slow_s, self.hang_s, self.trickle_s = slow_s, hang_s, trickle_s
        self.retry_after = retry_after
        self.served: Counter[str] = Counter()       # fault name (or "ok") -> times served
        self.seen: Counter[str] = Counter()         # messages digest -> chat requests
        self.log: list[tuple[str, str]] = []        # (messages digest, fault or "ok")
        self.in_flight = 0
        self.max_in_flight = 0
        self._slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "FaultServer":
        self._httpd = _Server(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = False  # server_close() joins every handler thread
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name="fault-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end hung handlers, close open connections, join every thread."""
        self._stopping.set()
        if self._httpd is None:
            return
        self._httpd.shutdown()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:  # wake handlers blocked reading the next keep-alive request
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()  # joins the handler threads (block_on_close)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> "FaultServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def faults_served(self) -> int:
        """How many chat requests got a fault."""
        with self._lock:
            return sum(n for name, n in self.served.items() if name != "ok")

    def answer_for(self, messages: Any) -> str:
        return canned_answer(messages, self.k, self.titles)

    # -- fault choice ---------------------------------------------------------------------------

    def _choose(self, digest: str) -> str | None:
        with self._lock:
            self.seen[digest] += 1
            attempt = self.seen[digest]
            if self.schedule:
                return self.schedule.pop(0)
        if not self.rates:
            return None
        draw = random.Random(f"{self.seed}:{digest}:{attempt}").random()
        for fault, p in self.rates.items():
            if draw < p:
                return fault
            draw -= p
        return None

    def _record(self, digest: str, fault: str | None) -> None:
        with self._lock:
            self.served[fault or "ok"] += 1
            self.log.append((digest, fault or "ok"))


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # listen backlog (5 by default drops connections under load)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (reset, timed out) is expected here; anything else prints."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _make_handler(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # TCP_NODELAY: no delayed-ACK wait per keep-alive reply
        timeout = 30  # socket timeout: a stuck client cannot hold a handler thread forever

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- silence
            pass

        def setup(self) -> None:
            super().setup()
            with server._lock:
                server._connections.add(self.connection)

        def finish(self) -> None:
            with server._lock:
                server._connections.discard(self.connection)
            try:
                super().finish()
            except OSError:
                pass

        def _head(self, status: int, length: int, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(length))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> None:
            try:
                self._head(status, len(body), headers, content_type)
                self.wfile.write(body)
                self.wfile.flush()
            except OSError:  # the client gave up (timeout) or the server is stopping
                self.close_connection = True

        def do_GET(self) -> None:  # noqa: N802
            if self.path.rstrip("/") == "/v1/models":
                body = {"object": "list", "data": [{"id": server.model_name, "object": "model",
                                                    "created": 1_700_000_000,
                                                    "owned_by": "fault-server"}]}
                self._send(200, json.dumps(body).encode())
            else:
                self._send(404, b'{"error": {"message": "no such route"}}')

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, b'{"error": {"message": "no such route"}}')
                return
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            messages = body.get("messages") if isinstance(body, dict) else None
            digest = messages_digest(messages)
            fault = server._choose(digest)
            server._record(digest, fault)
            if fault == "hang":  # holds no slot: hung requests never starve the others
                server._stopping.wait(server.hang_s)
                self.close_connection = True
                return
            if server._slots is not None:
                server._slots.acquire()
            with server._lock:
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                if server.latency:
                    server._stopping.wait(server.latency)
                self._answer(body, messages, fault)
            finally:
                with server._lock:
                    server.in_flight -= 1
                if server._slots is not None:
                    server._slots.release()

        def _answer(self, body: Any, messages: Any, fault: str | None) -> None:
            if fault is None or fault in ("slow", "trickle"):
                if not isinstance(messages, list):
                    self._send(400, b'{"error": {"message": "messages required"}}')
                    return
                if body.get("model") != server.model_name:
                    self._send(404, b'{"error": {"message": "model not found"}}')
                    return
            ok = json.dumps(_completion(server.model_name, server.answer_for(messages))).encode()
            if fault is None:
                self._send(200, ok)
            elif fault == "slow":
                server._stopping.wait(server.slow_s)
                self._send(200, ok)
            elif fault == "close_mid_body":
                try:
                    self._head(200, len(ok))
                    self.wfile.write(ok[: len(ok) // 2])
                    self.wfile.flush()
                except OSError:
                    pass
                self.close_connection = True
            elif fault == "trickle":
                self._trickle(ok)
            elif fault == "huge_body":
                self._send(200, ok[:-1] + b" " * (2 * 2**20) + ok[-1:])
            elif fault == "bad_gzip":
                self._send(200, ok, {"Content-Encoding": "gzip"})
            elif fault == "not_http":
                try:
                    self.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    pass
                self.close_connection = True
            elif fault.startswith("http_"):
                status = int(fault.split("_")[1])
                headers = {"Retry-After": server.retry_after} if "retry_after" in fault else {}
                self._send(status, json.dumps({"error": {"message": f"injected {fault}",
                                                         "code": status}}).encode(), headers)
            else:
                self._send(200, _malformed(fault, server.model_name, ok),
                           content_type="text/html" if fault == "not_json" else
                           "application/json")

        def _trickle(self, data: bytes) -> None:
            """One byte at a time until sent or stopped: each read gets data, none times out."""
            try:
                self._head(200, len(data))
                for i in range(len(data)):
                    if server._stopping.wait(server.trickle_s):
                        break
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
            except OSError:
                pass
            self.close_connection = True

    return Handler


def _malformed(fault: str, model: str, ok: bytes) -> bytes:
    """The body of a malformed-answer fault (HTTP 200)."""
    if fault == "not_json":
        return b"<html><body>502 Bad Gateway</body></html>"
    if fault == "truncated_json":
        return ok[: len(ok) // 2]
    if fault == "deep_json":
        return b"[" * 100_000 + b"]" * 100_000
    good = _completion(model, "1. Alpha Station")
    if fault == "no_choices":
        good.pop("choices")
    elif fault == "empty_choices":
        good["choices"] = []
    elif fault == "no_message":
        good["choices"][0].pop("message")
    elif fault == "no_content":
        good["choices"][0]["message"].pop("content")
    elif fault == "content_not_string":
        good["choices"][0]["message"]["content"] = ["1. Alpha Station"]
    return json.dumps(good).encode()
