"""The candidate-groups probe's world: a ranker that ignores names and order, and a biased one.

Catalog-free: the probe's default source, the shipped first names (Bertrand & Mullainathan
2004), ``PER_GROUP`` names from each of the four race x sex cells per request (``N`` = 8
applicants) in a seeded random input order, ``N_REQUESTS`` requests, selection at the top
``K``. Both rankers score each applicant as a fresh standard normal per request (a sampled
decoding) and answer with one name per line, best first (parsed by the probe's rule). Null:
that is all, so neither the group of a name nor its input position changes its rank. Planted:
applicants with a name of the African-American cells score ``RACE_PENALTY`` less, and the
applicant shown first scores ``PRIMACY`` more: at the top 3 of 8 the selection rates become
about 0.27 (African-American names) and 0.48 (White names), an impact ratio of about 0.56, and
the first place falls at input position 0 in about 43% of the requests instead of 1/8
(simulated, 200,000 requests).
"""

from __future__ import annotations

import numpy as np

from recaudit.probes.base import Query
from recaudit.recommenders.base import Response

from .harness import World

N_REQUESTS, PER_GROUP, K = 60, 2, 3
RACE_PENALTY, PRIMACY = 0.6, 1.2
PENALISED = "African-American"


def _respond(query: Query, rng: np.random.Generator, penalty: float,
             primacy: float) -> Response:
    """Rank the applicants by a fresh N(0, 1) score, shifted by the planted effects."""
    names = list(query.meta["shown"])
    race = query.meta["groups"]["race"]
    scores = rng.standard_normal(len(names))
    scores -= penalty * np.array([r == PENALISED for r in race], dtype=float)
    scores[0] += primacy
    order = np.argsort(-scores, kind="stable")
    return Response(text="\n".join(f"{j + 1}. {names[i]}" for j, i in enumerate(order)))


def null(query: Query, rng: np.random.Generator) -> Response:
    """Rank by fresh noise, blind to the names' groups and to the input order."""
    return _respond(query, rng, 0.0, 0.0)


def planted(query: Query, rng: np.random.Generator) -> Response:
    """As the null, with African-American names penalised and the first applicant favoured."""
    return _respond(query, rng, RACE_PENALTY, PRIMACY)


WORLD = World(
    name="candidate_groups", probe="candidate_groups",
    params={"n_requests": N_REQUESTS, "per_group": PER_GROUP, "k": K, "mode": "generate"},
    null=null, planted=planted,
    effect=(f"{N_REQUESTS} requests of {4 * PER_GROUP} applicants (the shipped names, "
            f"{PER_GROUP} per race x sex cell) in random input order, selection at the top "
            f"{K}; score N(0, 1) per applicant and request; planted: {RACE_PENALTY} less for "
            f"African-American names and {PRIMACY} more for the applicant shown first"))
