"""The mitigation layer: rerankers applied to a probe's lists, re-measured by the probe itself,
with targets, utility costs and trade-off curves; config and command-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recaudit.config import MitigationSpec, StatsConfig, parse_config
from recaudit.errors import ConfigError
from recaudit.mitigation.apply import mitigate_probe
from recaudit.mitigation.registry import reranker_names
from recaudit.probes.registry import AuditContext

from .. import gate_recommenders as gr
from ..probes import test_popularity as tp
from ..probes import test_position as tpos

FAST = StatsConfig(n_bootstrap=200, n_permutations=199, min_group_size=5)


def _cf(fn=gr.biased, seed=0):
    from recaudit.engine import Answer
    from recaudit.grounding import Grounding
    from recaudit.probes.counterfactual import CounterfactualParams, CounterfactualProbe
    from recaudit.recommenders.base import Response

    gr.set_seed(seed)
    params = CounterfactualParams(k=10, attributes=gr.ATTRS, similarities=["jaccard"],
                                  n_examples=0,
                                  subjects={"source": "inline", "items": list(gr.SUBJECTS)})
    probe = CounterfactualProbe(params, run_id="cf")
    ctx = AuditContext(catalog=None, capabilities=frozenset(), stats=FAST)
    ids = {t: str(i) for i, t in enumerate(gr.TITLES)}
    queries = probe.plan(ctx)
    answers = {}
    for q in queries:
        items = [ids[t] for t in fn(q.request.chat_dicts(), 10)]
        answers[q.id] = Answer(q.request, Response(item_ids=items),
                               Grounding(item_ids=items, entries=items))
    return probe, ctx, queries, answers, probe.analyse(ctx, queries, answers)


def _popularity(n_users, fn=None):
    """The popularity probe on the Zipf catalog, answered by ``fn`` (default head_first)."""
    from recaudit.probes.popularity import PopularityParams, PopularityProbe

    probe = PopularityProbe(PopularityParams(n_users=n_users, history_items=6, k=10))
    ctx = tp._ctx(tp.zipf_catalog(), stats=FAST)
    queries = probe.plan(ctx)
    answers = tp._answers(queries, tp._python(fn or head_first, 10))
    return probe, ctx, queries, answers, probe.analyse(ctx, queries, answers)


def _rec(res, metric, variant, **where):
    recs = [m for m in res.metric(metric, variant=variant, **where)]
    top = max((m.k or 0) for m in recs)
    return next(m for m in recs if (m.k or 0) == top)


def test_registry_lists_every_reranker():
    assert {"fair", "xquad", "calibration", "det", "consensus", "neutral",
            "psc"} <= set(reranker_names())


def test_consensus_and_neutralisation_remove_the_planted_gender_gap():
    probe, ctx, queries, answers, res = _cf()
    before = _rec(res, "snsr_jaccard", "original", attribute="gender")
    assert before.p_adjusted < 0.05 and before.estimate > 0.1
    mitigate_probe(probe, ctx, queries, answers, res,
                   [MitigationSpec(reranker="consensus"), MitigationSpec(reranker="neutral")])
    for variant in ("consensus", "neutral"):
        after = _rec(res, "snsr_jaccard", variant, attribute="gender")
        assert after.estimate == 0.0  # one list for every value: nothing depends on it
        sim = _rec(res, "rerank_jaccard", variant)
        assert 0.0 < sim.estimate < 1.0 and sim.ci_low <= sim.estimate <= sim.ci_high
    assert [t.reranker for t in res.tradeoffs] == ["consensus", "neutral"]
    pt = res.tradeoffs[0].points[0]
    assert pt.target_estimate == 0.0 and pt.target_attribute == "gender"
    # the original records are untouched, and every record names a stored table or none
    assert _rec(res, "snsr_jaccard", "original", attribute="gender") == before
    ids = {u.id for u in res.units}
    assert all(m.table in ids for m in res.metrics if m.table)


def test_xquad_raises_the_long_tail_share_and_costs_utility(tmp_path):

    probe, ctx, queries, answers, res = _popularity(16)
    mitigate_probe(probe, ctx, queries, answers, res, [MitigationSpec(
        reranker="xquad", params={"lam": 1.0}, k=5, sweep=[0.0, 0.5])])
    # binary xQuAD at lambda = 1: the top 5 (all head) gets one long-tail item for every user
    # whose history holds one (P(tail|u) > 0): the tail share moves from 0 to 1/5
    change = _rec(res, "mitigation_change", "xquad(lam=1)@5", value="aplt")
    before = _rec(res, "aplt", "xquad(lam=1)@5", attribute="mitigation", value="original")
    assert before.estimate == 0.0
    assert 0 < change.estimate <= 0.2 and change.ci_low > 0
    same = _rec(res, "mitigation_change", "xquad(lam=0)@5", value="aplt")
    assert same.estimate == 0.0  # lambda = 0 keeps the order
    assert _rec(res, "rerank_jaccard", "xquad(lam=0)@5").estimate == 1.0
    cost = [m for m in res.metric("utility_cost", variant="xquad(lam=1)@5")]
    assert {m.value for m in cost} == {"ndcg@5", "hr@5"}
    curve = res.tradeoffs[0]
    assert curve.parameter == "lam" and [p.value for p in curve.points] == [0.0, 0.5, 1.0]
    assert curve.points[0].cost_metric == "utility_cost (ndcg@5)"
    # the probe's own metrics come back under the variant (all of them for the main point,
    # the target and cost only for the sweep points), beside the original lists cut to k
    aplt = {v: _rec(res, "aplt", v, attribute="history", value="original").estimate
            for v in ("original", "original@5", "xquad(lam=1)@5")}
    assert aplt["original"] == pytest.approx(0.3) and aplt["original@5"] == 0.0
    assert aplt["xquad(lam=1)@5"] > 0
    assert not res.metric("arp", variant="xquad(lam=0.5)@5")
    assert res.metric("mitigation_change", variant="xquad(lam=0.5)@5")
    assert curve.baseline == "original@5" and curve.before_estimate == 0.0


def test_psc_removes_the_first_position_advantage(tmp_path):
    """A ranker with a planted primacy bias (the first-shown candidate is ranked first with
    probability 0.5, else a fixed order of the candidate set): the NDCG advantage of input
    position 0 over the mean of the others shrinks by at least 80% with B = 8 shuffles."""
    from recaudit.audit import run_audit
    from recaudit.recommenders.python import PythonRecommender

    spec = "tests.mitigation.test_apply:primacy_ranker"
    cfg = parse_config({
        "model": f"python:{spec}",
        "engine": {"cache": str(tmp_path / "c.sqlite"), "progress": False},
        "stats": {"n_bootstrap": 200, "n_permutations": 199, "min_group_size": 5},
        "probes": [{"probe": "position", "params": {"n_users": 24, "n_shuffles": 0,
                                                    "history_items": 5}}],
        "mitigation": [{"reranker": "psc", "params": {"B": 8}, "sweep": []}],
    })
    result = run_audit(cfg, recommender=PythonRecommender(spec),
                       catalog=tpos.position_catalog(n_users=24), progress=False)
    res = result.probes[0]
    assert res.status == "ok", res.error

    def advantage(variant):
        ndcg = {m.value: m.estimate for m in res.metric("ndcg", variant=variant)
                if m.attribute == "input_position" and m.k == 10}
        rest = [v for p, v in ndcg.items() if p != "0"]
        return ndcg["0"] - float(np.mean(rest))

    before, after = advantage("original"), advantage("psc(B=8)")
    assert before > 0.2, before
    assert abs(after) <= 0.2 * before, (before, after)
    assert result.provenance.engine["computed"] == 24 * 5 * 9  # the shuffles went to the model


def head_first(messages, k):
    """Seven unseen short-head items (most popular first), then three long-tail ones."""
    shown = set(tp._shown_ids(messages))
    head = tp._head()
    heads = [i for i in range(tp.N_ITEMS) if i in head and i not in shown][:7]
    tails = [i for i in range(tp.N_ITEMS) if i not in head and i not in shown][:3]
    return {"item_ids": [str(i) for i in heads + tails]}


def primacy_ranker(messages, k):
    """The position tests' primacy ranker as a ``python:`` generative recommender."""
    titles = tpos.prompt_candidates(messages)
    return tpos.as_text(tpos.primacy(titles, salt=0, q=0.5))


@pytest.mark.parametrize("spec,message", [
    ({"reranker": "nope"}, "unknown reranker 'nope'; known: calibration, consensus"),
    ({"reranker": "fair", "params": {"p": 1.5}}, "mitigation[0]: fair: p:"),
    ({"reranker": "fair", "params": {"alpha": 0.0}}, "mitigation[0]: fair: alpha:"),
    ({"reranker": "xquad", "sweep_param": "nope"}, "cannot sweep unknown parameter 'nope'"),
    ({"reranker": "xquad", "probes": ["missing"]}, "no probe run 'missing'"),
])
def test_bad_mitigation_config_is_one_line(spec, message):
    with pytest.raises(ConfigError, match=None) as err:
        parse_config({"probes": [{"probe": "counterfactual", "suite": "fairllm"}],
                      "mitigation": [spec]}, where="a.yaml")
    text = str(err.value)
    assert message in text and "\n" not in text


def test_k_larger_than_the_lists_and_a_one_value_column_are_config_errors():
    probe, ctx, queries, answers, res = _cf(gr.unbiased)
    with pytest.raises(ConfigError, match=r"k=30 is larger than the candidate lists \(10 "):
        mitigate_probe(probe, ctx, queries, answers, res,
                       [MitigationSpec(reranker="consensus", k=30)])
    catalog = tp.zipf_catalog()
    catalog.items["studio"] = "A"
    from recaudit.probes.popularity import PopularityParams, PopularityProbe

    pop = PopularityProbe(PopularityParams(n_users=6, history_items=6, k=5))
    pctx = tp._ctx(catalog, stats=FAST)
    qs = pop.plan(pctx)
    ans = tp._answers(qs, tp._python(tp.blind, 5))
    pres = pop.analyse(pctx, qs, ans)
    with pytest.raises(ConfigError, match="only one value"):
        mitigate_probe(pop, pctx, qs, ans, pres, [MitigationSpec(
            reranker="fair", params={"protected": "studio=A"}, sweep=[])])


def test_mitigate_command_reapplies_a_reranker_to_saved_results(tmp_path, capsys):
    from recaudit.cli import main

    cfg = gr.write_cli_config(tmp_path, "python:tests.gate_recommenders:biased", "out")
    assert main(["audit", str(cfg), "--no-progress", "--format", "json"]) == 0
    results = tmp_path / "out" / "results.json"
    before = json.loads(results.read_text())
    assert main(["mitigate", str(results), "--reranker", "consensus",
                 "--out", str(tmp_path / "m"), "--format", "json,html"]) == 0
    after = json.loads((tmp_path / "m" / "results.json").read_text())
    variants = {m["variant"] for m in after["probes"][0]["metrics"]}
    assert variants == {"original", "consensus"}
    assert after["probes"][0]["tradeoffs"][0]["reranker"] == "consensus"
    assert [m for m in after["probes"][0]["metrics"] if m["variant"] == "original"] == \
        before["probes"][0]["metrics"]
    html = (tmp_path / "m" / "index.html").read_text()
    assert "Mitigation: what each reranker changed" in html
    # twice: the variant is replaced, not duplicated
    assert main(["mitigate", str(tmp_path / "m" / "results.json"), "--reranker",
                 "consensus", "--format", "json"]) == 0
    again = json.loads((tmp_path / "m" / "results.json").read_text())
    assert len(again["probes"][0]["metrics"]) == len(after["probes"][0]["metrics"])
    capsys.readouterr()
    assert main(["mitigate", str(results), "--reranker", "psc"]) == 2
    assert "needs model calls" in capsys.readouterr().err
    assert main(["mitigate", str(results), "--reranker", "nope"]) == 2
    assert "known: calibration" in capsys.readouterr().err


def test_fair_makes_every_top_k_pass_the_fairness_test():
    from recaudit.mitigation.fair import is_fair

    probe, ctx, queries, answers, res = _popularity(16)
    spec = MitigationSpec(reranker="fair", params={"p": 0.3, "alpha": 0.1}, k=10)
    seen = {}

    import recaudit.mitigation.fair as fair_mod
    real = fair_mod.fair_rerank

    def spy(protected, k, p, alpha, **kw):
        out = real(protected, k, p, alpha, **kw)
        seen.setdefault(p, (protected, out))
        return out

    fair_mod.fair_rerank = spy
    try:
        mitigate_probe(probe, ctx, queries, answers, res, [spec])
    finally:
        fair_mod.fair_rerank = real
    protected, order = seen[0.3]
    picked = np.take_along_axis(protected, order, axis=1)
    assert is_fair(picked, 0.3, 0.1).all()  # three tail items at the bottom suffice for p=0.3
    before = _rec(res, "protected_share", "fair(p=0.3)", value="original")
    after = _rec(res, "protected_share", "fair(p=0.3)", value="mitigated")
    assert before.estimate == after.estimate  # same items, k = the whole list: only the order
    assert _rec(res, "rerank_rbo", "fair(p=0.3)").estimate < 1.0
    curve = res.tradeoffs[0]
    assert [p.value for p in curve.points] == [0.1, 0.3, 0.5, 0.7, 0.9]


def test_a_gate_can_hold_a_mitigated_variant():
    from recaudit.gates import GateSpec, evaluate_gates

    probe, ctx, queries, answers, res = _cf()
    mitigate_probe(probe, ctx, queries, answers, res, [MitigationSpec(reranker="consensus")])
    result = gr.audit_result([res])
    gates = [GateSpec(name=f"g-{v}", probe="cf", metric="snsr_jaccard", attribute="gender",
                      k=10, max=0.05, variant=v) for v in ("original", "consensus")]
    verdict = {g.name: g.passed for g in evaluate_gates(result, gates)}
    assert verdict == {"g-original": False, "g-consensus": True}


def test_report_draws_the_tradeoff_curve_and_escapes_its_labels(tmp_path):
    from recaudit.report import render_html

    probe, ctx, queries, answers, res = _popularity(10)
    mitigate_probe(probe, ctx, queries, answers, res, [MitigationSpec(
        reranker="xquad", id="<b>xq</b>", k=5, sweep=[0.0, 1.0])])
    html = render_html([gr.audit_result([res])], tmp_path / "index.html").read_text()
    section = html.split("Mitigation: what each reranker changed", 1)[1]
    assert "<svg" in section.split("</section>", 1)[0]
    assert "&lt;b&gt;xq&lt;/b&gt;" in section and "<b>xq</b>" not in html


@pytest.mark.parametrize("method", ["greedy", "cons", "relaxed", "constsort"])
def test_det_moves_the_top_k_toward_its_target_shares(method):

    probe, ctx, queries, answers, res = _popularity(12)
    mitigate_probe(probe, ctx, queries, answers, res, [MitigationSpec(
        reranker="det", params={"column": "head_tail", "method": method,
                                "targets": {"tail": 0.4}}, k=5, sweep=[0.0])])
    variant = next(m.variant for m in res.metrics if m.variant.startswith("det(")
                   and "lam=1" in m.variant)
    assert variant.endswith("@5") and f"method={method}" in variant or method == "greedy"
    change = _rec(res, "mitigation_change", variant, value="ndkl")
    assert change.estimate < 0 and change.ci_high < 0  # closer to 60/40 head/tail
    share = _rec(res, "aplt", variant, attribute="history", value="original")
    assert share.estimate == pytest.approx(0.4)  # 2 of the top 5 are long-tail, every list
    with pytest.raises(ConfigError, match="does not have"):
        mitigate_probe(probe, ctx, queries, answers, res, [MitigationSpec(
            reranker="det", params={"column": "head_tail", "targets": {"middle": 0.4}})])


def test_consensus_also_answers_a_refused_value():
    """A value whose answer held no catalog item (a refusal) gets the aggregate too: the list
    no longer depends on the value, so SNSR is 0 even with refusals."""
    def refusing(messages, k):
        if "a female" in messages[-1]["content"]:
            return []
        return gr.biased(messages, k)

    probe, ctx, queries, answers, res = _cf(refusing)
    assert any(not a.item_ids for a in answers.values())
    mitigate_probe(probe, ctx, queries, answers, res, [MitigationSpec(reranker="consensus")])
    assert _rec(res, "snsr_jaccard", "consensus", attribute="gender").estimate == 0.0


def test_a_matched_control_is_never_the_trade_off_target():
    """The control's spread is what an irrelevant word changes: nothing for a reranker to
    remove, even when it is the largest (the demo's consensus curve targeted 'colour (control)')."""
    from recaudit.mitigation.apply import _worst_attribute
    from recaudit.results import MetricRecord

    recs = [MetricRecord(probe="cf", metric="snsr_jaccard", attribute=a, k=10, estimate=e)
            for a, e in (("gender", 0.2), ("colour (control)", 0.3), ("age", 0.1))]
    assert _worst_attribute(recs, "snsr_jaccard") == "gender"
    assert _worst_attribute(recs[1:2], "snsr_jaccard") is None
