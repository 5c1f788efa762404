"""A small audit of a ``python:`` recommender run as ``python -m recaudit audit`` in a directory.

Shared by the interruption, cache-corruption and determinism tests. :func:`write_audit` lays out
a run directory with relative paths only (``audit.yaml``, ``items.csv``, ``rec.py``,
``cache.sqlite``, ``out/``), so two directories give byte-identical configs and command lines.
The recommender sleeps ``RECAUDIT_TEST_DELAY`` seconds per request and appends each computed
request's cache key (``Request.key()``) to the file named by ``RECAUDIT_TEST_LOG``; its answer
is a function of that key alone.
"""

from __future__ import annotations

import copy
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from recaudit.results import AuditResult

TITLES = ["Alpha Station", "Blue Harbor", "Cold Summit", "Desert Echo", "Ember Road",
          "Frozen Lake", "Golden Hour", "Hidden Valley", "Iron Gate", "Jade River",
          "Kite Runner Days", "Lost Signal", "Midnight Train", "Northern Lights"]
SUBJECTS = TITLES[:8]
N_REQUESTS = len(SUBJECTS) * 3  # a neutral prompt and two gender values per subject

RECOMMENDER = '''\
import os
import random
import time

__recaudit_version__ = "1"
TITLES = {titles!r}


def recommend(requests):
    out = []
    for req in requests:
        time.sleep(float(os.environ.get("RECAUDIT_TEST_DELAY", "0")))
        key = req.key()
        out.append(random.Random(key).sample(TITLES, req.k))
        with open(os.environ["RECAUDIT_TEST_LOG"], "a", encoding="utf-8") as log:
            log.write(key + "\\n")
    return out


recommend.batched = True
'''

CONFIG = """\
name: reliability
model: python:rec.py:recommend
engine: {{cache: cache.sqlite, progress: false, batch_size: {batch_size}}}
stats: {{n_bootstrap: 200, n_permutations: 99, min_group_size: 5, seed: 0}}
catalog: {{source: csv, path: items.csv}}
probes:
  - probe: counterfactual
    params:
      k: 6
      similarities: [jaccard, prag_star]
      n_examples: 2
      attributes: {{gender: [a female, a male]}}
      subjects: {{source: inline, items: [{subjects}]}}
out: out
"""

#: Fields of results.json that measure the wall clock, removed before comparing two runs.
WALL_CLOCK = (("provenance", "started_at"), ("provenance", "finished_at"),
              ("provenance", "engine", "seconds"))
#: Digests of the whole file (wall-clock fields included), removed when present; the file is
#: first loaded with ``AuditResult.load``, which checks them.
DIGESTS = ("content_sha256",)
#: Fields that say how this run used the cache: taken out by :func:`comparable` and checked
#: by the tests against what the run should have found cached.
CACHE_USE = (("provenance", "engine", "cached"), ("provenance", "engine", "computed"))


def write_audit(run_dir: Path, batch_size: int = 2) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "items.csv").write_text(
        "id,title\n" + "".join(f"{i},{t}\n" for i, t in enumerate(TITLES)), encoding="utf-8")
    (run_dir / "rec.py").write_text(RECOMMENDER.format(titles=TITLES), encoding="utf-8")
    (run_dir / "audit.yaml").write_text(
        CONFIG.format(batch_size=batch_size, subjects=", ".join(SUBJECTS)), encoding="utf-8")
    return run_dir


def audit_command(*extra: str) -> list[str]:
    return [sys.executable, "-m", "recaudit", "audit", "audit.yaml", "--format", "json", *extra]


def audit_env(run_dir: Path, log: Path, delay: float = 0.0) -> dict[str, str]:
    """The environment of an audit subprocess: offline, the test session's cache directory
    (or one in ``run_dir``), the recommender's log file and per-request delay."""
    cache_dir = os.environ.get("RECAUDIT_CACHE_DIR") or str(run_dir / ".recaudit-cache")
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "RECAUDIT_CACHE_DIR": cache_dir, "RECAUDIT_TEST_LOG": str(log),
            "RECAUDIT_TEST_DELAY": str(delay)}


def run_audit(run_dir: Path, log: Path, *extra: str, delay: float = 0.0,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(audit_command(*extra), cwd=run_dir, capture_output=True, text=True,
                          env={**audit_env(run_dir, log, delay), **(env or {})}, timeout=120)


def computed_keys(log: Path) -> list[str]:
    """Request keys the recommender computed, in order (a key twice = computed twice)."""
    if not log.exists():
        return []
    lines = log.read_text(encoding="utf-8").splitlines()
    assert all(len(line) == 64 for line in lines), lines  # no torn log lines
    return lines


def cached_keys(cache: Path) -> set[str]:
    """Request keys in a response cache file, read with plain sqlite3 (committed rows only)."""
    db = sqlite3.connect(cache)
    try:
        return {row[0] for row in db.execute("SELECT request_key FROM responses")}
    finally:
        db.close()


def load_results(run_dir: Path) -> dict[str, Any]:
    """The run's results.json as parsed JSON, after ``AuditResult.load`` accepted it."""
    path = run_dir / "out" / "results.json"
    AuditResult.load(path)  # schema and integrity hash
    return json.loads(path.read_text(encoding="utf-8"))


def comparable(results: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``results`` without the :data:`WALL_CLOCK`, :data:`DIGESTS` and :data:`CACHE_USE`
    fields, and the cache-use fields themselves (``{"cached": n, "computed": m}``)."""
    out = copy.deepcopy(results)
    for path in WALL_CLOCK:
        _pop(out, path)
    for key in DIGESTS:
        out.pop(key, None)
    use = {path[-1]: _pop(out, path) for path in CACHE_USE}
    return out, use


def _pop(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc.pop(path[-1])  # KeyError if the field is gone: the list above is stale
