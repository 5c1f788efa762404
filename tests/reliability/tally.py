"""How big the reliability suite is: each test adds what it tried, the conftest prints the sums.

Kinds (fixed, so the closing line is always the same shape): ``bad inputs`` (a malformed config,
catalog, model spec, results file, recording... run through the real entry point), ``faults
injected`` (endpoint faults served by the test server), ``kills`` (SIGKILLed audit processes),
``hypothesis examples`` (property-test bodies executed).
"""

from __future__ import annotations

from collections import Counter

KINDS = ("bad inputs", "faults injected", "kills", "hypothesis examples")

counts: Counter[str] = Counter()


def add(kind: str, n: int = 1) -> None:
    """Count ``n`` more of ``kind`` (one of :data:`KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown tally kind {kind!r}; one of {KINDS}")
    counts[kind] += n


def line() -> str:
    return "reliability suite: " + ", ".join(f"{counts[k]} {k}" for k in KINDS)
