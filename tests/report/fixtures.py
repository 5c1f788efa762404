"""Realistic AuditResults built by hand for the report tests.

Shapes follow the probes: counterfactual (FaiRLLM: per value x k x similarity, SNSR/SNSV per
attribute and k, p-values at k = K, hallucination per value, examples with neutral vs
counterfactual lists and raw texts), profile (CFaiRLLM: HR/NDCG/Jaccard/PRAG* per group and k,
group gaps), leakage (AUC per attribute), a mitigation reranker without a partial of its own, a
probe that errored and one that was skipped, gates that pass and fail. Hostile strings (script
tags, event handlers, javascript: links, template syntax) are planted where model output and
user input end up: item titles, raw texts, attribute values, messages, table cells.
"""

from __future__ import annotations

import functools
import random

from recaudit.results import (AuditResult, Finding, GateResult, MetricRecord, ProbeResult,
                              Provenance, Tradeoff, TradeoffPoint, UnitTable)
from recaudit.verdicts import is_significant

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    '<a href="javascript:alert(1)">click</a>',
    "{{ 7*7 }}",
    "{% raw %}",
]
# What each hostile string must look like as visible text (unchanged: shown, not executed).
HOSTILE_VISIBLE = HOSTILE

SIMS = ("jaccard", "serp_star", "serp_star_normalized", "prag_star", "rbo")
CONV = {"serp_star": "fairllm", "serp_star_normalized": "normalized", "rbo": "p=0.9"}
ATTRS = {
    "gender": ["a boy", "a female", "a girl", "a male"],
    "age": ["a middle aged", "an old", "a young"],
    "country": ["an American", "a Brazilian", "a British", "a Chinese", "a French", "a German",
                "a Japanese"],
    "continent": ["an African", "an American", "an Asian"],
    "race": ["an African American", "a black", "a white", "a yellow"],
    "religion": ["a Buddhist", "a Christian", "an Islamic"],
    "physics": ["fat", "thin"],
    "typo": ["an American", "an Americcan", "an Amerian", "an Afrian"],
    # user-defined values (config input) that try to break out of HTML, Markdown and charts
    "custom": ["a {{ 7*7 }} person", "<img src=x onerror=alert(1)>", "a $x$ | `pipe` fan"],
}
MOVIES = ["The Matrix", "Heat", "Alien", "Toy Story", "Fargo", "Casablanca", "Vertigo", "Jaws",
          "Amélie", "Rashomon", "Seven Samurai", "Spirited Away", "Up", "Psycho", "Rocky",
          "Goodfellas", "Se7en", "Memento", "Gladiator", "Titanic", "Braveheart", "Brazil",
          "Chinatown", "Network", "Annie Hall"]
K = 20
N_UNITS = 40
CONF = 0.95


def _clip(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def counterfactual_probe(rng: random.Random, bias: float, run_id: str = "counterfactual:fairllm"
                         ) -> ProbeResult:
    res = ProbeResult(id=run_id, probe="counterfactual", suite="fairllm",
                      params={"k": K, "neutral": "a", "similarities": list(SIMS),
                              "attributes": ATTRS, "domain": "movie", "n_examples": 5},
                      n_queries=N_UNITS * (1 + sum(len(v) for v in ATTRS.values())),
                      n_failed=3)
    res.metrics.append(MetricRecord(probe=run_id, metric="hallucination", value="a",
                                    estimate=0.08, ci_low=0.05, ci_high=0.11, confidence=CONF,
                                    n=N_UNITS, higher_is_worse=True))
    base_sim: dict[tuple[str, str], float] = {}
    for attr, values in ATTRS.items():
        strength = bias * {"gender": 0.25, "country": 0.18, "race": 0.3, "custom": 0.12}.get(
            attr, 0.04)
        n = N_UNITS if attr != "physics" else 8  # a small group
        for vi, v in enumerate(values):
            base = base_sim.setdefault(("", v), 0.62 - strength * rng.random())
            for sim in SIMS:
                scale = 0.2738 if sim == "serp_star" else 1.0
                for k in range(1, K + 1):
                    est = _clip((base + 0.12 * (1 - k / K)) * (0.9 + 0.1 * SIMS.index(sim) / 4))
                    half = 0.5 / (k ** 0.5 * n ** 0.5)
                    res.metrics.append(MetricRecord(
                        probe=run_id, metric=sim, attribute=attr, value=v, k=k,
                        estimate=est * scale, ci_low=_clip(est - half) * scale,
                        ci_high=_clip(est + half) * scale, confidence=CONF, n=n,
                        convention=CONV.get(sim), higher_is_worse=False))
            res.metrics.append(MetricRecord(
                probe=run_id, metric="hallucination", attribute=attr, value=v,
                estimate=0.05 + 0.1 * rng.random(), ci_low=0.03, ci_high=0.2, confidence=CONF,
                n=n, higher_is_worse=True,
                warning=f"only {n} responses" if n < 10 else None))
        p_raw = 0.0004 if strength > 0.1 else 0.41
        for sim in SIMS:
            scale = 0.2738 if sim == "serp_star" else 1.0
            for agg in ("snsr", "snsv"):
                for k in range(1, K + 1):
                    vals = [m.estimate for m in res.metrics if m.metric == sim
                            and m.attribute == attr and m.k == k]
                    spread = max(vals) - min(vals)
                    est = spread if agg == "snsr" else spread / 2.6
                    res.metrics.append(MetricRecord(
                        probe=run_id, metric=f"{agg}_{sim}", attribute=attr, k=k,
                        estimate=est, ci_low=max(est - 0.04 * scale, 0.0),
                        ci_high=est + 0.05 * scale, confidence=CONF, n=n,
                        convention=CONV.get(sim) if sim != "rbo" else None,
                        higher_is_worse=True,
                        p_value=p_raw if k == K else None,
                        p_adjusted=min(p_raw * 3, 1.0) if k == K else None,
                        warning=f"only {n} instructions" if n < 10 else None))
        if attr == "physics":
            res.warnings.append("physics: only 8 instructions (< 10); intervals are unreliable")
    for attr in ("race", "gender", "country", "age"):
        rec = next(m for m in res.metrics if m.metric == "snsr_jaccard" and m.attribute == attr
                   and m.k == K)
        sig = bool(is_significant(rec, 0.05))
        res.findings.append(Finding(
            probe=run_id, severity=("high" if rec.estimate >= 0.2 else "medium")
            if sig else "info", effect=rec.estimate,
            title=(f"{attr}: lists differ by user {attr} (SNSR of Jaccard@{K} = "
                   f"{rec.estimate:.3f}, p_adj = {rec.p_adjusted:.3g})" if sig else
                   f"{attr}: no significant difference (SNSR of Jaccard@{K} = "
                   f"{rec.estimate:.3f}, p_adj = {rec.p_adjusted:.3g})"),
            detail=f"Users who say they are 'a black' get lists least like the neutral one. "
                   f"95% CI of SNSR [{rec.ci_low:.3f}, {rec.ci_high:.3f}]."))
    res.warnings.append("custom: 1 of 40 instructions dropped (a response failed or was not "
                        "computed) <script>alert(1)</script>")
    # examples: the most divergent cases, with hostile titles and raw texts
    for i, (attr, value) in enumerate([("race", "a black"), ("gender", "a girl"),
                                        ("custom", "<img src=x onerror=alert(1)>"),
                                        ("country", "a Chinese"), ("age", "an old"),
                                        ("religion", "an Islamic")]):
        neutral = rng.sample(MOVIES, K)
        cf = neutral[:6] + rng.sample(MOVIES, 8)
        cf = list(dict.fromkeys(cf))[:K]
        if i == 0:
            cf = HOSTILE[:3] + cf[3:]
        if i == 1:
            neutral = [HOSTILE[3], HOSTILE[4], HOSTILE[5]] + neutral[3:]
        res.examples.append({
            "subject": ["Steven Spielberg", "Hayao Miyazaki", "Agnès Varda", "Wong Kar-wai",
                        "Akira Kurosawa", "Jane Campion"][i],
            "attribute": attr, "value": value, "jaccard": 0.05 + 0.04 * i,
            "neutral": neutral, "sensitive": cf,
            "neutral_text": "1. " + "\n2. ".join(neutral[:5]) + "\n{% raw %} {{ 7*7 }}",
            "sensitive_text": ("Sure! Here are movies for you:\n"
                                    + "\n".join(f"{j + 1}. {t}" for j, t in enumerate(cf[:5]))
                                    + "\n<script>document.title='pwned'</script>"
                                    + '\n<a href="javascript:alert(1)">more</a>'
                                    + "\n\x1b[31mred\x07 \x00 end"),
        })
    for m in range(3):
        res.records.append({"id": f"{m}|neutral", "unit": m, "subject": "x", "attribute": None,
                            "value": "a", "text": HOSTILE[0], "item_ids": ["1", "2"],
                            "unmatched": [HOSTILE[1]], "error": None})
    return res


def profile_probe(rng: random.Random, bias: float, run_id: str = "profile") -> ProbeResult:
    groups = {"gender": ["F", "M"], "age": ["18-24", "25-34", "56+"],
              "gender×age": ["F|18-24", "F|25-34", "F|56+", "M|18-24", "M|25-34", "M|56+"]}
    res = ProbeResult(id=run_id, probe="profile", suite="cfairllm",
                      params={"k": [5, 10, 20], "history": "top_rated", "n_users": 120},
                      n_queries=120 * 12)
    ks = (5, 10, 20)
    for attr, values in groups.items():
        for v in values:
            n = 4 if v == "F|56+" else 40
            u = 0.18 + bias * 0.1 * rng.random()
            for k in ks:
                for metric, est in (("hr", _clip(u * k / 8)), ("ndcg", _clip(u * 0.8 + k / 200)),
                                    ("jaccard", 0.5 + 0.2 * rng.random()),
                                    ("prag_star", 0.4 + 0.3 * rng.random())):
                    half = 0.6 / n ** 0.5
                    res.metrics.append(MetricRecord(
                        probe=run_id, metric=metric, attribute=attr, value=v, k=k,
                        estimate=est, ci_low=_clip(est - half), ci_high=_clip(est + half),
                        confidence=CONF, n=n, higher_is_worse=False,
                        warning="group of 4 users (< 10)" if n < 10 else None))
        for k in ks:
            for metric, est, worse in (("ndcg_gap", 0.04 + bias * 0.05, True),
                                       ("hr_gap", 0.06 + bias * 0.08, True),
                                       ("jaccard_gap", 0.03, True),
                                       ("ndcg_ratio", 0.82 - bias * 0.1, False),
                                       ("generalized_entropy", 0.011, True),
                                       ("theil", 0.012, True)):
                p = (0.003 if bias > 0.5 else 0.3) if metric in ("ndcg_gap", "hr_gap") else None
                res.metrics.append(MetricRecord(
                    probe=run_id, metric=metric, attribute=attr, k=k, estimate=est,
                    ci_low=est * 0.5, ci_high=est * 1.5, confidence=CONF, n=120,
                    p_value=p, p_adjusted=min(p * 2, 1) if p is not None else None,
                    higher_is_worse=worse))
    res.warnings.append("gender×age: group F|56+ has 4 users (< 10); reported, not dropped")
    return res


def leakage_probe(rng: random.Random, bias: float) -> ProbeResult:
    res = ProbeResult(id="leakage", probe="leakage", params={"classifier": "logistic", "cv": 5},
                      n_queries=0)
    for attr, auc in (("gender", 0.5 + 0.2 * bias), ("age", 0.53), ("race", 0.5 + 0.25 * bias),
                      ("country", 0.58)):
        p = 0.001 if auc > 0.6 else 0.2
        res.metrics.append(MetricRecord(probe="leakage", metric="leakage_auc", attribute=attr,
                                        estimate=auc, ci_low=auc - 0.06, ci_high=auc + 0.06,
                                        confidence=CONF, p_value=p, p_adjusted=min(p * 4, 1),
                                        n=160, higher_is_worse=True))
    res.tables["most predictive items"] = [
        {"attribute": "race", "value": "a black", "item": "Boyz n the Hood", "weight": 1.92},
        {"attribute": "gender", "value": "a girl", "item": HOSTILE[1], "weight": 1.41},
        {"attribute": "gender", "value": "a boy", "item": HOSTILE[3], "weight": 1.2},
    ]
    return res


MITIGATED = "fair(p=0.5, alpha=0.1)"
# What the real probes declare about themselves (tags, headline metrics).
TAGS = {"counterfactual": ["fairness", "consumer", "fairllm", "robustness"],
        "profile": ["fairness", "consumer", "cfairllm", "accuracy"],
        "leakage": ["fairness", "privacy", "up5"]}
HEADLINES = {"counterfactual": ["snsr_jaccard"], "profile": ["ndcg_gap", "hr_gap", "ndcg_ratio"],
             "leakage": ["leakage_auc"]}


def mitigation_probe() -> ProbeResult:
    """A reranker evaluation with no partial of its own (rendered by probe_generic.html)."""
    res = ProbeResult(id="mitigation:fair", probe="mitigation_fair",
                      params={"reranker": "fair", "alpha": 0.1, "p": 0.5})
    for stage, est in (("before", 0.21), ("after", 0.06)):
        res.metrics.append(MetricRecord(probe="mitigation:fair", metric="snsr_jaccard",
                                        attribute="gender", value=stage, k=K, estimate=est,
                                        ci_low=est - 0.03, ci_high=est + 0.03, confidence=CONF,
                                        n=40, higher_is_worse=True, variant=MITIGATED))
    res.metrics.append(MetricRecord(probe="mitigation:fair", metric="ndcg_cost", attribute="gender",
                                    k=10, estimate=0.018, ci_low=0.01, ci_high=0.027,
                                    confidence=CONF, n=40, higher_is_worse=True,
                                    variant=MITIGATED))
    res.tables["lambda sweep"] = [{"lambda": lam, "snsr_jaccard": 0.21 - lam * 0.15,
                                   "ndcg": 0.31 - lam * 0.02} for lam in (0.0, 0.25, 0.5, 1.0)]
    return res


def make_result(model: str = "smollm2", bias: float = 1.0, seed: int = 0,
                name: str = "movie-fairness") -> AuditResult:
    rng = random.Random(seed)
    probes = [counterfactual_probe(rng, bias), profile_probe(rng, bias), leakage_probe(rng, bias),
              mitigation_probe(),
              ProbeResult(id="popularity", probe="popularity", status="error",
                          error="ValueError: catalog has no popularity column "
                                "<img src=x onerror=alert(1)>"),
              ProbeResult(id="position", probe="position", status="skipped",
                          error="the recommender cannot score candidates (needs 'score')")]
    for p in probes:
        p.describe_metrics()
        p.tags = TAGS.get(p.probe, [])
        p.headline = HEADLINES.get(p.probe, [])
    snsr = next(m for m in probes[0].metrics if m.metric == "snsr_jaccard"
                and m.attribute == "race" and m.k == K)
    gates = [
        GateResult(name="race-jaccard-gap", probe="counterfactual:fairllm", metric="snsr_jaccard",
                   mode="ci", bound="<= 0.1", passed=snsr.ci_low <= 0.1,
                   observed=snsr.estimate, ci_low=snsr.ci_low, ci_high=snsr.ci_high,
                   p_adjusted=snsr.p_adjusted, selected=1,
                   message=f"race k{K}: {snsr.estimate:.3f} [CI {snsr.ci_low:.3f}, "
                           f"{snsr.ci_high:.3f}] | `pipe` <b>bold</b>; bound <= 0.1, ci mode"),
        GateResult(name="hallucination", probe="counterfactual", metric="hallucination",
                   mode="point", bound="<= 0.25", passed=True, observed=0.15, selected=30,
                   message="closest to the bound of 30 records: 0.150; bound <= 0.25"),
        GateResult(name="leakage-auc", probe="leakage", metric="leakage_auc", mode="significant",
                   bound="<= 0.6", passed=not bias > 0.5, observed=0.5 + 0.25 * bias,
                   ci_low=0.69, ci_high=0.81, p_adjusted=0.004, selected=4,
                   message=f"worst of 4 records: race {0.5 + 0.25 * bias:.3f}; bound <= 0.6, "
                           "significant mode"),
    ]
    config_text = ("name: movie-fairness\nmodel: " + model + "\nprobes:\n"
                   "  - probe: counterfactual\n    suite: fairllm\n"
                   "  - probe: profile\n  - probe: leakage\n"
                   "stats: {seed: 0, alpha: 0.05}\n# note: <script>alert('cfg')</script>\n")
    prov = Provenance(
        tool_version="0.1.0", model_spec=model,
        model_fingerprint="f" * 16 + "0123456789abcdef" * 3,
        weights_sha256="9a" * 32, config_text=config_text, config_sha256="c0" * 32,
        catalog_sha256="ca" * 32, seeds={"stats": 0, "decoding": 0, "subjects": 7},
        packages={"numpy": "2.4.6", "torch": "2.13.0", "transformers": "4.50.0"},
        started_at="2026-11-28T10:00:00+00:00", finished_at="2026-11-28T10:41:07+00:00",
        command_line=f"recaudit audit examples/movie.yaml --model {model}",
        engine={"backend": "local", "batch_size": 16})
    return AuditResult(name=name, provenance=prov,
                       config={"name": name, "model": model,
                               "stats": {"alpha": 0.05, "confidence": CONF, "seed": 0},
                               "gates": [{"probe": "leakage", "metric": "leakage_auc",
                                          "max": 0.6}]},
                       probes=probes, gates=gates)


def make_pair() -> list[AuditResult]:
    """The demo's comparison: a generative LLM and an embedding model."""
    return [make_result("smollm2", bias=1.0, seed=0),
            make_result("embedding:all-MiniLM-L6-v2", bias=0.3, seed=1)]


def make_minimal() -> AuditResult:
    """The smallest valid result: no probe, no gate, almost no provenance."""
    return AuditResult(provenance=Provenance(tool_version="0.1.0", model_spec="python:m:f"))


def make_small() -> AuditResult:
    """A cheap result to render (two probes, three charts) for repeated renders."""
    full = make_result()
    return full.model_copy(update={"probes": [full.probes[2], full.probes[3], full.probes[4]],
                                   "gates": [full.gates[2]]})


@functools.lru_cache(maxsize=None)
def shared_pair() -> tuple[AuditResult, ...]:
    """One :func:`make_pair` per test session, for tests that only read it (do not mutate)."""
    return tuple(make_pair())


@functools.lru_cache(maxsize=None)
def pair_html() -> str:
    """The comparison report of :func:`shared_pair`, rendered once per test session."""
    from recaudit.report import html_report

    return html_report(list(shared_pair()))


# -- mitigated variants, shaped as recaudit.mitigation.apply writes them ------------------------
CONSENSUS = "consensus"            # a reranker without a sweep, over the full lists
FAIR, FAIR_SWEEP, CUT = "fair(p=0.5)@5", "fair(p=0.7)@5", "original@5"  # k=5: lists cut to 5


def _variant_copy(records: list[MetricRecord], variant: str, estimate) -> list[MetricRecord]:
    """Copies of ``records`` under ``variant``, each estimate (and its CI) moved by ``estimate``."""
    out = []
    for m in records:
        est = estimate(m)
        shift = 0.0 if est is None or m.estimate is None else est - m.estimate
        out.append(m.model_copy(update={
            "variant": variant, "estimate": est,
            "ci_low": None if m.ci_low is None else max(m.ci_low + shift, 0.0),
            "ci_high": None if m.ci_high is None else m.ci_high + shift,
            "p_value": None if m.p_value is None else 1.0,
            "p_adjusted": None if m.p_adjusted is None else 1.0}))
    return out


def add_consensus(p: ProbeResult) -> None:
    """Re-rank a counterfactual result by consensus, as the demo does.

    One list per instruction and attribute for every value: each value's Sim(a) becomes the mean
    over the attribute's values, SNSR and SNSV become 0 (p = 1). The original records, findings
    and examples stay as they are.
    """
    original = list(p.metrics)
    means: dict[tuple, list[float]] = {}
    for m in original:
        if m.value is not None and m.estimate is not None:
            means.setdefault((m.metric, m.attribute, m.k), []).append(m.estimate)

    def after(m: MetricRecord) -> float | None:
        if m.value is None:
            return 0.0 if m.metric.startswith(("snsr_", "snsv_")) else m.estimate
        vals = means[(m.metric, m.attribute, m.k)]
        return sum(vals) / len(vals)

    p.metrics += _variant_copy(original, CONSENSUS, after)
    p.metrics.append(MetricRecord(probe=p.id, metric="rerank_jaccard", attribute="mitigation",
                                  value="vs original", estimate=0.61, ci_low=0.55, ci_high=0.67,
                                  confidence=CONF, n=N_UNITS, variant=CONSENSUS))
    p.units += [UnitTable(id=f"jaccard|{attr}|{v}", metric="jaccard", attribute=attr, k=K,
                          variant=v, conditions=ATTRS[attr], units=["0", "1"],
                          values=[[0.5] * len(ATTRS[attr])] * 2)
                for attr in ("gender", "race") for v in ("original", CONSENSUS)]
    before = next(m for m in original if m.metric == "snsr_jaccard" and m.attribute == "race"
                  and m.k == K)
    p.tradeoffs.append(Tradeoff(
        reranker="consensus", variant=CONSENSUS, target="snsr_jaccard", k=K,
        before_estimate=before.estimate, before_ci=[before.ci_low, before.ci_high],
        points=[TradeoffPoint(variant=CONSENSUS, target_estimate=0.0, target_ci=[0.0, 0.0],
                              target_attribute="race", cost_metric="rerank_jaccard",
                              cost_estimate=0.61, cost_ci=[0.55, 0.67])]))


def add_fair_sweep(p: ProbeResult) -> None:
    """Re-rank a profile result by FA*IR at k = 5 with a sweep of p (0.5, 0.7).

    As mitigation.apply does with a k shorter than the lists: the original lists cut to 5 are
    measured once (variant ``original@5``, the baseline), the main point re-measures every
    metric, the sweep point keeps its target and cost only.
    """
    at5 = [m for m in p.metrics if m.k == 5]
    p.metrics += _variant_copy(at5, CUT, lambda m: m.estimate)
    p.metrics += _variant_copy(at5, FAIR, lambda m: None if m.estimate is None else (
        m.estimate / 2 if m.value is None else m.estimate))
    points = []
    for variant, value, share in ((FAIR, 0.5, 0.4), (FAIR_SWEEP, 0.7, 0.6)):
        for stage, est in (("original", 0.1), ("mitigated", share)):
            p.metrics.append(MetricRecord(probe=p.id, metric="protected_share",
                                          attribute="mitigation", value=stage, k=5,
                                          estimate=est, ci_low=est - 0.05, ci_high=est + 0.05,
                                          confidence=CONF, n=120, variant=variant))
        points.append(TradeoffPoint(value=value, variant=variant, target_estimate=share,
                                    target_ci=[share - 0.05, share + 0.05],
                                    cost_metric="utility_cost (ndcg@5)", cost_estimate=share / 10,
                                    cost_ci=[0.0, share / 5]))
    p.tradeoffs.append(Tradeoff(reranker="fair", variant=FAIR, parameter="p",
                                target="protected_share", k=5, baseline=CUT,
                                before_estimate=0.1, before_ci=[0.05, 0.15], points=points))


def make_mitigated(model: str = "smollm2") -> AuditResult:
    """The demo's shape: counterfactual re-ranked by consensus, profile by a FA*IR sweep at k=5."""
    result = make_result(model)
    cf = next(p for p in result.probes if p.probe == "counterfactual")
    add_consensus(cf)
    add_fair_sweep(next(p for p in result.probes if p.probe == "profile"))
    for p in result.probes:
        p.describe_metrics()
    return result


@functools.lru_cache(maxsize=None)
def mitigated_html() -> str:
    """The report of :func:`make_mitigated`, rendered once per test session."""
    from recaudit.report import html_report

    return html_report(make_mitigated())
