"""The CFaiRLLM profile probe: planning, hand-checked metrics, fairlearn / AIF360 agreement,
intersectional groups, small-group warnings, and an end-to-end audit with both new probes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from recaudit.config import StatsConfig, parse_config
from recaudit.engine import Answer
from recaudit.errors import ConfigError, ProbeCannotRun
from recaudit.grounding import Grounding
from recaudit.probes.profile import ProfileParams, ProfileProbe
from recaudit.probes.registry import AuditContext, get_probe
from recaudit.recommenders.base import Response
from recaudit.stats import benjamini_hochberg

from . import synthetic_recommenders as sr
from .synthetic_catalog import synthetic_catalog

FAST = StatsConfig(n_bootstrap=200, n_permutations=199, seed=0)


@pytest.fixture(scope="module")
def catalog():
    return synthetic_catalog()


def _ctx(catalog, stats=FAST):
    return AuditContext(catalog=catalog, stats=stats, capabilities=frozenset({"generate"}))


def _answers(queries, fn):
    """Answers as the engine would build them for a recommender returning item ids."""
    out = {}
    for q in queries:
        ids = fn(q)
        out[q.id] = Answer(q.request, Response(text=" | ".join(ids), item_ids=ids),
                           Grounding(item_ids=ids, unmatched=[], entries=list(ids)))
    return out


def _by(res, metric, attribute, value=None):
    recs = res.metric(metric, attribute=attribute, value=value)
    assert len(recs) == 1, (metric, attribute, value, recs)
    return recs[0]


# -- parameters ---------------------------------------------------------------------------------
def test_registered_with_tags():
    cls = get_probe("profile")
    assert cls is ProfileProbe
    assert set(cls.tags) == {"fairness", "consumer", "cfairllm", "accuracy"}
    assert cls.requires == frozenset({"generate", "embed"})


@pytest.mark.parametrize("template, missing", [
    ("I am {value} user; {K} please", "{history}"),
    ("I watched {history}; give {K}", "{value}"),
    ("I am {value}, I watched {history}", "{K}"),
])
def test_template_placeholders_are_validated(template, missing):
    with pytest.raises(ValidationError, match=f"template lacks placeholder.*{missing}"):
        ProfileParams(template=template)


def test_bad_params_are_one_line_config_errors():
    with pytest.raises(ConfigError) as err:
        parse_config({"probes": [{"probe": "profile", "params": {"template": "no slots"}}]})
    assert "\n" not in str(err.value) and "template" in str(err.value)
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config({"probes": [{"probe": "profile", "params": {"n_user": 3}}]})
    with pytest.raises(ConfigError, match="sampling"):
        parse_config({"probes": [{"probe": "profile", "params": {"sampling": "oldest"}}]})
    with pytest.raises(ConfigError, match="intersection_template names attribute 'age'"):
        parse_config({"probes": [{"probe": "profile",
                                  "params": {"attributes": {"gender": ["a female", "a male"]}}}]})
    cfg = parse_config({"probes": [{"probe": "profile", "suite": "cfairllm"}]})
    assert cfg.probes[0].params["n_users"] == 50 and cfg.probes[0].params["k"] == 10


def test_intersection_phrasing():
    groups = ProfileParams().groups()
    assert list(groups) == ["gender", "age", "gender×age"]
    assert groups["gender×age"] == ["a young female", "a middle aged female", "an old female",
                                    "a young male", "a middle aged male", "an old male"]
    assert "gender×age" not in ProfileParams(intersection=False).groups()
    custom = ProfileParams(attributes={"gender": ["a female"], "occupation": ["an artist"]},
                           intersection_template="{gender} {occupation}")
    assert custom.groups()["gender×occupation"] == ["a female artist"]


# -- planning -----------------------------------------------------------------------------------
def test_plan_samples_users_and_builds_prompts(catalog):
    p = ProfileProbe(ProfileParams(n_users=5, history_items=4, seed=3))
    queries = p.plan(_ctx(catalog))
    assert len(queries) == 5 * (1 + 2 + 3 + 6)
    assert len({q.id for q in queries}) == len(queries)
    neutral = [q for q in queries if q.meta["attribute"] is None]
    assert len(neutral) == 5 and all(q.meta["value"] == "neutral" for q in neutral)
    q0 = neutral[0]
    uid = q0.meta["user_id"]
    assert q0.request.messages[0].content == "You are a movie recommendation system."
    assert q0.request.messages[-1].content.startswith("I am a user. I have watched the following")
    assert q0.request.k == 10
    assert len(q0.meta["history"]) == 4
    train = set(catalog.history(uid, "train")["item_id"])
    assert set(q0.meta["history"]) <= train
    assert q0.meta["held_out"] == catalog.history(uid, "test")["item_id"].tolist()
    same_user = [q for q in queries if q.meta["user_id"] == uid]
    histories = {q.request.messages[-1].content.split("movies: ")[1] for q in same_user}
    assert len(histories) == 1  # the value is the only thing that changes
    young_f = next(q for q in same_user if q.meta["value"] == "a young female")
    assert young_f.meta["attribute"] == "gender×age"
    assert young_f.request.messages[-1].content.startswith("I am a young female user.")
    # seeded: same plan twice, another seed another sample
    assert [q.request.key() for q in p.plan(_ctx(catalog))] == [q.request.key() for q in queries]
    other = ProfileProbe(ProfileParams(n_users=5, history_items=4, seed=4)).plan(_ctx(catalog))
    assert [q.request.key() for q in other] != [q.request.key() for q in queries]


@pytest.mark.parametrize("sampling", ["top_rated", "recent"])
def test_history_sampling(catalog, sampling):
    p = ProfileProbe(ProfileParams(n_users=3, history_items=4, sampling=sampling))
    for user in p.sample_users(catalog):
        train = catalog.history(user.user_id, "train")
        if sampling == "recent":
            expected = train["item_id"].tolist()[-4:]
        else:
            expected = train.sort_values(["rating", "timestamp"], ascending=False,
                                         kind="stable")["item_id"].tolist()[:4]
        assert user.history == expected


def test_no_eligible_user_means_the_probe_cannot_run(catalog):
    p = ProfileProbe(ProfileParams(history_items=500))
    with pytest.raises(ProbeCannotRun, match="no user has >= 500 training interactions"):
        p.plan(_ctx(catalog))


# -- analysis by hand ---------------------------------------------------------------------------
def test_metrics_match_a_hand_computation(catalog):
    """3 users; neutral = [h0, o1, o2]; female = [o3, o4, o5]; male = neutral for two users and
    [o1, h0, o2] for the third (h = held-out items, o = others)."""
    params = ProfileParams(n_users=3, history_items=5, k=3,
                           attributes={"gender": ["a female", "a male"]}, intersection=False)
    probe_ = ProfileProbe(params)
    ctx = _ctx(catalog)
    queries = probe_.plan(ctx)
    users = [q.meta["user_id"] for q in queries if q.meta["attribute"] is None]
    assert len(users) == 3

    def lists(q):
        h = q.meta["held_out"]
        o = [i for i in catalog.item_ids if i not in h][:6]
        if q.meta["value"] == "neutral":
            return [h[0], o[1], o[2]]
        if q.meta["value"] == "a female":
            return [o[3], o[4], o[5]]
        return [o[1], h[0], o[2]] if q.meta["user_id"] == users[2] else [h[0], o[1], o[2]]

    res = probe_.analyse(ctx, queries, _answers(queries, lists))
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # 3 held-out items, k = 3
    ndcg_male = (2 / idcg + (1 / math.log2(3)) / idcg) / 3
    expect = {
        ("jaccard", "a female"): 0.0, ("jaccard", "a male"): 1.0,
        ("prag_star", "a female"): 0.0, ("prag_star", "a male"): (1 + 1 + 2 / 3) / 3,
        ("hr", "a female"): 0.0, ("hr", "a male"): 1.0, ("hr", "neutral"): 1.0,
        ("ndcg", "a female"): 0.0, ("ndcg", "a male"): ndcg_male,
        ("ndcg", "neutral"): 1 / idcg,
    }
    for (metric, value), want in expect.items():
        rec = _by(res, metric, "gender", value)
        assert rec.estimate == pytest.approx(want), (metric, value)
        assert rec.n == 3 and rec.k == 3
    assert not res.metric("jaccard", value="neutral")  # similarity to itself is not reported
    assert _by(res, "ndcg_gap", "gender").estimate == pytest.approx(ndcg_male)
    assert _by(res, "hr_gap", "gender").estimate == pytest.approx(1.0)
    assert _by(res, "jaccard_gap", "gender").estimate == pytest.approx(1.0)
    assert _by(res, "ndcg_ratio", "gender").estimate == pytest.approx(0.0)
    # between-group indices of benefit NDCG + 1: group means 1 (female) and 1 + ndcg_male
    b = np.array([1.0] * 3 + [1.0 + ndcg_male] * 3)
    r = b / b.mean()
    assert _by(res, "generalized_entropy", "gender").estimate == pytest.approx(
        np.mean(r ** 2 - 1) / 2)
    assert _by(res, "theil", "gender").estimate == pytest.approx(np.mean(r * np.log(r)))
    gap = _by(res, "ndcg_gap", "gender")
    assert 0 < gap.p_value <= 1 and gap.p_adjusted == pytest.approx(gap.p_value)
    assert gap.ci_low <= gap.estimate <= gap.ci_high
    # 3 users < min_group_size 10: every record warns, and the result says so
    assert all(m.warning and "only 3 units" in m.warning for m in res.metrics)
    assert any(w.startswith("gender: only 3 units (< 10)") and w.endswith("(units: users)")
               for w in res.warnings)
    # raw records allow recomputation; examples carry titles
    assert len(res.records) == len(queries)
    rec0 = res.records[0]
    assert {"id", "user_id", "attribute", "value", "text", "item_ids", "unmatched", "error",
            "history", "held_out"} <= set(rec0)
    assert res.examples and res.examples[0]["neutral"][0].startswith("Movie ")
    assert set(res.examples[0]["attributed"]["gender"]) == {"a female", "a male"}
    assert len(res.tables["per_user"]) == 3 * 3


# -- fairlearn and AIF360 agreement, intersection ------------------------------------------------
@pytest.fixture(scope="module")
def noise_result(catalog):
    params = ProfileParams(n_users=20, history_items=6, k=5)
    probe_ = ProfileProbe(params)
    ctx = _ctx(catalog, StatsConfig(n_bootstrap=200, n_permutations=199, min_group_size=10))
    queries = probe_.plan(ctx)
    res = probe_.analyse(ctx, queries, _answers(
        queries, lambda q: sr.noise(q.request.chat_dicts(), q.request.k)["item_ids"]))
    return params, res


def test_gaps_equal_max_minus_min_of_group_means(noise_result):
    params, res = noise_result
    for attr, values in params.groups().items():
        for metric in ("ndcg", "hr", "jaccard"):
            means = [_by(res, metric, attr, v).estimate for v in values]
            assert _by(res, f"{metric}_gap", attr).estimate == pytest.approx(
                max(means) - min(means))
        means = [_by(res, "ndcg", attr, v).estimate for v in values]
        assert _by(res, "ndcg_ratio", attr).estimate == pytest.approx(min(means) / max(means))


def test_inequality_indices_match_aif360(noise_result):
    from aif360.sklearn.metrics import generalized_entropy_index, theil_index

    params, res = noise_result
    rows = res.tables["per_user"]
    for attr, values in params.groups().items():
        ndcg = {v: [r["ndcg"] for r in rows if r["attribute"] == attr and r["value"] == v]
                for v in values}
        # AIF360's between-group index: each individual's benefit replaced by its group mean
        b = np.concatenate([np.full(len(x), np.mean(x) + 1.0) for x in ndcg.values()])
        assert _by(res, "generalized_entropy", attr).estimate == pytest.approx(
            generalized_entropy_index(b, alpha=2), abs=1e-12)
        assert _by(res, "theil", attr).estimate == pytest.approx(theil_index(b), abs=1e-12)


def test_intersection_groups_and_p_values(noise_result):
    params, res = noise_result
    inter = params.groups()["gender×age"]
    assert len(inter) == 6
    for metric in ("jaccard", "prag_star", "hr", "ndcg"):
        values = {m.value for m in res.metric(metric, attribute="gender×age")}
        assert values == set(inter) | ({"neutral"} if metric in ("hr", "ndcg") else set())
    for metric in ("hr", "ndcg"):
        assert _by(res, metric, "gender×age", "neutral").n == 20
    for metric in ("ndcg_gap", "hr_gap", "jaccard_gap"):  # BH across the three attributes
        recs = [_by(res, metric, a) for a in params.groups()]
        adjusted = benjamini_hochberg([r.p_value for r in recs]).adjusted
        assert [r.p_adjusted for r in recs] == pytest.approx(list(adjusted))
        assert all(0 < r.p_value <= r.p_adjusted <= 1 for r in recs)
    assert not res.warnings  # 20 users >= min_group_size 10
    assert len(res.findings) == 3


def test_ignoring_recommender_has_no_gap(catalog):
    probe_ = ProfileProbe(ProfileParams(n_users=12, history_items=6, k=5))
    ctx = _ctx(catalog)
    queries = probe_.plan(ctx)
    res = probe_.analyse(ctx, queries, _answers(
        queries, lambda q: sr.ignore(q.request.chat_dicts(), q.request.k)["item_ids"]))
    for attr in ("gender", "age", "gender×age"):
        assert _by(res, "jaccard_gap", attr).estimate == 0.0
        assert _by(res, "ndcg_gap", attr).p_value == 1.0
        assert _by(res, "generalized_entropy", attr).estimate == 0.0
        assert _by(res, "theil", attr).estimate == 0.0
    assert all(f.severity == "info" for f in res.findings)


def test_failed_answers_leave_users_out_with_a_warning(catalog):
    probe_ = ProfileProbe(ProfileParams(n_users=4, history_items=6, k=5, intersection=False))
    ctx = _ctx(catalog, StatsConfig(n_bootstrap=50, n_permutations=99, min_group_size=2))
    queries = probe_.plan(ctx)
    answers = _answers(queries, lambda q: sr.ignore(q.request.chat_dicts(), 5)["item_ids"])
    bad = next(q for q in queries if q.meta["value"] == "an old")
    answers[bad.id] = Answer(bad.request, Response(error="boom"), None)
    del answers[next(q.id for q in queries if q.meta["value"] == "a male")]
    res = probe_.analyse(ctx, queries, answers)
    assert _by(res, "ndcg", "age", "an old").n == 3
    assert _by(res, "ndcg", "gender", "a male").n == 3
    assert any("age: 1 of 4 users left out" in w for w in res.warnings)
    errors = {r["id"]: r["error"] for r in res.records}
    assert errors[bad.id] == "boom" and "not computed" in errors.values()


# -- end to end ---------------------------------------------------------------------------------
def test_run_audit_with_profile_and_leakage(catalog, tmp_path):
    from recaudit.audit import run_audit
    from recaudit.recommenders.python import PythonRecommender
    from recaudit.results import AuditResult

    cfg = parse_config({
        "name": "synthetic",
        "model": "python:tests.probes.synthetic_recommenders:gender_marker",
        "engine": {"cache": str(tmp_path / "cache.sqlite"), "progress": False},
        "stats": {"n_bootstrap": 100, "n_permutations": 99, "min_group_size": 5},
        "probes": [
            {"probe": "profile", "suite": "cfairllm",
             "params": {"n_users": 8, "history_items": 6, "k": 5}},
            {"probe": "leakage", "suite": "leakage",
             "params": {"subjects": {"source": "inline", "items": [f"S{i}" for i in range(12)]},
                        "k": 8, "n_permutations": 59,
                        "attributes": {"gender": ["a female", "a male"],
                                       "age": ["a young", "an old"]}}},
        ],
    })
    rec = PythonRecommender("tests.probes.synthetic_recommenders:gender_marker")
    result = run_audit(cfg, recommender=rec, catalog=catalog, progress=False)
    prof, leak = result.probe("profile:cfairllm"), result.probe("leakage:leakage")
    assert prof.status == "ok" and leak.status == "ok", (prof.error, leak.error)
    assert prof.n_queries == 8 * 12 and prof.n_failed == 0
    assert _by(prof, "jaccard_gap", "gender").estimate == 0.0  # both values swap one item
    assert _by(prof, "jaccard", "gender", "a female").estimate == pytest.approx(4 / 6)
    g = _by(leak, "leakage_auc", "gender")
    assert g.estimate == pytest.approx(1.0) and g.p_adjusted < 0.05
    assert _by(leak, "leakage_auc", "age").estimate == 0.5
    back = AuditResult.model_validate_json(result.to_json())
    assert back.probe("leakage").metrics == leak.metrics


def test_lists_that_never_hit_give_undefined_ratio_without_crashing(catalog):
    probe_ = ProfileProbe(ProfileParams(n_users=4, history_items=6, k=3, benefit_offset=0.0,
                                        intersection=False))
    ctx = _ctx(catalog)
    queries = probe_.plan(ctx)
    res = probe_.analyse(ctx, queries, _answers(queries, lambda q: ["F", "M"]))
    assert _by(res, "ndcg_gap", "gender").estimate == 0.0
    ratio = _by(res, "ndcg_ratio", "gender")
    assert ratio.estimate is None and "NDCG 0" in ratio.warning
    assert _by(res, "generalized_entropy", "age").estimate is None  # benefits all 0
    assert _by(res, "hallucination", "gender", "a male").k is None


def test_intersection_phrases_must_differ():
    with pytest.raises(ValidationError, match="same phrase for two value combinations"):
        ProfileParams(attributes={"gender": ["a female", "the female"], "age": ["a young"]})


def _starve_female(messages, k):
    """Only the two marker items (never held out) for users who say they are female: NDCG 0."""
    if " female " in messages[-1]["content"]:
        return {"item_ids": ["F", "M"]}
    return sr.ignore(messages, k)


def test_compare_flags_a_planted_utility_gap_with_a_paired_test(catalog):
    from recaudit.compare import compare_results

    from ..gate_recommenders import audit_result

    probe_ = ProfileProbe(ProfileParams(n_users=20, history_items=6, k=10, intersection=False))
    ctx = _ctx(catalog)
    queries = probe_.plan(ctx)

    def run(fn):
        return probe_.analyse(ctx, queries, _answers(
            queries, lambda q: fn(q.request.chat_dicts(), q.request.k)["item_ids"]))

    base, starved = run(sr.ignore), run(_starve_female)
    cmp = compare_results(audit_result([base]), audit_result([starved]))
    rows = {(r.metric, r.attribute, r.value): r for r in cmp.rows}
    gap = rows[("ndcg_gap", "gender", None)]
    assert gap.method.startswith("paired permutation (") and gap.status == "regression"
    assert gap.p_adjusted < 0.05 and gap.baseline == 0.0 and gap.current > 0.05
    female = rows[("ndcg", "gender", "a female")]
    assert female.status == "regression" and female.method == gap.method
    assert rows[("ndcg_gap", "age", None)].status != "regression"


# -- matched control -----------------------------------------------------------------------------
def test_control_runs_on_the_same_users_and_is_compared_with_each_gap(catalog):
    """control: [colour] asks the same users' prompts with a colour in the value's place; each
    gap gets a <m>_gap_vs_control record (paired over users) and the finding says where it is."""
    from recaudit.probes.attributes import CONTROL_ATTRIBUTES

    params = ProfileParams(n_users=12, history_items=6, k=5, intersection=False,
                           control=["colour"])
    probe_ = ProfileProbe(params)
    ctx = _ctx(catalog)
    queries = probe_.plan(ctx)
    ctrl = [q for q in queries if q.meta.get("control")]
    assert len(ctrl) == 12 * len(CONTROL_ATTRIBUTES["colour"])
    neutral = {q.meta["user_id"]: q.request.messages[-1].content for q in queries
               if q.meta["attribute"] is None}
    for q in ctrl:
        assert q.meta["attribute"] == "colour (control)"
        assert q.request.messages[-1].content == neutral[q.meta["user_id"]].replace(
            "I am a user", f"I am {q.meta['value']} user")
    plain = ProfileProbe(ProfileParams(n_users=12, history_items=6, k=5, intersection=False))
    assert len(plain.plan(ctx)) == len(queries) - len(ctrl)  # off by default
    res = probe_.analyse(ctx, queries, _answers(
        queries, lambda q: sr.noise(q.request.chat_dicts(), q.request.k)["item_ids"]))
    for attr in ("gender", "age"):
        for m in ("ndcg", "hr", "jaccard"):
            d = _by(res, f"{m}_gap_vs_control", attr, "colour (control)")
            raw, ctl = _by(res, f"{m}_gap", attr), _by(res, f"{m}_gap", "colour (control)")
            assert d.value == "colour (control)" and d.n == 12
            assert d.estimate == pytest.approx(raw.estimate - ctl.estimate)
            assert d.ci_low <= d.ci_high and 0 < d.p_value <= 1
    # the control's own gap tests are a family apart: the attributes' BH family is unchanged
    recs = [_by(res, "ndcg_gap", a) for a in ("gender", "age")]
    assert [r.p_adjusted for r in recs] == pytest.approx(
        list(benjamini_hochberg([r.p_value for r in recs]).adjusted))
    assert sum("irrelevant attribute (colour (control))" in f.detail for f in res.findings) == 2


def test_cfairllm_suite_has_no_control(catalog):
    from recaudit.probes.registry import build_probe

    cfg = parse_config({"probes": [{"probe": "profile", "suite": "cfairllm"}]})
    probe_ = build_probe(cfg.probes[0])
    assert probe_.params.control == {}
    assert not any(q.meta.get("control") for q in probe_.plan(_ctx(catalog)))
