"""The popularity probe's world: lists blind to popularity, and lists that favour the top items.

Null (popularity-blind): every query (original, niche and blockbuster history alike) is ``K``
distinct items drawn uniformly from the whole catalog, afresh per query. So head and tail items
are recommended at the same rate (PopRSP's floor), held-out head and tail items are hit at the
same rate (PopREO's), and the lists do not depend on the history shown (the ARP, APLT and
Jaccard gaps' null); the lists are less popular than the interaction-weighted histories (a
uniform item has mean popularity sum(pop)/N, a history item sum(pop^2)/sum(pop)), so the
popularity lift stays below 0.

Planted: each slot is, with probability ``PUSH``, drawn uniformly from the ``TOP`` most popular
items instead (from the long tail when the niche history is shown: the lists follow the
history's popularity).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from recaudit.probes.base import Query
from recaudit.recommenders.base import Response

from .catalogs import history_catalog
from .harness import World

K, N_USERS, HISTORY, HEAD_SHARE, HOLDOUT = 10, 30, 5, 0.8, 5
PUSH, TOP = 0.8, 6


def catalog() -> object:
    """Return :func:`history_catalog` with ``HOLDOUT`` held-out items per user."""
    return history_catalog(per_user=HISTORY + 4 + HOLDOUT, holdout=HOLDOUT)


@lru_cache(maxsize=1)
def _pools() -> tuple[list[str], list[str], list[str]]:
    """Return the catalog's items, its ``TOP`` most popular and its long tail (the probe's)."""
    cat = catalog()
    pop = cat.train_popularity()
    _head, tail = cat.head_tail(HEAD_SHARE)
    items = [str(i) for i in pop.index]
    top = [str(i) for i in pop.sort_values(ascending=False, kind="stable").index[:TOP]]
    return items, top, sorted(tail)


def _list(query: Query, rng: np.random.Generator, push: float) -> Response:
    items, top, tail = _pools()
    pushed = tail if query.meta["condition"] == "niche" else top
    chosen: list[str] = []
    while len(chosen) < K:
        pool = pushed if rng.random() < push else items
        item = pool[int(rng.integers(len(pool)))]
        if item not in chosen:
            chosen.append(item)
    return Response(item_ids=chosen)


def null(query: Query, rng: np.random.Generator) -> Response:
    """``K`` distinct items uniform over the catalog, whatever the history."""
    return _list(query, rng, 0.0)


def planted(query: Query, rng: np.random.Generator) -> Response:
    """Each slot from the ``TOP`` items (the tail for a niche history) with ``PUSH``."""
    return _list(query, rng, PUSH)


WORLD = World(
    name="popularity",
    probe="popularity",
    params={"n_users": N_USERS, "history_items": HISTORY, "k": K, "head_share": HEAD_SHARE,
            "n_examples": 0},
    null=null,
    planted=planted,
    effect=(f"{N_USERS} users, top-{K}; null: {K} distinct items uniform over the catalog; "
            f"planted: each slot drawn from the {TOP} most popular items with probability "
            f"{PUSH:.0%} (from the long tail when the niche history is shown)"),
    catalog=catalog,
)
