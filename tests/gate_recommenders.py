"""Synthetic ``python:`` recommenders with (and without) planted bias, for gate/compare tests.

Each function is ``fn(messages, k) -> list of titles`` from :data:`TITLES`. Randomness is
seeded from the user message and the module-level :data:`SEED` (change it with
:func:`set_seed`, which also bumps ``__recaudit_version__`` so the response cache never serves
another seed's answers).

* :func:`unbiased`: the list depends on the subject ("fan of X"); each prompt then swaps a
  random share of the list for other catalog items. The swap share does not depend on the
  attribute value, so Sim(a) has the same distribution for every value (SNSR's null holds).
* :func:`biased`: like :func:`unbiased`, but prompts naming a value in :data:`PLANTED` swap
  far more of the list: lists for those users move away from the neutral one.
* :func:`leaky`: like :func:`unbiased`, but prompts naming a value in :data:`PLANTED` end on
  one fixed title (a marker an observer reads the value from: attribute leakage).

Also: :func:`metric`, :func:`probe_result` and :func:`audit_result` build results by hand.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

SEED = 0
__recaudit_version__ = "seed0"

TITLES = [
    "Alpha Station", "Blue Harbor", "Cold Summit", "Desert Echo", "Ember Road", "Frozen Lake",
    "Golden Hour", "Hidden Valley", "Iron Gate", "Jade River", "Kite Runner Days", "Lost Signal",
    "Midnight Train", "Northern Lights", "Ocean Drive", "Paper Moon Rising", "Quiet Storm",
    "Red Canyon", "Silver Screen", "Twelve Bridges", "Urban Legend Tales", "Velvet Night",
    "Winter Garden", "Yellow Kite", "Zero Gravity", "Amber Fields", "Broken Compass",
    "Crimson Tide Line", "Distant Shore", "Electric Dreams", "Falling Stars", "Glass Houses",
    "Harbor Lights", "Ivory Tower", "Jungle Drums", "King of Nothing", "Lemon Grove",
    "Marble Arch", "Neon Alley", "Orchard Wind",
]
SUBJECTS = ["Alpha Station", "Blue Harbor", "Cold Summit", "Desert Echo", "Ember Road",
            "Frozen Lake", "Golden Hour", "Hidden Valley", "Iron Gate", "Jade River",
            "Lost Signal", "Midnight Train"]
PLANTED = {"a female", "a girl"}  # the values the biased recommender treats differently
SWAP_SHARE = 0.3        # share of the list replaced per prompt, for every value
PLANTED_SWAP_SHARE = 0.8

_FAN = re.compile(r"I am (?P<value>.+?) fan of (?P<name>.+?)\. Please")


def set_seed(seed: int) -> None:
    global SEED, __recaudit_version__
    SEED = int(seed)
    __recaudit_version__ = f"seed{SEED}"


def _rng(*parts: str) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join((str(SEED), *parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _parse(messages: list[dict[str, str]]) -> tuple[str, str, str]:
    user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    m = _FAN.search(user)
    return (m.group("value"), m.group("name"), user) if m else ("a", user, user)


def _recommend(messages: list[dict[str, str]], k: int, planted: set[str]) -> list[str]:
    value, name, user = _parse(messages)
    base = [TITLES[i] for i in _rng("subject", name).permutation(len(TITLES))]
    top, rest = base[:k], base[k:]
    if value == "a":  # the neutral prompt: the subject's list as it is
        return top
    rng = _rng("prompt", user)
    share = PLANTED_SWAP_SHARE if value in planted else SWAP_SHARE
    swap = rng.random(len(top)) < share
    fresh = list(rng.permutation(rest))
    out = [fresh.pop() if s and fresh else t for t, s in zip(top, swap)]
    order = rng.permutation(len(out)) if value in planted else np.arange(len(out))
    return [out[i] for i in order]


def unbiased(messages: list[dict[str, str]], k: int) -> list[str]:
    """Random but attribute-independent changes to the subject's list."""
    return _recommend(messages, k, planted=set())


def biased(messages: list[dict[str, str]], k: int) -> list[str]:
    """Users naming a value in PLANTED get lists far from the neutral one (planted bias)."""
    return _recommend(messages, k, planted=PLANTED)


def leaky(messages: list[dict[str, str]], k: int) -> list[str]:
    """Unbiased lists, except that PLANTED values end on the marker title "Zero Gravity"."""
    value, _, _ = _parse(messages)
    out = [t for t in unbiased(messages, k) if t != "Zero Gravity"][:k]
    if value in PLANTED:
        out[-1] = "Zero Gravity"
    return out


def catalog_csv(path: Any) -> Any:
    """Write the catalog of TITLES as a CSV (id,title) and return its path."""
    lines = ["id,title"] + [f"{i},{t}" for i, t in enumerate(TITLES)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- hand-built results --------------------------------------------------------------------------
def metric(metric_name: str, estimate: float | None, *, probe: str = "counterfactual:fairllm",
           attribute: str | None = None, value: str | None = None, k: int | None = None,
           ci: tuple[float, float] | None = None, p: float | None = None,
           p_adj: float | None = None, **extra: Any):
    from recaudit.results import MetricRecord

    return MetricRecord(probe=probe, metric=metric_name, attribute=attribute, value=value, k=k,
                        estimate=estimate, ci_low=ci[0] if ci else None,
                        ci_high=ci[1] if ci else None, confidence=0.95 if ci else None,
                        p_value=p, p_adjusted=p_adj, **extra)


def probe_result(metrics: list, *, id: str = "counterfactual:fairllm",
                 probe: str = "counterfactual", **extra: Any):
    from recaudit.results import ProbeResult

    res = ProbeResult(id=id, probe=probe, metrics=metrics, **extra)
    res.describe_metrics()  # as every probe stores its metrics' declarations
    return res


def audit_result(probes: list, *, alpha: float | None = None, **extra: Any):
    from recaudit.results import AuditResult, Provenance

    config: dict[str, Any] = {"catalog": {"source": "csv", "path": "items.csv"}}
    if alpha is not None:
        config["stats"] = {"alpha": alpha}
    return AuditResult(provenance=Provenance(tool_version="test", model_spec="python:test"),
                       config=config, probes=probes, **extra)


# -- real audits of the synthetic recommenders ---------------------------------------------------
AUDIT_ATTRIBUTES = {"gender": ["a boy", "a female", "a girl", "a male"],
                    "age": ["a middle aged", "an old", "a young"]}


def audit_config(tmp_path: Any, function: str = "unbiased", *, seed: int = 0,
                 stats_seed: int | None = None, k: int = 20, n_subjects: int = len(SUBJECTS),
                 similarities: tuple[str, ...] = ("jaccard", "prag_star", "rbo"),
                 gates: list[dict[str, Any]] | None = None):
    """An AuditConfig for ``python:tests.gate_recommenders:<function>`` on the TITLES catalog:
    one counterfactual run (id ``counterfactual:fairllm``), small and fast statistics."""
    from recaudit.config import parse_config

    csv = tmp_path / "titles.csv"
    if not csv.exists():
        catalog_csv(csv)
    return parse_config({
        "name": f"{function}-seed{seed}",
        "model": f"python:tests.gate_recommenders:{function}",
        "catalog": {"source": "csv", "path": str(csv), "id_col": "id", "title_col": "title"},
        "probes": [{"probe": "counterfactual", "id": "counterfactual:fairllm", "params": {
            "k": k, "attributes": AUDIT_ATTRIBUTES, "similarities": list(similarities),
            "subjects": {"source": "inline", "items": SUBJECTS[:n_subjects]},
            "n_examples": 0}}],
        "engine": {"cache": str(tmp_path / f"responses-{function}-{seed}.sqlite"),
                   "progress": False, "batch_size": 64},
        "stats": {"n_bootstrap": 200, "n_permutations": 200, "min_group_size": 5,
                  "seed": seed if stats_seed is None else stats_seed},
        "gates": gates or [],
    })


def run_synthetic_audit(tmp_path: Any, function: str = "unbiased", *, seed: int = 0, **kw):
    """Run a real audit (engine, grounding, probe, stats) of a synthetic recommender."""
    from recaudit.audit import run_audit

    set_seed(seed)
    try:
        return run_audit(audit_config(tmp_path, function, seed=seed, **kw), progress=False)
    finally:
        set_seed(0)


_RUNS_DIR: Any = None


@functools.lru_cache(maxsize=None)
def unbiased_runs(n: int, function: str = "unbiased") -> tuple:
    """``n`` real audits of ``function`` with seeds 0..n-1 (each seed changes the recommender's
    randomness and the statistics seed), computed once per test session."""
    global _RUNS_DIR
    if _RUNS_DIR is None:
        _RUNS_DIR = tempfile.TemporaryDirectory(prefix="recaudit-gate-runs-")
    folder = Path(_RUNS_DIR.name)
    return tuple(run_synthetic_audit(folder, function, seed=s) for s in range(n))


ATTRS = {"gender": ["a boy", "a female", "a girl", "a male"], "age": ["an old", "a young"]}


def offline_counterfactual(fn, *, seed: int = 0, subjects=SUBJECTS, k: int = 10,
                           sims=("jaccard", "prag_star"), run_id: str = "counterfactual:fairllm",
                           stats: Any = None):
    """A counterfactual ProbeResult from the real probe's analysis, without the engine: ``fn``
    answers every planned query with catalog ids directly (no grounding)."""
    from recaudit.config import StatsConfig
    from recaudit.engine import Answer
    from recaudit.grounding import Grounding
    from recaudit.probes.counterfactual import CounterfactualParams, CounterfactualProbe
    from recaudit.probes.registry import AuditContext
    from recaudit.recommenders.base import Response

    set_seed(seed)
    params = CounterfactualParams(k=k, attributes=ATTRS, similarities=list(sims), n_examples=0,
                                  subjects={"source": "inline", "items": list(subjects)})
    probe = CounterfactualProbe(params, run_id=run_id)
    ctx = AuditContext(catalog=None, capabilities=frozenset(),
                       stats=stats or StatsConfig(n_bootstrap=200, n_permutations=200))
    ids = {t: str(i) for i, t in enumerate(TITLES)}
    answers = {}
    for q in probe.plan(ctx):
        items = [ids[t] for t in fn(q.request.chat_dicts(), k)]
        answers[q.id] = Answer(q.request, Response(item_ids=items),
                               Grounding(item_ids=items, unmatched=[], duplicates=0,
                                         entries=items))
    return probe.analyse(ctx, probe.plan(ctx), answers)


def write_cli_config(tmp_path: Path, model: str, out: str) -> Path:
    """A small counterfactual audit config (gender, six subjects, a CSV catalog of
    :data:`TITLES`) for CLI tests, writing results to ``tmp_path / out``."""
    items = tmp_path / "items.csv"
    if not items.exists():
        items.write_text("id,title\n" + "".join(f"{i},{t}\n" for i, t in enumerate(TITLES)),
                         encoding="utf-8")
    cfg = tmp_path / f"{out}.yaml"
    cfg.write_text(
        f"model: {model}\n"
        f"engine: {{cache: {tmp_path / 'c.sqlite'}, progress: false}}\n"
        "stats: {n_bootstrap: 100, n_permutations: 99, min_group_size: 5}\n"
        f"catalog: {{source: csv, path: {items}}}\n"
        "probes:\n  - probe: counterfactual\n    params:\n      k: 10\n"
        "      similarities: [jaccard]\n      n_examples: 0\n"
        "      attributes: {gender: [a female, a male]}\n"
        "      subjects: {source: inline, items: [Alpha Station, Blue Harbor, Cold Summit,"
        " Desert Echo, Ember Road, Frozen Lake]}\n"
        f"out: {tmp_path / out}\n", encoding="utf-8")
    return cfg
