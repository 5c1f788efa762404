"""User histories as the history-based probes show them.

Those probes are profile, popularity, position, and exposure and robustness with ``prompts:
profiles``. This module says which users, which of their training items, and how an item is
written in a prompt. One implementation, so two probes with the same settings sample the same
users and write byte-identical prompts (the engine computes them once).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

__all__ = ["display_title", "history_title", "history_ids", "select_history", "user_sort_key"]

_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")


def display_title(title: str, year: Any = None) -> str:
    """Return a history item as the prompt shows it: the natural title and the year.

    'Matrix, The (1999)' or ('Matrix, The', 1999) -> 'The Matrix (1999)'; without a year just
    the natural title.
    """
    from .subjects import natural_title

    found = _TITLE_YEAR.search(str(title))
    natural = natural_title(title)
    if found:
        return f"{natural} ({found.group(1)})"
    try:
        return f"{natural} ({int(year)})"
    except (TypeError, ValueError):
        return natural


def history_title(catalog: Any, item_id: str) -> str:
    """:func:`display_title` of a catalog item, with the catalog's year column when it has one."""
    year = None
    items = getattr(catalog, "items", None)
    if items is not None and "year" in getattr(items, "columns", ()):
        year = items.at[str(item_id), "year"]
    return display_title(catalog.title(item_id), year)


def history_ids(df: Any) -> list[str]:
    """Return the item ids of an interactions frame, in its row order."""
    if df is None or len(df) == 0:
        return []
    return [str(i) for i in df["item_id"].tolist()]


def select_history(df: Any, n: int, sampling: str, rng: np.random.Generator) -> list[str]:
    """Choose ``n`` training items of one user, as ``sampling`` says.

    ``random``: a random sample (shown in time order); ``top_rated``: the top-rated (highest
    first; ties: more recent first); ``recent``: the most recent (shown oldest first).
    """
    cols = set(df.columns)
    if sampling == "top_rated":
        if "rating" not in cols:
            raise ValueError("sampling 'top_rated' needs ratings in the interactions")
        keys = ["rating"] + (["timestamp"] if "timestamp" in cols else [])
        chosen = df.sort_values(keys, ascending=False, kind="stable").head(n)
        return history_ids(chosen)
    ordered = df.sort_values("timestamp", kind="stable") if "timestamp" in cols else df
    if sampling == "recent":
        return history_ids(ordered.tail(n))
    idx = np.sort(rng.choice(len(ordered), size=min(n, len(ordered)), replace=False))
    return history_ids(ordered.iloc[idx])


def user_sort_key(u: Any) -> tuple[int, Any]:
    """Users in numeric order where ids are numbers (2 before 10), then the others by name."""
    try:
        return (0, int(u))
    except (TypeError, ValueError):
        return (1, str(u))
