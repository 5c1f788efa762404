"""The position probe's worlds: an order-blind ranker, and one that favours the first candidate.

Catalog: :func:`~validation.catalogs_items.ranking_catalog` (80 items, 30 users with 7 training
items and 1 held-out item each). Per user the probe shows ``N`` candidates (the held-out item
and ``N - 1`` unseen items) at several input positions, and in ``n_shuffles`` shuffled copies.

Both rankers score each candidate as ``relevance(user, item) + noise``: ``relevance`` is a
fixed standard normal per (user, item), plus ``HELD_OUT_BONUS`` for the user's held-out item
(the ranker knows the user's taste), and ``noise`` is drawn afresh per request with standard
deviation ``NOISE`` (a sampled decoding). Null: that is all, so the ranking never depends on the
input order (NDCG/HR equal in distribution at every input position; each first place falls at a
uniformly random input position of a shuffled copy). Planted: the candidate shown first (input
position 0) gets ``PRIMACY`` more, a primacy bias that raises the held-out item's NDCG/HR when
it is shown first and puts first places at input position 0 more often.

``WORLD`` ranks by generating text (``1. Film 012`` lines, parsed by the probe's rule);
``SCORE_WORLD`` returns one score per candidate (the ``score`` capability).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from recaudit.probes.base import Query
from recaudit.recommenders.base import Response

from .catalogs_items import ranking_catalog
from .harness import World

N_CANDIDATES, K, N_USERS = 10, 3, 30
POSITIONS = [0, 3, 6, 9]
HELD_OUT_BONUS, NOISE, PRIMACY = 1.0, 0.5, 1.5


@lru_cache(maxsize=None)
def _relevance(user: str, item: str) -> float:
    """Return a fixed standard normal per (user, item)."""
    digest = hashlib.sha256(f"{user}\x1f{item}".encode()).digest()
    return float(np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal())


def _scores(query: Query, rng: np.random.Generator, primacy: float) -> np.ndarray:
    """One score per candidate, in input order."""
    user, held = str(query.meta["user_id"]), str(query.meta["held_out"])
    cands = [str(c) for c in query.meta["candidates"]]
    base = np.array([_relevance(user, c) + (HELD_OUT_BONUS if c == held else 0.0)
                     for c in cands])
    base[0] += primacy
    return base + NOISE * rng.standard_normal(len(cands))


def _respond(query: Query, rng: np.random.Generator, primacy: float) -> Response:
    scores = _scores(query, rng, primacy)
    if query.request.candidates is not None:  # score mode
        return Response(scores=scores.tolist())
    titles = query.meta["titles"]
    order = np.argsort(-scores, kind="stable")
    return Response(text="\n".join(f"{j + 1}. {titles[i]}" for j, i in enumerate(order)))


def null(query: Query, rng: np.random.Generator) -> Response:
    """Rank by relevance plus fresh noise, blind to the input order."""
    return _respond(query, rng, 0.0)


def planted(query: Query, rng: np.random.Generator) -> Response:
    """As the null, with ``PRIMACY`` added to the candidate shown first."""
    return _respond(query, rng, PRIMACY)


_PARAMS = {"n_users": N_USERS, "n_candidates": N_CANDIDATES, "positions": POSITIONS,
           "n_shuffles": 3, "history_items": 7, "k": K}
_EFFECT = (f"{N_USERS} users, {N_CANDIDATES} candidates, held-out item at input positions "
           f"{POSITIONS}, 3 shuffled copies; score = relevance N(0, 1) (+{HELD_OUT_BONUS} for "
           f"the held-out item) + noise N(0, {NOISE}^2); planted: +{PRIMACY} for the candidate "
           "at input position 0")

WORLD = World(name="position", probe="position", params={**_PARAMS, "mode": "generate"},
              null=null, planted=planted, effect=_EFFECT, catalog=ranking_catalog)

SCORE_WORLD = World(name="position-score", probe="position", params={**_PARAMS, "mode": "score"},
                    null=null, planted=planted, effect=_EFFECT, catalog=ranking_catalog,
                    capabilities=frozenset({"score"}))
