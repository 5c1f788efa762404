"""``python -m validation [--out docs/VALIDATION.md]``: run every world and write the document."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .document import render
from .harness import N_RUNS, run_world
from .worlds import WORLDS


def main() -> None:
    """Run each world ``N_RUNS`` times per model and write the validation document."""
    parser = argparse.ArgumentParser(prog="python -m validation", description=__doc__)
    parser.add_argument("--out", default="docs/VALIDATION.md")
    args = parser.parse_args()
    tallies = []
    for world in WORLDS:
        start = time.perf_counter()
        tallies.append(run_world(world, N_RUNS))
        print(f"{world.name}: {len(tallies[-1].metrics)} metrics, "
              f"{time.perf_counter() - start:.0f} s")
    Path(args.out).write_text(render(tallies), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
