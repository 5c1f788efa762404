"""results.py: the shipped schema matches the model; load errors are one line."""

from __future__ import annotations

import json

import pytest

from recaudit.errors import DataError
from recaudit.results import SCHEMA_VERSION, AuditResult, Provenance, json_schema, schema_path


def test_shipped_schema_is_current():
    shipped = json.loads(schema_path().read_text(encoding="utf-8"))
    assert shipped == json.loads(json.dumps(json_schema())), \
        "regenerate with: python -m recaudit.results"


def test_round_trip_and_hash(tmp_path):
    r = AuditResult(provenance=Provenance(tool_version="x", model_spec="m"))
    r.save(tmp_path, formats=("json",))
    back = AuditResult.load(tmp_path)
    assert back == r and back.results_hash() == r.results_hash()


@pytest.mark.parametrize("content, needle", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not a recaudit results file"),
    (json.dumps({"schema_version": "0.1"}), "schema version '0.1' is not supported"),
    (json.dumps({"schema_version": SCHEMA_VERSION, "provenance": {}}),
     "not a valid recaudit results file"),
])
def test_bad_results_files(tmp_path, content, needle):
    p = tmp_path / "results.json"
    p.write_text(content)
    with pytest.raises(DataError) as info:
        AuditResult.load(p)
    assert needle in str(info.value) and "\n" not in str(info.value)
