"""Where recaudit keeps its on-disk caches.

``RECAUDIT_CACHE_DIR`` overrides the default ``~/.cache/recaudit``. Sub-folders: ``gguf/`` for
dequantized GGUF weights (keyed by the file's sha256), ``embeddings/`` for item embeddings,
``hashes/`` for the remembered sha256 of big weight files (:func:`cached_sha256`),
``responses.sqlite`` is the engine's default response cache.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path


def cache_dir(sub: str | None = None) -> Path:
    """Return the cache folder, or its sub-folder ``sub``, creating it if missing."""
    root = Path(os.environ.get("RECAUDIT_CACHE_DIR") or Path.home() / ".cache" / "recaudit")
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Return the sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def cached_sha256(path: Path) -> str:
    """sha256 of a file, remembered in the cache dir by (path, size, mtime) for big files."""
    st = path.stat()
    if st.st_size < (64 << 20):
        return sha256_file(path)
    key = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    memo = cache_dir("hashes") / key
    try:
        value = memo.read_text().strip()
        if re.fullmatch(r"[0-9a-f]{64}", value):
            return value
    except OSError:
        pass
    value = sha256_file(path)
    try:
        tmp = memo.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(value)
        os.replace(tmp, memo)
    except OSError:
        pass
    return value
