"""The robustness probe: pinned, seeded perturbations; a wording-blind recommender is stable
everywhere; casing dependence and a value-dependent perturbation effect are caught; unknown
kinds are one-line ConfigErrors; profile prompts with a shuffled history."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

from recaudit.config import StatsConfig, parse_config
from recaudit.engine import Answer
from recaudit.errors import ConfigError
from recaudit.grounding import Grounding
from recaudit.probes.registry import AuditContext, get_probe
from recaudit.probes.robustness import (PERTURBATIONS, RobustnessParams, RobustnessProbe, recase,
                                        rewhite, shuffle_history, typo)
from recaudit.recommenders.base import Response

from .synthetic_catalog import synthetic_catalog

FAST = StatsConfig(n_bootstrap=200, n_permutations=199, seed=0)
T = "I am {value} fan of {name}. Please provide me with a list of {K} movie titles."
SUBJECTS = {"source": "inline", "items": [f"S{i}" for i in range(12)]}
ALL_SUBJECT_KINDS = [k for k in PERTURBATIONS if k != "history_order"]


@pytest.fixture(scope="module")
def catalog():
    return synthetic_catalog()


def _ctx(catalog):
    return AuditContext(catalog=catalog, stats=FAST, capabilities=frozenset({"generate"}))


def _ids(key: str, k: int) -> list[str]:
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8],
                                               "little"))
    return [str(i) for i in rng.choice(40, size=k, replace=False)]


def _prompt(q) -> str:
    return q.request.messages[-1].content


def blind(q):
    """Reads only the subject ("S<n>") from the prompt text: ignores the wording."""
    return _ids(re.search(r"S\d+", _prompt(q)).group(0), q.request.k)


def case_sensitive(q):
    """Changes its list when the instruction is lower-cased ("i am")."""
    text = _prompt(q)
    return _ids(re.search(r"S\d+", text).group(0) + str("i am" in text), q.request.k)


def african_case(q):
    """Lower-casing changes the list only for users who say they are African."""
    text = _prompt(q)
    flip = "African" in text and "i am" in text
    return _ids(re.search(r"S\d+", text).group(0) + str(flip), q.request.k)


def _run(catalog, fn, **params):
    params.setdefault("subjects", SUBJECTS)
    params.setdefault("k", 5)
    probe = RobustnessProbe(RobustnessParams(**params))
    queries = probe.plan(_ctx(catalog))
    answers = {}
    for q in queries:
        ids = fn(q)
        answers[q.id] = Answer(q.request, Response(text=" | ".join(ids), item_ids=ids),
                               Grounding(item_ids=ids, unmatched=[], entries=list(ids)))
    return probe.analyse(_ctx(catalog), queries, answers), queries


def _stab(res, kind, sim="jaccard", attribute="perturbation"):
    recs = [r for r in res.metrics if r.metric == f"stability_{sim}" and r.attribute == attribute
            and r.value == kind]
    assert len(recs) == 1, (kind, recs)
    return recs[0]


# -- perturbation functions (pinned) ------------------------------------------------------------
def test_typo_is_pinned_and_spares_placeholders():
    assert typo(T, 0) == ("I am {value} fan of {name}. Please provide me with a liist of {K} "
                          "moovie titles.")
    assert typo(T, 1, n=3) == ("I am {value} fan of {name}. Please prvoide me wtih a list of "
                               "{K} moviie titles.")
    assert typo(T, 0) == typo(T, 0) and typo(T, 0) != typo(T, 2)
    assert typo("{value} {name} {K}", 0) == "{value} {name} {K}"


def test_case_whitespace_and_history_order_are_pinned():
    assert recase(T, 0) == "i am {value} fan of {name}. please provide me with a list of {K} " \
                           "movie titles."
    assert recase(T, 1).startswith("I AM {value} FAN OF {name}. PLEASE")
    assert rewhite(T, 0) == ("\nI am  {value}  fan  of {name}. Please provide me with a list  "
                             "of {K}  movie titles. ")
    assert " ".join(rewhite(T, 5).split()) == T
    assert shuffle_history(["a", "b", "c", "d", "e"], 0) == ["c", "e", "d", "a", "b"]
    assert shuffle_history(["a", "b"], 1) == ["b", "a"]
    assert shuffle_history(["a"], 0) == ["a"]


def test_plan_builds_every_kind_deterministically(catalog):
    p = RobustnessProbe(RobustnessParams(subjects=SUBJECTS, values=["an African", "an American"],
                                         perturbations=ALL_SUBJECT_KINDS, n_variants=2, k=5))
    queries = p.plan(_ctx(catalog))
    assert len(queries) == 12 * 2 * (1 + 6 * 2)
    by_id = {q.id: _prompt(q) for q in queries}
    assert by_id["0|an African|base"].startswith("I am an African fan of S0. Please provide")
    assert by_id["0|an African|language|0"].startswith("Je suis un Africain fan de S0.")
    assert by_id["0|an American|language|0"].startswith("Je suis un Américain fan de S0.")
    assert by_id["0|an African|paraphrase|1"].startswith("As an African fan of S0, I would")
    assert by_id["0|an African|context|0"].endswith(by_id["0|an African|base"])
    assert "an African" in by_id["3|an African|typo|1"] and "S3" in by_id["3|an African|typo|1"]
    again = p.plan(_ctx(catalog))
    assert [q.request.key() for q in again] == [q.request.key() for q in queries]


def test_registered_with_tags():
    assert "robustness" in get_probe("robustness").tags


# -- analysis -----------------------------------------------------------------------------------
def test_wording_blind_recommender_is_stable_everywhere(catalog):
    res, _ = _run(catalog, blind, perturbations=ALL_SUBJECT_KINDS,
                  values=["an African", "an American"])
    for kind in ALL_SUBJECT_KINDS:
        for sim in ("jaccard", "rbo"):
            assert _stab(res, kind, sim).estimate == pytest.approx(1.0)
        gap = [r for r in res.metrics if r.metric == "stability_jaccard_gap"
               and r.attribute == kind][0]
        assert gap.estimate == 0.0 and gap.p_value == 1.0
    assert res.findings[0].severity == "info" and "stable under every" in res.findings[0].title


def test_casing_dependence_is_caught_and_ranked_first(catalog):
    res, _ = _run(catalog, case_sensitive, perturbations=ALL_SUBJECT_KINDS, n_variants=2)
    case = _stab(res, "case")
    # variant 0 (lower-case) gets an unrelated list, variant 1 (upper-case) the same one
    assert case.estimate < 0.8 and case.ci_high < 1.0
    for kind in ("typo", "paraphrase", "whitespace", "context", "language"):
        assert _stab(res, kind).estimate == pytest.approx(1.0)
    assert res.tables["stability_ranking"][0]["perturbation"] == "case"
    assert res.findings[0].title.startswith("'case' hurts most")
    assert res.findings[0].severity != "info"



def test_the_worst_perturbation_is_rated_by_the_one_severity_ladder(catalog):
    """recaudit.verdicts.severity, not a ladder of the probe's own: a large stability drop is
    high on enough subjects and capped at low on fewer than min_group_size (here 4 < 10)."""
    from recaudit.verdicts import MIN_UNITS, severity

    res, _ = _run(catalog, case_sensitive, perturbations=["case", "typo"])
    worst = _stab(res, "case")
    assert worst.n >= MIN_UNITS and 1 - worst.estimate >= 0.5
    assert res.findings[0].severity == severity(worst, res.specs["stability_jaccard"], True)
    few = dict(SUBJECTS, items=SUBJECTS["items"][:4])
    res, _ = _run(catalog, case_sensitive, perturbations=["case", "typo"], subjects=few)
    worst = _stab(res, "case")
    assert worst.n == 4 and 1 - worst.estimate >= 0.5
    assert res.findings[0].title.startswith("'case' hurts most")
    assert res.findings[0].severity == "low"

def test_a_perturbation_that_hurts_one_group_more_is_caught(catalog):
    res, _ = _run(catalog, african_case, perturbations=["case", "typo"],
                  values=["an African", "an American"])
    by_value = {r.value: r.estimate for r in res.metrics if r.metric == "stability_jaccard"
                and r.attribute == "case"}
    assert by_value["an American (case)"] == 1.0 and by_value["an African (case)"] < 0.5
    gap = [r for r in res.metrics if r.metric == "stability_jaccard_gap"
           and r.attribute == "case"][0]
    assert gap.estimate == pytest.approx(1.0 - by_value["an African (case)"])
    assert gap.p_adjusted < 0.05 and gap.null_p95 is not None and gap.null_p95 < gap.estimate
    f = next(f for f in res.findings if f.title.startswith("case:"))
    assert "'an African' more" in f.title
    # no condition label under two attributes (the report reads that as "the same prompt")
    seen: dict[str, set] = {}
    for r in res.metrics:
        if r.attribute and r.value:
            seen.setdefault(r.value, set()).add(r.attribute)
    assert all(len(a) == 1 for a in seen.values()), seen


def test_profiles_with_shuffled_history(catalog):
    def order_sensitive(q):
        hist = _prompt(q).split("movies: ")[1].split(". Please")[0]
        return _ids(hist, q.request.k)

    def order_blind(q):
        hist = _prompt(q).split("movies: ")[1].split(". Please")[0]
        return _ids("|".join(sorted(hist.split("; "))), q.request.k)

    kw = dict(prompts="profiles", n_users=6, history_items=5,
              perturbations=["history_order", "case"])
    res, queries = _run(catalog, order_sensitive, **kw)
    assert len(queries) == 6 * 3
    assert _stab(res, "history_order").estimate < 0.6
    res, _ = _run(catalog, order_blind, **kw)
    assert _stab(res, "history_order").estimate == 1.0


# -- errors -------------------------------------------------------------------------------------
def test_unknown_perturbation_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as err:
        parse_config({"probes": [{"probe": "robustness",
                                  "params": {"perturbations": ["typo", "emoji"]}}]})
    msg = str(err.value)
    assert "\n" not in msg and err.value.exit_code == 2
    assert msg.endswith("unknown perturbation 'emoji'; known: typo, paraphrase, case, "
                        "whitespace, context, language, history_order")
    with pytest.raises(ConfigError, match="'history_order' needs prompts: profiles"):
        parse_config({"probes": [{"probe": "robustness",
                                  "params": {"perturbations": ["history_order"]}}]})
    with pytest.raises(ConfigError, match="no translation of value 'a Martian'"):
        parse_config({"probes": [{"probe": "robustness", "params": {"values": ["a Martian"]}}]})
    with pytest.raises(ConfigError, match=r"paraphrases: template lacks placeholder\(s\) "
                                          r"\{history\} \(prompts: profiles"):
        parse_config({"probes": [{"probe": "robustness", "suite": "robustness",
                                  "params": {"prompts": "profiles", "values": ["a"]}}]})
    cfg = parse_config({"probes": [{"probe": "robustness", "suite": "robustness"}]})
    assert "paraphrase" in cfg.probes[0].params["perturbations"]



def test_profiles_that_cannot_be_fed_say_why(catalog):
    """No user with enough history, or a catalog without user histories: ProbeCannotRun with
    the reason (a probe-level status), not a ValueError from a borrowed ProfileProbe."""
    import pandas as pd

    from recaudit.catalog import Catalog
    from recaudit.errors import ProbeCannotRun

    probe = RobustnessProbe(RobustnessParams(prompts="profiles", history_items=500))
    with pytest.raises(ProbeCannotRun) as err:
        probe.plan(_ctx(catalog))
    assert err.value.reason == ("no user has >= 500 training interactions and a held-out item; "
                                "lower history_items")
    bare = Catalog.from_dataframe(pd.DataFrame({"item_id": ["1"], "title": ["A (1999)"]}),
                                  name="bare")
    with pytest.raises(ProbeCannotRun, match="catalog 'bare' has no interactions"):
        RobustnessProbe(RobustnessParams(prompts="profiles")).plan(_ctx(bare))

def test_refusals_are_flagged(catalog):
    res, _ = _run(catalog, lambda q: [] if "i am" in _prompt(q) else blind(q),
                  perturbations=["case", "typo"])
    f = next(f for f in res.findings if "no catalog item" in f.title)
    assert f.title.startswith("33% of answers") and f.severity == "medium"
    empty = {r.value: r.estimate for r in res.metrics if r.metric == "empty_list"}
    assert empty == {"none": 0.0, "case": 1.0, "typo": 0.0}


# -- repeated samples: stability beyond what asking again changes ---------------------------------
_L0, _L1, _L2 = ([str(i) for i in range(10)], [str(i) for i in range(8)] + ["10", "11"],
                 [str(i) for i in range(20, 30)])


def _sampled_run(perturbed_lists, samples: int = 2):
    """Run the probe on hand-made answers: unperturbed sample j = (L0, L1)[j], perturbed sample
    j = ``perturbed_lists[j]``, for 12 subjects, 2 values and one kind (typo)."""
    params = RobustnessParams(k=10, values=["a female", "a male"], n_variants=1,
                              perturbations=["typo"], similarities=["jaccard"],
                              subjects={"source": "inline",
                                        "items": [f"Film {i}" for i in range(12)]})
    probe = RobustnessProbe(params)
    ctx = AuditContext(catalog=None, capabilities=frozenset({"generate"}),
                       stats=StatsConfig(n_bootstrap=200, n_permutations=199))
    queries = probe.plan(ctx)
    answers = {}
    for q in queries:
        lists = (_L0, _L1) if q.meta.get("kind") is None else perturbed_lists
        made = [Answer(q.request.with_sample(j), Response(item_ids=lists[j]),
                       Grounding(item_ids=lists[j], unmatched=[], duplicates=0,
                                 entries=lists[j])) for j in range(samples)]
        if samples > 1:
            made[0].samples = made
        answers[q.id] = made[0]
    return probe.analyse(ctx, queries, answers)


def _record(result, metric):
    return next(m for m in result.metrics if m.metric == metric and m.value == "typo")


def test_a_sampled_model_blind_to_perturbations_is_stable_beyond_itself():
    """Stability J(L1, L0) = 8/12 is below 1, but exactly what asking again gives (J(L0, L1))."""
    result = _sampled_run((_L1, _L0))
    assert _record(result, "stability_jaccard").estimate == pytest.approx(8 / 12)
    beyond = _record(result, "stability_jaccard_vs_self")
    assert beyond.estimate == pytest.approx(0.0, abs=1e-12)
    assert "Bonferroni" not in (beyond.convention or "")  # one kind: no family to adjust


def test_a_perturbation_effect_beyond_sampling_is_measured():
    result = _sampled_run((_L2, _L2))
    beyond = _record(result, "stability_jaccard_vs_self")
    assert beyond.estimate == pytest.approx(0.0 - 8 / 12)
    assert beyond.ci_high < 0


def test_without_samples_there_is_no_self_comparison():
    result = _sampled_run((_L1,), samples=1)
    assert not [m for m in result.metrics if m.metric.endswith("_vs_self")]
