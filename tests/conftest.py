"""Shared test setup: offline hubs, SIGINT, an isolated cache directory, warnings as errors."""

from __future__ import annotations

import os
import signal

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

# hf models choose their threads from the cores free at load (model_options.threads: auto);
# the suite pins torch's own count, so a test's numbers never depend on the machine's load
# (tests/recommenders/test_threads.py lifts this to test the choice)
os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))

# A background job of a non-interactive shell (`sh -c 'make test &'`, a script, some CI runners
# and agents) starts with SIGINT ignored, and Python keeps it ignored instead of installing the
# handler that raises KeyboardInterrupt. The tests that send SIGINT (to this process in
# reliability/test_endpoint_faults.py, to an audit subprocess in reliability/test_interruption.py,
# which inherits the ignore through exec) then saw nothing: issue 19's "DID NOT RAISE
# KeyboardInterrupt" after a 30 s wait, passing again when rerun from a terminal. A caught signal
# is reset to the default at exec, so subprocesses get Python's handler too.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session shares one cache dir (so the GGUF dequantization is paid once)."""
    root = os.environ.get("RECAUDIT_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "cache")
    monkeypatch.setenv("RECAUDIT_CACHE_DIR", root)
    yield


# -- the validation runs, in the background ----------------------------------------------------
#: the background job computing every validation world's tally (validation/tallies.py), started
#: once the collected items include the validation test; its JSON lands in the session's tmp
VALIDATION_JOB: dict[str, object] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start ``python -m validation.tallies`` when the validation test is selected.

    Most of the suite runs on one core; the worlds' runs (minutes of one process) use the
    other, instead of holding up the suite when the validation test's turn comes.
    """
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    if not any(item.nodeid.startswith("tests/validation/test_validation.py")
               for item in session.items) or os.environ.get("RECAUDIT_VALIDATION_INLINE"):
        return
    root = Path(__file__).resolve().parents[1]
    factory = getattr(session.config, "_tmp_path_factory", None)  # pytest's tmp_path plugin
    base = factory.getbasetemp() if factory is not None else Path(tempfile.mkdtemp())
    out = base / "validation-tallies.json"
    log = open(out.with_suffix(".log"), "w", encoding="utf-8")  # noqa: SIM115 - kept open
    VALIDATION_JOB.update(out=out, log=log, proc=subprocess.Popen(
        [sys.executable, "-m", "validation.tallies", str(out)], cwd=root, stdout=log,
        stderr=subprocess.STDOUT))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the validation job if the session ends before it does."""
    proc = VALIDATION_JOB.get("proc")
    if proc is not None and proc.poll() is None:  # type: ignore[attr-defined]
        proc.kill()  # type: ignore[attr-defined]
        proc.wait()  # type: ignore[attr-defined]
    log = VALIDATION_JOB.get("log")
    if log is not None:
        log.close()  # type: ignore[attr-defined]
