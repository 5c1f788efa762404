"""Probe registry: ``@probe("name", tags=[...])`` registers a :class:`Probe` subclass.

A probe declares typed parameters (a pydantic ``Params`` model), turns (config, catalog) into
:class:`Query` objects (``plan``) and turns the engine's answers into a
:class:`~recaudit.results.ProbeResult` (``analyse``). Suites are YAML files in ``probes/``
(shipped as ``recaudit.suites``) holding ``probe:`` and ``params:``.

Built-in probes are every module of the ``recaudit.probes`` package except the registry and
the helper modules (:data:`HELPER_MODULES`), imported on the first lookup (so ``recaudit
--help`` imports none of them). Installed packages add probes through the
``recaudit.probes`` entry-point group (``name = package.module`` or ``package.module:Class``).
A config may also name a probe of its own as ``probe: package.module:ClassName``: the module
is imported and the class, a :class:`Probe` subclass, is registered under its ``@probe`` name,
or else under that spec string.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import ValidationError

from ..errors import ConfigError, first_line
from ..yamlio import deep_merge, format_validation_error
from .base import AuditContext, Probe, ProbeParams, Query, QueryKey

__all__ = ["AuditContext", "Probe", "ProbeParams", "Query", "QueryKey", "probe", "registry",
           "get_probe", "build_probe", "load_suite", "resolve_probe_params", "suite_names"]

_REGISTRY: dict[str, type[Probe]] = {}
#: The tags the report maps to compliance evidence (a probe may carry any others as well).
FAIRNESS, ROBUSTNESS, ACCURACY = "fairness", "robustness", "accuracy"
# Modules of recaudit.probes that define no probe (everything else is imported on first lookup).
HELPER_MODULES = frozenset({"registry", "base", "sampling", "findings", "attributes", "kit",
                            "subjects", "histories"})
_builtins_loaded = False


def probe(name: str, tags: list[str] | tuple[str, ...] = ()
          ) -> Callable[[type[Probe]], type[Probe]]:
    """Class decorator registering a probe under ``name``."""

    def wrap(cls: type[Probe]) -> type[Probe]:
        cls.name = name
        cls.tags = tuple(tags)
        if not cls.description and cls.__doc__:
            cls.description = cls.__doc__.strip().splitlines()[0]
        _REGISTRY[name] = cls
        return cls

    return wrap


def builtin_modules() -> list[str]:
    """Names of the modules of ``recaudit.probes`` that define the built-in probes."""
    package = importlib.import_module(__package__ or "recaudit.probes")
    return [m.name for m in pkgutil.iter_modules(package.__path__)
            if m.name not in HELPER_MODULES and not m.name.startswith("_")]


#: entry-point group through which an installed package adds probes (``name = module``)
ENTRY_POINT_GROUP = "recaudit.probes"


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    for mod in builtin_modules():
        importlib.import_module(f"{__package__}.{mod}")
    _builtins_loaded = True
    _load_plugins()


def _load_plugins() -> None:
    """Import the modules installed packages name in the ``recaudit.probes`` entry-point group
    (their ``@probe`` classes register themselves); a broken one is a one-line ConfigError."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin: say which, in one line
            raise ConfigError(f"probe plugin {ep.name!r} ({ep.value}) failed to load: "
                              f"{first_line(exc)}") from None
        if isinstance(loaded, type) and issubclass(loaded, Probe) and not loaded.name:
            probe(ep.name, tags=loaded.tags)(loaded)


def registry() -> dict[str, type[Probe]]:
    _load_builtins()
    return dict(_REGISTRY)


def _load_user_probe(spec: str) -> type[Probe]:
    """Import ``package.module:ClassName`` and register the class (see the module docstring)."""
    mod_name, _, cls_name = spec.partition(":")
    mod_name, cls_name = mod_name.strip(), cls_name.strip()
    if not mod_name or not cls_name:
        raise ConfigError(f"probe {spec!r}: expected package.module:ClassName")
    try:
        module = importlib.import_module(mod_name)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's module is a config error
        raise ConfigError(f"probe {spec!r}: cannot import module {mod_name!r} "
                          f"({first_line(exc)})") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise ConfigError(f"probe {spec!r}: module {mod_name!r} has no attribute {cls_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Probe)):
        raise ConfigError(f"probe {spec!r}: {cls_name!r} is not a subclass of "
                          "recaudit.probes.Probe")
    if cls.name and _REGISTRY.get(cls.name) is cls:  # registered by @probe when imported
        return cls
    if _REGISTRY.get(spec) is not cls:
        probe(spec, tags=cls.tags)(cls)
    return cls


def get_probe(name: str) -> type[Probe]:
    """The probe class registered as ``name``, or named by a ``package.module:ClassName`` spec."""
    reg = registry()
    if name in reg:
        return reg[name]
    if ":" in name:
        return _load_user_probe(name)
    raise ConfigError(f"unknown probe {name!r}; available: {', '.join(sorted(reg)) or 'none'}")


def suite_names() -> list[str]:
    return sorted(p.stem for p in _suite_dir().glob("*.yaml"))


def _suite_dir() -> Path:
    try:
        return Path(str(resources.files("recaudit.suites")))
    except ModuleNotFoundError:  # running from a source tree without install
        return Path(__file__).resolve().parents[2] / "probes"


def load_suite(name: str) -> dict[str, Any]:
    """Read a suite YAML (bundled name like ``fairllm`` or a path to a .yaml file)."""
    path = Path(name)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = _suite_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown probe suite {name!r}; bundled: {', '.join(suite_names())}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {err}") from None
    if not isinstance(data, dict) or "probe" not in data:
        raise ConfigError(f"{path}: a suite needs 'probe:' and 'params:'")
    return data


def resolve_probe_params(spec: Any, where: str, index: int) -> dict[str, Any]:
    """Merge suite params with the entry's params and validate them with the probe's Params.

    ``spec`` is a :class:`recaudit.config.ProbeSpec`.
    """
    try:
        cls = get_probe(spec.probe)
    except ConfigError as err:
        raise ConfigError(f"{where}: probes[{index}].probe: {err}") from None
    params: dict[str, Any] = {}
    if spec.suite:
        try:
            suite = load_suite(spec.suite)
        except ConfigError as err:
            raise ConfigError(f"{where}: probes[{index}].suite: {err}") from None
        if suite["probe"] != spec.probe:
            raise ConfigError(f"{where}: probes[{index}].suite: suite {spec.suite!r} is for probe "
                              f"{suite['probe']!r}, not {spec.probe!r}")
        params = suite.get("params") or {}
    params = deep_merge(params, spec.params)
    try:
        model = cls.Params.model_validate(params)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, where, prefix=f"probes[{index}].params"))
    except ValueError as err:
        raise ConfigError(f"{where}: probes[{index}].params: {err}") from None
    return model.model_dump(mode="json")


def build_probe(spec: Any) -> Probe:
    """The probe of a validated :class:`recaudit.config.ProbeSpec`."""
    cls = get_probe(spec.probe)
    return cls(cls.Params.model_validate(spec.params), run_id=spec.run_id, suite=spec.suite)
