"""``python -m validation [--out docs/VALIDATION.md]``: run every world and write the document."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from .document import render
from .harness import N_RUNS, run_worlds
from .worlds import WORLDS


def main() -> None:
    """Run each world ``N_RUNS`` times per model and write the validation document."""
    parser = argparse.ArgumentParser(prog="python -m validation", description=__doc__)
    parser.add_argument("--out", default="docs/VALIDATION.md")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes (default: every CPU)")
    parser.add_argument("--keep-counts", action="store_true",
                        help="also write the raw counts beside the document (<out>.counts.json)")
    args = parser.parse_args()
    start = time.perf_counter()
    tallies = run_worlds([w.name for w in WORLDS], N_RUNS, workers=args.workers)
    print(f"{len(WORLDS)} worlds x {N_RUNS} runs in {time.perf_counter() - start:.0f} s")
    for t in tallies:
        print(f"  {t.world.name}: {len(t.metrics)} metrics, {t.seconds:.0f} s of compute")
    Path(args.out).with_suffix(".counts.json").write_text(json.dumps(
        [{"world": t.world.name, "runs": t.runs, "false_alarms": t.false_alarms,
          "detections": t.detections, "measured": t.measured} for t in tallies], indent=1),
        encoding="utf-8") if args.keep_counts else None
    from .sequential import SECTION  # its section is python -m validation.sequential's: kept

    old = Path(args.out).read_text(encoding="utf-8") if Path(args.out).exists() else ""
    kept = old[old.index(SECTION):] if SECTION in old else ""
    Path(args.out).write_text(render(tallies) + ("\n" + kept if kept else ""), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
