"""Permutation self-consistency for position bias (Tang et al., NAACL 2024).

METRICS.md sections 5 and 7. For every request of a probe that lists candidates (one that implements
``requery(query, order, suffix)`` and ``ranking(query, answer)``, such as the position probe), ``B``
further requests show the same candidates in independent random orders (seeded by the request's id,
each copy shuffled on its own: LLMRank's bootstrap shuffles all copies identically). The ``B``
rankings are aggregated by Borda count (:func:`recaudit.mitigation.aggregate.borda`; candidates a
ranking leaves out score 0 and, among themselves, keep a seeded random order, so the original order
leaks into no tie). The aggregate replaces the request's ranking. These requests go through the
engine and its cache: a rerun computes none of them again.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np
from pydantic import Field

from .registry import Reranker, RerankerParams, reranker

__all__ = ["PermutationParams", "PermutationSelfConsistency"]


class PermutationParams(RerankerParams):
    """Parameters of :class:`PermutationSelfConsistency`."""

    B: int = Field(8, ge=1, le=64, description="shuffled copies aggregated per request")
    seed: int = 0


def _rng(seed: int, qid: str, purpose: str) -> np.random.Generator:
    h = hashlib.sha256(f"{seed}|{qid}|{purpose}".encode()).hexdigest()[:15]
    return np.random.default_rng(int(h, 16))


@reranker("psc")
class PermutationSelfConsistency(Reranker):
    """Permutation self-consistency: aggregate the rankings of B independent shuffles."""

    Params = PermutationParams
    sweep = "B"
    sweep_values = (1, 2, 4, 8)
    target = "ndcg_gap"
    needs_model = True
    params: PermutationParams

    def applies(self, probe: Any, queries: Sequence[Any]) -> str | None:
        """Return None for a probe that can re-ask its candidates shuffled, else the reason."""
        if not (hasattr(probe, "requery") and hasattr(probe, "ranking")):
            return "the probe lists no candidates it could shuffle"
        return None

    def plan_size(self) -> int:
        """Return ``B``: one shuffled copy per extra request."""
        return self.params.B

    def _copies(self, probe: Any, q: Any) -> list[Any]:
        n = len(q.meta["candidates"])
        rng = _rng(self.params.seed, q.id, "shuffles")
        return [probe.requery(q, [int(i) for i in rng.permutation(n)], f"psc{b}")
                for b in range(self.params.B)]

    def plan(self, probe: Any, queries: Sequence[Any]) -> list[Any]:
        """Return the ``B`` shuffled copies of every query (seeded by the query's id)."""
        return [c for q in queries for c in self._copies(probe, q)]

    def rerank_answers(self, probe: Any, queries: Sequence[Any], answers: dict[str, Any]
                       ) -> dict[str, list[str] | None]:
        """Return each query's Borda aggregate of its copies' rankings (None: no ranking)."""
        from .aggregate import borda

        out: dict[str, list[str] | None] = {}
        for q in queries:
            rankings = [probe.ranking(c, answers.get(c.id)) for c in self._copies(probe, q)]
            rankings = [r for r in rankings if r]
            if not rankings:
                out[q.id] = None
                continue
            cands = list(q.meta["candidates"])
            order = _rng(self.params.seed, q.id, "ties").permutation(len(cands))
            out[q.id] = borda(rankings, universe=[cands[int(i)] for i in order])
        return out
