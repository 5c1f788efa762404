"""AuditResult: the one serialisable object every downstream room (gates, report) works on.

``results.json`` is ``AuditResult.model_dump_json()``; its JSON Schema is shipped as
``recaudit/schema/results.schema.json`` (regenerate with ``python -m recaudit.results``).
Metrics are flat records so a gate can select one by (probe, metric, attribute, value, k).
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import DataError, OutputError

SCHEMA_VERSION = "1.0"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricRecord(_Model):
    """One number with its uncertainty.

    ``attribute``/``value`` locate it (an attribute and one of its values, or a group);
    aggregate metrics (SNSR, SNSV, AUC) leave ``value`` empty. ``ci_low``/``ci_high`` are the
    bootstrap CI at ``confidence``; ``p_value`` is a raw test p-value and ``p_adjusted`` the
    Benjamini-Hochberg adjusted one. ``convention`` names the variant (e.g. ``fairllm``).
    """

    probe: str
    metric: str
    attribute: str | None = None
    value: str | None = None
    k: int | None = None
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    n: int | None = None
    convention: str | None = None
    higher_is_worse: bool | None = None
    warning: str | None = None

    @field_validator("estimate", "ci_low", "ci_high", "p_value", "p_adjusted", mode="before")
    @classmethod
    def _nan_to_none(cls, v: Any) -> Any:
        if v is None:
            return None
        v = float(v)
        return None if math.isnan(v) or math.isinf(v) else v


class Finding(_Model):
    probe: str
    severity: Literal["info", "low", "medium", "high"] = "info"
    title: str
    detail: str = ""
    effect: float | None = None


class ProbeResult(_Model):
    """Everything one probe run produced, including the raw records needed to recompute it."""

    id: str
    probe: str
    suite: str | None = None
    status: Literal["ok", "error", "skipped"] = "ok"
    error: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: list[MetricRecord] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    examples: list[dict[str, Any]] = Field(default_factory=list)
    records: list[dict[str, Any]] = Field(default_factory=list)
    n_queries: int = 0
    n_failed: int = 0

    def metric(self, metric: str, **where: Any) -> list[MetricRecord]:
        return [m for m in self.metrics if m.metric == metric
                and all(getattr(m, key) == val for key, val in where.items())]


class GateResult(_Model):
    name: str
    probe: str
    metric: str
    mode: str
    bound: str
    passed: bool
    observed: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_adjusted: float | None = None
    selected: int = 0
    message: str = ""


class Provenance(_Model):
    tool_version: str
    model_spec: str
    model_fingerprint: str | None = None
    weights_sha256: str | None = None
    config_text: str | None = None
    config_sha256: str | None = None
    catalog_sha256: str | None = None
    seeds: dict[str, int] = Field(default_factory=dict)
    packages: dict[str, str] = Field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    command_line: str | None = None
    engine: dict[str, Any] = Field(default_factory=dict)
    batch_invariance: str | None = None  # "yes (how)" / "no (why)"; None: the adapter can't know


class AuditResult(_Model):
    schema_version: str = SCHEMA_VERSION
    name: str = "audit"
    provenance: Provenance
    config: dict[str, Any] = Field(default_factory=dict)
    probes: list[ProbeResult] = Field(default_factory=list)
    gates: list[GateResult] = Field(default_factory=list)

    # -- access -----------------------------------------------------------------------------
    def probe(self, probe_id: str) -> ProbeResult:
        for p in self.probes:
            if p.id == probe_id or p.probe == probe_id:
                return p
        raise KeyError(probe_id)

    def all_metrics(self) -> list[MetricRecord]:
        return [m for p in self.probes for m in p.metrics]

    # -- serialisation ------------------------------------------------------------------------
    def to_json(self) -> str:
        return self.model_dump_json(indent=1)

    def results_hash(self) -> str:
        """sha256 of the canonical JSON (sorted keys) of the result: shown in every report."""
        data = self.model_dump(mode="json")
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def save(self, out_dir: str | Path, formats: tuple[str, ...] = ("json", "html", "junit", "md")
             ) -> dict[str, Path]:
        """Write results.json and the reports into ``out_dir``; return the written paths.

        Raises :class:`~recaudit.errors.OutputError` (exit 2) when ``out_dir`` cannot be written.
        """
        out = check_output_dir(out_dir)
        written: dict[str, Path] = {}
        try:
            if "json" in formats:
                written["json"] = out / "results.json"
                written["json"].write_text(self.to_json(), encoding="utf-8")
            rest = [f for f in formats if f != "json"]
            if rest:
                from .report import render_all
                written.update(render_all(self, out, formats=tuple(rest)))
        except OSError as err:
            raise OutputError(f"cannot write to output directory {out_dir}: "
                              f"{err.strerror or err}") from None
        return written

    @classmethod
    def load(cls, path: str | Path) -> "AuditResult":
        p = Path(path)
        if p.is_dir():
            p = p / "results.json"
        if not p.is_file():
            raise DataError(f"results file not found: {p}")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"{p}: not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise DataError(f"{p}: not a recaudit results file")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise DataError(f"{p}: results schema version {version!r} is not supported "
                            f"(this recaudit reads {SCHEMA_VERSION!r})")
        try:
            return cls.model_validate(data)
        except Exception as err:  # pydantic ValidationError: one line
            first = str(err).splitlines()
            raise DataError(f"{p}: not a valid recaudit results file: "
                            f"{first[1] if len(first) > 1 else first[0]}") from None


def check_output_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir`` if needed and check that a file can be written in it (before any model
    call, so an audit never finishes only to find nowhere to put its results)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".recaudit-write-check-"):
            pass
    except OSError as err:
        raise OutputError(f"cannot write to output directory {out_dir}: "
                          f"{err.strerror or err}") from None
    return out


def json_schema() -> dict[str, Any]:
    schema = AuditResult.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"recaudit results (schema {SCHEMA_VERSION})"
    return schema


def schema_path() -> Path:
    return Path(__file__).with_name("schema") / "results.schema.json"


if __name__ == "__main__":  # regenerate the shipped schema
    schema_path().parent.mkdir(exist_ok=True)
    schema_path().write_text(json.dumps(json_schema(), indent=1) + "\n", encoding="utf-8")
    print(schema_path())
