"""Every probe's gateable metrics, validated on synthetic models (validation/, docs/VALIDATION.md).

For each world (a probe with an effect-free and a planted-effect model), ``N_RUNS`` seeded runs
of the real probe analysis: the default-mode gate at the no-effect value fails at most 5% of the
effect-free runs and at least 80% of the planted ones (the binomial reading of that rule is in
docs/VALIDATION.md). The runs are computed once per session and shared by the tests below.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

from recaudit.probes.registry import registry
from validation.document import render, table_rows
from validation.harness import N_RUNS, Tally, World, accepts, run_world, run_worlds
from validation.sequential import SECTION
from validation.worlds import WORLDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "VALIDATION.md"
#: counts in the document may differ from a fresh run by this many runs: a run on the edge of a
#: gate can flip where another CPU's floating point breaks a tie the other way
PORTABLE_COUNT_TOLERANCE = 2


@functools.lru_cache(maxsize=None)
def _tallies() -> dict[str, Tally]:
    """Every world's seeded tally, computed once per session.

    By the background job the suite starts at collection (tests/conftest.py,
    ``validation.tallies``) where there is one, else here on the machine's cores.
    """
    import json

    from tests.conftest import VALIDATION_JOB
    from validation.tallies import from_json

    names = [w.name for w in WORLDS]
    proc = VALIDATION_JOB.get("proc")
    if proc is not None:
        rc = proc.wait(timeout=1800)  # type: ignore[attr-defined]
        out = Path(str(VALIDATION_JOB["out"]))
        assert rc == 0 and out.exists(), (
            f"the validation job failed (rc {rc}): {out.with_suffix('.log')}")
        got = {t.world.name: t for t in from_json(json.loads(out.read_text(encoding="utf-8")))}
        return {n: got[n] for n in names}
    return dict(zip(names, run_worlds(names, N_RUNS, workers=min(os.cpu_count() or 1, 4)),
                    strict=True))


def tally(name: str) -> Tally:
    """Return the seeded tally of the world ``name``."""
    return _tallies()[name]


@pytest.mark.parametrize("world", WORLDS, ids=lambda w: w.name)
def test_effect_free_model_rarely_fails_a_default_gate(world: World) -> None:
    t = tally(world.name)
    assert t.runs == N_RUNS >= 100 and t.metrics
    loud = {m: f"{t.false_alarms.get(m, 0)}/{t.runs}" for m in t.metrics if not accepts(t, m)[0]}
    assert not loud, f"{world.name}: false alarms above 5%: {loud}"


@pytest.mark.parametrize("world", WORLDS, ids=lambda w: w.name)
def test_planted_effect_is_detected(world: World) -> None:
    t = tally(world.name)
    weak = {m: f"{t.detections.get(m, 0)}/{t.runs}" for m in t.metrics if not accepts(t, m)[1]}
    assert not weak, f"{world.name}: planted effect ({world.effect}) detected below 80%: {weak}"


@pytest.mark.parametrize("world", WORLDS, ids=lambda w: w.name)
def test_every_run_records_every_gateable_metric(world: World) -> None:
    t = tally(world.name)
    missing = {m: t.measured.get(m, 0) for m in t.metrics if t.measured.get(m, 0) != t.runs}
    assert not missing, f"{world.name}: metrics missing from some runs: {missing}"


def test_every_probe_is_validated() -> None:
    """Every built-in probe has a world (probes other tests register are left out)."""
    builtin = {name for name, cls in registry().items()
               if cls.__module__.startswith("recaudit.probes.")}
    assert len(builtin) >= 7 and {w.probe for w in WORLDS} == builtin


def test_the_acceptance_rule_can_fail() -> None:
    """A world whose 'effect-free' model is the planted one must be rejected for false alarms."""
    world = WORLDS[0]
    biased = World(world.name, world.probe, world.params, world.planted, world.planted,
                   world.effect, world.catalog, world.capabilities)
    t = run_world(biased, n_runs=10)
    assert not all(accepts(t, m)[0] for m in t.metrics)


def test_validation_document_is_current() -> None:
    assert DOC.exists(), "docs/VALIDATION.md is missing: run `python -m validation`"
    written = DOC.read_text(encoding="utf-8").split(SECTION)[0].rstrip() + "\n"
    fresh = render([tally(w.name) for w in WORLDS])
    old_rows, new_rows = table_rows(written), table_rows(fresh)
    assert new_rows and old_rows.keys() == new_rows.keys(), (
        "docs/VALIDATION.md lists other worlds or metrics: run `python -m validation`")
    moved = {k: (old_rows[k], new_rows[k]) for k in new_rows
             if any(abs(a - b) > PORTABLE_COUNT_TOLERANCE
                    for a, b in zip(old_rows[k], new_rows[k], strict=True))}
    assert not moved, f"docs/VALIDATION.md is stale (written, fresh): {moved}"
    prose = [line for line in written.splitlines() if not line.startswith("| ")]
    assert prose == [line for line in fresh.splitlines() if not line.startswith("| ")], (
        "docs/VALIDATION.md's text is stale: run `python -m validation`")
