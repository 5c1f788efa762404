"""Counterfactual consensus and prompt neutralisation (METRICS.md section 7).

For probes that ask the same request once per value of a sensitive attribute (the
counterfactual probe: one instruction x each value; the profile probe: one user x each
value), the lists of one unit and attribute are:

* ``consensus``: all replaced by their aggregate (:func:`recaudit.mitigation.aggregate.borda`,
  or the exact Kemeny aggregate where the union is small), so the list no longer depends on
  the value the user stated;
* ``neutral``: all replaced by the unit's neutral list, the answer to the same request
  without the attribute (prompt neutralisation: what serving the request without the
  sensitive attribute would return).

Both need no model call: the probes already asked the neutral and every valued request.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

from .registry import ListBatch, Reranker, RerankerParams, reranker

__all__ = ["ConsensusParams", "Consensus", "Neutralise"]


def _unit(q: Any) -> Any:
    return q.meta.get("unit", q.meta.get("user_id"))


def _counterfactual_reason(queries: Sequence[Any]) -> str | None:
    attributed = [q for q in queries if q.meta.get("attribute")]
    if not attributed or any(_unit(q) is None for q in attributed):
        return "the probe asks no request once per value of an attribute"
    return None


class ConsensusParams(RerankerParams):
    """Parameters of :class:`Consensus` (Kemeny is used on unions of at most 12 items)."""

    method: Literal["borda", "kemeny"] = "borda"
    include_neutral: bool = False


@reranker("consensus")
class Consensus(Reranker):
    """Counterfactual consensus: each list becomes the aggregate of all values' lists."""

    Params = ConsensusParams
    target = "snsr_jaccard"
    params: ConsensusParams

    def applies(self, probe: Any, queries: Sequence[Any]) -> str | None:
        """Return None for a probe asking requests once per attribute value, else the reason."""
        return _counterfactual_reason(queries)

    def rerank(self, batch: ListBatch, k: int) -> list[list[str]]:
        """Replace the lists of each unit and attribute by their aggregate (Borda or Kemeny)."""
        from .aggregate import borda, kemeny

        lists = batch.lists(_identity(batch))
        groups: dict[tuple[Any, str], list[int]] = {}
        neutral: dict[Any, int] = {}
        for i, q in enumerate(batch.queries):
            attr = q.meta.get("attribute")
            if attr:
                groups.setdefault((_unit(q), attr), []).append(i)
            else:
                neutral[_unit(q)] = i
        out = list(lists)
        for (unit, _), rows in groups.items():
            members = [lists[i] for i in rows]
            if self.params.include_neutral and unit in neutral:
                members.append(lists[neutral[unit]])
            members = [m for m in members if m]
            if not members:
                continue
            width = max(len(lists[i]) for i in rows)
            union = {x for m in members for x in m}
            if self.params.method == "kemeny" and len(union) <= 12:
                agg = kemeny(members)
            else:  # Kemeny is exact only on small unions: Borda beyond (said in the label)
                agg = borda(members)
            for i in rows:
                out[i] = agg[:width]
        return out


@reranker("neutral")
class Neutralise(Reranker):
    """Prompt neutralisation: each list becomes the unit's answer without the attribute."""

    Params = RerankerParams
    target = "snsr_jaccard"

    def applies(self, probe: Any, queries: Sequence[Any]) -> str | None:
        """Return None for a counterfactual probe with neutral requests, else the reason."""
        reason = _counterfactual_reason(queries)
        if reason:
            return reason
        units = {_unit(q) for q in queries if not q.meta.get("attribute")}
        if not units:
            return "the probe asks no neutral request (without the attribute)"
        return None

    def rerank(self, batch: ListBatch, k: int) -> list[list[str]]:
        """Replace each attributed list by its unit's neutral list, where there is one."""
        lists = batch.lists(_identity(batch))
        neutral = {_unit(q): lists[i] for i, q in enumerate(batch.queries)
                   if not q.meta.get("attribute")}
        return [neutral.get(_unit(q), lists[i]) if q.meta.get("attribute") else lists[i]
                for i, q in enumerate(batch.queries)]


def _identity(batch: ListBatch) -> Any:
    import numpy as np

    return np.where(batch.valid, np.arange(batch.ids.shape[1])[None, :], -1)
