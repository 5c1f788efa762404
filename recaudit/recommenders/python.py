"""Adapter for a recommender written as a plain Python function (``python:module:function``).

Naming the target is explicit consent to import and run that code.

``target`` is ``"package.module:function"`` (imported; the current directory is also searched)
or ``"path/to/file.py:function"`` (loaded from the file). ``function`` may be a dotted path
(``"mod:Recommender.recommend"``) and may be any callable, e.g. an instance with ``__call__``.

The function is called once per request as ``fn(messages, k)`` with ``messages`` a list of
``{"role", "content"}`` dicts, and returns one of:

* a ``str``: raw text, grounded to the catalog afterwards like any LLM output;
* a ``list``/``tuple`` of title strings: rendered one per line as ``"1. t1"``, ``"2. t2"``...
  and grounded;
* a ``dict`` with ``"item_ids"`` (catalog ids, ranked) and optionally ``"text"``;
* a :class:`~recaudit.recommenders.base.Response` (passed through).

Repeated samples (``decoding: {samples: N}``): the function is called once per sample of a
request. A function with a parameter named ``sample`` is called as ``fn(messages, k,
sample=j)`` (j = 0..N-1; seed your own randomness with it, e.g. ``random.Random(j)``);
without one it is simply called N times, and a deterministic function gives N equal answers
(self-consistency 1). Batched functions read ``request.sample``.

If the function has an attribute ``batched = True``, it is called once per batch as
``fn(requests)`` with a list of :class:`~recaudit.recommenders.base.Request` objects (each has
``.messages``, ``.k``, ``.chat_dicts()``) and must return a list of the values above, one per
request.

If the function object has a callable ``score`` attribute, the adapter also has the ``score``
capability: ``fn.score(messages, candidates) -> list[float]`` (one log-likelihood-like score per
candidate; or ``fn.score(requests) -> list[list[float]]`` when ``fn.score.batched`` is true).

Errors: a malformed target, a missing module or file, or a missing attribute raise
:class:`~recaudit.errors.ModelSpecError`; user code that fails while being imported raises
:class:`~recaudit.errors.ModelRuntimeError`. When the function (or ``score``) raises, or returns
something unusable, for one request, that request's ``Response.error`` holds a one-line message
and the audit continues (for a batched function, every request of the batch gets the error).
Scores that are not one finite number per candidate (NaN, infinity, a wrong count) fail their
request the same way (:func:`~recaudit.recommenders.base.scored_response`). Item ids the
catalog lacks are not an error here: the engine counts them as answers that cannot be grounded.
A per-request (not batched) function's answers are handed to the engine one by one
(:meth:`PythonRecommender.recommend_each`), so each is cached as soon as it is returned.

The fingerprint is the sha256 of the function's source (``inspect.getsource``), its module and
qualified name, and an optional ``__recaudit_version__`` attribute (on the function, else on its
module). The source of helpers the function calls is *not* included: bump
``__recaudit_version__`` when behaviour changes outside the function body, or the response
cache will serve stale answers. :attr:`PythonRecommender.decoding` is not passed to the function.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Sequence

from recaudit.errors import ModelRuntimeError, ModelSpecError
from recaudit.recommenders.base import (GENERATE, SCORE, Decoding, Recommender, Request,
                                       Response, scored_response)

ADAPTER_VERSION = "1"


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _exc_line(exc: BaseException) -> str:
    msg = _one_line(str(exc))
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def parse_target(target: str) -> tuple[str, str]:
    """Split ``"module:function"`` / ``"path/file.py:function"`` into its two parts."""
    module, sep, attr = str(target).strip().rpartition(":")
    if not sep or not module or not attr or not all(p.isidentifier() for p in attr.split(".")):
        raise ModelSpecError(
            f"python recommender target {target!r} is malformed: expected 'module:function' "
            "or 'path/to/file.py:function'")
    return module, attr


def _is_file_target(module: str) -> bool:
    return module.endswith(".py") or "/" in module or os.sep in module


def _load_file(path_str: str, target: str) -> ModuleType:
    path = Path(path_str).expanduser().resolve()
    if not path.is_file():
        raise ModelSpecError(f"python recommender {target!r}: file {path_str} not found")
    digest = hashlib.sha256(str(path).encode("utf-8")).hexdigest()[:12]
    name = f"recaudit_user_{digest}_{''.join(c if c.isalnum() else '_' for c in path.stem)}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelSpecError(f"python recommender {target!r}: cannot load {path_str} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, pickling and relative lookups need it registered
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 -- user code: report in one line
        sys.modules.pop(name, None)
        raise ModelRuntimeError(
            f"python recommender {target!r}: importing {path_str} failed: {_exc_line(exc)}"
        ) from exc
    return module


def _is_missing(name: str, exc: ModuleNotFoundError) -> bool:
    """Whether ``exc`` is about ``name`` itself (or a parent package), not a dependency."""
    missing = exc.name or ""
    return bool(missing) and (name == missing or name.startswith(missing + "."))


def _import_module(name: str, target: str) -> ModuleType:
    try:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            cwd = os.getcwd()
            if not _is_missing(name, exc) or cwd in sys.path or "" in sys.path:
                raise
            sys.path.insert(0, cwd)  # a module next to the audit config, as `python -m` finds it
            try:
                return importlib.import_module(name)
            finally:
                if cwd in sys.path:
                    sys.path.remove(cwd)
    except ModuleNotFoundError as exc:
        if _is_missing(name, exc):
            raise ModelSpecError(
                f"python recommender {target!r}: module {name!r} not found") from None
        raise ModelRuntimeError(
            f"python recommender {target!r}: importing {name!r} failed: {_exc_line(exc)}"
        ) from exc
    except Exception as exc:  # noqa: BLE001 -- user code: report in one line
        raise ModelRuntimeError(
            f"python recommender {target!r}: importing {name!r} failed: {_exc_line(exc)}"
        ) from exc


def load_target(target: str) -> tuple[Callable[..., Any], ModuleType]:
    """Import ``target`` and return ``(function, module)``; one-line errors as documented."""
    module_part, attr = parse_target(target)
    if _is_file_target(module_part):
        module = _load_file(module_part, target)
    else:
        if not all(p.isidentifier() for p in module_part.split(".")):
            raise ModelSpecError(f"python recommender target {target!r} is malformed: "
                                 f"{module_part!r} is neither a module name nor a .py file")
        module = _import_module(module_part, target)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ModelSpecError(f"python recommender {target!r}: {module_part} has no "
                                 f"attribute {attr!r}") from None
    if not callable(obj):
        raise ModelSpecError(f"python recommender {target!r}: {attr!r} is a "
                             f"{type(obj).__name__}, not a function")
    return obj, module


def _source_of(obj: Any) -> str:
    for candidate in (obj, getattr(obj, "__func__", None), type(obj)):
        if candidate is None:
            continue
        try:
            return inspect.getsource(candidate)
        except (OSError, TypeError):
            continue
    return f"<source unavailable: {getattr(obj, '__qualname__', type(obj).__qualname__)}>"


def _has_parameter(fn: Any, name: str) -> bool:
    """Whether ``fn`` can be called with the keyword argument ``name``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False
    p = params.get(name)
    return p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)


def render_titles(titles: Sequence[Any]) -> str:
    """Render titles as a numbered list, one per line (``["A", "B"]``: ``1. A`` / ``2. B``)."""
    return "\n".join(f"{i}. {str(t).strip()}" for i, t in enumerate(titles, 1))


def to_response(value: Any) -> Response:
    """Normalise one function result into a :class:`Response` (``error`` set if unusable)."""
    if isinstance(value, Response):
        return value
    if isinstance(value, str):
        return Response(text=value)
    if isinstance(value, (list, tuple)):
        if all(isinstance(t, str) for t in value):
            return Response(text=render_titles(value))
        return Response(error="python recommender returned a list with non-string entries; "
                              "expected a list of titles")
    if isinstance(value, dict):
        ids = value.get("item_ids")
        text = value.get("text")
        if ids is None and not isinstance(text, str):
            return Response(error="python recommender returned a dict without 'item_ids'")
        if ids is not None and (isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__")):
            return Response(error="python recommender returned 'item_ids' that is not a list")
        return Response(text=text if isinstance(text, str) else "",
                        item_ids=None if ids is None else [str(i) for i in ids])
    return Response(error=f"python recommender returned {type(value).__name__}; expected str, "
                          "list of titles or dict with 'item_ids'")


class PythonRecommender(Recommender):
    """Wrap a user function as a recommender. See the module docstring for the contract."""

    capabilities = frozenset({GENERATE})

    def __init__(self, target: str, decoding: Decoding | None = None, *,
                 spec: str | None = None) -> None:
        super().__init__(spec or f"python:{target}", decoding)
        self.target = str(target)
        self.fn, self.module = load_target(self.target)
        self.batched = getattr(self.fn, "batched", False) is True
        self.takes_sample = _has_parameter(self.fn, "sample")
        score_fn = getattr(self.fn, "score", None)
        self.score_fn: Callable[..., Any] | None = score_fn if callable(score_fn) else None
        # per instance: only functions with a ``score`` attribute can score
        self.capabilities = (  # type: ignore[misc]
            frozenset({GENERATE, SCORE}) if self.score_fn else frozenset({GENERATE}))
        self._fingerprint: str | None = None

    def __repr__(self) -> str:
        """Name the target."""
        return f"PythonRecommender({self.target!r})"

    def fingerprint(self) -> str:
        """Return the sha256 of the function's source, target and version (module docstring)."""
        if self._fingerprint is None:
            version = getattr(self.fn, "__recaudit_version__",
                              getattr(self.module, "__recaudit_version__", None))
            module_part, attr = parse_target(self.target)
            where = (Path(module_part).name if _is_file_target(module_part)
                     else self.module.__name__)
            blob = json.dumps({
                "adapter": "python", "adapter_version": ADAPTER_VERSION,
                "module": where, "function": attr, "source": _source_of(self.fn),
                "score_source": _source_of(self.score_fn) if self.score_fn else None,
                "batched": self.batched,
                "version": None if version is None else str(version),
            }, sort_keys=True)
            self._fingerprint = hashlib.sha256(blob.encode("utf-8")).hexdigest()
        return self._fingerprint

    def recommend(self, requests: Sequence[Request]) -> list[Response]:
        """Return each request's :class:`Response`, in order."""
        return [resp for _, resp in self.recommend_each(requests)]

    def recommend_each(self, requests: Sequence[Request]) -> Iterator[tuple[int, Response]]:
        """Yield each request's :class:`Response` as the function returns it.

        A batched function answers the whole batch at once.
        """
        requests = list(requests)
        if not requests:
            return
        if self.batched:
            try:
                values = self.fn(requests)
                values = list(values)
            except Exception as exc:  # noqa: BLE001 -- user code
                err = f"python recommender raised {_exc_line(exc)}"
                yield from ((i, Response(error=err)) for i in range(len(requests)))
                return
            if len(values) != len(requests):
                err = (f"python recommender (batched) returned {len(values)} results for "
                       f"{len(requests)} requests")
                yield from ((i, Response(error=err)) for i in range(len(requests)))
                return
            yield from enumerate(to_response(v) for v in values)
            return
        for i, req in enumerate(requests):
            try:
                resp = to_response(self.fn(req.chat_dicts(), req.k, sample=req.sample)
                                   if self.takes_sample else self.fn(req.chat_dicts(), req.k))
            except Exception as exc:  # noqa: BLE001 -- user code
                resp = Response(error=f"python recommender raised {_exc_line(exc)}")
            yield i, resp

    def score(self, requests: Sequence[Request]) -> list[list[float]]:
        """Return the scores of every request.

        A request that failed raises :class:`~recaudit.errors.ModelRuntimeError` (the engine
        uses :meth:`score_each`, where it fails alone).
        """
        if self.score_fn is None:
            return super().score(requests)
        requests = list(requests)
        out: list[list[float]] = []
        for i, raw in self.score_each(requests):
            resp = raw if isinstance(raw, Response) else scored_response(requests[i], raw)
            if resp.error is not None:
                raise ModelRuntimeError(f"python recommender {self.target!r}: {resp.error}")
            out.append(list(resp.scores or []))
        return out

    def score_each(self, requests: Sequence[Request]
                   ) -> Iterator[tuple[int, "Sequence[Any] | Response"]]:
        """Yield each request's raw scores as ``score`` returns them.

        Or a :class:`Response` whose error says why that request failed: ``score`` raised, or
        a batched ``score`` returned the wrong number of rows (then every request of the batch
        fails).
        """
        if self.score_fn is None:
            yield from super().score_each(requests)
            return
        requests = list(requests)
        if getattr(self.score_fn, "batched", False) is True:
            try:
                rows = list(self.score_fn(requests))
            except Exception as exc:  # noqa: BLE001 -- user code
                err = Response(error=f"python recommender score raised {_exc_line(exc)}")
                yield from ((i, err) for i in range(len(requests)))
                return
            if len(rows) != len(requests):
                err = Response(error=f"python recommender score (batched) returned {len(rows)} "
                                     f"rows for {len(requests)} requests")
                yield from ((i, err) for i in range(len(requests)))
                return
            yield from enumerate(rows)
            return
        for i, req in enumerate(requests):
            try:
                row: Any = self.score_fn(req.chat_dicts(), list(req.candidates or ()))
                if isinstance(row, (str, bytes)) or not hasattr(row, "__iter__"):
                    row = Response(error=f"python recommender score returned "
                                         f"{type(row).__name__}; expected a list of floats")
                else:
                    row = list(row)
            except Exception as exc:  # noqa: BLE001 -- user code
                row = Response(error=f"python recommender score raised {_exc_line(exc)}")
            yield i, row
