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
    r.write_json(tmp_path)
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


def test_schema_1_0_files_still_load_and_get_their_declarations(tmp_path):
    """A results.json written by recaudit before schema 1.1 (no specs, tags, tables, variants)."""
    from recaudit.results import MetricRecord, ProbeResult

    rec = MetricRecord(probe="counterfactual:fairllm", metric="snsr_jaccard", attribute="gender",
                       k=20, estimate=0.2, ci_low=0.1, ci_high=0.3)
    old = AuditResult(provenance=Provenance(tool_version="0.1.0", model_spec="m"),
                      probes=[ProbeResult(id="counterfactual:fairllm", probe="counterfactual",
                                          metrics=[rec])])
    data = json.loads(old.to_json())
    data["schema_version"] = "1.0"
    new_probe_keys = ("specs", "headline", "tags", "method_notes", "units")
    new_record_keys = ("variant", "null_mean", "null_p95", "table", "statistic")
    for p in data["probes"]:
        for key in new_probe_keys:
            p.pop(key)
        for m in p["metrics"]:
            for key in new_record_keys:
                m.pop(key)
    data["provenance"].pop("batch_invariance")
    data.pop("content_sha256")  # schema 1.3
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    back = AuditResult.load(path)
    assert back.schema_version == SCHEMA_VERSION
    p = back.probes[0]
    assert p.specs["snsr_jaccard"].higher_is_worse is True and p.specs["snsr_jaccard"].null == 0
    assert "fairness" in p.tags and p.metrics[0].variant == "original"
    assert p.metrics[0].estimate == 0.2


def test_status_and_skip_kind_are_data_and_decide_the_exit():
    from pydantic import ValidationError

    from recaudit.results import ProbeResult, ProbeStatus, SkipKind

    def probe(**kw) -> ProbeResult:
        return ProbeResult(id="p", probe="p", **kw)

    assert probe(status="skipped", skip_kind="capability").skip_kind is SkipKind.CAPABILITY
    assert probe().status is ProbeStatus.OK and probe().status == "ok"
    with pytest.raises(ValidationError, match="only a skipped probe has a skip kind"):
        probe(status="error", skip_kind="no_data")
    with pytest.raises(ValidationError):
        probe(status="broken")
    # the policy the README states: setup skips pass, errors and no-data skips fail
    fails = {(status, kind, optional): probe(status=status, skip_kind=kind,
                                             optional=optional).fails_audit()
             for status, kind in (("ok", None), ("error", None), ("skipped", "capability"),
                                  ("skipped", "catalog"), ("skipped", "no_data"),
                                  ("skipped", None))
             for optional in (False, True)}
    assert [key for key, failed in fails.items() if failed] == [
        ("error", None, False), ("skipped", "no_data", False), ("skipped", None, False)]


def test_schema_1_3_skip_messages_get_their_skip_kind(tmp_path):
    from recaudit.results import ProbeResult

    old = AuditResult(provenance=Provenance(tool_version="x", model_spec="m"), probes=[
        ProbeResult(id=i, probe=i, status="skipped", error=msg) for i, msg in (
            ("a", "skipped: python:m lacks score"),
            ("b", "skipped: needs a catalog (catalog source: none): probe 'b' uses item data"),
            ("c", "skipped: something else"))])
    data = json.loads(old.model_dump_json(exclude={"content_sha256"}))
    data["schema_version"] = "1.3"
    for p in data["probes"]:
        for key in ("skip_kind", "optional", "n_missing", "first_error"):  # new in 1.4
            p.pop(key)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    back = AuditResult.load(path)
    assert [p.skip_kind for p in back.probes] == ["capability", "catalog", None]
    assert [p.fails_audit() for p in back.probes] == [False, False, True]
