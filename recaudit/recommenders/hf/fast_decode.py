"""A lean decode step for Llama-family causal LMs: the same formulas, a fifth of the calls.

A decode step of a small model on a CPU is dominated by calls, not arithmetic: transformers'
forward of SmolLM2-135M makes about 1,200 tensor operations and 200 module calls per step, and
at 16 rows they took about as long as the step's matmuls (measured on a 2-core AMD EPYC: 46 of
106 ms). :class:`LeanDecoder` runs the step of ``LlamaForCausalLM`` / ``MistralForCausalLM`` /
``Qwen2ForCausalLM`` (full attention) directly on the model's own parameters:

    h = embed(token)
    per layer:  x = RMSNorm(h);  q, k, v = x [Wq; Wk; Wv]^T (+ bias);  rotary(q, k)
                K, V = cache + (k, v);  h = h + attention(q, K, V) Wo^T
                x = RMSNorm(h);  g, u = x [Wg; Wu]^T;  h = h + (silu(g) * u) Wd^T
    logits = RMSNorm(h) Wlm^T

with RMSNorm(x) = w * x / sqrt(mean(x^2) + eps) in fp32 (transformers' ``LlamaRMSNorm``), the
rotary cos/sin from the model's own rotary module, q/k/v and gate/up fused into one matmul each,
on the verified heights (:mod:`.heights`: the panel kernel, else oneDNN), and the key-block
attention (:mod:`.decode_attention`). Every operation is row-wise or verified batch-invariant, so
a row's output does not depend on its batch; it is not bit-identical to transformers' forward (other
fused shapes round differently), so the fingerprint's numerics tag says which path ran. At load
the step is checked against transformers' forward on probe prompts (logits within
:data:`TOLERANCE`, :meth:`LeanDecoder.agrees_with_forward`) and for each row alone against the
same rows together (bit for bit, :meth:`LeanDecoder.keeps_rows_apart`); it is not used where
either fails. In fp32 the norm is torch's fused ``rms_norm`` (the same formula, one call); the
residual adds run inside the o and down matmuls (the panel kernel's add, oneDNN's sum post-op)
where that was shown bit-identical to a separate add at every kept height
(:func:`.heights.fused_add_is_exact`).
Each call after a large matmul pays for code and data the weights evicted from the caches, so
fewer calls is faster here.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from .decode_attention import blocked_decode_attention, plan_blocks
from .heights import Heights, decode_weight, fused_add_is_exact, verify_heights
from .kv import output_cache

__all__ = ["LeanDecoder", "TOLERANCE"]

_ARCHITECTURES = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"}
# largest |logit difference| to transformers' forward accepted at load
TOLERANCE = 1e-3


class _Fused:
    """A linear layer made of several stacked ones (its own weights; checked heights)."""

    def __init__(self, parts: list[Any]):
        import torch

        self.weight = torch.cat([p.weight for p in parts]).contiguous()
        biases = [p.bias for p in parts]
        self.bias = None if all(b is None for b in biases) else torch.cat([
            b if b is not None else p.weight.new_zeros(p.out_features)
            for b, p in zip(biases, parts, strict=True)])
        self.in_features = parts[0].in_features
        self.out_features = self.weight.shape[0]
        self.sizes = [p.out_features for p in parts]


# positions of room a cache layer gains when it is reallocated
_ROOM = 64


def _append(store: Any, name: str, new: Any) -> Any:
    """Append one position to a cache layer's ``keys`` or ``values``; return the result.

    Written in place into a buffer with room for :data:`_ROOM` more steps, of which the
    layer's tensor is a view, instead of concatenating (a copy of the whole cache per layer and
    step: 18 ms of a 145 ms step at 32 rows). Where the tensor is no longer that view (rows
    selected, merged or padded since), a new buffer is made.
    """
    cur = getattr(store, name)
    buf = getattr(store, f"_recaudit_{name}", None)
    rows, heads, width, dim = cur.shape
    if not (buf is not None and buf.shape[0] == rows and buf.shape[2] > width
            and buf.data_ptr() == cur.data_ptr() and buf.stride() == cur.stride()):
        buf = cur.new_empty(rows, heads, width + _ROOM, dim)
        buf[:, :, :width] = cur
        setattr(store, f"_recaudit_{name}", buf)
    buf[:, :, width:width + 1] = new
    view = buf[:, :, :width + 1]
    setattr(store, name, view)
    return view


class LeanDecoder:
    """The decode step of a Llama-family model (see module docstring)."""

    def __init__(self, model: Any, heights: Heights, fused: list[tuple[_Fused, _Fused]]):
        self.model = model
        self.heights = heights
        #: the layers whose output the residual adds to (o and down projections)
        self.residual = tuple(m for layer in model.model.layers
                              for m in (layer.self_attn.o_proj, layer.mlp.down_proj))
        #: the residual adds run as those matmuls' sum post-op (checked exact at load)
        self.fused_add = fused_add_is_exact(list(self.residual), heights)
        inner = model.model
        self.embed = inner.embed_tokens
        self.rotary = inner.rotary_emb
        self.norm = inner.norm
        self.lm_head = model.lm_head
        self.layers = list(inner.layers)
        self.fused = fused
        cfg = model.config
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.scaling = self.layers[0].self_attn.scaling
        #: the step compiled by torch.compile (:func:`.compiled_step.compile_lean_step`), or
        #: None: the eager step
        self.compiled: Any = None

    @classmethod
    def build(cls, model: Any, heights: Heights | None) -> tuple[LeanDecoder | None, str]:
        """Return the decoder and "", or None and why it does not serve this model."""
        if heights is None:
            return None, "decode matmuls are not on verified heights"
        name = type(model).__name__
        if name not in _ARCHITECTURES:
            return None, f"{name} is not a Llama-family causal LM"
        cfg = model.config
        if getattr(cfg, "hidden_act", "silu") != "silu" or getattr(cfg, "pretraining_tp", 1) != 1:
            return None, "activation or tensor-parallel layout differs from Llama's"
        try:
            fused = []
            for layer in model.model.layers:
                att, mlp = layer.self_attn, layer.mlp
                fused.append((_Fused([att.q_proj, att.k_proj, att.v_proj]),
                              _Fused([mlp.gate_proj, mlp.up_proj])))
        except AttributeError as exc:
            return None, f"unexpected layout ({exc})"
        shapes = [f for pair in fused for f in pair]
        checked = verify_heights(shapes, candidates=heights.heights,
                                 backend=heights.backend)
        if checked is None or checked.heights != heights.heights:
            return None, "the fused q/k/v and gate/up matmuls lose rows' bits at some heights"
        return cls(model, heights, fused), ""

    def _linear(self, x: Any, lin: Any) -> Any:
        return self.heights.linear(x, decode_weight(lin), lin.bias)

    def _linear_add(self, x: Any, residual: Any, lin: Any) -> Any:
        return self.heights.linear_add(x, decode_weight(lin), lin.bias, residual,
                                       self.fused_add)

    @staticmethod
    def _rms(h: Any, norm: Any) -> Any:
        import torch

        if h.dtype == torch.float32 and norm.weight.dtype == torch.float32:
            # one fused call for the same formula (no casts in fp32)
            return torch.rms_norm(h, (h.shape[-1],), norm.weight, norm.variance_epsilon)
        x = h.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
        return norm.weight * x.to(h.dtype)

    def _rotary(self, h: Any, positions: Any) -> tuple[Any, Any]:
        """Return the model's rotary cos and sin at ``positions`` ([n, T, dim]).

        The sin's first half is negated (for :meth:`_rotate`).
        """
        import torch

        cos, sin = self.rotary(h, positions)
        half = sin.shape[-1] // 2
        return cos, torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)

    @staticmethod
    def _rotate(x: Any, cos: Any, signed_sin: Any) -> Any:
        """Rotary embedding: x cos + rotate_half(x) sin, rotate_half(x) = (-x2, x1).

        Written as x cos + (x2, x1) (-sin1, sin2): a roll and the sign folded into the sin
        (the same products), three calls.
        """
        import torch

        return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, -1), signed_sin)

    def _rows_alone(self, q: Any, keys: Any, values: Any, left_pad: list[int],
                    rows: list[int]) -> Any:
        """SDPA of the given rows, each on its unpadded keys (a block that failed its check)."""
        import torch
        import torch.nn.functional as F

        group = self.heads // self.kv_heads
        out = []
        for b in rows:
            k = keys[b:b + 1, :, left_pad[b]:].repeat_interleave(group, 1)
            v = values[b:b + 1, :, left_pad[b]:].repeat_interleave(group, 1)
            o = F.scaled_dot_product_attention(q[b:b + 1], k, v, scale=self.scaling)
            out.append(o.transpose(1, 2))
        return torch.cat(out)

    def prefill_tails(self, ids: Any, lens: list[int], cache: Any, start: int) -> Any:
        """Prefill right-padded prompt tails continuing ``start`` cached positions per row.

        ``ids`` [n, T] (row b's tail: its first ``lens[b]`` tokens), ``cache``: n rows of
        ``start`` positions each (the shared head's). Every layer's keys and values gain the
        tails' T positions (padding included: never read). Each row's attention is one SDPA call
        on its own queries and keys (causal, aligned to the last key), the call it makes alone;
        the matmuls run on the verified heights. Returns the logits at each row's last token
        [n, vocab].
        """
        import torch
        import torch.nn.functional as F

        n, width = ids.shape
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        group = heads // kv_heads
        h = self.embed(ids).reshape(n * width, -1)
        positions = start + torch.arange(width, device=ids.device)[None, :].expand(n, width)
        cos, sin = self._rotary(h, positions)
        cos, sin = cos[:, None], sin[:, None]  # [n, 1, T, dim]
        masks = {}
        for i, (layer, (qkv, gate_up)) in enumerate(zip(self.layers, self.fused, strict=True)):
            out = self._linear(self._rms(h, layer.input_layernorm), qkv)
            out = out.view(n, width, heads + 2 * kv_heads, dim).transpose(1, 2)
            qk = self._rotate(out[:, :heads + kv_heads], cos, sin)
            store = cache.layers[i]
            store.keys = torch.cat([store.keys, qk[:, heads:]], dim=2)
            store.values = torch.cat([store.values, out[:, heads + kv_heads:]], dim=2)
            att = h.new_zeros(n, width, heads, dim)
            for b, m in enumerate(lens):
                n_k = start + m
                if m > 1 and (m, n_k) not in masks:  # causal, aligned to the last key
                    masks[m, n_k] = torch.ones(m, n_k, dtype=torch.bool, device=h.device).tril(
                        diagonal=n_k - m).repeat(group, 1)
                # a key head's query heads stacked as one sequence of group * m queries
                o = F.scaled_dot_product_attention(
                    qk[b:b + 1, :heads, :m].contiguous().view(1, kv_heads, group * m, dim),
                    store.keys[b:b + 1, :, :n_k].contiguous(),
                    store.values[b:b + 1, :, :n_k].contiguous(),
                    attn_mask=masks.get((m, n_k)), scale=self.scaling)
                att[b, :m] = o.view(heads, m, dim).transpose(0, 1)
            h = h + self._linear(att.view(n * width, heads * dim), layer.self_attn.o_proj)
            g, u = self._linear(self._rms(h, layer.post_attention_layernorm),
                                gate_up).split(gate_up.sizes, dim=-1)
            h = h + self._linear(F.silu(g).mul_(u), layer.mlp.down_proj)
        rows = torch.arange(n, device=ids.device) * width + torch.tensor(lens, device=ids.device)
        last = h[rows - 1]
        return self._linear(self._rms(last, self.norm), self.lm_head)

    def step(self, input_ids: Any, position_ids: Any, cache: Any, left_pad: list[int]) -> Any:
        """Run one decode step: ``input_ids`` [n, 1], ``position_ids`` [n, 1].

        The cache's layers gain this token's keys and values (row b's keys are its last
        ``kv_len - left_pad[b]`` positions). Returns an object with ``logits`` [n, 1, vocab]
        and ``cache``, like a forward pass's output. The compiled step where there is one.
        """
        if self.compiled is not None:
            return self.compiled.step(input_ids, position_ids, cache, left_pad)
        return self._eager_step(input_ids, position_ids, cache, left_pad)

    def step_inputs(self, input_ids: Any, position_ids: Any) -> tuple[Any, Any, Any]:
        """Return a step's embeddings [n, hidden] and rotary cos, sin [n, 1, 1, dim]."""
        h = self.embed(input_ids[:, 0])
        cos, sin = self._rotary(h[:, None], position_ids)
        return h, cos[:, None], sin[:, None]

    def attend(self, q: Any, k: Any, v: Any, layer: int, ctx: dict[str, Any]) -> Any:
        """Append k, v to layer ``layer`` of ``ctx["cache"]``; return its key-block attention.

        q [n, heads, 1, dim], k and v [n, kv_heads, 1, dim]; ``ctx``: the step's ``cache``,
        ``left_pad`` and ``blocks`` (planned at the first layer: the same in every layer).
        Returns [n, heads * dim].
        """
        store = ctx["cache"].layers[layer]
        keys, values = _append(store, "keys", k), _append(store, "values", v)
        left_pad = ctx["left_pad"]
        if ctx.get("blocks") is None:
            ctx["blocks"] = plan_blocks(left_pad, keys.shape[2], self.kv_heads, keys.dtype,
                                        keys.device)
        att = blocked_decode_attention(
            q, keys, values, left_pad, self.scaling,
            lambda rows: self._rows_alone(q, keys, values, left_pad, rows), ctx["blocks"])
        return att.reshape(q.shape[0], -1)

    def layer_stack(self, h: Any, cos: Any, sin: Any, handles: list[tuple[Any, ...]],
                    head: Any, linear: Any, linear_add: Any, attend: Any) -> Any:
        """Run the step's formulas (module docstring) from the embeddings to the logits.

        On pluggable primitives: ``linear(x, handle)``, ``linear_add(x, residual, handle)``
        and ``attend(q, k, v, layer)`` (-> [n, heads * dim]); ``handles[i]`` names layer i's
        q/k/v, o, gate/up and down matmuls and ``head`` the LM head, as those take them. The
        eager step passes the layers and :attr:`heights`; the compiled step its custom ops
        (:mod:`.compiled_step`), so both run these same formulas.
        """
        import torch.nn.functional as F

        n = h.shape[0]
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        sizes = self.fused[0][1].sizes
        for i, layer in enumerate(self.layers):
            qkv, o, gate_up, down = handles[i]
            out = linear(self._rms(h, layer.input_layernorm), qkv)
            # q and k side by side in the fused output: one rotary call for both
            qk = self._rotate(out[:, :(heads + kv_heads) * dim].view(n, heads + kv_heads, 1, dim),
                              cos, sin)
            v = out[:, (heads + kv_heads) * dim:].view(n, kv_heads, 1, dim)
            att = attend(qk[:, :heads].contiguous(), qk[:, heads:].contiguous(), v.contiguous(),
                         i)
            h = linear_add(att, h, o)
            g, u = linear(self._rms(h, layer.post_attention_layernorm), gate_up).split(
                sizes, dim=-1)
            h = linear_add(F.silu(g) * u, h, down)
        return linear(self._rms(h, self.norm), head)

    def _eager_step(self, input_ids: Any, position_ids: Any, cache: Any,
                    left_pad: list[int]) -> Any:
        h, cos, sin = self.step_inputs(input_ids, position_ids)
        ctx: dict[str, Any] = {"cache": cache, "left_pad": left_pad, "blocks": None}
        handles = [(qkv, layer.self_attn.o_proj, gate_up, layer.mlp.down_proj)
                   for layer, (qkv, gate_up) in zip(self.layers, self.fused, strict=True)]
        logits = self.layer_stack(h, cos, sin, handles, self.lm_head, self._linear,
                                  self._linear_add,
                                  lambda q, k, v, i: self.attend(q, k, v, i, ctx))
        return SimpleNamespace(logits=logits[:, None], cache=cache, past_key_values=cache)

    def _probe(self, rows: int, seed: int) -> tuple[Any, Any, Any, Any]:
        """Return fixed random probe tokens and the forward's cache of their first 5.

        (prompts [rows, 9], next tokens [rows, 1], their positions, that cache).
        """
        import torch

        gen = torch.Generator().manual_seed(seed)
        vocab = self.embed.num_embeddings
        device = self.embed.weight.device
        ids = torch.randint(0, vocab, (rows, 9), generator=gen).to(device)
        nxt = torch.randint(0, vocab, (rows, 1), generator=gen).to(device)
        pos = torch.full((rows, 1), 9, device=device)
        return ids, nxt, pos, output_cache(self.model(input_ids=ids[:, :5], use_cache=True))

    def agrees_with_forward(self, tolerance: float = TOLERANCE) -> tuple[bool, float]:
        """Check the tail prefill and one step against the model's own forward.

        Two fixed random prompts of 9 tokens: their last 4 tokens are prefilled by
        :meth:`prefill_tails` on the forward's cache of the first 5, and compared with the
        forward of all 9; then the next step is run by the forward and by :meth:`step` on
        copies of the forward's cache. Returns (largest |logit difference| <= ``tolerance``,
        that difference).
        """
        import copy
        import inspect

        import torch

        with torch.inference_mode():
            ids, nxt, pos, head = self._probe(2, 3)
            out = self.model(input_ids=ids, use_cache=True)
            tails = self.prefill_tails(ids[:, 5:], [4, 4], head, 5).float()
            diff = float((tails - out.logits[:, -1].float()).abs().max())
            cache = output_cache(out)
            mine = self.step(nxt, pos, copy.deepcopy(cache), [0, 0]).logits.float()
            params = inspect.signature(self.model.forward).parameters
            name = "cache" if "cache" in params else "past_key_values"
            theirs = self.model(input_ids=nxt, position_ids=pos, use_cache=True,
                                **{name: cache}).logits.float()
        diff = max(diff, float((mine - theirs).abs().max()))
        return diff <= tolerance, diff

    def keeps_rows_apart(self) -> bool:
        """Check that a row's tail prefill and step are bit-identical alone and in a batch.

        Three fixed random prompts of 9 tokens: tails of 4, 2 and 3 tokens are prefilled on
        the forward's cache of their first 5, together (right-padded) and each alone; the
        next step runs on the forward's caches of all 9 tokens, together and alone. The
        heights and key blocks are checked on their own; this checks the whole pass (norms,
        rotary, activation, the per-row attention).
        """
        import copy

        import torch

        def row(cache: Any, b: int) -> Any:
            alone = copy.deepcopy(cache)
            alone.batch_select_indices(torch.tensor([b], device=cache.layers[0].keys.device))
            return alone

        lens = [4, 2, 3]
        with torch.inference_mode():
            ids, nxt, pos, head = self._probe(3, 4)
            together = self.prefill_tails(ids[:, 5:], lens, copy.deepcopy(head), 5)
            for b, m in enumerate(lens):
                single = self.prefill_tails(ids[b:b + 1, 5:5 + m], [m], row(head, b), 5)
                if not torch.equal(single[0], together[b]):
                    return False
            cache = output_cache(self.model(input_ids=ids, use_cache=True))
            together = self.step(nxt, pos, copy.deepcopy(cache), [0, 0, 0]).logits
            for b in range(3):
                single = self.step(nxt[b:b + 1], pos[b:b + 1], row(cache, b), [0]).logits
                if not torch.equal(single[0], together[b]):
                    return False
        return True

