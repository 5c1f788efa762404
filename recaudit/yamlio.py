r"""YAML input helpers shared by the config, the probe registry and the gates.

:func:`read_yaml` reads a file (a :class:`~recaudit.errors.ConfigError` with file:line:column
when it is malformed), :func:`format_validation_error` turns a pydantic error into one line
naming the file and key path, and :func:`deep_merge` merges override mappings key by key.

What :func:`read_yaml` refuses, each with a one-line ConfigError (exit 2): a file over
:data:`MAX_YAML_BYTES` (checked before reading it), bytes that are not UTF-8, a duplicate key in
a mapping (PyYAML would silently keep the last one), aliases that add more than
:data:`MAX_ALIAS_EXPANSION` nodes to the document (a "billion laughs" bomb: counted on the node
graph before any object is built), a recursive alias, nesting deeper than the parser can follow,
``.nan`` / ``.inf`` (no setting takes a non-finite number) and a ``"\ud800"``-style escape of a
lone surrogate (UTF-8 cannot store it: results.json would fail after the whole audit ran).
"""

from __future__ import annotations

import copy
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import ConfigError

__all__ = ["MAX_ALIAS_EXPANSION", "MAX_YAML_BYTES", "deep_merge", "format_validation_error",
           "read_yaml"]

#: largest YAML file read, in bytes (the biggest bundled one is about 5 KB)
MAX_YAML_BYTES = 4 * 1024 * 1024
#: most nodes aliases may add to a document (each ``*anchor`` adds the anchored node's size)
MAX_ALIAS_EXPANSION = 100_000
_SURROGATE = re.compile("[\ud800-\udfff]")


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def format_validation_error(err: ValidationError, where: str, prefix: str = "") -> str:
    """One line ``where: key.path: message (+N more)`` for the first error of ``err``."""
    first = err.errors()[0]
    path = _loc(tuple(first["loc"]))
    if prefix:
        if path == "(top level)":
            path = prefix
        else:
            path = prefix + (path if path.startswith("[") else "." + path)
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{where}: {path}: {msg}{more}"


def no_bool_for_number(value: Any, annotation: Any) -> Any:
    """Return ``value``, refusing a boolean where ``annotation`` wants a number.

    Pydantic reads ``true`` as 1 for an ``int`` or ``float`` field (``k: true`` ran an audit at
    k = 1). A boolean is refused (a ``PydanticCustomError``, reported with its key path) where
    the annotation admits ``int`` or ``float`` but neither ``bool`` nor ``Any``; the items of a
    ``list`` / ``tuple`` / ``set`` annotation are checked the same way.
    """
    from pydantic_core import PydanticCustomError

    members = _members(annotation)
    if isinstance(value, bool):
        kinds = {typing.get_origin(m) or m for m in members}
        if kinds & {int, float} and not kinds & {bool, Any}:
            raise PydanticCustomError("bool_not_number", "{value} is a boolean, not a number",
                                      {"value": str(value).lower()})
    elif isinstance(value, (list, tuple, set)):
        for member in members:
            if typing.get_origin(member) in (list, tuple, set) and typing.get_args(member):
                for item in value:
                    no_bool_for_number(item, typing.get_args(member)[0])
    return value


def _members(annotation: Any) -> list[Any]:
    """Return the members of a union annotation (``Annotated`` unwrapped), else ``[annotation]``."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``base`` with ``override`` merged in; mappings merge key by key."""
    out = copy.deepcopy(base)
    for key, val in override.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], val)
        else:
            out[key] = copy.deepcopy(val)
    return out


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a duplicate key in a mapping (a merge ``<<`` may be overridden)."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key!r} (first on line {seen[key]})",
                            key_node.start_mark)
                    seen[key] = key_node.start_mark.line + 1
                except TypeError:  # an unhashable key: the base class reports it
                    continue
        return super().construct_mapping(node, deep=deep)


def _mark(where: Path, node: yaml.Node) -> str:
    return f"{where}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def _check_nodes(root: yaml.Node, where: Path) -> None:
    """Refuse alias bombs, recursive aliases and non-finite numbers, on the composed node graph.

    An alias is the anchored node object itself, so a node met again adds its expanded size
    ``size(n) = 1 + sum(size(children))`` (memoised) to the document.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    added = 0

    def size(node: yaml.Node) -> int:
        nonlocal added
        key = id(node)
        if key in sizes:
            added += sizes[key]
            if added > MAX_ALIAS_EXPANSION:
                raise ConfigError(f"{where}: YAML aliases add more than "
                                  f"{MAX_ALIAS_EXPANSION:,} nodes (an alias bomb?); refused")
            return sizes[key]
        if key in open_nodes:
            raise ConfigError(f"{_mark(where, node)}: recursive YAML alias")
        if isinstance(node, yaml.ScalarNode):
            if node.tag == "tag:yaml.org,2002:float" \
                    and node.value.lstrip("+-").lower() in (".inf", ".nan"):
                raise ConfigError(f"{_mark(where, node)}: {node.value} is not a finite number")
            if _SURROGATE.search(node.value):
                raise ConfigError(f"{_mark(where, node)}: a lone surrogate escape "
                                  "(\\ud800-\\udfff) is not text UTF-8 can store")
            sizes[key] = 1
            return 1
        open_nodes.add(key)
        children = [c for pair in node.value for c in pair] \
            if isinstance(node, yaml.MappingNode) else node.value
        total = 1 + sum(size(child) for child in children)
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root)


def read_yaml(path: str | Path, what: str = "config") -> tuple[Any, str]:
    """Read a YAML file; return ``(parsed data, text)``.

    Raises a one-line ConfigError with file:line:column when the file is malformed, and for
    everything the module docstring lists as refused.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} file not found: {p}")
    try:
        n_bytes = p.stat().st_size
        if n_bytes > MAX_YAML_BYTES:
            raise ConfigError(f"{p}: {what} file is {n_bytes:,} bytes, over the limit of "
                              f"{MAX_YAML_BYTES:,}")
        raw = p.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {what} file {p}: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{p}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset "
                          f"{err.start})") from None
    try:
        loader = _StrictLoader(text)  # its reader refuses control characters at once
        try:
            root = loader.get_single_node()
            if root is None:
                return None, text
            _check_nodes(root, p)
            return loader.construct_document(root), text
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        if problem.startswith("but ") and getattr(err, "context", None):
            problem = f"{err.context}, {problem}"  # "expected a single document..., but found"
        raise ConfigError(f"{where}: malformed YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{p}: YAML nested too deeply") from None
