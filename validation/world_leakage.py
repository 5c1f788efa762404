"""The leakage probe's world: lists that move with every prompt, and one value that leaves a trace.

Null: each subject has a base list of ``K`` of ``N_ITEMS`` ids; every query (each stated value)
replaces a share ``SWAP`` of it with other items, drawn afresh per query, so a list says
nothing about the stated value (AUC 0.5 in expectation; its floor is the refitted
permutations' mean). Planted: a query stating ``PLANTED_VALUE`` also puts the marker item
``MARKER`` (an id no base list holds) in a random slot with probability ``MARK``, so the best
possible classifier reaches AUC ``0.5 + MARK / 2``.

Two folds and 39 refitted permutations keep a run short (every permutation refits the whole
cross-validation); 39 is the fewest refits from which the CI's permutation end
(:func:`recaudit.probes.leakage.refit_widened`) holds its 2.5% per side.
"""

from __future__ import annotations

import numpy as np

from recaudit.probes.base import Query
from recaudit.recommenders.base import Response

from .harness import World
from .lists import swapped_list

N_ITEMS, K, N_SUBJECTS = 60, 10, 24
SWAP, MARK = 0.3, 0.8
VALUES = ["a female", "a male"]
PLANTED_VALUE = "a female"
MARKER = "marker"


def _swapped(query: Query, rng: np.random.Generator) -> list[str]:
    return swapped_list(query.key.unit, rng, SWAP, K, N_ITEMS)


def null(query: Query, rng: np.random.Generator) -> Response:
    """Every query swaps the same share of its subject's list, whatever the value."""
    return Response(item_ids=_swapped(query, rng))


def planted(query: Query, rng: np.random.Generator) -> Response:
    """As ``null``; ``PLANTED_VALUE`` queries also carry ``MARKER`` with probability ``MARK``."""
    items = _swapped(query, rng)
    if query.key.value == PLANTED_VALUE and rng.random() < MARK:
        items[int(rng.integers(K))] = MARKER
    return Response(item_ids=items)


WORLD = World(
    name="leakage",
    probe="leakage",
    params={"k": K, "attributes": {"gender": VALUES}, "n_folds": 2, "n_permutations": 39,
            "n_examples": 0,
            "subjects": {"source": "inline", "items": [f"Film {i}" for i in range(N_SUBJECTS)]}},
    null=null,
    planted=planted,
    effect=(f"{N_SUBJECTS} subjects; every prompt replaces {SWAP:.0%} of the subject's top-{K} "
            f"(binomial count); planted: '{PLANTED_VALUE}' lists carry a marker item with "
            f"probability {MARK:.0%} (best AUC {0.5 + MARK / 2:.2f})"),
)
