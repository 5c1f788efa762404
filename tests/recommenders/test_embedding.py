"""EmbeddingRecommender with the real bundled all-MiniLM-L6-v2 and a small stand-in catalog."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pandas as pd
import pytest

from recaudit.errors import ModelSpecError
from recaudit.paths import cache_dir
from recaudit.recommenders.base import Request
from recaudit.recommenders.embedding import (
    EmbeddingRecommender,
    bundled_minilm_path,
    item_text,
    query_text,
)

MOVIES = [
    ("1", "Star Voyagers", ["Sci-Fi", "Adventure"]),
    ("2", "Love in Paris", ["Romance", "Drama"]),
    ("3", "The Haunted Mill", ["Horror"]),
    ("4", "Laugh Factory", ["Comedy"]),
    ("5", "Galaxy Raiders: Return to Mars", ["Sci-Fi", "Action"]),
    ("6", "Wedding Season", ["Romance", "Comedy"]),
]


class StandInCatalog:
    """What the adapter needs from recaudit.catalog.Catalog: ``.items`` and ``fingerprint()``."""

    def __init__(self, rows=MOVIES):
        self.items = pd.DataFrame(
            {"title": [r[1] for r in rows], "genres": [list(r[2]) for r in rows]},
            index=pd.Index([r[0] for r in rows], name="item_id"))

    def fingerprint(self) -> str:
        return hashlib.sha256(self.items.to_json().encode()).hexdigest()


@pytest.fixture(scope="module")
def minilm():
    rec = EmbeddingRecommender(bundled_minilm_path(), batch_size=8, device="cpu")
    rec.model  # load once for the module (the slow part)
    yield rec
    rec.close()


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RECAUDIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "embeddings"


def test_bundled_path_and_capabilities():
    path = bundled_minilm_path()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert EmbeddingRecommender.capabilities == frozenset({"embed"})


def test_space_query_ranks_space_movie_above_romance(minilm, fresh_cache):
    minilm.attach_catalog(StandInCatalog())
    req = Request.from_prompt("I want a thrilling space adventure among the stars", k=6,
                              system="You are a recommender. Ignore this romance comedy text.")
    (resp,) = minilm.recommend([req])
    assert resp.error is None
    ranks = {item: r for r, item in enumerate(resp.item_ids)}
    assert ranks["1"] < ranks["2"] and ranks["5"] < ranks["6"]
    assert resp.item_ids[0] in {"1", "5"}
    assert sorted(resp.item_ids) == ["1", "2", "3", "4", "5", "6"]
    lines = resp.text.splitlines()
    assert lines[0].startswith("1. ") and len(lines) == 6
    sims = resp.meta["similarities"]
    assert sims == sorted(sims, reverse=True) and -1.0 <= sims[-1] <= sims[0] <= 1.0


def test_top_k_deterministic_and_romance_query(minilm, fresh_cache):
    minilm.attach_catalog(StandInCatalog())
    reqs = [Request.from_prompt("a romantic love story", k=2),
            Request.from_prompt("I want a thrilling space adventure", k=2),
            Request.from_prompt("anything", k=50)]
    first = minilm.recommend(reqs)
    again = minilm.recommend(reqs)
    assert [r.item_ids for r in first] == [r.item_ids for r in again]
    assert [r.text for r in first] == [r.text for r in again]
    assert len(first[0].item_ids) == 2 and first[0].item_ids[0] in {"2", "6"}
    assert first[1].item_ids[0] in {"1", "5"}
    assert len(first[2].item_ids) == 6  # k larger than the catalog: everything, ranked
    # batching does not change results
    single = minilm.recommend([reqs[1]])
    assert single[0].item_ids == first[1].item_ids


def test_embedding_cache_created_and_reused(minilm, fresh_cache, monkeypatch):
    from sentence_transformers import SentenceTransformer

    calls = []
    real_encode = SentenceTransformer.encode

    def counting(self, *args, **kwargs):
        calls.append(len(args[0]) if args else None)
        return real_encode(self, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "encode", counting)
    minilm.attach_catalog(StandInCatalog())
    assert calls == [6]
    path = minilm.embeddings_path
    assert path.parent == cache_dir("embeddings") == fresh_cache
    assert path.name.startswith(minilm.fingerprint() + "-") and path.suffix == ".npy"
    emb = np.load(path)
    assert emb.shape == (6, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)

    # a second attach (same adapter or a new one on the same model) reads the file
    minilm.attach_catalog(StandInCatalog())
    other = EmbeddingRecommender(bundled_minilm_path())
    other.attach_catalog(StandInCatalog())
    assert calls == [6] and other._model is None  # no encode, model not even loaded
    assert other.embeddings_path == path

    # a changed catalog is a new cache file
    rows = MOVIES[:-1] + [("6", "Wedding Season", ["Romance"])]
    minilm.attach_catalog(StandInCatalog(rows))
    assert calls == [6, 6] and minilm.embeddings_path != path
    assert len(list(fresh_cache.glob("*.npy"))) == 2

    # a corrupt cache file is recomputed, not trusted
    minilm.embeddings_path.write_bytes(b"garbage")
    minilm.attach_catalog(StandInCatalog(rows))
    assert calls == [6, 6, 6]


def test_recommend_needs_catalog_and_user_text(minilm, fresh_cache):
    fresh = EmbeddingRecommender(bundled_minilm_path())
    with pytest.raises(RuntimeError, match="attach_catalog"):
        fresh.recommend([Request.from_prompt("x")])
    minilm.attach_catalog(StandInCatalog())
    (resp,) = minilm.recommend([Request([{"role": "system", "content": "space"}])])
    assert resp.error and "no user message" in resp.error and resp.item_ids is None


def test_query_and_item_text():
    req = Request([{"role": "system", "content": "S"}, {"role": "user", "content": "a"},
                   {"role": "assistant", "content": "B"}, {"role": "user", "content": "c"}])
    assert query_text(req) == "a\nc"
    assert item_text("Heat (1995)", ["Action", "Crime"]) == "Heat (1995). genres: Action, Crime"
    assert item_text("Heat", []) == "Heat"
    assert item_text("Heat", float("nan")) == "Heat"
    assert item_text("Heat", pd.NA) == "Heat"
    assert item_text("Heat", "Action|Crime") == "Heat. genres: Action, Crime"
    assert item_text("Heat", np.array(["Drama"])) == "Heat. genres: Drama"


def test_fingerprint_over_model_files(tmp_path):
    src = bundled_minilm_path()
    a = EmbeddingRecommender(src)
    fa = a.fingerprint()
    assert len(fa) == 64 and fa == EmbeddingRecommender(src).fingerprint()
    assert a.weights_sha256() and len(a.weights_sha256()) == 64
    # a copy with one config file changed has another fingerprint; docs don't count
    dst = tmp_path / "m"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors"))
    (dst / "model.safetensors").symlink_to(src / "model.safetensors")
    (dst / "README.md").write_text("edited docs")
    assert EmbeddingRecommender(dst).fingerprint() == fa
    (dst / "1_Pooling" / "config.json").write_text(
        (src / "1_Pooling" / "config.json").read_text().replace('"pooling_mode_cls_token": false',
                                                                '"pooling_mode_cls_token": true'))
    assert EmbeddingRecommender(dst).fingerprint() != fa


def test_pickle_only_dir_refused_unless_allowed(tmp_path):
    d = tmp_path / "pkl"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(ModelSpecError, match="pickle") as exc:
        EmbeddingRecommender(d)
    assert "\n" not in str(exc.value)
    rec = EmbeddingRecommender(d, allow_pickle=True)  # accepted; loading is lazy
    assert len(rec.fingerprint()) == 64


def test_bad_dirs(tmp_path):
    with pytest.raises(ModelSpecError, match="not found"):
        EmbeddingRecommender(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSpecError, match="no weights"):
        EmbeddingRecommender(tmp_path / "empty")


def test_bundled_path_missing(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelSpecError, match="not installed"):
        bundled_minilm_path()
