"""Hugging Face adapter: a local checkpoint directory (or an offline hub id), run by transformers.

Capabilities: ``generate`` (free-text recommendation lists) and ``score`` (sum of candidate
log-probabilities given the prompt).

Batch invariance
----------------
The engine caches responses per request, so a request's output must not depend on which other
requests shared its batch: if a neutral prompt and its counterfactual meet different companions,
a near-tie flip in greedy decoding would be measured as bias. Plain batched generation on CPU does
not give that. BLAS picks different kernels (different summation orders) for matmuls of different
row counts (on an AVX-512 Xeon with MKL, a row's result differs between *every* pair of row
counts), and a left-padded attention row reduces over more (masked) positions than the same
prompt alone.

What BLAS libraries do keep is this: for one fixed row count M, a row's result does not depend on
the other M-1 rows nor on its position among them. So the adapter runs *fixed-shape execution*:

* every ``nn.Linear`` cuts its input into tiles of exactly M rows (zero-padding the last tile):
  M_p rows while a prompt is prefilled (or an encoder runs), M_d rows per decode step, whatever
  the batch. One-at-a-time generation makes the very same calls;
* attention runs row by row on the row's unpadded keys (a registered ``AttentionInterface``
  function), so each row makes exactly the call it would make alone;
* everything else (norms, rotary, activations, argmax) is row-wise already.

At load, each candidate M is checked on the model's own weights for exactly that property (the
same row alone, beside random companions, last in a zero-padded tile: bitwise equal), and M_p /
M_d are the first passing values in an order of measured speed (:func:`choose_tile_rows`); both
are part of the fingerprint.
Batched and one-at-a-time generation are then bit-identical, not just close. Sampling
(temperature > 0) uses one ``torch.Generator`` per prompt, seeded from ``decoding.seed`` and the
prompt's token ids, so it is reproducible and batch-invariant too.

Where invariance cannot be established (attention with sliding windows or chunks, a model that
does not use the attention interface, a BLAS on which no M passes) exactness wins over speed:
generation runs one request at a time, and :meth:`HFRecommender.batch_invariance` says
"no (reason)" for the plan line, the provenance and the report. ``batching="plain"``
(``model_options: {batching: plain}``) opts into plain batching instead, and is reported as such.

Continuous batching and batched scoring
---------------------------------------
Causal models in ``"tiles"`` mode decode at most ``batch_size`` rows at a time and refill the
slots of finished rows with the next waiting prompts (prefilled together on the prefill tiles,
then merged into the running KV cache with more left padding, which the row-wise attention never
reads); outputs are bit-identical to static batches and to one at a time
(``continuous_batching: false`` runs static batches). Candidate scoring prefills the prompts of
several requests together and runs the candidates of all of them in shared passes, each row
continuing its own prompt's KV rows; a request's scores do not depend on its companions. Measured
on SmolLM2 (benchmarks/bench_inference.py ``run``, 1 thread, loaded 2-core Xeon): continuous /
static 1.17x at batch 4 and 1.03x at batch 16 (rows ending at different steps; the per-row
attention calls and the newcomers' prefill tiles stay), batched / per-request scoring 0.94-1.02x
(the same matmul rows; the tiles only pad them), bf16 / fp32 1.74x (AVX512-BF16).

Batch size and dtype
--------------------
``batch_size`` unset: chosen from the usable cores and the available memory
(:func:`auto_batch_size`), recorded in :meth:`HFRecommender.batch_invariance`; with tiles it
never changes an output. ``dtype: bfloat16`` (opt-in) runs bf16 weights: other numerics, so the
dtype is in the fingerprint; the tile self-check runs on the bf16 weights.

Early stop
----------
A generation request asks for ``k`` items (:attr:`Request.k`), and small models often go on
after the k-th one (commentary, repeats) until ``max_new_tokens``. With ``early_stop`` (opt-in:
``model_options: {early_stop: true}``) each row of a batch stops as soon
as its list is complete: whenever the row's newest token holds a newline, the row's text up to
its last newline is parsed with the project's own list parser (:mod:`recaudit.grounding`), and
the row stops when that gives at least ``k`` entries of a numbered or bulleted list (the format
that appending more lines leaves alone: the first ``k`` entries of the full text are those of
the cut text). A stopped row leaves the batch exactly as a row that emitted EOS does. The
decision reads nothing but the row's own tokens, and the fixed-shape tiles and row-wise
attention keep the remaining rows' numerics independent of which rows are still there, so
batched generation stays bit-identical to one at a time. The returned text is cut where the row
stopped: a prefix of what the full generation writes (greedy decoding only truncates).
Scoring never stops early. Early stop changes the raw text, so it is part of the fingerprint
(off, the default, keeps the fingerprint and the cached answers of the full generation). It is
opt-in because the probes take the first ``k`` *grounded* items: with the full text, entries
after the k-th fill the places of duplicates and titles the catalog lacks; a cut list can hold
fewer than ``k`` grounded items. Measured on SmolLM2 (benchmarks/bench_inference.py): 77% of
the tokens, 1.19x faster, because a batch still waits for its longest row.

PEFT / LoRA adapters
--------------------
A directory with ``adapter_config.json`` (``save_pretrained`` of a ``peft`` model, as TALLRec-style
fine-tunes ship) is an adapter: its base model is loaded from the local directory named by
``model_options: {base: PATH}`` or else by the config's ``base_model_name_or_path`` (never from a
hub), the adapter is applied with ``peft.PeftModel.from_pretrained`` and then merged into the base
weights with ``merge_and_unload()``. Merging leaves plain ``nn.Linear`` layers, so the fixed-shape
tiles above (and their load-time self-check) cover the adapted model exactly as they cover any
checkpoint; an unmerged ``lora.Linear`` would add extra matmuls (``lora_A``, ``lora_B``) beside
its base layer. Adapter weights follow the same policy as model weights: safetensors, pickle
(``adapter_model.bin``) only with ``allow_pickle``. The fingerprint and ``weights_sha256`` cover
both the base and the adapter weights (and the adapter config, whose ``lora_alpha`` scales them).
"""

from __future__ import annotations

import contextvars
import copy
import hashlib
import json
import os
import re
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

from recaudit.errors import ModelRuntimeError, ModelSpecError, first_line
from recaudit.grounding import _parse as _parse_list_format
from recaudit.paths import cached_sha256
from recaudit.recommenders.base import (
    GENERATE,
    SCORE,
    Decoding,
    Recommender,
    Request,
    Response,
)

__all__ = ["HFRecommender", "ADAPTER_VERSION"]

ADAPTER_VERSION = "hf-1"

PICKLE_SUFFIXES = (".bin", ".pt", ".pkl", ".pth")
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json",
                   "spiece.model")
# adapter_config.json keys that name or describe the files rather than change the numerics
_ADAPTER_CONFIG_INERT = ("base_model_name_or_path", "revision", "inference_mode", "peft_version",
                         "auto_mapping")
_EXACT_ATTN = "recaudit_rowwise"
# Tile heights in order of preference (fastest first, as measured by the inference benchmark).
PREFILL_ROW_CHOICES = (256, 128, 64, 32, 16)
DECODE_ROW_CHOICES = (16, 32, 8, 4, 2, 1)
BATCHING_MODES = ("auto", "plain")
DTYPES = ("float32", "bfloat16")
# auto batch size: decode rows per core, and the share of free memory the batch may take
_ROWS_PER_CORE = 8
_MEMORY_SHARE = 0.25
_CROSS_ATTN_NAMES = {"encoder_attn", "EncDecAttention", "crossattention", "cross_attn",
                     "cross_attention"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SCORE_CHUNK = 32  # candidates per forward pass when scoring
# Fingerprint tag of the early-stop rule: bump it when the rule (or the parser's counting of
# numbered / bulleted entries) changes where a row stops.
EARLY_STOP_RULE = "k-list-entries-v1"


# --------------------------------------------------------------------------- batch invariance
@dataclass
class _RowLayout:
    """Which positions of each batch row are real, for the row-wise attention function.

    ``left_pad``: per row, left padding of the (causal) decoder self-attention keys.
    ``right_pad``: per row, right padding of the queries (and of the newest keys) of a causal
    pass that continues a cached prefix (batched candidate scoring); None: no right padding.
    ``enc_len``: per row, length of the right-padded encoder input (encoder self-attention and
    cross-attention). ``in_encoder`` is True while the encoder stack runs.
    """

    left_pad: list[int] | None = None
    right_pad: list[int] | None = None
    enc_len: list[int] | None = None
    in_encoder: bool = False


@dataclass(frozen=True)
class BatchInvariance:
    """How this adapter batches, and whether a request's output is independent of its batch.

    ``mode``: ``"tiles"`` (fixed-shape tiles verified at load: batch-invariant), ``"sequential"``
    (invariance could not be established: one request at a time) or ``"plain"`` (the user opted
    into plain batching with ``batching: plain``: no tiles, no row-wise attention, not
    batch-invariant). ``prefill_rows`` /
    ``decode_rows`` are the tile heights M_p / M_d in ``"tiles"`` mode.
    """

    mode: str
    reason: str = ""
    prefill_rows: int | None = None
    decode_rows: int | None = None

    @property
    def exact(self) -> bool:
        """True when no request's output can depend on the other requests of its batch."""
        return self.mode in ("tiles", "sequential")

    def numerics(self) -> str:
        """The fingerprint's numerics tag: outputs differ between tags, never within one."""
        if self.mode == "tiles":
            return f"tiles-p{self.prefill_rows}-d{self.decode_rows}"
        return self.mode

    def describe(self) -> str:
        """One line for the plan, the provenance and the report."""
        if self.mode == "tiles":
            return (f"yes (fixed-shape tiles: prefill {self.prefill_rows} rows, decode "
                    f"{self.decode_rows} rows, verified on this model's weights at load)")
        if self.mode == "sequential":
            return (f"no ({self.reason}); requests run one at a time, so no output depends on "
                    "its batch")
        return (f"no ({self.reason}); plain batching: an output may depend on the other "
                "requests of its batch")


_LAYOUT: contextvars.ContextVar[_RowLayout | None] = contextvars.ContextVar(
    "recaudit_row_layout", default=None)
# Rows of every linear-layer matmul while a generation/scoring phase runs (None: plain F.linear).
_TILE_ROWS: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "recaudit_tile_rows", default=None)
_REGISTERED = False


def _rowwise_attention(module, query, key, value, attention_mask, **kwargs):
    """Attention computed row by row on each row's unpadded keys (see module docstring).

    Outside a generation loop of this adapter (no layout set) it is plain SDPA with the mask.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    layout = _LAYOUT.get()
    if layout is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    bias = kwargs.pop("position_bias", None)
    n_rows, _, q_len, _ = query.shape
    kv_len = key.shape[2]
    cross = getattr(module, "_recaudit_cross", False)
    out = query.new_zeros(n_rows, q_len, query.shape[1], value.shape[-1])
    for b in range(n_rows):
        if cross:
            k_lo, k_hi, q_lo, q_hi = 0, layout.enc_len[b], 0, q_len
        elif layout.in_encoder:
            n = layout.enc_len[b]
            k_lo, k_hi, q_lo, q_hi = 0, n, 0, n
        else:
            pad = layout.left_pad[b] if layout.left_pad is not None else 0
            right = layout.right_pad[b] if layout.right_pad is not None else 0
            k_lo, k_hi = pad, kv_len - right
            q_hi = q_len - right
            q_lo = q_hi - min(q_hi, k_hi - k_lo)
        qb = query[b:b + 1, :, q_lo:q_hi].contiguous()
        kb = key[b:b + 1, :, k_lo:k_hi].contiguous()
        vb = value[b:b + 1, :, k_lo:k_hi].contiguous()
        mask = None
        n_q, n_k = q_hi - q_lo, k_hi - k_lo
        if not cross and not layout.in_encoder and 1 < n_q < n_k:
            # queries continuing a cached prefix: causal, aligned to the last key (SDPA's own
            # is_causal is aligned to the first key)
            mask = torch.ones(n_q, n_k, dtype=torch.bool).tril(diagonal=n_k - n_q)
        extra = dict(kwargs)
        if bias is not None:
            rb = b if bias.shape[0] > 1 else 0
            extra["position_bias"] = bias[rb:rb + 1, :, q_lo:q_hi, k_lo:k_hi].contiguous()
        ob, _ = sdpa_attention_forward(module, qb, kb, vb, mask, **extra)
        out[b, q_lo:q_hi] = ob[0]
    return out, None


def _register_attention() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(_EXACT_ATTN, _rowwise_attention)
    AttentionMaskInterface.register(_EXACT_ATTN, sdpa_mask)
    _REGISTERED = True


def _tiled_linear_forward(self, x):
    """``nn.Linear.forward`` on fixed-shape tiles while a tile height is set (``_TILE_ROWS``).

    The input's rows are cut into tiles of exactly ``rows`` rows, the last one zero-padded, and
    each tile is copied into a fresh buffer before the matmul. So every matmul this layer makes
    has the shape (rows, in_features) whatever the batch, and a row's result depends only on the
    row itself (checked by :func:`_tile_rows_are_invariant`).
    """
    import torch.nn.functional as F

    rows = _TILE_ROWS.get()
    if rows is None:
        return F.linear(x, self.weight, self.bias)
    k = x.shape[-1]
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    out = x2.new_empty(m, self.out_features)
    for start in range(0, m, rows):
        n = min(rows, m - start)
        tile = x2.new_zeros(rows, k)
        tile[:n] = x2[start:start + n]
        out[start:start + n] = F.linear(tile, self.weight, self.bias)[:n]
    return out.reshape(*lead, self.out_features)


def _tile_rows_are_invariant(lin: Any, rows: int, gen: Any) -> bool:
    """Does a row's result under ``rows``-row tiles depend on anything but the row?

    Exactly the property the tiled forward relies on, checked on this layer's own weights: the
    same probe row is run alone, in a second tile beside random companions, and last in a tile of
    zero padding; the three results must be bitwise equal.
    """
    import torch

    k = lin.in_features
    probe = torch.randn(1, k, generator=gen, dtype=lin.weight.dtype)
    layouts = [(probe, 0)]
    crowd = torch.randn(rows + 3, k, generator=gen, dtype=lin.weight.dtype)
    crowd[rows + 1] = probe[0]
    layouts.append((crowd, rows + 1))
    pad = torch.zeros(rows, k, dtype=lin.weight.dtype)
    pad[rows - 1] = probe[0]
    layouts.append((pad, rows - 1))
    token = _TILE_ROWS.set(rows)
    try:
        outs = [_tiled_linear_forward(lin, x)[pos] for x, pos in layouts]
    finally:
        _TILE_ROWS.reset(token)
    return all(torch.equal(outs[0], o) for o in outs[1:])


def tile_seconds(layers: list[tuple[Any, int]], rows: int, reps: int = 2) -> float:
    """Time of one ``rows``-row tile through the model's linear layers: for each distinct shape
    (layer, multiplicity) the best of ``reps`` timed calls after a warm-up, times its count."""
    import time

    import torch
    import torch.nn.functional as F

    total = 0.0
    for lin, count in layers:
        x = torch.randn(rows, lin.in_features, dtype=lin.weight.dtype)
        F.linear(x, lin.weight, lin.bias)
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            F.linear(x, lin.weight, lin.bias)
            best = min(best, time.perf_counter() - t0)
        total += count * best
    return total


def choose_tile_rows(linears: list[Any], prefill_rows: int | None = None,
                     decode_rows: int | None = None) -> tuple[int | None, int | None]:
    """Tile heights (M_p, M_d) for prefill and decode, among those this BLAS keeps invariant.

    Every candidate is self-checked on each distinct layer shape; the first that passes in a
    fixed order of preference wins (:data:`PREFILL_ROW_CHOICES`, :data:`DECODE_ROW_CHOICES`).
    The order is the speed ranking measured by ``benchmarks/bench_inference.py`` (cost
    ``ceil(R / M) * t(M)`` of a reference workload: decode 16 rows a step, prefill 16 prompts of
    64 tokens): a decode tile the size of a full batch, the largest prefill tile. It is fixed,
    not timed at load, so every load of a model on a machine gets the same numerics and the
    same fingerprint (timing under load picked different values, and invalidated the cache).
    The choice never depends on the batch size. ``prefill_rows`` / ``decode_rows`` force a value
    (still checked). ``None`` where nothing passes.
    """
    import torch

    by_shape: dict[tuple[int, int, bool], Any] = {}
    for lin in linears:
        by_shape.setdefault((lin.in_features, lin.out_features, lin.bias is not None), lin)
    if not by_shape:
        return None, None
    gen = torch.Generator().manual_seed(0)

    def passes(rows: int) -> bool:
        return all(_tile_rows_are_invariant(lin, rows, gen) for lin in by_shape.values())

    chosen: list[int | None] = []
    for forced, choices in ((prefill_rows, PREFILL_ROW_CHOICES),
                            (decode_rows, DECODE_ROW_CHOICES)):
        if forced is not None:
            chosen.append(int(forced) if passes(int(forced)) else None)
        else:
            chosen.append(next((m for m in choices if passes(m)), None))
    return chosen[0], chosen[1]


def _attention_is_padding_only(config: Any) -> bool:
    """True when the model's attention masks are only causal/padding (no sliding windows)."""
    cfgs = [config]
    for name in getattr(config, "sub_configs", {}) or {}:
        sub = getattr(config, name, None)
        if sub is not None:
            cfgs.append(sub)
    for cfg in cfgs:
        types_ = getattr(cfg, "layer_types", None)
        if types_ and any(t != "full_attention" for t in types_):
            return False
        if getattr(cfg, "sliding_window", None) is not None and getattr(
                cfg, "use_sliding_window", True):
            return False
        if getattr(cfg, "attention_chunk_size", None) is not None:
            return False
    return True


# --------------------------------------------------------------------------- KV cache rows
def _kv_layers(cache: Any) -> list[Any]:
    """The cache's per-layer ``keys`` / ``values`` holders ([rows, heads, positions, dim])."""
    layers = getattr(cache, "layers", None)
    if not layers or not all(hasattr(layer, "keys") and hasattr(layer, "values")
                             for layer in layers):
        raise ModelRuntimeError("the model's KV cache does not expose per-layer keys/values")
    return layers


def _kv_left_pad(cache: Any, extra: int) -> None:
    """Prepend ``extra`` zero positions to every row (rows then carry that much more left pad,
    which the row-wise attention never reads)."""
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

    for mine, theirs in zip(_kv_layers(cache), _kv_layers(other)):
        mine.keys = torch.cat([mine.keys, theirs.keys], dim=0)
        mine.values = torch.cat([mine.values, theirs.values], dim=0)


def _kv_rows(cache: Any, rows: Any) -> Any:
    """A new cache holding ``cache``'s rows ``rows`` (an index tensor; repeats allowed)."""
    new = copy.copy(cache)
    new.layers = []
    for layer in _kv_layers(cache):
        clone = copy.copy(layer)
        clone.keys, clone.values = layer.keys[rows], layer.values[rows]
        new.layers.append(clone)
    return new


# --------------------------------------------------------------------------- hardware
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX: /proc/cpuinfo flags, or
    torch's CPU capability ``AVX512_BF16`` / ``AMX``)."""
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


def auto_batch_size(model: Any, decode_rows: int | None, max_new_tokens: int
                    ) -> tuple[int, str]:
    """Rows decoded together when the user set none, and why.

    Compute: ``_ROWS_PER_CORE`` rows per usable core, rounded up to whole decode tiles (a
    partly filled tile costs a full one). Memory: at most ``_MEMORY_SHARE`` of the available
    memory for the rows' KV cache (2 x layers x kv heads x head dim x bytes, over 1024 prompt
    tokens + ``max_new_tokens``) and fp32 logits. With fixed-shape tiles the choice never
    changes an output (the fingerprint does not record it).
    """
    cfg = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") \
        else model.config
    cores = _usable_cores()
    tile = decode_rows or 1
    want = -(-(_ROWS_PER_CORE * cores) // tile) * tile
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "num_layers", 1) or 1
    heads = getattr(cfg, "num_attention_heads", 1) or 1
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or (getattr(cfg, "hidden_size", 64) // heads)
    elem = next(model.parameters()).element_size()
    per_row = (2 * layers * kv_heads * head_dim * elem * (1024 + max(0, max_new_tokens))
               + 4 * getattr(cfg, "vocab_size", 0))
    free = _free_memory_bytes()
    rows = want
    if free is not None and per_row > 0:
        rows = max(1, min(want, int(free * _MEMORY_SHARE // per_row)))
    # the reason is recorded in results.json: no free-memory figure (it differs run to run)
    capped = ", capped by free memory" if rows < want else ""
    return rows, f"auto: {cores} cores{capped}"


# --------------------------------------------------------------------------- early stop
def list_is_complete(text: str, k: int) -> bool:
    """True when ``text`` (complete lines only) holds at least ``k`` numbered or bulleted list
    entries as the project's parser reads them: a row whose text this is can stop."""
    entries, fmt = _parse_list_format(text.strip())
    return fmt == "list" and len(entries) >= k


class _ListWatch:
    """Per-row early stop (see "Early stop" in the module docstring) for one batch.

    ``ks``: the ``k`` of each batch row (``None`` or < 1: never stop early). :meth:`done` looks
    at the row's newest token only, and decodes and parses the row's text only when that token
    holds a newline; ``newline`` memoises which token ids do (shared across batches).
    """

    def __init__(self, tokenizer: Any, ks: Sequence[int | None], newline: dict[int, bool]
                 ) -> None:
        self.tokenizer = tokenizer
        self.ks = list(ks)
        self.newline = newline

    def done(self, row: int, tokens: list[int]) -> bool:
        k = self.ks[row]
        if not k or k < 1 or not tokens:
            return False
        tok = tokens[-1]
        has_newline = self.newline.get(tok)
        if has_newline is None:
            piece = self.tokenizer.decode([tok], skip_special_tokens=True)
            has_newline = self.newline[tok] = "\n" in piece
        if not has_newline:
            return False
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return list_is_complete(text[:text.rfind("\n")], k)


# --------------------------------------------------------------------------- file helpers
def _resolve_model_dir(path: str) -> Path:
    p = Path(path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ModelSpecError(
                f"model path is not a directory: {path} (for a .gguf file use gguf:{path})")
        return p
    if _HUB_ID.match(path) and not path.startswith((".", "~")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(path, local_files_only=True))
        except Exception:  # noqa: BLE001 - any failure means "not available offline"
            raise ModelSpecError(
                f"model not found: {path} is neither a local directory nor in the offline "
                "Hugging Face cache") from None
    raise ModelSpecError(f"model path not found: {path}")


def _files_sha256(files: Sequence[Path]) -> str | None:
    """sha256 of one weights file, or of the ``"name  sha"`` lines of several; None if none."""
    shas = [(f.name, cached_sha256(f)) for f in files]
    if not shas:
        return None
    if len(shas) == 1:
        return shas[0][1]
    blob = "".join(f"{name}  {sha}\n" for name, sha in shas)
    return hashlib.sha256(blob.encode()).hexdigest()


def _read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelRuntimeError(f"could not read {adapter_dir / ADAPTER_CONFIG}: "
                                f"{first_line(exc)}") from None
    if not isinstance(cfg, dict):
        raise ModelRuntimeError(f"{adapter_dir / ADAPTER_CONFIG} is not a JSON object")
    return cfg


def _resolve_base_dir(adapter_dir: Path, named: str | None, from_options: bool) -> Path:
    """The base model directory of a PEFT adapter: a local directory, never a hub download.

    ``named`` is ``model_options.base`` (``from_options``) or the adapter config's
    ``base_model_name_or_path``. A relative path is tried from the working directory, then (for
    the config's value) from the adapter directory. A hub id is accepted only when it is already
    in the offline Hugging Face cache (a local snapshot).
    """
    where = "model_options.base" if from_options else \
        f"base_model_name_or_path in {adapter_dir / ADAPTER_CONFIG}"
    hint = "set model_options: {base: PATH} to the base model's local directory"
    if not named or not isinstance(named, str):
        raise ModelSpecError(f"PEFT adapter {adapter_dir} names no base model ({where} is "
                             f"empty); {hint}")
    p = Path(named).expanduser()
    candidates = [p] if p.is_absolute() or from_options else [p, adapter_dir / p]
    for c in candidates:
        if c.is_dir():
            if (c / ADAPTER_CONFIG).is_file():
                raise ModelSpecError(f"base model {c} of PEFT adapter {adapter_dir} is itself an "
                                     f"adapter; {hint}")
            return c
    if _HUB_ID.match(named) and not named.startswith((".", "~")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(named, local_files_only=True))
        except Exception:  # noqa: BLE001 - any failure means "not available offline"
            pass
    raise ModelSpecError(f"base model not found for PEFT adapter {adapter_dir}: {named} ({where}) "
                         f"is not a local directory; {hint}")


# --------------------------------------------------------------------------- the adapter
class HFRecommender(Recommender):
    """A causal or seq2seq ``transformers`` model, greedy by default, batch-invariant batching.

    Parameters
    ----------
    path
        Local checkpoint directory or a hub id already in the offline cache; or a PEFT adapter
        directory (``adapter_config.json``): its base is loaded, the adapter applied with
        ``peft`` and merged into the base weights (``merge_and_unload``), so the merged model is
        plain ``nn.Linear`` layers and runs the same verified fixed-shape tiles.
    decoding
        Decoding parameters (``max_new_tokens``, ``temperature``, ``seed``).
    allow_pickle
        Load ``.bin``/``.pt`` pickle weights when no ``.safetensors`` exist (pickle can run code).
    trust_remote_code
        Allow model code shipped with the checkpoint. Off unless explicitly passed.
    batch_size
        Rows decoded together (sorted by prompt length to reduce padding); ``None``: chosen
        from the hardware by :func:`auto_batch_size` (recorded in :meth:`batch_invariance`).
        With fixed-shape tiles it never changes an output.
    spec
        The spec string the user wrote (for reports); defaults to ``hf:PATH``.
    base
        ``model_options: {base: PATH}``: the local base model directory of a PEFT adapter; wins
        over the adapter config's ``base_model_name_or_path``. Only valid for adapters.
    continuous_batching
        Refill a finished row's slot with the next waiting prompt at once (causal models with
        fixed-shape tiles; see :meth:`_generate_continuous`). Outputs are the same either way,
        so it is not in the fingerprint; ``false`` runs static batches of ``batch_size``.
    early_stop
        ``model_options: {early_stop: true}`` turns on the per-row early stop of generation
        (see "Early stop" in the module docstring); off by default. Settable after load too.
    dtype
        ``model_options: {dtype: bfloat16}`` runs the weights in bf16 (fast where the CPU has
        AVX512-BF16 or AMX, see :func:`cpu_has_native_bf16`; emulated, slower, elsewhere).
        Opt-in: it changes the numerics, and the fingerprint records the dtype. The tile
        self-check runs on the bf16 weights, so batching stays bit-exact.
    model, tokenizer
        Already-loaded objects to use instead of loading from ``path`` (used by the GGUF adapter).
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({GENERATE, SCORE})
    adapter_version: ClassVar[str] = ADAPTER_VERSION

    def __init__(self, path: str, decoding: Decoding | None = None, *, allow_pickle: bool = False,
                 trust_remote_code: bool = False, batch_size: int | None = None,
                 spec: str | None = None,
                 batching: str = "auto", prefill_rows: int | None = None,
                 decode_rows: int | None = None, model: Any = None, tokenizer: Any = None,
                 base: str | None = None, early_stop: bool = False,
                 continuous_batching: bool = True, dtype: str = "float32") -> None:
        super().__init__(spec or f"hf:{path}", decoding)
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ModelSpecError(f"batch_size must be >= 1, got {batch_size}")
        if dtype not in DTYPES:
            raise ModelSpecError(f"model_options.dtype must be one of {', '.join(DTYPES)}, "
                                 f"got {dtype!r}")
        if batching not in BATCHING_MODES:
            raise ModelSpecError(f"model_options.batching must be one of "
                                 f"{', '.join(BATCHING_MODES)}, got {batching!r}")
        for name, rows in (("prefill_rows", prefill_rows), ("decode_rows", decode_rows)):
            if rows is not None and (not isinstance(rows, int) or rows < 1):
                raise ModelSpecError(f"model_options.{name} must be a positive integer, "
                                     f"got {rows!r}")
        if not isinstance(early_stop, bool):
            raise ModelSpecError(f"model_options.early_stop must be true or false, "
                                 f"got {early_stop!r}")
        if not isinstance(continuous_batching, bool):
            raise ModelSpecError(f"model_options.continuous_batching must be true or false, "
                                 f"got {continuous_batching!r}")
        self.continuous_batching = continuous_batching
        self.generation_stats: dict[str, int] = {}
        self._early_stop = early_stop
        self._newline_tokens: dict[int, bool] = {}
        self.path = str(path)
        self.batch_size = int(batch_size or 1)
        self.batch_size_reason = ""
        self.allow_pickle = bool(allow_pickle)
        self.trust_remote_code = bool(trust_remote_code)
        self._weights_sha: str | None = None
        self._keeps_logits: bool | None = None
        self.model_dir: Path | None = None
        self.weight_files: list[Path] = []
        # PEFT adapter checkpoints: the base model's directory, the adapter's weights and config
        self.base_dir: Path | None = None
        self.adapter_files: list[Path] = []
        self.adapter_config: dict[str, Any] | None = None
        if model is None or tokenizer is None:
            self.model_dir = _resolve_model_dir(self.path)
            if (self.model_dir / ADAPTER_CONFIG).is_file():
                loaded_model, loaded_tok = self._load_peft(self.model_dir, base)
            else:
                if base is not None:
                    raise ModelSpecError(
                        f"model_options.base applies to PEFT adapters only, and {self.model_dir} "
                        f"has no {ADAPTER_CONFIG}")
                self.weight_files = self._select_weight_files(self.model_dir)
                loaded_model, loaded_tok = self._load(self.model_dir)
            model = model if model is not None else loaded_model
            tokenizer = tokenizer if tokenizer is not None else loaded_tok
        else:
            p = Path(self.path)
            if p.is_dir():
                self.model_dir = p
                self.weight_files = sorted(f for f in p.iterdir()
                                           if f.suffix == ".safetensors" and f.is_file())
        if dtype != "float32":  # before the tile self-check, which runs on these weights
            import torch

            model = model.to(getattr(torch, dtype))
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.is_seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
        self._setup_tokens()
        self.batching = self._setup_batching(batching, prefill_rows, decode_rows)
        if batch_size is None:
            self.batch_size, self.batch_size_reason = auto_batch_size(
                self.model, self.batching.decode_rows, self.decoding.max_new_tokens)

    # ------------------------------------------------------------------ loading
    def _select_weight_files(self, d: Path) -> list[Path]:
        files = sorted(f for f in d.iterdir() if f.is_file())
        safe = [f for f in files if f.suffix == ".safetensors"]
        if safe:
            from .weights import check_safetensors
            check_safetensors(safe)
            return safe
        pickles = [f for f in files if f.suffix in PICKLE_SUFFIXES]
        if pickles:
            if not self.allow_pickle:
                names = ", ".join(f.name for f in pickles[:3])
                raise ModelSpecError(
                    f"{d} has only pickle weights ({names}); pickle files can run arbitrary code "
                    "when loaded; pass --allow-pickle to load them")
            return pickles
        raise ModelSpecError(f"no model weights (.safetensors) found in {d}")

    def _select_adapter_files(self, d: Path) -> list[Path]:
        """The adapter's weights: ``adapter_model.safetensors``, or with ``allow_pickle`` the
        pickle ``adapter_model.bin`` (the one peft would load: it prefers safetensors too)."""
        safe, pickled = (d / name for name in ADAPTER_WEIGHTS)
        if safe.is_file():
            return [safe]
        if pickled.is_file():
            if not self.allow_pickle:
                raise ModelSpecError(
                    f"{d} has only pickle adapter weights ({pickled.name}); pickle files can run "
                    "arbitrary code when loaded; pass --allow-pickle to load them")
            return [pickled]
        raise ModelSpecError(f"no adapter weights ({safe.name}) found in {d}")

    def _load_peft(self, adapter_dir: Path, base: str | None) -> tuple[Any, Any]:
        """Base model + PEFT adapter, merged: see "PEFT / LoRA adapters" in the module docstring.

        Every check that needs only the files (base found, pickle policy for both weight sets,
        adapter type) runs before anything is loaded.
        """
        cfg = _read_adapter_config(adapter_dir)
        named = base if base is not None else cfg.get("base_model_name_or_path")
        base_dir = _resolve_base_dir(adapter_dir, named, from_options=base is not None)
        self.adapter_files = self._select_adapter_files(adapter_dir)
        self.weight_files = self._select_weight_files(base_dir)
        self.base_dir, self.adapter_config = base_dir, cfg
        try:
            from peft import PeftConfig, PeftModel
        except ImportError:
            raise ModelRuntimeError(f"{adapter_dir} is a PEFT adapter, which needs the peft "
                                    "package (pip install peft)") from None
        try:
            peft_config = PeftConfig.from_pretrained(str(adapter_dir))
        except Exception as exc:  # noqa: BLE001
            raise ModelRuntimeError(f"could not read the PEFT adapter config in {adapter_dir}: "
                                    f"{first_line(exc)}") from exc
        if peft_config.is_prompt_learning:
            kind = peft_config.peft_type
            raise ModelSpecError(
                f"PEFT adapter {adapter_dir} is {getattr(kind, 'value', kind)}, which adds virtual "
                "tokens and cannot be merged into the base weights; only adapters that merge "
                "(LoRA and its kin) are supported")
        has_tokenizer = any((adapter_dir / f).is_file() for f in TOKENIZER_FILES)
        model, tokenizer = self._load(base_dir, adapter_dir if has_tokenizer else None)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                peft_model = PeftModel.from_pretrained(model, str(adapter_dir),
                                                       config=peft_config, is_trainable=False)
            missing = [str(w.message) for w in caught if "missing adapter keys" in str(w.message)]
            if missing:
                raise ModelRuntimeError(f"PEFT adapter {adapter_dir} does not fit its base "
                                        f"{base_dir}: {missing[0].splitlines()[0][:300]}")
            # Merge: W + scale * B @ A becomes one plain nn.Linear again, so the fixed-shape tiles
            # (installed on nn.Linear layers by _setup_batching, and self-checked there) keep
            # batched generation bit-identical to one-at-a-time for the adapted model.
            merged = peft_model.merge_and_unload(safe_merge=True)
        except ModelRuntimeError:
            raise
        except Exception as exc:  # noqa: BLE001 - every load failure becomes a one-line error
            raise ModelRuntimeError(f"could not apply the PEFT adapter in {adapter_dir} to "
                                    f"{base_dir}: {first_line(exc)}") from exc
        return merged, tokenizer

    def _load(self, d: Path, tokenizer_dir: Path | None = None) -> tuple[Any, Any]:
        import torch
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForSeq2SeqLM,
            AutoTokenizer,
        )

        trc = self.trust_remote_code
        try:
            from .base import quiet_transformers
            quiet_transformers()
            config = AutoConfig.from_pretrained(str(d), trust_remote_code=trc)
            auto = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) \
                else AutoModelForCausalLM
            model = auto.from_pretrained(
                str(d), config=config, trust_remote_code=trc, dtype=torch.float32,
                use_safetensors=self.weight_files[0].suffix == ".safetensors")
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or d),
                                                      trust_remote_code=trc)
        except Exception as exc:  # noqa: BLE001 - every load failure becomes a one-line error
            if isinstance(exc, ValueError) and "trust_remote_code" in str(exc):
                raise ModelSpecError(
                    f"{d} needs custom model code; pass --trust-remote-code to run it") from None
            raise ModelRuntimeError(f"could not load the model in {d}: {first_line(exc)}") \
                from exc
        return model, tokenizer

    def _setup_tokens(self) -> None:
        tok, cfg = self.tokenizer, self.model.config
        gen = getattr(self.model, "generation_config", None)
        eos: set[int] = set()
        for source in (getattr(gen, "eos_token_id", None), getattr(cfg, "eos_token_id", None),
                       getattr(tok, "eos_token_id", None)):
            if isinstance(source, int):
                eos.add(source)
            elif isinstance(source, (list, tuple)):
                eos.update(int(s) for s in source)
        self.eos_ids = frozenset(eos)
        pad = getattr(tok, "pad_token_id", None)
        if pad is None:
            pad = getattr(gen, "pad_token_id", None)
        if pad is None:
            pad = min(eos) if eos else 0
        self.pad_id = int(pad)
        start = getattr(gen, "decoder_start_token_id", None)
        if start is None:
            start = getattr(cfg, "decoder_start_token_id", None)
        if start is None and self.is_seq2seq:
            start = self.pad_id
        self.decoder_start_id = None if start is None else int(start)

    @property
    def exact_batching(self) -> bool:
        """True when batched outputs are bit-identical to one-at-a-time (fixed-shape tiles)."""
        return self.batching.mode == "tiles"

    @property
    def tile_rows(self) -> tuple[int, int] | None:
        """(M_p, M_d): rows of every prefill / decode matmul, or None without tiles."""
        b = self.batching
        return (b.prefill_rows, b.decode_rows) if b.mode == "tiles" else None

    @property
    def early_stop(self) -> bool:
        """Whether each generation row stops once its list of ``k`` entries is complete."""
        return self._early_stop

    @early_stop.setter
    def early_stop(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ModelSpecError(f"early_stop must be true or false, got {value!r}")
        if value != self._early_stop:
            self._early_stop = value
            self._fingerprint = None  # the fingerprint records the setting

    def batch_invariance(self) -> str:
        line = self.batching.describe()
        if self.batch_size_reason:
            line += f"; batch size {self.batch_size} ({self.batch_size_reason})"
        dtype = next(self.model.parameters()).dtype
        if str(dtype) != "torch.float32":
            native = "native" if cpu_has_native_bf16() else "emulated: no AVX512-BF16/AMX"
            line += f"; weights {str(dtype).replace('torch.', '')} ({native})"
        if self.early_stop:
            line += ("; early stop: each request stops after its k-th list entry, decided on "
                     "its own tokens only")
        return line

    def _setup_batching(self, requested: str, prefill_rows: int | None,
                        decode_rows: int | None) -> BatchInvariance:
        """Establish batch invariance (fixed-shape tiles + row-wise attention) or say why not.

        Without it the default is one request at a time (exact, slower). ``requested="plain"``
        skips all of this for plain batching (fastest, not invariant), and every report says so.
        """
        import torch

        if requested == "plain":
            return BatchInvariance("plain", "model_options.batching is plain")

        def fallback(reason: str) -> BatchInvariance:
            return BatchInvariance("sequential", reason)

        model = self.model
        if not _attention_is_padding_only(model.config):
            return fallback("the attention uses sliding windows or chunks, which the row-wise "
                            "attention does not reproduce")
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        with torch.inference_mode():
            m_p, m_d = choose_tile_rows(linears, prefill_rows, decode_rows)
        if m_p is None or m_d is None:
            forced = [f"{n}={v}" for n, v in (("prefill_rows", prefill_rows),
                                               ("decode_rows", decode_rows)) if v is not None]
            which = f" with {', '.join(forced)}" if forced else ""
            return fallback(f"no tile height{which} gives row results independent of the other "
                            "rows on this CPU's BLAS")
        _register_attention()
        try:
            model.set_attn_implementation(_EXACT_ATTN)
        except Exception:  # noqa: BLE001 - model cannot switch its attention implementation
            return fallback("the model cannot switch to row-wise attention")
        impls = {getattr(m.config, "_attn_implementation", None)
                 for m in model.modules() if hasattr(m, "config")}
        if impls != {_EXACT_ATTN}:
            return fallback("part of the model does not use the attention interface")
        for name, mod in model.named_modules():
            if name.rsplit(".", 1)[-1] in _CROSS_ATTN_NAMES:
                mod._recaudit_cross = True
        for lin in linears:
            lin.forward = types.MethodType(_tiled_linear_forward, lin)
        return BatchInvariance("tiles", prefill_rows=m_p, decode_rows=m_d)

    # ------------------------------------------------------------------ identity
    def weights_sha256(self) -> str | None:
        """sha256 of the weights file (of the ``"name  sha"`` lines of several); for a PEFT
        adapter, sha256 of ``"base  SHA\nadapter  SHA\n"`` over the two (see
        :meth:`base_weights_sha256`, :meth:`adapter_weights_sha256`)."""
        if self._weights_sha is None and self.weight_files:
            base = _files_sha256(self.weight_files)
            if self.adapter_files:
                blob = f"base  {base}\nadapter  {self.adapter_weights_sha256()}\n"
                self._weights_sha = hashlib.sha256(blob.encode()).hexdigest()
            else:
                self._weights_sha = base
        return self._weights_sha

    def base_weights_sha256(self) -> str | None:
        """sha256 of the (base) model's weight files alone."""
        return _files_sha256(self.weight_files)

    def adapter_weights_sha256(self) -> str | None:
        """sha256 of the PEFT adapter's weights file; None for a plain checkpoint."""
        return _files_sha256(self.adapter_files)

    def _adapter_config_digest(self) -> str | None:
        """sha256 of the adapter config less the keys that only name files (the base path, the
        peft version): rank, alpha and target modules change the merged weights."""
        if self.adapter_config is None:
            return None
        cfg = {k: v for k, v in self.adapter_config.items() if k not in _ADAPTER_CONFIG_INERT}
        blob = json.dumps(cfg, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _fingerprint_payload(self) -> dict[str, Any]:
        import torch

        cfg = {k: v for k, v in self.model.config.to_dict().items()
               if not k.startswith("_") and k not in ("transformers_version", "name_or_path")}
        weights = self.weights_sha256()
        if weights is None:  # injected model without files: hash the tensors themselves
            h = hashlib.sha256()
            for name, t in sorted(self.model.state_dict().items()):
                h.update(name.encode())
                h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
            weights = "tensors:" + h.hexdigest()
        payload = {"adapter": self.adapter_version, "class": type(self).__name__,
                   "weights": weights, "config": cfg,
                   "tokenizer": self._tokenizer_digest(),
                   "numerics": self.batching.numerics(),
                   "dtype": str(next(self.model.parameters()).dtype)}
        if self.early_stop:  # early_stop: false keeps the payload (and cached responses)
            payload["early_stop"] = EARLY_STOP_RULE
        if self.adapter_files:  # plain checkpoints keep their payload (and cached responses)
            payload["peft"] = {"base_weights": self.base_weights_sha256(),
                               "adapter_weights": self.adapter_weights_sha256(),
                               "adapter_config": self._adapter_config_digest()}
        return payload

    def _tokenizer_digest(self) -> str:
        tok = self.tokenizer
        blob = json.dumps({"template": getattr(tok, "chat_template", None),
                           "vocab": sorted(tok.get_vocab().items()),
                           "special": {k: str(v) for k, v in tok.special_tokens_map.items()}},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def fingerprint(self) -> str:
        """sha256 of adapter, weights, config, tokenizer, numerics and the early-stop rule (when
        on); computed once per load (and again when :attr:`early_stop` is switched).

        For a PEFT adapter ``weights`` is :meth:`weights_sha256` (base and adapter weights), and
        a ``peft`` entry adds both weight digests and the adapter config's digest."""
        cached = getattr(self, "_fingerprint", None)
        if cached is None:
            blob = json.dumps(self._fingerprint_payload(), sort_keys=True, default=str)
            cached = self._fingerprint = hashlib.sha256(blob.encode()).hexdigest()
        return cached

    # ------------------------------------------------------------------ tokenization
    def prompt_ids(self, request: Request) -> list[int]:
        """Token ids of the prompt: chat template with a generation prompt when there is one."""
        tok = self.tokenizer
        msgs = request.chat_dicts()
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            return list(tok(text, add_special_tokens=False)["input_ids"])
        text = "\n\n".join(m["content"] for m in msgs)
        return list(tok(text, add_special_tokens=True)["input_ids"])

    def candidate_ids(self, candidate: str) -> list[int]:
        """Token ids of a candidate, tokenized on its own (appended to the prompt ids)."""
        return list(self.tokenizer(candidate, add_special_tokens=False)["input_ids"])

    # ------------------------------------------------------------------ generation
    def recommend(self, requests: Sequence[Request]) -> list[Response]:
        requests = list(requests)
        prompts = [self.prompt_ids(r) for r in requests]
        ks = [r.k for r in requests] if self.early_stop else None
        max_new = self.decoding.max_new_tokens
        responses = []
        for p, (tokens, _) in zip(prompts, self.generate_ids(prompts, ks)):
            eos = bool(tokens) and tokens[-1] in self.eos_ids
            body = tokens[:-1] if eos else tokens
            text = self.tokenizer.decode(body, skip_special_tokens=True)
            # ended before max_new_tokens without EOS: the list was complete
            meta = {"early_stop": True} if ks and not eos and len(tokens) < max_new else {}
            responses.append(Response(text=text.strip(), n_prompt_tokens=len(p),
                                      n_output_tokens=len(tokens), meta=meta))
        return responses

    def generate_ids(self, prompts: Sequence[Sequence[int]],
                     ks: Sequence[int | None] | None = None
                     ) -> list[tuple[list[int], list[float]]]:
        """Generate from token-id prompts: per prompt, the new token ids (ending with EOS when
        the model stopped) and each chosen token's log-probability.

        ``ks``: per prompt, the number of list entries asked for; a prompt's generation stops
        once its text holds that many (see "Early stop" in the module docstring). ``None`` (the
        default, whatever :attr:`early_stop` says), or ``None`` for a prompt: up to EOS or
        ``max_new_tokens``.

        Prompts are sorted by length and run ``batch_size`` at a time (one at a time when batch
        invariance could not be established, unless ``batching: plain``); results come back in
        input order and, with fixed-shape tiles, are bit-identical to running each prompt alone.
        """
        import torch

        prompts = [list(p) or [self._fallback_token()] for p in prompts]
        if ks is not None and len(ks) != len(prompts):
            raise ValueError(f"{len(ks)} ks for {len(prompts)} prompts")
        order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
        results: list[tuple[list[int], list[float]] | None] = [None] * len(prompts)
        step = 1 if self.batching.mode == "sequential" else self.batch_size
        continuous = (self.continuous_batching and self.exact_batching
                      and not self.is_seq2seq)
        try:
            with torch.inference_mode():
                if continuous:
                    outs = self._generate_continuous(
                        [prompts[i] for i in order],
                        None if ks is None else [ks[i] for i in order])
                    for i, out in zip(order, outs):
                        results[i] = out
                    order = []
                for start in range(0, len(order), step):
                    idx = order[start:start + step]
                    batch = [prompts[i] for i in idx]
                    gen = self._generate_seq2seq if self.is_seq2seq else self._generate_causal
                    watch = None if ks is None else _ListWatch(
                        self.tokenizer, [ks[i] for i in idx], self._newline_tokens)
                    for i, out in zip(idx, gen(batch, watch)):
                        results[i] = out
        except ModelRuntimeError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ModelRuntimeError(f"generation failed: {first_line(exc)}") from exc
        return [r for r in results if r is not None]

    def _fallback_token(self) -> int:
        bos = getattr(self.tokenizer, "bos_token_id", None)
        return int(bos) if bos is not None else self.pad_id

    def _row_generators(self, prompts: list[list[int]]) -> list[Any] | None:
        """One generator per row, seeded from ``decoding.seed`` and the prompt (batch-invariant)."""
        if self.decoding.temperature <= 0:
            return None
        import torch

        gens = []
        for p in prompts:
            digest = hashlib.sha256(f"{self.decoding.seed}:{p}".encode()).hexdigest()
            gens.append(torch.Generator().manual_seed(int(digest[:15], 16)))
        return gens

    def _pick(self, logits: Any, rows: list[int], gens: list[Any] | None,
              tokens: list[list[int]], logprobs: list[list[float]],
              watch: _ListWatch | None = None) -> tuple[Any, list[int]]:
        """Choose the next token of each active row (argmax, or a sample from the row's own
        generator), record it and its log-probability; return the tokens and the rows (indices
        into ``rows``) that go on: not at EOS, and (with ``watch``) list not yet complete."""
        import torch

        logits = logits.float()
        if gens is None:
            nxt = logits.argmax(dim=-1)
        else:
            t = float(self.decoding.temperature)
            nxt = torch.cat([torch.multinomial(torch.softmax(logits[j] / t, dim=-1), 1,
                                               generator=gens[row])
                             for j, row in enumerate(rows)])
        keep = []
        for j, row in enumerate(rows):
            tok = int(nxt[j])
            tokens[row].append(tok)
            logprobs[row].append(float(torch.log_softmax(logits[j], dim=-1)[tok]))
            if tok not in self.eos_ids and not (watch is not None and watch.done(row, tokens[row])):
                keep.append(j)
        return nxt, keep

    def _forward_kwargs(self) -> dict[str, Any]:
        """``logits_to_keep=1`` where the model supports it (prefill needs the last logits only)."""
        if self._keeps_logits is None:
            import inspect

            params = inspect.signature(self.model.forward).parameters
            self._keeps_logits = "logits_to_keep" in params
        return {"logits_to_keep": 1} if self._keeps_logits else {}

    def _rows(self, phase: str) -> int | None:
        """Tile height of a phase ("prefill" or "decode"); None without tiles."""
        b = self.batching
        if b.mode != "tiles":
            return None
        return b.prefill_rows if phase == "prefill" else b.decode_rows

    def _run(self, phase: str, **inputs: Any) -> Any:
        """One forward pass of the model with the phase's fixed tile height."""
        token = _TILE_ROWS.set(self._rows(phase))
        try:
            return self.model(**inputs)
        finally:
            _TILE_ROWS.reset(token)

    def _generate_causal(self, prompts: list[list[int]], watch: _ListWatch | None = None
                         ) -> list[tuple[list[int], list[float]]]:
        import torch

        n = len(prompts)
        width = max(len(p) for p in prompts)
        pads = [width - len(p) for p in prompts]
        ids = torch.tensor([[self.pad_id] * pad + p for pad, p in zip(pads, prompts)])
        mask = torch.tensor([[0] * pad + [1] * len(p) for pad, p in zip(pads, prompts)])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        next_pos = torch.tensor([len(p) for p in prompts])
        gens = self._row_generators(prompts)
        tokens: list[list[int]] = [[] for _ in range(n)]
        logprobs: list[list[float]] = [[] for _ in range(n)]
        active = list(range(n))
        layout = _RowLayout(left_pad=list(pads))
        ctx = _LAYOUT.set(layout if self.exact_batching else None)
        try:
            max_new = self.decoding.max_new_tokens
            if max_new <= 0:
                return [([], []) for _ in range(n)]
            out = self._run("prefill", input_ids=ids, attention_mask=mask,
                            position_ids=positions, use_cache=True, **self._forward_kwargs())
            cache = out.cache
            for step in range(max_new):
                nxt, keep = self._pick(out.logits[:, -1, :], active, gens, tokens, logprobs,
                                       watch)
                if not keep or step == max_new - 1:
                    break
                if len(keep) < len(active):
                    sel = torch.tensor(keep)
                    cache.batch_select_indices(sel)
                    mask, nxt, next_pos = mask[sel], nxt[sel], next_pos[sel]
                    active = [active[j] for j in keep]
                    layout.left_pad = [layout.left_pad[j] for j in keep]
                mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
                out = self._run("decode", input_ids=nxt[:, None], attention_mask=mask,
                                position_ids=next_pos[:, None], cache=cache, use_cache=True)
                cache = out.cache
                next_pos = next_pos + 1
        finally:
            _LAYOUT.reset(ctx)
        return list(zip(tokens, logprobs))

    def _prefill_causal(self, prompts: list[list[int]], layout: _RowLayout
                        ) -> tuple[Any, Any, Any, list[int]]:
        """Prefill left-padded prompts through the prefill tiles; returns (last-position
        logits, cache, attention mask, left pads). ``layout.left_pad`` is set to the pads."""
        import torch

        width = max(len(p) for p in prompts)
        pads = [width - len(p) for p in prompts]
        ids = torch.tensor([[self.pad_id] * pad + p for pad, p in zip(pads, prompts)])
        mask = torch.tensor([[0] * pad + [1] * len(p) for pad, p in zip(pads, prompts)])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        layout.left_pad = list(pads)
        out = self._run("prefill", input_ids=ids, attention_mask=mask, position_ids=positions,
                        use_cache=True, **self._forward_kwargs())
        return out.logits[:, -1, :], out.cache, mask, pads

    def _generate_continuous(self, prompts: list[list[int]], ks: Sequence[int | None] | None
                             ) -> list[tuple[list[int], list[float]]]:
        """Continuous batching over fixed-shape tiles (causal models, ``"tiles"`` mode).

        At most ``batch_size`` rows decode together; when rows finish (EOS, early stop,
        ``max_new_tokens``) the next waiting prompts are prefilled together (prefill tiles; when
        :meth:`_refill_count` says so) and their KV rows are merged into the running cache: the
        shorter side is left-padded with zeros (more left pad, which the row-wise attention
        never reads) and padding common to all rows is trimmed. Each row keeps its own
        positions and unpadded keys, and every matmul runs on verified tiles, so each output is
        bit-identical to generating it alone.
        :attr:`generation_stats` counts the refills and decode steps of the last call.
        """
        import collections

        import torch

        n = len(prompts)
        tokens: list[list[int]] = [[] for _ in range(n)]
        logprobs: list[list[float]] = [[] for _ in range(n)]
        stats = {"prompts": n, "refills": 0, "decode_steps": 0, "decode_rows": 0}
        self.generation_stats = stats
        max_new = self.decoding.max_new_tokens
        if max_new <= 0:
            return [([], []) for _ in range(n)]
        gens = self._row_generators(prompts)
        watch = None if ks is None else _ListWatch(self.tokenizer, ks, self._newline_tokens)
        waiting = collections.deque(range(n))
        active: list[int] = []  # prompt index of each batch row
        cache = mask = nxt = next_pos = None
        layout = _RowLayout(left_pad=[])
        ctx = _LAYOUT.set(layout)
        try:
            while waiting or active:
                n_new = self._refill_count(len(active), [prompts[i] for i in waiting]) \
                    if waiting else 0
                if n_new:
                    new = [waiting.popleft() for _ in range(n_new)]
                    stats["refills"] += len(new) if active else 0
                    running_pads = layout.left_pad
                    logits, new_cache, new_mask, new_pads = self._prefill_causal(
                        [prompts[i] for i in new], layout)
                    new_nxt, keep = self._pick(logits, new, gens, tokens, logprobs, watch)
                    keep = [j for j in keep if len(tokens[new[j]]) < max_new]
                    layout.left_pad = running_pads
                    if keep:
                        sel = torch.tensor(keep)
                        if len(keep) < len(new):
                            new_cache.batch_select_indices(sel)
                        new_pos = torch.tensor([len(prompts[new[j]]) for j in keep])
                        new_pads = [new_pads[j] for j in keep]
                        cache, mask = self._merge_rows(cache, mask, layout, new_cache,
                                                       new_mask[sel], new_pads)
                        nxt = new_nxt[sel] if nxt is None else torch.cat([nxt, new_nxt[sel]])
                        next_pos = new_pos if next_pos is None else torch.cat([next_pos, new_pos])
                        active += [new[j] for j in keep]
                    continue  # fill every free slot before the next decode step
                mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
                out = self._run("decode", input_ids=nxt[:, None], attention_mask=mask,
                                position_ids=next_pos[:, None], cache=cache, use_cache=True)
                cache = out.cache
                stats["decode_steps"] += 1
                stats["decode_rows"] += len(active)
                next_pos = next_pos + 1
                nxt, keep = self._pick(out.logits[:, -1, :], active, gens, tokens, logprobs,
                                       watch)
                keep = [j for j in keep if len(tokens[active[j]]) < max_new]
                if len(keep) < len(active):
                    active = [active[j] for j in keep]
                    if not active:
                        cache = mask = nxt = next_pos = None
                        layout.left_pad = []
                        continue
                    sel = torch.tensor(keep)
                    cache.batch_select_indices(sel)
                    mask, nxt, next_pos = mask[sel], nxt[sel], next_pos[sel]
                    layout.left_pad = [layout.left_pad[j] for j in keep]
                    mask = self._trim_common_pad(cache, mask, layout)
        finally:
            _LAYOUT.reset(ctx)
        return list(zip(tokens, logprobs))

    def _refill_count(self, n_active: int, waiting: list[list[int]]) -> int:
        """How many waiting prompts enter before the next decode step (scheduling only: no
        output depends on it). A prefill costs whole tiles of M_p rows (prompts x the longest
        of them), so newcomers enter in whole tiles: all that fit when nothing decodes, when
        all the rest fit, or when half the slots are free; else as many as fill whole tiles
        (none while they fill less than one)."""
        free = self.batch_size - n_active
        if free <= 0:
            return 0
        fit = waiting[:free]
        if n_active == 0 or len(waiting) <= free or 2 * free >= self.batch_size:
            return len(fit)
        m_p = self._rows("prefill") or 1

        def rows(n: int) -> int:
            return n * max(len(p) for p in fit[:n])

        whole = rows(len(fit)) // m_p * m_p
        return max((n for n in range(1, len(fit) + 1) if rows(n) <= whole), default=0)

    @staticmethod
    def _trim_common_pad(cache: Any, mask: Any, layout: _RowLayout) -> Any:
        """Drop the left padding all rows share (from the cache, the mask and the layout)."""
        cut = min(layout.left_pad)
        if cut > 0:
            _kv_trim_left(cache, cut)
            layout.left_pad = [p - cut for p in layout.left_pad]
            mask = mask[:, cut:]
        return mask

    def _merge_rows(self, cache: Any, mask: Any, layout: _RowLayout, new_cache: Any,
                    new_mask: Any, new_pads: list[int]) -> tuple[Any, Any]:
        """Append freshly prefilled rows to the running batch (see :meth:`_generate_continuous`).
        Returns the merged cache and mask; ``layout.left_pad`` is updated."""
        import torch
        import torch.nn.functional as F

        if cache is None:
            layout.left_pad = list(new_pads)
            return new_cache, new_mask
        old_len, new_len = mask.shape[1], new_mask.shape[1]
        width = max(old_len, new_len)
        _kv_left_pad(cache, width - old_len)
        _kv_left_pad(new_cache, width - new_len)
        _kv_concat_rows(cache, new_cache)
        mask = torch.cat([F.pad(mask, (width - old_len, 0)), F.pad(new_mask, (width - new_len, 0))])
        layout.left_pad = ([p + width - old_len for p in layout.left_pad]
                           + [p + width - new_len for p in new_pads])
        return cache, self._trim_common_pad(cache, mask, layout)

    def _encode(self, prompts: list[list[int]], layout: _RowLayout) -> tuple[Any, Any]:
        """Run the encoder once on right-padded prompts; returns (encoder outputs, mask)."""
        import torch

        width = max(len(p) for p in prompts)
        ids = torch.tensor([p + [self.pad_id] * (width - len(p)) for p in prompts])
        mask = torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in prompts])
        layout.enc_len = [len(p) for p in prompts]
        layout.in_encoder = True
        token = _TILE_ROWS.set(self._rows("prefill"))
        try:
            enc = self.model.get_encoder()(input_ids=ids, attention_mask=mask)
        finally:
            layout.in_encoder = False
            _TILE_ROWS.reset(token)
        return enc, mask

    def _generate_seq2seq(self, prompts: list[list[int]], watch: _ListWatch | None = None
                          ) -> list[tuple[list[int], list[float]]]:
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        n = len(prompts)
        layout = _RowLayout(left_pad=[0] * n)
        ctx = _LAYOUT.set(layout if self.exact_batching else None)
        gens = self._row_generators(prompts)
        tokens: list[list[int]] = [[] for _ in range(n)]
        logprobs: list[list[float]] = [[] for _ in range(n)]
        active = list(range(n))
        try:
            enc, enc_mask = self._encode(prompts, layout)
            hidden = enc.last_hidden_state
            nxt = torch.full((n,), self.decoder_start_id, dtype=torch.long)
            cache = None
            for _ in range(self.decoding.max_new_tokens):
                out = self._run("decode",
                                encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                                attention_mask=enc_mask, decoder_input_ids=nxt[:, None],
                                cache=cache, use_cache=True)
                cache = out.cache
                nxt, keep = self._pick(out.logits[:, -1, :], active, gens, tokens, logprobs,
                                       watch)
                if not keep:
                    break
                if len(keep) < len(active):
                    sel = torch.tensor(keep)
                    cache.batch_select_indices(sel)
                    hidden, enc_mask, nxt = hidden[sel], enc_mask[sel], nxt[sel]
                    active = [active[j] for j in keep]
                    layout.enc_len = [layout.enc_len[j] for j in keep]
                    layout.left_pad = [0] * len(active)
        finally:
            _LAYOUT.reset(ctx)
        return list(zip(tokens, logprobs))

    # ------------------------------------------------------------------ scoring
    def score(self, requests: Sequence[Request]) -> list[list[float]]:
        """Sum of candidate-token log-probabilities after the prompt, prompt computed once."""
        return self._score_all(requests, naive=False)

    def score_naive(self, requests: Sequence[Request]) -> list[list[float]]:
        """Reference scoring: one full forward pass over ``prompt + candidate`` per candidate."""
        return self._score_all(requests, naive=True)

    def _score_all(self, requests: Sequence[Request], naive: bool) -> list[list[float]]:
        import torch

        results = []
        try:
            with torch.inference_mode():
                if not naive and self.exact_batching and not self.is_seq2seq:
                    return self._score_causal_batched(
                        [self.prompt_ids(r) or [self._fallback_token()] for r in requests],
                        [[self.candidate_ids(c) for c in r.candidates or ()] for r in requests])
                for r in requests:
                    if not r.candidates:
                        results.append([])
                        continue
                    p = self.prompt_ids(r) or [self._fallback_token()]
                    cands = [self.candidate_ids(c) for c in r.candidates]
                    if self.is_seq2seq:
                        fn = self._score_s2s_naive if naive else self._score_s2s
                    else:
                        fn = self._score_causal_naive if naive else self._score_causal
                    results.append(fn(p, cands))
        except ModelRuntimeError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ModelRuntimeError(f"scoring failed: {first_line(exc)}") from exc
        return results

    @staticmethod
    def _gather(logprobs: Any, targets: list[list[int]]) -> list[float]:
        """Sum over rows of ``logprobs[j, i, targets[j][i]]`` for the real (unpadded) tokens."""
        import torch

        sums = []
        for j, tgt in enumerate(targets):
            if not tgt:
                sums.append(0.0)
                continue
            idx = torch.tensor(tgt, dtype=torch.long)
            rows = logprobs[j, : len(tgt)]
            sums.append(float(rows.gather(-1, idx[:, None]).sum()))
        return sums

    def _score_causal_batched(self, prompts: list[list[int]], cands: list[list[list[int]]]
                              ) -> list[list[float]]:
        """Candidate scores of many requests in shared forward passes, on fixed-shape tiles.

        Prompts (sorted by length, ``batch_size`` at a time) are prefilled together; then the
        candidates of all of them, sorted by length, run in chunks of up to two prefill tiles of
        tokens, each row continuing its own prompt's KV rows (right-padded; the row-wise
        attention reads the row's prompt and its own real tokens only, causal from the last
        key). Score = log p(c_0 | prompt) + sum_i log p(c_i | prompt, c_<i). Every matmul row and
        attention call is the one the request makes alone, so a request's scores are
        bit-identical whichever requests share its batch.
        """
        import torch

        scores: list[list[float]] = [[0.0] * len(c) for c in cands]
        order = sorted((i for i in range(len(prompts)) if cands[i]),
                       key=lambda i: (len(prompts[i]), i))
        budget = 2 * (self._rows("prefill") or 256)
        layout = _RowLayout(left_pad=[])
        ctx = _LAYOUT.set(layout)
        try:
            for start in range(0, len(order), self.batch_size):
                group = order[start:start + self.batch_size]
                logits, cache, mask, pads = self._prefill_causal([prompts[i] for i in group],
                                                                 layout)
                first = [torch.log_softmax(logits[j].float(), dim=-1) for j in range(len(group))]
                rows = sorted(((len(c), j, n) for j, i in enumerate(group)
                               for n, c in enumerate(cands[i]) if c))
                while rows:
                    width = rows[0][0]
                    take = 1
                    while take < len(rows) and (take + 1) * max(width, rows[take][0]) <= budget:
                        width = max(width, rows[take][0])
                        take += 1
                    chunk, rows = rows[:take], rows[take:]
                    seqs = [cands[group[j]][n] for _, j, n in chunk]
                    sel = torch.tensor([j for _, j, _ in chunk])
                    ids = torch.tensor([c + [self.pad_id] * (width - len(c)) for c in seqs])
                    real = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in seqs])
                    starts = torch.tensor([len(prompts[group[j]]) for _, j, _ in chunk])
                    layout.left_pad = [pads[j] for _, j, _ in chunk]
                    layout.right_pad = [width - len(c) for c in seqs]
                    try:
                        out = self._run("prefill", input_ids=ids,
                                        attention_mask=torch.cat([mask[sel], real], dim=1),
                                        position_ids=starts[:, None] + torch.arange(width),
                                        cache=_kv_rows(cache, sel), use_cache=True)
                    finally:
                        layout.right_pad = None
                    for r, ((_, j, n), c) in enumerate(zip(chunk, seqs)):
                        rest = 0.0
                        if len(c) > 1:
                            lp = torch.log_softmax(out.logits[r, :len(c) - 1].float(), dim=-1)
                            rest = float(lp.gather(-1, torch.tensor(c[1:])[:, None]).sum())
                        scores[group[j]][n] = float(first[j][c[0]]) + rest
        finally:
            _LAYOUT.reset(ctx)
        return scores

    def _score_causal(self, prompt: list[int], cands: list[list[int]]) -> list[float]:
        import torch

        out = self.model(input_ids=torch.tensor([prompt]), use_cache=True,
                         **self._forward_kwargs())
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        prompt_cache = out.cache
        scores: list[float] = []
        for start in range(0, len(cands), _SCORE_CHUNK):
            chunk = cands[start:start + _SCORE_CHUNK]
            width = max(1, max(len(c) for c in chunk))
            ids = torch.tensor([c + [self.pad_id] * (width - len(c)) for c in chunk])
            cache = copy.deepcopy(prompt_cache)
            cache.batch_repeat_interleave(len(chunk))
            # right padding: real tokens never attend to the pads after them (causal)
            logits = self.model(input_ids=ids, cache=cache, use_cache=True).logits
            lp = torch.log_softmax(logits.float(), dim=-1)
            rest = self._gather(lp, [c[1:] for c in chunk])
            for c, r in zip(chunk, rest):
                scores.append(float(first[c[0]]) + r if c else 0.0)
        return scores

    def _score_causal_naive(self, prompt: list[int], cands: list[list[int]]) -> list[float]:
        import torch

        scores = []
        for c in cands:
            if not c:
                scores.append(0.0)
                continue
            # logits only where the candidate's tokens are predicted (a fair baseline)
            keep = {"logits_to_keep": len(c) + 1} if self._forward_kwargs() else {}
            logits = self.model(input_ids=torch.tensor([prompt + c]), use_cache=False,
                                **keep).logits
            lp = torch.log_softmax(logits[0, -len(c) - 1:-1].float(), dim=-1)
            scores.append(float(lp.gather(-1, torch.tensor(c)[:, None]).sum()))
        return scores

    def _score_s2s(self, prompt: list[int], cands: list[list[int]]) -> list[float]:
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        enc = self.model.get_encoder()(input_ids=torch.tensor([prompt]))
        hidden = enc.last_hidden_state
        scores: list[float] = []
        for start in range(0, len(cands), _SCORE_CHUNK):
            chunk = cands[start:start + _SCORE_CHUNK]
            width = max(1, max(len(c) for c in chunk))
            dec = torch.tensor([[self.decoder_start_id] + c[:-1] + [self.pad_id] * (width - len(c))
                                if c else [self.decoder_start_id] + [self.pad_id] * (width - 1)
                                for c in chunk])
            h = hidden.expand(len(chunk), -1, -1)
            logits = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=h),
                                decoder_input_ids=dec, use_cache=False).logits
            scores.extend(self._gather(torch.log_softmax(logits.float(), dim=-1), chunk))
        return scores

    def _score_s2s_naive(self, prompt: list[int], cands: list[list[int]]) -> list[float]:
        import torch

        scores = []
        for c in cands:
            if not c:
                scores.append(0.0)
                continue
            dec = torch.tensor([[self.decoder_start_id] + c[:-1]])
            logits = self.model(input_ids=torch.tensor([prompt]), decoder_input_ids=dec,
                                use_cache=False).logits
            lp = torch.log_softmax(logits[0].float(), dim=-1)
            scores.append(float(lp.gather(-1, torch.tensor(c)[:, None]).sum()))
        return scores
