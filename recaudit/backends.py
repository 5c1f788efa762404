"""Distributed execution of engine batches with Ray (``pip install 'recaudit[ray]'``).

Each actor receives a pickled copy of the recommender (model weights included) once, then
answers batches; the engine caches every batch as it comes back, so a killed distributed run
resumes like a local one.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from .errors import ConfigError, ModelRuntimeError
from .recommenders.base import call_recommender


class RayPool:
    def __init__(self, recommender: Any, n_workers: int = 2) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "engine.backend 'ray' needs Ray: pip install 'recaudit[ray]'") from None
        self.ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)

        @ray.remote
        class _Worker:
            def __init__(self, rec: Any) -> None:
                self.rec = rec

            def run(self, reqs: list) -> list:
                return call_recommender(self.rec, reqs)

        ref = ray.put(recommender)
        self.workers = [_Worker.remote(ref) for _ in range(max(1, n_workers))]
        self.spec = getattr(recommender, "spec", "model")

    def map(self, jobs: Sequence[tuple[Any, list]]) -> Iterator[tuple[Any, list]]:
        """Yield ``(tag, responses)`` per job as they finish, at most one job per worker."""
        ray = self.ray
        pending: dict[Any, tuple[Any, int]] = {}
        queue = list(jobs)
        free = list(range(len(self.workers)))
        while queue or pending:
            while queue and free:
                w = free.pop()
                tag, reqs = queue.pop(0)
                pending[self.workers[w].run.remote(reqs)] = (tag, w)
            done, _ = ray.wait(list(pending), num_returns=1)
            tag, w = pending.pop(done[0])
            free.append(w)
            try:
                out = ray.get(done[0])
            except Exception as err:  # noqa: BLE001 - a worker crash is a runtime failure
                raise ModelRuntimeError(f"model {self.spec} failed on a Ray worker: {err}") from err
            yield tag, out

    def close(self) -> None:
        for w in self.workers:
            self.ray.kill(w)
        if self._started:
            self.ray.shutdown()
