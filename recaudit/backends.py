"""Distributed execution of engine batches on Ray actors (``pip install 'recaudit[ray]'``).

Each actor holds one replica of the recommender (sent once through the object store) and answers
one batch at a time; the engine caches every batch as it comes back, so a killed distributed run
resumes like a local one. An actor that dies (process killed, node lost) takes only its in-flight
batch with it: that batch is re-run on a live actor, at most ``max_retries`` times, and counted
in ``retried_batches``. An exception raised by the model itself is deterministic and not retried.
"""

from __future__ import annotations

import os
import re
import socket
from collections import deque
from typing import Any, Iterator, Sequence

from .errors import ConfigError, ModelRuntimeError, RecauditError, first_line
from .recommenders.base import call_recommender

#: re-runs of one batch after the actor running it died, before the run gives up
MAX_RETRIES = 2
#: seconds to wait for a TCP answer from an explicit cluster address (ray.init itself waits
#: minutes on an address where no cluster listens)
CONNECT_TIMEOUT_S = 5.0
#: Ray exceptions that mean "the actor or the node holding its result is gone"
LOST_ERRORS = ("RayActorError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError")


def parse_ray_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``host:port`` or ``ray://host:port``; None for ``auto`` / ``local``.

    Raises ValueError for anything else.
    """
    if address in ("auto", "local"):
        return None
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"Ray address {address!r} is not auto, local, host:port "
                         "or ray://host:port")
    return host, int(port)


def connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at ``address`` (default ``$RAY_ADDRESS``, else start a local instance).

    Reuses a connection this process already has. Returns whether this call connected (the
    caller then disconnects). An address where no cluster answers is a ConfigError (exit 2);
    a local instance that cannot start is a ModelRuntimeError (exit 3).
    """
    if ray.is_initialized():
        return False
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    try:
        hostport = parse_ray_address(target)
    except ValueError as err:
        raise ConfigError(f"engine.ray_address: {err}") from None
    if hostport is not None:
        try:
            with socket.create_connection(hostport, timeout=CONNECT_TIMEOUT_S):
                pass
        except OSError as err:
            raise ConfigError(f"engine.ray_address {target!r}: no Ray cluster answers there "
                              f"({err.strerror or type(err).__name__})") from None
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        ray.init(address=target, **({} if target.startswith("ray://") else quiet))
    except Exception as err:  # noqa: BLE001 - ray.init raises many types; all mean "not joined"
        if target == "local":
            raise ModelRuntimeError(f"could not start a local Ray instance: "
                                    f"{first_line(err)}") from err
        raise ConfigError(f"engine.ray_address {target!r}: cannot join the Ray cluster: "
                          f"{first_line(err)}") from err
    return True


def _last_line(err: BaseException) -> str:
    """Return the last line of a Ray error's text (the remote exception), colours removed."""
    lines = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip().splitlines()
    return lines[-1].strip() if lines else type(err).__name__


class RayPool:
    """``n_workers`` actors, each with a replica of ``recommender``; see the module docstring.

    ``retried_batches`` counts re-runs after an actor died; ``lost`` lists the dead actors.
    """

    def __init__(self, recommender: Any, n_workers: int = 2, address: str | None = None,
                 max_retries: int = MAX_RETRIES) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "engine.backend 'ray' needs Ray: pip install 'recaudit[ray]'") from None
        self.ray = ray
        self.spec = getattr(recommender, "spec", None) or "model"
        self.max_retries = max(0, int(max_retries))
        self.retried_batches = 0
        self.lost: list[Any] = []
        self.last_loss = ""
        self._lost_errors = tuple(getattr(ray.exceptions, name) for name in LOST_ERRORS
                                  if hasattr(ray.exceptions, name))
        self._connected = connect(ray, address)

        @ray.remote
        class _Worker:
            def __init__(self, rec: Any) -> None:
                self.rec = rec

            def run(self, reqs: list) -> list:
                return call_recommender(self.rec, reqs)

        self.workers: list[Any] = []
        try:
            ref = ray.put(recommender)
        except Exception as err:  # noqa: BLE001 - model state that cannot be pickled
            self.close()
            raise ModelRuntimeError(f"model {self.spec} cannot be sent to Ray actors: "
                                    f"{first_line(err.__cause__ or err)}") from err
        self.workers = [_Worker.remote(ref) for _ in range(max(1, n_workers))]

    def map(self, jobs: Sequence[tuple[Any, list]]) -> Iterator[tuple[Any, list, int]]:
        """Yield ``(tag, responses, attempts)`` per job as it finishes, one job per actor.

        ``attempts`` is 1 plus the number of actors that died while running the job.
        """
        queue = deque((tag, reqs, 1) for tag, reqs in jobs)
        idle = list(self.workers)
        pending: dict[Any, tuple[tuple[Any, list, int], Any]] = {}
        while queue or pending:
            while queue and idle:
                worker, job = idle.pop(), queue.popleft()
                pending[worker.run.remote(job[1])] = (job, worker)
            if not pending:
                raise ModelRuntimeError(
                    f"model {self.spec}: no Ray actor left ({len(self.lost)} died, last: "
                    f"{self.last_loss}); {len(queue)} batches unanswered, finished ones cached")
            [ref], _ = self.ray.wait(list(pending), num_returns=1)
            job, worker = pending.pop(ref)
            try:
                out = self.ray.get(ref)
            except self._lost_errors as err:
                if getattr(err, "actor_init_failed", False):  # the replica cannot load: final
                    raise ModelRuntimeError(f"model {self.spec} could not be set up on a Ray "
                                            f"actor: {_last_line(err)}") from err
                self._drop(worker, err)
                tag, reqs, attempts = job
                if attempts > self.max_retries:
                    raise ModelRuntimeError(
                        f"model {self.spec}: a batch of {len(reqs)} requests lost {attempts} Ray "
                        f"actors (last: {self.last_loss}); giving up") from err
                self.retried_batches += 1
                queue.appendleft((tag, reqs, attempts + 1))
                continue
            except self.ray.exceptions.RayTaskError as err:  # the model raised: not retried
                cause = getattr(err, "cause", None) or err
                if isinstance(cause, RecauditError):
                    raise cause from err
                raise ModelRuntimeError(f"model {self.spec} failed on a Ray actor: "
                                        f"{first_line(cause)}") from err
            idle.append(worker)
            yield job[0], out, job[2]

    def _drop(self, worker: Any, err: BaseException) -> None:
        """Forget a dead actor (and make sure it stays dead: no second answer later)."""
        self.workers.remove(worker)
        self.lost.append(worker)
        self.last_loss = first_line(err)
        try:
            self.ray.kill(worker, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def close(self) -> None:
        """Kill the actors, and disconnect from Ray if this pool connected."""
        for worker in self.workers:
            self.ray.kill(worker)
        self.workers = []
        if self._connected:
            self.ray.shutdown()
