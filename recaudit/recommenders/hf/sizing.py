"""Batch size from the hardware, and whether the CPU computes bf16 natively.

``batch_size`` unset: chosen from the usable cores and the available memory
(:func:`auto_batch_size`), recorded in :meth:`HFRecommender.batch_invariance`; with tiles it
never changes an output. ``dtype: bfloat16`` (opt-in) runs bf16 weights: other numerics, so the
dtype is in the fingerprint; the tile self-check runs on the bf16 weights.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

__all__ = ["auto_batch_size", "cpu_has_native_bf16"]

# auto batch size: decode rows per core (at most _CPU_ROWS_CAP), and the share of free memory
# the batch may take. 32 per core: on 2 cores (AMD EPYC, AVX2) SmolLM2-135M generated 64 prompts
# x 48 tokens at 161 tok/s with 32 rows and 169 with 64 (oneDNN decode heights, lean decode
# step); with 16-row tiles, before those, 16 per core had been best (74 tok/s at 16 rows, 100-108
# at 32, 86-88 at 48 or 64)
_ROWS_PER_CORE = 32
_CPU_ROWS_CAP = 128
_MEMORY_SHARE = 0.25
# auto batch size on a GPU: decode rows wanted before the memory cap (a GPU's matmul costs about
# the same for 16 rows as for 64; the row-wise attention's calls grow with the rows)
_GPU_ROWS = 64


def cpu_has_native_bf16() -> bool:
    """Return True when the CPU computes bf16 natively (AVX512-BF16 or AMX).

    Read from torch's CPU capability (``AVX512_BF16`` / ``AMX``) or the /proc/cpuinfo flags.
    """
    import torch

    cap = str(torch.backends.cpu.get_cpu_capability()).upper()
    if "BF16" in cap or "AMX" in cap:
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _free_memory_bytes() -> int | None:
    """Available memory (``os.sysconf`` on Linux, else psutil when installed); None: unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - psutil missing or failing: no memory bound
        return None


def _free_gpu_memory_bytes() -> int | None:
    """Free memory of the current CUDA device (``torch.cuda.mem_get_info``); None: unknown."""
    try:
        import torch

        return int(torch.cuda.mem_get_info()[0])
    except Exception:  # noqa: BLE001 - no figure: no memory bound
        return None


def auto_batch_size(model: Any, decode_rows: int | None, max_new_tokens: int,
                    device: str = "cpu") -> tuple[int, str]:
    """Rows decoded together when the user set none, and why.

    Compute: on a CPU ``_ROWS_PER_CORE`` rows per usable core (at most ``_CPU_ROWS_CAP``), on a
    GPU ``_GPU_ROWS``, rounded up to whole decode tiles (a partly filled tile costs a full one).
    Memory: at most ``_MEMORY_SHARE`` of the available memory (the GPU's free memory on a GPU)
    for the rows'
    KV cache (2 x layers x kv heads x head dim x bytes, over 1024 prompt tokens +
    ``max_new_tokens``) and fp32 logits. With fixed-shape tiles the choice never changes an
    output (the fingerprint does not record it).
    """
    cfg = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") \
        else model.config
    cores = _usable_cores()
    tile = decode_rows or 1
    base = _GPU_ROWS if device == "cuda" else min(_ROWS_PER_CORE * cores, _CPU_ROWS_CAP)
    want = -(-base // tile) * tile
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "num_layers", 1) or 1
    heads = getattr(cfg, "num_attention_heads", 1) or 1
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or (getattr(cfg, "hidden_size", 64) // heads)
    elem = next(model.parameters()).element_size()
    per_row = (2 * layers * kv_heads * head_dim * elem * (1024 + max(0, max_new_tokens))
               + 4 * getattr(cfg, "vocab_size", 0))
    free = _free_gpu_memory_bytes() if device == "cuda" else _free_memory_bytes()
    rows = want
    if free is not None and per_row > 0:
        rows = max(1, min(want, int(free * _MEMORY_SHARE // per_row)))
    # the reason is recorded in results.json: no free-memory figure (it differs run to run)
    capped = ", capped by free memory" if rows < want else ""
    if device == "cuda":
        return rows, f"auto: cuda, {_GPU_ROWS} rows wanted{capped}"
    return rows, f"auto: {cores} cores{capped}"
