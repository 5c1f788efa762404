"""Audit configuration: pydantic v2 models loaded from YAML, with unknown keys forbidden.

Every validation error becomes one :class:`~recaudit.errors.ConfigError` line naming the file and
the key path (``audit.yaml: probes[0].params.k: Input should be greater than or equal to 1``).
Probe parameters are validated by each probe's own ``Params`` model (see
:mod:`recaudit.probes.registry`); a probe entry may name a bundled suite (``suite: fairllm``)
whose parameters the entry's ``params`` override key by key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .gates import GateSpec
from .verdicts import DEFAULT_ALPHA, MIN_UNITS
from .yamlio import deep_merge, format_validation_error, read_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DecodingConfig(_Strict):
    """Decoding parameters: output length limit, temperature, seed (greedy by default).

    ``samples``: how many answers each request gets (repeated samples of the same prompt,
    sample ``j`` seeded by :func:`recaudit.recommenders.base.sample_seed`); metrics average
    over them and, from 2 on, each probe reports the model's self-consistency
    (:mod:`recaudit.samples`). Not part of the decoding cache key: sample 0 is the answer of
    an audit with ``samples: 1``, so raising ``samples`` reuses every cached answer.
    """

    max_new_tokens: int = Field(256, ge=1, le=8192)
    temperature: float = Field(0.0, ge=0.0)
    seed: int = 0
    samples: int = Field(1, ge=1, strict=True, description="answers per request (repeated "
                         "seeded samples); metrics average over them")


class CatalogConfig(_Strict):
    """Where items (and optionally interactions) come from.

    ``source: none`` runs a catalogue-free audit (:class:`recaudit.catalog.OpenCatalog`): an
    item is its normalised title string, read by ``parse`` (``fairllm``, the default: the
    FaiRLLM notebook's rules, METRICS.md section 1b; or ``recaudit``: this project's list
    parser without catalogue matching). ``parse`` is only valid with ``source: none``.
    """

    source: Literal["movielens", "csv", "parquet", "none"] = "movielens"
    parse: Literal["fairllm", "recaudit"] | None = Field(
        None, description="catalog-free audits only (source: none); default fairllm")
    path: str | None = None
    id_col: str = "id"
    title_col: str = "title"
    year_col: str | None = None
    genres_col: str | None = None
    genres_sep: str = "|"
    popularity_col: str | None = None
    group_cols: list[str] = Field(default_factory=list)
    interactions: str | None = None
    user_col: str = "user_id"
    item_col: str = "item_id"
    rating_col: str | None = "rating"
    timestamp_col: str | None = "timestamp"
    holdout: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _parse_needs_open(self) -> "CatalogConfig":
        if self.parse is not None and self.source != "none":
            raise ValueError(f"parse: only with source: none (source is {self.source!r})")
        return self


class EngineConfig(_Strict):
    """How requests run: cache, batch size, request cap, dry run, backend (local or Ray)."""

    cache: str | None = Field(None, description="SQLite response cache; default in cache dir")
    fresh_cache: bool = Field(False, description="move an unusable cache file aside to "
                              "<name>.corrupt-<timestamp> and start an empty one")
    batch_size: int | None = Field(None, ge=1, description="requests per engine batch; default "
                                   "four of the model's own batches, at least 16")
    max_requests: int | None = Field(None, ge=0)
    dry_run: bool = False
    backend: Literal["local", "ray"] = "local"
    ray_workers: int = Field(2, ge=1)
    ray_address: str | None = Field(None, description="Ray cluster to join: auto, host:port or "
                                    "ray://host:port; default $RAY_ADDRESS, else a local one")
    progress: bool = True
    adaptive: bool = Field(False, description="ask units in seeded rounds and stop once every "
                           "gate is decided (recaudit.adaptive)")
    budget: str | None = Field(None, description="requests=N, tokens=M or cost=C,in=P,out=Q "
                               "(prices per 1,000 input / output tokens): never spend more")

    @field_validator("budget")
    @classmethod
    def _budget_parses(cls, value: str | None) -> str | None:
        if value is not None:
            from .adaptive import Budget

            try:
                Budget.parse(value)
            except Exception as err:  # noqa: BLE001 - reported with the key path
                raise ValueError(str(err)) from None
        return value

    @model_validator(mode="after")
    def _ray_address_needs_ray(self) -> "EngineConfig":
        if self.ray_address is not None:
            from .backends import parse_ray_address

            parse_ray_address(self.ray_address)  # ValueError: reported with the key path
            if self.backend != "ray":
                raise ValueError("ray_address: only with backend: ray")
        return self


class StatsConfig(_Strict):
    """Statistics settings: bootstrap and permutation sizes, confidence, alpha, seed."""

    n_bootstrap: int = Field(1000, ge=50)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    n_permutations: int = Field(2000, ge=99)
    alpha: float = Field(DEFAULT_ALPHA, gt=0.0, lt=1.0)
    seed: int = 0
    min_group_size: int = Field(MIN_UNITS, ge=1)  # the small-sample rule (verdicts.MIN_UNITS)


class ProbeSpec(_Strict):
    """One probe run of the audit: which probe, which suite, its id, its params.

    ``optional: true``: this probe ending in ``error`` (or skipped for want of data) is reported
    but does not fail the audit (no exit 4; see :meth:`recaudit.results.ProbeResult.fails_audit`).
    """

    probe: str
    suite: str | None = None
    id: str | None = Field(None, description="unique name of this probe run; default probe/suite")
    params: dict[str, Any] = Field(default_factory=dict)
    optional: bool = Field(False, description="its error or no-data skip does not fail the "
                                              "audit (exit 4)")

    @property
    def run_id(self) -> str:
        """Return the run's id: ``id``, else ``probe:suite``, else the probe name."""
        return self.id or (f"{self.probe}:{self.suite}" if self.suite else self.probe)


class MitigationSpec(_Strict):
    """One reranker to apply to the probes' lists (see :mod:`recaudit.mitigation`)."""

    reranker: str
    id: str | None = Field(None, description="variant name; default: reranker(params)")
    params: dict[str, Any] = Field(default_factory=dict)
    probes: list[str] = Field(default_factory=list,
                              description="probe run ids; default: every probe it can serve")
    k: int | None = Field(None, ge=1, description="re-rank the top k of each list; default: "
                                                  "the whole list")
    sweep_param: str | None = Field(None, description="parameter of the trade-off curve; "
                                                      "default: the reranker's")
    sweep: list[Any] | None = Field(None, description="its values; default: the reranker's "
                                                      "grid ([] = no curve)")
    target: str | None = Field(None, description="metric the curve shows; default: the "
                                                 "reranker's")
    target_attribute: str | None = None


class AuditConfig(_Strict):
    """A whole audit: model, decoding, catalog, probes, engine, stats, gates, mitigation, out."""

    name: str = "audit"
    model: str = "smollm2"
    model_options: dict[str, Any] = Field(default_factory=dict)
    allow_pickle: bool = False
    trust_remote_code: bool = False
    decoding: DecodingConfig = Field(default_factory=DecodingConfig)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    probes: list[ProbeSpec] = Field(default_factory=list)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    stats: StatsConfig = Field(default_factory=StatsConfig)
    gates: list[GateSpec] = Field(default_factory=list)
    mitigation: list[MitigationSpec] = Field(default_factory=list)
    out: str = "out"
    # Filled by load_config: where the config came from and its exact text.
    source_path: str | None = Field(None, exclude=True)
    source_text: str | None = Field(None, exclude=True)

    def require_probes(self) -> None:
        """Refuse an audit with nothing to run: a config error (exit 2), not an empty success."""
        if not self.probes:
            where = f"{self.source_path}: " if self.source_path else ""
            raise ConfigError(f"{where}no probes to run (add a 'probes:' list to the config)")

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the validated config (without output location)."""
        data = self.model_dump(mode="json", exclude={"out", "engine"})
        if data["decoding"]["samples"] == 1:  # as before samples existed
            del data["decoding"]["samples"]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def parse_config(data: Any, where: str = "<config>", text: str | None = None,
                 overrides: dict[str, Any] | None = None) -> AuditConfig:
    """Validate a mapping (from YAML) into an :class:`AuditConfig`; probe params included."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: top level must be a mapping of keys, got {type(data).__name__}")
    if overrides:
        data = deep_merge(data, overrides)
    try:
        cfg = AuditConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, where)) from None
    cfg.source_path = None if where.startswith("<") else where
    cfg.source_text = text
    from .probes.registry import resolve_probe_params  # lazy: probes import metrics
    for i, spec in enumerate(cfg.probes):
        spec.params = resolve_probe_params(spec, where=where, index=i)
    ids = [p.run_id for p in cfg.probes]
    dup = {x for x in ids if ids.count(x) > 1}
    if dup:
        raise ConfigError(f"{where}: probes: duplicate probe id {sorted(dup)[0]!r}; set 'id:'")
    check_mitigation(cfg.mitigation, ids, where)
    return cfg


def check_mitigation(specs: list[MitigationSpec], probe_ids: list[str], where: str) -> None:
    """Check every reranker, parameter and sweep value, and every named probe run.

    A problem is a one-line ConfigError (exit 2), before any model call.
    """
    from .mitigation.apply import resolve_rerankers

    for i, spec in enumerate(specs):
        resolve_rerankers(spec, f"{where}: mitigation[{i}]")
        unknown = [p for p in spec.probes if p not in probe_ids]
        if unknown:
            raise ConfigError(f"{where}: mitigation[{i}].probes: no probe run {unknown[0]!r}; "
                              f"runs: {', '.join(probe_ids) or 'none'}")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> AuditConfig:
    """Load and validate an audit YAML file; ``overrides`` (e.g. from CLI flags) win."""
    data, text = read_yaml(path, "config")
    return parse_config(data, where=str(path), text=text, overrides=overrides)
