"""A tiny synthetic catalog with user histories for the profile and leakage probe tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recaudit.catalog import Catalog


def synthetic_catalog(n_users: int = 24, per_user: int = 14, holdout: int = 3,
                      seed: int = 7) -> Catalog:
    """Items "0".."39" ("Movie i (1990+i)") plus marker items "F" and "M"; ``n_users`` users
    with ``per_user`` distinct interactions each (ratings 1-5, increasing timestamps); the last
    ``holdout`` of each user are the test split."""
    ids = [str(i) for i in range(40)] + ["F", "M"]
    titles = [f"Movie {i} ({1990 + i % 30})" for i in range(40)] + [
        "Her Story (2001)", "His Story (2002)"]
    items = pd.DataFrame({"item_id": ids, "title": titles})
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        chosen = rng.choice(40, size=per_user, replace=False)
        for t, i in enumerate(chosen):
            rows.append({"user_id": f"u{u}", "item_id": str(i),
                         "rating": float(rng.integers(1, 6)), "timestamp": 1000 * u + t})
    return Catalog.from_dataframe(items, interactions=pd.DataFrame(rows), holdout=holdout,
                                  name="synthetic")
