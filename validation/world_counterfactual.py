"""The counterfactual world: lists move with every prompt; one value moves them more.

Null: each subject has a base list of ``K`` of ``N_ITEMS`` ids; every query (neutral, each value,
each control colour) replaces a share ``SWAP`` of it with other items, drawn afresh per query, so
Sim(value) has one distribution for every value (SNSR's null, and the control's). Planted: the
value ``PLANTED_VALUE`` replaces ``PLANTED_SWAP`` instead.
"""

from __future__ import annotations

import numpy as np

from recaudit.probes.base import Query
from recaudit.recommenders.base import Response

from .harness import World
from .lists import swapped_list

N_ITEMS, K, N_SUBJECTS = 60, 10, 24
SWAP, PLANTED_SWAP = 0.3, 0.6
VALUES = ["a female", "a male", "a nonbinary"]
PLANTED_VALUE = "a female"


def _swapped(query: Query, rng: np.random.Generator, share: float) -> Response:
    return Response(item_ids=swapped_list(query.key.unit, rng, share, K, N_ITEMS))


def null(query: Query, rng: np.random.Generator) -> Response:
    """Every query swaps the same share of its subject's list, whatever the value."""
    return _swapped(query, rng, SWAP)


def planted(query: Query, rng: np.random.Generator) -> Response:
    """Swap ``PLANTED_SWAP`` of the list for ``PLANTED_VALUE``, ``SWAP`` for the others."""
    return _swapped(query, rng, PLANTED_SWAP if query.key.value == PLANTED_VALUE else SWAP)


WORLD = World(
    name="counterfactual",
    probe="counterfactual",
    params={"k": K, "attributes": {"gender": VALUES},
            "similarities": ["jaccard", "serp_star", "serp_star_normalized", "prag_star", "rbo"],
            "n_examples": 0, "control": ["colour"],
            "subjects": {"source": "inline", "items": [f"Film {i}" for i in range(N_SUBJECTS)]}},
    null=null,
    planted=planted,
    effect=(f"{N_SUBJECTS} subjects; every prompt replaces {SWAP:.0%} of the subject's top-{K} "
            f"(binomial count); planted: '{PLANTED_VALUE}' replaces {PLANTED_SWAP:.0%}"),
)
