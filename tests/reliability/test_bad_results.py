"""Bad results files through every command that reads one (``gate``, ``report``, ``compare`` on
either side, ``mitigate``): one stderr line, exit 2 (recaudit/results.py). results.json is sealed
with ``content_sha256`` (schema 1.3): an edit after writing is refused, an unsealed older file
still loads."""

from __future__ import annotations

import json

import pytest

from recaudit.cli import main
from recaudit.results import READABLE_VERSIONS, AuditResult, MetricRecord, ProbeResult, Provenance

from .bad_input import assert_cli_error, assert_subprocess_error

READS = ", ".join(map(repr, READABLE_VERSIONS))
MODIFIED = ("{path}: results file was modified after it was written (content_sha256 does not "
            "match its content)")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A sealed results.json with one probe and one metric."""
    record = MetricRecord(probe="counterfactual", metric="snsr_jaccard", attribute="gender", k=10,
                          estimate=0.25, ci_low=0.1, ci_high=0.4)
    result = AuditResult(provenance=Provenance(tool_version="x", model_spec="m"),
                         probes=[ProbeResult(id="counterfactual", probe="counterfactual",
                                             metrics=[record])])
    return result.write_json(tmp_path_factory.mktemp("good"))


def _unsealed(data):
    return {k: v for k, v in data.items() if k != "content_sha256"}


def _edit(data, **changes):
    return {**data, **changes}


def _tamper_estimate(data):
    out = json.loads(json.dumps(data))
    out["probes"][0]["metrics"][0]["estimate"] = 0.0
    return out


# (case, new content from (text, data) of the good file, expected line after "recaudit: error: ")
CASES = [
    ("truncated", lambda t, d: t[: len(t) // 2], "{path}: not valid JSON: <ANY>"),
    ("empty", lambda t, d: "",
     "{path}: not valid JSON: Expecting value: line 1 column 1 (char 0)"),
    ("not UTF-8", lambda t, d: b"\xff" + t.encode(),
     "{path}: not UTF-8 text (byte 0xff at offset 0)"),
    ("a JSON list", lambda t, d: "[1, 2]", "{path}: not a recaudit results file"),
    ("nested too deeply", lambda t, d: "[" * 100_000 + "]" * 100_000,
     "{path}: not a recaudit results file (JSON nested too deeply)"),
    ("wrong shape", lambda t, d: _edit(_unsealed(d), probes="all of them"),
     "{path}: not a valid recaudit results file: probes: Input should be a valid list"),
    ("wrong type deep inside", lambda t, d: _edit(_unsealed(d), provenance={"tool_version": 1}),
     "{path}: not a valid recaudit results file: provenance.tool_version: Input should be a "
     "valid string (+1 more)"),
    ("unknown key", lambda t, d: _edit(_unsealed(d), surprise=1),
     "{path}: not a valid recaudit results file: surprise: unknown key"),
    ("unknown schema version", lambda t, d: _edit(d, schema_version="9.9"),
     "{path}: results schema version '9.9' is not supported (this recaudit reads " + READS + ")"),
    ("no schema version", lambda t, d: _unsealed(_edit(d, schema_version=None)),
     "{path}: results schema version None is not supported (this recaudit reads " + READS + ")"),
    ("tampered estimate", lambda t, d: _tamper_estimate(d), MODIFIED),
    ("tampered hash", lambda t, d: _edit(d, content_sha256="0" * 64), MODIFIED),
    ("hash of the wrong type", lambda t, d: _edit(d, content_sha256=7), MODIFIED),
    ("tampered shape, hash kept", lambda t, d: _edit(d, probes="all of them"), MODIFIED),
]

COMMANDS = {
    "gate": lambda bad, good, out: ["gate", bad],
    "report": lambda bad, good, out: ["report", bad, "--out", out],
    "compare (baseline)": lambda bad, good, out: ["compare", bad, good],
    "compare (current)": lambda bad, good, out: ["compare", good, bad],
    "mitigate": lambda bad, good, out: ["mitigate", bad, "--reranker", "fair", "--out", out],
}


def write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(json.dumps(content, indent=1), encoding="utf-8")
    return path


@pytest.mark.parametrize("make, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_results_file_in_every_command(good, tmp_path, capsys, make, expected):
    text = good.read_text(encoding="utf-8")
    bad = write(tmp_path / "results.json", make(text, json.loads(text)))
    for argv in COMMANDS.values():
        assert_cli_error(capsys, argv(bad, good, tmp_path / "out"), 2, expected, path=bad)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_results_file(tmp_path, capsys, good):
    missing = tmp_path / "nope.json"
    for argv in COMMANDS.values():
        assert_cli_error(capsys, argv(missing, good, tmp_path / "out"), 2,
                         "results file not found: {path}", path=missing)
    assert_cli_error(capsys, ["gate", tmp_path], 2, "results file not found: {path}",
                     path=tmp_path / "results.json")


def test_sealed_file_loads_and_the_seal_is_the_reported_hash(good, tmp_path, capsys):
    """The seal covers content, not layout: re-indented with keys reversed, it still loads;
    the hash reports show (results_hash) is the seal."""
    data = json.loads(good.read_text(encoding="utf-8"))
    assert len(data["content_sha256"]) == 64
    assert AuditResult.load(good).results_hash() == data["content_sha256"]
    relaid = write(tmp_path / "relaid.json", dict(reversed(list(data.items()))))
    assert main(["gate", str(relaid)]) == 0
    assert main(["report", str(relaid), "--out", str(tmp_path / "rep"), "--format", "md"]) == 0
    capsys.readouterr()


def test_unsealed_older_file_still_loads(good, tmp_path, capsys):
    """A schema 1.2 file (written before the seal) loads, edits and all."""
    data = _tamper_estimate(_unsealed(json.loads(good.read_text(encoding="utf-8"))))
    old = write(tmp_path / "old.json", _edit(data, schema_version="1.2"))
    assert AuditResult.load(old).probes[0].metrics[0].estimate == 0.0
    assert main(["compare", str(old), str(good)]) in (0, 1)
    capsys.readouterr()


def test_tampered_file_through_a_real_process(good, tmp_path):
    bad = write(tmp_path / "results.json", _tamper_estimate(json.loads(good.read_text())))
    assert_subprocess_error(["gate", bad], 2, MODIFIED, path=bad)
