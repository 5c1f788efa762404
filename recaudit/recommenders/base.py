"""The one protocol every recommender adapter implements.

A :class:`Request` is a chat (list of ``{"role", "content"}`` messages), the list length ``k``
wanted, and optionally candidate texts to score. An adapter declares its capabilities:

* ``generate``: free-text recommendation lists (grounded to the catalog afterwards),
* ``score``: a log-likelihood score per candidate text,
* ``embed``: rank the catalog directly (returns item ids, no grounding needed).

The engine reads a batch's answers through :func:`stream_recommender`, which yields each answer
as it lands: an adapter that finishes requests one by one (an endpoint with concurrency, a
per-request Python function) overrides :meth:`Recommender.recommend_each` /
:meth:`Recommender.score_each`, and every finished answer reaches the response cache even if
the run is interrupted before its batch completes. Scores are checked there too
(:func:`scored_response`): a request whose scores are missing, not numbers, NaN or infinite
fails alone, with a one-line error.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Iterator, Sequence

GENERATE = "generate"
SCORE = "score"
EMBED = "embed"


@dataclass(frozen=True)
class Message:
    """One chat message: ``role`` (system, user, assistant) and ``content``."""

    role: str
    content: str


@dataclass(frozen=True)
class Request:
    """One model call. ``messages`` may be given as dicts or :class:`Message` objects.

    ``sample`` is the index of a repeated sample of the same prompt (``decoding.samples``):
    sample ``j`` is decoded with the seed :func:`sample_seed` ``(decoding.seed, j)``. Sample 0
    is the request itself: its dict, key and seed are exactly those of a request without
    samples, so a cache written with one sample per prompt serves sample 0 unchanged.
    """

    messages: tuple[Message, ...]
    k: int = 10
    candidates: tuple[str, ...] | None = None
    sample: int = 0

    def __init__(self, messages: Sequence[Any], k: int = 10,
                 candidates: Sequence[str] | None = None, sample: int = 0) -> None:
        msgs = tuple(m if isinstance(m, Message) else Message(str(m["role"]), str(m["content"]))
                     for m in messages)
        object.__setattr__(self, "messages", msgs)
        object.__setattr__(self, "k", int(k))
        object.__setattr__(self, "candidates",
                           None if candidates is None else tuple(str(c) for c in candidates))
        if isinstance(sample, bool) or int(sample) < 0:
            raise ValueError(f"sample must be an integer >= 0, got {sample!r}")
        object.__setattr__(self, "sample", int(sample))

    def with_sample(self, sample: int) -> "Request":
        """Return this request as repeated sample ``sample`` (0: the request itself)."""
        return Request(self.messages, k=self.k, candidates=self.candidates, sample=sample)

    @classmethod
    def from_prompt(cls, prompt: str, k: int = 10, system: str | None = None) -> "Request":
        """Build a request of one user message, after an optional system message."""
        msgs = ([{"role": "system", "content": system}] if system else [])
        msgs.append({"role": "user", "content": prompt})
        return cls(msgs, k=k)

    def to_dict(self) -> dict[str, Any]:
        """Return the request as plain JSON data (messages, k, candidates; sample when > 0).

        ``sample`` is left out for sample 0, so the data (and :meth:`key`) of a request
        without repeated samples are what they were before samples existed.
        """
        d: dict[str, Any] = {"messages": [asdict(m) for m in self.messages], "k": self.k,
                             "candidates": None if self.candidates is None
                             else list(self.candidates)}
        if self.sample:
            d["sample"] = self.sample
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Request":
        """Rebuild a request from :meth:`to_dict`'s data."""
        return cls(d["messages"], k=d.get("k", 10), candidates=d.get("candidates"),
                   sample=d.get("sample", 0))

    def key(self) -> str:
        """Stable sha256 of the canonical JSON form: the cache key of this request."""
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def chat_dicts(self) -> list[dict[str, str]]:
        """Return the messages as ``{"role", "content"}`` dicts."""
        return [{"role": m.role, "content": m.content} for m in self.messages]


_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(value: Any) -> Any:
    """Return ``value`` with every string made UTF-8-encodable (lists and dicts recursed).

    Surrogate pairs are joined into their character, lone surrogates become U+FFFD.
    """
    if isinstance(value, str):
        if not _SURROGATE.search(value):
            return value
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(value, list):
        items = [encodable(v) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if isinstance(value, dict):
        pairs = [(encodable(k), encodable(v)) for k, v in value.items()]
        same = all(a is k and b is v
                   for (a, b), (k, v) in zip(pairs, value.items(), strict=True))
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
        """Make every text field UTF-8-encodable (:func:`encodable`)."""
        # a model's text may hold lone surrogates (a JSON "\\ud800" escape, a Python adapter):
        # UTF-8 cannot encode them, so the cache, results.json and every report would fail
        self.text = encodable(self.text)
        self.error = encodable(self.error)
        self.item_ids = encodable(self.item_ids)
        self.meta = encodable(self.meta)

    def to_dict(self) -> dict[str, Any]:
        """Return the response as plain JSON data (what the cache stores)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Response":
        """Rebuild a response from :meth:`to_dict`'s data (missing fields take defaults)."""
        return cls(**{k: d.get(k) for k in ("text", "item_ids", "scores", "error")},
                   n_prompt_tokens=d.get("n_prompt_tokens", 0) or 0,
                   n_output_tokens=d.get("n_output_tokens", 0) or 0,
                   meta=d.get("meta") or {})


def sample_seed(seed: int, sample: int) -> int:
    """Return the decoding seed of repeated sample ``sample`` of a prompt.

    ``seed`` itself for sample 0 (one sample per prompt decodes as it always did); for
    ``sample`` > 0 the first 60 bits of ``sha256("<seed>:sample:<sample>")``, so every sample
    has its own reproducible seed and adding samples never changes an earlier one.
    """
    if sample == 0:
        return int(seed)
    digest = hashlib.sha256(f"{int(seed)}:sample:{int(sample)}".encode()).hexdigest()
    return int(digest[:15], 16)


@dataclass(frozen=True)
class Decoding:
    """Decoding parameters; part of the cache key. Greedy by default (FaiRLLM protocol)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0

    def key(self) -> str:
        """Return the canonical JSON of the parameters: part of the cache key."""
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
    #: True for an adapter that schedules its own concurrency (an endpoint's pool of requests
    #: in flight): the engine hands it every pending request of a kind in one call of
    #: :meth:`recommend_each` / :meth:`score_each`, not batches of ``engine.batch_size``, so its
    #: pool pulls the next request as soon as one finishes (no batch waits for its slowest
    #: request). False (in-process models): the engine batches.
    streams: ClassVar[bool] = False
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
        """Say whether a request's output can depend on the other requests of its batch.

        One line ("yes (how)" / "no (why)"), for the plan, the provenance and the report;
        ``None`` when the adapter cannot know (a remote endpoint, a user function).
        """
        return None

    def stream_stats(self) -> dict[str, Any] | None:
        """Return the concurrency a streaming adapter achieved in its last stream, or None.

        For ``streams = True`` adapters: ``{"limit", "mean_in_flight", "max_in_flight",
        "window", "min_window", "backoffs", "seconds"}`` (see the adapter); the engine adds it
        to its stats. None for adapters that do not stream.
        """
        return None

    def supports(self, capability: str) -> bool:
        """Whether the adapter has ``capability`` (generate, score, embed)."""
        return capability in self.capabilities

    def recommend(self, requests: Sequence[Request]) -> list[Response]:
        """Return one :class:`Response` per request, in order (``generate`` or ``embed``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot generate recommendation lists")

    def score(self, requests: Sequence[Request]) -> list[list[float]]:
        """Return per-candidate scores (sum of log-probabilities) for each request."""
        raise NotImplementedError(f"{type(self).__name__} cannot score candidates")

    def recommend_each(self, requests: Sequence[Request]) -> Iterator[tuple[int, Response]]:
        """Yield ``(index in requests, Response)`` for each list request as its answer lands.

        Default: the whole batch at once through :meth:`recommend`. Override it where requests
        finish one by one, so each answer is cached as soon as it exists.
        """
        yield from enumerate(self.recommend(requests))

    def score_each(self, requests: Sequence[Request]
                   ) -> Iterator[tuple[int, "Sequence[Any] | Response"]]:
        """Yield ``(index, scores)`` for each scoring request as its scores land.

        ``scores`` is the raw per-candidate sequence (checked by :func:`scored_response`) or a
        :class:`Response` with ``error`` set when that request alone failed. Default: the whole
        batch at once through :meth:`score`.
        """
        yield from enumerate(self.score(requests))

    def attach_catalog(self, catalog: Any) -> None:  # noqa: B027 - optional hook, no-op default
        """Give the adapter the catalog (needed by ``embed`` adapters; a no-op otherwise)."""

    def close(self) -> None:  # noqa: B027 - optional hook, no-op default
        """Release resources (HTTP clients, threads)."""


def scored_response(request: Request, scores: Any) -> Response:
    """Return the :class:`Response` of a scoring request given the adapter's raw ``scores``.

    One finite float per candidate, or ``Response.error`` in one line: a wrong count, a value
    that is not a number, NaN or infinity (a non-finite score has no place in a ranking; sorting
    it would silently order candidates by their position or id).
    """
    n = len(request.candidates or ())
    try:
        values = [float(x) for x in scores]
    except (TypeError, ValueError) as err:
        return Response(error=f"score returned a value that is not a number ({err})")
    if len(values) != n:
        return Response(error=f"score returned {len(values)} scores for {n} candidates")
    bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
    if bad:
        cand = (request.candidates or ())[bad[0]]
        return Response(error=f"score returned {values[bad[0]]} for {len(bad)} of {n} "
                              f"candidates (first: {cand[:60]!r}); scores must be finite")
    return Response(scores=values)


def stream_recommender(rec: Recommender, reqs: Sequence[Request]
                       ) -> Iterator[tuple[int, Response]]:
    """One batch through the adapter, each answer as it lands: ``(index in reqs, Response)``.

    Scoring requests (a batch never mixes kinds) go to :meth:`Recommender.score_each` and their
    scores through :func:`scored_response`; others to :meth:`Recommender.recommend_each`. A
    capability the adapter lacks gives every request an error.
    """
    reqs = list(reqs)
    if reqs and reqs[0].candidates is not None:
        if not rec.supports(SCORE):
            yield from ((i, Response(error=f"{rec.spec} cannot score candidates"))
                        for i in range(len(reqs)))
            return
        for i, scores in rec.score_each(reqs):
            yield i, (scores if isinstance(scores, Response)
                      else scored_response(reqs[i], scores))
        return
    if not (rec.supports(GENERATE) or rec.supports(EMBED)):
        yield from ((i, Response(error=f"{rec.spec} cannot produce lists"))
                    for i in range(len(reqs)))
        return
    yield from rec.recommend_each(reqs)


def call_recommender(rec: Recommender, reqs: list[Request]) -> list[Response]:
    """One batch through the adapter, answers in request order (:func:`stream_recommender`).

    An index answered twice keeps its last answer; an index never answered is left out, so a
    short list tells the caller that the adapter answered fewer requests than it was given.
    """
    got = dict(stream_recommender(rec, reqs))
    return [got[i] for i in range(len(reqs)) if i in got]
