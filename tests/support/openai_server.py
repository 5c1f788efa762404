"""A small OpenAI-compatible server on 127.0.0.1, backed by a real transformers causal LM.

Serves ``POST /v1/chat/completions`` and ``GET /v1/models`` from a ``ThreadingHTTPServer`` in a
daemon thread on a random free port. Generation runs the model for real (greedy unless
``temperature > 0``), one request at a time under a lock; requests are *accepted* concurrently,
so ``max_in_flight`` measures the client's concurrency.

Fault injection: :meth:`OpenAIServer.set_faults` takes a list consumed one entry per chat request,
in arrival order (``None`` = serve normally). Entries:

* ``{"status": 429, "retry_after": "0.2"}`` -- an error status, optional ``Retry-After`` header;
* ``{"sleep": 3.0}`` -- wait that long before answering (past the client's timeout);
* ``"malformed"`` -- HTTP 200 with a body that is not JSON;
* ``"no_choices"`` -- HTTP 200 with valid JSON lacking ``choices``;
* ``"drop"`` -- close the connection without answering.

Every chat request is recorded in :attr:`OpenAIServer.requests` (headers, JSON body, fault).

Usage::

    with OpenAIServer(model_dir, model_name="tiny") as server:
        rec = OpenAIRecommender(server.url, "tiny")
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class SeenRequest:
    path: str
    headers: dict[str, str]
    body: Any
    fault: Any
    t_start: float
    t_end: float = 0.0


@dataclass
class _State:
    faults: list[Any] = field(default_factory=list)
    requests: list[SeenRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    epoch: int = 0  # bumped by reset(): a request from before it never counts after it
    lock: threading.Lock = field(default_factory=threading.Lock)


class OpenAIServer:
    """OpenAI-compatible test server.

    Parameters
    ----------
    model_dir
        A directory loadable with ``AutoModelForCausalLM.from_pretrained`` (plus ``gguf_file``).
    model_name
        The model id served by ``/v1/models`` and echoed in responses.
    gguf_file
        File name of a GGUF checkpoint inside ``model_dir``, if any.
    hold
        Seconds each chat request waits (outside the model lock) before generating, so that
        concurrent requests overlap and ``max_in_flight`` is meaningful.
    max_tokens_cap
        Upper bound on generated tokens, whatever the client asks (keeps tests fast).
    created, owned_by
        Values served by ``/v1/models``.
    """

    def __init__(self, model_dir: str | Path, *, model_name: str = "tiny",
                 gguf_file: str | None = None, hold: float = 0.0, max_tokens_cap: int = 16,
                 created: int = 1_700_000_000, owned_by: str = "recaudit-tests") -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), **kwargs)
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
        self.model.eval()
        self.model_name = model_name
        self.hold = hold
        self.max_tokens_cap = max_tokens_cap
        self.created = created
        self.owned_by = owned_by
        self.models_body: Any = None  # override the /v1/models body (tolerance tests)
        self._state = _State()
        self._model_lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> "OpenAIServer":
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> "OpenAIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- fault injection and records ------------------------------------------------------------

    def set_faults(self, faults: list[Any]) -> None:
        with self._state.lock:
            self._state.faults = list(faults)

    def reset(self) -> None:
        """Forget recorded requests, pending faults and the in-flight maximum."""
        with self._state.lock:
            self._state.faults = []
            self._state.requests = []
            self._state.in_flight = 0
            self._state.max_in_flight = 0
            self._state.epoch += 1
        self.hold = 0.0
        self.models_body = None

    @property
    def requests(self) -> list[SeenRequest]:
        with self._state.lock:
            return list(self._state.requests)

    @property
    def max_in_flight(self) -> int:
        return self._state.max_in_flight

    def _next_fault(self) -> Any:
        with self._state.lock:
            return self._state.faults.pop(0) if self._state.faults else None

    # -- generation ---------------------------------------------------------------------------

    def generate(self, messages: list[dict[str, str]], max_tokens: int, temperature: float,
                 seed: int) -> tuple[str, int, int, str]:
        """Run the model; return (text, prompt_tokens, completion_tokens, finish_reason)."""
        import torch

        max_new = max(1, min(int(max_tokens), self.max_tokens_cap))
        with self._model_lock:
            enc = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
            n_prompt = int(enc["input_ids"].shape[1])
            torch.manual_seed(int(seed))
            do_sample = float(temperature) > 0
            gen_kwargs: dict[str, Any] = {"max_new_tokens": max_new, "do_sample": do_sample,
                                          "pad_token_id": self.tokenizer.pad_token_id
                                          if self.tokenizer.pad_token_id is not None
                                          else self.tokenizer.eos_token_id}
            if do_sample:
                gen_kwargs["temperature"] = float(temperature)
            else:
                gen_kwargs.update(temperature=None, top_p=None, top_k=None)
            with torch.no_grad():
                out = self.model.generate(**enc, **gen_kwargs)
            new = out[0, n_prompt:]
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            n_out = int(new.shape[0])
        finish = "length" if n_out >= max_new else "stop"
        return text, n_prompt, n_out, finish


def _make_handler(server: OpenAIServer) -> type[BaseHTTPRequestHandler]:
    state = server._state

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # TCP_NODELAY: no delayed-ACK wait per keep-alive reply

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- silence
            pass

        def _send(self, status: int, body: bytes | str, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> None:
            data = body.encode("utf-8") if isinstance(body, str) else body
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
                self.close_connection = True

        def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(obj), headers)

        def do_GET(self) -> None:  # noqa: N802
            if self.path.rstrip("/") == "/v1/models":
                body = server.models_body if server.models_body is not None else {
                    "object": "list",
                    "data": [{"id": server.model_name, "object": "model",
                              "created": server.created, "owned_by": server.owned_by}]}
                if isinstance(body, (bytes, str)):
                    self._send(200, body)
                else:
                    self._json(200, body)
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            fault = server._next_fault()
            seen = SeenRequest(self.path, {k.lower(): v for k, v in self.headers.items()},
                               body, fault, time.monotonic())
            with state.lock:
                state.requests.append(seen)
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                epoch = state.epoch
            try:
                self._chat(body, fault)
            finally:
                seen.t_end = time.monotonic()
                with state.lock:
                    # a request still running at a reset() (an earlier test's slow or hung
                    # connection) must not drive the new count below zero
                    if state.epoch == epoch:
                        state.in_flight -= 1

        def _chat(self, body: Any, fault: Any) -> None:
            if server.hold:
                server._stopping.wait(server.hold)
            if isinstance(fault, dict) and "sleep" in fault:
                server._stopping.wait(float(fault["sleep"]))
            elif isinstance(fault, dict) and "status" in fault:
                headers = {}
                if fault.get("retry_after") is not None:
                    headers["Retry-After"] = str(fault["retry_after"])
                self._json(int(fault["status"]), {"error": {"message": "injected fault",
                                                            "code": fault["status"]}}, headers)
                return
            elif fault == "malformed":
                self._send(200, '{"id": "chatcmpl-x", "choices": [{"message": ')
                return
            elif fault == "no_choices":
                self._json(200, {"id": "chatcmpl-x", "object": "chat.completion"})
                return
            elif fault == "drop":
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                self._json(400, {"error": {"message": "messages required"}})
                return
            if body.get("model") != server.model_name:
                self._json(404, {"error": {"message": f"model {body.get('model')!r} not found"}})
                return
            text, n_prompt, n_out, finish = server.generate(
                body["messages"], body.get("max_tokens") or 16,
                body.get("temperature") or 0.0, body.get("seed") or 0)
            self._json(200, {
                "id": f"chatcmpl-{len(state.requests)}", "object": "chat.completion",
                "created": int(time.time()), "model": server.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": finish}],
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_out,
                          "total_tokens": n_prompt + n_out}})

    return Handler


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
