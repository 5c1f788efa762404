"""Batch invariance: fixed-shape tiles, row-wise attention and their load-time self-check.

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
are part of the fingerprint. The check runs where the model will serve
(``model_options.device``: the CPU's BLAS, or a GPU's cuBLAS on the GPU-resident weights).
Batched and one-at-a-time generation are then bit-identical, not just close. Sampling
(temperature > 0) uses one ``torch.Generator`` per prompt, seeded from ``decoding.seed`` and the
prompt's token ids, so it is reproducible and batch-invariant too.

Where invariance cannot be established (attention with sliding windows or chunks, a model that
does not use the attention interface, a BLAS on which no M passes) exactness wins over speed:
generation runs one request at a time, and :meth:`HFRecommender.batch_invariance` says
"no (reason)" for the plan line, the provenance and the report. ``batching="plain"``
(``model_options: {batching: plain}``) opts into plain batching instead, and is reported as such.
"""

from __future__ import annotations

import contextvars
import types
from dataclasses import dataclass
from typing import Any

from .decode_attention import KEY_BLOCK, blocked_decode_attention
from .fast_decode import LeanDecoder
from .heights import Heights, decode_weight, verify_heights

__all__ = ["BatchInvariance", "BATCHING_MODES", "DECODE_ROW_CHOICES", "PREFILL_ROW_CHOICES",
           "choose_tile_rows", "establish_batch_invariance", "tile_seconds"]

_EXACT_ATTN = "recaudit_rowwise"
# Tile heights in order of preference (fastest first, as measured by the inference benchmark).
PREFILL_ROW_CHOICES = (256, 128, 64, 32, 16)
DECODE_ROW_CHOICES = (16, 32, 8, 4, 2, 1)
BATCHING_MODES = ("auto", "plain")
_CROSS_ATTN_NAMES = {"encoder_attn", "EncDecAttention", "crossattention", "cross_attn",
                     "cross_attention"}


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
    batch-invariant). ``prefill_rows`` / ``decode_rows`` are the BLAS tile heights M_p / M_d in
    ``"tiles"`` mode; ``heights`` the verified heights (:mod:`.heights`), which serve the
    decode whenever they exist and the prefill too unless a prefill tile height was asked for
    (then ``decode_rows`` and, respectively, ``prefill_rows`` are None).
    """

    mode: str
    reason: str = ""
    prefill_rows: int | None = None
    decode_rows: int | None = None
    heights: Heights | None = None
    lean_decoder: Any = None
    lean_reason: str = ""

    @property
    def exact(self) -> bool:
        """True when no request's output can depend on the other requests of its batch."""
        return self.mode in ("tiles", "sequential")

    def rows(self, phase: str) -> int | Heights | None:
        """Return the rows of every linear-layer matmul in a phase ("prefill" or "decode").

        A BLAS tile height, the verified heights, or None (no tiles).
        """
        if self.mode != "tiles":
            return None
        if phase == "decode":
            return self.heights if self.heights is not None else self.decode_rows
        return self.prefill_rows if self.prefill_rows is not None else self.heights

    def numerics(self) -> str:
        """Return the fingerprint's numerics tag: outputs differ between tags, never within one."""
        if self.mode == "tiles":
            heights = None if self.heights is None else self.heights.tag
            prefill = self.prefill_rows if self.prefill_rows is not None else heights
            decode = self.decode_rows if self.decode_rows is not None else heights
            # lean2: the lean step (fused RMSNorm in fp32) and the lean tail prefill
            lean = "" if self.lean_decoder is None else \
                "-lean2c" if self.lean_decoder.compiled is not None else "-lean2"
            return f"tiles-p{prefill}-d{decode}-kb{KEY_BLOCK}{lean}"
        return self.mode

    def describe(self) -> str:
        """One line for the plan, the provenance and the report."""
        if self.mode == "tiles":
            heights = self.heights
            on_heights = ""
            if heights is not None:
                note = f"; {heights.note}" if heights.note else ""
                on_heights = f"on {heights.backend.name} at {heights.describe()} rows{note}"
            prefill = (f"prefill {self.prefill_rows} rows" if self.prefill_rows is not None
                       else f"prefill {on_heights}")
            decode = (f"decode {self.decode_rows} rows" if self.decode_rows is not None
                      else f"decode {on_heights}")
            if self.prefill_rows is None and self.decode_rows is None:
                prefill, decode = "prefill", f"decode {on_heights}"
            compiled = (" (compiled by torch.compile)" if self.lean_decoder is not None
                        and self.lean_decoder.compiled is not None else "")
            lean = (f"; decode steps on the lean Llama path{compiled}, checked against the "
                    "model's forward at load" if self.lean_decoder is not None else "")
            return (f"yes (fixed-shape tiles: {prefill} and {decode}, "
                    f"verified on this model's weights at load; decode attention in key blocks "
                    f"of {KEY_BLOCK}, each block length checked at first use{lean})")
        if self.mode == "sequential":
            return (f"no ({self.reason}); requests run one at a time, so no output depends on "
                    "its batch")
        return (f"no ({self.reason}); plain batching: an output may depend on the other "
                "requests of its batch")


_LAYOUT: contextvars.ContextVar[_RowLayout | None] = contextvars.ContextVar(
    "recaudit_row_layout", default=None)
# Rows of every linear-layer matmul while a generation/scoring phase runs: a tile height, the
# verified heights (decode), or None (plain F.linear).
_TILE_ROWS: contextvars.ContextVar[int | Heights | None] = contextvars.ContextVar(
    "recaudit_tile_rows", default=None)
# True while a decode step runs (one new token per row): attention in key blocks
_DECODE_STEP: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "recaudit_decode_step", default=False)
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

    def rows_alone(rows: list[int]) -> Any:
        """Attend the given rows, each on its own unpadded keys: [len(rows), q_len, H, D]."""
        part = query.new_zeros(len(rows), q_len, query.shape[1], value.shape[-1])
        for j, b in enumerate(rows):
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
                # queries continuing a cached prefix: causal, aligned to the last key (SDPA's
                # own is_causal is aligned to the first key)
                mask = torch.ones(n_q, n_k, dtype=torch.bool, device=query.device).tril(
                    diagonal=n_k - n_q)
            extra = dict(kwargs)
            if bias is not None:
                rb = b if bias.shape[0] > 1 else 0
                extra["position_bias"] = bias[rb:rb + 1, :, q_lo:q_hi, k_lo:k_hi].contiguous()
            ob, _ = sdpa_attention_forward(module, qb, kb, vb, mask, **extra)
            part[j, q_lo:q_hi] = ob[0]
        return part

    if (_DECODE_STEP.get() and q_len == 1 and not cross and not layout.in_encoder
            and layout.right_pad is None and bias is None and kwargs.get("softcap") is None
            and kwargs.get("s_aux") is None and kwargs.get("sliding_window") is None):
        pads = layout.left_pad if layout.left_pad is not None else [0] * n_rows
        scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
        return blocked_decode_attention(query, key, value, pads, scaling, rows_alone), None
    return rows_alone(list(range(n_rows))), None


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
    if isinstance(rows, Heights):
        return rows.linear(x2, decode_weight(self), self.bias).reshape(*lead, self.out_features)
    m = x2.shape[0]
    out = x2.new_empty(m, self.out_features)
    for start in range(0, m, rows):
        n = min(rows, m - start)
        tile = x2.new_zeros(rows, k)
        tile[:n] = x2[start:start + n]
        out[start:start + n] = F.linear(tile, self.weight, self.bias)[:n]
    return out.reshape(*lead, self.out_features)


def _tile_rows_are_invariant(lin: Any, rows: int, gen: Any) -> bool:
    """Check that a row's result under ``rows``-row tiles depends on nothing but the row.

    This is exactly the property the tiled forward relies on, checked on this layer's own
    weights: the same probe row is run alone, in a second tile beside random companions, and
    last in a tile of zero padding; the three results must be bitwise equal. The rows are
    drawn on the CPU (``gen``) and checked on the layer's device: the kernels that serve.
    """
    import torch

    k = lin.in_features
    dtype, device = lin.weight.dtype, lin.weight.device
    probe = torch.randn(1, k, generator=gen, dtype=dtype).to(device)
    layouts = [(probe, 0)]
    crowd = torch.randn(rows + 3, k, generator=gen, dtype=dtype).to(device)
    crowd[rows + 1] = probe[0]
    layouts.append((crowd, rows + 1))
    pad = torch.zeros(rows, k, dtype=dtype, device=device)
    pad[rows - 1] = probe[0]
    layouts.append((pad, rows - 1))
    token = _TILE_ROWS.set(rows)
    try:
        outs = [_tiled_linear_forward(lin, x)[pos] for x, pos in layouts]
    finally:
        _TILE_ROWS.reset(token)
    return all(torch.equal(outs[0], o) for o in outs[1:])


def tile_seconds(layers: list[tuple[Any, int]], rows: int, reps: int = 2) -> float:
    """Time one ``rows``-row tile through the model's linear layers, in seconds.

    For each distinct shape (layer, multiplicity): the best of ``reps`` timed calls after a
    warm-up, times its count; on the layer's device (synchronized on a GPU).
    """
    import time

    import torch
    import torch.nn.functional as F

    total = 0.0
    for lin, count in layers:
        device = lin.weight.device
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        x = torch.randn(rows, lin.in_features, dtype=lin.weight.dtype, device=device)
        F.linear(x, lin.weight, lin.bias)
        best = float("inf")
        for _ in range(reps):
            sync()
            t0 = time.perf_counter()
            F.linear(x, lin.weight, lin.bias)
            sync()
            best = min(best, time.perf_counter() - t0)
        total += count * best
    return total


def choose_tile_rows(linears: list[Any], prefill_rows: int | None = None,
                     decode_rows: int | None = None, decode: bool = True, prefill: bool = True
                     ) -> tuple[int | None, int | None]:
    """Tile heights (M_p, M_d) for prefill and decode, among those this BLAS keeps invariant.

    Every candidate is self-checked on each distinct layer shape; the first that passes in a
    fixed order of preference wins (:data:`PREFILL_ROW_CHOICES`, :data:`DECODE_ROW_CHOICES`).
    The order is the speed ranking measured by ``benchmarks/bench_inference.py`` (cost
    ``ceil(R / M) * t(M)`` of a reference workload: decode 16 rows a step, prefill 16 prompts of
    64 tokens): a decode tile the size of a full batch, the largest prefill tile. It is fixed,
    not timed at load, so every load of a model on a machine gets the same numerics and the
    same fingerprint (timing under load picked different values, and invalidated the cache).
    The choice never depends on the batch size. ``prefill_rows`` / ``decode_rows`` force a value
    (still checked). ``None`` where nothing passes; M_d (M_p) is not searched (None) with
    ``decode=False`` (``prefill=False``): that phase runs on verified heights instead.
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

    def choose(forced: int | None, choices: tuple[int, ...]) -> int | None:
        if forced is not None:
            return int(forced) if passes(int(forced)) else None
        return next((m for m in choices if passes(m)), None)

    return (choose(prefill_rows, PREFILL_ROW_CHOICES) if prefill else None,
            choose(decode_rows, DECODE_ROW_CHOICES) if decode else None)


def _attention_is_padding_only(config: Any) -> bool:
    """Return True when the model's attention masks are only causal/padding (no sliding windows)."""
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


def establish_batch_invariance(model: Any, requested: str, prefill_rows: int | None,
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

    if not _attention_is_padding_only(model.config):
        return fallback("the attention uses sliding windows or chunks, which the row-wise "
                        "attention does not reproduce")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    heights = None
    with torch.inference_mode():
        if decode_rows is None:  # a forced decode tile height keeps tiles
            heights = verify_heights(linears)
        # the heights serve both phases unless a BLAS tile height is forced for one
        tile_prefill = heights is None or prefill_rows is not None
        m_p, m_d = choose_tile_rows(linears, prefill_rows, decode_rows,
                                    prefill=tile_prefill, decode=heights is None)
    if (m_p is None and tile_prefill) or (m_d is None and heights is None):
        forced = [f"{n}={v}" for n, v in (("prefill_rows", prefill_rows),
                                           ("decode_rows", decode_rows)) if v is not None]
        which = f" with {', '.join(forced)}" if forced else ""
        on_gpu = any(p.device.type == "cuda" for p in model.parameters())
        return fallback(f"no tile height{which} gives row results independent of the other "
                        f"rows on this {'GPU' if on_gpu else 'CPU'}'s BLAS")
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
    lean, why = LeanDecoder.build(model, heights)
    if lean is not None:
        agrees, diff = lean.agrees_with_forward()
        if not agrees:
            lean, why = None, f"the lean step's logits differ from the forward's by {diff:.1e}"
        elif not lean.keeps_rows_apart():
            lean, why = None, "a row's lean step depends on the other rows of its batch"
    return BatchInvariance("tiles", prefill_rows=m_p, decode_rows=m_d, heights=heights,
                           lean_decoder=lean, lean_reason=why)
