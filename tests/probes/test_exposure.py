"""The exposure probe: planning, hand-computed exposure shares, skew@k and NDKL against the
catalog's shares and given targets, unknown columns as one-line errors, and an audit run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from recaudit.catalog import Catalog
from recaudit.config import StatsConfig, parse_config
from recaudit.engine import Answer
from recaudit.errors import ConfigError, ProbeCannotRun
from recaudit.grounding import Grounding
from recaudit.probes.exposure import ExposureParams, ExposureProbe, group_labels
from recaudit.probes.registry import AuditContext, get_probe
from recaudit.recommenders.base import Response

FAST = StatsConfig(n_bootstrap=200, n_permutations=199, seed=0)
W2, W3 = 1 / math.log2(3), 0.5  # exposure at ranks 2 and 3 (rank 1: 1)
SUBJECTS = {"source": "inline", "items": [f"S{i}" for i in range(6)]}


@pytest.fixture(scope="module")
def catalog():
    """Items 0-5: provider A = {0, 1}, B = {2, 3, 4, 5} (catalog shares 1/3, 2/3)."""
    items = pd.DataFrame({"item_id": [str(i) for i in range(6)],
                          "title": [f"Film {i} (199{i})" for i in range(6)],
                          "provider": ["A", "A", "B", "B", "B", "B"]})
    return Catalog.from_dataframe(items, group_cols=["provider"], name="providers")


def _ctx(catalog, stats=FAST):
    return AuditContext(catalog=catalog, stats=stats, capabilities=frozenset({"generate"}))


def _answers(queries, fn):
    out = {}
    for q in queries:
        ids = fn(q)
        out[q.id] = Answer(q.request, Response(text=" | ".join(ids), item_ids=ids),
                           Grounding(item_ids=ids, unmatched=[], entries=list(ids)))
    return out


def _run(catalog, fn, **params):
    params.setdefault("subjects", SUBJECTS)
    params.setdefault("groups", ["provider"])
    probe = ExposureProbe(ExposureParams(**params))
    queries = probe.plan(_ctx(catalog))
    return probe.analyse(_ctx(catalog), queries, _answers(queries, fn))


def _one(res, metric, value=None, k=None, attribute="provider"):
    recs = [r for r in res.metrics if r.metric == metric and r.attribute == attribute
            and r.value == value and (k is None or r.k == k)]
    assert len(recs) == 1, (metric, value, k, recs)
    return recs[0]


def test_registered_with_tags():
    cls = get_probe("exposure")
    assert cls is ExposureProbe and "fairness" in cls.tags


def test_plan_uses_fairllm_neutral_prompts(catalog):
    probe = ExposureProbe(ExposureParams(k=3, subjects=SUBJECTS, groups=["provider"]))
    queries = probe.plan(_ctx(catalog))
    assert [q.id for q in queries] == [f"{m}|neutral" for m in range(6)]
    assert queries[0].request.messages[-1].content.startswith("I am a fan of S0. Please "
                                                              "provide me with a list of 3 movie")
    assert queries[0].request.messages[0].content == "You are a movie recommendation system."


def test_fixed_list_hand_computed(catalog):
    res = _run(catalog, lambda q: ["0", "2", "3"], k=3, skew_ks=[1])
    tot = 1 + W2 + W3
    a = _one(res, "exposure_share", "A")
    assert a.estimate == pytest.approx(1 / tot) and a.n == 6
    assert _one(res, "exposure_share", "B").estimate == pytest.approx((W2 + W3) / tot)
    # top-3 share of A = 1/3 = its catalog share: skew 0; top-1 share 1 -> ln 3
    assert _one(res, "skew_at_k", "A", k=3).estimate == pytest.approx(0.0, abs=1e-12)
    assert _one(res, "skew_at_k", "A", k=1).estimate == pytest.approx(math.log(3))
    assert _one(res, "skew_at_k", "B", k=1).estimate is None  # B absent from every top-1
    # NDKL against (1/3, 2/3): prefixes (1, 0), (1/2, 1/2), (1/3, 2/3)
    kl1 = math.log(3)
    kl2 = 0.5 * math.log(1.5) + 0.5 * math.log(0.75)
    expected = (kl1 + W2 * kl2) / tot
    nd = _one(res, "ndkl", "provider vs catalog", k=3)
    assert nd.estimate == pytest.approx(expected)
    assert nd.ci_low == pytest.approx(expected) and nd.ci_high == pytest.approx(expected)


def test_targets_and_averaging_over_lists(catalog):
    lists = {0: ["0", "1"], 1: ["2", "3"]}  # alternate: all-A lists and all-B lists
    res = _run(catalog, lambda q: lists[q.meta["unit"] % 2], k=2, skew_ks=[],
               targets={"provider": {"A": 0.5}})
    # mean exposure share of A = (1 + 0) / 2 over lists; top-2 share the same
    assert _one(res, "exposure_share", "A").estimate == pytest.approx(0.5)
    sk = _one(res, "skew_at_k", "A", k=2)
    assert sk.estimate == pytest.approx(0.0, abs=1e-12)
    assert "target" in sk.convention
    assert sk.ci_low < 0 < sk.ci_high  # resampling lists moves the share both ways
    # each list is single-group: KL(prefix) = ln 2 at both positions -> NDKL = ln 2
    assert _one(res, "ndkl", "provider vs target", k=2).estimate == pytest.approx(math.log(2))
    uni = _run(catalog, lambda q: ["0", "2"], k=2, skew_ks=[], reference="uniform")
    assert _one(uni, "skew_at_k", "A", k=2).estimate == pytest.approx(0.0, abs=1e-12)


def test_over_exposure_is_a_finding(catalog):
    subjects = {"source": "inline", "items": [f"S{i}" for i in range(12)]}
    res = _run(catalog, lambda q: ["0", "1"], k=2, skew_ks=[], subjects=subjects)
    f = next(f for f in res.findings if f.title.startswith("provider:"))
    # top-2 share of A = 1 vs 1/3 desired: skew ln 3, CI degenerate; B never appears
    assert "'A' is over-represented" in f.title and f.severity == "high"
    assert f.effect == pytest.approx(math.log(3))
    assert "1 groups with a positive desired share never appear (e.g. 'B')" in f.detail


def test_a_skew_on_too_few_lists_is_never_rated_above_low(catalog):
    """The small-sample rule: 6 lists < 10 (the demo's exposure probe, 7 lists, said HIGH)."""
    res = _run(catalog, lambda q: ["0", "1"], k=2, skew_ks=[])
    f = next(f for f in res.findings if f.title.startswith("provider:"))
    assert "'A' is over-represented" in f.title and f.severity == "low"


def test_zero_target_makes_ndkl_inf_and_is_left_out(catalog):
    res = _run(catalog, lambda q: ["0", "2"] if q.meta["unit"] < 3 else ["2", "3"], k=2,
               skew_ks=[], targets={"provider": {"A": 0.0}})
    nd = _one(res, "ndkl", "provider vs target", k=2)
    assert nd.n == 3 and nd.estimate == 0.0 and "NDKL inf" in nd.warning
    assert not any(r.value == "A" for r in res.metrics if r.metric == "skew_at_k")


def test_builtin_columns_and_missing_labels(catalog):
    res = _run(catalog, lambda q: ["0", "5"], k=2, groups=["decade", "head_tail"], skew_ks=[])
    assert _one(res, "exposure_share", "1990s", attribute="decade").estimate == 1.0
    assert group_labels({"a": float("nan"), "b": None, "c": 3}) == {"a": "unknown",
                                                                    "b": "unknown", "c": "3"}


def test_unknown_column_means_the_probe_cannot_run(catalog):
    """Not a DataError (which stopped the whole audit): the probe alone cannot be fed."""
    probe = ExposureProbe(ExposureParams(subjects=SUBJECTS, groups=["studio"]))
    with pytest.raises(ProbeCannotRun) as err:
        probe.plan(_ctx(catalog))
    assert err.value.reason == ("item group column 'studio' not found; available: title, year, "
                                "genres, popularity, provider, head_tail, genre, decade")


def test_bad_params_are_one_line_config_errors(catalog):
    with pytest.raises(ConfigError) as err:
        parse_config({"probes": [{"probe": "exposure", "params": {
            "groups": ["genre"], "targets": {"provider": {"A": 0.5}}}}]})
    assert "\n" not in str(err.value) and "not in groups" in str(err.value)
    with pytest.raises(ValidationError, match="sum to at most 1"):
        ExposureParams(groups=["provider"], targets={"provider": {"A": 0.7, "B": 0.6}})
    probe = ExposureProbe(ExposureParams(subjects=SUBJECTS, groups=["provider"],
                                         targets={"provider": {"C": 0.5}}))
    with pytest.raises(ConfigError, match="target group 'C' does not exist"):
        probe.plan(_ctx(catalog))
    cfg = parse_config({"probes": [{"probe": "exposure", "suite": "exposure"}]})
    assert cfg.probes[0].params["groups"] == ["genre", "head_tail", "decade"]


def test_failed_answers_are_left_out(catalog):
    probe = ExposureProbe(ExposureParams(k=2, subjects=SUBJECTS, groups=["provider"]))
    queries = probe.plan(_ctx(catalog))
    answers = _answers(queries, lambda q: ["0", "2"])
    del answers[queries[0].id]
    res = probe.analyse(_ctx(catalog), queries, answers)
    assert _one(res, "exposure_share", "A").n == 5
    assert any("1 of 6 requests left out" in w for w in res.warnings)
    refusing = _run(catalog, lambda q: [] if q.meta["unit"] < 4 else ["0", "2"], k=2)
    f = refusing.findings[0]
    # 6 requests are below the reliable number of units: the small-sample rule caps it at low
    assert f.title.startswith("67% of answers contain no catalog item") and f.severity == "low"
    assert _one(refusing, "exposure_share", "A").n == 2
    nothing = _run(catalog, lambda q: [], k=2)
    assert _one(nothing, "ndkl", None, k=2).n == 0


def test_run_audit_end_to_end(tmp_path):
    from recaudit.audit import run_audit
    from recaudit.recommenders.python import PythonRecommender

    from .synthetic_catalog import synthetic_catalog

    cat = synthetic_catalog()
    cfg = parse_config({
        "name": "synthetic", "model": "python:tests.probes.synthetic_recommenders:ignore",
        "engine": {"cache": str(tmp_path / "cache.sqlite"), "progress": False},
        "stats": {"n_bootstrap": 100, "n_permutations": 99, "min_group_size": 5},
        "probes": [{"probe": "exposure", "suite": "exposure",
                    "params": {"k": 5, "subjects": {"source": "catalog_popular", "n": 8},
                               "groups": ["decade", "head_tail"]}}]})
    rec = PythonRecommender("tests.probes.synthetic_recommenders:ignore")
    result = run_audit(cfg, recommender=rec, catalog=cat, progress=False)
    res = result.probe("exposure:exposure")
    assert res.status == "ok", res.error
    shares = [r.estimate for r in res.metrics if r.metric == "exposure_share"
              and r.attribute == "decade"]
    assert sum(shares) == pytest.approx(1.0)
    nd = _one(res, "ndkl", "head_tail vs catalog", k=5, attribute="head_tail")
    assert np.isfinite(nd.estimate)
    bad = parse_config({**cfg.model_dump(mode="json"), "probes": [
        {"probe": "exposure", "params": {"groups": ["studio"], "k": 5}}]})
    skipped = run_audit(bad, recommender=rec, catalog=cat, progress=False).probes[0]
    assert skipped.status == "skipped" and skipped.skip_kind == "no_data"  # not an audit abort
    assert "item group column 'studio' not found" in skipped.error


def test_profile_prompts_are_the_profile_probes_neutral_requests():
    from recaudit.probes.profile import ProfileParams, ProfileProbe

    from .synthetic_catalog import synthetic_catalog

    cat = synthetic_catalog()
    probe = ExposureProbe(ExposureParams(prompts="profiles", n_users=5, history_items=4, k=6,
                                         groups=["decade"]))
    queries = probe.plan(_ctx(cat))
    prof = ProfileProbe(ProfileParams(n_users=5, history_items=4, k=6)).plan(_ctx(cat))
    neutral = [q for q in prof if q.meta["attribute"] is None]
    assert [q.request.key() for q in queries] == [q.request.key() for q in neutral]
    assert queries[0].request.messages[-1].content.startswith("I am a user. I have watched")
    res = probe.analyse(_ctx(cat), queries, _answers(queries, lambda q: ["0", "1", "2"]))
    assert _one(res, "exposure_share", "1990s", attribute="decade").estimate == 1.0
    with pytest.raises(ValidationError, match="lacks placeholder.*history"):
        ExposureParams(prompts="profiles", template="I am {value}, {K} please about {name}")


# -- the floor: what a group-blind model scores -----------------------------------------------
def _blind_or_planted(rep: int, bias: float):
    """Each subject's 5 items drawn at random from the 60-item catalog (group-blind), or, with
    probability ``bias``, all 5 from provider A (a planted over-exposure)."""
    import hashlib

    def fn(q):
        rng = np.random.default_rng(int(hashlib.sha256(f"{rep}|{q.id}".encode()).hexdigest()
                                         [:12], 16))
        pool = 20 if bias and rng.random() < bias else 60
        return [str(i) for i in rng.choice(pool, 5, replace=False)]
    return fn


def test_ndkl_and_skew_carry_a_group_blind_floor_and_floor_gates_separate_bias():
    """Issue 20: NDKL is positive under noise (a group-blind model's 5-item lists score about
    0.36 against the catalog's own shares). 20 seeded audits of 40 subjects: the group-blind
    model's NDKL lies below its floor's 95th percentile in 20 of 20 (measured), every NDKL
    and skew@5 CI covers its estimate, and ``ci`` and ``floor`` gates (NDKL <= 0.1, |skew|
    <= 0.1) pass 20 of 20 (a ``ci`` gate on the unfloored NDKL would fail all 20: its CI low
    is about 0.28). A planted over-exposure (all 5 items from provider A for 30% of the
    subjects) fails the floor gates in 20 of 20 (measured)."""
    from recaudit.gates import evaluate_gates

    from ..gate_recommenders import audit_result

    items = pd.DataFrame({"item_id": [str(i) for i in range(60)],
                          "title": [f"Film {i}" for i in range(60)],
                          "provider": ["A"] * 20 + ["B"] * 40})
    cat = Catalog.from_dataframe(items, group_cols=["provider"], name="prov")
    subjects = {"source": "inline", "items": [f"S{i}" for i in range(40)]}
    gates = [{"name": f"{m}-{mode}", "probe": "exposure", "metric": m, "max": 0.1, "mode": mode,
              **({"min": -0.1} if m == "skew_at_k" else {})}
             for m in ("ndkl", "skew_at_k") for mode in ("ci", "floor")]
    for bias in (0.0, 0.3):
        below = passed_floor = 0
        for rep in range(20):
            res = _run(cat, _blind_or_planted(rep, bias), k=5, subjects=subjects, seed=rep)
            nd = _one(res, "ndkl", value="provider vs catalog", k=5)
            skews = [_one(res, "skew_at_k", value=g, k=5) for g in ("A", "B")]
            assert nd.null_mean is not None and 0 < nd.null_mean < nd.null_p95
            assert all(r.null_p95 is not None and r.p_value is not None for r in skews)
            verdicts = {g.name: g.passed for g in evaluate_gates(audit_result([res]), gates)}
            below += nd.estimate < nd.null_p95
            if bias == 0.0:
                assert all(r.ci_low <= r.estimate <= r.ci_high for r in [nd, *skews])
                assert all(verdicts.values()), (rep, verdicts)
            passed_floor += verdicts["ndkl-floor"] and verdicts["skew_at_k-floor"]
        if bias == 0.0:
            assert below >= 18 and passed_floor == 20, (below, passed_floor)
        else:
            assert below == 0 and passed_floor == 0, (below, passed_floor)


def test_gated_skew_cis_are_simultaneous_over_the_groups():
    """A gate without ``value`` judges every group's skew@k at the largest k together, so those
    CIs are Bonferroni-simultaneous (each at 1 - 0.05 / G, wider than the 95% one at a smaller
    k); before, each was a 95% CI and a group-blind model failed such a gate in ~3 x 5% of
    audits (issue 20's validation)."""
    catalog = Catalog.from_dataframe(pd.DataFrame({
        "item_id": [str(i) for i in range(30)], "title": [f"Film {i:02d}" for i in range(30)],
        "provider": ["A"] * 15 + ["B"] * 9 + ["C"] * 6}), group_cols=["provider"])
    res = _run(catalog, _blind_or_planted(0, 0.0), k=5, skew_ks=[5],
               subjects={"source": "inline", "items": [f"S{i}" for i in range(30)]})
    recs = [_one(res, "skew_at_k", g, k=5) for g in ("A", "B", "C")]
    assert all(r.confidence == pytest.approx(1 - 0.05 / 3) for r in recs)
    assert all("simultaneous over 3 groups" in r.convention for r in recs)
    # the same statistic at a smaller k (not gated by default) keeps the 95% CI
    small = _run(catalog, _blind_or_planted(0, 0.0), k=5, skew_ks=[3],
                 subjects={"source": "inline", "items": [f"S{i}" for i in range(30)]})
    narrow = _one(small, "skew_at_k", "A", k=3)
    assert narrow.confidence == pytest.approx(0.95) and "simultaneous" not in narrow.convention
