"""The lean decode step compiled by ``torch.compile`` (opt-in: ``model_options: {compile: true}``).

Between a lean step's matmuls sit about ten small calls a layer (norms, rotary, splits, the
activation); each pays for the caches the matmul before it evicted (:mod:`.fast_decode`). This
is what vLLM's CPU backend removes by compiling its model with Inductor. Here the step's body
(:meth:`.fast_decode.LeanDecoder.step`'s formulas, after the embedding and rotary tables) is
compiled the same way, with the parts whose bits are checked kept as they are, as opaque
custom ops that call the eager code:

- every matmul: ``recaudit::lean_linear`` / ``recaudit::lean_linear_add``, on the verified
  heights (:class:`.heights.Heights`: the panel kernel or oneDNN);
- the cache append and the key-block attention: ``recaudit::lean_attend``
  (:func:`.decode_attention.blocked_decode_attention`, each block length checked).

Inductor fuses the rest (RMSNorm, rotary, splits, silu * up) into a few C++ kernels. The batch
dimension is unbacked, so one graph serves every row count, 1 included: no recompiles when
rows finish. The fused kernels round differently from the eager calls (SmolLM2: chosen-token
log-probs within 3e-5), so the numerics tag says ``lean2c``; the load checks that the eager
step passes run again on the compiled one (logits within :data:`.fast_decode.TOLERANCE` of
the model's forward, each row alone bit-identical to rows together), and where compiling or a
check fails the eager step serves and the batching line says why.

Costs, measured on a 2-core AMD EPYC with SmolLM2-135M: about 45 s to compile cold, about 5 s
with Inductor's on-disk cache warm (``TORCHINDUCTOR_CACHE_DIR``); needs a C++ compiler.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

__all__ = ["CompiledStep", "compile_lean_step"]

# the live compiled steps, by id: the custom ops find their decoder here
_STEPS: dict[int, CompiledStep] = {}
_IDS = itertools.count()
_OPS: list[Any] = []


def _ops() -> tuple[Any, Any, Any]:
    """Register the three custom ops once per process; return them."""
    if _OPS:
        return _OPS[0]
    import torch

    # explicit schemas: this module's annotations are strings (``from __future__``)
    @torch.library.custom_op("recaudit::lean_linear", mutates_args=(),
                             schema="(Tensor x, int step, int index) -> Tensor")
    def lean_linear(x, step, index):
        return _STEPS[step].linear(x, index)

    @lean_linear.register_fake
    def _(x, step, index):
        return x.new_empty(x.shape[0], _STEPS[step].out_features[index])

    @torch.library.custom_op("recaudit::lean_linear_add", mutates_args=(),
                             schema="(Tensor x, Tensor residual, int step, int index) -> Tensor")
    def lean_linear_add(x, residual, step, index):
        return _STEPS[step].linear_add(x, residual, index)

    @lean_linear_add.register_fake
    def _(x, residual, step, index):
        return torch.empty_like(residual)

    @torch.library.custom_op("recaudit::lean_attend", mutates_args=(),
                             schema="(Tensor q, Tensor k, Tensor v, int step, int layer) -> Tensor")
    def lean_attend(q, k, v, step, layer):
        return _STEPS[step].attend(q, k, v, layer)

    @lean_attend.register_fake
    def _(q, k, v, step, layer):
        return q.new_empty(q.shape[0], q.shape[1] * q.shape[3])

    _OPS.append((lean_linear, lean_linear_add, lean_attend))
    return _OPS[0]


class CompiledStep:
    """A :class:`.fast_decode.LeanDecoder`'s decode step, its glue compiled (module doc)."""

    def __init__(self, lean: Any):
        import torch

        self.lean = lean
        self.id = next(_IDS)
        _STEPS[self.id] = self
        self._weights: list[tuple[Any, Any]] = []
        #: each matmul's output width (the custom ops' shapes)
        self.out_features: list[int] = []
        self._context: dict[str, Any] = {}
        self._index = [(self._add(qkv), self._add(layer.self_attn.o_proj), self._add(gate_up),
                        self._add(layer.mlp.down_proj))
                       for layer, (qkv, gate_up) in zip(lean.layers, lean.fused, strict=True)]
        self._head = self._add(lean.lm_head)
        self._custom_ops = _ops()
        self._compiled = torch.compile(self._body, dynamic=False, fullgraph=True)

    def close(self) -> None:
        """Forget this step (its custom ops no longer find it)."""
        _STEPS.pop(self.id, None)

    def _add(self, lin: Any) -> int:
        from .heights import decode_weight

        self._weights.append((decode_weight(lin), lin.bias))
        self.out_features.append(sum(lin.sizes) if hasattr(lin, "sizes") else lin.out_features)
        return len(self._weights) - 1

    def linear(self, x: Any, index: int) -> Any:
        """``recaudit::lean_linear``: matmul ``index`` on the verified heights."""
        weight, bias = self._weights[index]
        return self.lean.heights.linear(x, weight, bias)

    def linear_add(self, x: Any, residual: Any, index: int) -> Any:
        """``recaudit::lean_linear_add``: ``residual +`` matmul ``index`` (fused where exact)."""
        weight, bias = self._weights[index]
        return self.lean.heights.linear_add(x, weight, bias, residual, self.lean.fused_add)

    def attend(self, q: Any, k: Any, v: Any, layer: int) -> Any:
        """``recaudit::lean_attend``: the eager :meth:`.fast_decode.LeanDecoder.attend`."""
        return self.lean.attend(q, k, v, layer, self._context)

    def _body(self, h: Any, cos: Any, sin: Any) -> Any:
        """Run the lean step's formulas (``layer_stack``) on the custom ops: the traced graph."""
        import torch

        linear, linear_add, attend = self._custom_ops
        step, n = self.id, h.shape[0]
        torch._check(n >= 1)
        torch._check(cos.shape[0] == n)
        torch._check(sin.shape[0] == n)
        return self.lean.layer_stack(
            h, cos, sin, self._index, self._head,
            lambda x, index: linear(x, step, index),
            lambda x, residual, index: linear_add(x, residual, step, index),
            lambda q, k, v, layer: attend(q, k, v, step, layer))

    def step(self, input_ids: Any, position_ids: Any, cache: Any, left_pad: list[int]) -> Any:
        """Run one decode step, as :meth:`.fast_decode.LeanDecoder.step` does."""
        import torch

        h, cos, sin = self.lean.step_inputs(input_ids, position_ids)
        for t in (h, cos, sin):  # one graph for every row count
            torch._dynamo.decorators.mark_unbacked(t, 0)
        self._context = {"cache": cache, "left_pad": left_pad, "blocks": None}
        try:
            logits = self._compiled(h, cos, sin)
        finally:
            self._context = {}
        return SimpleNamespace(logits=logits[:, None], cache=cache, past_key_values=cache)


def compile_lean_step(lean: Any) -> str:
    """Serve ``lean``'s decode step compiled; return "" or why it is not.

    The compiled step must pass the checks the eager one passed
    (:meth:`.fast_decode.LeanDecoder.agrees_with_forward`, ``keeps_rows_apart``); where
    compiling or a check fails, the eager step serves.
    """
    from recaudit.errors import first_line

    try:
        lean.compiled = CompiledStep(lean)
        agrees, diff = lean.agrees_with_forward()
        why = ("" if agrees and lean.keeps_rows_apart() else
               f"its logits differ from the forward's by {diff:.1e}" if not agrees else
               "a row's compiled step depends on the other rows of its batch")
    except Exception as exc:  # noqa: BLE001 - no C++ compiler, an unsupported op, ...
        why = f"torch.compile failed: {first_line(exc)}"
    if why and lean.compiled is not None:
        lean.compiled.close()
        lean.compiled = None
    return why
