"""Repeated samples (decoding.samples): per-sample cache keys, averaging, self-consistency."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest

from recaudit.audit import run_audit
from recaudit.config import parse_config
from recaudit.engine import Engine
from recaudit.errors import ConfigError
from recaudit.probes.registry import _REGISTRY
from recaudit.recommenders.base import Decoding, Request, sample_seed
from recaudit.recommenders.python import PythonRecommender
from recaudit.samples import pair_similarities

from .probes.synthetic_catalog import synthetic_catalog

EXAMPLE = Path(__file__).resolve().parent / "probes" / "example_probe.py"
CALLS: list[tuple[str, int]] = []


# -- recommenders (python:tests.test_samples:<name>) ---------------------------------------------
def seeded_random(messages, k, sample):
    """A random list of catalog ids, seeded by the prompt and the sample index."""
    CALLS.append((messages[-1]["content"], sample))
    rng = random.Random(f"{messages[-1]['content']}|{sample}")
    return {"item_ids": rng.sample([str(i) for i in range(40)], k)}


def deterministic(messages, k):
    return {"item_ids": [str(i) for i in range(k)]}


def happy_grows(messages, k, sample):
    """'happy' prompts: sample j lists j + 1 items; every other prompt lists k items."""
    n = sample + 1 if "happy" in messages[-1]["content"] else k
    return {"item_ids": [str(i) for i in range(min(n, k))]}


@pytest.fixture(scope="module")
def mood_probe():
    """tests/probes/example_probe.py (mood_fill), loaded by path; unregistered afterwards."""
    spec = importlib.util.spec_from_file_location("recaudit_example_probe_samples", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    _REGISTRY.pop("mood_fill", None)
    spec.loader.exec_module(module)
    yield module
    _REGISTRY.pop("mood_fill", None)
    sys.modules.pop(spec.name, None)


def _audit(tmp_path, model: str, samples: int, **decoding):
    cfg = parse_config({
        "model": f"python:tests.test_samples:{model}",
        "decoding": {"samples": samples, **decoding},
        "engine": {"cache": str(tmp_path / "c.sqlite"), "progress": False},
        "stats": {"n_bootstrap": 100, "n_permutations": 99, "min_group_size": 2},
        "probes": [{"probe": "mood_fill", "params": {"moods": ["happy", "sad"]}}]})
    result = run_audit(cfg, catalog=synthetic_catalog(), progress=False)
    res = result.probe("mood_fill")
    assert res.status == "ok", res.error
    return result, res


# -- keys ------------------------------------------------------------------------------------
def test_sample_zero_keeps_the_old_key_and_seed():
    req = Request.from_prompt("3 movies like Heat?", k=3, system="be brief")
    old = hashlib.sha256(json.dumps(
        {"messages": [{"role": "system", "content": "be brief"},
                      {"role": "user", "content": "3 movies like Heat?"}],
         "k": 3, "candidates": None}, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    assert req.key() == old and req.with_sample(0).key() == old
    assert "sample" not in req.to_dict()
    later = [req.with_sample(j).key() for j in (1, 2, 3)]
    assert len({old, *later}) == 4  # each sample its own cache row
    assert Request.from_dict(req.with_sample(2).to_dict()) == req.with_sample(2)
    assert sample_seed(7, 0) == 7 and len({sample_seed(7, j) for j in range(5)}) == 5
    assert sample_seed(7, 2) == sample_seed(7, 2) != sample_seed(8, 2)


def test_samples_leave_the_decoding_key_and_config_fingerprint_alone():
    one = parse_config({"decoding": {"seed": 3}})
    assert one.decoding.samples == 1
    assert "samples" not in json.loads(Decoding(256, 0.0, 3).key())
    assert one.fingerprint() == hashlib.sha256(json.dumps(
        {k: v for k, v in one.model_dump(mode="json", exclude={"out", "engine"}).items()
         if k != "decoding"} | {"decoding": {"max_new_tokens": 256, "temperature": 0.0,
                                            "seed": 3}},
        sort_keys=True).encode()).hexdigest()
    assert parse_config({"decoding": {"samples": 2}}).fingerprint() != one.fingerprint()


@pytest.mark.parametrize("bad", [True, 0, -1, 1.5, "3"])
def test_samples_must_be_a_positive_integer(bad):
    with pytest.raises(ConfigError, match="decoding.samples"):
        parse_config({"decoding": {"samples": bad}})


# -- the engine ------------------------------------------------------------------------------------
def test_three_samples_are_cached_per_sample_and_a_rerun_computes_none(tmp_path):
    CALLS.clear()
    rec = PythonRecommender("tests.test_samples:seeded_random")
    reqs = [Request.from_prompt(f"prompt {i}", k=5) for i in range(4)]
    eng = Engine(rec, cache_path=tmp_path / "c.sqlite", samples=3, progress=False)
    answers = eng.run(reqs)
    assert sorted(CALLS) == sorted((f"prompt {i}", j) for i in range(4) for j in range(3))
    assert eng.stats.computed == 12 and eng.cache.count() == 12
    assert set(answers) == {r.key() for r in reqs}
    for r in reqs:
        a = answers[r.key()]
        assert len(a.samples) == 3 and a.samples[0] is a
        assert len({tuple(s.item_ids) for s in a.samples}) == 3  # seeded differently
    eng.close()
    CALLS.clear()
    again = Engine(rec, cache_path=tmp_path / "c.sqlite", samples=3, progress=False)
    rerun = again.run(reqs)
    assert CALLS == [] and again.stats.computed == 0 and again.stats.estimate.cached == 12
    assert all(s.cached for a in rerun.values() for s in a.samples)
    assert [[s.item_ids for s in rerun[r.key()].samples] for r in reqs] == \
        [[s.item_ids for s in answers[r.key()].samples] for r in reqs]
    again.close()
    more = Engine(rec, cache_path=tmp_path / "c.sqlite", samples=4, progress=False)
    more.run(reqs)  # one more sample: only sample 3 is computed
    assert sorted(CALLS) == [(f"prompt {i}", 3) for i in range(4)]
    more.close()
    one = Engine(rec, cache_path=tmp_path / "c.sqlite", progress=False)
    single = one.run(reqs)  # samples: 1 reads sample 0's rows, keyed as before samples
    assert one.stats.computed == 0 and all(a.samples is None for a in single.values())
    assert [single[r.key()].item_ids for r in reqs] == \
        [answers[r.key()].item_ids for r in reqs]
    one.close()


def test_many_samples_at_temperature_zero_warn_in_one_line(tmp_path, capsys):
    rec = PythonRecommender("tests.test_samples:deterministic")
    Engine(rec, cache_path=tmp_path / "c.sqlite", samples=2, progress=False).close()
    err = capsys.readouterr().err
    assert "samples: 2 with temperature 0" in err and err.count("\n") == 1
    Engine(PythonRecommender("tests.test_samples:deterministic", Decoding(temperature=0.7)),
           cache_path=tmp_path / "c.sqlite", samples=2, progress=False).close()
    Engine(rec, cache_path=tmp_path / "c.sqlite", progress=False).close()
    assert capsys.readouterr().err == ""


def test_engine_refuses_a_boolean_sample_count(tmp_path):
    with pytest.raises(ValueError, match="samples"):
        Engine(PythonRecommender("tests.test_samples:deterministic"),
               cache_path=tmp_path / "c.sqlite", samples=True, progress=False)


# -- metrics average over samples ----------------------------------------------------------------
def test_each_cell_is_the_mean_over_samples(mood_probe, tmp_path):
    """Hand-computed: 'happy' lists 1, 2, 3 of k = 3 items in samples 0, 1, 2 (fill 2/3);
    'sad' always 3 (fill 1); so every unit's gap is 1/3 (one sample alone gives 2/3)."""
    _, res = _audit(tmp_path, "happy_grows", 3)
    fill = {r.value: r.estimate for r in res.metric("list_fill")}
    assert fill["happy"] == pytest.approx(2 / 3) and fill["sad"] == pytest.approx(1.0)
    assert res.metric("list_fill_gap")[0].estimate == pytest.approx(1 / 3)
    table = next(t for t in res.units if t.metric == "list_fill")
    assert [row[table.conditions.index("happy")] for row in table.values] == \
        pytest.approx([2 / 3] * 3)
    assert any("mean of its metric over 3 samples" in n for n in res.method_notes)
    _, single = _audit(tmp_path / "one", "happy_grows", 1)
    assert single.metric("list_fill_gap")[0].estimate == pytest.approx(2 / 3)
    assert not single.metric("self_consistency_jaccard")


# -- self-consistency --------------------------------------------------------------------------
def test_self_consistency_is_one_for_a_deterministic_model(mood_probe, tmp_path):
    result, res = _audit(tmp_path, "deterministic", 2)
    (jac,) = res.metric("self_consistency_jaccard")
    (rb,) = res.metric("self_consistency_rbo")
    assert jac.estimate == 1.0 and rb.estimate == pytest.approx(1.0)
    assert jac.n == 6 and jac.ci_low == 1.0  # 3 subjects x 2 moods, distinct requests
    assert "self_consistency_jaccard" in res.specs  # the report reads it from here
    assert any(n.startswith("Self-consistency: two samples of the same prompt share a "
                            "Jaccard of 1.000") for n in res.method_notes)
    assert result.provenance.engine["requests"] == 12  # 6 requests x 2 samples
    from recaudit.metrics.specs import get_spec
    from recaudit.report import html_report

    html = html_report(result)  # through the declaration: no name special-cased
    assert "self_consistency_jaccard" in html
    assert get_spec("self_consistency_jaccard").description.split(":")[0] in html


def test_self_consistency_is_below_one_for_a_random_model(mood_probe, tmp_path):
    _, res = _audit(tmp_path, "seeded_random", 3, temperature=1.0)
    (jac,) = res.metric("self_consistency_jaccard")
    assert 0.0 <= jac.estimate < 1.0 and jac.ci_high < 1.0 and jac.n == 6
    note = next(n for n in res.method_notes if n.startswith("Self-consistency"))
    assert "changes" in note and "disagreement with itself" in note


def test_pair_similarities_average_every_pair_and_skip_failed_samples():
    a, b, c = ["1", "2"], ["1", "3"], ["1", "2"]
    jac, _ = pair_similarities([a, b, None, c])
    assert jac == pytest.approx((1 / 3 + 1 + 1 / 3) / 3)
    assert pair_similarities([a, None]) is None


# -- hf / gguf: seeded sampled generations -------------------------------------------------
@pytest.mark.parametrize("kind", ["causal", "t5"])
def test_hf_sample_j_decodes_with_the_derived_seed_and_stays_batch_invariant(kind, tmp_path):
    """Sample j of an hf model (gguf is one after dequantisation) is exactly a generation with
    seed sample_seed(7, j); sample 0 is the generation without samples; batching samples of
    several prompts together changes nothing."""
    from recaudit.recommenders.hf import HFRecommender

    from .recommenders import tiny_models as tm

    path = str(tm.make_causal(tmp_path / kind) if kind == "causal" else tm.make_t5(tmp_path / kind))

    def model(seed: int) -> HFRecommender:
        return HFRecommender(path, Decoding(max_new_tokens=12, temperature=0.9, seed=seed),
                             batch_size=3)

    hot = model(7)
    reqs = [Request.from_prompt(f"I like film {i}. Recommend {i + 3} movies.") for i in range(3)]
    mixed = [r.with_sample(j) for r in reqs for j in range(3)]
    together = [a.text for a in hot.recommend(mixed)]
    assert together == [hot.recommend([r])[0].text for r in mixed]  # batch-invariant
    for j in range(3):
        alone = [a.text for a in model(sample_seed(7, j)).recommend(reqs)]
        assert together[j::3] == alone
    assert len(set(together)) > len(reqs)  # samples of a prompt differ at temperature 0.9


def test_a_table_built_from_every_sample_is_not_averaged_again():
    """``averaged=False`` (e.g. leakage's probabilities of a fit on every sample) is skipped by
    the capture and by the averaging alike, so the tables after it still match by position."""
    import numpy as np

    from recaudit.probes.kit import Table
    from recaudit.samples import _AVERAGE, _CAPTURE, _Averager, _Captured

    def build(value):
        Table("m", None, ["a"], ["u"], np.array([[value]]), averaged=False)
        return Table("m", None, ["a"], ["u"], np.array([[value]]))

    captured = []
    for value in (1.0, 3.0):
        tables = _Captured()
        token = _CAPTURE.set(tables)
        build(value)
        _CAPTURE.reset(token)
        captured.append(tables)
    assert [len(c.tables) for c in captured] == [1, 1]
    token = _AVERAGE.set(_Averager(captured))
    try:
        skipped = Table("m", None, ["a"], ["u"], np.array([[7.0]]), averaged=False)
        averaged = Table("m", None, ["a"], ["u"], np.array([[1.0]]))
    finally:
        _AVERAGE.reset(token)
    assert skipped.values[0, 0, 0] == 7.0 and skipped.sample_values is None
    assert averaged.values[0, 0, 0] == 2.0
    assert averaged.sample_values[:, 0, 0, 0].tolist() == [1.0, 3.0]
