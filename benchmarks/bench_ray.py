"""Benchmark: the Ray backend against the local backend, side by side in one run, same cores.

The same requests go through ``Engine`` with the same recommender, once per backend, each on a
fresh cache: ``local`` (the model in this process), ``ray`` with 1 actor (what Ray costs on one
core: serialisation, scheduling, the actor's start) and ``ray`` with one actor per core (the
speed-up the cores allow). Recommenders: ``spin`` burns a fixed CPU time per request
(``time.thread_time``, so waiting for a core does not count); ``torch`` runs a tiny MLP (one
intra-op thread on both sides, so both use the same cores). Figures are wall time relative to
the local backend (best of ``repeats``, the backends interleaved); the Ray instance's start is
a separate row, and answers must be identical to the local ones.

    python benchmarks/bench_ray.py [--quick] [--requests 256] [--cost-ms 5] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recaudit.backends import RayPool  # noqa: E402
from recaudit.engine import Engine  # noqa: E402
from recaudit.recommenders.base import (GENERATE, Recommender, Request, Response,  # noqa: E402
                                        call_recommender)


class CostlyRecommender(Recommender):
    """``1. title <i>`` per request after ``cost_ms`` of CPU (``spin``) or a tiny MLP (``torch``:
    ``layers`` 256x256 linear + ReLU layers on a 16-row input per request)."""

    capabilities = frozenset({GENERATE})

    def __init__(self, kind: str = "spin", cost_ms: float = 5.0, layers: int = 24) -> None:
        super().__init__(spec=f"bench-{kind}")
        self.kind, self.cost_s, self.layers = kind, cost_ms / 1e3, layers
        self._net = None

    def fingerprint(self) -> str:
        return f"bench-{self.kind}-{self.cost_s}-{self.layers}"

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_net": None}  # each process builds its own (seeded) MLP

    def _mlp(self):
        if self._net is None:
            import torch

            torch.manual_seed(0)
            self._net = torch.nn.Sequential(*[m for _ in range(self.layers) for m in
                                              (torch.nn.Linear(256, 256), torch.nn.ReLU())])
        return self._net

    def recommend(self, requests):
        if self.kind != "torch":
            out = []
            for r in requests:
                end = time.thread_time() + self.cost_s
                while time.thread_time() < end:
                    pass
                out.append(Response(text=f"1. {r.messages[-1].content}"))
            return out
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            out = []
            for r in requests:
                text = r.messages[-1].content
                x = torch.arange(16 * 256, dtype=torch.float32).reshape(16, 256)
                x = x % (sum(text.encode()) % 97 + 1) / 97.0
                with torch.no_grad():
                    out.append(Response(text=f"1. {text} ({float(self._mlp()(x).sum()):.6g})"))
            return out
        finally:
            torch.set_num_threads(threads)


def _timed_run(rec: Recommender, reqs: list[Request], batch_size: int, backend: str,
               workers: int) -> tuple[float, dict[str, str]]:
    """End to end through the engine on a fresh cache (Ray: actor start included)."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(rec, cache_path=Path(tmp) / "c.sqlite", batch_size=batch_size,
                        progress=False, backend=backend, ray_workers=workers)
        try:
            t0 = time.perf_counter()
            answers = engine.run(reqs)
            seconds = time.perf_counter() - t0
        finally:
            engine.close()
    return seconds, {k: a.response.text for k, a in answers.items()}


def _steady_run(rec: Recommender, batches: list[list[Request]],
                workers: int) -> tuple[float, list[str]]:
    """Batches only: the model is warm (local) or the actors have answered once (Ray)."""
    if workers == 0:
        call_recommender(rec, batches[0][:1])
        t0 = time.perf_counter()
        outs = [call_recommender(rec, batch) for batch in batches]
        seconds = time.perf_counter() - t0
    else:
        pool = RayPool(rec, workers)
        try:
            list(pool.map([(i, batches[0][:1]) for i in range(workers)]))  # one per actor
            t0 = time.perf_counter()
            done = {i: out for i, out, _ in pool.map(list(enumerate(batches)))}
            seconds = time.perf_counter() - t0
        finally:
            pool.close()
        outs = [done[i] for i in range(len(batches))]
    return seconds, [r.text for out in outs for r in out]


def _start_ray() -> float:
    """Start a local Ray instance with one CPU per core here; returns the seconds it took."""
    import ray

    # The recommender class travels by value, so workers need not import this script.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    return time.perf_counter() - t0


def run(quick: bool = False, n_requests: int | None = None, cost_ms: float = 5.0,
        batch_size: int = 16, repeats: int | None = None, kinds: tuple[str, ...] = ("spin",
                                                                                      "torch")
        ) -> list[dict]:
    """Rows {what, value, unit, note}: Ray start, then per recommender Ray/local wall time."""
    import ray

    n = n_requests or (64 if quick else 256)
    repeats = repeats or (1 if quick else 3)
    cores = os.cpu_count() or 1
    reqs = [Request.from_prompt(f"title {i}") for i in range(n)]
    rows: list[dict] = []
    started = not ray.is_initialized()
    start_s = _start_ray() if started else 0.0
    try:
        if started:
            rows.append({"what": "ray: start a local instance", "value": round(start_s, 2),
                         "unit": "s", "note": f"ray.init, {cores} CPUs, once per audit"})
        batches = [reqs[i:i + batch_size] for i in range(0, n, batch_size)]
        for kind in kinds:
            rec = CostlyRecommender(kind, cost_ms)
            call_recommender(rec, reqs[:1])  # imports and builds here before any timing
            configs = [("local", 1), ("ray", 1)] + ([("ray", cores)] if cores > 1 else [])
            total = {c: float("inf") for c in configs}
            steady = {c: float("inf") for c in configs}
            reference, steady_reference = None, None
            for _ in range(repeats):
                for backend, workers in configs:
                    seconds, texts = _timed_run(rec, reqs, batch_size, backend, workers)
                    reference = reference or texts
                    if texts != reference:
                        raise RuntimeError(f"{backend} x{workers} answers differ from local")
                    total[(backend, workers)] = min(total[(backend, workers)], seconds)
                    seconds, outs = _steady_run(rec, batches, workers if backend == "ray" else 0)
                    steady_reference = steady_reference or outs
                    if outs != steady_reference:
                        raise RuntimeError(f"{backend} x{workers} answers differ from local")
                    steady[(backend, workers)] = min(steady[(backend, workers)], seconds)
            work = f"{cost_ms:g} ms CPU/request" if kind == "spin" else "tiny MLP/request"
            for what, best, scope in (("end to end", total, "actor start included"),
                                      ("batches only", steady, "actors warm")):
                local = best[("local", 1)]
                for (backend, workers), seconds in best.items():
                    if backend == "local":
                        continue
                    rows.append({
                        "what": f"ray, {workers} actor(s) vs local, {kind}, {what}",
                        "value": round(seconds / local, 3), "unit": "x local wall time",
                        "note": f"{seconds:.2f} s vs {local:.2f} s; {n} requests ({work}), "
                                f"batch {batch_size}, {cores} cores, {scope}, best of "
                                f"{repeats}; answers identical to local"})
    finally:
        if started:
            ray.shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--cost-ms", type=float, default=5.0, help="CPU time per request (spin)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--kinds", default="spin,torch", help="recommenders: spin, torch")
    args = parser.parse_args()
    rows = run(args.quick, args.requests, args.cost_ms, args.batch_size, args.repeats,
               tuple(k for k in args.kinds.split(",") if k))
    for row in rows:
        print(f"{row['what']:44s} {row['value']:7.3f} {row['unit']}   {row['note']}")


if __name__ == "__main__":
    main()
