"""Record the demo's model answers and the metric estimates of two audits, to pin the analysis.

Run once (``.venv/bin/python tests/data/capture_pinned.py``) before a change to the analysis
code: it writes ``tests/data/pinned/``:

* ``demo-answers.json``: every response the two demo models gave (by request key), so the demo
  audit can be replayed offline in a test without the models;
* ``demo-<model>.json`` and ``custom-recommender.json``: every metric record's estimate, CI and
  p-values as the analysis computed them at capture time.

``tests/test_pinned.py`` replays the answers through the current analysis and compares.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
OUT = Path(__file__).resolve().parent / "pinned"
FIELDS = ("estimate", "ci_low", "ci_high", "p_value", "p_adjusted", "n")


def metric_rows(result) -> list[dict]:
    """One row per metric record: where it is (probe, metric, attribute, value, k) and numbers."""
    rows = []
    for p in result.probes:
        for m in p.metrics:
            rows.append({"probe": p.id, "metric": m.metric, "attribute": m.attribute,
                         "value": m.value, "k": m.k, **{f: getattr(m, f) for f in FIELDS}})
    return rows


class Recording:
    """Wraps a recommender's ``recommend`` and keeps every response it returns, by request key."""

    def __init__(self, recommend) -> None:
        self.inner = recommend
        self.answers: dict[str, dict] = {}

    def recommend(self, requests):
        out = self.inner(requests)
        for r, resp in zip(requests, out):
            self.answers[r.key()] = resp.to_dict()
        return out


def main() -> None:
    from recaudit.audit import build_recommender, run_audit
    from recaudit.catalog import Catalog
    from recaudit.config import load_config

    OUT.mkdir(parents=True, exist_ok=True)
    catalog = Catalog.from_movielens()
    answers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in ("smollm2", "minilm"):
            cfg = load_config(ROOT / "tests" / "data" / "pinned" / "demo.yaml",
                              overrides={"model": model, "engine": {"cache": f"{tmp}/c.sqlite"}})
            rec = build_recommender(cfg)
            recording = Recording(rec.recommend)
            rec.recommend = recording.recommend  # the engine calls the adapter itself
            result = run_audit(cfg, recommender=rec, catalog=catalog, progress=False)
            answers[model] = recording.answers
            (OUT / f"demo-{model}.json").write_text(json.dumps(metric_rows(result), indent=0))
            print(model, len(recording.answers), "answers,", len(metric_rows(result)), "records")
        cfg = load_config(ROOT / "examples" / "custom-recommender.yaml",
                          overrides={"engine": {"cache": f"{tmp}/c2.sqlite"}})
        result = run_audit(cfg, catalog=catalog, progress=False)
        (OUT / "custom-recommender.json").write_text(json.dumps(metric_rows(result), indent=0))
    (OUT / "demo-answers.json").write_text(json.dumps(answers, sort_keys=True))


if __name__ == "__main__":
    main()
