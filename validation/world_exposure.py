"""The exposure probe's world: group-blind lists, and lists that favour one item group.

Catalog: :func:`~validation.catalogs_items.group_catalog`, 60 items in groups A / B / C of the
column ``studio`` (30 / 18 / 12 items: catalog shares 50% / 30% / 20%, the desired shares under
``reference: catalog``). Null: every request's list is ``K`` distinct catalog items drawn
uniformly at random, whatever its group (a group-blind model: each group's expected share of
every top-k is its catalog share, skew@k 0; NDKL sits at the floor a group-blind model gives).
Planted: items of group ``PLANTED_GROUP`` are drawn with ``PLANTED_WEIGHT`` times the weight
of the others (successive draws without replacement), so C's expected share of a list rises from
20% to about 37% (skew@k about +0.6) and A's and B's fall.
"""

from __future__ import annotations

import numpy as np

from recaudit.probes.base import Query
from recaudit.recommenders.base import Response

from .catalogs_items import GROUP_COLUMN, group_catalog
from .harness import World

K, N_SUBJECTS = 10, 60
PLANTED_GROUP, PLANTED_WEIGHT = "C", 2.4


def _groups() -> np.ndarray:
    mapping = group_catalog().item_groups(GROUP_COLUMN)
    return np.array([mapping[str(i)] for i in range(len(mapping))])


def _draw(rng: np.random.Generator, weight: np.ndarray) -> Response:
    items = rng.choice(weight.size, size=K, replace=False, p=weight / weight.sum())
    return Response(item_ids=[str(i) for i in items])


def null(query: Query, rng: np.random.Generator) -> Response:
    """``K`` distinct items drawn uniformly from the catalog, blind to their groups."""
    return _draw(rng, np.ones(len(_GROUPS)))


def planted(query: Query, rng: np.random.Generator) -> Response:
    """As the null, with items of ``PLANTED_GROUP`` ``PLANTED_WEIGHT`` times as likely per draw."""
    return _draw(rng, np.where(_GROUPS == PLANTED_GROUP, PLANTED_WEIGHT, 1.0))


_GROUPS = _groups()

WORLD = World(
    name="exposure",
    probe="exposure",
    params={"k": K, "skew_ks": [5], "groups": [GROUP_COLUMN],
            "subjects": {"source": "inline", "items": [f"Film {i}" for i in range(N_SUBJECTS)]}},
    null=null,
    planted=planted,
    effect=(f"{N_SUBJECTS} requests, top-{K} of 60 items in groups of 50/30/20%; planted: group "
            f"'{PLANTED_GROUP}' (20% of the catalog) drawn with weight {PLANTED_WEIGHT} "
            f"(about 37% of each list, skew@{K} about +0.6)"),
    catalog=group_catalog,
    stats={"n_bootstrap": 1000},  # CIs at a Bonferroni level: the tails need the replicates
)
