"""Reranker registry: ``@reranker("name")`` registers a :class:`Reranker`.

A reranker re-orders the lists an audit already collected (no model calls, except where
``needs_model``: permutation self-consistency plans extra requests through the engine and its
cache). It declares typed ``Params`` (pydantic), the parameter its trade-off sweep varies, and
how to measure the thing it targets on one list (:meth:`Reranker.target_values`), so the
mitigation layer can report before / after with CIs for any probe. Lists are re-ranked at
their top: the first ``k`` entries are chosen among the list's entries and the rest follow in
their original order, so every list keeps its length and the probe's own metrics at cut-offs up
to ``k`` see the re-ranked head.

Built-in rerankers are every module of ``recaudit.mitigation`` except the helper modules
(:data:`HELPER_MODULES`), imported on the first lookup. Installed packages add rerankers through
the ``recaudit.rerankers`` entry-point group (``name = package.module``, whose ``@reranker``
classes register themselves, or ``name = package.module:Class``). A name is registered once
(see :mod:`recaudit.registry`).
"""

from __future__ import annotations

import importlib
import pkgutil
import types
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ConfigError
from ..registry import Registry

__all__ = ["Reranker", "RerankerParams", "ListBatch", "reranker", "get_reranker",
           "reranker_names", "HELPER_MODULES", "ENTRY_POINT_GROUP", "RERANKERS"]

#: modules of recaudit.mitigation that define no reranker
HELPER_MODULES = frozenset({"registry", "apply", "aggregate", "saved"})
#: entry-point group through which an installed package adds rerankers
ENTRY_POINT_GROUP = "recaudit.rerankers"


def valid_mask(valid: np.ndarray | None, shape: tuple[int, ...], like: str) -> np.ndarray:
    """Return the ``valid`` mask of a batch (all true when None), checked against ``shape``.

    ``shape`` is the shape of the array named ``like``; a mask of another shape or a non-boolean
    dtype is a ValueError.
    """
    if valid is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(valid)
    if mask.shape != shape:
        raise ValueError(f"valid has shape {mask.shape}, expected {shape} (like {like})")
    if mask.dtype != bool:
        raise ValueError(f"valid must be a boolean mask, got dtype {mask.dtype}")
    return mask


class RerankerParams(BaseModel):
    """Base of a reranker's parameters (unknown fields are rejected)."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class ListBatch:
    """The lists of one probe as a padded batch.

    ``ids[l, j]`` is the item at rank j of list l
    (``""`` padding), ``valid`` the real entries, ``relevance`` the rank-based relevance
    ``(n_l - j) / n_l`` (LLM lists carry no calibrated scores; any decreasing score gives
    FA*IR and the Det* family the same result), ``queries`` the lists' queries (their meta:
    history, attribute, value, unit) and ``catalog``.
    """

    ids: np.ndarray
    valid: np.ndarray
    queries: list[Any]
    catalog: Any

    @classmethod
    def of(cls, lists: Sequence[Sequence[str]], queries: Sequence[Any], catalog: Any
           ) -> "ListBatch":
        """Pad ``lists`` (ragged, in rank order) into a batch with their ``queries``."""
        n = max((len(x) for x in lists), default=0)
        ids = np.full((len(lists), n), "", dtype=object)
        valid = np.zeros((len(lists), n), dtype=bool)
        for i, lst in enumerate(lists):
            ids[i, :len(lst)] = list(lst)
            valid[i, :len(lst)] = True
        return cls(ids, valid, list(queries), catalog)

    @property
    def relevance(self) -> np.ndarray:
        """Rank-based relevance ``(n_l - j) / n_l`` of each real entry (0 for padding)."""
        n = self.valid.sum(axis=1, keepdims=True).astype(float)
        j = np.arange(self.ids.shape[1])[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(self.valid, (n - j) / np.maximum(n, 1), 0.0)
        return rel

    def lookup(self, mapping: dict[str, Any], default: Any = None) -> np.ndarray:
        """``mapping[item]`` for every entry (``default`` for padding and unknown items)."""
        return np.array([[mapping.get(str(x), default) if ok else default
                          for x, ok in zip(row, vrow, strict=True)]
                         for row, vrow in zip(self.ids, self.valid, strict=True)], dtype=object)

    def item_groups(self, column: str) -> dict[str, str]:
        """Map each item to its group in an item column (``"unknown"`` where missing).

        A column the catalog does not have is a DataError.
        """
        from ..probes.exposure import group_labels

        return group_labels(self.catalog.item_groups(column))

    def groups(self, column: str) -> np.ndarray:
        """Return the group label of every entry (``"unknown"`` for items outside the catalog)."""
        return self.lookup(self.item_groups(column), default="unknown")

    def tail(self, head_share: float) -> np.ndarray:
        """Mark, as a bool ``(L, n)`` array, the entries that are long-tail items.

        A long-tail item is not in the head that holds ``head_share`` of the training
        interactions (see ``Catalog.head_tail``); padding is never marked.
        """
        head, _ = self.catalog.head_tail(head_share)
        return self.valid & ~np.isin(self.ids, list(head))

    def histories(self) -> list[list[str] | None]:
        """Return the shown history of each list's user, where the probe has one."""
        return [q.meta.get("history") for q in self.queries]

    def lists(self, order: np.ndarray) -> list[list[str]]:
        """Build the re-ranked lists from ``(L, k)`` indices (-1 = none).

        Each list is the chosen head, then the rest of the list in its original order.
        """
        out = []
        for i in range(self.ids.shape[0]):
            n = int(self.valid[i].sum())
            head = [int(j) for j in order[i] if 0 <= j < n]
            chosen = set(head)
            out.append([str(self.ids[i, j]) for j in head] +
                       [str(self.ids[i, j]) for j in range(n) if j not in chosen])
        return out


class Reranker:
    """One mitigation.

    Subclasses set ``name`` (by :func:`reranker`), ``Params``, ``sweep``
    (the parameter a trade-off curve varies, with ``sweep_values`` as its default grid),
    ``target`` (the metric it improves: a list measure of :meth:`target_values`, or else the
    name of a probe metric) and implement :meth:`rerank`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type[RerankerParams]] = RerankerParams
    sweep: ClassVar[str | None] = None
    sweep_values: ClassVar[tuple[Any, ...]] = ()
    target: ClassVar[str] = ""
    #: plans extra model requests (through the engine and its cache)
    needs_model: ClassVar[bool] = False

    def __init__(self, params: RerankerParams) -> None:
        self.params = params

    def with_param(self, name: str, value: Any) -> "Reranker":
        """Return the same reranker with one parameter changed (validated)."""
        data = self.params.model_dump()
        data[name] = value
        return type(self)(validate_params(type(self), data, f"sweep {name}={value!r}"))

    def label(self) -> str:
        """Return the variant name (``fair(p=0.5)``, ``xquad(lam=0.25)``, ``consensus``).

        The name is the reranker's, with the parameters that differ from their defaults plus the
        swept one.
        """
        default = type(self.params)().model_dump() if _has_defaults(self.Params) else {}
        bits = [f"{k}={_fmt(v)}" for k, v in self.params.model_dump().items()
                if k == self.sweep or k not in default or v != default[k]]
        return f"{self.name}({', '.join(bits)})" if bits else self.name

    def applies(self, probe: Any, queries: Sequence[Any]) -> str | None:
        """None when this reranker can re-rank the probe's lists, else the reason it cannot."""
        return None

    def rerank(self, batch: ListBatch, k: int) -> list[list[str]]:
        """Return each list of ``batch`` re-ranked for a top ``k``."""
        raise NotImplementedError

    def target_values(self, batch: ListBatch, k: int) -> np.ndarray | None:
        """Return the targeted list measure of each list at ``k`` (NaN: undefined).

        None when the target is a metric the probe itself reports.
        """
        return None

    # model-backed rerankers (``needs_model``) also implement these three
    def plan_size(self) -> int:
        """How many extra requests per probe query :meth:`plan` makes."""
        return 0

    def plan(self, probe: Any, queries: Sequence[Any]) -> list[Any]:
        """Return the extra model requests for the probe's ``queries`` (none by default)."""
        return []

    def rerank_answers(self, probe: Any, queries: Sequence[Any], answers: dict[str, Any]
                       ) -> dict[str, list[str] | None]:
        """Return each query's re-ranked list from the ``answers`` to :meth:`plan`'s requests."""
        raise NotImplementedError


def _has_defaults(model: type[BaseModel]) -> bool:
    return all(not f.is_required() for f in model.model_fields.values())


def _fmt(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def reranker(name: str):
    """Class decorator registering a reranker under ``name`` (a taken name is a ConfigError)."""

    def wrap(cls: type[Reranker]) -> type[Reranker]:
        RERANKERS.register(name, cls)
        cls.name = name
        if not cls.description and cls.__doc__:
            cls.description = cls.__doc__.strip().splitlines()[0]
        return cls

    return wrap


def _load_builtins() -> None:
    """Import every reranker module of ``recaudit.mitigation`` (they register themselves)."""
    package = importlib.import_module(__package__ or "recaudit.mitigation")
    for m in pkgutil.iter_modules(package.__path__):
        if m.name not in HELPER_MODULES and not m.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{m.name}")


def _adopt(name: str, loaded: Any) -> None:
    """Register what a ``recaudit.rerankers`` entry point loaded.

    A module registered its own rerankers; a :class:`Reranker` class not yet registered is
    registered under ``name``.
    """
    if isinstance(loaded, type) and issubclass(loaded, Reranker):
        if not (loaded.name and RERANKERS.entries.get(loaded.name) is loaded):
            reranker(name)(loaded)
    elif not isinstance(loaded, types.ModuleType):
        raise ConfigError(f"reranker plugin {name!r}: {loaded!r} is neither a module nor a "
                          "Reranker subclass")


#: every reranker by name
RERANKERS: Registry[type[Reranker]] = Registry("reranker", ENTRY_POINT_GROUP,
                                               builtins=_load_builtins, adopt=_adopt)


def reranker_names() -> list[str]:
    """Return the registered rerankers' names, sorted."""
    return RERANKERS.names()


def get_reranker(name: str) -> type[Reranker]:
    """Return the reranker class registered as ``name`` (ConfigError listing the known ones)."""
    return RERANKERS.get(name)


def validate_params(cls: type[Reranker], data: dict[str, Any], where: str) -> RerankerParams:
    """``cls.Params`` of ``data``; a one-line ConfigError naming the first problem."""
    try:
        return cls.Params.model_validate(data)
    except ValidationError as err:
        e = err.errors()[0]
        loc = ".".join(str(x) for x in e.get("loc", ())) or "params"
        raise ConfigError(f"{where}: {cls.name}: {loc}: {e.get('msg')}") from None
    except ValueError as err:
        raise ConfigError(f"{where}: {cls.name}: {err}") from None


def build_reranker(name: str, params: dict[str, Any], where: str = "mitigation") -> Reranker:
    cls = get_reranker(name)
    return cls(validate_params(cls, params, where))
