"""Where the model runs: ``model_options: {device: auto|cpu|cuda}`` and its default dtype.

``auto`` (the default) is ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``. ``cuda`` on a
machine without CUDA is a one-line :class:`~recaudit.errors.ModelSpecError` (exit 2), never a
silent CPU run. The dtype left unset is ``bfloat16`` on a GPU (its tensor cores' native type) and
``float32`` on a CPU (as before the option existed). A GPU run's fingerprint records the device
(:func:`device_label`: the GPU's name and compute capability, whose kernels decide the numerics)
beside the dtype; a CPU run's fingerprint has no device entry, so it is what it was before.
"""

from __future__ import annotations

from recaudit.errors import ModelSpecError

__all__ = ["DEVICES", "default_dtype", "device_label", "resolve_device"]

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(requested: str) -> str:
    """Return ``"cpu"`` or ``"cuda"`` for ``model_options.device``.

    ``auto``: ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``. ``cuda`` without CUDA,
    or a value other than auto/cpu/cuda, raises a one-line ModelSpecError.
    """
    if requested not in DEVICES:
        raise ModelSpecError(f"model_options.device must be one of {', '.join(DEVICES)}, "
                             f"got {requested!r}")
    import torch

    available = torch.cuda.is_available()
    if requested == "auto":
        return "cuda" if available else "cpu"
    if requested == "cuda" and not available:
        build = torch.version.cuda or "none (a CPU-only build)"
        raise ModelSpecError(
            f"model_options.device is cuda, but torch.cuda.is_available() is False on this "
            f"machine (torch {torch.__version__}, CUDA: {build}); use device: cpu or auto")
    return requested


def default_dtype(device: str) -> str:
    """Return the weight dtype used when ``model_options.dtype`` is unset.

    ``bfloat16`` on ``cuda``, ``float32`` on ``cpu``.
    """
    return "bfloat16" if device == "cuda" else "float32"


def device_label(device: str) -> str:
    """Return the device as the fingerprint and the model line record it.

    ``"cpu"``, or ``"cuda (NAME, sm_XY)"`` for the current CUDA device (just ``"cuda"`` where
    its properties cannot be read).
    """
    if device != "cuda":
        return device
    try:
        import torch

        index = torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return f"cuda ({torch.cuda.get_device_name(index)}, sm_{major}{minor})"
    except Exception:  # noqa: BLE001 - properties unreadable: the kind alone
        return "cuda"
