"""``recaudit mitigate`` on a saved result: answers are rebuilt from the typed raw records
through the probe's own ``saved_capabilities`` / ``saved_response``, so the re-planned requests
and every re-measured number are the audit's."""

from __future__ import annotations

import json

import pytest

from recaudit.config import StatsConfig
from recaudit.mitigation.saved import _answer, _capabilities
from recaudit.probes.kit import RawRecord
from recaudit.probes.position import PositionParams, PositionProbe
from recaudit.probes.registry import AuditContext
from recaudit.probes.robustness import RobustnessProbe

from ..probes import test_position as tpos
from ..probes import test_robustness as trob

FAST = StatsConfig(n_bootstrap=50, n_permutations=99, seed=0)


def _stored(res) -> list[RawRecord]:
    """The result's raw records as ``recaudit mitigate`` reads them: through JSON, typed."""
    return [RawRecord.from_json(r) for r in json.loads(json.dumps(res.records))]


def _numbers(res) -> list[tuple]:
    return [(m.metric, m.attribute, m.value, m.k, m.estimate, m.ci_low, m.ci_high, m.p_value)
            for m in res.metrics]


def _replay(probe, catalog, res, stats=FAST):
    """Re-plan with the capabilities the records give and re-measure the replayed answers."""
    stored = _stored(res)
    ctx = AuditContext(catalog=catalog, stats=stats, capabilities=_capabilities(probe, stored))
    queries = probe.plan(ctx)
    by_id = {r.id: r for r in stored}
    answers = {q.id: _answer(probe, q, by_id[q.id]) for q in queries}
    return ctx, queries, probe.analyse(ctx, queries, answers)


@pytest.mark.parametrize("mode", ["score", "generate"])
def test_a_saved_position_result_replays_its_mode_and_rankings(mode):
    """Score mode: the stored candidate scores (position's RankingRecord) order the candidates
    again, and the mode comes back from the records, so the same requests are re-planned."""
    catalog = tpos.position_catalog()
    probe = PositionProbe(PositionParams(n_users=6, n_shuffles=2))
    caps = frozenset({mode})
    queries = probe.plan(AuditContext(catalog=catalog, stats=FAST, capabilities=caps))
    if mode == "score":
        answers = tpos.score_answers(queries, lambda titles, cands: [
            float(tpos._h(t) % 97) - 30.0 * (i == 0) for i, t in enumerate(titles)])
    else:
        answers = tpos.gen_answers(queries, lambda titles: tpos.primacy(titles, q=0.5))
    res = probe.analyse(AuditContext(catalog=catalog, stats=FAST, capabilities=caps),
                        queries, answers)
    assert probe.saved_capabilities(_stored(res)) == caps
    ctx, again_queries, again = _replay(probe, catalog, res)
    assert ctx.capabilities == caps
    assert [(q.id, q.request.key()) for q in again_queries] == \
        [(q.id, q.request.key()) for q in queries]
    assert _numbers(again) == _numbers(res)
    assert [r["ranking"] for r in again.records] == [r["ranking"] for r in res.records]
    assert all(r["ranking"] for r in res.records)  # every request ranked: a real comparison


def test_a_probe_without_saved_hooks_replays_its_grounded_lists():
    """The base's defaults: no capability constraint (every one is offered), the stored text
    and error, and the stored grounding."""
    catalog = trob.synthetic_catalog()
    res, queries = trob._run(catalog, trob.case_sensitive, perturbations=["case", "typo"])
    probe = RobustnessProbe(trob.RobustnessParams(subjects=trob.SUBJECTS, k=5,
                                                  perturbations=["case", "typo"]))
    assert probe.saved_capabilities(_stored(res)) is None
    assert _capabilities(probe, _stored(res)) == frozenset({"generate", "score", "embed"})
    _ctx, again_queries, again = _replay(probe, catalog, res, stats=trob.FAST)
    assert [q.id for q in again_queries] == [q.id for q in queries]
    assert _numbers(again) == _numbers(res)
    assert any(m.metric == "stability_jaccard" and m.estimate is not None and m.estimate < 1
               for m in res.metrics)  # the lists differ between requests: replay is tested
