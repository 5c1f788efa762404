"""``python -m validation.tallies OUT.json``: every world's tally, as JSON (for the test suite).

The validation test (tests/validation/test_validation.py) needs every world's ``N_RUNS`` runs.
The suite starts this job in the background when it collects that test, on one process: most
of the suite runs on one core, so the runs use the idle one instead of holding up the suite.
The counts are those of :func:`validation.harness.run_worlds` (the same seeds, in one process).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .harness import N_RUNS, Tally, run_worlds
from .worlds import WORLDS

__all__ = ["to_json", "from_json", "main"]


def to_json(tallies: list[Tally]) -> list[dict[str, Any]]:
    """Return the tallies as plain data (the world by name)."""
    return [{"world": t.world.name, "runs": t.runs, "metrics": t.metrics,
             "false_alarms": t.false_alarms, "detections": t.detections,
             "measured": t.measured, "seconds": t.seconds, "bounds": t.bounds}
            for t in tallies]


def from_json(data: list[dict[str, Any]]) -> list[Tally]:
    """Return the tallies :func:`to_json` wrote (the worlds looked up by name)."""
    by_name = {w.name: w for w in WORLDS}
    return [Tally(by_name[d["world"]], d["runs"], d["metrics"], d["false_alarms"],
                  d["detections"], d["measured"], d["seconds"], d["bounds"]) for d in data]


def main(argv: list[str] | None = None) -> None:
    """Compute every world's tally on one process and write it to ``argv[0]`` (atomically)."""
    out = Path((argv if argv is not None else sys.argv[1:])[0])
    tallies = run_worlds([w.name for w in WORLDS], N_RUNS, workers=1)
    part = out.with_suffix(".part")
    part.write_text(json.dumps(to_json(tallies)), encoding="utf-8")
    part.replace(out)


if __name__ == "__main__":
    main()
