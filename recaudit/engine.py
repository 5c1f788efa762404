"""The inference engine: dedup -> SQLite cache -> batches -> recommender -> grounding.

Every distinct request is computed once per (model fingerprint, decoding parameters). An
adapter that schedules its own concurrency (``Recommender.streams``: an endpoint) gets every
pending request of a kind at once and keeps its window of requests in flight over the whole
run, with no batch barrier; the concurrency it achieved is in :attr:`EngineStats.concurrency`.
Other adapters get batches of ``batch_size``; unset, :func:`auto_engine_batch_size` (four of the
adapter's own batches, so a continuously batched model refills its rows within one engine
batch instead of draining them at every batch's end). Each
answer is written to the cache as soon as it lands
(:func:`~recaudit.recommenders.base.stream_recommender`: one by one from an adapter that
finishes requests one by one, an endpoint or a per-request Python function; a whole batch at
once from one that answers a batch at once), so an audit killed at any point resumes without
recomputing finished requests. Failed responses (``Response.error``) are not cached: a rerun
retries them. Item ids an adapter returns that the catalog lacks are answers that cannot be
grounded: they go to the grounding's ``unmatched`` entries (counted in the hallucination share
like titles the catalog lacks) and the run warns once. ``max_requests`` caps how many uncached
requests one run computes; ``dry_run`` computes none and only prints the estimate.

Repeated samples (``samples`` = N > 1, from ``decoding.samples``): each request is asked N
times, as :meth:`Request.with_sample` ``(j)`` for j = 0..N-1. Each sample is its own cache row
(sample 0's key is the request's own key, unchanged; a sample j > 0 adds ``"sample": j`` to the
keyed data), so a rerun reuses every sample it has and raising N computes only the new ones.
The answer of a request is sample 0's, with every sample's answer in :attr:`Answer.samples`.
Scoring requests (candidates) are deterministic and asked once. A damaged
cache file is refused in one line (exit 2) or, with ``fresh_cache``, moved aside; a garbage row
is recomputed, never answered (:class:`ResponseCache`).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ModelRuntimeError, RecauditError
from .grounding import Grounding
from .paths import cache_dir
from .recommenders.base import (EMBED, GENERATE, Recommender, Request, Response,
                               stream_recommender)

if TYPE_CHECKING:  # pragma: no cover
    from .catalog import Catalog


@dataclass
class Answer:
    """A response and its grounding (list of catalog ids) for one request."""

    request: Request
    response: Response
    grounding: Grounding | None = None
    cached: bool = False
    #: a mitigation reranker's order of this answer's items, which replaces the grounded list
    ranked: list[str] | None = None
    #: with repeated samples (``samples`` > 1): the answer of every sample of the request in
    #: sample order, this one first (None for a sample not computed); None with one sample
    samples: list["Answer | None"] | None = None

    @property
    def item_ids(self) -> list[str]:
        """The answer's list: the reranker's order if any, else the grounded ids."""
        if self.ranked is not None:
            return list(self.ranked)
        return list(self.grounding.item_ids) if self.grounding else []

    @property
    def ok(self) -> bool:
        """Whether the request was answered (no ``Response.error``)."""
        return self.response.error is None


@dataclass
class Estimate:
    """The plan of a run: requests, unique ones, cached, to run now, deferred, token sizes."""

    requests: int = 0
    unique: int = 0
    cached: int = 0
    to_run: int = 0
    capped: int = 0
    prompt_tokens: int = 0
    max_output_tokens: int = 0

    def line(self) -> str:
        """Return the plan in one line, as the engine prints it."""
        return (f"{self.requests} requests, {self.unique} unique, {self.cached} cached, "
                f"{self.to_run} to run now ({self.capped} deferred by --max-requests/--dry-run); "
                f"uncached work: ~{self.prompt_tokens} prompt tokens, "
                f"<= {self.max_output_tokens} output tokens")


@dataclass
class EngineStats:
    """What a run did: its plan, requests computed and failed, time, tokens and retries."""

    estimate: Estimate = field(default_factory=Estimate)
    computed: int = 0
    failed: int = 0
    seconds: float = 0.0
    output_tokens: int = 0
    #: computed requests that took more than one attempt (``Response.meta["attempts"]``),
    #: and the extra attempts they took
    retried: int = 0
    retries: int = 0
    #: a streaming adapter's achieved concurrency (:meth:`Recommender.stream_stats`, merged
    #: over its streams by :func:`merge_stream_stats`); None for batched adapters
    concurrency: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the figures stored in results.json's ``provenance.engine``.

        ``concurrency`` (an endpoint's ``limit``, ``mean_in_flight``, ``max_in_flight``,
        ``window`` at the end, ``min_window``, ``backoffs``, ``seconds``) is present only when
        a streaming adapter computed requests.
        """
        e = self.estimate
        out = {"requests": e.requests, "unique": e.unique, "cached": e.cached,
               "computed": self.computed, "failed": self.failed, "skipped": e.capped,
               "retried": self.retried, "retries": self.retries,
               "seconds": round(self.seconds, 3), "output_tokens": self.output_tokens}
        if self.concurrency is not None:
            out["concurrency"] = dict(self.concurrency)
        return out

    def concurrency_line(self) -> str | None:
        """Return the achieved concurrency in one line (the run's closing line), or None."""
        c = self.concurrency
        if not c:
            return None
        return (f"endpoint concurrency: mean {c['mean_in_flight']:g} in flight, max "
                f"{c['max_in_flight']} of {c['limit']}; window {c['window']} at the end "
                f"(lowest {c['min_window']}, {c['backoffs']} backoffs on 429/503)")


def merge_stream_stats(total: dict[str, Any] | None, part: dict[str, Any]) -> dict[str, Any]:
    """Combine two streams' figures: ``mean_in_flight`` weighted by ``seconds``, max of maxima.

    ``window`` is the later stream's, ``min_window`` the smaller, ``backoffs`` summed.
    """
    if not total:
        return dict(part)
    seconds = total["seconds"] + part["seconds"]
    mean = ((total["mean_in_flight"] * total["seconds"] + part["mean_in_flight"]
             * part["seconds"]) / seconds) if seconds > 0 else part["mean_in_flight"]
    return {"limit": part["limit"], "mean_in_flight": round(mean, 2),
            "max_in_flight": max(total["max_in_flight"], part["max_in_flight"]),
            "window": part["window"], "min_window": min(total["min_window"], part["min_window"]),
            "backoffs": total["backoffs"] + part["backoffs"], "seconds": round(seconds, 3)}


class CachedResponse(BaseModel):
    """The shape of a cached response row (``Response.to_dict()``): anything else is garbage.

    Failed responses are never cached, so ``error`` must be null; scores are finite (a NaN
    row written by an older recaudit is recomputed, never ranked).
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    text: str
    item_ids: list[str | int] | None = None
    scores: list[float] | None = None
    n_prompt_tokens: int = 0
    n_output_tokens: int = 0
    error: None = None
    meta: dict[str, Any] = {}


RECOVERY = ("rerun with --fresh-cache to move it aside and start an empty cache, "
            "or --cache PATH to use another file")
_COLUMNS = ("model", "decoding", "request_key", "request", "response", "created")
_CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS responses (model TEXT NOT NULL, decoding TEXT NOT NULL,"
    " request_key TEXT NOT NULL, request TEXT NOT NULL, response TEXT NOT NULL,"
    " created REAL NOT NULL, PRIMARY KEY (model, decoding, request_key))")


class CacheUnusableError(RecauditError):
    """The response cache file is not a readable recaudit cache (corrupt, foreign, wrong schema)."""


class ResponseCache:
    """SQLite (WAL) store of responses keyed by (model fingerprint, decoding key, request key).

    Opening checks an existing file through a read-only connection (``PRAGMA quick_check``, the
    ``responses`` table's columns): an unusable file raises :class:`CacheUnusableError` naming
    it and the way out, or, with ``fresh_if_unusable``, is moved aside to
    ``<name>.corrupt-<UTC timestamp>`` (with its ``-wal``/``-shm`` files) and an empty cache
    starts in its place. A row whose response is not valid :class:`CachedResponse` JSON is
    skipped (a miss: recomputed and overwritten) and counted in :attr:`unreadable`; it is never
    returned as an answer.
    """

    def __init__(self, path: str | Path, *, fresh_if_unusable: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.unreadable: list[str] = []  # one line per garbage row skipped by get_many
        self.moved_to: Path | None = None
        try:
            self.db = self._open()
        except CacheUnusableError:
            if not fresh_if_unusable:
                raise
            self.moved_to = self._move_aside()
            self.db = self._open()

    def _open(self) -> sqlite3.Connection:
        if self.path.is_file() and self.path.stat().st_size:
            problem = self._inspect()
            if problem is not None:
                raise CacheUnusableError(
                    f"response cache {self.path} is unusable ({problem}); {RECOVERY}")
        try:
            db = sqlite3.connect(str(self.path), timeout=30)
        except sqlite3.Error as err:  # a directory, no permission
            raise RecauditError(f"response cache {self.path} cannot be opened ({err})") from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit (one per landed answer) does not wait for fsync; a killed
            # process loses nothing committed, only an OS crash may lose the last commits
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_CREATE_TABLE)
            db.commit()
        except sqlite3.DatabaseError as err:
            db.close()
            raise self._error(err) from None
        return db

    def _inspect(self) -> str | None:
        """Say why the existing file is no usable cache, or None.

        Read only, so a refused file (another application's database, say) is left as it was
        (SQLite may add a ``-shm``).
        """
        try:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        except sqlite3.Error as err:
            raise RecauditError(f"response cache {self.path} cannot be opened ({err})") from None
        try:
            return _check_schema(db) or _quick_check(db)
        except sqlite3.DatabaseError as err:  # "file is not a database", "malformed", locked
            if _busy(err):
                raise self._error(err) from None
            return str(err)
        finally:
            db.close()

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        for suffix in ("", "-wal", "-shm"):  # a stale WAL would be replayed onto the new file
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                src.rename(f"{target}{suffix}")
        print(f"recaudit: warning: unusable response cache {self.path} moved to {target}; "
              "starting an empty cache", file=sys.stderr)
        return target

    def _error(self, err: sqlite3.DatabaseError) -> RecauditError:
        if _busy(err):
            return RecauditError(f"response cache {self.path} is locked by another process "
                                 f"({err}); wait for it to finish, or use --cache PATH")
        return CacheUnusableError(f"response cache {self.path} is unusable ({err}); {RECOVERY}")

    def get_many(self, model: str, decoding: str, keys: Sequence[str]) -> dict[str, Response]:
        """Return the cached responses of ``keys`` (a garbage row is skipped and counted)."""
        found: dict[str, Response] = {}
        keys = list(keys)
        try:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                marks = ",".join("?" * len(chunk))
                rows = self.db.execute(
                    f"SELECT request_key, CAST(response AS BLOB) FROM responses WHERE model=? AND "
                    f"decoding=? AND request_key IN ({marks})", (model, decoding, *chunk))
                for key, blob in rows:
                    try:  # bytes: invalid UTF-8 fails here, not inside sqlite3's row decoding
                        payload = CachedResponse.model_validate_json(blob)
                    except ValidationError as err:
                        first = err.errors(include_url=False)[0]
                        where = ".".join(map(str, first["loc"]))
                        self.unreadable.append(f"row {key[:12]}: {where} {first['msg']}".strip())
                        continue
                    found[key] = Response.from_dict(payload.model_dump())
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None
        return found

    def put_many(self, model: str, decoding: str,
                 items: Iterable[tuple[Request, Response]]) -> int:
        """Write the answered ``items`` (failed ones are not cached) in one commit; their count."""
        rows = [(model, decoding, req.key(), json.dumps(req.to_dict(), ensure_ascii=False),
                 json.dumps(resp.to_dict(), ensure_ascii=False), time.time())
                for req, resp in items if resp.error is None]
        try:
            self.db.executemany("INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?)", rows)
            self.db.commit()
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None
        return len(rows)

    def count(self, model: str | None = None) -> int:
        """Return the number of cached responses (of ``model`` when given)."""
        try:
            if model is None:
                return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
            return self.db.execute("SELECT COUNT(*) FROM responses WHERE model=?",
                                   (model,)).fetchone()[0]
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()


def _busy(err: sqlite3.DatabaseError) -> bool:
    return isinstance(err, sqlite3.OperationalError) and "locked" in str(err)


def _check_schema(db: sqlite3.Connection) -> str | None:
    """Why ``db`` is not a recaudit cache (another app's tables, other columns), or None."""
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    if "responses" not in tables:
        return f"not a recaudit response cache: tables {', '.join(tables)}" if tables else None
    columns = tuple(r[1] for r in db.execute("PRAGMA table_info(responses)"))
    if columns != _COLUMNS:
        return (f"table 'responses' has columns ({', '.join(columns)}), "
                f"expected ({', '.join(_COLUMNS)})")
    return None


def _quick_check(db: sqlite3.Connection) -> str | None:
    """SQLite's ``PRAGMA quick_check`` (every page read, O(file size)): None when ok."""
    rows = [r[0] for r in db.execute("PRAGMA quick_check(1)")]
    return None if rows == ["ok"] else f"quick_check: {rows[0] if rows else 'no answer'}"


def default_cache_path() -> Path:
    """Return the response cache used when none is configured (in the cache directory)."""
    return cache_dir() / "responses.sqlite"


def approx_tokens(req: Request) -> int:
    """Cheap prompt-size estimate for the up-front plan: ~4 characters per token."""
    return sum(len(m.content) for m in req.messages) // 4 + 8


_approx_tokens = approx_tokens


def _extra_attempts(resp: Response) -> int:
    """Count the attempts beyond the first an adapter reported in ``meta["attempts"]``."""
    attempts = resp.meta.get("attempts") if isinstance(resp.meta, dict) else None
    return max(attempts - 1, 0) if isinstance(attempts, int) else 0


#: engine batch size of an adapter that has no batch size of its own, and the least otherwise
DEFAULT_BATCH_SIZE = 16
#: engine batch = this many of the adapter's own batches (its ``batch_size``: decode rows)
BATCHES_PER_ENGINE_BATCH = 4


def auto_engine_batch_size(recommender: Recommender) -> int:
    """Return the requests per engine batch when the config sets none.

    ``max(DEFAULT_BATCH_SIZE, BATCHES_PER_ENGINE_BATCH * recommender.batch_size)`` for an adapter
    with an integer ``batch_size`` (hf/gguf: rows decoded together; embedding: texts encoded
    together; vllm: its scheduler's sequences), else ``DEFAULT_BATCH_SIZE``. A batch is also
    the cache's unit of writing for adapters that answer a batch at once, so it stays a few of
    the adapter's own batches: an interrupted audit loses at most one.
    """
    own = getattr(recommender, "batch_size", None)
    if isinstance(own, bool) or not isinstance(own, int) or own < 1:
        return DEFAULT_BATCH_SIZE
    return max(DEFAULT_BATCH_SIZE, BATCHES_PER_ENGINE_BATCH * own)


class Engine:
    """Runs requests through a recommender with dedup, caching, batching and progress."""

    def __init__(self, recommender: Recommender, catalog: "Catalog | None" = None, *,
                 cache_path: str | Path | None = None, batch_size: int | None = None,
                 max_requests: int | None = None, dry_run: bool = False,
                 progress: bool = True, backend: str = "local", ray_workers: int = 2,
                 console: Any = None, fresh_cache: bool = False,
                 ray_address: str | None = None, samples: int = 1) -> None:
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
        self.recommender = recommender
        self.samples = samples
        self.catalog = catalog
        self.cache = ResponseCache(cache_path or default_cache_path(),
                                   fresh_if_unusable=fresh_cache)
        self.batch_size = (auto_engine_batch_size(recommender) if batch_size is None
                           else max(1, int(batch_size)))
        self.max_requests = max_requests
        self.dry_run = dry_run
        self.progress = progress
        self.backend = backend
        self.ray_workers = max(1, int(ray_workers))
        self.ray_address = ray_address
        self.console = console
        self.stats = EngineStats()
        self._model_key = recommender.fingerprint()
        self._decoding_key = recommender.decoding.key()
        #: item ids answers named that the catalog lacks (first few), and how many answers did
        self.unknown_ids: list[str] = []
        self.n_unknown_answers = 0
        if catalog is not None and recommender.supports(EMBED):
            recommender.attach_catalog(catalog)
        if samples > 1 and recommender.decoding.temperature <= 0:
            print(f"recaudit: warning: samples: {samples} with temperature 0: greedy decoding "
                  "gives identical samples (a local hf/gguf model; an endpoint or a recording "
                  "may still vary)", file=sys.stderr)

    # -- planning -------------------------------------------------------------------------------
    def plan(self, requests: Sequence[Request]) -> tuple[dict[str, Request], dict[str, Response],
                                                         list[str], Estimate]:
        """Deduplicate ``requests`` and look them up in the cache.

        Returns the unique requests by key, the cached responses, the keys to compute now
        (capped by ``max_requests``; none in ``dry_run``) and the :class:`Estimate`.
        """
        unique: dict[str, Request] = {}
        for req in requests:
            unique.setdefault(req.key(), req)
        cached = self.cache.get_many(self._model_key, self._decoding_key, list(unique))
        if self.cache.unreadable:
            print(f"recaudit: warning: {len(self.cache.unreadable)} cached responses in "
                  f"{self.cache.path} are unreadable and will be recomputed (first: "
                  f"{self.cache.unreadable[0]})", file=sys.stderr)
            self.cache.unreadable.clear()
        misses = [k for k in unique if k not in cached]
        cap = len(misses) if self.max_requests is None else min(len(misses), self.max_requests)
        if self.dry_run:
            cap = 0
        # Token figures cover all uncached work (what a complete run still costs).
        est = Estimate(requests=len(requests), unique=len(unique), cached=len(cached),
                       to_run=cap, capped=len(misses) - cap,
                       prompt_tokens=sum(_approx_tokens(unique[k]) for k in misses),
                       max_output_tokens=len(misses) * self.recommender.decoding.max_new_tokens
                       if self.recommender.supports(GENERATE) else 0)
        return unique, cached, misses[:cap], est

    # -- running --------------------------------------------------------------------------------
    def run(self, requests: Sequence[Request]) -> dict[str, Answer]:
        """Answer every request (cached or computed); returns answers by request key.

        Requests over ``max_requests`` (or all misses in ``dry_run``) are absent from the result.
        """
        t0 = time.perf_counter()
        asked = list(requests)
        if self.samples > 1:
            requests = [r.with_sample(j) for r in asked
                        for j in range(self.samples if r.candidates is None else 1)]
        unique, cached, todo, est = self.plan(requests)
        self.stats.estimate = est
        invariance = self.recommender.batch_invariance()
        self._say(f"plan: {est.line()}"
                  + (f"; batch-invariant: {invariance}" if invariance else ""))
        responses: dict[str, Response] = dict(cached)
        if todo:
            # closing(): an interrupt between two answers still stops the adapter's workers now
            with closing(self._stream(unique, todo)) as landed:
                for key, resp in landed:
                    responses[key] = resp
                    self.stats.computed += 1
                    self.stats.failed += resp.error is not None
                    self.stats.output_tokens += resp.n_output_tokens
                    extra = _extra_attempts(resp)
                    self.stats.retried += extra > 0
                    self.stats.retries += extra
        self.stats.seconds = time.perf_counter() - t0
        if self.stats.concurrency_line():
            self._say(self.stats.concurrency_line())
        answers = {key: self._answer(unique[key], resp, key in cached)
                   for key, resp in responses.items()}
        if self.samples > 1:
            answers = self._by_request(asked, answers)
        if self.n_unknown_answers:
            print(f"recaudit: warning: {self.n_unknown_answers} answers named item ids the "
                  f"catalog lacks (first: {self.unknown_ids[0]!r}); they count as unmatched "
                  "(hallucinated) entries", file=sys.stderr)
        return answers

    def _by_request(self, asked: Sequence[Request], answers: dict[str, Answer]
                    ) -> dict[str, Answer]:
        """Key the answers by the asked requests' keys, each holding all its samples."""
        out: dict[str, Answer] = {}
        for req in asked:
            key = req.with_sample(0).key()
            if key in out or key not in answers:
                continue
            first = answers[key]
            if req.candidates is None:  # scores of candidates are not sampled
                first.samples = [answers.get(req.with_sample(j).key())
                                 for j in range(self.samples)]
            out[key] = first
        return out

    def _stream(self, unique: dict[str, Request], todo: list[str]):
        """Yield ``(key, Response)`` for each request of ``todo`` as its answer lands.

        Each is written to the cache first (failed answers are not cached).
        """
        progress = None
        if self.progress:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                                TimeRemainingColumn(), console=self._console(), transient=False)
            progress.start()
            task = progress.add_task(self.recommender.spec or "model", total=len(todo))
        try:
            # Group by kind (score vs. list) and by rough length so batches pad little; a batch
            # never mixes scoring and list requests. An adapter that streams (an endpoint's
            # pool) gets all requests of a kind as one batch: its window, not batch_size,
            # bounds what is in flight, and no request waits for a batch's slowest.
            order = sorted(todo, key=lambda k: (unique[k].candidates is not None,
                                                _approx_tokens(unique[k])))
            runner = self._run_ray if self.backend == "ray" else self._run_local
            size = len(order) if self._streaming() else self.batch_size
            batches: list[list[str]] = []
            for key in order:
                if (batches and len(batches[-1]) < size and
                        (unique[batches[-1][0]].candidates is None)
                        == (unique[key].candidates is None)):
                    batches[-1].append(key)
                else:
                    batches.append([key])
            with closing(runner(unique, batches)) as landed:
                for key, resp in landed:
                    self.cache.put_many(self._model_key, self._decoding_key,
                                        [(unique[key], resp)])
                    if progress is not None:
                        progress.advance(task, 1)
                    yield key, resp
        finally:
            if progress is not None:
                progress.stop()

    def _streaming(self) -> bool:
        """Whether requests go to the adapter as streams (``streams`` adapter, local backend)."""
        return self.backend != "ray" and bool(getattr(self.recommender, "streams", False))

    def _run_local(self, unique: dict[str, Request], batches: list[list[str]]):
        """Each batch through :func:`stream_recommender`: ``(key, Response)`` as each lands.

        A streaming adapter's figures for each batch (a stream) go to ``stats.concurrency``.
        """
        spec = self.recommender.spec
        for keys in batches:
            answered: set[int] = set()
            try:
                with closing(stream_recommender(self.recommender, [unique[k] for k in keys])) \
                        as stream:
                    while True:
                        try:
                            item = next(stream, None)
                        except RecauditError:
                            raise
                        except Exception as err:  # a model that crashes mid-run: runtime failure
                            raise ModelRuntimeError(f"model {spec} failed: "
                                                    f"{type(err).__name__}: {err}") from err
                        if item is None:
                            break
                        i, resp = item
                        if not isinstance(i, int) or not 0 <= i < len(keys) or i in answered:
                            raise ModelRuntimeError(f"model {spec} returned more than {len(keys)} "
                                                    f"responses for {len(keys)} requests")
                        answered.add(i)
                        yield keys[i], resp
            finally:
                if answered:  # this stream ran: the streaming adapter's figures of it
                    part = self.recommender.stream_stats()
                    if part:
                        self.stats.concurrency = merge_stream_stats(self.stats.concurrency,
                                                                    part)
            if len(answered) != len(keys):
                raise ModelRuntimeError(f"model {spec} returned {len(answered)} responses "
                                        f"for {len(keys)} requests")

    def _run_ray(self, unique: dict[str, Request], batches: list[list[str]]):
        """Distribute batches over ``ray_workers`` actors, each holding a copy of the model.

        An actor answers a whole batch at once; its answers are yielded (and cached) as the batch
        comes back, so resumability is kept. A batch re-run after its actor died counts its
        requests in ``stats.retried``.
        """
        from .backends import RayPool

        pool = RayPool(self.recommender, self.ray_workers, address=self.ray_address)
        try:
            for keys, out, attempts in pool.map([(keys, [unique[k] for k in keys])
                                                 for keys in batches]):
                self.stats.retried += len(keys) * (attempts > 1)
                self.stats.retries += len(keys) * (attempts - 1)
                if len(out) != len(keys):
                    raise ModelRuntimeError(f"model {self.recommender.spec} returned {len(out)} "
                                            f"responses for {len(keys)} requests")
                yield from zip(keys, out, strict=True)
        finally:
            if pool.lost:
                print(f"recaudit: warning: {len(pool.lost)} Ray actor(s) died "
                      f"({pool.last_loss}); {pool.retried_batches} batch(es) re-run on "
                      "another actor", file=sys.stderr)
            pool.close()

    def _answer(self, req: Request, resp: Response, cached: bool) -> Answer:
        grounding = None
        if resp.error is None and req.candidates is None:
            if resp.item_ids is not None:
                grounding = self._ground_ids([str(i) for i in resp.item_ids])
            elif self.catalog is not None:
                grounding = self.catalog.ground(resp.text)
        return Answer(req, resp, grounding, cached)

    def _ground_ids(self, ids: list[str]) -> Grounding:
        """Ground a ranked id list: ids the catalog lacks are ``unmatched`` entries.

        Like a title no catalog item matches, an id the catalog lacks cannot be grounded: it
        counts in the hallucination share, never as a list item.
        """
        if self.catalog is None:
            return Grounding(item_ids=ids, unmatched=[], duplicates=0, entries=ids)
        known = [i for i in ids if i in self.catalog]
        unknown = [i for i in ids if i not in self.catalog]
        if unknown:
            self.n_unknown_answers += 1
            self.unknown_ids.extend(unknown[:max(0, 5 - len(self.unknown_ids))])
        return Grounding(item_ids=known, unmatched=unknown, duplicates=0, entries=ids)

    # -- output ---------------------------------------------------------------------------------
    def _console(self):
        if self.console is None:
            from rich.console import Console
            self.console = Console(stderr=True)
        return self.console

    def _say(self, line: str) -> None:
        if self.progress:
            self._console().print(line, markup=False, highlight=False, soft_wrap=True)
        elif self.dry_run:
            print(line, file=sys.stderr)

    def close(self) -> None:
        """Close the response cache."""
        self.cache.close()
