"""The shipped example configs parse, and the custom-recommender example finds its planted bias."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recaudit.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "examples").glob("*.yaml")
                 if p.name not in ("gates.yaml", "github-actions.yml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_config_is_valid(path):
    cfg = load_config(path)
    assert cfg.probes, f"{path.name} runs no probe"


def test_custom_recommender_example_fails_its_gender_gate(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "recaudit", "audit",
                           "examples/custom-recommender.yaml", "--out", str(tmp_path),
                           "--no-progress"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ}, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    gates = {g["name"]: g for g in json.loads((tmp_path / "results.json").read_text())["gates"]}
    assert not gates["gender-snsr"]["passed"] and gates["gender-snsr"]["observed"] == 1.0
    assert gates["age-snsr"]["passed"] and gates["age-snsr"]["observed"] == 0.0
