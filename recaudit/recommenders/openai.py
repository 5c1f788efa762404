"""Adapter for OpenAI-compatible chat endpoints (OpenAI, vLLM, llama.cpp server, Ollama, ...).

Each :class:`~recaudit.recommenders.base.Request` becomes one ``POST {base}/v1/chat/completions``
with ``model``, ``messages``, ``max_tokens``, ``temperature`` and ``seed`` taken from the
:class:`~recaudit.recommenders.base.Decoding`. Requests run on a thread pool sharing one
``httpx.Client``.

Streaming (``streams = True``): the engine hands the adapter every pending request at once and
the pool keeps up to ``concurrency`` of them in flight for the whole audit, starting the next
as soon as one lands, so no request waits for a slow one it happened to be batched with.
The default ``concurrency`` is 32: serving engines (vLLM, TGI, SGLang, llama.cpp server with
``--parallel``) batch the requests in flight continuously, so their throughput grows with the
requests they are given and a client with few in flight leaves them idle (against a vLLM server
of SmolLM2 on 2 CPU cores, an 88-request audit took 208.5 s at concurrency 4 and 95.2 s at 32).
A server with fewer slots queues the rest, or says 429/503, and then:

* **AIMD window**: the requests in flight are bounded by a window of slots, between 1 and
  ``concurrency`` (which it starts at). A 429 or 503 halves it (multiplicative decrease, at most
  once per round: a 429 of a request sent before the last decrease does not halve it again);
  each answered request adds ``1 / window`` slot (additive increase: one slot per window of
  answers) until it is back at ``concurrency``. A ``Retry-After`` delays that request's retry and
  holds every new attempt until it has passed. :meth:`OpenAIRecommender.stream_stats` reports
  what the last stream achieved (mean and max in flight, final and smallest window, backoffs);
  the engine stores it in ``provenance.engine.concurrency``.

Repeated samples (``decoding: {samples: N}``): N seeded requests, not one request with
``n = N``. Sample j is its own request whose ``seed`` is
:func:`~recaudit.recommenders.base.sample_seed` ``(decoding.seed, j)`` (sample 0 sends
``decoding.seed`` as before), so each sample is cached on its own (a rerun with a larger N asks
only for the new samples, a failed sample is retried alone) and servers that ignore ``n``
(llama.cpp, some vLLM and Ollama versions) still give N answers. A server that ignores ``seed``
still samples at ``temperature`` > 0; at temperature 0 the samples may or may not differ.

Failure policy (what the audit sees):

* **429 / 500 / 502 / 503 / 504, timeouts, dropped connections, a body cut short, a malformed
  body** (not JSON, nested past the parser's limit, not matching its ``Content-Encoding``,
  larger than :data:`MAX_BODY_BYTES`, or no ``choices[0].message.content``): retried up to
  ``max_retries`` times (so at most ``max_retries + 1`` attempts) with exponential backoff
  ``backoff * 2**(attempt-1)`` times a jitter factor in [0.5, 1.5), capped at 30 s. A
  ``Retry-After`` header (seconds or an HTTP date) replaces the computed delay, capped at
  120 s. ``timeout`` bounds the connection, each read, and the whole body after the headers:
  a server that trickles its answer byte by byte is cut off too.
* **Retries exhausted on a reachable endpoint**: that request's :class:`Response` gets a one-line
  ``error`` (the URL, the attempts, the last failure); the audit continues, the engine counts
  failed and retried requests, and the probe says it is incomplete. A malformed body never
  becomes an answer.
* **Unreachable endpoint** (connection refused, DNS failure, connect timeout on every attempt):
  :class:`~recaudit.errors.EndpointError` naming the URL. Pending requests are cancelled.
* **HTTP 401 / 403 / 404** (bad key, wrong URL, unknown model): :class:`EndpointError` at once
  (exit 2: "endpoint URL rejected the API key (HTTP 401)"); retrying cannot help and every other
  request would fail the same way.
* **Other 4xx** (e.g. a prompt longer than the context), and a well-formed answer whose
  ``content`` is not text (``null`` with a content filter or a tool call): ``Response.error`` for
  that request, not retried (the same request gets the same answer).

The API key is read from the environment variable named by ``api_key_env`` and sent as
``Authorization: Bearer ...``. It never appears in fingerprints, ``repr``, errors or logs (a
server echoing it in an error body is masked).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlsplit

from recaudit.errors import EndpointError, ModelSpecError
from recaudit.recommenders.base import (GENERATE, Decoding, Recommender, Request, Response,
                                       sample_seed)

ADAPTER_VERSION = "1"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Answers that say the server is overloaded: they halve the window of requests in flight.
OVERLOAD_STATUSES = frozenset({429, 503})
DEFAULT_CONCURRENCY = 32
FATAL_STATUSES = frozenset({401, 403, 404})
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 120.0
#: Largest answer body read (a chat completion is a few KiB); a larger one is malformed.
MAX_BODY_BYTES = 16 * 1024 * 1024
# /v1/models "created" values this close to the local clock are the time of the request
# (vLLM, llama.cpp server), not of the model: they are left out of the fingerprint.
CREATED_IS_NOW_WINDOW_S = 3600.0


_CREDENTIALS_RE = re.compile(r"(?<=://)[^/@\s#?]*@")


def redact_credentials(text: str) -> str:
    """``text`` with the ``user:password@`` part of any URL in it replaced by ``***@``."""
    return _CREDENTIALS_RE.sub("***@", str(text))


def normalize_base_url(base_url: str) -> str:
    """Return ``scheme://host[:port][/prefix]/v1`` for a base URL given with or without ``/v1``.

    Credentials in the URL (``http://user:key@host``) are refused: the spec is stored in
    results.json and shown in every report; the key belongs in ``$OPENAI_API_KEY``.
    """
    url = str(base_url).strip().rstrip("/")
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ModelSpecError(
            f"invalid endpoint URL {redact_credentials(url)!r}: credentials in the URL are not "
            "accepted (the spec is stored in results and reports); put the key in "
            "$OPENAI_API_KEY (or the variable named by model_options api_key_env)")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ModelSpecError(
            f"invalid endpoint URL {base_url!r}: expected http(s)://host[:port][/v1]")
    if parts.query or parts.fragment:
        raise ModelSpecError(f"invalid endpoint URL {base_url!r}: no query or fragment allowed")
    return url if url.endswith("/v1") else url + "/v1"


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _as_int(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _Fatal(Exception):
    """Internal: the endpoint is unreachable, or answered in a way no retry can fix."""


class _Deadline(Exception):
    """Internal: an attempt ran past ``timeout`` while the body was still arriving."""


class _Malformed(Exception):
    """Internal: a 200 answer that is not a chat completion (retried like a transient fault)."""


class _NotText(Exception):
    """Internal: a well-formed completion whose content is not text (not retried)."""


class _Window:
    """AIMD window of request slots shared by a pool's workers, and its concurrency meter.

    At most ``int(window)`` attempts are in flight; ``window`` lies in [1, ``limit``]. An
    overload answer halves it (``window = max(1, window / 2)``) once per round: only an attempt
    that started after the last decrease (same ``epoch``) decreases it again. An answered
    attempt adds ``1 / window``. The meter integrates the attempts in flight over time:
    ``mean_in_flight`` = integral of in-flight dt / the stream's seconds.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.window = float(limit)
        self.in_flight = 0
        self.epoch = 0
        self._cond = threading.Condition()
        self._resume_at = 0.0  # Retry-After: no new attempt before this (monotonic) time
        self._hold_owner: object = None  # the request whose Retry-After set it waits its own
        self.reset_meter()

    def reset_meter(self) -> None:
        """Start a new stream's figures (the window itself carries over)."""
        with self._cond:
            self._t0 = self._t_last = time.monotonic()
            self._area = 0.0
            self.max_in_flight = self.in_flight
            self.min_window = int(self.window)
            self.backoffs = 0

    def _tick(self, now: float) -> None:
        self._area += self.in_flight * (now - self._t_last)
        self._t_last = now

    def acquire(self, abort: threading.Event, owner: object) -> int | None:
        """Wait for a free slot; return the window's epoch, or None once ``abort`` is set."""
        with self._cond:
            while True:
                if abort.is_set():
                    return None
                now = time.monotonic()
                if now < self._resume_at and owner is not self._hold_owner:
                    self._cond.wait(self._resume_at - now)
                elif self.in_flight >= int(self.window):
                    self._cond.wait()
                else:
                    break
            self._tick(now)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.epoch

    def release(self, epoch: int, *, answered: bool, overloaded: bool) -> None:
        """Free a slot; an overload halves the window (once per round), an answer grows it."""
        with self._cond:
            self._tick(time.monotonic())
            self.in_flight -= 1
            if overloaded and epoch == self.epoch:
                self.window = max(1.0, self.window / 2)
                self.epoch += 1
                self.backoffs += 1
                self.min_window = min(self.min_window, int(self.window))
            elif answered and self.window < self.limit:
                self.window = min(float(self.limit), self.window + 1.0 / self.window)
            self._cond.notify_all()

    def hold(self, seconds: float, owner: object) -> None:
        """Hold every new attempt (but ``owner``'s) for ``seconds`` (a ``Retry-After``)."""
        with self._cond:
            resume = time.monotonic() + seconds
            if resume > self._resume_at:
                self._resume_at, self._hold_owner = resume, owner

    def wake(self) -> None:
        """Wake every waiting worker (after ``abort`` was set)."""
        with self._cond:
            self._cond.notify_all()

    def stats(self) -> dict[str, Any]:
        """Return the stream's figures: mean/max in flight, final/lowest window, backoffs."""
        with self._cond:
            now = time.monotonic()
            self._tick(now)
            seconds = now - self._t0
            return {"limit": self.limit,
                    "mean_in_flight": round(self._area / seconds, 2) if seconds > 0 else 0.0,
                    "max_in_flight": self.max_in_flight, "window": int(self.window),
                    "min_window": self.min_window, "backoffs": self.backoffs,
                    "seconds": round(seconds, 3)}


class OpenAIRecommender(Recommender):
    """Recommend via an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    Parameters
    ----------
    base_url
        Endpoint root, with or without a trailing ``/v1`` (``http://127.0.0.1:8000`` or
        ``http://127.0.0.1:8000/v1``).
    model
        The ``model`` field sent with every request.
    decoding
        ``max_new_tokens`` -> ``max_tokens``, ``temperature``, ``seed``.
    api_key_env
        Name of the environment variable holding the API key (sent as a Bearer token if set).
    concurrency
        Maximum number of requests in flight at once (default 32, for a serving engine that
        batches continuously; see the module docstring); 429/503 answers lower it for a while
        (AIMD window).
    timeout
        Time limit in seconds for connecting, for each read, and for the whole body once the
        headers have arrived.
    max_retries
        Retries after the first attempt on retryable failures (see the module docstring).
    backoff
        Base of the exponential backoff, in seconds.
    transport
        Optional ``httpx`` transport (tests, proxies).
    """

    capabilities = frozenset({GENERATE})
    streams = True

    def __init__(self, base_url: str, model: str, decoding: Decoding | None = None, *,
                 api_key_env: str = "OPENAI_API_KEY", concurrency: int = DEFAULT_CONCURRENCY,
                 timeout: float = 60.0, max_retries: int = 5, backoff: float = 0.5,
                 spec: str | None = None, transport: Any = None) -> None:
        import httpx

        self.base_url = normalize_base_url(base_url)
        if not str(model).strip():
            raise ModelSpecError(f"endpoint {self.base_url}: a model name is required")
        super().__init__(spec or f"openai:{self.base_url}#{model}", decoding)
        self.model = str(model)
        self.concurrency = max(int(concurrency), 1)
        self.timeout = float(timeout)
        self.max_retries = max(int(max_retries), 0)
        self.backoff = max(float(backoff), 0.0)
        self.api_key_env = api_key_env
        self.chat_url = self.base_url + "/chat/completions"
        self.models_url = self.base_url + "/models"
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(api_key_env) if api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(self.timeout), transport=transport,
            limits=httpx.Limits(max_connections=self.concurrency,
                                max_keepalive_connections=self.concurrency),
            follow_redirects=False, trust_env=transport is None,
        )
        self._rng = random.Random()
        self._rng_lock = threading.Lock()
        # Backoff waits go through this hook when set (tests record the delays); by default
        # they wait on the batch's abort event so an unreachable endpoint stops them early.
        self._sleep: Callable[[float], None] | None = None
        self._fingerprint: str | None = None
        self._model_info: dict[str, Any] | None = None
        self._window = _Window(self.concurrency)
        self._stream_stats: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"OpenAIRecommender(base_url={self.base_url!r}, model={self.model!r})"

    # -- identity -----------------------------------------------------------------------------

    def model_info(self) -> dict[str, Any]:
        """Return the ``/v1/models`` entry of this model (``id``, ``created``, ``owned_by``).

        Tolerant: an unreachable endpoint, a non-JSON body or a missing entry gives ``{}``.
        """
        if self._model_info is None:
            info: dict[str, Any] = {}
            try:
                r = self._client.get(self.models_url, timeout=min(self.timeout, 10.0))
                body = r.json() if r.status_code == 200 else None
                entries = body.get("data") if isinstance(body, dict) else body
                if isinstance(entries, list):
                    for entry in entries:
                        if isinstance(entry, dict) and entry.get("id") == self.model:
                            info = {k: entry[k] for k in ("id", "created", "owned_by")
                                    if k in entry and isinstance(entry[k], (str, int, float))}
                            break
            except Exception:  # noqa: BLE001 -- identity is best effort, never fatal
                info = {}
            self._model_info = info
        return dict(self._model_info)

    def fingerprint(self) -> str:
        """sha256 of the endpoint URL, model name and its ``/v1/models`` id/created/owned_by.

        ``created`` is left out when it lies within an hour of the local clock: vLLM and the
        llama.cpp server report the time of the request there, which would change the
        fingerprint (and defeat the response cache) on every run. The API key is never part of it.
        """
        if self._fingerprint is None:
            info = self.model_info()
            created = info.get("created")
            if isinstance(created, (int, float)) and \
                    abs(time.time() - float(created)) < CREATED_IS_NOW_WINDOW_S:
                info.pop("created")
            blob = json.dumps({"adapter": "openai", "version": ADAPTER_VERSION,
                               "base_url": self.base_url, "model": self.model,
                               "model_info": info}, sort_keys=True)
            self._fingerprint = hashlib.sha256(blob.encode("utf-8")).hexdigest()
        return self._fingerprint

    # -- requests -----------------------------------------------------------------------------

    def payload(self, request: Request) -> dict[str, Any]:
        """Return the JSON body sent for ``request``."""
        return {"model": self.model, "messages": request.chat_dicts(),
                "max_tokens": self.decoding.max_new_tokens,
                "temperature": self.decoding.temperature,
                "seed": sample_seed(self.decoding.seed, request.sample)}

    def recommend(self, requests: Sequence[Request]) -> list[Response]:
        """Return one Response per request, in order (see :meth:`recommend_each`)."""
        got = dict(self.recommend_each(requests))
        return [got[i] for i in range(len(got))]

    def recommend_each(self, requests: Sequence[Request]) -> Iterator[tuple[int, Response]]:
        """Yield ``(index, Response)`` of each request as soon as it completes.

        Up to the AIMD window (at most ``concurrency``) of requests are in flight, the next
        one starting as soon as a slot frees, over all of ``requests`` (the engine passes every
        pending request: one stream, no batch barrier). Yielding each answer as it lands lets
        the engine cache every finished answer at once. The pool has ``concurrency`` workers,
        one request each; a worker takes a slot of the window for each attempt (none while it
        waits out a backoff). The stream's figures are in :meth:`stream_stats` afterwards.
        """
        requests = list(requests)
        if not requests:
            return
        abort = threading.Event()
        window = self._window
        window.reset_meter()
        workers = min(self.concurrency, len(requests))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="recaudit-openai")
        try:
            futures = {pool.submit(self._complete_or_abort, r, abort): i
                       for i, r in enumerate(requests)}
            for fut in as_completed(futures):
                try:
                    resp = fut.result()
                except _Fatal as exc:
                    raise EndpointError(str(exc)) from None
                yield futures[fut], resp
        finally:
            abort.set()  # Ctrl-C or a fatal answer: workers stop waiting out their backoff
            window.wake()  # ... and stop waiting for a slot
            pool.shutdown(wait=True, cancel_futures=True)
            self._stream_stats = window.stats()

    def stream_stats(self) -> dict[str, Any] | None:
        """Return the concurrency the last :meth:`recommend_each` stream achieved, or None.

        ``limit`` (``concurrency``), ``mean_in_flight`` (attempts in flight averaged over the
        stream's wall time, backoff waits included), ``max_in_flight``, ``window`` (the AIMD
        window at the end), ``min_window``, ``backoffs`` (window halvings on 429/503) and
        ``seconds``.
        """
        return dict(self._stream_stats) if self._stream_stats is not None else None

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        with self._rng_lock:
            jitter = 0.5 + self._rng.random()
        return min(self.backoff * (2 ** (attempt - 1)) * jitter, MAX_BACKOFF_S)

    def _complete_or_abort(self, request: Request, abort: threading.Event) -> Response:
        try:
            return self._complete(request, abort)
        except _Fatal:
            abort.set()
            self._window.wake()
            raise

    def _complete(self, request: Request, abort: threading.Event) -> Response:
        import httpx

        body = self.payload(request)
        attempts = self.max_retries + 1
        last = ""
        reached = False  # did the endpoint ever answer (or accept the connection)?
        me = object()  # this request, as the owner of a Retry-After hold
        for attempt in range(1, attempts + 1):
            epoch = None if abort.is_set() else self._window.acquire(abort, me)
            if epoch is None:
                return Response(error="cancelled: endpoint unreachable",
                                meta={"attempts": attempt - 1})
            retry_after = None
            try:
                status, headers, content = self._post_in_slot(body, epoch, me)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
                last = f"{type(exc).__name__}: {_one_line(str(exc)) or 'connection failed'}"
                if isinstance(exc, httpx.UnsupportedProtocol):
                    break
            except (httpx.TimeoutException, _Deadline):
                reached = True
                last = f"timed out after {self.timeout:g} s"
            except httpx.TransportError as exc:  # dropped connection, body cut short
                reached = True
                last = f"{type(exc).__name__}: {_one_line(str(exc)) or 'connection error'}"
            except httpx.DecodingError as exc:  # a Content-Encoding the body does not match
                reached = True
                last = f"malformed response: body cannot be decoded ({_one_line(str(exc), 80)})"
            except _Malformed as exc:
                reached = True
                last = f"malformed response: {exc}"
            else:
                reached = True
                text = content.decode("utf-8", errors="replace")
                if status == 200:
                    try:
                        return self._parse(content, attempt)
                    except _Malformed as exc:
                        last = f"malformed response: {exc}"
                    except _NotText as exc:
                        return Response(error=f"endpoint {self.chat_url}: {exc}",
                                        meta={"attempts": attempt})
                else:
                    detail = self._redact(_one_line(text, 160))
                    if status in FATAL_STATUSES:
                        raise _Fatal(self._fatal_message(status, detail))
                    last = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
                    if status not in RETRY_STATUSES:
                        return Response(error=f"endpoint {self.chat_url}: {last}",
                                        meta={"attempts": attempt})
                    retry_after = _parse_retry_after(headers.get("Retry-After"))
            if attempt < attempts and not abort.is_set():
                delay = self._delay(attempt, retry_after)
                if self._sleep is not None:
                    self._sleep(delay)
                else:
                    abort.wait(delay)
        if not reached:
            raise _Fatal(f"cannot reach endpoint {self.chat_url} after {attempts} "
                         f"attempt(s): {last}")
        return Response(error=f"endpoint {self.chat_url} failed after {attempts} attempt(s): "
                              f"{last}", meta={"attempts": attempts})

    def _post_in_slot(self, body: dict[str, Any], epoch: int, me: object
                      ) -> tuple[int, Any, bytes]:
        """:meth:`_post` in a slot of the window acquired at ``epoch``, then free the slot.

        A 429/503 halves the window (and its ``Retry-After`` holds new attempts), a 200 grows it.
        """
        status = 0
        try:
            status, headers, content = self._post(body)
            if status in OVERLOAD_STATUSES:
                retry_after = _parse_retry_after(headers.get("Retry-After"))
                if retry_after:
                    self._window.hold(retry_after, me)
            return status, headers, content
        finally:
            self._window.release(epoch, answered=status == 200,
                                 overloaded=status in OVERLOAD_STATUSES)

    def _post(self, body: dict[str, Any]) -> tuple[int, Any, bytes]:
        """Make one attempt and return its (status, headers, body bytes).

        The body is read within ``timeout`` of the headers and :data:`MAX_BODY_BYTES` (httpx's own
        timeout bounds each read, so a body trickling in byte by byte would never time out).
        """
        with self._client.stream("POST", self.chat_url, json=body) as r:
            deadline = time.monotonic() + self.timeout
            chunks: list[bytes] = []
            size = 0
            for chunk in r.iter_bytes():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise _Malformed(f"body larger than {MAX_BODY_BYTES:,} bytes")
                if time.monotonic() > deadline:
                    raise _Deadline()
                chunks.append(chunk)
            return r.status_code, r.headers, b"".join(chunks)

    def _fatal_message(self, status: int, detail: str) -> str:
        key = f"${self.api_key_env}" if self.api_key_env else "the API key"
        key_set = bool(self.api_key_env and os.environ.get(self.api_key_env))
        if status == 401:
            what = "rejected the API key (HTTP 401); " + (
                f"check {key}" if key_set else f"{key} is not set")
        elif status == 403:
            what = f"refused access to model {self.model!r} (HTTP 403); check {key}"
        else:
            what = f"has no model {self.model!r} or no such route (HTTP 404)"
        return f"endpoint {self.chat_url} {what}" + (f": {detail}" if detail else "")

    def _redact(self, text: str) -> str:
        """``text`` with the API key masked (some servers echo the key they rejected)."""
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return text.replace(key, "***") if key and len(key) >= 4 else text

    def _parse(self, content: bytes, attempt: int) -> Response:
        """Read the answer in a 200 body; raises :class:`_Malformed` or :class:`_NotText`."""
        meta: dict[str, Any] = {"attempts": attempt}
        try:
            data = json.loads(content)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested past the limit
            why = "nested too deep" if isinstance(exc, RecursionError) else "not JSON"
            raise _Malformed(f"body is {why} "
                             f"({_one_line(content[:80].decode('utf-8', 'replace'), 80)!r})"
                             ) from None
        try:
            choice = data["choices"][0]
            message = choice["message"]
            content_value = message["content"]
        except (KeyError, IndexError, TypeError):
            raise _Malformed("no choices[0].message.content") from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        if choice.get("finish_reason") is not None:
            meta["finish_reason"] = _one_line(str(choice["finish_reason"]), 40)
        if isinstance(data.get("model"), str):
            meta["model"] = data["model"]
        if not isinstance(content_value, str):
            reason = f", finish_reason {meta['finish_reason']!r}" if "finish_reason" in meta \
                else ""
            raise _NotText(f"message content is {type(content_value).__name__}, not text{reason}")
        return Response(text=content_value, n_prompt_tokens=_as_int(usage.get("prompt_tokens")),
                        n_output_tokens=_as_int(usage.get("completion_tokens")), meta=meta)

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def __enter__(self) -> "OpenAIRecommender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
