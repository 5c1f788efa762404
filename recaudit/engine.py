"""The inference engine: dedup -> SQLite cache -> batches -> recommender -> grounding.

Every distinct request is computed once per (model fingerprint, decoding parameters). Each batch
is written to the cache as soon as it returns, so an audit killed at any point resumes without
recomputing finished requests. Failed responses (``Response.error``) are not cached: a rerun
retries them. ``max_requests`` caps how many uncached requests one run computes; ``dry_run``
computes none and only prints the estimate.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .errors import ModelRuntimeError, RecauditError
from .grounding import Grounding
from .paths import cache_dir
from .recommenders.base import (EMBED, GENERATE, Recommender, Request, Response,
                               call_recommender)

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

    @property
    def item_ids(self) -> list[str]:
        if self.ranked is not None:
            return list(self.ranked)
        return list(self.grounding.item_ids) if self.grounding else []

    @property
    def ok(self) -> bool:
        return self.response.error is None


@dataclass
class Estimate:
    requests: int = 0
    unique: int = 0
    cached: int = 0
    to_run: int = 0
    capped: int = 0
    prompt_tokens: int = 0
    max_output_tokens: int = 0

    def line(self) -> str:
        return (f"{self.requests} requests, {self.unique} unique, {self.cached} cached, "
                f"{self.to_run} to run now ({self.capped} deferred by --max-requests/--dry-run); "
                f"uncached work: ~{self.prompt_tokens} prompt tokens, "
                f"<= {self.max_output_tokens} output tokens")


@dataclass
class EngineStats:
    estimate: Estimate = field(default_factory=Estimate)
    computed: int = 0
    failed: int = 0
    seconds: float = 0.0
    output_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        e = self.estimate
        return {"requests": e.requests, "unique": e.unique, "cached": e.cached,
                "computed": self.computed, "failed": self.failed, "skipped": e.capped,
                "seconds": round(self.seconds, 3), "output_tokens": self.output_tokens}


class ResponseCache:
    """SQLite store of responses keyed by (model fingerprint, decoding key, request key)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(self.path), timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS responses (model TEXT NOT NULL, decoding TEXT NOT NULL,"
                " request_key TEXT NOT NULL, request TEXT NOT NULL, response TEXT NOT NULL,"
                " created REAL NOT NULL, PRIMARY KEY (model, decoding, request_key))")
            self.db.commit()
        except sqlite3.DatabaseError as err:
            raise RecauditError(f"response cache {self.path} is unusable: {err}") from None

    def get_many(self, model: str, decoding: str, keys: Sequence[str]) -> dict[str, Response]:
        found: dict[str, Response] = {}
        keys = list(keys)
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT request_key, response FROM responses WHERE model=? AND decoding=? "
                f"AND request_key IN ({marks})", (model, decoding, *chunk))
            for key, blob in rows:
                found[key] = Response.from_dict(json.loads(blob))
        return found

    def put_many(self, model: str, decoding: str,
                 items: Iterable[tuple[Request, Response]]) -> int:
        rows = [(model, decoding, req.key(), json.dumps(req.to_dict(), ensure_ascii=False),
                 json.dumps(resp.to_dict(), ensure_ascii=False), time.time())
                for req, resp in items if resp.error is None]
        self.db.executemany("INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?)", rows)
        self.db.commit()
        return len(rows)

    def count(self, model: str | None = None) -> int:
        if model is None:
            return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM responses WHERE model=?",
                               (model,)).fetchone()[0]

    def close(self) -> None:
        self.db.close()


def default_cache_path() -> Path:
    return cache_dir() / "responses.sqlite"


def _approx_tokens(req: Request) -> int:
    """Cheap prompt-size estimate for the up-front plan: ~4 characters per token."""
    return sum(len(m.content) for m in req.messages) // 4 + 8


class Engine:
    """Runs requests through a recommender with dedup, caching, batching and progress."""

    def __init__(self, recommender: Recommender, catalog: "Catalog | None" = None, *,
                 cache_path: str | Path | None = None, batch_size: int = 16,
                 max_requests: int | None = None, dry_run: bool = False,
                 progress: bool = True, backend: str = "local", ray_workers: int = 2,
                 console: Any = None) -> None:
        self.recommender = recommender
        self.catalog = catalog
        self.cache = ResponseCache(cache_path or default_cache_path())
        self.batch_size = max(1, int(batch_size))
        self.max_requests = max_requests
        self.dry_run = dry_run
        self.progress = progress
        self.backend = backend
        self.ray_workers = max(1, int(ray_workers))
        self.console = console
        self.stats = EngineStats()
        self._model_key = recommender.fingerprint()
        self._decoding_key = recommender.decoding.key()
        if catalog is not None and recommender.supports(EMBED):
            recommender.attach_catalog(catalog)

    # -- planning -------------------------------------------------------------------------------
    def plan(self, requests: Sequence[Request]) -> tuple[dict[str, Request], dict[str, Response],
                                                         list[str], Estimate]:
        unique: dict[str, Request] = {}
        for req in requests:
            unique.setdefault(req.key(), req)
        cached = self.cache.get_many(self._model_key, self._decoding_key, list(unique))
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
        unique, cached, todo, est = self.plan(requests)
        self.stats.estimate = est
        invariance = self.recommender.batch_invariance()
        self._say(f"plan: {est.line()}"
                  + (f"; batch-invariant: {invariance}" if invariance else ""))
        responses: dict[str, Response] = dict(cached)
        if todo:
            for keys, resps in self._batches(unique, todo):
                for key, resp in zip(keys, resps):
                    responses[key] = resp
                    self.stats.computed += 1
                    self.stats.failed += resp.error is not None
                    self.stats.output_tokens += resp.n_output_tokens
        self.stats.seconds = time.perf_counter() - t0
        return {key: self._answer(unique[key], resp, key in cached)
                for key, resp in responses.items()}

    def _batches(self, unique: dict[str, Request], todo: list[str]):
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
            # never mixes scoring and list requests.
            order = sorted(todo, key=lambda k: (unique[k].candidates is not None,
                                                _approx_tokens(unique[k])))
            batches: list[list[str]] = []
            for key in order:
                if (batches and len(batches[-1]) < self.batch_size and
                        (unique[batches[-1][0]].candidates is None)
                        == (unique[key].candidates is None)):
                    batches[-1].append(key)
                else:
                    batches.append([key])
            runner = self._run_ray if self.backend == "ray" else self._run_local
            for keys, resps in runner(unique, batches):
                self.cache.put_many(self._model_key, self._decoding_key,
                                    zip((unique[k] for k in keys), resps))
                if progress is not None:
                    progress.advance(task, len(keys))
                yield keys, resps
        finally:
            if progress is not None:
                progress.stop()

    def _run_local(self, unique: dict[str, Request], batches: list[list[str]]):
        for keys in batches:
            yield keys, self._call([unique[k] for k in keys])

    def _run_ray(self, unique: dict[str, Request], batches: list[list[str]]):
        """Distribute batches over ``ray_workers`` actors, each holding a copy of the model.

        Results are yielded (and cached) as each batch finishes, so resumability is kept.
        """
        from .backends import RayPool

        pool = RayPool(self.recommender, self.ray_workers)
        try:
            for keys, out in pool.map([(keys, [unique[k] for k in keys]) for keys in batches]):
                yield keys, self._check(keys, out)
        finally:
            pool.close()

    def _call(self, reqs: list[Request]) -> list[Response]:
        try:
            out = call_recommender(self.recommender, reqs)
        except RecauditError:
            raise
        except Exception as err:  # a model that crashes mid-run: runtime failure, cache kept
            raise ModelRuntimeError(f"model {self.recommender.spec} failed: "
                                    f"{type(err).__name__}: {err}") from err
        return self._check(reqs, out)

    def _check(self, reqs: list, out: list[Response]) -> list[Response]:
        rec = self.recommender
        if len(out) != len(reqs):
            raise ModelRuntimeError(f"model {rec.spec} returned {len(out)} responses "
                                    f"for {len(reqs)} requests")
        return out

    def _answer(self, req: Request, resp: Response, cached: bool) -> Answer:
        grounding = None
        if resp.error is None and req.candidates is None:
            if resp.item_ids is not None:
                ids = [str(i) for i in resp.item_ids]
                grounding = Grounding(item_ids=ids, unmatched=[], duplicates=0, entries=ids)
            elif self.catalog is not None:
                grounding = self.catalog.ground(resp.text)
        return Answer(req, resp, grounding, cached)

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
        self.cache.close()
