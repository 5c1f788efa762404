"""Tiny random models written to disk, for tests that go through the real ``from_pretrained`` path.

Everything is built offline: a byte-level BPE tokenizer trained on a few sentences (wrapped in
``PreTrainedTokenizerFast``), then a 2-layer Llama (causal, with a chat template), a 2-layer Bart
or a 2-layer T5 (seq2seq) with random weights, saved with ``save_pretrained``.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "Recommend ten movies for a fan of action films.",
    "I am a female user who likes romance and comedy movies.",
    "I am a male user who likes horror and thriller movies.",
    "The Matrix (1999), Heat (1995), Alien (1979), Toy Story (1995), Fargo (1996).",
    "List the titles as a numbered list with the year of release.",
    "You are a helpful movie recommender system.",
    "Here are some films you may enjoy: Casablanca, Vertigo, Jaws, Rocky, Psycho.",
    "user assistant system: 1. 2. 3. 4. 5. 6. 7. 8. 9. 10.",
]

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


def build_tokenizer(chat_template: str | None = CHAT_TEMPLATE):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>")
    if chat_template:
        fast.chat_template = chat_template
    return fast


def _ids(tok) -> dict[str, int]:
    return {"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id}


def _save(model, tok, path: Path, safe: bool = True) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if safe:
        model.save_pretrained(path)
    else:  # pickle-only checkpoint, as older hub repos ship it
        import torch

        model.config.save_pretrained(path)
        torch.save(model.state_dict(), path / "pytorch_model.bin")
    tok.save_pretrained(path)
    return path


def make_causal(path: Path, seed: int = 0, safe: bool = True) -> Path:
    """A 2-layer Llama with hidden size 32 (GQA: 4 heads, 2 kv heads) and a chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, tie_word_embeddings=False,
                      initializer_range=0.5, **_ids(tok))
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    return _save(model, tok, path, safe=safe)


def make_bart(path: Path, seed: int = 0) -> Path:
    """A 2+2-layer Bart with d_model 32; no chat template (prompts are joined contents)."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    tok = build_tokenizer(chat_template=None)
    ids = _ids(tok)
    cfg = BartConfig(vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2,
                     encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                     decoder_ffn_dim=64, max_position_embeddings=256, init_std=0.5,
                     decoder_start_token_id=ids["eos_token_id"],
                     forced_eos_token_id=None, **ids)
    torch.manual_seed(seed)
    model = BartForConditionalGeneration(cfg)
    return _save(model, tok, path)


def make_t5(path: Path, seed: int = 0) -> Path:
    """A 2+2-layer T5 with d_model 32 (relative position bias); no chat template."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tok = build_tokenizer(chat_template=None)
    ids = _ids(tok)
    cfg = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2,
                   num_decoder_layers=2, num_heads=4, initializer_factor=2.0,
                   decoder_start_token_id=ids["pad_token_id"], **ids)
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(cfg)
    return _save(model, tok, path)


def session_cache_root(tmp_path_factory) -> str:
    """The cache root tests/conftest.py gives every test (for module-scoped fixtures, which run
    before the function-scoped autouse fixture sets ``RECAUDIT_CACHE_DIR``)."""
    import os

    return os.environ.get("RECAUDIT_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "cache")


def load_smollm2(tmp_path_factory, max_new_tokens: int, **options):
    """The bundled SmolLM2 (GGUF) for a module-scoped fixture, dequantized into the session's
    shared cache root (paid once per test session)."""
    import pytest

    from recaudit.recommenders.base import Decoding
    from recaudit.recommenders.gguf import GGUFRecommender, bundled_smollm2_path

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECAUDIT_CACHE_DIR", session_cache_root(tmp_path_factory))
        return GGUFRecommender(str(bundled_smollm2_path()),
                               Decoding(max_new_tokens=max_new_tokens), **options)
