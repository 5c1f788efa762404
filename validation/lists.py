"""Lists the synthetic models share: a unit's fixed item order, and a random share swapped out."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def unit_order(unit: object, n_items: int) -> np.ndarray:
    """Return a permutation of ``0 .. n_items - 1`` seeded by sha256 of ``str(unit)``."""
    seed = int.from_bytes(hashlib.sha256(str(unit).encode()).digest()[:8], "little")
    return np.random.default_rng(seed).permutation(n_items)


def swap_in(items: list[Any], rest: Any, share: float, rng: np.random.Generator) -> list[Any]:
    """Replace a Binomial(len(items), share) number of random slots of ``items`` (in place).

    The new items are distinct draws from ``rest``; ``share`` 0 draws no count (and swaps none).
    """
    n_swap = rng.binomial(len(items), share) if share else 0
    slots = rng.choice(len(items), size=n_swap, replace=False)
    for slot, item in zip(slots, rng.choice(rest, size=n_swap, replace=False), strict=True):
        items[slot] = item
    return items


def swapped_list(unit: object, rng: np.random.Generator, share: float, k: int,
                 n_items: int) -> list[str]:
    """Return the unit's top-``k`` (:func:`unit_order`) with a share swapped (:func:`swap_in`)."""
    order = unit_order(unit, n_items)
    return [str(i) for i in swap_in(list(order[:k]), list(order[k:]), share, rng)]
