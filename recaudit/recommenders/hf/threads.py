"""Torch threads from the cores actually free at load, where that never changes an output.

On a loaded machine the intra-op threads of a CPU model wait for each other at every
operation's barrier: on 2 cores under a load average of 5-10 the demo took 54 minutes instead of
5. ``model_options.threads`` (hf/gguf, CPU only):

* ``auto`` (default): the usable cores minus those busy at load (:func:`busy_cores`: the median
  of a few samples of the runnable tasks in ``/proc/loadavg``, less this process), at least 1;
  ``OMP_NUM_THREADS`` set by the user wins;
* an integer: that many, unchecked (the user's choice; it is not in the fingerprint, so a
  count whose numbers differ can mix with cached answers of another count).

Fewer threads must not change an output, or a rerun under another load would compute answers
that disagree with its cached ones. :func:`threads_keep_outputs` checks it on the model's own
path: a few fixed prompts generated (tokens and log-probs, bitwise) under the chosen and the
full thread count. When they differ the full count is kept and the reason recorded (on a 2-core
AMD EPYC with torch 2.13, MKL's linears and log-softmax agree at 1 and 2 threads but CPU SDPA
does not, so SmolLM2 keeps both threads there). The count is not in the fingerprint: where it
is used, it changes no output.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable

__all__ = ["ThreadChoice", "busy_cores", "choose_threads", "threads_keep_outputs"]

_SAMPLES = 5
_SAMPLE_GAP_S = 0.05


class ThreadChoice:
    """The intra-op thread count a model runs with, and why (one phrase for the reports)."""

    def __init__(self, threads: int, reason: str) -> None:
        self.threads = threads
        self.reason = reason

    def describe(self) -> str:
        """Return ``"threads N (reason)"``."""
        return f"threads {self.threads} ({self.reason})"


def _runnable_now() -> int | None:
    """Runnable tasks system-wide now (4th field of /proc/loadavg, ``running/total``)."""
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            return int(fh.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def busy_cores(samples: int = _SAMPLES, gap: float = _SAMPLE_GAP_S) -> int | None:
    """Return the cores busy with other work (None where Linux's /proc is absent).

    The median runnable count over ``samples`` looks ``gap`` seconds apart, less one: this
    process, which is running while it looks.
    """
    seen = []
    for i in range(samples):
        n = _runnable_now()
        if n is None:
            return None
        seen.append(n)
        if i + 1 < samples:
            time.sleep(gap)
    return max(0, int(statistics.median(seen)) - 1)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose_threads(requested: int | str, usable: int | None = None,
                   busy: int | None = None) -> ThreadChoice:
    """Return the thread count for ``requested`` (``"auto"`` or a positive integer).

    ``auto``: ``max(1, usable - busy)`` (``busy`` measured by :func:`busy_cores` when not
    given); ``OMP_NUM_THREADS`` set in the environment is the user's choice and is kept.

    Examples
    --------
    >>> choose_threads("auto", usable=2, busy=0).describe()
    'threads 2 (auto: 2 of 2 cores free at load)'
    >>> choose_threads("auto", usable=2, busy=7).threads
    1
    >>> choose_threads(3, usable=2).describe()
    'threads 3 (set by model_options.threads)'
    """
    usable = usable or _usable_cores()
    if requested != "auto":
        return ThreadChoice(int(requested), "set by model_options.threads")
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return ThreadChoice(int(env), "OMP_NUM_THREADS")
    busy = busy_cores() if busy is None else busy
    if busy is None:
        return ThreadChoice(usable, f"auto: all {usable} cores, load unknown")
    free = max(1, usable - busy)
    return ThreadChoice(free, f"auto: {free} of {usable} cores free at load")


def threads_keep_outputs(run: Callable[[], Any], threads: int, full: int) -> bool:
    """Check that ``run()`` gives equal results under ``threads`` and ``full`` torch threads.

    ``run`` is the model's own probe (the adapter generates a few fixed prompts through its
    real path: tiles, row-wise attention, log-probs); its results are compared with ``==``
    (token ids and float log-probs: bitwise). The caller's thread count is restored.
    """
    import torch

    if threads == full:
        return True
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(full)
        a = run()
        torch.set_num_threads(threads)
        b = run()
    finally:
        torch.set_num_threads(before)
    return bool(a == b)
