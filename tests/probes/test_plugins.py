"""A probe of one's own: one module and one YAML suite in a separate package, and nothing else
touched, is listed by ``recaudit probes``, runs, and renders in HTML, Markdown and JUnit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

MODULE = '''
"""A trivial probe: how long are the lists, by the stated mood of the user?"""
import numpy as np

from recaudit.metrics.specs import declare
from recaudit.probes.kit import Summariser, Table, collect
from recaudit.probes.registry import Probe, ProbeParams, Query, probe
from recaudit.recommenders.base import Request
from recaudit.results import ProbeResult

declare("list_fill", "share of the k slots the list fills", higher_is_worse=False,
        range=(0.0, 1.0))


class Params(ProbeParams):
    moods: list[str] = ["happy", "sad"]
    subjects: list[str] = ["Heat", "Toy Story", "Fargo"]
    k: int = 3


@probe("trivial", tags=["robustness"])
class TrivialProbe(Probe):
    """Lists by stated mood."""

    Params = Params

    def plan(self, ctx):
        p = self.params
        return [Query(f"{s}|{m}", Request.from_prompt(f"I am {m}. Movies like {s}?", k=p.k),
                      {"unit": s, "value": m}) for s in p.subjects for m in p.moods]

    def analyse(self, ctx, queries, answers):
        p = self.params
        res = ProbeResult(id=self.run_id, probe=self.name, suite=self.suite,
                          params=p.model_dump(mode="json"))
        got = collect(queries, answers, p.k)
        res.records = got.records
        kit = Summariser(res, ctx.stats)
        x = np.array([[len(got.lists[f"{s}|{m}"] or []) / p.k for m in p.moods]
                      for s in p.subjects])
        table = Table("list_fill", "mood", list(p.moods), list(p.subjects), x)
        kit.means(table)
        kit.spread(table, "gap")
        return kit.finish(headline=["list_fill_gap"], tags=self.tags,
                          method_notes=["Moods are stated, not inferred."])
'''


def test_a_probe_of_ones_own_is_listed_runs_and_renders(tmp_path):
    pkg = tmp_path / "site"
    (pkg / "trivialprobe").mkdir(parents=True)
    (pkg / "trivialprobe" / "__init__.py").write_text(textwrap.dedent(MODULE))
    dist = pkg / "trivialprobe-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: trivialprobe\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[recaudit.probes]\ntrivial = trivialprobe\n")
    suite = tmp_path / "trivial.yaml"
    suite.write_text("probe: trivial\nparams: {moods: [happy, sad, calm], k: 3}\n")
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(f"model: python:tests.cli_recommenders:constant\n"
                   f"stats: {{n_bootstrap: 100, n_permutations: 99}}\n"
                   f"probes:\n  - probe: trivial\n    suite: {suite}\n"
                   "gates:\n  - {probe: trivial, metric: list_fill_gap, max: 0.5, mode: point}\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(pkg), str(ROOT)])}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "recaudit", *args], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=300)

    listed = cli("probes")
    assert listed.returncode == 0, listed.stderr
    assert "trivial" in listed.stdout and "Lists by stated mood" in listed.stdout
    out = tmp_path / "out"
    run = cli("audit", str(cfg), "--out", str(out), "--no-progress")
    assert run.returncode == 0, run.stderr
    result = json.loads((out / "results.json").read_text())
    (p,) = result["probes"]
    assert p["status"] == "ok" and p["probe"] == "trivial" and p["tags"] == ["robustness"]
    assert p["specs"]["list_fill"]["description"] == "share of the k slots the list fills"
    gap = next(m for m in p["metrics"] if m["metric"] == "list_fill_gap")
    assert gap["estimate"] == 0.0 and gap["table"] and gap["null_p95"] is not None
    html = (out / "index.html").read_text()
    assert "list_fill_gap" in html and "share of the k slots the list fills" in html
    assert "Moods are stated, not inferred." in html
    assert "list\\_fill\\_gap" in (out / "summary.md").read_text()  # Markdown-escaped
    junit = (out / "junit.xml").read_text()
    assert "trivial" in junit and "list_fill_gap" in junit
