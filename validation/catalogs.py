"""Small synthetic catalogs with user histories for the validation worlds.

One builder, :func:`history_catalog`: items ``"0"``..``"N-1"`` titled ``"Item i (year)"``;
every user interacts with ``per_user`` distinct items drawn without replacement with
probability proportional to ``1 / (rank + 1) ** zipf`` (item ``"0"`` the most popular), so
the training popularity has a short head and a long tail; ratings are uniform on 1..5,
timestamps increase per user, and the last ``holdout`` interactions of each user are the
test (held-out) split. Seeded: the same arguments give the same catalog.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from recaudit.catalog import Catalog

__all__ = ["history_catalog"]


@lru_cache(maxsize=8)
def history_catalog(n_items: int = 60, n_users: int = 30, per_user: int = 12,
                    holdout: int = 3, zipf: float = 0.8, seed: int = 11) -> Catalog:
    """Build a catalog of ``n_items`` items and ``n_users`` users (module docstring).

    Cached: the worlds call it once per validation run, and a Catalog is read-only there.
    """
    ids = [str(i) for i in range(n_items)]
    titles = [f"Item {i} ({1970 + i % 50})" for i in range(n_items)]
    items = pd.DataFrame({"item_id": ids, "title": titles})
    weight = 1.0 / np.arange(1, n_items + 1) ** zipf
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        chosen = rng.choice(n_items, size=per_user, replace=False, p=weight / weight.sum())
        for t, i in enumerate(chosen):
            rows.append({"user_id": f"u{u}", "item_id": str(i),
                         "rating": float(rng.integers(1, 6)), "timestamp": 1000 * u + t})
    return Catalog.from_dataframe(items, interactions=pd.DataFrame(rows), holdout=holdout,
                                  name="validation")
