"""``benchmarks/gpu_check.sh`` (issue 21) in its CPU mode: each CUDA part skipped with the reason.

The script is what runs on a CUDA machine; here its ``--quick`` CPU mode must succeed fast, say
why each of its three parts is skipped, and check that the GPU audit config's ``device: cuda`` is
refused in one line with exit 2 instead of running on the CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from recaudit.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
REASON = "torch.cuda.is_available() is False on this machine"


def test_the_gpu_audit_config_asks_for_cuda_on_the_hf_adapter():
    cfg = load_config(ROOT / "benchmarks" / "gpu_check.yaml")
    assert cfg.model == "smollm2" and cfg.model_options == {"device": "cuda"}
    assert [p.probe for p in cfg.probes] == ["counterfactual"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the script "
                    "would run its GPU parts (minutes)")
def test_gpu_check_quick_skips_each_cuda_part_with_the_reason_and_succeeds(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_OUT=str(tmp_path / "out"))
    t0 = time.perf_counter()
    done = subprocess.run(["bash", str(SCRIPT), "--quick"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - t0
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    for part in ("1: skip the invariance self-check on cuda", "2: skip the audit on cuda",
                 "3: skip the generation bench on cuda"):
        assert f"[gpu_check] {part}: {REASON}" in out, out
    # the CPU-capable check: device: cuda is a one-line exit 2, never a silent CPU run
    assert "exit 2: recaudit: error: model_options.device is cuda" in out, out
    assert "every check passed" in out and "FAIL" not in out
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written
    assert seconds < 60, f"gpu_check.sh --quick took {seconds:.0f} s"
