"""Where recaudit keeps its on-disk caches.

``RECAUDIT_CACHE_DIR`` overrides the default ``~/.cache/recaudit``. Sub-folders: ``gguf/`` for
dequantized GGUF weights (keyed by the file's sha256), ``embeddings/`` for item embeddings,
``tiles/`` for the batch-invariant tile heights chosen per model shape and machine,
``responses.sqlite`` is the engine's default response cache.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir(sub: str | None = None) -> Path:
    root = Path(os.environ.get("RECAUDIT_CACHE_DIR") or Path.home() / ".cache" / "recaudit")
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
