"""The profile probe's world: lists that ignore the stated gender, and one value served worse.

Null: every query of a user (the neutral prompt and each stated value) is drawn afresh from the
same distribution: each of the user's held-out items enters the top ``K`` with probability
``HIT``, at a random position, and the other slots are the user's fixed base ranking with a
share ``SWAP`` of them replaced by other items. So NDCG, HR and the Jaccard overlap with the
neutral list have one distribution for every value (the gaps' null, and the GE / Theil
indices'). Planted: queries stating ``PLANTED_VALUE`` include each held-out item with
probability ``PLANTED_HIT`` and replace ``PLANTED_SWAP`` of the base slots instead.
"""

from __future__ import annotations

import numpy as np

from recaudit.probes.base import Query
from recaudit.recommenders.base import Response

from .catalogs import history_catalog
from .harness import World
from .lists import swap_in, unit_order

N_ITEMS, K, N_USERS, HISTORY = 60, 5, 24, 5
HIT, PLANTED_HIT = 0.5, 0.1
SWAP, PLANTED_SWAP = 0.3, 0.7
VALUES = ["a female", "a male"]
PLANTED_VALUE = "a female"


def _list(query: Query, rng: np.random.Generator, hit: float, swap: float) -> Response:
    held = [i for i in query.meta["held_out"] if rng.random() < hit][:K]
    order = [i for i in unit_order(query.meta["user_id"], N_ITEMS).astype(str)
             if i not in query.meta["held_out"]]
    base = swap_in(order[:K], order[K:], swap, rng)
    items = base[: K - len(held)]
    for item in held:
        items.insert(int(rng.integers(0, len(items) + 1)), item)
    return Response(item_ids=[str(i) for i in items])


def null(query: Query, rng: np.random.Generator) -> Response:
    """Every query hits each held-out item with ``HIT`` and swaps ``SWAP``, whatever the value."""
    return _list(query, rng, HIT, SWAP)


def planted(query: Query, rng: np.random.Generator) -> Response:
    """``PLANTED_VALUE`` queries hit with ``PLANTED_HIT`` and swap ``PLANTED_SWAP``."""
    if query.key.value == PLANTED_VALUE:
        return _list(query, rng, PLANTED_HIT, PLANTED_SWAP)
    return _list(query, rng, HIT, SWAP)


WORLD = World(
    name="profile",
    probe="profile",
    params={"n_users": N_USERS, "history_items": HISTORY, "k": K,
            "attributes": {"gender": VALUES}, "intersection": False, "n_examples": 0},
    null=null,
    planted=planted,
    effect=(f"{N_USERS} users, top-{K}; every prompt includes each held-out item with "
            f"probability {HIT:.0%} and replaces {SWAP:.0%} of the user's base list; planted: "
            f"'{PLANTED_VALUE}' includes each with {PLANTED_HIT:.0%} and replaces "
            f"{PLANTED_SWAP:.0%}"),
    catalog=history_catalog,
)
