"""Validation harness: does a default-mode gate stay quiet on a fair model and catch a bias.

A :class:`World` is one probe with a synthetic model of known behaviour, twice: ``null`` (no
effect: the model's answers do not depend on what the probe varies) and ``planted`` (an effect
of a stated size). :func:`run_world` runs the *real* probe analysis (``plan`` -> answers ->
``analyse``, the code an audit runs, without the engine) for ``n_runs`` seeds of each model.
Each seed changes the model's randomness and the statistics seed (bootstrap, permutations,
sampled units).

Every **gateable metric** a run records (a declared ``null``, the value of "no effect", and a
direction; see :mod:`recaudit.metrics.specs`) gets the **default-mode gate at its no-effect
value**: ``mode: ci`` (the gates' default), ``max: null`` for a metric where higher is worse,
``min: null`` where lower is worse, both for a signed one. This is the strictest bound a user can
set, so a false-alarm rate measured there bounds every looser ``max``. A run *alarms* when the
gate fails; :func:`recaudit.gates.evaluate_gates` decides, exactly as in ``recaudit audit``.

The acceptance rule (:func:`accepts`): out of ``n`` effect-free runs at most ``5% of n`` alarm
(``FALSE_ALARM_RATE``), and out of ``n`` planted runs at least ``80% of n`` alarm (``POWER``).
:func:`binomial_statement` states what that rule means for a gate's true rates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy import stats as sps

from recaudit.config import StatsConfig
from recaudit.engine import Answer
from recaudit.gates import GateSpec, evaluate_gates
from recaudit.grounding import Grounding
from recaudit.metrics.specs import get_spec
from recaudit.probes.base import AuditContext, Query
from recaudit.probes.registry import get_probe
from recaudit.recommenders.base import Response
from recaudit.results import AuditResult, ProbeResult, Provenance

__all__ = ["World", "Tally", "run_world", "run_worlds", "merge", "gateable_metrics",
           "default_gate", "accepts",
           "binomial_statement", "gate_bounds", "upper_bound", "FALSE_ALARM_RATE", "POWER",
           "N_RUNS", "VALIDATION_STATS"]

#: the largest share of effect-free runs allowed to fail a default-mode gate
FALSE_ALARM_RATE = 0.05
#: the smallest share of planted-effect runs that must fail it
POWER = 0.80
#: runs per model and world
N_RUNS = 100
#: resampling sizes of the validation runs, unless a world sets its own (``World.stats``).
#: Fewer bootstrap replicates than an audit's 1000 make a percentile CI's ends noisier and, on
#: average, narrower in the tails, so false-alarm rates measured at 200 are if anything above
#: those of an audit's default; exposure's CIs sit at a Bonferroni level far in the tails,
#: where 200 replicates are too few (skew@k alarmed in 8 of 100 effect-free runs at 200, 4 at
#: 1000): its world runs 1000. Permutations set p-values and floors; 199 draws keep their Monte
#: Carlo error small beside the bootstrap's.
VALIDATION_STATS = {"n_bootstrap": 200, "n_permutations": 199}

#: a synthetic model: (query, its random generator) -> the response. A generate query's
#: response carries ``item_ids`` (catalog ids, no grounding), a score query's ``scores``.
Model = Callable[[Query, np.random.Generator], Response]


@dataclass(frozen=True)
class World:
    """One probe and two synthetic models of known behaviour.

    ``effect`` states the planted effect's size in words a reader can check against the
    models' code; ``catalog`` builds the catalog the probe reads (``None``: catalog-free);
    ``capabilities`` are the synthetic adapter's (``generate``, ``score``).
    """

    name: str
    probe: str
    params: dict[str, Any]
    null: Model
    planted: Model
    effect: str
    catalog: Callable[[], Any] = field(default=lambda: None)
    capabilities: frozenset[str] = frozenset({"generate"})
    #: repeated samples per query (``decoding.samples``): the model is asked once per sample,
    #: each with its own random stream
    samples: int = 1
    #: gateable metrics this world does not validate, each with the reason (shown in the doc)
    not_validated: dict[str, str] = field(default_factory=dict)
    #: resampling settings over :data:`VALIDATION_STATS` (e.g. ``{"n_bootstrap": 1000}``)
    stats: dict[str, int] = field(default_factory=dict)


def _query_rng(seed: int, query: Query, sample: int = 0) -> np.random.Generator:
    """Return a generator seeded by the run's seed, the query id and the sample index."""
    tail = f"\x1f{sample}" if sample else ""
    digest = hashlib.sha256(f"{seed}\x1f{query.id}{tail}".encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def answer(query: Query, response: Response, sample: int = 0) -> Answer:
    """Wrap a synthetic response as the engine would (ids taken as grounded, no text)."""
    ids = list(response.item_ids or [])
    grounding = Grounding(item_ids=ids, unmatched=[], duplicates=0, entries=ids)
    return Answer(query.request.with_sample(sample), response, grounding)


def answer_samples(world: World, model: Model, seed: int, query: Query) -> Answer:
    """Return the query's answer, carrying ``world.samples`` samples as the engine does."""
    first = answer(query, model(query, _query_rng(seed, query)))
    if world.samples > 1:
        first.samples = [first] + [answer(query, model(query, _query_rng(seed, query, j)), j)
                                   for j in range(1, world.samples)]
    return first


def run_once(world: World, model: Model, seed: int, catalog: Any = None) -> ProbeResult:
    """Run ``world``'s probe analysis once on ``model`` with statistics seed ``seed``."""
    cls = get_probe(world.probe)
    probe = cls(cls.Params.model_validate(world.params), run_id=world.name)
    ctx = AuditContext(catalog=catalog,
                       stats=StatsConfig(seed=seed, **{**VALIDATION_STATS, **world.stats}),
                       capabilities=world.capabilities)
    queries = probe.plan(ctx)
    answers = {q.id: answer_samples(world, model, seed, q) for q in queries}
    return probe.analyse(ctx, queries, answers)


def gateable_metrics(result: ProbeResult) -> list[str]:
    """Metrics of ``result``'s original records that a gate can bound at "no effect".

    Those whose declaration has a ``null`` and a direction (``higher_is_worse`` True/False)
    or a floor (a signed statistic such as skew@k, gated on both sides).
    """
    names = []
    for rec in result.metrics:
        if rec.variant != "original" or rec.metric in names:
            continue
        spec = get_spec(rec.metric)
        if spec is None or spec.null is None or spec.role is not None:
            continue
        if spec.higher_is_worse is None and not spec.noise_floor:
            continue
        names.append(rec.metric)
    return names


def default_gate(result: ProbeResult, metric: str) -> GateSpec:
    """Return the default-mode (``ci``) gate of ``metric`` at its no-effect value."""
    return GateSpec(name=metric, probe=result.id, metric=metric, **gate_bounds(metric))


def gate_bounds(metric: str) -> dict[str, float]:
    """Return the default gate's bounds: ``max`` and/or ``min`` at the declared ``null``."""
    spec = get_spec(metric)
    assert spec is not None and spec.null is not None
    bounds: dict[str, float] = {}
    if spec.higher_is_worse in (True, None):
        bounds["max"] = spec.null
    if spec.higher_is_worse in (False, None):
        bounds["min"] = spec.null
    return bounds


def _alarms(result: ProbeResult, metrics: list[str]) -> dict[str, bool]:
    """Whether each metric's default gate fails on ``result`` (a metric it lacks: no entry)."""
    audit = AuditResult(provenance=Provenance(tool_version="validation", model_spec="synthetic"),
                        config={}, probes=[result])
    present = set(gateable_metrics(result))
    gates = [default_gate(result, m) for m in metrics if m in present]
    results = evaluate_gates(audit, gates)
    return {g.metric: not r.passed for g, r in zip(gates, results, strict=True)}


@dataclass
class Tally:
    """Alarm counts of one world: metric -> runs that alarmed, per model, out of ``runs``."""

    world: World
    runs: int = 0
    metrics: list[str] = field(default_factory=list)
    false_alarms: dict[str, int] = field(default_factory=dict)
    detections: dict[str, int] = field(default_factory=dict)
    measured: dict[str, int] = field(default_factory=dict)  # runs that recorded the metric
    seconds: float = 0.0  # compute time of the runs (summed over processes)
    #: each metric's default-gate bounds (:func:`gate_bounds`), taken where the runs declared it
    bounds: dict[str, dict[str, float]] = field(default_factory=dict)

    def rate(self, metric: str, planted: bool) -> float:
        """Return the share of runs whose gate on ``metric`` failed."""
        counts = self.detections if planted else self.false_alarms
        return counts.get(metric, 0) / self.runs if self.runs else float("nan")


def run_world(world: World, n_runs: int = N_RUNS, first_seed: int = 0) -> Tally:
    """Run ``world``'s null and planted models ``n_runs`` times each; count gate failures.

    The metrics validated are the gateable metrics the first null run records; every run must
    record each of them (a metric a run fails to record is counted in ``measured`` and the
    validation test requires ``measured == runs``).
    """
    catalog = world.catalog()
    tally = Tally(world)
    for seed in range(first_seed, first_seed + n_runs):
        null = run_once(world, world.null, seed, catalog)
        if not tally.metrics:
            tally.metrics = [m for m in gateable_metrics(null) if m not in world.not_validated]
            tally.bounds = {m: gate_bounds(m) for m in tally.metrics}
        planted = run_once(world, world.planted, seed, catalog)
        for counts, result in ((tally.false_alarms, null), (tally.detections, planted)):
            for metric, alarmed in _alarms(result, tally.metrics).items():
                counts[metric] = counts.get(metric, 0) + int(alarmed)
                if counts is tally.false_alarms:
                    tally.measured[metric] = tally.measured.get(metric, 0) + 1
        tally.runs += 1
    return tally


def merge(tallies: list[Tally]) -> Tally:
    """Add up tallies of one world over disjoint seed ranges (in seed order)."""
    out = Tally(tallies[0].world, metrics=list(tallies[0].metrics),
                bounds=dict(tallies[0].bounds))
    for t in tallies:
        out.runs += t.runs
        out.seconds += t.seconds
        for mine, theirs in ((out.false_alarms, t.false_alarms), (out.detections, t.detections),
                             (out.measured, t.measured)):
            for metric, count in theirs.items():
                mine[metric] = mine.get(metric, 0) + count
    return out


def _run_chunk(job: tuple[str, int, int]) -> tuple[Any, ...]:
    """Run one chunk of seeds of a registered world; return its counts and seconds.

    Plain data: it pickles back from a worker process (a world's models need not).
    """
    import time

    from .worlds import WORLDS

    name, first_seed, n_runs = job
    start = time.perf_counter()
    t = run_world(next(w for w in WORLDS if w.name == name), n_runs, first_seed)
    return (t.runs, t.metrics, t.false_alarms, t.detections, t.measured,
            time.perf_counter() - start, t.bounds)


def run_worlds(names: list[str], n_runs: int = N_RUNS, workers: int = 1) -> list[Tally]:
    """Return the tallies of the registered worlds ``names`` over seeds ``0 .. n_runs - 1``.

    The seeds are cut into chunks run on ``workers`` processes (spawned: a fork of a process
    whose OpenMP or BLAS threads have started can hang) and each world's chunks are added up
    (:func:`merge`): the counts are those of one process running every seed.
    """
    import multiprocessing

    chunk = max(1, -(-n_runs // max(1, 2 * workers)))
    jobs = [(name, start, min(chunk, n_runs - start))
            for name in names for start in range(0, n_runs, chunk)]
    from .worlds import WORLDS

    if workers <= 1:
        done = [_run_chunk(job) for job in jobs]
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            done = pool.map(_run_chunk, jobs, chunksize=1)
    out = []
    for name in names:
        world = next(w for w in WORLDS if w.name == name)
        parts = [Tally(world, *counts[:5], seconds=counts[5], bounds=counts[6])
                 for job, counts in zip(jobs, done, strict=True) if job[0] == name]
        out.append(merge(parts))
    return out


def accepts(tally: Tally, metric: str) -> tuple[bool, bool]:
    """Return (false alarms within ``FALSE_ALARM_RATE``, detections reach ``POWER``)."""
    n = tally.runs
    return (tally.false_alarms.get(metric, 0) <= FALSE_ALARM_RATE * n,
            tally.detections.get(metric, 0) >= POWER * n)


def upper_bound(alarms: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper confidence bound on a rate seen ``alarms`` times in ``n``.

    ``Beta(confidence; alarms + 1, n - alarms)`` (Clopper & Pearson 1934); 1 when all alarmed.
    """
    return 1.0 if alarms >= n else float(sps.beta.ppf(confidence, alarms + 1, n - alarms))


def binomial_statement(n: int = N_RUNS) -> str:
    """Say what the acceptance rule means for a gate's true false-alarm rate and power."""
    allowed = int(np.floor(FALSE_ALARM_RATE * n))
    needed = int(np.ceil(POWER * n))
    ok_at = sps.binom.cdf(allowed, n, 0.025)
    ok_bad = sps.binom.cdf(allowed, n, 0.10)
    power_ok = sps.binom.sf(needed - 1, n, 0.90)
    power_bad = sps.binom.sf(needed - 1, n, 0.70)
    return (f"A metric passes when at most {allowed} of {n} effect-free runs fail its gate "
            f"(observed rate <= {FALSE_ALARM_RATE:.0%}) and at least {needed} of {n} planted "
            f"runs do (>= {POWER:.0%}). Binomial operating characteristics of that rule: a gate "
            f"whose true false-alarm rate is 2.5% (the one-sided level of a 95% CI) is accepted "
            f"with probability {ok_at:.2f}, one at 10% with probability {ok_bad:.2f}; a true "
            f"power of 90% is accepted with probability {power_ok:.2f}, one of 70% with "
            f"probability {power_bad:.2f}.")
