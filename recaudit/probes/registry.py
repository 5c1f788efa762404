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

import copy

import importlib
import pkgutil
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import ValidationError

from ..errors import ConfigError, first_line
from ..registry import Registry
from ..yamlio import deep_merge, format_validation_error
from .base import AuditContext, Probe, ProbeParams, Query, QueryKey

__all__ = ["PROBES", "AuditContext", "Probe", "ProbeParams", "Query", "QueryKey", "probe",
           "registry", "get_probe", "build_probe", "load_suite", "resolve_probe_params",
           "suite_names"]

#: The tags the report maps to compliance evidence (a probe may carry any others as well).
FAIRNESS, ROBUSTNESS, ACCURACY = "fairness", "robustness", "accuracy"
# Modules of recaudit.probes that define no probe (everything else is imported on first lookup).
HELPER_MODULES = frozenset({"registry", "base", "sampling", "findings", "attributes", "kit",
                            "subjects", "histories", "consistency", "control"})
#: entry-point group through which an installed package adds probes (``name = module``)
ENTRY_POINT_GROUP = "recaudit.probes"


def builtin_modules() -> list[str]:
    """Names of the modules of ``recaudit.probes`` that define the built-in probes."""
    package = importlib.import_module(__package__ or "recaudit.probes")
    return [m.name for m in pkgutil.iter_modules(package.__path__)
            if m.name not in HELPER_MODULES and not m.name.startswith("_")]


def _import_builtins() -> None:
    """Import every built-in probe module (their ``@probe`` classes register themselves)."""
    for mod in builtin_modules():
        importlib.import_module(f"{__package__}.{mod}")


def _adopt_plugin(name: str, loaded: Any) -> None:
    """Register a Probe class loaded from entry point ``name`` when it has no ``@probe`` name.

    An entry point naming a module registers its ``@probe`` classes on import; one naming a
    Probe class that has no ``@probe`` name is registered under the entry point's name.
    """
    if isinstance(loaded, type) and issubclass(loaded, Probe) and not loaded.name:
        probe(name, tags=loaded.tags)(loaded)


#: every probe by name: built-ins, installed plugins and probes named by a config
#: (:class:`recaudit.registry.Registry`: a second class under a taken name is refused)
PROBES: Registry[type[Probe]] = Registry("probe", ENTRY_POINT_GROUP, builtins=_import_builtins,
                                         adopt=_adopt_plugin)
_REGISTRY = PROBES.entries  # the name -> class mapping itself (tests snapshot and restore it)


def probe(name: str, tags: list[str] | tuple[str, ...] = ()
          ) -> Callable[[type[Probe]], type[Probe]]:
    """Class decorator registering a probe under ``name`` (a taken name: ConfigError)."""

    def wrap(cls: type[Probe]) -> type[Probe]:
        cls.name = name
        cls.tags = tuple(tags)
        if not cls.description and cls.__doc__:
            cls.description = cls.__doc__.strip().splitlines()[0]
        PROBES.register(name, cls)
        return cls

    return wrap


def registry() -> dict[str, type[Probe]]:
    """Every probe by name (built-ins and plugins loaded on the first call)."""
    PROBES.load()
    return dict(PROBES.entries)


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
    if cls.name and PROBES.entries.get(cls.name) is cls:  # registered by @probe when imported
        return cls
    if PROBES.entries.get(spec) is not cls:
        probe(spec, tags=cls.tags)(cls)
    return cls


def get_probe(name: str) -> type[Probe]:
    """Return the probe class registered as ``name``, or named by a ``module:ClassName`` spec."""
    PROBES.load()
    if name in PROBES.entries:
        return PROBES.entries[name]
    if ":" in name:
        return _load_user_probe(name)
    return PROBES.get(name)  # an unknown name: the one "unknown probe 'x'; known: ..." line


def suite_names() -> list[str]:
    """Return the names of the bundled probe suites, sorted."""
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
    whole = {k: v for k, v in spec.params.items() if k in cls.whole_params}
    params = deep_merge(params, {k: v for k, v in spec.params.items() if k not in whole})
    params.update(copy.deepcopy(whole))
    try:
        model = cls.Params.model_validate(params)
    except ValidationError as err:
        message = format_validation_error(err, where, prefix=f"probes[{index}].params")
        raise ConfigError(message) from None
    except ValueError as err:
        raise ConfigError(f"{where}: probes[{index}].params: {err}") from None
    return model.model_dump(mode="json")


def build_probe(spec: Any) -> Probe:
    """Build the probe of a validated :class:`recaudit.config.ProbeSpec`."""
    cls = get_probe(spec.probe)
    return cls(cls.Params.model_validate(spec.params), run_id=spec.run_id, suite=spec.suite)
