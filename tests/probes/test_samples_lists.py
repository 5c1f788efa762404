"""Repeated samples in the numbers a probe computes from its lists without a table.

Every test feeds a probe answers shaped as the engine makes them with ``decoding.samples`` = N
(``Answer.samples``, sample 0 first) from a synthetic recommender whose sample j of a request
gives a known list, and checks the estimate against a hand computation over every sample; the
same recommender with one sample gives sample 0's number, as before repeated samples. Then the
self-consistency floor of a spread (``MetricRecord.self_floor``): a model whose samples disagree
but ignore the attribute stays within it, a planted attribute effect goes beyond it.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pytest

from recaudit.catalog import Catalog
from recaudit.config import StatsConfig
from recaudit.engine import Answer
from recaudit.grounding import Grounding
from recaudit.metrics.popularity import gini, pop_rsp
from recaudit.metrics.position import cramers_v_uniform
from recaudit.probes.counterfactual import CounterfactualParams, CounterfactualProbe
from recaudit.probes.exposure import ExposureParams, ExposureProbe
from recaudit.probes.leakage import LeakageParams, LeakageProbe
from recaudit.probes.popularity import PopularityParams, PopularityProbe
from recaudit.probes.position import PositionParams, PositionProbe
from recaudit.probes.profile import ProfileParams, ProfileProbe
from recaudit.probes.registry import AuditContext
from recaudit.recommenders.base import Response
from recaudit.report._common import floor_text
from recaudit.samples import self_consistency_floor
from recaudit.stats import spread_statistic

from .synthetic_catalog import synthetic_catalog
from .test_position import as_text, by_hash, position_catalog, prompt_candidates

FAST = StatsConfig(n_bootstrap=100, n_permutations=99, seed=0, min_group_size=2)


def _ctx(catalog, stats=FAST):
    return AuditContext(catalog=catalog, stats=stats, capabilities=frozenset({"generate"}))


def _answer(q, ids=None, text=None):
    if text is not None:  # a ranking the position probe parses
        return Answer(q.request, Response(text=text), Grounding(item_ids=[], entries=[]))
    return Answer(q.request, Response(text=" | ".join(ids), item_ids=ids),
                  Grounding(item_ids=list(ids), unmatched=[], entries=list(ids)))


def sampled(queries, fn, n, text=False):
    """The engine's answers with ``n`` samples: sample j of query q is ``fn(q, j)``."""
    out = {}
    for q in queries:
        made = [_answer(q, text=fn(q, j)) if text else _answer(q, fn(q, j)) for j in range(n)]
        if n > 1:
            made[0].samples = made
        out[q.id] = made[0]
    return out


def _analyse(probe, catalog, fn, n, text=False, stats=FAST):
    ctx = _ctx(catalog, stats)
    queries = probe.plan(ctx)
    return probe.analyse(ctx, queries, sampled(queries, fn, n, text)), queries


def _one(res, metric, **where):
    recs = [r for r in res.metric(metric) if all(getattr(r, k) == v for k, v in where.items())]
    assert len(recs) == 1, (metric, where, recs)
    return recs[0]


# -- exposure: skew@k of the cells' means over samples ----------------------------------------
def test_exposure_skew_uses_every_sample():
    """Provider A = items {0, 1} (catalog share 1/3). Sample 0 lists [0, 1] (all A), sample 1
    [2, 3] (all B): A's top-2 share is (1 + 0) / 2 = 1/2, skew = ln(1.5); sample 0 alone
    gives ln 3."""
    catalog = Catalog.from_dataframe(pd.DataFrame({
        "item_id": [str(i) for i in range(6)], "title": [f"Film {i} (199{i})" for i in range(6)],
        "provider": ["A", "A", "B", "B", "B", "B"]}), group_cols=["provider"], name="providers")
    probe = ExposureProbe(ExposureParams(subjects={"source": "inline", "items": [
        f"S{i}" for i in range(6)]}, groups=["provider"], k=2, skew_ks=[2]))
    lists = (["0", "1"], ["2", "3"])
    res, _ = _analyse(probe, catalog, lambda q, j: lists[j], 2)
    skew = _one(res, "skew_at_k", attribute="provider", value="A", k=2)
    assert skew.estimate == pytest.approx(math.log(1.5))
    assert any("group-blind floor draws one list per sample" in n for n in res.method_notes)
    one, _ = _analyse(ExposureProbe(probe.params), catalog, lambda q, j: lists[j], 1)
    assert _one(one, "skew_at_k", attribute="provider", value="A", k=2).estimate == \
        pytest.approx(math.log(3))


# -- profile: the fairlearn gap of the cells' means over samples ------------------------------
def test_profile_fairlearn_gap_uses_every_sample():
    """Neutral lists [0, 1]; 'a female' lists [0, 1] in sample 0 (Jaccard 1) and [2, 3] in
    sample 1 (Jaccard 0): mean 1/2; 'a male' always [0, 1] (Jaccard 1). jaccard_gap = 1/2;
    sample 0 alone gives 0."""
    catalog = synthetic_catalog()
    probe = ProfileProbe(ProfileParams(n_users=6, history_items=5, k=2, intersection=False,
                                       attributes={"gender": ["a female", "a male"]}))

    def fn(q, j):
        return ["2", "3"] if q.meta["value"] == "a female" and j == 1 else ["0", "1"]

    res, _ = _analyse(probe, catalog, fn, 2)
    assert _one(res, "jaccard_gap", attribute="gender").estimate == pytest.approx(0.5)
    assert _one(res, "jaccard", attribute="gender", value="a female").estimate == \
        pytest.approx(0.5)
    assert any("fairlearn gap / ratio" in n for n in res.method_notes)
    one, _ = _analyse(ProfileProbe(probe.params), catalog, fn, 1)
    assert _one(one, "jaccard_gap", attribute="gender").estimate == pytest.approx(0.0)


def _standard_gini(res):
    (rec,) = [r for r in res.metric("gini") if r.convention.startswith("normalization=n (")]
    return rec.estimate


# -- popularity: PopRSP pools the samples within a user; Gini is averaged over samples -------
def test_popularity_pop_rsp_and_gini_use_every_sample():
    """Sample 0 lists three short-head items, sample 1 three long-tail items (the same for
    every user and condition). One sample: no tail item is recommended, PopRSP = 1 exactly,
    Gini = 117/126 (3 of 42 items share every slot). Two samples: PopRSP pools both samples'
    counts within each user (= PopRSP of both samples' lists, each user's candidates counted
    once per sample); Gini is the mean of the two samples' Gini (both 117/126 here, and the
    coverage doubles nothing: 3 items per sample)."""
    catalog = synthetic_catalog()
    params = PopularityParams(n_users=8, history_items=4, k=3)
    head, tail = catalog.head_tail(params.head_share)
    heads = sorted(head, key=str)[:3]
    tails = sorted(tail, key=str)[:3]
    lists = (heads, tails)
    res, queries = _analyse(PopularityProbe(params), catalog, lambda q, j: lists[j], 2)
    units = sorted({q.meta["user_id"] for q in queries})
    train_df = catalog.split("train")
    train = [set(train_df[train_df["user_id"].astype(str) == u]["item_id"].astype(str))
             for u in units]
    want = pop_rsp([heads] * len(units) + [tails] * len(units), head, tail, train=train * 2)
    rsp = _one(res, "pop_rsp")
    assert rsp.estimate == pytest.approx(want) and want < 1.0
    assert rsp.null_mean is not None and rsp.p_value is not None
    assert _standard_gini(res) == pytest.approx(117 / 126)
    assert _one(res, "item_coverage").estimate == pytest.approx(3.0)
    assert any("PopRSP / PopREO pool" in n for n in res.method_notes)
    one, _ = _analyse(PopularityProbe(params), catalog, lambda q, j: lists[j], 1)
    assert _one(one, "pop_rsp").estimate == pytest.approx(1.0)


def test_popularity_gini_is_the_mean_of_each_samples_gini():
    """Sample 0: every user lists items 0-2 (Gini 117/126 over 42 items); sample 1: each user
    lists its own three items (more equal exposure): the estimate is the mean of the two."""
    catalog = synthetic_catalog()
    params = PopularityParams(n_users=8, history_items=4, k=3)
    order = {}

    def fn(q, j):
        if j == 0:
            return ["0", "1", "2"]
        u = order.setdefault(q.meta["user_id"], len(order))
        return [str(3 * u + i) for i in range(3)]

    res, queries = _analyse(PopularityProbe(params), catalog, fn, 2)
    users = list(dict.fromkeys(q.meta["user_id"] for q in queries))
    second = gini([fn(q, 1) for q in queries if q.meta["condition"] == "original"], 42)
    assert len(users) == 8
    # hand: 24 items once each (8 users x 3), 18 never: G = sum_{j=19}^{42} (2j - 43) / (42 * 24)
    hand = sum(2 * j - 43 for j in range(19, 43)) / (42 * 24)
    assert second == pytest.approx(hand)
    assert _standard_gini(res) == pytest.approx((117 / 126 + hand) / 2)
    assert _one(res, "item_coverage").estimate == pytest.approx((3 + 24) / 2)


# -- leakage: a row's features are the share of its samples holding an item -------------------
def test_leakage_auc_uses_every_sample():
    """Sample 0 lists [0] for every value (nothing to read); sample 1 lists [1] for 'a female'
    and [0] for 'a male'. One sample: AUC 0.5 by construction. Two samples: a female row has
    features (1/2, 1/2), a male row (1, 0): perfectly separable, AUC 1."""
    catalog = synthetic_catalog()
    params = LeakageParams(subjects={"source": "inline", "items": [
        f"Subject {i}" for i in range(12)]}, attributes={"gender": ["a female", "a male"]})

    def fn(q, j):
        return ["1"] if j == 1 and "female" in q.request.chat_dicts()[-1]["content"] else ["0"]

    res, _ = _analyse(LeakageProbe(params), catalog, fn, 2)
    auc = _one(res, "leakage_auc", attribute="gender", value=None)
    assert auc.estimate == pytest.approx(1.0) and auc.p_value < 0.05 and auc.n == 12
    table = next(t for t in res.units if t.metric == "leakage_proba")
    female_to_female = [row[0] for row in table.values]  # this fit's probabilities
    assert min(female_to_female) > max(row[2] for row in table.values)
    assert any("share of its sampled lists" in n for n in res.method_notes)
    one, _ = _analyse(LeakageProbe(params), catalog, fn, 1)
    assert _one(one, "leakage_auc", attribute="gender", value=None).estimate == 0.5


# -- position: first places averaged within a copy -------------------------------------------
def test_position_first_place_v_uses_every_sample():
    """Sample 0 echoes the input order (input position 0 always first: V = 1 with one
    sample); sample 1 ranks by a hash of the title. With both, each shuffled copy adds 1/2 to
    position 0 and 1/2 to the hash winner's input position."""
    catalog = position_catalog()
    params = PositionParams(n_users=12, n_shuffles=3)

    def fn(q, j):
        titles = prompt_candidates(q.request.chat_dicts())
        return as_text(titles if j == 0 else by_hash(titles))

    res, queries = _analyse(PositionProbe(params), catalog, fn, 2, text=True)
    counts = np.zeros(params.n_candidates)
    for q in queries:
        if q.meta["kind"] == "shuffle":
            titles = prompt_candidates(q.request.chat_dicts())
            counts[0] += 0.5
            counts[titles.index(by_hash(titles)[0])] += 0.5
    v = _one(res, "first_place_v")
    assert v.estimate == pytest.approx(cramers_v_uniform(counts)) and v.estimate < 1.0
    assert v.p_value <= 0.05 and v.null_mean < v.estimate
    assert sum(r["count"] for r in res.tables["first_place"]) == pytest.approx(36)
    assert any("first_place_v is Cramér's V of those expected counts" in n
               for n in res.method_notes)
    one, _ = _analyse(PositionProbe(params), catalog, fn, 1, text=True)
    assert _one(one, "first_place_v").estimate == pytest.approx(1.0)


def test_position_null_of_averaged_first_places_is_narrower():
    """The per-sample null: a copy's first place averaged over 4 uniformly random samples
    varies less than one draw, so its Cramér's V floor is lower than the one-sample floor."""
    from recaudit.probes.kit import Summariser
    from recaudit.results import ProbeResult

    kit = Summariser(ProbeResult(id="position", probe="position"), FAST)
    counts = np.full(5, 8.0)
    one = PositionProbe._first_place_null(kit, counts, "original")
    four = PositionProbe._first_place_null(kit, counts, "original", [4] * 40)
    assert one.shape == four.shape == (99,)
    assert np.mean(four) < 0.75 * np.mean(one)


# -- the self-consistency floor of a spread ----------------------------------------------------
def _digest(*parts) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def _random_list(*seed, k=10):
    rng = np.random.default_rng(_digest(*seed))
    return [str(i) for i in rng.choice(40, size=k, replace=False)]


def _counterfactual(fn, n, subjects=30):
    params = CounterfactualParams(
        subjects={"source": "inline", "items": [f"Subject {i}" for i in range(subjects)]},
        attributes={"gender": ["a boy", "a girl"]}, k=10, similarities=["jaccard"])
    res, _ = _analyse(CounterfactualProbe(params), synthetic_catalog(), fn, n)
    return _one(res, "snsr_jaccard", attribute="gender", k=10), res


def _prompt(q):
    return q.request.chat_dicts()[-1]["content"]


def test_a_noisy_attribute_blind_model_is_within_its_self_consistency_floor():
    """Every (prompt, sample) gets its own random list: the values' Jaccard with the neutral
    list differ by the model's disagreement with itself only."""
    rec, res = _counterfactual(lambda q, j: _random_list(_prompt(q), j), 4)
    print("noisy: snsr", rec.estimate, "self_floor", rec.self_floor, "null_p95", rec.null_p95)
    assert rec.self_floor is not None and rec.self_floor > 0
    assert rec.estimate <= rec.self_floor
    text = floor_text(res, rec)
    assert "own resampling gives up to" in text and "within what its disagreement" in text
    assert any("within what the model's own resampling gives" in f.detail for f in res.findings)
    single, _ = _counterfactual(lambda q, j: _random_list(_prompt(q), j), 1)
    assert single.self_floor is None


def test_a_planted_attribute_effect_is_beyond_the_self_consistency_floor():
    """'a boy' repeats the neutral list of its sample (Jaccard 1); 'a girl' gets a random list:
    a spread of about 0.85 while the model's resampling gives a few hundredths."""
    def fn(q, j):
        text = _prompt(q)
        if "a girl" in text:
            return _random_list(text, j)
        neutral = text.replace("a boy", "a")
        return _random_list(neutral, j)

    rec, res = _counterfactual(fn, 3)
    print("planted: snsr", rec.estimate, "self_floor", rec.self_floor, "null_p95", rec.null_p95)
    assert rec.estimate > 0.5 and rec.self_floor is not None
    assert rec.estimate > rec.self_floor
    assert "beyond what its disagreement" in floor_text(res, rec)
    assert any("beyond what the model's own resampling gives" in f.detail for f in res.findings)


def test_the_self_floor_of_a_deterministic_model_is_zero():
    rec, _ = _counterfactual(lambda q, j: _random_list(_prompt(q)), 2)
    assert rec.self_floor == 0.0


def test_self_consistency_floor_matches_the_noise_of_the_mean_cell():
    """Cells with independent normal sampling noise (sd 1 per sample, 4 samples, 200 units,
    3 conditions, no effect): the floor is the 95th percentile of the range of 3 condition
    means, each with sd 1 / sqrt(4 * 200); a planted shift of a condition does not move it."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 200, 3))
    fn = spread_statistic("range")
    floor = self_consistency_floor(x, fn, seed=1)
    sd = 1 / math.sqrt(4 * 200)
    sims = fn(rng.normal(scale=sd, size=(20_000, 3)))
    assert floor == pytest.approx(np.quantile(sims, 0.95), rel=0.15)
    shifted = x.copy()
    shifted[:, :, 0] += 5.0  # an attribute effect cancels within a cell
    assert self_consistency_floor(shifted, fn, seed=1) == pytest.approx(floor)
    assert self_consistency_floor(x[:1], fn, seed=1) is None
    assert self_consistency_floor(np.repeat(x[:1], 3, axis=0), fn, seed=1) == 0.0
