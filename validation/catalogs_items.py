"""Small synthetic catalogs for the exposure and position validation worlds.

* :func:`group_catalog`: items ``"0"``..``"N-1"`` in item groups of a column ``studio`` with
  stated catalog shares (the exposure probe's desired shares under ``reference: catalog``);
  no interactions (the exposure world's subjects are inline).
* :func:`ranking_catalog`: items titled ``"Film 000"``..``"Film N-1"`` (fixed width, so no shown
  title is a substring of another, as the position probe's candidate sampling requires) and
  ``n_users`` users with ``per_user`` distinct interactions each, drawn uniformly; the last
  ``holdout`` of each user are the test split (the held-out item). Seeded.

Both are cached: a world calls its builder once per validation run, and a Catalog is read-only
there; :class:`FrozenCatalog` (what :func:`ranking_catalog` returns) also caches each user's
history, which a probe's plan reads anew in every one of the hundreds of validation runs.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from recaudit.catalog import Catalog

__all__ = ["group_catalog", "ranking_catalog", "FrozenCatalog", "GROUP_COLUMN"]

#: the item-group column of :func:`group_catalog`
GROUP_COLUMN = "studio"


class FrozenCatalog(Catalog):
    """A :class:`~recaudit.catalog.Catalog` whose ``history`` answers are cached (read-only use)."""

    def history(self, user_id: str, split: str = "train") -> pd.DataFrame:
        """Return :meth:`Catalog.history`, computed once per (user, split)."""
        cache = self.__dict__.setdefault("_history_cache", {})
        key = (str(user_id), split)
        if key not in cache:
            cache[key] = super().history(user_id, split)
        return cache[key]


@lru_cache(maxsize=8)
def group_catalog(sizes: tuple[tuple[str, int], ...] = (("A", 30), ("B", 18), ("C", 12))
                  ) -> Catalog:
    """Build a catalog whose items fall in groups of ``GROUP_COLUMN`` of the given sizes.

    ``sizes`` is ``((group, number of items), ...)``; items are numbered in that order, so
    the catalog share of group ``g`` is its size over the total.
    """
    groups = [g for g, n in sizes for _ in range(n)]
    ids = [str(i) for i in range(len(groups))]
    items = pd.DataFrame({"item_id": ids, "title": [f"Item {i:03d} (2000)" for i in
                                                    range(len(ids))], GROUP_COLUMN: groups})
    return Catalog.from_dataframe(items, group_cols=[GROUP_COLUMN], name="validation-groups")


@lru_cache(maxsize=8)
def ranking_catalog(n_items: int = 80, n_users: int = 30, per_user: int = 8, holdout: int = 1,
                    seed: int = 5) -> Catalog:
    """Build ``n_items`` fixed-width titles and ``n_users`` users (module docstring)."""
    ids = [str(i) for i in range(n_items)]
    items = pd.DataFrame({"item_id": ids, "title": [f"Film {i:03d} (2000)" for i in
                                                    range(n_items)]})
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for t, i in enumerate(rng.choice(n_items, size=per_user, replace=False)):
            rows.append({"user_id": f"u{u}", "item_id": str(i),
                         "rating": float(rng.integers(1, 6)), "timestamp": 1000 * u + t})
    return FrozenCatalog.from_dataframe(items, interactions=pd.DataFrame(rows), holdout=holdout,
                                        name="validation-ranking")
