"""Decode matmuls at (almost) any row count: oneDNN heights verified equal at load.

Fixed-shape tiles (:mod:`.invariance`) make a row's result independent of its companions by
always calling BLAS with the same row count M, padding the last tile. Decode steps are small:
16 active rows on a 16-row tile is ideal, 17 cost two tiles, and MKL's small-M GEMMs reach a
fraction of the machine (on a 2-core AMD EPYC with AVX2, SmolLM2-135M's layer and head matmuls took
about 100 ms per 16-row step with MKL or oneDNN on the plain weights, 51 ms with oneDNN on
weights reordered once into its blocked layout, ``torch.ops.mkldnn._reorder_linear_weight``).

oneDNN's fp32/bf16 matmul (``torch.ops.mkldnn._linear_pointwise``, the kernel Inductor uses on
CPU) has a stronger property on the CPUs measured: a row's result is the same bits at *every* row
count from 2 up (one row takes a GEMV path that rounds differently). Never assumed: at load,
:func:`verify_heights` runs each distinct layer shape at every candidate height in
:data:`DECODE_HEIGHTS` with a probe row first, last, beside random companions and zero padding,
and keeps the heights whose results equal the probe's at height 2, bit for bit. A decode matmul
of m rows then runs at the smallest kept height >= m (zero-padded; above the largest, in chunks
of it), so every call is one whose rows were shown equal to the reference: a row's output
cannot depend on the batch.

The reordered weights are a second copy of every linear layer's weights (the plain ones still
serve the prefill tiles and tied embeddings). They are made where that copy takes at most a
quarter of the free memory; else decode runs oneDNN on the plain weights, verified the same way.

On AVX2 CPUs with a C++ compiler, fp32 matmuls run on recaudit's panel kernel instead
(:mod:`.panel_gemm`: weights packed in panels, streamed once per call; 1.3x oneDNN's throughput
at 16 rows there), verified the same way at every candidate height and at one row too. The
matmul backend is part of the numerics tag (:attr:`Heights.tag`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DECODE_HEIGHTS", "Heights", "decode_weight", "kernel_probe", "onednn_available",
           "verify_heights"]

# Candidate decode heights: every count up to 16, then multiples of 8 up to 128 (the auto batch
# is at most 128 rows): at most 7 padding rows above 16.
DECODE_HEIGHTS = tuple(range(2, 17)) + tuple(range(24, 129, 8))
# the reordered copies may take at most this share of the free memory
_PACK_MEMORY_SHARE = 0.25
_PACK_ROWS_HINT = 16


def onednn_available(weight: Any) -> bool:
    """Return True where oneDNN's linear can serve ``weight`` (a CPU fp32 or bf16 tensor)."""
    import torch

    return (weight.device.type == "cpu" and weight.dtype in (torch.float32, torch.bfloat16)
            and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def _onednn_linear(x: Any, weight: Any, bias: Any) -> Any:
    """``x @ weight.T + bias`` through oneDNN (``x``: 2-D, contiguous)."""
    import torch

    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def _onednn_linear_add(x: Any, residual: Any, weight: Any, bias: Any) -> Any:
    """``residual + x @ weight.T + bias`` in one oneDNN call (a sum post-op)."""
    import torch

    return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")


def _pack(weight: Any) -> Any:
    """Return ``weight`` reordered into oneDNN's blocked layout for its matmul."""
    import torch

    return torch.ops.mkldnn._reorder_linear_weight(weight, _PACK_ROWS_HINT)


class OneDNN:
    """oneDNN's matmul as a backend of :class:`Heights`: on reordered weights when ``packed``."""

    def __init__(self, packed: bool):
        self.packed = packed
        self.name = "oneDNN (reordered weights)" if packed else "oneDNN"
        self.tag = "onednnp" if packed else "onednn"

    def pack(self, weight: Any) -> Any:
        return _pack(weight) if self.packed else weight

    @staticmethod
    def linear(x: Any, weight: Any, bias: Any) -> Any:
        return _onednn_linear(x, weight, bias)

    @staticmethod
    def linear_add(x: Any, residual: Any, weight: Any, bias: Any) -> Any:
        return _onednn_linear_add(x, residual, weight, bias)


def decode_weight(lin: Any) -> Any:
    """Return the weight a decode matmul of ``lin`` reads: its reordered copy, or the plain one."""
    return getattr(lin, "_recaudit_packed", lin.weight)


def _packing_fits(linears: list[Any]) -> bool:
    from .sizing import _free_memory_bytes

    free = _free_memory_bytes()
    need = sum(lin.weight.numel() * lin.weight.element_size() for lin in linears)
    return free is not None and need <= _PACK_MEMORY_SHARE * free


class Heights:
    """The verified decode heights of one model: run a linear on them (see module docstring).

    ``backend``: the matmul (:class:`OneDNN`, default on the plain weights, or
    :class:`.panel_gemm.PanelKernel`); ``packed``: the matmuls read copies of the weights made
    by ``backend.pack`` (``lin._recaudit_packed``).
    """

    def __init__(self, heights: tuple[int, ...], packed: bool = False, backend: Any = None):
        self.heights = tuple(sorted(heights))
        self.largest = self.heights[-1]
        self.backend = backend if backend is not None else OneDNN(packed)
        self.packed = self.backend.tag != "onednn"
        #: why a faster backend was not used ("" where none was passed over)
        self.note = ""

    @property
    def tag(self) -> str:
        """The matmul's part of the numerics tag (``onednn``, ``onednnp`` or ``panels``)."""
        return self.backend.tag

    def padded(self, m: int) -> int:
        """Rows of the call that serves ``m`` rows (``m`` <= :attr:`largest`)."""
        return next(h for h in self.heights if h >= m)

    def describe(self) -> str:
        """Return the heights as one short phrase, e.g. ``2-16, 24-128 by 8``."""
        small = [h for h in self.heights if h <= 16]
        big = [h for h in self.heights if h > 16]
        parts = []
        if small:
            whole = small == list(range(small[0], small[-1] + 1))
            parts.append(f"{small[0]}-{small[-1]}" if whole and len(small) > 1
                         else ", ".join(map(str, small)))
        if big:
            whole = big == list(range(big[0], big[-1] + 1, 8))
            parts.append(f"{big[0]}-{big[-1]} by 8" if whole and len(big) > 1
                         else ", ".join(map(str, big)))
        return ", ".join(parts)

    def linear(self, x2: Any, weight: Any, bias: Any) -> Any:
        """``F.linear`` of the 2-D ``x2`` on verified heights only."""
        m = x2.shape[0]
        if m > self.largest:
            return self._chunked(x2, weight, bias)
        h = self.padded(m)
        if h == m and x2.is_contiguous():
            return self.backend.linear(x2, weight, bias)
        tile = x2.new_zeros(h, x2.shape[1])
        tile[:m] = x2
        return self.backend.linear(tile, weight, bias)[:m]

    def linear_add(self, x2: Any, weight: Any, bias: Any, residual: Any, fused: bool) -> Any:
        """Return ``residual + F.linear(x2)`` on verified heights.

        One call where ``fused``: a sum post-op shown bit-identical to the two calls
        (:func:`fused_add_is_exact`).
        """
        m = x2.shape[0]
        if not fused or m > self.largest:
            return residual + self.linear(x2, weight, bias)
        h = self.padded(m)
        if h == m and x2.is_contiguous() and residual.is_contiguous():
            return self.backend.linear_add(x2, residual, weight, bias)
        tile = x2.new_zeros(h, x2.shape[1])
        tile[:m] = x2
        res = residual.new_zeros(h, residual.shape[1])
        res[:m] = residual
        return self.backend.linear_add(tile, res, weight, bias)[:m]

    def _chunked(self, x2: Any, weight: Any, bias: Any) -> Any:
        import torch

        return torch.cat([self.linear(x2[start:start + self.largest], weight, bias)
                          for start in range(0, x2.shape[0], self.largest)])


def _height_matches(lin: Any, weight: Any, h: int, probe: Any, reference: Any,
                    gen: Any, backend: Any) -> bool:
    """Return True when the probe row equals ``reference`` bit for bit at height ``h``.

    The probe is first and last among random companions and a zero row.
    """
    import torch

    k = lin.in_features
    x = torch.randn(h, k, generator=gen, dtype=probe.dtype)
    if h >= 4:
        x[h // 2] = 0
    x[0] = probe
    x[h - 1] = probe
    out = backend.linear(x.to(lin.weight.device), weight, lin.bias)
    return bool(torch.equal(out[0], reference) and torch.equal(out[h - 1], reference))


def _kept_heights(shapes: list[Any], candidates: tuple[int, ...], backend: Any
                  ) -> set[int] | None:
    """Return the candidate heights every layer in ``shapes`` passes (None: no packed copy)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    kept = set(candidates)
    for lin in shapes:
        dtype = lin.weight.dtype
        try:
            weight = backend.pack(lin.weight)
        except RuntimeError:
            return None
        probe = torch.randn(lin.in_features, generator=gen, dtype=dtype)
        pair = torch.zeros(2, lin.in_features, dtype=dtype)
        pair[0] = probe
        reference = backend.linear(pair.to(lin.weight.device), weight, lin.bias)[0]
        kept = {h for h in kept
                if _height_matches(lin, weight, h, probe, reference, gen, backend)}
    return kept


def _backends(shapes: list[Any], pack: bool) -> tuple[list[Any], str]:
    """Return the matmul backends to try, best first, and why the panel kernel is not one."""
    import torch

    onednn = [OneDNN(True), OneDNN(False)] if pack else [OneDNN(False)]
    if not all(lin.weight.dtype == torch.float32 for lin in shapes):
        return onednn, ""  # the panel kernel is fp32 only; nothing to report for bf16
    if not pack:
        return onednn, "panel kernel: off (no memory for its packed copy of the weights)"
    from .panel_gemm import panel_kernel

    kernel, why = panel_kernel()
    if kernel is None:
        return onednn, f"panel kernel: off ({why})"
    return [kernel, *onednn], ""


def verify_heights(linears: list[Any], candidates: tuple[int, ...] = DECODE_HEIGHTS,
                   pack: bool | None = None, backend: Any = None) -> Heights | None:
    """Return the heights at which a matmul gives every row of every layer shape the same bits.

    The reference is each shape's probe row at height 2 (beside a zero row); a candidate
    height is kept when every distinct shape (in, out, bias) reproduces it, on the weights the
    decode will read. Backends are tried in turn (``backend``: that one only): the panel kernel
    (:mod:`.panel_gemm`, fp32, where its packed copies fit in memory; also checked at one
    row), oneDNN on reordered copies when ``pack`` (default: where they fit in memory, see the
    module docstring), oneDNN on the plain weights; the first whose heights hold (height 2 and
    at least half the candidates) serves, and its copies are attached to every layer. ``None``
    when oneDNN cannot serve these weights, or no backend holds (then fixed tiles serve).
    """
    import torch

    shapes = _distinct_shapes(linears)
    if not shapes or not all(onednn_available(lin.weight) for lin in shapes):
        return None
    if pack is None:
        pack = _packing_fits(linears)
    backends, note = ([backend], "") if backend is not None else _backends(shapes, pack)
    for b in backends:
        tried = candidates if isinstance(b, OneDNN) else tuple(sorted({1, *candidates}))
        try:
            with torch.inference_mode():
                kept = _kept_heights(shapes, tried, b)
                if kept is None or 2 not in kept or len(kept) < len(tried) / 2:
                    continue  # no packed copy for this dtype here, or rows' bits differ
                if b.tag != "onednn":
                    for lin in linears:
                        lin._recaudit_packed = b.pack(lin.weight)
        except RuntimeError:  # this backend refuses these weights on this CPU
            continue
        heights = Heights(tuple(kept), backend=b)
        heights.note = note
        return heights
    return None


def _shape(lin: Any) -> tuple[int, int, bool]:
    return lin.in_features, lin.out_features, lin.bias is not None


def _distinct_shapes(linears: list[Any]) -> list[Any]:
    """Return the first layer of each distinct shape (in, out, bias), in order."""
    firsts: dict[tuple[int, int, bool], Any] = {}
    for lin in linears:
        firsts.setdefault(_shape(lin), lin)
    return list(firsts.values())


def fused_add_is_exact(linears: list[Any], heights: Heights) -> bool:
    """Check the backend's fused add (oneDNN's sum post-op) against the matmul and an add, bitwise.

    At every kept height and for each distinct layer shape, on random rows and residuals:
    where equal, the fused call inherits the heights' row independence.
    """
    import torch

    gen = torch.Generator().manual_seed(5)
    try:
        with torch.inference_mode():
            for lin in _distinct_shapes(linears):
                weight, dtype = decode_weight(lin), lin.weight.dtype
                for h in heights.heights:
                    x = torch.randn(h, lin.in_features, generator=gen, dtype=dtype)
                    r = torch.randn(h, lin.out_features, generator=gen, dtype=dtype)
                    x, r = x.to(lin.weight.device), r.to(lin.weight.device)
                    if not torch.equal(heights.backend.linear_add(x, r, weight, lin.bias),
                                       r + heights.backend.linear(x, weight, lin.bias)):
                        return False
    except RuntimeError:  # no sum post-op for these weights here
        return False
    return True


def kernel_probe(linears: list[Any], heights: Heights, fused: tuple[Any, ...] = ()
                 ) -> list[bytes]:
    """Return the bytes of each distinct layer shape's decode matmul at every kept height.

    Fixed inputs; for comparing one thread count with another (:mod:`.threads`), since a
    kernel's work split may follow the thread count at some heights only. For the shapes of
    ``fused`` (the layers whose residual add is fused) also the matmul with its residual added
    in the same call.
    """
    import torch

    with_add = {_shape(lin) for lin in fused}
    gen = torch.Generator().manual_seed(1)
    out = []
    with torch.inference_mode():
        for lin in _distinct_shapes(linears):
            x = torch.randn(heights.largest, lin.in_features, generator=gen,
                            dtype=lin.weight.dtype)
            r = torch.randn(heights.largest, lin.out_features, generator=gen,
                            dtype=lin.weight.dtype)
            for h in heights.heights:
                y = heights.linear(x[:h], decode_weight(lin), lin.bias)
                out.append(y.float().numpy().tobytes())
                if _shape(lin) in with_add:
                    y = heights.linear_add(x[:h], decode_weight(lin), lin.bias, r[:h], True)
                    out.append(y.float().numpy().tobytes())
    return out
