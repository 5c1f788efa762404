"""Is a weights file damaged? Checks of safetensors and GGUF files before and after loading.

They turn a corrupt or truncated checkpoint into a one-line
:class:`~recaudit.errors.ModelRuntimeError` (exit 3, as for any model that exists but cannot be
loaded) that says so, instead of the loader's own error or a failure at the first batch.

* safetensors: the library's own ``safe_open`` parses the header and checks that the tensors it
  declares cover the file exactly (cheap: header only), before any weight is read.
* GGUF: ``gguf.GGUFReader`` (the reader transformers uses) parses the header, the metadata and
  every tensor's extent; it takes seconds on a real model, so it runs only after a load failed,
  to tell a damaged file from a model transformers cannot handle.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import ModelRuntimeError, first_line

__all__ = ["check_safetensors", "gguf_damage"]


def check_safetensors(files: Iterable[Path]) -> None:
    """Raise ModelRuntimeError naming the first damaged ``.safetensors`` file.

    Damaged: its header is unreadable or does not cover the file.
    """
    from safetensors import safe_open

    for f in files:
        if f.suffix != ".safetensors":
            continue
        try:
            with safe_open(str(f), framework="pt"):
                pass
        except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError: all mean damaged
            raise ModelRuntimeError(f"damaged safetensors file {f}: {first_line(exc)}") from None


def gguf_damage(path: Path) -> str | None:
    """Return why ``path`` is not a readable GGUF file (the reader's first line), or None."""
    try:
        from gguf import GGUFReader
    except ImportError:  # pragma: no cover - transformers' GGUF support needs it
        return None
    try:
        GGUFReader(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure means damaged
        return first_line(exc)
    return None
