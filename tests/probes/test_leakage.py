"""The UP5-style attribute leakage probe: the cross-validation helper, null and leaking
recommenders, degenerate inputs, and request sharing with the counterfactual probe (the AUC
helpers are tested in tests/metrics/test_classification.py)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from recaudit.config import StatsConfig
from recaudit.engine import Answer
from recaudit.grounding import Grounding
from recaudit.probes.leakage import LeakageParams, LeakageProbe, cv_proba
from recaudit.probes.registry import AuditContext, get_probe
from recaudit.recommenders.base import Response

from . import synthetic_recommenders as sr
from .synthetic_catalog import synthetic_catalog

FAST = StatsConfig(n_bootstrap=200, n_permutations=99, seed=0, min_group_size=10)


@pytest.fixture(scope="module")
def catalog():
    return synthetic_catalog()


def _ctx(catalog, stats=FAST):
    return AuditContext(catalog=catalog, stats=stats, capabilities=frozenset({"generate"}))


def _params(n_subjects=20, **kw):
    return LeakageParams(subjects={"source": "inline",
                                   "items": [f"Subject {i}" for i in range(n_subjects)]}, **kw)


def _run(catalog, fn, params, stats=FAST):
    probe_ = LeakageProbe(params)
    ctx = _ctx(catalog, stats)
    queries = probe_.plan(ctx)
    answers = {}
    for q in queries:
        ids = fn(q)
        answers[q.id] = Answer(q.request, Response(item_ids=ids),
                               None if ids is None else Grounding(item_ids=ids, entries=ids))
    return probe_.analyse(ctx, queries, answers), queries


def _rec(fn):
    return lambda q: fn(q.request.chat_dicts(), q.request.k)["item_ids"]


def _auc(res, attr):
    recs = res.metric("leakage_auc", attribute=attr, value=None)
    assert len(recs) == 1
    return recs[0]


# -- helpers ------------------------------------------------------------------------------------
def test_cv_proba_handles_a_single_class_training_fold():
    X = np.eye(4)
    y = np.array([0, 0, 1, 1])
    proba = cv_proba(X, y, np.array([0, 0, 1, 1]), 2, 1.0)
    assert proba[:2, 1].tolist() == [1.0, 1.0] and proba[2:, 0].tolist() == [1.0, 1.0]


# -- parameters ---------------------------------------------------------------------------------
def test_registered_and_params_validated():
    cls = get_probe("leakage")
    assert cls is LeakageProbe and set(cls.tags) == {"fairness", "privacy", "up5"}
    assert cls.requires == frozenset({"generate", "embed"})
    p = LeakageParams()
    assert p.k == 20 and p.n_folds == 5 and p.n_permutations == 200
    assert p.attributes == {"gender": ["a female", "a male"],
                            "age": ["a young", "a middle aged", "an old"]}
    with pytest.raises(ValidationError, match=r"template lacks placeholder\(s\) \{name\}"):
        LeakageParams(template="I am {value}; {K} movies")
    with pytest.raises(ValidationError, match="needs at least 2 values"):
        LeakageParams(attributes={"gender": ["a female"]})
    with pytest.raises(ValidationError, match="extra"):
        LeakageParams(folds=3)
    assert LeakageParams(attributes=["physics"]).attributes == {"physics": ["fat", "thin"]}


def test_requests_are_shared_with_the_counterfactual_probe(catalog):
    from recaudit.probes.counterfactual import CounterfactualParams, CounterfactualProbe

    subjects = {"source": "inline", "items": ["Heat", "Alien"]}
    attrs = {"gender": ["a female", "a male"]}
    leak = LeakageProbe(LeakageParams(subjects=subjects, attributes=attrs)).plan(_ctx(catalog))
    cf = CounterfactualProbe(CounterfactualParams(subjects=subjects, attributes=attrs))
    cf_keys = {q.request.key() for q in cf.plan(_ctx(catalog))}
    assert len(leak) == 4 and {q.request.key() for q in leak} <= cf_keys
    assert leak[0].request.messages[-1].content.startswith("I am a female fan of Heat. Please")


# -- behaviour ----------------------------------------------------------------------------------
def test_ignoring_recommender_does_not_leak(catalog):
    res, _ = _run(catalog, _rec(sr.ignore), _params(n_permutations=19))
    for attr in ("gender", "age"):
        rec = _auc(res, attr)
        assert rec.estimate == 0.5 and rec.p_value == 1.0 and rec.p_adjusted == 1.0
        assert rec.n == 20 and rec.warning is None
    assert not res.warnings
    assert all(f.severity == "info" for f in res.findings)


def test_noisy_recommender_is_not_significant(catalog):
    res, _ = _run(catalog, _rec(sr.noise), _params(n_permutations=19))
    for attr in ("gender", "age"):
        rec = _auc(res, attr)
        assert abs(rec.estimate - 0.5) < 0.15
        assert rec.p_value > 0.05 and rec.p_adjusted > 0.05
        assert rec.ci_low < 0.5 < rec.ci_high
        # issue 20: the floor of the macro AUC and of each one-vs-rest AUC is recorded, and the
        # noise model lies below it
        for r in [rec, *res.metric("leakage_auc_ovr", attribute=attr)]:
            assert r.null_mean is not None and r.null_mean < r.null_p95, r
            assert r.estimate < r.null_p95 and r.p_value > 0.05, r
            assert r.ci_low <= r.estimate <= r.ci_high, r
    _floor_gates_pass(res, True)


def _floor_gates_pass(res, expected):
    """A floor-mode and a ci-mode gate, AUC <= 0.6, on the macro and one-vs-rest AUCs."""
    from recaudit.gates import evaluate_gates

    from ..gate_recommenders import audit_result

    gates = [{"name": f"{m}-{mode}", "probe": "leakage", "metric": m, "max": 0.6, "mode": mode,
              "attribute": "gender"}
             for m in ("leakage_auc", "leakage_auc_ovr") for mode in ("floor", "ci")]
    verdicts = [g.passed for g in evaluate_gates(audit_result([res]), gates)]
    assert verdicts == [expected] * 4, verdicts


def test_gender_marker_leaks(catalog):
    res, queries = _run(catalog, _rec(sr.gender_marker), _params(n_permutations=59))
    g = _auc(res, "gender")
    assert g.estimate > 0.95 and g.p_value < 0.05 and g.p_adjusted < 0.05
    # the CI reaches down by the refits' spread (refit_widened): it clears the floor
    assert g.null_p95 < g.ci_low <= 0.75 and g.confidence == 0.95 and g.n == 20
    assert {m.value for m in res.metric("leakage_auc", attribute="gender")} == {None}
    per_value = res.metric("leakage_auc_ovr", attribute="gender")
    assert {m.value for m in per_value} == {"a female", "a male"}
    assert all(m.estimate == pytest.approx(g.estimate) for m in per_value)  # two values
    assert all(m.estimate > m.null_p95 and m.p_value < 0.05 for m in per_value)
    _floor_gates_pass(res, False)
    age = _auc(res, "age")  # age prompts carry no gender word: no leakage
    assert age.estimate == 0.5 and age.p_value == 1.0
    finding = next(f for f in res.findings if f.title.startswith("gender"))
    assert finding.severity == "high"
    ex = next(e for e in res.examples if e["value"] == "a female")
    assert ex["items"][0]["item_id"] == "F" and ex["items"][0]["title"] == "Her Story (2001)"
    assert ex["items"][0]["share_of_lists"] == 1.0
    assert len(res.records) == len(queries) == 20 * 5
    assert {"text", "item_ids", "unmatched", "error", "subject"} <= set(res.records[0])


def test_multiclass_leak(catalog):
    def age_marker(q):
        ids = sr.content_list(q.request.chat_dicts(), 6)
        return ids[:5] + [{"a young": "F", "a middle aged": "M", "an old": "39"}.get(
            q.meta["value"], ids[5])]
    res, _ = _run(catalog, age_marker, _params(n_subjects=12, n_permutations=19,
                                                attributes={"age": ["a young", "a middle aged",
                                                                    "an old"]}))
    age = _auc(res, "age")
    assert age.estimate > 0.9 and age.p_value == pytest.approx(1 / 20)


# -- degenerate inputs --------------------------------------------------------------------------
def test_identical_lists_everywhere(catalog):
    res, _ = _run(catalog, lambda q: ["1", "2", "3"], _params(n_permutations=5))
    g = _auc(res, "gender")
    assert g.estimate == 0.5 and g.p_value == 1.0 and "same items" in g.warning
    assert any("same items" in w for w in res.warnings)


def test_empty_lists(catalog):
    res, _ = _run(catalog, lambda q: [], _params(n_permutations=5))
    g = _auc(res, "gender")
    assert g.estimate is None and g.p_value is None and "empty" in g.warning


def test_few_subjects_reduce_the_folds(catalog):
    res, _ = _run(catalog, _rec(sr.gender_marker), _params(n_subjects=3, n_permutations=7))
    g = _auc(res, "gender")
    assert g.estimate == pytest.approx(1.0) and g.n == 3
    assert "3-fold" in g.warning and "only 3 units" in g.warning
    res, _ = _run(catalog, _rec(sr.gender_marker), _params(n_subjects=1, n_permutations=7))
    g = _auc(res, "gender")
    assert g.estimate is None and "fewer than 2 subjects" in g.warning


def test_failed_answers_drop_subjects(catalog):
    def flaky(q):
        if q.meta["unit"] == 0 and q.meta["value"] == "a male":
            return None
        return sr.ignore(q.request.chat_dicts(), q.request.k)["item_ids"]

    probe_ = LeakageProbe(_params(n_subjects=12, n_permutations=5))
    ctx = _ctx(catalog)
    queries = probe_.plan(ctx)
    answers = {}
    for q in queries:
        ids = flaky(q)
        answers[q.id] = Answer(q.request, Response(item_ids=ids, error=None if ids else "x"),
                               Grounding(item_ids=ids, entries=ids) if ids else None)
    res = probe_.analyse(ctx, queries, answers)
    assert _auc(res, "gender").n == 11 and _auc(res, "age").n == 12
    assert any("gender: 1 of 12 subjects left out" in w for w in res.warnings)


def test_compare_flags_a_planted_leak_with_a_paired_test(catalog):
    from recaudit.compare import compare_results

    from ..gate_recommenders import audit_result

    params = _params(n_permutations=19)
    base, _ = _run(catalog, _rec(sr.noise), params)
    leaky, _ = _run(catalog, _rec(sr.gender_marker), params)
    cmp = compare_results(audit_result([base]), audit_result([leaky]))
    rows = {(r.metric, r.attribute): r for r in cmp.rows if r.value is None}
    g, a = rows[("leakage_auc", "gender")], rows[("leakage_auc", "age")]
    assert g.method == "paired permutation (20 units)" and a.method == g.method
    assert g.status == "regression" and g.p_adjusted < 0.05 and g.delta > 0.3
    assert a.status != "regression"  # the marker only tells gender
    # the paired statistic recomputed from the stored tables is the probes' own AUC difference
    assert g.delta == pytest.approx(_auc(leaky, "gender").estimate - _auc(base, "gender").estimate)
    same = compare_results(audit_result([base]), audit_result([base.model_copy(deep=True)]))
    assert not same.regressions and not same.improvements


@pytest.mark.parametrize("sparse", [False, True])
def test_identical_lists_get_identical_probabilities_whatever_blas_does(monkeypatch, sparse):
    """Identical rows tie exactly even where BLAS rounds a row by its position (a Xeon did).

    The stand-in classifier adds a position-dependent ulp to every row it predicts, as a
    row-position-dependent BLAS kernel may: predicting each distinct row once and mapping it
    back still gives the four copies of one list the same probabilities.
    """
    from scipy import sparse as sp
    from sklearn.linear_model import LogisticRegression

    real = LogisticRegression.predict_proba

    def jittered(self, X):
        p = real(self, X)
        return p + np.arange(p.shape[0])[:, None] * 1e-16

    monkeypatch.setattr(LogisticRegression, "predict_proba", jittered)
    X = np.array([[1, 0, 1], [0, 1, 1]] * 4, dtype=float)
    y = np.array([0, 1] * 4)
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    proba = cv_proba(sp.csr_matrix(X) if sparse else X, y, folds, 2, 1.0)
    for fold in (0, 1):
        rows = proba[folds == fold]
        assert np.array_equal(rows[0], rows[2]) and np.array_equal(rows[1], rows[3])
    assert not np.array_equal(proba[0], proba[1])


def test_a_noise_model_lies_below_the_leakage_floor_in_most_runs(catalog):
    """Issue 20: 6 seeded noise models (lists seeded by the prompt and the run), 20 subjects,
    19 refitted permutations: every macro and one-vs-rest AUC record carries its floor (7 per
    run: gender's macro and 2 one-vs-rest, age's macro and 3), and the estimate lies below the
    floor's 95th percentile in 41 of 42 records (measured; the test allows 4 misses)."""
    import hashlib

    below, total = 0, 0
    for rep in range(6):
        def salted(q, rep=rep):
            digest = hashlib.sha256(f"{rep}|{q.request.chat_dicts()[-1]['content']}".encode())
            rng = np.random.default_rng(int(digest.hexdigest()[:12], 16))
            return [str(i) for i in rng.choice(sr.N_ITEMS, size=min(q.request.k, sr.N_ITEMS),
                                               replace=False)]

        res, _ = _run(catalog, salted, _params(n_permutations=19, seed=rep))
        for r in res.metrics:
            if r.metric in ("leakage_auc", "leakage_auc_ovr") and r.estimate is not None:
                assert r.null_mean is not None and r.null_p95 is not None, r
                total += 1
                below += r.estimate < r.null_p95
    assert total == 42 and below >= total - 4, (below, total)


def test_auc_ci_covers_the_refitting_variability(catalog):
    """Issue 20 (validation): the bootstrap over subjects of fixed out-of-fold predictions
    misses the refitting's variability (under no leakage the CV AUC spreads about 1.4 times as
    much), so a ``ci`` gate at ``max: 0.5`` failed about 10% of effect-free models. The CI now
    reaches below the estimate at least as far as the refitted permutations reach above their
    mean: ``ci_low <= estimate - (null_p95 - null_mean)`` for every AUC record (the old CI
    broke this in most noise runs)."""
    import hashlib

    checked = 0
    for rep in range(2):
        def salted(q, rep=rep):
            digest = hashlib.sha256(f"{rep}|{q.request.chat_dicts()[-1]['content']}".encode())
            rng = np.random.default_rng(int(digest.hexdigest()[:12], 16))
            return [str(i) for i in rng.choice(sr.N_ITEMS, size=min(q.request.k, sr.N_ITEMS),
                                               replace=False)]

        res, _ = _run(catalog, salted, _params(n_permutations=19, seed=rep,
                                               attributes={"gender": ["a female", "a male"]}))
        for r in res.metrics:
            if r.metric in ("leakage_auc", "leakage_auc_ovr") and r.estimate is not None:
                checked += 1
                reach = max(0.0, r.estimate - (r.null_p95 - r.null_mean))  # CI clipped at 0
                assert r.ci_low <= reach + 1e-12, r
                assert r.ci_low <= r.estimate <= r.ci_high, r
    assert checked == 6


def test_refit_widened_only_widens():
    from recaudit.probes.leakage import refit_widened

    null = np.linspace(0.3, 0.7, 41)  # mean 0.5; j = floor(0.025 * 42) = 1: min / max
    lo, hi = refit_widened(0.55, 0.65, 0.6, null, 0.95)
    assert (lo, hi) == pytest.approx((0.6 - 0.2, 0.6 + 0.2))
    null = np.linspace(0.3, 0.7, 199)  # j = 5: the 5th smallest / largest, 0.3 +- 4 steps
    lo, hi = refit_widened(0.55, 0.65, 0.6, null[::-1], 0.95)  # order does not matter
    assert (lo, hi) == pytest.approx((0.6 - (0.2 - 4 * 0.4 / 198), 0.6 + (0.2 - 4 * 0.4 / 198)))
    assert refit_widened(0.1, 0.95, 0.6, null, 0.95) == (0.1, 0.95)  # already wider
    assert refit_widened(0.55, 0.65, 0.6, None, 0.95) == (0.55, 0.65)  # no refits
    assert refit_widened(0.9, 0.95, 0.92, null, 0.95)[1] == 1.0  # clipped to the AUC range


# -- the prequential form of adaptive audits ------------------------------------------------------
def test_pair_auc_kernel_by_hand_and_its_mean_is_the_between_subject_auc():
    from recaudit.probes.leakage import pair_auc_kernel

    a = np.array([[0.8, 0.2], [0.3, 0.7]])  # a[t, c]: P(class c | the list stating value t)
    b = np.array([[0.6, 0.4], [0.9, 0.1]])
    # class 0: 0.8 vs b's value-1 list 0.9 (0), 0.6 vs a's 0.3 (1); class 1: 0.7 vs 0.4 (1),
    # 0.1 vs 0.2 (0): (0.5 + 0.5) / 2
    assert pair_auc_kernel(a, b) == 0.5
    assert pair_auc_kernel(a, a) == 1.0  # a separates its own lists
    flat = np.full((2, 2), 0.5)
    assert pair_auc_kernel(flat, flat) == 0.5  # ties count a half
    # three values: the mean over all pairs of subjects is the macro one-vs-rest AUC over
    # positive/negative lists of *different* subjects (brute force)
    rng = np.random.default_rng(0)
    S, V = 12, 3
    p = rng.dirichlet(np.ones(V), size=(S, V))
    pairs = [(i, j) for i in range(S) for j in range(i + 1, S)]
    mean_kernel = np.mean([pair_auc_kernel(p[i], p[j]) for i, j in pairs])
    per_class = []
    for c in range(V):
        wins = [float(p[i, c, c] > p[j, o, c]) + 0.5 * float(p[i, c, c] == p[j, o, c])
                for i in range(S) for j in range(S) if i != j for o in range(V) if o != c]
        per_class.append(np.mean(wins))
    assert mean_kernel == pytest.approx(np.mean(per_class))


def test_the_probe_writes_prequential_kernels_only_when_units_arrive_in_rounds(catalog):
    import dataclasses

    params = _params(n_subjects=20, n_permutations=19, attributes={"gender": ["female", "male"]})
    probe_ = LeakageProbe(params)
    ctx = _ctx(catalog)
    queries = probe_.plan(ctx)
    fn = _rec(sr.gender_marker)
    answers = {q.id: Answer(q.request, Response(item_ids=fn(q)),
                            Grounding(item_ids=fn(q), entries=fn(q))) for q in queries}
    units = list(dict.fromkeys(str(q.meta["unit"]) for q in queries))
    assert probe_.analyse(ctx, queries, answers).metric("leakage_auc")[0].sequence_table is None
    # rounds: 6 subjects train, then 5 (2 pairs, one out), then 9 (4 pairs, one out)
    arrival = {u: 0 if i < 6 else 1 if i < 11 else 2 for i, u in enumerate(reversed(units))}
    res = probe_.analyse(dataclasses.replace(ctx, arrival=arrival), queries, answers)
    rec = res.metric("leakage_auc")[0]
    table = next(t for t in res.units if t.id == rec.sequence_table)
    order = list(arrival)  # asking order: each pair is keyed by its first subject
    assert table.units == [order[6], order[8], order[11], order[13], order[15], order[17]]
    assert table.matrix().mean() > 0.9  # the marker item gives the value away
