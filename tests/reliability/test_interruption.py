"""An audit SIGKILLed at random points resumes from its cache: same results, nothing recomputed.

Each seed starts ``recaudit audit`` (24 requests, batches of 2, 20 ms per request), waits until
the recommender has logged a random number of computed requests (seed s: in the s-th fifth of
1..24), waits a random 0-40 ms more (so the kill lands mid-batch, between a batch and its cache
write, or after the last request, during the analysis), and kills it with SIGKILL. The rerun in
the same directory must compute exactly the requests the killed run had not committed to the
cache, once each, and write a results.json equal to an uninterrupted run's apart from the
wall-clock fields
(``audit_runs.WALL_CLOCK``: ``provenance.started_at``, ``provenance.finished_at``,
``provenance.engine.seconds``), the file's ``content_sha256`` (a digest over them, checked on
load) and the cache-use counts, which are checked on their own.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from . import audit_runs, tally

DELAY = 0.02  # seconds per request in the killed run: long enough to land kills mid-run


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict, set[str]]:
    run_dir = audit_runs.write_audit(tmp_path_factory.mktemp("uninterrupted"))
    log = run_dir.parent / "uninterrupted.log"
    proc = audit_runs.run_audit(run_dir, log)
    assert proc.returncode == 0, proc.stderr
    computed = audit_runs.computed_keys(log)
    assert len(computed) == len(set(computed)) == audit_runs.N_REQUESTS
    results, use = audit_runs.comparable(audit_runs.load_results(run_dir))
    assert use == {"cached": 0, "computed": audit_runs.N_REQUESTS}
    return results, set(computed)


def kill_after(run_dir: Path, log: Path, n_computed: int, extra_wait: float) -> None:
    """Start the audit, SIGKILL it ``extra_wait`` s after ``n_computed`` requests are logged."""
    proc = subprocess.Popen(audit_runs.audit_command(), cwd=run_dir,
                            env=audit_runs.audit_env(run_dir, log, DELAY),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120  # a hang guard, not a timing assertion
    while (log.read_text(encoding="utf-8").count("\n") if log.exists() else 0) < n_computed:
        if proc.poll() is not None:
            pytest.fail(f"the audit ended (rc {proc.returncode}) before {n_computed} requests "
                        f"were computed: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail("the audit hung")
        time.sleep(0.002)
    time.sleep(extra_wait)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the audit finished before it could be killed"
    tally.add("kills")


@pytest.mark.parametrize("seed", range(5))
def test_killed_audit_resumes_without_recomputing(seed, tmp_path, uninterrupted):
    expected, all_keys = uninterrupted
    rng = random.Random(seed)
    n = audit_runs.N_REQUESTS  # seed s kills in the s-th fifth of the run
    n_computed = rng.randint(1 + seed * n // 5, (seed + 1) * n // 5)
    extra_wait = rng.uniform(0.0, 0.04)
    run_dir = audit_runs.write_audit(tmp_path / "run")
    killed_log, rerun_log = tmp_path / "killed.log", tmp_path / "rerun.log"

    kill_after(run_dir, killed_log, n_computed, extra_wait)
    killed = audit_runs.computed_keys(killed_log)
    cached = audit_runs.cached_keys(run_dir / "cache.sqlite")
    assert len(killed) == len(set(killed)) >= n_computed
    assert cached <= set(killed)  # the cache holds only what the killed run computed

    proc = audit_runs.run_audit(run_dir, rerun_log)
    assert proc.returncode == 0, proc.stderr
    recomputed = audit_runs.computed_keys(rerun_log)
    # exactly the requests the killed run had not cached, each once
    assert sorted(recomputed) == sorted(all_keys - cached)
    results, use = audit_runs.comparable(audit_runs.load_results(run_dir))
    assert use == {"cached": len(cached), "computed": len(all_keys) - len(cached)}
    assert results == expected


#: a per-request (not batched) ``python:`` recommender: the adapter hands each answer to the
#: engine as it returns. It logs each request's key when it starts (``<log>.started``) and when
#: it is done (``<log>``), and sleeps ``RECAUDIT_TEST_DELAY`` seconds in between.
PER_REQUEST = '''\
import os
import random
import time

from recaudit.recommenders.base import Request

__recaudit_version__ = "1"
TITLES = {titles!r}


def _log(path, key):
    with open(path, "a", encoding="utf-8") as log:
        log.write(key + "\\n")


def recommend(messages, k):
    key = Request(messages, k=k).key()
    _log(os.environ["RECAUDIT_TEST_LOG"] + ".started", key)
    time.sleep(float(os.environ.get("RECAUDIT_TEST_DELAY", "0")))
    _log(os.environ["RECAUDIT_TEST_LOG"], key)
    return random.Random(key).sample(TITLES, k)
'''


def _lines(path: Path) -> int:
    return path.read_text(encoding="utf-8").count("\n") if path.exists() else 0


@pytest.mark.parametrize("n_answers", [1, 7])
def test_sigint_after_n_answers_loses_none_of_them(tmp_path, n_answers):
    """A real ``recaudit audit`` process, all 24 requests in one engine batch, gets SIGINT while
    its (n+1)-th request runs: the n finished answers are in the cache (they were lost when the
    cache was written per batch) and the rerun computes only the rest."""
    n = audit_runs.N_REQUESTS
    run_dir = audit_runs.write_audit(tmp_path / "run", batch_size=n)
    (run_dir / "rec.py").write_text(PER_REQUEST.format(titles=audit_runs.TITLES),
                                    encoding="utf-8")
    log, rerun_log = tmp_path / "interrupted.log", tmp_path / "rerun.log"
    started = Path(f"{log}.started")
    proc = subprocess.Popen(audit_runs.audit_command(), cwd=run_dir,
                            env=audit_runs.audit_env(run_dir, log, delay=0.3),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120  # a hang guard, not a timing assertion
    while _lines(started) <= n_answers:  # the (n+1)-th has started: n are done and handed over
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the audit ended or hung (rc {proc.returncode}): {proc.stderr.read()}")
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted; finished requests are cached" in err
    tally.add("kills")

    finished = audit_runs.computed_keys(log)  # in the order they finished
    cached = audit_runs.cached_keys(run_dir / "cache.sqlite")
    assert n_answers <= len(finished) < n
    # none of the first n is lost (the (n+1)-th started after they were handed over); a later
    # one is cached too unless the signal landed between its return and its cache write
    assert set(finished[:n_answers]) <= cached <= set(finished)
    proc = audit_runs.run_audit(run_dir, rerun_log)
    assert proc.returncode == 0, proc.stderr
    recomputed = audit_runs.computed_keys(rerun_log)
    assert len(recomputed) == n - len(cached) and not set(recomputed) & cached
    _, use = audit_runs.comparable(audit_runs.load_results(run_dir))
    assert use == {"cached": len(cached), "computed": n - len(cached)}
