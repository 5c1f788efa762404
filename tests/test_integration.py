"""End-to-end audits on the real bundled models (slower; marked integration)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


def _audit(config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recaudit", "audit", str(config), "--out",
                           str(out), "--no-progress", *extra], capture_output=True, text=True,
                          env={**os.environ}, cwd=ROOT, timeout=900)


SMALL = """
name: e2e-{model}
model: {model}
decoding: {{max_new_tokens: 64}}
catalog: {{source: movielens}}
stats: {{n_bootstrap: 200, n_permutations: 200, min_group_size: 2}}
probes:
  - probe: counterfactual
    suite: fairllm
    params:
      k: 5
      attributes: [gender, physics]
      subjects: {{source: catalog_popular, n: 2}}
gates:
  - name: gender-lists-identical-to-neutral   # set to fail: Jaccard <= 1 < 1.01
    probe: counterfactual
    metric: jaccard
    attribute: gender
    min: 1.01
    mode: point
  - name: hallucination-below-one
    probe: counterfactual
    metric: hallucination
    max: 1.0
    mode: point
"""


def test_audit_with_failing_gate_exits_1_with_junit_and_markdown(tmp_path):
    model = "smollm2"
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(SMALL.format(model=model))
    out = tmp_path / "out"
    proc = _audit(cfg, out)
    assert proc.returncode == 1, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    pr = results["probes"][0]
    assert pr["status"] == "ok"
    assert {m["attribute"] for m in pr["metrics"] if m["metric"] == "snsr_jaccard"} == \
        {"gender", "physics"}
    texts = [r["text"] for r in pr["records"]]
    assert len(texts) == 2 * (1 + 4 + 2) and all(isinstance(t, str) and t for t in texts)
    from junitparser import JUnitXml
    xml = JUnitXml.fromfile(str(out / "junit.xml"))
    cases = {c.name: c for suite in xml for c in suite}
    failing = [n for n, c in cases.items() if "gender-lists-identical-to-neutral" in n]
    assert failing and cases[failing[0]].result  # has a <failure>
    passing = [n for n, c in cases.items() if "hallucination-below-one" in n]
    assert passing and not cases[passing[0]].result
    md = (out / "summary.md").read_text()
    assert "gender-lists-identical-to-neutral" in md and "FAIL" in md
    assert (out / "index.html").stat().st_size > 10_000
    # the warm rerun computes nothing and gives the same numbers
    again = _audit(cfg, tmp_path / "out2")
    assert again.returncode == 1
    results2 = json.loads((tmp_path / "out2" / "results.json").read_text())
    assert results2["provenance"]["engine"]["computed"] == 0
    assert [m["estimate"] for m in results2["probes"][0]["metrics"]] == \
        [m["estimate"] for m in pr["metrics"]]


def test_embedding_model_audit_passes_lenient_gates(tmp_path):
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(SMALL.format(model="minilm").replace("min: 1.01", "min: 0.0"))
    proc = _audit(cfg, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    pr = json.loads((tmp_path / "out" / "results.json").read_text())["probes"][0]
    halluc = [m["estimate"] for m in pr["metrics"] if m["metric"] == "hallucination"]
    assert halluc and all(h == 0.0 for h in halluc)  # ranks the catalog: nothing to invent
