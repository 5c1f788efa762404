"""Bad audit configs through ``recaudit audit``: each is one stderr line and exit 2, before any
model or catalog is touched (recaudit/yamlio.py, recaudit/config.py)."""

from __future__ import annotations

import pytest

from recaudit.yamlio import MAX_ALIAS_EXPANSION, MAX_YAML_BYTES

from .bad_input import assert_cli_error, assert_subprocess_error

MODEL = "model: python:tests.cli_recommenders:constant\n"
PROBES = "probes: [{probe: counterfactual, suite: fairllm}]\n"
VALID = MODEL + "catalog: {source: none}\n" + PROBES


def alias_bomb(levels: int = 9, fan_out: int = 9) -> str:
    """'Billion laughs': each anchor lists the previous one ``fan_out`` times, so the last one
    expands to ``fan_out ** levels`` strings (9 ** 9 = 387,420,489)."""
    names = [f"l{i}" for i in range(levels)]
    lines = [f"  {names[0]}: &{names[0]} [{', '.join(['lol'] * fan_out)}]"]
    for prev, name in zip(names, names[1:]):
        lines.append(f"  {name}: &{name} [{', '.join(['*' + prev] * fan_out)}]")
    return VALID + "model_options:\n" + "\n".join(lines) + "\n"


# (case id, file content (str: UTF-8 text; bytes: as is), expected line after "recaudit: error: ")
CASES = [
    ("wrong type: list expected", MODEL + "probes: 5\n",
     "{path}: probes: Input should be a valid list"),
    ("wrong type: integer expected", VALID + "decoding: {max_new_tokens: many}\n",
     "{path}: decoding.max_new_tokens: Input should be a valid integer, unable to parse string "
     "as an integer"),
    ("wrong type: boolean expected", VALID + "allow_pickle: perhaps\n",
     "{path}: allow_pickle: Input should be a valid boolean, unable to interpret input"),
    ("out of range", VALID + "stats: {confidence: 1.5}\n",
     "{path}: stats.confidence: Input should be less than 1"),
    ("unknown top-level key", VALID + "modle: smollm2\n", "{path}: modle: unknown key"),
    ("unknown nested key", VALID + "decoding: {max_new_token: 5}\n",
     "{path}: decoding.max_new_token: unknown key"),
    ("unknown probe parameter",
     MODEL + "catalog: {source: none}\nprobes: [{probe: counterfactual, params: {kk: 1}}]\n",
     "{path}: probes[0].params.kk: unknown key"),
    ("unknown probe", MODEL + "probes: [{probe: fairness}]\n",
     "{path}: probes[0].probe: unknown probe 'fairness'; known: <ANY>"),
    ("unknown suite", MODEL + "probes: [{probe: counterfactual, suite: nope}]\n",
     "{path}: probes[0].suite: unknown probe suite 'nope'; bundled: <ANY>"),
    ("unknown model option", VALID + "model_options: {batch_siz: 4}\n",
     "model_options: unknown option 'batch_siz' for python models; known: none"),
    ("empty file", "", "{path}: no probes to run (add a 'probes:' list to the config)"),
    ("comment only", "# nothing here\n",
     "{path}: no probes to run (add a 'probes:' list to the config)"),
    ("empty suite", MODEL + "probes: []\n",
     "{path}: no probes to run (add a 'probes:' list to the config)"),
    ("top level is a list", "- probe: counterfactual\n",
     "{path}: top level must be a mapping of keys, got list"),
    ("top level is a string", "counterfactual\n",
     "{path}: top level must be a mapping of keys, got str"),
    ("top level is a number", "42\n", "{path}: top level must be a mapping of keys, got int"),
    ("malformed YAML", "name: [unclosed\n",
     "{path}:2:1: malformed YAML: expected ',' or ']', but got '<stream end>'"),
    ("two YAML documents", VALID + "---\nname: second\n",
     "{path}:4:1: malformed YAML: expected a single document in the stream, but found "
     "another document"),
    ("NUL byte", "name: a\x00b\n" + PROBES,
     "{path}: malformed YAML: unacceptable character #x0000: special characters are not "
     "allowed"),
    ("non-UTF-8 bytes (Latin-1)", b"name: caf\xe9\n" + PROBES.encode(),
     "{path}: not UTF-8 text (byte 0xe9 at offset 9)"),
    ("UTF-16 file", VALID.encode("utf-16"), "{path}: not UTF-8 text (byte 0xff at offset 0)"),
    # PyYAML keeps the last of two equal keys without a word; recaudit refuses them
    ("duplicate top-level key", "name: first\nname: second\n" + VALID,
     "{path}:2:1: malformed YAML: duplicate key 'name' (first on line 1)"),
    ("duplicate key in a flow mapping", VALID + "stats: {seed: 1, seed: 2}\n",
     "{path}:4:18: malformed YAML: duplicate key 'seed' (first on line 4)"),
    ("NaN", VALID + "stats: {confidence: .nan}\n", "{path}:4:21: .nan is not a finite number"),
    ("infinity", VALID + "decoding: {temperature: .inf}\n",
     "{path}:4:25: .inf is not a finite number"),
    ("negative infinity", VALID + "stats: {alpha: -.Inf}\n",
     "{path}:4:16: -.Inf is not a finite number"),
    ("infinity as a string", VALID + "decoding: {temperature: 'inf'}\n",
     "{path}: decoding.temperature: Input should be a finite number"),
    ("billion laughs", alias_bomb(),
     f"{{path}}: YAML aliases add more than {MAX_ALIAS_EXPANSION:,} nodes (an alias bomb?); "
     "refused"),
    ("recursive alias", VALID + "model_options: &loop {again: *loop}\n",
     "{path}:4:16: recursive YAML alias"),
    ("nesting too deep", VALID + "model_options: {x: " + "[" * 600 + "]" * 600 + "}\n",
     "{path}: YAML nested too deeply"),
    ("catalog file missing", MODEL + PROBES + "catalog: {source: csv}\n",
     "catalog.path: required for source 'csv'"),
]


@pytest.mark.parametrize("content, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_is_one_line_exit_2(tmp_path, capsys, content, expected):
    path = tmp_path / "audit.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    assert_cli_error(capsys, ["audit", path, "--dry-run"], 2, expected, path=path)


def test_missing_and_directory_config(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert_cli_error(capsys, ["audit", missing], 2, "config file not found: {path}", path=missing)
    assert_cli_error(capsys, ["audit", tmp_path], 2, "config file not found: {path}",
                     path=tmp_path)


def test_file_over_the_size_limit_is_refused_before_reading(tmp_path, capsys):
    """A sparse file one byte over the limit: refused on its size, never read or parsed."""
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as fh:
        fh.truncate(MAX_YAML_BYTES + 1)
    assert_cli_error(capsys, ["audit", path], 2,
                     f"{{path}}: config file is {MAX_YAML_BYTES + 1:,} bytes, over the limit of "
                     f"{MAX_YAML_BYTES:,}", path=path)


def test_gates_file_goes_through_the_same_reader(tmp_path, capsys):
    """``gate --gates`` reads YAML with the same guards (here: an alias bomb)."""
    from recaudit.results import AuditResult, Provenance

    results = AuditResult(provenance=Provenance(tool_version="x", model_spec="m")) \
        .write_json(tmp_path)
    gates = tmp_path / "gates.yaml"
    gates.write_text(alias_bomb().replace(VALID, "") + "gates: []\n", encoding="utf-8")
    assert_cli_error(capsys, ["gate", results, "--gates", gates], 2,
                     f"{{path}}: YAML aliases add more than {MAX_ALIAS_EXPANSION:,} nodes (an "
                     "alias bomb?); refused", path=gates)


def test_merge_keys_still_work_and_override(tmp_path, capsys):
    """Refusing duplicate keys leaves YAML merge keys alone: a key after ``<<`` overrides."""
    from recaudit.config import load_config

    path = tmp_path / "audit.yaml"
    path.write_text(VALID + "decoding:\n  <<: {max_new_tokens: 64, seed: 1}\n  seed: 2\n",
                    encoding="utf-8")
    cfg = load_config(path)
    assert (cfg.decoding.max_new_tokens, cfg.decoding.seed) == (64, 2)


def test_alias_bomb_through_a_real_process(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(), encoding="utf-8")
    assert_subprocess_error(["audit", path], 2,
                            f"{{path}}: YAML aliases add more than {MAX_ALIAS_EXPANSION:,} nodes "
                            "(an alias bomb?); refused", path=path)
