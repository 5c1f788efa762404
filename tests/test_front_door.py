"""The front door, as a new user meets it: exit codes a CI job can trust, probe statuses that
are data, and the defects of issue 19 (unknown item ids, failing or NaN scores), each through
``recaudit audit`` on a real config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recaudit.cli import main
from recaudit.errors import ProbeCannotRun
from recaudit.probes.registry import AuditContext, Probe, ProbeParams, Query
from recaudit.recommenders.base import SCORE
from recaudit.results import ProbeResult

TITLES = ["Heat", "Toy Story", "Alien", "Fargo", "Casino", "Jaws", "Rocky", "Brazil", "Ran",
          "Psycho", "Vertigo", "Rebecca"]

CONFIG = """\
model: python:{rec}:{fn}
engine: {{cache: {cache}, progress: false}}
stats: {{n_bootstrap: 50, n_permutations: 99, min_group_size: 1}}
catalog: {{source: csv, path: {items}{catalog_extra}}}
probes:
{probes}
out: {out}
"""

COUNTERFACTUAL = ("  - probe: counterfactual\n"
                  "    params: {subjects: {source: inline, items: [Heat, Fargo]}, "
                  "attributes: {gender: [a girl, a boy]}, k: 3, similarities: [jaccard], "
                  "n_examples: 2}\n")

RECOMMENDERS = '''\
import math

IDS = {ids!r}


def titles(messages, k):
    return {titles!r}[:k]


def unknown_ids(messages, k):
    """Two catalog ids, then one the catalog lacks."""
    return {{"item_ids": [IDS[0], "no-such-id", IDS[1]][:k]}}


def failing_score(messages, candidates):
    raise RuntimeError("the scorer is down")


def titles_failing_score(messages, k):
    return titles(messages, k)


titles_failing_score.score = failing_score
'''


def write_audit(tmp_path: Path, fn: str, probes: str, interactions: bool = False) -> Path:
    """An audit config of ``probes`` against the python recommender ``fn`` of
    :data:`RECOMMENDERS`, a CSV catalog of :data:`TITLES` (with interactions if asked)."""
    items = tmp_path / "items.csv"
    items.write_text("id,title\n" + "".join(f"{i},{t}\n" for i, t in enumerate(TITLES)),
                     encoding="utf-8")
    extra = ""
    if interactions:  # six users with eight interactions each, the last one held out
        rows = [f"u{u},{(u * 5 + j) % len(TITLES)},4,{j}" for u in range(6) for j in range(8)]
        (tmp_path / "inter.csv").write_text("user_id,item_id,rating,timestamp\n"
                                            + "\n".join(rows) + "\n", encoding="utf-8")
        extra = f", interactions: {tmp_path / 'inter.csv'}, holdout: 1"
    rec = tmp_path / "recs.py"
    rec.write_text(RECOMMENDERS.format(ids=[str(i) for i in range(len(TITLES))],
                                       titles=TITLES[:3]), encoding="utf-8")
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(CONFIG.format(rec=rec, fn=fn, cache=tmp_path / "cache.sqlite", items=items,
                                 catalog_extra=extra, probes=probes, out=tmp_path / "out"),
                   encoding="utf-8")
    return cfg


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # the summary table's cells unwrapped


def audit(cfg: Path, capsys) -> tuple[int, str, str, dict | None]:
    """``recaudit audit cfg``: exit code, stdout, stderr and results.json (None if absent)."""
    capsys.readouterr()
    code = main(["audit", str(cfg), "--no-progress", "--format", "json,md"])
    out, err = capsys.readouterr()
    path = cfg.parent / "out" / "results.json"
    return code, out, err, json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def probes_by_id(results: dict) -> dict[str, dict]:
    return {p["id"]: p for p in results["probes"]}


# -- probes that do not measure ------------------------------------------------------------------
class _NoParams(ProbeParams):
    pass


class NoDataProbe(Probe):
    """A probe that cannot be fed: ``plan`` raises ProbeCannotRun, as the samplers do."""

    Params = _NoParams

    def plan(self, ctx: AuditContext) -> list[Query]:
        raise ProbeCannotRun("no user has 99 training interactions")


class ScoreOnlyProbe(NoDataProbe):
    """A probe this model cannot serve (it cannot score): never planned."""

    requires = frozenset({SCORE})


class BrokenProbe(NoDataProbe):
    """A probe whose analysis fails (a bug, as counterfactual's KeyError on unknown ids was)."""

    def plan(self, ctx: AuditContext) -> list[Query]:
        return []

    def analyse(self, ctx: AuditContext, queries: list[Query], answers: dict) -> ProbeResult:
        raise KeyError("999")


def entry(probe: str, optional: bool = False) -> str:
    return f"  - probe: tests.test_front_door:{probe}\n" + ("    optional: true\n"
                                                             if optional else "")


@pytest.mark.parametrize("probe, status", [("BrokenProbe", "error"), ("NoDataProbe", "skipped")])
def test_a_probe_that_did_not_measure_exits_4_with_every_output_written(tmp_path, capsys, probe,
                                                                       status):
    cfg = write_audit(tmp_path, "titles", COUNTERFACTUAL + entry(probe))
    code, out, err, results = audit(cfg, capsys)
    assert code == 4, err
    assert results is not None and (tmp_path / "out" / "summary.md").is_file()
    p = probes_by_id(results)[f"tests.test_front_door:{probe}"]
    assert p["status"] == status and not p["optional"]
    assert p["skip_kind"] == ("no_data" if status == "skipped" else None)
    assert probes_by_id(results)["counterfactual"]["status"] == "ok"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recaudit: error: 1 probe did not measure ("
                                                   f"tests.test_front_door:{probe} {status}")
    assert "optional: true" in lines[0]
    assert status in out  # the summary table lists it


@pytest.mark.parametrize("probe", ["BrokenProbe", "NoDataProbe"])
def test_an_optional_probe_that_did_not_measure_does_not_fail_the_audit(tmp_path, capsys, probe):
    cfg = write_audit(tmp_path, "titles", COUNTERFACTUAL + entry(probe, optional=True))
    code, out, err, results = audit(cfg, capsys)
    assert code == 0, err
    p = probes_by_id(results)[f"tests.test_front_door:{probe}"]
    assert p["status"] != "ok" and p["optional"] is True
    assert "optional" in out


def test_a_model_that_cannot_serve_a_probe_is_a_capability_skip_and_no_failure(tmp_path, capsys):
    cfg = write_audit(tmp_path, "titles", COUNTERFACTUAL + entry("ScoreOnlyProbe"))
    code, out, err, results = audit(cfg, capsys)
    assert code == 0, err
    p = probes_by_id(results)["tests.test_front_door:ScoreOnlyProbe"]
    assert (p["status"], p["skip_kind"]) == ("skipped", "capability")
    assert p["error"].endswith("lacks score")
    assert "skipped (capability)" in out


# -- defect 1: item ids the catalog lacks --------------------------------------------------------
def test_unknown_item_ids_are_unmatched_answers_not_a_crash(tmp_path, capsys):
    cfg = write_audit(tmp_path, "unknown_ids", COUNTERFACTUAL)
    code, _, err, results = audit(cfg, capsys)
    assert code == 0, err
    (p,) = results["probes"]
    assert p["status"] == "ok", p["error"]  # was: error, KeyError in counterfactual._examples
    assert all(r["item_ids"] == ["0", "1"] and r["unmatched"] == ["no-such-id"]
               for r in p["records"])
    share = [m["estimate"] for m in p["metrics"] if m["metric"] == "hallucination"]
    assert share and share == pytest.approx([1 / 3] * len(share))  # as an unknown title would
    n = len(p["records"])
    assert f"{n} item ids in the answers are not in the catalog (first: 'no-such-id')" in \
        " ".join(p["warnings"])
    assert f"recaudit: warning: {n} answers named item ids the catalog lacks" in err


# -- defect 4: a failing score call --------------------------------------------------------------
POSITION = ("  - probe: position\n"
            "    params: {n_users: 3, n_candidates: 4, positions: [0, 3], n_shuffles: 1, "
            "mode: score}\n")


def test_a_failing_score_call_fails_its_requests_not_the_audit(tmp_path, capsys):
    cfg = write_audit(tmp_path, "titles_failing_score", COUNTERFACTUAL + POSITION,
                      interactions=True)
    code, _, err, results = audit(cfg, capsys)
    assert code == 4, err  # was: exit 3, no results.json, the generate probe lost too
    by_id = probes_by_id(results)
    assert by_id["counterfactual"]["status"] == "ok" and by_id["counterfactual"]["metrics"]
    pos = by_id["position"]
    assert pos["status"] == "error" and pos["n_failed"] == pos["n_queries"] > 0
    assert pos["first_error"] == "python recommender score raised RuntimeError: the scorer is down"
    assert pos["error"].startswith(f"every request failed ({pos['n_queries']} of "
                                   f"{pos['n_queries']}; first: python recommender score raised")
    assert "position error: every request failed" in err


# -- facts as fields ------------------------------------------------------------------------------
def test_requests_not_computed_are_a_field_and_the_rerun_resumes(tmp_path, capsys):
    cfg = write_audit(tmp_path, "titles", COUNTERFACTUAL)
    capsys.readouterr()
    assert main(["audit", str(cfg), "--no-progress", "--format", "json",
                 "--max-requests", "2"]) == 0
    (p,) = json.loads((tmp_path / "out" / "results.json").read_text())["probes"]
    assert (p["n_queries"], p["n_missing"], p["n_failed"], p["first_error"]) == (6, 4, 4, None)
    assert main(["audit", str(cfg), "--no-progress", "--format", "json"]) == 0
    (p,) = json.loads((tmp_path / "out" / "results.json").read_text())["probes"]
    assert (p["n_missing"], p["n_failed"]) == (0, 0)


def test_gates_are_evaluated_once_after_the_result_is_handed_over(tmp_path):
    from recaudit.audit import run_audit
    from recaudit.config import load_config

    cfg = write_audit(tmp_path, "titles", COUNTERFACTUAL)
    cfg.write_text(cfg.read_text() + "gates:\n  - {probe: counterfactual, metric: hallucination, "
                   "max: 0.5, mode: point}\n")
    seen = []
    result = run_audit(load_config(cfg), progress=False,
                       on_measured=lambda r: seen.append(list(r.gates)))
    assert seen == [[]]  # measured, not yet gated: the CLI writes results.json here
    assert [g.passed for g in result.gates] == [True]


def test_a_dry_run_gates_nothing_and_writes_nothing(tmp_path, capsys):
    cfg = write_audit(tmp_path, "titles", COUNTERFACTUAL)
    cfg.write_text(cfg.read_text() + "gates:\n  - {probe: counterfactual, metric: jaccard, "
                   "max: 0.5}\n")
    capsys.readouterr()
    assert main(["audit", str(cfg), "--no-progress", "--dry-run"]) == 0, capsys.readouterr().err
    assert "dry run: nothing computed, nothing written" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
