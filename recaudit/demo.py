"""``make demo``: audit both bundled models with the standard suite and write one report.

A generative LLM (SmolLM2-135M-Instruct) and an embedding model (all-MiniLM-L6-v2) run the
same probes (``examples/demo.yaml``); each result is saved under ``reports/demo/<model>/`` and
one side-by-side report is written to ``reports/demo/index.html``. Rerunning is fast: every
model response is cached.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from .errors import RecauditError

MODELS = ("smollm2", "minilm")
SAMPLE_PROMPT = ("I am a fan of The Matrix and Toy Story. Please provide me with a list of 10 "
                 "movie titles in order of preference that you think I might like.")


def sample_list(rec: Any, catalog: Any) -> None:
    """Print a grounded top-10 list from one model for the sample prompt."""
    from .cli import render_list
    from .engine import Engine
    from .recommenders import Request

    req = Request.from_prompt(SAMPLE_PROMPT, k=10,
                              system="You are a movie recommendation system.")
    engine = Engine(rec, catalog, progress=False)
    try:
        answer = engine.run([req])[req.key()]
    finally:
        engine.close()
    print(render_list(rec.spec, answer, catalog, 10))


def tell(spec: str, result: Any) -> None:
    """Print the audit's story (:func:`recaudit.report.story.story`), one line per paragraph."""
    from .report.story import story

    for title, lines in story(result).sections():
        print(f"[demo] {spec}: {title}. {' '.join(lines)}")


def main(argv: list[str] | None = None) -> int:
    """Run the demo: ``argv`` is ``[CONFIG [OUT]]``; return the exit code."""
    from .audit import build_recommender, load_catalog, run_audit
    from .config import load_config
    from .report import render_html, save_result

    argv = sys.argv[1:] if argv is None else argv
    root = Path(__file__).resolve().parents[1]
    config = Path(argv[0]) if argv else root / "examples" / "demo.yaml"
    out = Path(argv[1]) if len(argv) > 1 else root / "reports" / "demo"
    results = []
    t0 = time.perf_counter()
    try:
        print(f"[demo] prompt: {SAMPLE_PROMPT}")
        for spec in MODELS:
            t = time.perf_counter()
            cfg = load_config(config, overrides={"model": spec})
            rec = build_recommender(cfg)  # loaded once: the sample list, then the audit
            catalog = load_catalog(cfg)
            sample_list(rec, catalog)
            result = run_audit(cfg, recommender=rec, catalog=catalog,
                               command_line=f"python -m recaudit.demo ({spec})")
            save_result(result, out / spec)
            results.append(result)
            print(f"[demo] {spec}: {time.perf_counter() - t:.1f} s "
                  f"({result.provenance.engine.get('computed', 0)} requests computed, "
                  f"{result.provenance.engine.get('cached', 0)} cached)")
            tell(spec, result)
        path = render_html(results, out / "index.html")
    except RecauditError as err:
        print(f"recaudit: error: {err}", file=sys.stderr)
        return err.exit_code
    size = path.stat().st_size
    print(f"[demo] done in {time.perf_counter() - t0:.1f} s; "
          f"report: {path} ({size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
