"""``recaudit mitigate RESULTS.json``: re-apply rerankers to a saved audit, no model run.

The probes are re-planned from the saved config and catalog (planning is deterministic and
calls no model), each answer is rebuilt from the result's typed raw records
(:class:`~recaudit.probes.kit.RawRecord`: grounded items and unmatched entries here, the
response through the probe's :meth:`~recaudit.probes.base.Probe.saved_response`, e.g.
position's candidate scores; the capabilities it ran with through
:meth:`~recaudit.probes.base.Probe.saved_capabilities`), and :func:`~recaudit.mitigation.apply.
mitigate_probe` runs as in the audit. Variants already in the result with the same name are
replaced, so re-running is idempotent. Rerankers that need model calls (``psc``) cannot run
here: the error says to add them to the config and rerun the audit (the cache keeps every
answer already computed).
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import ConfigError
from ..results import AuditResult, ProbeResult

__all__ = ["mitigate_saved"]


def _answer(probe: Any, q: Any, rec: Any) -> Any:
    """Rebuild the answer a stored raw record (:class:`~recaudit.probes.kit.RawRecord`) replays.

    Its response is the probe's :meth:`~recaudit.probes.base.Probe.saved_response`; its
    grounding is the stored one (none for a failed request).
    """
    from ..engine import Answer
    from ..grounding import Grounding

    items = [str(x) for x in rec.item_ids or []]
    unmatched = [str(x) for x in rec.unmatched or []]
    grounding = None if rec.error else Grounding(item_ids=items, unmatched=unmatched,
                                                 entries=items + unmatched)
    return Answer(request=q.request, response=probe.saved_response(q, rec), grounding=grounding,
                  cached=True)


def _capabilities(probe: Any, records: list[Any]) -> frozenset[str]:
    """Return the capabilities the probe ran with, else every capability.

    They are read from its records by :meth:`~recaudit.probes.base.Probe.saved_capabilities`.
    """
    from ..recommenders.base import EMBED, GENERATE, SCORE

    return probe.saved_capabilities(records) or frozenset({GENERATE, SCORE, EMBED})


def mitigate_saved(result: AuditResult, specs: Sequence[Any]) -> AuditResult:
    """Measure the variants of ``specs`` on the saved answers of ``result``.

    ``specs`` are :class:`recaudit.config.MitigationSpec` entries. ``result`` is updated in
    place and returned.
    """
    from ..audit import load_catalog
    from ..config import check_mitigation, parse_config
    from ..probes.kit import RawRecord
    from ..probes.registry import AuditContext, build_probe
    from .apply import mitigate_probe, resolve_rerankers

    cfg = parse_config({**result.config, "mitigation": []}, where="results.json config")
    check_mitigation(list(specs), [p.run_id for p in cfg.probes], "mitigate")
    for i, spec in enumerate(specs):
        main = resolve_rerankers(spec, f"mitigation[{i}]")[0]
        if main.needs_model:
            raise ConfigError(f"reranker {main.name!r} needs model calls: add it to the "
                              "config's 'mitigation:' list and rerun 'recaudit audit' (answers "
                              "already computed come from the cache)")
    catalog = load_catalog(cfg)
    by_id = {p.id: p for p in result.probes}
    for spec_p in cfg.probes:
        res = by_id.get(spec_p.run_id)
        if res is None or res.status != "ok":
            continue
        probe = build_probe(spec_p)
        stored = [RawRecord.from_json(r) for r in res.records]
        ctx = AuditContext(catalog=catalog, stats=cfg.stats,
                           capabilities=_capabilities(probe, stored), config=cfg)
        queries = probe.plan(ctx)
        records = {r.id: r for r in stored}
        answers = {q.id: _answer(probe, q, records[q.id]) for q in queries if q.id in records}
        if len(answers) < len(queries):
            raise ConfigError(f"{res.id}: the saved records do not match the re-planned "
                              f"requests ({len(answers)} of {len(queries)} found): was the "
                              "result written by another version or catalog?")
        names = {s.id or resolve_rerankers(s, "mitigate")[0].label() for s in specs}
        _drop_variants(res, names | {r.label() for s in specs
                                     for r in resolve_rerankers(s, "mitigate")})
        mitigate_probe(probe, ctx, queries, answers, res, list(specs))
    result.config = {**result.config, "mitigation": [
        *result.config.get("mitigation", []), *[s.model_dump(mode="json") for s in specs]]}
    return result


def _drop_variants(res: ProbeResult, variants: set[str]) -> None:
    """Forget earlier runs of these variants (also their ``@k`` cuts)."""
    def gone(v: str) -> bool:
        return v in variants or v.rpartition("@")[0] in variants

    res.metrics = [m for m in res.metrics if not gone(m.variant)]
    res.units = [u for u in res.units if not gone(u.variant)]
    res.tradeoffs = [t for t in res.tradeoffs if not gone(t.variant)]
