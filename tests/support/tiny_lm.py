"""A tiny random causal LM built on disk, for tests that need a real ``from_pretrained`` path.

The model is a 2-layer Llama with hidden size 32 and random weights; the tokenizer is a word-level
``tokenizers`` model trained on a few sentences (movie titles and prompt words), wrapped in
``PreTrainedTokenizerFast`` with a minimal chat template. Both are written with
``save_pretrained`` (safetensors) and meant to be loaded back with ``from_pretrained``.

Outputs are gibberish but deterministic for a given seed, which is all the adapter tests need.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)

SPECIAL_TOKENS = ["<unk>", "<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>",
                  "<|end|>"]

CORPUS = [
    "Recommend 10 movies for me . I am a fan of science fiction .",
    "1 . The Matrix ( 1999 ) 2 . Heat ( 1995 ) 3 . Alien ( 1979 ) 4 . Toy Story ( 1995 )",
    "5 . Star Wars ( 1977 ) 6 . Titanic ( 1997 ) 7 . Casablanca ( 1942 ) 8 . Jaws ( 1975 )",
    "I am a woman . I am a man . I am a student . I am a doctor . I am an engineer .",
    "Please list the titles only , one per line , without any explanation .",
    "You are a helpful movie recommender system . Recommend space romance comedy drama .",
    "a an the of and to in for with on by from about as at 0 9 , : ; ! ?",
]


def build_tiny_lm(directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Llama model and its tokenizer to ``directory`` and return the path.

    Idempotent: if ``directory`` already holds a built model (``config.json`` and
    ``model.safetensors``), it is returned unchanged.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(directory)
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
        eos_token="</s>",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)

    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    return out
