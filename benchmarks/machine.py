"""Description of the machine a benchmark ran on, recorded beside every figure in RESULTS.md.

CPU model and flags from ``/proc/cpuinfo`` (Linux; ``platform`` elsewhere), cores from
``os.cpu_count()`` and the affinity mask, BLAS (torch's ``BLAS_INFO`` build setting and the
libraries ``threadpoolctl`` sees once numpy is loaded), library versions, the GPU when
``torch.cuda.is_available()``, and ``OPENBLAS_CORETYPE`` when set.

    python benchmarks/machine.py     # prints the description as a Markdown list
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The ISA extensions that decide which matmul kernels run (fp32 AVX-512, bf16 dot products, AMX).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16",
             "amx_int8")


def _cpuinfo() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo as a dict ({} where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def _blas() -> str:
    """torch's BLAS (its ``BLAS_INFO`` build setting: MKL is linked in, threadpoolctl cannot see
    it) and the shared BLAS / OpenMP libraries loaded in this process (threadpoolctl)."""
    parts = []
    try:
        import torch

        for item in torch.__config__.show().replace("\n", ",").split(","):
            if "BLAS_INFO=" in item:
                parts.append("torch " + item.strip().split("=", 1)[1])
    except ImportError:
        pass
    try:
        import numpy  # noqa: F401 -- loads numpy's BLAS so threadpoolctl sees it
        from threadpoolctl import threadpool_info

        for lib in threadpool_info():
            arch = f", {lib['architecture']}" if lib.get("architecture") else ""
            parts.append(f"{lib.get('internal_api')} {lib.get('version') or ''}".strip()
                         + f" ({lib.get('num_threads')} threads{arch})")
    except ImportError:
        pass
    return "; ".join(dict.fromkeys(parts)) or "unknown"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "numpy"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = "not installed"
    return out


def _gpu() -> str:
    try:
        import torch
    except ImportError:
        return "none (torch not installed)"
    if not torch.cuda.is_available():
        return "none (torch.cuda.is_available() is False)"
    props = torch.cuda.get_device_properties(0)
    return (f"{torch.cuda.device_count()} x {props.name}, {props.total_memory / 2**30:.0f} GiB, "
            f"CUDA {torch.version.cuda}")


def describe() -> dict[str, str]:
    """Machine facts as label -> text (insertion order is the display order)."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    desc = {
        "CPU": info.get("model name") or platform.processor() or platform.machine(),
        "vendor": info.get("vendor_id", "unknown"),
        "cores": f"{os.cpu_count()} logical, {usable} usable by this process",
        "ISA": ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ISA_FLAGS)
               if flags else "unknown (no /proc/cpuinfo)",
        "BLAS": _blas(),
        "OS": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "GPU": _gpu(),
    }
    try:
        import torch

        desc["torch CPU capability"] = torch.backends.cpu.get_cpu_capability()
        desc["torch threads"] = str(torch.get_num_threads())
    except ImportError:
        pass
    desc.update(_versions())
    if os.environ.get("OPENBLAS_CORETYPE"):
        desc["OPENBLAS_CORETYPE"] = os.environ["OPENBLAS_CORETYPE"]
    return desc


def markdown() -> str:
    return "\n".join(f"- **{k}**: {v}" for k, v in describe().items())


if __name__ == "__main__":
    print(markdown())
