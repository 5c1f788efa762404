"""Probe registry: ``@probe("name", tags=[...])`` registers a :class:`Probe` subclass.

A probe declares typed parameters (a pydantic ``Params`` model), turns (config, catalog) into
:class:`Query` objects (``plan``) and turns the engine's answers into a
:class:`~recaudit.results.ProbeResult` (``analyse``). Suites are YAML files in ``probes/``
(shipped as ``recaudit.suites``) holding ``probe:`` and ``params:``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from ..catalog import Catalog
    from ..config import AuditConfig, ProbeSpec, StatsConfig
    from ..engine import Answer
    from ..recommenders.base import Recommender, Request
    from ..results import ProbeResult

_REGISTRY: dict[str, type["Probe"]] = {}
# Modules that define the built-in probes; imported on first lookup (keeps the CLI fast).
BUILTIN_MODULES = ("counterfactual", "profile", "leakage")


class ProbeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Query:
    """One planned model call and what it means to the probe (attribute, value, unit...)."""

    id: str
    request: "Request"
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class AuditContext:
    """What a probe may use: the catalog, the stats settings and the recommender's abilities."""

    catalog: "Catalog"
    stats: "StatsConfig"
    capabilities: frozenset[str]
    config: "AuditConfig | None" = None
    recommender: "Recommender | None" = None


class Probe:
    name: ClassVar[str] = ""
    tags: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    Params: ClassVar[type[ProbeParams]] = ProbeParams
    requires: ClassVar[frozenset[str]] = frozenset()  # any of these capabilities

    def __init__(self, params: ProbeParams, run_id: str | None = None,
                 suite: str | None = None) -> None:
        self.params = params
        self.run_id = run_id or self.name
        self.suite = suite

    def plan(self, ctx: AuditContext) -> list[Query]:
        raise NotImplementedError

    def analyse(self, ctx: AuditContext, queries: list[Query],
                answers: dict[str, "Answer"]) -> "ProbeResult":
        raise NotImplementedError


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


def _load_builtins() -> None:
    for mod in BUILTIN_MODULES:
        try:
            importlib.import_module(f"recaudit.probes.{mod}")
        except ModuleNotFoundError as err:  # a probe module not written yet
            if err.name != f"recaudit.probes.{mod}":
                raise


def registry() -> dict[str, type[Probe]]:
    _load_builtins()
    return dict(_REGISTRY)


def get_probe(name: str) -> type[Probe]:
    reg = registry()
    if name not in reg:
        raise ConfigError(f"unknown probe {name!r}; available: {', '.join(sorted(reg)) or 'none'}")
    return reg[name]


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


def resolve_probe_params(spec: "ProbeSpec", where: str, index: int) -> dict[str, Any]:
    """Merge suite params with the entry's params and validate them with the probe's Params."""
    from ..config import _deep_merge, format_validation_error

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
    params = _deep_merge(params, spec.params)
    try:
        model = cls.Params.model_validate(params)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, where, prefix=f"probes[{index}].params"))
    except ValueError as err:
        raise ConfigError(f"{where}: probes[{index}].params: {err}") from None
    return model.model_dump(mode="json")


def build_probe(spec: "ProbeSpec") -> Probe:
    cls = get_probe(spec.probe)
    return cls(cls.Params.model_validate(spec.params), run_id=spec.run_id, suite=spec.suite)
