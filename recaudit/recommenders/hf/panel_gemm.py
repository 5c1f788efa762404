"""recaudit's own decode matmul on AVX2 CPUs: weights packed in 16-feature panels.

``y = residual + (x W^T + bias)`` in fp32 (source: ``panel_gemm.cpp`` beside this module).
Each output element is one FMA chain over k in order, then the bias, then the residual: the
same operations whatever the row count, the row's place in the batch or the thread count, so a
row's bits cannot depend on its companions (and :func:`.heights.verify_heights` still checks it
on the model's weights at load). Why: oneDNN's small-M GEMMs re-read the weights for every few
rows; a 6 x 16 register tile over weight panels streams them once per call. Measured on a 2-core
AMD EPYC (Zen 3, AVX2), SmolLM2-135M's shapes, 30 weight sets in turn (so read from memory), 2
threads: 108-141 GFLOP/s at 16 rows against oneDNN's 83-97 on its reordered weights, 168-178
against 127-143 at 64 rows.

The kernel is compiled once per machine with the system C++ compiler (``$CXX``, default
``c++``; ``-O3 -mavx2 -mfma -fopenmp``) into ``cache_dir("kernels")``, keyed by the source, the
flags and the compiler's version, and loaded with ``ctypes``. It serves only where torch reports
AVX2 (and not AVX-512, where oneDNN's wider kernels were not measured against it); without a
compiler, or on other CPUs, :func:`panel_kernel` returns None with the reason and decode stays
on oneDNN.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["PanelKernel", "panel_kernel"]

_SOURCE = Path(__file__).with_name("panel_gemm.cpp")
_FLAGS = ("-O3", "-mavx2", "-mfma", "-fopenmp", "-std=c++17", "-shared", "-fPIC")
_LOADED: dict[str, tuple[PanelKernel | None, str]] = {}


class PanelKernel:
    """The compiled panel matmul (see module docstring); a backend of :class:`.heights.Heights`."""

    name = "recaudit's AVX2 panel kernel"
    tag = "panels"

    def __init__(self, lib: Any):
        vp, long_ = ctypes.c_void_p, ctypes.c_long
        lib.recaudit_panel_size.argtypes = [long_, long_]
        lib.recaudit_panel_size.restype = long_
        lib.recaudit_panel_pack.argtypes = [vp, long_, long_, vp]
        lib.recaudit_panel_pack.restype = None
        lib.recaudit_panel_linear.argtypes = [vp, long_, long_, vp, long_, vp, vp, vp,
                                              ctypes.c_int]
        lib.recaudit_panel_linear.restype = ctypes.c_int
        self._lib = lib

    def pack(self, weight: Any) -> Any:
        """Return ``weight`` [n, k] (fp32, CPU) packed into panels: a 1-D tensor."""
        import torch

        n, k = weight.shape
        w = weight.detach().contiguous()
        out = torch.empty(self._lib.recaudit_panel_size(n, k), dtype=torch.float32)
        self._lib.recaudit_panel_pack(w.data_ptr(), n, k, out.data_ptr())
        out.recaudit_shape = (n, k)  # type: ignore[attr-defined]
        return out

    def linear(self, x: Any, panels: Any, bias: Any) -> Any:
        """``x @ W.T + bias`` for 2-D fp32 ``x`` and ``panels`` from :meth:`pack`."""
        return self._call(x, panels, bias, None)

    def linear_add(self, x: Any, residual: Any, panels: Any, bias: Any) -> Any:
        """``residual + (x @ W.T + bias)`` in one call."""
        return self._call(x, panels, bias, residual.contiguous())

    def _call(self, x: Any, panels: Any, bias: Any, residual: Any) -> Any:
        import torch

        n, k = panels.recaudit_shape
        x = x.contiguous()
        m = x.shape[0]
        if x.shape[1] != k or x.dtype != torch.float32:
            raise ValueError(f"panel matmul of {tuple(x.shape)} {x.dtype} rows on a "
                             f"{n} x {k} fp32 weight")
        y = torch.empty(m, n, dtype=torch.float32)
        if m == 0:
            return y
        b = None if bias is None else bias.detach().contiguous()
        status = self._lib.recaudit_panel_linear(
            x.data_ptr(), m, k, panels.data_ptr(), n,
            None if b is None else b.data_ptr(),
            None if residual is None else residual.data_ptr(),
            y.data_ptr(), torch.get_num_threads())
        if status:
            raise MemoryError("panel matmul: no memory for its scratch")
        return y


def _cpu_reason() -> str:
    """Return why the kernel does not serve this CPU, or ""."""
    import platform

    import torch

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"not an x86-64 CPU ({platform.machine()})"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX2":
        return f"CPU capability {capability}, not AVX2"
    return ""


def _compiler() -> list[str] | None:
    cxx = os.environ.get("CXX") or "c++"
    path = shutil.which(cxx)
    return [path] if path else None


def _build(compiler: list[str]) -> Path:
    """Compile the kernel into the cache (once per source, flags and compiler); return the file."""
    from recaudit.paths import cache_dir

    version = subprocess.run([*compiler, "--version"], capture_output=True, text=True,
                             timeout=60).stdout.splitlines()[:1]
    key = hashlib.sha256(_SOURCE.read_bytes() + repr((_FLAGS, version)).encode()).hexdigest()
    target = cache_dir("kernels") / f"panel_gemm-{key[:16]}.so"
    if target.exists():
        return target
    tmp = target.with_suffix(f".tmp{os.getpid()}.so")
    done = subprocess.run([*compiler, *_FLAGS, str(_SOURCE), "-o", str(tmp)],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(lines[0] if lines else f"exit status {done.returncode}")
    os.replace(tmp, target)
    return target


def panel_kernel() -> tuple[PanelKernel | None, str]:
    """Return the compiled kernel and "", or None and why it does not serve here (memoized)."""
    compiler = _compiler()
    key = repr(compiler)
    if key not in _LOADED:
        _LOADED[key] = _load(compiler)
    return _LOADED[key]


def _load(compiler: list[str] | None) -> tuple[PanelKernel | None, str]:
    reason = _cpu_reason()
    if reason:
        return None, reason
    if compiler is None:
        return None, "no C++ compiler (set CXX)"
    try:
        return PanelKernel(ctypes.CDLL(str(_build(compiler)))), ""
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        lines = str(exc).strip().splitlines()
        return None, f"could not build it: {lines[0] if lines else type(exc).__name__}"
