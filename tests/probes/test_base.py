"""The probe base (recaudit/probes/base.py): typed query keys, the shared preamble (``begin``),
typed raw records, and a complete probe built on it (tests/probes/example_probe.py, the probe
docs/ARCHITECTURE.md shows)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

from recaudit.audit import run_audit
from recaudit.config import StatsConfig, parse_config
from recaudit.engine import Answer
from recaudit.grounding import Grounding
from recaudit.probes.base import NEUTRAL, AuditContext, Probe, ProbeParams, Query, QueryKey
from recaudit.probes.kit import RawRecord, Summariser, collect
from recaudit.probes.registry import _REGISTRY
from recaudit.recommenders.base import GENERATE, Request, Response

EXAMPLE = Path(__file__).with_name("example_probe.py")
FAST = StatsConfig(n_bootstrap=200, n_permutations=199, seed=0, min_group_size=3)


# -- keys -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, text", [
    (QueryKey(3, "gender", "a girl"), "3|gender|a girl"),
    (QueryKey(3, value=NEUTRAL), "3|neutral"),
    (QueryKey("u7", "gender", "girls", ("Emma",)), "u7|gender|girls|Emma"),
    (QueryKey("u7", value="a", extra=("case", 0)), "u7|a|case|0"),
    (QueryKey("u7", "position", "first"), "u7|position|first"),
])
def test_a_key_writes_todays_query_id(key, text):
    """``str(key)`` is the id stored in results.json, exactly as the probes wrote it by hand."""
    assert str(key) == text
    query = Query(key, Request.from_prompt("x", k=2))
    assert query.id == text and query.key is key
    assert hash(key) == hash(dataclasses.replace(key)) and key == dataclasses.replace(key)


def test_keys_are_frozen_and_a_list_of_extras_becomes_a_tuple():
    key = QueryKey(1, "a", "b", ["m"])  # type: ignore[arg-type]
    assert key.extra == ("m",) and {key: 1}[QueryKey(1, "a", "b", ("m",))] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.unit = 2  # type: ignore[misc]


def test_a_plain_string_id_still_works_and_a_mismatched_key_is_refused():
    q = Query("s|happy", Request.from_prompt("x", k=2), {"unit": "s"})
    assert q.id == "s|happy" and str(q.key) == "s|happy"
    with pytest.raises(ValueError, match="is not its key's string"):
        Query("a|b", Request.from_prompt("x", k=2), key=QueryKey("a", "c"))


# -- collected lists and typed raw records ---------------------------------------------------------
def _answer(query: Query, items: list[str] | None, text: str = "t") -> Answer:
    if items is None:
        return Answer(request=query.request, response=Response(text="", error="boom"))
    return Answer(request=query.request, response=Response(text=text),
                  grounding=Grounding(item_ids=items, unmatched=["Nope"],
                                      entries=items + ["Nope"]))


def _queries() -> list[Query]:
    return [Query(QueryKey(m, "mood", v), Request.from_prompt(f"{m} {v}", k=2),
                  {"unit": m, "attribute": "mood", "value": v})
            for m in range(2) for v in ("happy", "sad")]


def test_collected_lists_are_looked_up_by_key_or_id_and_records_keep_their_layout():
    qs = _queries()
    answers = {qs[0].id: _answer(qs[0], ["1", "2", "3"]), qs[1].id: _answer(qs[1], None)}
    got = collect(qs, answers, k=2)
    assert got.lists[QueryKey(0, "mood", "happy")] == ["1", "2"] == got.lists["0|mood|happy"]
    assert got.lists[QueryKey(0, "mood", "sad")] is None
    assert QueryKey(1, "mood", "happy") in got.lists and got.lists.get(qs[3].key) is None
    assert got.complete([qs[0].key]) and not got.complete(q.key for q in qs)
    assert got.hallucination[qs[0].key] == pytest.approx(0.25)  # 1 of 4 entries unmatched
    # the stored layout: id, the meta, then the engine's facts, in this order
    first = got.records[0]
    assert list(first) == ["id", "unit", "attribute", "value", "request_key", "text", "item_ids",
                           "unmatched", "hallucination", "empty_list", "error"]
    assert first["item_ids"] == ["1", "2"] and first["error"] is None
    assert got.records[1]["error"] == "boom" and got.records[2]["error"] == "not computed"
    raw = got.raw[qs[0].key]
    assert isinstance(raw, RawRecord) and raw.ok and not got.raw[qs[1].key].ok
    assert RawRecord.from_json(first) == raw and RawRecord.from_json(first).to_json() == first


# -- begin: the shared preamble --------------------------------------------------------------------
class _Params(ProbeParams):
    k: int = 2


class _Bare(Probe):
    name = "bare"
    Params = _Params


def test_begin_gives_the_result_the_lists_and_the_summariser():
    qs = _queries()
    probe = _Bare(_Params(k=1), run_id="bare:x", suite="s")
    ctx = AuditContext(catalog=None, stats=FAST, capabilities=frozenset({GENERATE}))
    run = probe.begin(ctx, qs, {q.id: _answer(q, ["1", "2"]) for q in qs[:3]})
    res = run.result
    assert (res.id, res.probe, res.suite, res.params) == ("bare:x", "bare", "s", {"k": 1})
    assert res.records == run.got.records and len(res.records) == 4
    assert run.got.lists[qs[0].key] == ["1"]  # cut to params.k
    assert isinstance(run.summary, Summariser) and run.summary.res is res
    assert run.params is probe.params and run.method_notes == []


def test_units_complete_writes_the_left_out_and_small_sample_warnings_once():
    probe = _Bare(_Params())
    ctx = AuditContext(catalog=None, stats=FAST, capabilities=frozenset({GENERATE}))
    run = probe.begin(ctx, [], {})
    assert run.units_complete("gender", 2, 5, noun="users") is not None  # 2 < min_group_size 3
    run.units_complete("gender", 2, 5, noun="users")
    assert run.result.warnings[0] == ("gender: 3 of 5 users left out (a response failed or was "
                                      "not computed)")
    # the one small-sample sentence (was "only 2 users (only 2 units (< 3): ...)")
    assert run.result.warnings[1] == ("gender: only 2 units (< 3): confidence interval "
                                      "unreliable (units: users)")
    assert len(run.result.warnings) == 2
    assert run.units_complete(None, 4, 4, noun="requests") is None
    assert len(run.result.warnings) == 2


def test_a_probe_without_measure_says_so():
    probe = _Bare(_Params())
    ctx = AuditContext(catalog=None, stats=FAST, capabilities=frozenset({GENERATE}))
    with pytest.raises(NotImplementedError, match="implements neither measure nor analyse"):
        probe.analyse(ctx, [], {})


# -- a complete probe on the base ------------------------------------------------------------------
@pytest.fixture(scope="module")
def example():
    """tests/probes/example_probe.py, loaded by path (the registry entry removed afterwards)."""
    spec = importlib.util.spec_from_file_location("recaudit_example_probe", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    _REGISTRY.pop("mood_fill", None)
    sys.modules.pop(spec.name, None)


def test_the_example_probe_is_short():
    assert len(EXAMPLE.read_text(encoding="utf-8").splitlines()) <= 60


def test_the_example_probe_runs_end_to_end(example, tmp_path):
    from .synthetic_catalog import synthetic_catalog

    cfg = parse_config({
        "model": "python:tests.cli_recommenders:constant",
        "engine": {"cache": str(tmp_path / "c.sqlite"), "progress": False},
        "stats": {"n_bootstrap": 100, "n_permutations": 99, "min_group_size": 2},
        "probes": [{"probe": "mood_fill", "params": {"moods": ["happy", "sad", "calm"]}}]})
    result = run_audit(cfg, catalog=synthetic_catalog(), progress=False)
    res = result.probe("mood_fill")
    assert res.status == "ok", res.error
    assert res.headline == ["list_fill_gap"] and res.method_notes == list(
        example.MoodFillProbe.method_notes)
    assert {r.value for r in res.metric("list_fill")} == {"happy", "sad", "calm"}
    gap = res.metric("list_fill_gap")[0]
    assert gap.estimate == 0.0 and gap.p_value is not None  # a mood-blind model: no gap
    assert res.findings[0].title.startswith("mood: no significant difference (gap 0.000")
    assert len(res.records) == 9 and res.records[0]["id"] == "0|mood|happy"


def test_the_architecture_doc_shows_the_tested_example():
    """docs/ARCHITECTURE.md shows this file verbatim (once the doc includes it)."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"
    text = doc.read_text(encoding="utf-8")
    first = EXAMPLE.read_text(encoding="utf-8").splitlines()[0]
    if first not in text:
        pytest.skip("docs/ARCHITECTURE.md does not show the example probe yet")
    assert EXAMPLE.read_text(encoding="utf-8").strip() in text
