"""The one protocol every recommender adapter implements.

A :class:`Request` is a chat (list of ``{"role", "content"}`` messages), the list length ``k``
wanted, and optionally candidate texts to score. An adapter declares its capabilities:

* ``generate``: free-text recommendation lists (grounded to the catalog afterwards),
* ``score``: a log-likelihood score per candidate text,
* ``embed``: rank the catalog directly (returns item ids, no grounding needed).
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Sequence

GENERATE = "generate"
SCORE = "score"
EMBED = "embed"


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class Request:
    """One model call. ``messages`` may be given as dicts or :class:`Message` objects."""

    messages: tuple[Message, ...]
    k: int = 10
    candidates: tuple[str, ...] | None = None

    def __init__(self, messages: Sequence[Any], k: int = 10,
                 candidates: Sequence[str] | None = None) -> None:
        msgs = tuple(m if isinstance(m, Message) else Message(str(m["role"]), str(m["content"]))
                     for m in messages)
        object.__setattr__(self, "messages", msgs)
        object.__setattr__(self, "k", int(k))
        object.__setattr__(self, "candidates",
                           None if candidates is None else tuple(str(c) for c in candidates))

    @classmethod
    def from_prompt(cls, prompt: str, k: int = 10, system: str | None = None) -> "Request":
        msgs = ([{"role": "system", "content": system}] if system else [])
        msgs.append({"role": "user", "content": prompt})
        return cls(msgs, k=k)

    def to_dict(self) -> dict[str, Any]:
        return {"messages": [asdict(m) for m in self.messages], "k": self.k,
                "candidates": None if self.candidates is None else list(self.candidates)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Request":
        return cls(d["messages"], k=d.get("k", 10), candidates=d.get("candidates"))

    def key(self) -> str:
        """Stable sha256 of the canonical JSON form: the cache key of this request."""
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def chat_dicts(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.messages]


_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(value: Any) -> Any:
    """``value`` with every string made UTF-8-encodable (recursing into lists and dicts):
    surrogate pairs are joined into their character, lone surrogates become U+FFFD."""
    if isinstance(value, str):
        if not _SURROGATE.search(value):
            return value
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(value, list):
        items = [encodable(v) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else items
    if isinstance(value, dict):
        pairs = [(encodable(k), encodable(v)) for k, v in value.items()]
        same = all(a is k and b is v for (a, b), (k, v) in zip(pairs, value.items()))
        return value if same else dict(pairs)
    return value  # the same object when nothing changed (adapters may still add to meta)


@dataclass
class Response:
    """What a recommender returned for one request.

    ``text`` is the raw model output (untrusted: escape when rendering). ``item_ids`` is set by
    adapters that rank the catalog directly; otherwise the engine grounds ``text``. ``scores``
    holds one score per candidate for ``score`` requests. ``n_prompt_tokens`` and
    ``n_output_tokens`` feed the throughput figures.
    """

    text: str = ""
    item_ids: list[str] | None = None
    scores: list[float] | None = None
    n_prompt_tokens: int = 0
    n_output_tokens: int = 0
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a model's text may hold lone surrogates (a JSON "\\ud800" escape, a Python adapter):
        # UTF-8 cannot encode them, so the cache, results.json and every report would fail
        self.text = encodable(self.text)
        self.error = encodable(self.error)
        self.item_ids = encodable(self.item_ids)
        self.meta = encodable(self.meta)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Response":
        return cls(**{k: d.get(k) for k in ("text", "item_ids", "scores", "error")},
                   n_prompt_tokens=d.get("n_prompt_tokens", 0) or 0,
                   n_output_tokens=d.get("n_output_tokens", 0) or 0,
                   meta=d.get("meta") or {})


@dataclass(frozen=True)
class Decoding:
    """Decoding parameters; part of the cache key. Greedy by default (FaiRLLM protocol)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def quiet_transformers() -> None:
    """Silence transformers' per-load progress bars (recaudit shows its own progress)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a core dependency
        return
    hf_logging.disable_progress_bar()


class Recommender(ABC):
    """Base class of every adapter.

    Subclasses set ``capabilities`` and implement the matching methods. ``fingerprint`` must
    change whenever the model's outputs could change (weights hash, adapter version, options).
    """

    capabilities: ClassVar[frozenset[str]] = frozenset()
    spec: str = ""

    def __init__(self, spec: str = "", decoding: Decoding | None = None) -> None:
        self.spec = spec
        self.decoding = decoding or Decoding()

    @abstractmethod
    def fingerprint(self) -> str:
        """Identity of the model weights and adapter options (sha256 hex or similar)."""

    def weights_sha256(self) -> str | None:
        """sha256 of the weights file(s) where known, for the report's provenance."""
        return None

    def batch_invariance(self) -> str | None:
        """Whether a request's output can depend on the other requests of its batch, in one line
        ("yes (how)" / "no (why)"), for the plan, the provenance and the report. ``None`` when the
        adapter cannot know (a remote endpoint, a user function)."""
        return None

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    def recommend(self, requests: Sequence[Request]) -> list[Response]:
        """Return one :class:`Response` per request, in order (``generate`` or ``embed``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot generate recommendation lists")

    def score(self, requests: Sequence[Request]) -> list[list[float]]:
        """Return per-candidate scores (sum of log-probabilities) for each request."""
        raise NotImplementedError(f"{type(self).__name__} cannot score candidates")

    def attach_catalog(self, catalog: Any) -> None:
        """Give the adapter the catalog (needed by ``embed`` adapters; a no-op otherwise)."""

    def close(self) -> None:
        """Release resources (HTTP clients, threads)."""


def call_recommender(rec: Recommender, reqs: list[Request]) -> list[Response]:
    """One batch through the adapter: scoring requests -> ``score``, others -> ``recommend``."""
    if reqs and reqs[0].candidates is not None:
        if not rec.supports(SCORE):
            return [Response(error=f"{rec.spec} cannot score candidates") for _ in reqs]
        return [Response(scores=[float(s) for s in sc]) for sc in rec.score(reqs)]
    if not (rec.supports(GENERATE) or rec.supports(EMBED)):
        return [Response(error=f"{rec.spec} cannot produce lists") for _ in reqs]
    return rec.recommend(reqs)
