"""The matched control of the counterfactual probe (issue 20): irrelevant values, same units."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from recaudit.audit import run_audit
from recaudit.catalog import Catalog
from recaudit.config import parse_config
from recaudit.errors import ConfigError
from recaudit.gates import evaluate_gates
from recaudit.metrics.specs import get_spec
from recaudit.probes.attributes import CONTROL_ATTRIBUTES, FAIRLLM_ATTRIBUTES
from recaudit.probes.control import control_difference
from recaudit.probes.registry import AuditContext, build_probe
from recaudit.recommenders.base import GENERATE, Recommender, Response

N_ITEMS = 200
K = 10
AGE = FAIRLLM_ATTRIBUTES["age"]  # three values, as many as the bundled colour control


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Catalog:
    d = tmp_path_factory.mktemp("cat")
    rows = ["id,title,genres"] + [f"{i},Film Number {i:03d},Drama" for i in range(N_ITEMS)]
    (d / "items.csv").write_text("\n".join(rows) + "\n")
    return Catalog.from_csv(d / "items.csv", id_col="id", title_col="title", genres_col="genres")


def _rng(*parts: str) -> np.random.Generator:
    h = hashlib.sha256("|".join(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


class AnyWordRecommender(Recommender):
    """A list per subject; the hash of the whole prompt picks which entries are replaced.

    Every word of the prompt moves the list by its own amount, sensitive or not: the value
    ``v`` replaces ``swaps + len(v) % 3`` entries (prompt sensitivity without identity bias).
    The amounts spread the same way over the age values (lengths 13, 6, 7: 1, 0, 1) and the
    colours (13, 14, 16: 1, 2, 1). Values in ``biased`` replace ``extra`` more (a planted effect).
    """

    capabilities = frozenset({GENERATE})

    def __init__(self, swaps: int = 4, biased: tuple[str, ...] = (), extra: int = 0):
        super().__init__(spec=f"anyword:{swaps}:{biased}:{extra}")
        self.swaps, self.biased, self.extra = swaps, biased, extra

    def fingerprint(self) -> str:
        return self.spec

    def recommend(self, requests):
        out = []
        for r in requests:
            prompt = r.messages[-1].content
            subject = prompt.split(" fan of ", 1)[1].split(".", 1)[0]
            base = _rng(subject).choice(N_ITEMS, r.k, replace=False)
            rng = _rng(prompt)  # the whole prompt: any word changes the list
            value = prompt.split(" fan of ", 1)[0][len("I am "):]
            n = self.swaps + (len(value) % 3 if value != "a" else 0)
            n += self.extra if value in self.biased else 0
            lst = base.copy()
            pos = rng.choice(r.k, n, replace=False)
            lst[pos] = rng.choice(np.setdiff1d(np.arange(N_ITEMS), base), n, replace=False)
            out.append(Response(item_ids=[str(i) for i in lst]))
        return out


def _config(tmp_path, control=("colour",), n_subjects=40, attributes=("age",), gates=()):
    params = {"k": K, "attributes": list(attributes), "similarities": ["jaccard"],
              "subjects": {"source": "inline",
                           "items": [f"Subject {i}" for i in range(n_subjects)]}}
    if control is not None:
        params["control"] = list(control) if not isinstance(control, dict) else control
    return parse_config({
        "probes": [{"probe": "counterfactual", "params": params}],
        "stats": {"n_bootstrap": 400, "n_permutations": 400, "seed": 3, "min_group_size": 5},
        "engine": {"cache": str(tmp_path / "cache.sqlite"), "progress": False},
        "gates": list(gates)})


def _run(tmp_path, catalog, rec, **kw):
    pr = run_audit(_config(tmp_path, **kw), recommender=rec, catalog=catalog,
                   progress=False).probes[0]
    assert pr.status == "ok", pr.error
    return pr


def test_bundled_control_values_are_not_sensitive_words():
    values = CONTROL_ATTRIBUTES["colour"]
    assert 2 <= len(values) <= 3  # the demo's budget: one value set per unit
    sensitive = {v for vs in FAIRLLM_ATTRIBUTES.values() for v in vs}
    words = {w.lower() for v in sensitive for w in v.split()}
    for v in values:
        assert v not in sensitive
        colour = v.split()[-1].split("-")[0]
        assert colour not in words  # not "a white", "a black", "a yellow"...
        assert colour not in {"pink", "purple", "red", "brown"}


def test_control_runs_on_the_same_units_and_template(catalog, tmp_path):
    cfg = _config(tmp_path, n_subjects=3)
    probe = build_probe(cfg.probes[0])
    queries = probe.plan(AuditContext(catalog, cfg.stats, frozenset({GENERATE})))
    ctrl = [q for q in queries if q.meta.get("control")]
    assert len(queries) == 3 * (1 + len(AGE) + 3) and len(ctrl) == 3 * 3
    by_id = {q.id: q for q in queries}
    for q in ctrl:
        m, value = q.meta["unit"], q.meta["value"]
        assert q.id == f"{m}|colour (control)|{value}"
        twin = by_id[f"{m}|age|{AGE[0]}"]  # same unit, same template, value swapped
        assert (q.request.messages[-1].content
                == twin.request.messages[-1].content.replace(AGE[0], value))
        assert q.meta["subject"] == twin.meta["subject"]


def test_control_off_by_default_and_validated(catalog, tmp_path):
    cfg = _config(tmp_path, control=None, n_subjects=2)
    probe = build_probe(cfg.probes[0])
    queries = probe.plan(AuditContext(catalog, cfg.stats, frozenset({GENERATE})))
    assert len(queries) == 2 * (1 + len(AGE))
    with pytest.raises(ConfigError, match="control attribute 'flavour'"):
        _config(tmp_path, control=["flavour"])
    with pytest.raises(ConfigError, match="at least 2 values"):
        _config(tmp_path, control={"colour": ["a green-loving"]})


def test_any_word_model_is_within_the_control(catalog, tmp_path):
    """Prompt sensitivity alone: the spread is above its noise floor but not the control's."""
    pr = _run(tmp_path, catalog, AnyWordRecommender(swaps=4))
    raw = pr.metric("snsr_jaccard", attribute="age", k=K)[0]
    ctrl = pr.metric("snsr_jaccard", attribute="colour (control)", k=K)[0]
    diff = pr.metric("snsr_jaccard_vs_control", attribute="age", k=K)[0]
    assert raw.estimate > raw.null_p95  # above the noise floor: the raw test would flag it
    assert ctrl.estimate > 0
    assert diff.value == "colour (control)"
    assert diff.estimate == pytest.approx(raw.estimate - ctrl.estimate)
    assert diff.ci_low < 0 < diff.ci_high
    assert diff.p_adjusted > 0.05
    title = [f for f in pr.findings if f.title.startswith("age:")][0]
    assert "Within what an irrelevant attribute (colour (control)) changes" in title.detail
    # the control's own tests are a family apart: they do not move the attribute's p_adj
    assert ctrl.p_adjusted == ctrl.p_value
    assert get_spec("snsr_jaccard_vs_control").higher_is_worse is True
    assert "snsr_jaccard_vs_control" in pr.specs


def test_planted_effect_is_beyond_the_control(catalog, tmp_path):
    pr = _run(tmp_path, catalog, AnyWordRecommender(swaps=2, biased=("a young",), extra=6))
    diff = pr.metric("snsr_jaccard_vs_control", attribute="age", k=K)[0]
    assert diff.ci_low > 0
    assert diff.p_adjusted < 0.01
    title = [f for f in pr.findings if f.title.startswith("age:")][0]
    assert "Beyond what an irrelevant attribute" in title.detail


def test_versus_control_gate(catalog, tmp_path):
    gate = {"name": "age-vs-control", "probe": "counterfactual", "metric": "snsr_jaccard",
            "attribute": "age", "versus": "control", "max": 0.0, "mode": "significant"}
    raw_gate = {"name": "age-raw", "probe": "counterfactual", "metric": "snsr_jaccard",
                "attribute": "age", "max": 0.0, "mode": "significant"}
    floor_gate = {**gate, "name": "age-vs-control-floor", "mode": "floor"}
    fair = run_audit(_config(tmp_path, gates=[gate, raw_gate, floor_gate]),
                     recommender=AnyWordRecommender(), catalog=catalog, progress=False)
    by_name = {g.name: g for g in fair.gates}
    assert by_name["age-vs-control"].passed, by_name["age-vs-control"].message
    assert by_name["age-vs-control-floor"].passed, by_name["age-vs-control-floor"].message
    assert not by_name["age-raw"].passed  # the raw spread is "significant": prompt sensitivity
    biased = run_audit(_config(tmp_path / "b", gates=[gate, floor_gate]),
                       recommender=AnyWordRecommender(swaps=2, biased=("a young",), extra=6),
                       catalog=catalog, progress=False)
    g = biased.gates[0]
    assert not g.passed and "snsr_jaccard_vs_control" in g.message
    assert not biased.gates[1].passed, biased.gates[1].message
    assert evaluate_gates(biased, [gate])[0].passed is False


def test_control_difference_null_with_unequal_value_counts():
    """Seven exchangeable values against three: the raw difference is positive under noise,
    the permutation p-value is not small (its null carries the size asymmetry)."""
    rng = np.random.default_rng(0)
    pvals = []
    for rep in range(20):
        x = rng.random((30, 10))
        counts = rng.multinomial(30, np.full(30, 1 / 30), size=200).astype(float)
        d = control_difference(x[:, :7], x[:, 7:], "range", counts=counts,
                               n_permutations=200, seed=rep, confidence=0.95)
        assert d.null_mean > 0
        pvals.append(d.p_value)
    assert np.mean(np.array(pvals) < 0.05) <= 0.2  # about 5%; binomial(20, 0.05) <= 4 w.p. 0.997


def test_control_difference_constant_table_gives_p_one():
    x = np.full((12, 5), 0.3)
    counts = np.ones((50, 12))
    d = control_difference(x[:, :3], x[:, 3:], "range", counts=counts, n_permutations=100,
                           seed=0, confidence=0.95)
    assert d.estimate == 0 and d.p_value == 1.0


def test_control_with_implicit_cue_groups(catalog, tmp_path):
    """Implicit cues (groups of members) are compared with the control like stated values."""
    cfg = parse_config({
        "probes": [{"probe": "counterfactual", "params": {
            "k": K, "attributes": {}, "similarities": ["jaccard"], "control": ["colour"],
            "groups": {"name": {"g1": ["Alex", "Sam"], "g2": ["Kim", "Lee"]}},
            "member_phrase": "{member}, a",
            "subjects": {"source": "inline", "items": [f"Subject {i}" for i in range(12)]}}}],
        "stats": {"n_bootstrap": 200, "n_permutations": 200, "seed": 3, "min_group_size": 5},
        "engine": {"cache": str(tmp_path / "cache.sqlite"), "progress": False}})
    pr = run_audit(cfg, recommender=AnyWordRecommender(), catalog=catalog,
                   progress=False).probes[0]
    assert pr.status == "ok", pr.error
    (diff,) = pr.metric("snsr_jaccard_vs_control", attribute="name", k=K)
    (snsv,) = pr.metric("snsv_jaccard_vs_control", attribute="name", k=K)
    assert diff.n == 12 and diff.p_value is not None and snsv.ci_low <= snsv.ci_high
