"""The response cache survives a torn write; a damaged cache is refused or repaired, never trusted.

* Torn write: a process holding the cache open (``ResponseCache``, WAL mode, a 64 KiB page cache
  so the transaction spills into the WAL) overwrites every cached answer with a wrong one plus
  ~4 MB of padding rows and is SIGKILLed before committing. The rerun recomputes nothing and its
  results equal the clean run's: the uncommitted frames are ignored.
* A damaged file (random bytes over the header, truncated, not SQLite, a wrong ``responses``
  schema, another application's database) is exit 2 with one line naming the file and both ways
  out; ``--cache OTHER`` leaves it untouched, ``--fresh-cache`` moves it (and its ``-wal``)
  aside to ``<name>.corrupt-<timestamp>`` and recomputes. Both give the clean run's answers.
* A garbage row (not JSON, not UTF-8, the wrong shape, a cached failure) is skipped with one
  warning line and recomputed, then overwritten: never returned as an answer.
"""

from __future__ import annotations

import random
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from recaudit.cli import main

from . import audit_runs, tally

AUDIT = ["audit", "audit.yaml", "--format", "json"]


def run_in_process(run_dir: Path, log: Path, monkeypatch, capsys, *extra: str):
    """``recaudit audit`` through :func:`recaudit.cli.main` in ``run_dir``: (code, stderr)."""
    monkeypatch.chdir(run_dir)
    monkeypatch.setenv("RECAUDIT_TEST_LOG", str(log))
    monkeypatch.setenv("RECAUDIT_TEST_DELAY", "0")
    capsys.readouterr()
    code = main([*AUDIT, *extra])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, list]:
    """A finished audit: its cache file (closed, checkpointed) and its probes' results."""
    run_dir = audit_runs.write_audit(tmp_path_factory.mktemp("clean"))
    proc = audit_runs.run_audit(run_dir, run_dir.parent / "clean.log")
    assert proc.returncode == 0, proc.stderr
    assert not Path(f"{run_dir / 'cache.sqlite'}-wal").exists()
    return run_dir / "cache.sqlite", audit_runs.load_results(run_dir)["probes"]


TORN_WRITER = """\
import json, os, signal, sys
from recaudit.engine import ResponseCache

cache = ResponseCache(sys.argv[1])
cache.db.execute("PRAGMA cache_size=-64")  # KiB: dirty pages spill into the WAL
model, decoding = cache.db.execute("SELECT model, decoding FROM responses").fetchone()
keys = [r[0] for r in cache.db.execute("SELECT request_key FROM responses")]
wrong = json.dumps({"text": "1. Lost Signal\\n2. Iron Gate"})


def rows():
    for key in keys:  # a wrong answer for every cached request
        yield model, decoding, key, "{}", wrong, 0.0
    for i in range(2000):
        yield model, decoding, f"padding-{i}", "{}", "x" * 2000, 0.0
    os.kill(os.getpid(), signal.SIGKILL)  # inside the transaction, before COMMIT


cache.db.execute("BEGIN")
cache.db.executemany("INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?)", rows())
"""


def test_torn_write_leaves_the_committed_cache(tmp_path, clean):
    cache, _ = clean
    run_dir = audit_runs.write_audit(tmp_path / "run")
    baseline_log = tmp_path / "baseline.log"
    assert audit_runs.run_audit(run_dir, baseline_log).returncode == 0
    expected, _ = audit_runs.comparable(audit_runs.load_results(run_dir))
    proc = subprocess.run([sys.executable, "-c", TORN_WRITER, "cache.sqlite"], cwd=run_dir,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    tally.add("kills")
    wal = Path(f"{run_dir / 'cache.sqlite'}-wal")
    assert wal.stat().st_size > 1_000_000  # the torn transaction reached the disk

    rerun_log = tmp_path / "rerun.log"
    proc = audit_runs.run_audit(run_dir, rerun_log)
    assert proc.returncode == 0, proc.stderr
    assert audit_runs.computed_keys(rerun_log) == []
    results, use = audit_runs.comparable(audit_runs.load_results(run_dir))
    assert use == {"cached": audit_runs.N_REQUESTS, "computed": 0}
    assert results == expected
    assert audit_runs.cached_keys(run_dir / "cache.sqlite") == audit_runs.cached_keys(cache)


def _files(run_dir: Path, name: str) -> dict[str, bytes]:
    """The bytes of a database file and its WAL. A read-only open may add an empty WAL and the
    ``-shm`` index (SQLite's scratch), which are left out."""
    return {p.name: p.read_bytes() for p in (run_dir / name, run_dir / f"{name}-wal")
            if p.exists() and (p.stat().st_size or p.name == name)}


def _sqlite(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


def _random_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:100] = random.Random(0).randbytes(100)
    path.write_bytes(bytes(data))
    Path(f"{path}-wal").write_bytes(random.Random(1).randbytes(4096))  # a stale WAL beside it


def _truncated(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def _not_sqlite(path: Path) -> None:
    path.write_text("id,title\n0,Alpha Station\n" * 200, encoding="utf-8")


def _wrong_schema(path: Path) -> None:
    path.unlink()
    _sqlite(path, "CREATE TABLE responses (id INTEGER PRIMARY KEY, payload TEXT)",
            "INSERT INTO responses (payload) VALUES ('1. Lost Signal')")


def _foreign(path: Path) -> None:
    path.unlink()
    _sqlite(path, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)",
            "INSERT INTO users (name) VALUES ('ada')")


DAMAGE = {
    "random bytes over the header": (_random_header, "(file is not a database)"),
    "truncated to half": (_truncated, "(database disk image is malformed)"),
    "not an SQLite file": (_not_sqlite, "(file is not a database)"),
    "wrong schema": (_wrong_schema, "(table 'responses' has columns (id, payload), expected "
                                    "(model, decoding, request_key, request, response, created))"),
    "another application's database": (_foreign, "(not a recaudit response cache: tables users)"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_cache_is_refused_then_recovered(damage, tmp_path, clean, monkeypatch, capsys):
    cache, expected = clean
    corrupt, reason = DAMAGE[damage]
    run_dir = audit_runs.write_audit(tmp_path / "run")
    path = run_dir / "cache.sqlite"
    shutil.copy(cache, path)
    corrupt(path)
    damaged = _files(run_dir, "cache.sqlite")
    tally.add("bad inputs")

    log = tmp_path / "refused.log"
    code, err = run_in_process(run_dir, log, monkeypatch, capsys)
    assert code == 2
    assert err.splitlines() == [
        f"recaudit: error: response cache {Path('cache.sqlite')} is unusable {reason}; rerun "
        "with --fresh-cache to move it aside and start an empty cache, or --cache PATH to use "
        "another file"]
    assert not log.exists() and not (run_dir / "out" / "results.json").exists()

    code, err = run_in_process(run_dir, tmp_path / "other.log", monkeypatch, capsys,
                               "--cache", "other.sqlite")
    assert code == 0, err
    assert _files(run_dir, "cache.sqlite") == damaged  # refused and left as it was
    assert audit_runs.load_results(run_dir)["probes"] == expected

    log = tmp_path / "fresh.log"
    code, err = run_in_process(run_dir, log, monkeypatch, capsys, "--fresh-cache")
    assert code == 0, err
    [moved] = [p.name for p in run_dir.glob("cache.sqlite.corrupt-*")
               if not p.name.endswith(("-wal", "-shm"))]
    assert _files(run_dir, moved) == {name.replace("cache.sqlite", moved): data
                                      for name, data in damaged.items()}
    assert err.splitlines()[0] == (f"recaudit: warning: unusable response cache "
                                   f"{Path('cache.sqlite')} moved to {Path(moved)}; "
                                   "starting an empty cache")
    assert len(audit_runs.computed_keys(log)) == audit_runs.N_REQUESTS
    assert audit_runs.load_results(run_dir)["probes"] == expected
    assert len(audit_runs.cached_keys(path)) == audit_runs.N_REQUESTS


GARBAGE = {  # SQL value for the response column, and what the warning says about it
    "not JSON": ("'}{ not json'", "Invalid JSON"),
    "not UTF-8": ("X'80ff00fe'", "Invalid JSON"),
    "a JSON list": ("'[\"1. Lost Signal\"]'", "Input should be an object"),
    "text of the wrong type": ("'{\"text\": 5}'", "text Input should be a valid string"),
    "a cached failure": ("'{\"text\": \"\", \"error\": \"boom\"}'", "error Input should be null"),
    "an unknown field": ("'{\"text\": \"1. Lost Signal\", \"answer\": 1}'",
                         "answer Extra inputs are not permitted"),
}


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_row_is_recomputed_not_returned(garbage, tmp_path, clean, monkeypatch, capsys):
    cache, expected = clean
    value, why = GARBAGE[garbage]
    run_dir = audit_runs.write_audit(tmp_path / "run")
    path = run_dir / "cache.sqlite"
    shutil.copy(cache, path)
    keys = sorted(audit_runs.cached_keys(path))[:3]
    marks = ",".join(f"'{k}'" for k in keys)
    _sqlite(path, f"UPDATE responses SET response = {value} WHERE request_key IN ({marks})")
    tally.add("bad inputs")

    log = tmp_path / "garbage.log"
    code, err = run_in_process(run_dir, log, monkeypatch, capsys)
    assert code == 0, err
    [warning] = [line for line in err.splitlines() if "warning" in line]
    assert warning.startswith(f"recaudit: warning: 3 cached responses in {Path('cache.sqlite')} "
                              "are unreadable and will be recomputed (first: row ")
    assert any(f"(first: row {key[:12]}: " in warning for key in keys) and why in warning
    assert sorted(audit_runs.computed_keys(log)) == keys
    assert audit_runs.load_results(run_dir)["probes"] == expected

    log = tmp_path / "repaired.log"  # the recomputed answers replaced the garbage
    code, err = run_in_process(run_dir, log, monkeypatch, capsys)
    assert code == 0 and "warning" not in err, err
    assert not log.exists()
    assert len(audit_runs.cached_keys(path)) == audit_runs.N_REQUESTS
