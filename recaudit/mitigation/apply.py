"""Apply the configured rerankers to a probe's lists and measure what they do and cost.

For one probe run and one ``mitigation:`` entry (a reranker with parameters, ``k``, an
optional sweep):

1. the probe's lists (its answers' grounded items) are re-ranked: the top ``k`` re-chosen
   among each list's entries (:class:`~recaudit.mitigation.registry.ListBatch`); with ``k``
   shorter than the lists, the re-ranked lists are their top ``k`` (variant ``fair(p=0.5)@10``)
   and the probe also measures the original lists cut to ``k`` once (variant
   ``original@10``): the like-for-like baseline;
2. the probe's own ``analyse`` measures the re-ranked answers inside
   :func:`~recaudit.probes.kit.variant_scope`, so every metric of the probe comes back under
   the variant (``fair(p=0.5)``) with its CI, gated and compared like the original;
3. beside them, per list (the unit of every CI), paired over the same lists:

   * the targeted list measure (when the reranker has one: protected share, APLT, NDKL,
     miscalibration) of the original and the re-ranked list (``value`` original / mitigated)
     and ``mitigation_change`` = mitigated - original with a paired-bootstrap CI;
   * the utility: ``ndcg`` / ``hr`` at ``k`` against the held-out items where the probe's
     requests have them (``attribute: utility``, values original / mitigated) and
     ``utility_cost`` = original - mitigated (paired CI); and the similarity of the re-ranked
     top ``k`` to the original top ``k`` (``rerank_jaccard``, ``rerank_rbo``);
4. the sweep (the reranker's parameter over a grid) repeats 1-3 per point and keeps the
   target and cost records only; the points form the :class:`~recaudit.results.Tradeoff`
   curve the report draws.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError
from ..results import ORIGINAL, ProbeResult, Tradeoff, TradeoffPoint
from .registry import ListBatch, Reranker, build_reranker

__all__ = ["mitigate_probe", "plan_model_queries", "resolve_rerankers"]

MITIGATION_ATTR = "mitigation"
UTILITY_ATTR = "utility"


def resolve_rerankers(spec: Any, where: str) -> list[Reranker]:
    """Build the reranker of a ``mitigation:`` entry, then one per further sweep value.

    All are validated: a bad parameter anywhere is a one-line ConfigError before any model
    call.
    """
    main = build_reranker(spec.reranker, spec.params, where)
    points = [main]
    name = spec.sweep_param or main.sweep
    values = spec.sweep if spec.sweep is not None else list(main.sweep_values)
    if name is not None:
        if name not in type(main.params).model_fields:
            raise ConfigError(f"{where}: {main.name}: cannot sweep unknown parameter {name!r}; "
                              f"parameters: {', '.join(type(main.params).model_fields)}")
        current = getattr(main.params, name)
        for v in values:
            if v != current:
                points.append(main.with_param(name, v))
    return points


def _applies(spec: Any, probe: Any, queries: Sequence[Any], rr: Reranker) -> str | None:
    if spec.probes and probe.run_id not in spec.probes:
        return "not named in its probes list"
    return rr.applies(probe, queries)


def plan_model_queries(specs: Sequence[Any], probe: Any, queries: Sequence[Any]
                       ) -> list[Any]:
    """Plan the extra requests the model-backed rerankers need for this probe.

    One plan per entry, for its largest sweep point: the smaller ones use a prefix of its
    requests.
    """
    extra: list[Any] = []
    for i, spec in enumerate(specs):
        points = resolve_rerankers(spec, f"mitigation[{i}]")
        if not points[0].needs_model or _applies(spec, probe, queries, points[0]):
            continue
        biggest = max(points, key=lambda r: r.plan_size())
        extra.extend(biggest.plan(probe, queries))
    return extra


def _with_lists(answers: dict[str, Any], lists: dict[str, list[str] | None]
                ) -> dict[str, Any]:
    return {qid: (dataclasses.replace(a, ranked=lists[qid]) if lists.get(qid) is not None
                  else a) for qid, a in answers.items()}


def _list_of(probe: Any, q: Any, answer: Any) -> list[str] | None:
    """Return the list a reranker re-orders for one answer (None for a failed answer).

    That is the probe's own reading of the answer where it has one (a ranking of the
    candidates it listed), else the answer's grounded items.
    """
    if answer is None or not answer.ok:
        return None
    if hasattr(probe, "ranking"):
        return probe.ranking(q, answer)
    return answer.item_ids  # [] for a refusal: consensus still gives it the aggregate


def _held_out(q: Any) -> list[str] | None:
    h = q.meta.get("held_out")
    if h is None:
        return None
    return [str(h)] if isinstance(h, str) else [str(x) for x in h]


def mitigate_probe(probe: Any, ctx: Any, queries: Sequence[Any], answers: dict[str, Any],
                   result: ProbeResult, specs: Sequence[Any]) -> None:
    """Run every applicable ``mitigation:`` entry on one probe's answers.

    Records, unit tables and trade-off curves are added to ``result``. A reranker that cannot
    serve the probe is said in a warning when the entry names the probe, and skipped silently
    otherwise.
    """
    if result.status != "ok":
        return
    for i, spec in enumerate(specs):
        where = f"mitigation[{i}]"
        points = resolve_rerankers(spec, where)
        reason = _applies(spec, probe, queries, points[0])
        if reason:
            if spec.probes and probe.run_id in spec.probes:
                result.warnings.append(f"{where} {points[0].name}: not applied: {reason}")
            continue
        _mitigate(probe, ctx, queries, answers, result, spec, points, where)


def _mitigate(probe: Any, ctx: Any, queries: Sequence[Any], answers: dict[str, Any],
              result: ProbeResult, spec: Any, points: list[Reranker], where: str) -> None:
    from ..metrics.similarity import jaccard, rbo
    from ..metrics.utility import hit_rate_at_k, ndcg_at_k
    from ..probes.kit import Summariser, Table, variant_scope

    main = points[0]
    lists = {q.id: _list_of(probe, q, answers.get(q.id)) for q in queries}
    usable = [q for q in queries if lists[q.id] is not None]
    if not any(lists[q.id] for q in usable):
        result.warnings.append(f"{where} {main.name}: no list to re-rank")
        return
    base = {q.id: lists[q.id] for q in usable}
    width = max(len(x) for x in base.values())
    k = spec.k or width
    if k > width:
        raise ConfigError(f"{where}: {main.name}: k={k} is larger than the candidate lists "
                          f"({width} items)")
    batch = ListBatch.of([base[q.id] for q in usable], usable, ctx.catalog)
    try:
        base_target = main.target_values(batch, k)
    except ValueError as err:
        raise ConfigError(f"{where}: {main.name}: {err}") from None
    units = [q.id for q in usable]
    held = [_held_out(q) for q in usable]
    has_held = [i for i, h in enumerate(held) if h]
    at = f"@{k}" if k < width else ""  # lists cut to their re-ranked top k
    baseline = ORIGINAL
    if at:  # the like-for-like baseline: the original lists cut to k, measured by the probe
        baseline = f"{ORIGINAL}{at}"
        if not any(m.variant == baseline for m in result.metrics):
            with variant_scope(baseline):
                cut = {u: base[u][:k] for u in units}
                _merge(result, probe.analyse(ctx, list(queries), _with_lists(answers, cut)),
                       everything=True, metrics=set())
    curve = Tradeoff(reranker=main.name, variant=spec.id or main.label() + at,
                     parameter=spec.sweep_param or main.sweep, target=spec.target or main.target,
                     k=k, baseline=baseline)
    for j, rr in enumerate(points):
        variant = (spec.id or rr.label() + at) if j == 0 else rr.label() + at
        try:
            if rr.needs_model:
                new = rr.rerank_answers(probe, queries, answers)
            else:
                # rerank returns one list per row of ``batch``, built from ``usable`` as units
                new = dict(zip(units, (lst[:k] for lst in rr.rerank(batch, k)), strict=True))
        except ValueError as err:
            raise ConfigError(f"{where}: {rr.name}: {err}") from None
        with variant_scope(variant):
            sub = probe.analyse(ctx, list(queries), _with_lists(answers, new))
            kit = Summariser(sub, ctx.stats)
            keep: list[str] = []
            got = [new.get(u) or base[u] for u in units]
            sim = np.array([[jaccard(base[u][:k], g[:k]), rbo(base[u][:k], g[:k])]
                            for u, g in zip(units, got, strict=True)])
            for c, m in enumerate(("rerank_jaccard", "rerank_rbo")):
                kit.means(Table(m, MITIGATION_ATTR, ["vs original"], units, sim[:, [c]]))
                keep.append(m)
            util_rec = None
            if has_held:
                hu = [units[i] for i in has_held]
                for m, fn in (("ndcg", ndcg_at_k), ("hr", hit_rate_at_k)):
                    vals = np.array([[fn(base[units[i]], held[i], k), fn(got[i], held[i], k)]
                                     for i in has_held])
                    t = Table(m, UTILITY_ATTR, ["original", "mitigated"], hu, vals, ks=[k])
                    kit.means(t)
                    rec = kit.derived(t, "utility_cost", lambda x: float(x[0] - x[1]),
                                      estimate=float(np.nanmean(vals[:, 0] - vals[:, 1])),
                                      value=f"{m}@{k}")
                    util_rec = util_rec or rec
                keep += ["ndcg", "hr", "utility_cost"]
            target_rec = None
            if base_target is not None:
                after = rr.target_values(ListBatch.of(got, usable, ctx.catalog), k)
                vals = np.stack([base_target, after], axis=1)
                t = Table(main.target, MITIGATION_ATTR, ["original", "mitigated"], units, vals,
                          ks=[k])
                target_rec = kit.means(t)[("mitigated", k)]
                diff = vals[:, 1] - vals[:, 0]
                kit.derived(t, "mitigation_change", lambda x: float(x[1] - x[0]),
                            estimate=float(np.nanmean(diff)) if np.isfinite(diff).any() else None,
                            value=main.target)
                keep += [main.target, "mitigation_change"]
            kit.extend()
        if target_rec is None:  # the target is one of the probe's own metrics
            attribute = spec.target_attribute or _worst_attribute(
                [m for m in result.metrics if m.variant == baseline], spec.target or main.target)
            target_rec = _probe_target(sub.metrics, spec.target or main.target, attribute)
            if target_rec is not None:
                keep.append(target_rec.metric)
                before = _probe_target([m for m in result.metrics if m.variant == baseline],
                                       target_rec.metric, target_rec.attribute)
            else:
                before = None
        else:
            before = next(m for m in sub.metrics if m.metric == main.target
                          and m.attribute == MITIGATION_ATTR and m.value == "original")
        if j == 0 and before is not None:
            curve.before_estimate, curve.before_ci = _est(before), _ci(before)
        sim_rec = next(r for r in sub.metrics if r.metric == "rerank_jaccard")
        cost = util_rec or sim_rec
        curve.points.append(TradeoffPoint(
            value=getattr(rr.params, curve.parameter) if curve.parameter else None,
            variant=variant, target_estimate=_est(target_rec),
            target_ci=_ci(target_rec),
            target_attribute=None if target_rec is None or target_rec.attribute ==
            MITIGATION_ATTR else target_rec.attribute,
            cost_metric=f"{cost.metric}" + (f" ({cost.value})" if cost.value and
                                            cost.metric == "utility_cost" else ""),
            cost_estimate=_est(cost), cost_ci=_ci(cost)))
        _merge(result, sub, everything=j == 0, metrics=set(keep))
    curve.points.sort(key=lambda p: (p.value is None, p.value if p.value is not None else 0))
    result.tradeoffs.append(curve)


def _worst_attribute(records: Sequence[Any], metric: str) -> str | None:
    """Return the attribute whose baseline record of ``metric`` (largest k) is largest.

    The trade-off curve then shows the disparity the reranker has most to remove. A matched
    control's attribute is never the target: its spread is what an irrelevant word changes.
    """
    from ..probes.control import is_control

    recs = [r for r in records if r.metric == metric and r.estimate is not None and not r.value
            and not is_control(r.attribute)]
    if not recs:
        return None
    top = max((r.k or 0) for r in recs)
    return max((r for r in recs if (r.k or 0) == top), key=lambda r: r.estimate).attribute


def _probe_target(records: Sequence[Any], metric: str, attribute: str | None) -> Any:
    """Return the record of ``metric`` at its largest k (None if there is none).

    Only records of ``attribute`` count when it is given; otherwise the first attribute's.
    """
    recs = [r for r in records if r.metric == metric and r.estimate is not None and not r.value
            and (attribute is None or r.attribute == attribute)]
    if not recs:
        return None
    top = max((r.k or 0) for r in recs)
    return next(r for r in recs if (r.k or 0) == top)


def _est(rec: Any) -> float | None:
    return None if rec is None or rec.estimate is None else float(rec.estimate)


def _ci(rec: Any) -> list[float | None]:
    return [None, None] if rec is None else [rec.ci_low, rec.ci_high]


def _merge(result: ProbeResult, sub: ProbeResult, *, everything: bool, metrics: set[str]
           ) -> None:
    """Add a variant's records to ``result``, with their unit tables and metric declarations.

    The records are all of them (``everything``) or only those of ``metrics``; the unit
    tables are those the records derive from.
    """
    recs = [r for r in sub.metrics if everything or r.metric in metrics]
    result.metrics.extend(recs)
    tables = {r.table for r in recs if r.table}
    result.units.extend(t for t in sub.units if everything or t.id in tables)
    for name, spec in sub.specs.items():
        result.specs.setdefault(name, spec)
