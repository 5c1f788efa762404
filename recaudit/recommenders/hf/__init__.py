"""Hugging Face adapter: a local checkpoint directory (or an offline hub id), run by transformers.

Capabilities: ``generate`` (free-text recommendation lists) and ``score`` (sum of candidate
log-probabilities given the prompt).

One module per job:

* :mod:`.invariance` -- fixed-shape tiles, row-wise attention and the load-time self-check that
  make batched outputs bit-identical to one at a time;
* :mod:`.heights` -- decode matmuls at row counts verified equal at load (panel kernel or oneDNN);
* :mod:`.decode_attention` -- a decode step's attention in key blocks, checked per block;
* :mod:`.fast_decode` -- the lean decode step of Llama-family models, checked against the
  forward at load;
* :mod:`.shared_head` -- the chat template's opening, prefilled once and shared;
* :mod:`.kv` -- KV-cache row helpers (pad, trim, join, select);
* :mod:`.sizing` -- the batch size from the hardware, native bf16;
* :mod:`.device` -- ``device: auto|cpu|cuda`` and the dtype it defaults to;
* :mod:`.early_stop` -- stop a row once its list of ``k`` entries is complete;
* :mod:`.files` -- checkpoint files: weights policy (safetensors, pickle consent), PEFT adapters;
* :mod:`.generation`, :mod:`.scoring` -- the two halves of the adapter's model calls;
* :mod:`.adapter` -- :class:`HFRecommender` itself: load, fingerprint, tokenize.
"""

from __future__ import annotations

from .adapter import ADAPTER_VERSION, DTYPES, HFRecommender
from .device import DEVICES, default_dtype, resolve_device
from .early_stop import EARLY_STOP_RULE, list_is_complete
from .invariance import (BATCHING_MODES, DECODE_ROW_CHOICES, PREFILL_ROW_CHOICES, BatchInvariance,
                         choose_tile_rows, tile_seconds)
from .sizing import auto_batch_size, cpu_has_native_bf16

__all__ = ["ADAPTER_VERSION", "BATCHING_MODES", "DECODE_ROW_CHOICES", "DEVICES", "DTYPES",
           "EARLY_STOP_RULE", "default_dtype", "resolve_device",
           "PREFILL_ROW_CHOICES", "BatchInvariance", "HFRecommender", "auto_batch_size",
           "choose_tile_rows", "cpu_has_native_bf16", "list_is_complete", "tile_seconds"]
