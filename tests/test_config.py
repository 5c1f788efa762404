"""Config loading: strict keys, key paths in errors, suite merge, overrides."""

from __future__ import annotations

import pytest

from recaudit.config import load_config, parse_config
from recaudit.errors import ConfigError


def _write(tmp_path, text: str):
    p = tmp_path / "audit.yaml"
    p.write_text(text)
    return p


def test_defaults_and_suite_merge(tmp_path):
    p = _write(tmp_path, "probes:\n  - probe: counterfactual\n    suite: fairllm\n"
                         "    params: {k: 5, subjects: {n: 3}}\n")
    cfg = load_config(p)
    params = cfg.probes[0].params
    assert params["k"] == 5 and params["subjects"]["n"] == 3
    assert params["subjects"]["source"] == "catalog_popular"  # from the suite, merged
    assert set(params["attributes"]) == {"age", "country", "gender", "continent", "occupation",
                                          "race", "religion", "physics"}
    assert cfg.source_text.startswith("probes:")


@pytest.mark.parametrize("text, expected", [
    ("modle: smollm2\n", "modle: unknown key"),
    ("engine: {batch_size: 0}\n", "engine.batch_size"),
    ("probes:\n  - probe: counterfactual\n    params: {k: 0}\n", "probes[0].params.k"),
    ("probes:\n  - probe: counterfactual\n    params: {attributes: [gender, hair]}\n",
     "unknown attribute 'hair'"),
    ("probes:\n  - probe: counterfactual\n    params: {attributes: {gender: []}}\n",
     "empty value list"),
    ("probes:\n  - probe: counterfactual\n    params: {template: 'I like {name}'}\n",
     "lacks placeholder(s) {value}, {K}"),
    ("probes:\n  - probe: nosuch\n", "unknown probe 'nosuch'"),
    ("probes:\n  - probe: counterfactual\n    suite: nosuch\n", "unknown probe suite"),
    ("- a\n- b\n", "top level must be a mapping"),
])
def test_errors_name_file_and_key_path(tmp_path, text, expected):
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    msg = str(info.value)
    assert expected in msg and "\n" not in msg
    assert str(p) in msg


def test_malformed_yaml_has_line_number(tmp_path):
    p = _write(tmp_path, "model: smollm2\nprobes: [\n  - {probe: x\n")
    with pytest.raises(ConfigError, match=r"audit.yaml:\d+:\d+: malformed YAML"):
        load_config(p)


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/audit.yaml")


def test_overrides_win_and_fingerprint_changes():
    base = parse_config({"model": "smollm2"})
    over = parse_config({"model": "smollm2"}, overrides={"model": "minilm",
                                                         "engine": {"max_requests": 3}})
    assert over.model == "minilm" and over.engine.max_requests == 3
    assert base.fingerprint() != over.fingerprint()


@pytest.mark.parametrize("params, where, value", [
    ("{k: true}", "k", "true"),                          # int: read as k = 1 before
    ("{n_users: false}", "n_users", "false"),
    ("{rbo_p: true}", "rbo_p", "true"),                  # float
    ("{positions: [0, true]}", "positions", "true"),     # the items of a list[int]
])
def test_a_boolean_is_no_number_in_probe_params(tmp_path, params, where, value):
    p = _write(tmp_path, f"probes:\n  - probe: position\n    params: {params}\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value) == f"{p}: probes[0].params.{where}: {value} is a boolean, not a number"


def test_booleans_stay_booleans_and_optional_is_a_probe_flag():
    cfg = parse_config({"probes": [{"probe": "counterfactual", "optional": True,
                                    "params": {"k": 3, "subjects": {"source": "inline",
                                                                    "items": ["Heat"]}}}]})
    assert cfg.probes[0].optional is True and cfg.probes[0].params["k"] == 3
    with pytest.raises(ConfigError, match=r"probes\[0\].optional: Input should be a valid "
                                          "boolean"):
        parse_config({"probes": [{"probe": "counterfactual", "optional": "maybe"}]})
