"""YAML input helpers shared by the config, the probe registry and the gates.

:func:`read_yaml` reads a file (a :class:`~recaudit.errors.ConfigError` with file:line:column
when it is malformed), :func:`format_validation_error` turns a pydantic error into one line
naming the file and key path, and :func:`deep_merge` merges override mappings key by key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import ConfigError

__all__ = ["deep_merge", "format_validation_error", "read_yaml"]


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


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with ``override`` merged in; nested mappings merge key by key."""
    out = copy.deepcopy(base)
    for key, val in override.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], val)
        else:
            out[key] = copy.deepcopy(val)
    return out


def read_yaml(path: str | Path, what: str = "config") -> tuple[Any, str]:
    """(parsed data, text) of a YAML file; ConfigError with file:line:column when malformed."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} file not found: {p}")
    text = p.read_text(encoding="utf-8")
    try:
        return yaml.safe_load(text), text
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: malformed YAML: {problem}") from None
