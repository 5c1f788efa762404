"""One registry shape for probes, rerankers and recommender kinds.

A :class:`Registry` maps names to objects (classes, factories). Its entries come from three
places, loaded lazily on the first lookup (so ``recaudit --help`` imports none of them):

* objects registered directly (:meth:`Registry.register` or the :meth:`Registry.add`
  decorator) when their module is imported;
* the built-ins, imported by the ``builtins`` callable the registry was given;
* installed packages, through the entry-point group the registry names
  (``name = package.module`` or ``name = package.module:object``).

Rules every registry keeps:

* a name is registered once: a second object under the same name is refused with a one-line
  :class:`~recaudit.errors.ConfigError` naming both places. Registering the very same object
  again is a no-op, and so is a class re-defined by a second import of its own module (same
  module and qualified name), which replaces the first: modules can be imported twice in tests;
* an unknown name is a one-line error built by :func:`unknown_name_message`, the one home of
  the ``unknown X 'y'; known: a, b`` sentence;
* a plugin that fails to load is a one-line ConfigError naming the entry point.
"""

from __future__ import annotations

import types
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from .errors import ConfigError, RecauditError, first_line

__all__ = ["Registry", "unknown_name_message", "place_of"]

T = TypeVar("T")


def unknown_name_message(kind: str, name: Any, known: Iterable[str], context: str = "") -> str:
    """Return the one sentence for a name that is not among the known ones.

    Parameters
    ----------
    kind : str
        What the name names (``"reranker"``, ``"model kind"``, ``"probe"``...).
    name : Any
        The name given; shown with ``repr``.
    known : iterable of str
        The known names, in the order to list them (``none`` when empty).
    context : str, optional
        Words placed after the name (``"in 'bogus:x'"``).

    Returns
    -------
    str
        ``unknown <kind> '<name>' [<context>]; known: a, b, c``
    """
    where = f" {context}" if context else ""
    return f"unknown {kind} {name!r}{where}; known: {', '.join(known) or 'none'}"


def place_of(obj: Any) -> str:
    """Where an object was defined: ``module.QualName`` (its type's name for an instance)."""
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}.{qualname}"
    return f"a {type(obj).__name__} instance"


def _same_definition(a: Any, b: Any) -> bool:
    """Return True for one object, or a class/function defined again by re-importing its module."""
    if a is b:
        return True
    return (type(a) is type(b) and isinstance(a, (type, types.FunctionType))
            and place_of(a) == place_of(b))


class Registry(Generic[T]):
    """Named objects of one kind, with built-ins and entry-point plugins loaded on first use.

    Parameters
    ----------
    kind : str
        What an entry is, for messages (``"reranker"``, ``"model kind"``).
    entry_point_group : str
        The entry-point group installed packages add entries through (``"recaudit.rerankers"``).
    builtins : callable, optional
        Imports (or registers) the built-in entries; called once, on the first lookup.
    adopt : callable, optional
        ``adopt(name, loaded)`` registers what an entry point loaded. The default: a module
        registered its own entries on import (nothing to do); any other object is registered
        under the entry point's name.
    error : type, optional
        The error raised for an unknown name (default :class:`~recaudit.errors.ConfigError`).
    sort_names : bool, optional
        :meth:`names` sorted (default) or in registration order (built-ins first).

    Attributes
    ----------
    entries : dict
        ``name -> object``, in registration order. Tests may snapshot and restore it.
    """

    def __init__(self, kind: str, entry_point_group: str, *,
                 builtins: Callable[[], None] | None = None,
                 adopt: Callable[[str, Any], None] | None = None,
                 error: type[RecauditError] = ConfigError, sort_names: bool = True) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.entries: dict[str, T] = {}
        self._builtins = builtins
        self._adopt = adopt
        self._error = error
        self._sort_names = sort_names
        self._places: dict[str, tuple[Any, str]] = {}  # name -> (object, where registered)
        self._builtins_loaded = builtins is None
        self._plugins_loaded = False

    # -- registering ---------------------------------------------------------------------------
    def register(self, name: str, obj: T, where: str | None = None) -> T:
        """Add ``obj`` under ``name`` and return it.

        ``where`` describes the registration for a later duplicate's message (default: the
        object's module and qualified name). A second, different object under a taken name is a
        one-line ConfigError naming both; the same object (or its re-import) is accepted.
        """
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{self.kind} name must be a non-empty string, got {name!r} "
                              f"({where or place_of(obj)})")
        old = self.entries.get(name)
        if name in self.entries and not _same_definition(old, obj):
            raise ConfigError(f"duplicate {self.kind} {name!r}: registered by "
                              f"{self.where(name)} and again by {where or place_of(obj)}")
        self.entries[name] = obj
        self._places[name] = (obj, where or place_of(obj))
        return obj

    def add(self, name: str) -> Callable[[T], T]:
        """Register the decorated object as ``name``: ``@registry.add("name")``."""

        def wrap(obj: T) -> T:
            return self.register(name, obj)

        return wrap

    # -- looking up ----------------------------------------------------------------------------
    def load(self) -> None:
        """Import the built-ins (once) and the entry-point plugins.

        A plugin that fails to load is a one-line ConfigError; the next lookup tries again (and
        fails the same way) instead of going on without it.
        """
        if not self._builtins_loaded:
            assert self._builtins is not None
            self._builtins_loaded = True  # a built-in module looking a name up does not recurse
            try:
                self._builtins()
            except BaseException:
                self._builtins_loaded = False
                raise
        if not self._plugins_loaded:
            self._load_plugins()
            self._plugins_loaded = True

    def refresh(self) -> None:
        """Read the entry points again on the next lookup.

        A package installed in this process since the first lookup then adds its entries; those
        already registered stay.
        """
        self._plugins_loaded = False

    def _load_plugins(self) -> None:
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.entry_point_group):
            where = f"entry point {ep.name!r} ({ep.value}) of {self.entry_point_group}"
            try:
                loaded = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin: say which, in one line
                raise ConfigError(f"{self.kind} plugin {ep.name!r} ({ep.value}) failed to "
                                  f"load: {first_line(exc)}") from None
            if self._adopt is not None:
                self._adopt(ep.name, loaded)
            elif not isinstance(loaded, types.ModuleType):
                self.register(ep.name, loaded, where=where)

    def get(self, name: str, context: str = "") -> T:
        """Return the entry registered as ``name``.

        An unknown name is a one-line error listing the known ones (see
        :func:`unknown_name_message`; ``context`` goes after the name).
        """
        self.load()
        if name not in self.entries:
            raise self._error(unknown_name_message(self.kind, name, self.names(), context))
        return self.entries[name]

    def names(self) -> list[str]:
        """Every registered name: sorted, or in registration order (see ``sort_names``)."""
        self.load()
        return sorted(self.entries) if self._sort_names else list(self.entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs in the order of :meth:`names`."""
        return [(n, self.entries[n]) for n in self.names()]

    def where(self, name: str) -> str:
        """Where the entry ``name`` was registered (its module and name, or its entry point)."""
        obj = self.entries[name]
        recorded = self._places.get(name)
        return recorded[1] if recorded and recorded[0] is obj else place_of(obj)

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is registered (loading built-ins and plugins first)."""
        self.load()
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        """Iterate over :meth:`names`."""
        return iter(self.names())

    def __len__(self) -> int:
        """Count the registered names."""
        return len(self.names())

    def __repr__(self) -> str:
        """Show the kind, the group and how many entries are registered."""
        return (f"Registry({self.kind!r}, {self.entry_point_group!r}, "
                f"{len(self.entries)} registered)")
