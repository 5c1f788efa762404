"""AuditResult: the one serialisable object every downstream room (gates, report) works on.

``results.json`` is ``AuditResult.model_dump_json()``; its JSON Schema is shipped as
``recaudit/schema/results.schema.json`` (regenerate with ``python -m recaudit.results``).
Metrics are flat records so a gate can select one by (probe, metric, attribute, value, k,
variant). A probe result is self-describing: it carries the declarations of its metrics
(``specs``), its headline metrics, its tags and the unit tables its records derive from, so
report, gates and compare need no knowledge of any probe or metric.

Schema 1.1 added ``specs``, ``headline``, ``tags``, ``method_notes`` and ``units`` to a probe
result and ``variant``, ``null_mean``, ``null_p95``, ``table`` and ``statistic`` to a record;
Schema 1.2 added ``tradeoffs`` (mitigation trade-off curves) to a probe result; schema 1.3
``content_sha256``: the sha256 of the file's canonical JSON without that key (sorted keys,
``","``/``":"`` separators, ASCII), written on save and checked on load, so a results file
edited by hand is refused (exit 2) instead of gated or reported. 1.0, 1.1 and 1.2 files (which
carry no hash) still load (:func:`upgrade`). Schema 1.4 made a probe's status data: ``status``
is a :class:`ProbeStatus`, a skipped probe says why in ``skip_kind`` (:class:`SkipKind`),
``optional`` carries the config's ``optional: true``, and the engine's facts are fields
(``n_missing``, ``first_error``) instead of warning prose; older files get ``skip_kind`` from
their message (:func:`upgrade`). Schema 1.5 added a finding's ``n`` (the units it rests on);
a finding of an older file has none and is judged on its probe's units. Schema 1.6 added a
gate's ``decision``, ``decided_after`` and ``path`` (adaptive audits, :mod:`recaudit.adaptive`);
older files have none (a fixed-n audit). Schema 1.7 added a record's ``null_p05`` (the floor
of a lower-is-worse statistic); older files have none, and their report says no floor.
Schema 1.8 added a record's ``sequence_table`` (a prequential form for adaptive audits);
older files have none.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from .errors import DataError, OutputError

SCHEMA_VERSION = "1.8"
READABLE_VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7",
                     SCHEMA_VERSION)
HASH_KEY = "content_sha256"  # the integrity hash of results.json (schema 1.3)
ORIGINAL = "original"  # the variant of unmitigated results


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricRecord(_Model):
    """One number with its uncertainty.

    ``attribute``/``value`` locate it (an attribute and one of its values, or a group);
    aggregate metrics (SNSR, SNSV, AUC) leave ``value`` empty. ``ci_low``/``ci_high`` are the
    bootstrap CI at ``confidence``; ``p_value`` is a raw test p-value and ``p_adjusted`` the
    Benjamini-Hochberg adjusted one. ``convention`` names the variant (e.g. ``fairllm``).
    ``variant`` is ``"original"`` or the mitigation that produced it (``"fair(p=0.5)"``).
    ``null_mean`` / ``null_p95``: for a statistic that is positive under noise alone (a spread
    such as SNSR, a gap, an AUC), the mean and 95th percentile of its permutation null: what an
    unbiased model scores with this many units; ``null_p05``: its 5th percentile, the floor of
    a statistic where lower is worse (an impact ratio: noise alone gives at least it).
    ``self_floor``: with repeated samples, the
    95th percentile of the spread that the model's disagreement with itself alone gives
    (:func:`recaudit.samples.self_consistency_floor`). ``table`` / ``statistic`` name the unit
    table of the probe result it was computed from and how (``mean`` of one condition,
    ``range``, ``std``, ``ratio``), so compare can re-test it. ``sequence_table``: in an
    adaptive audit, a one-column unit table of prequential observations in [0, 1] (each from a
    model fitted on earlier rounds only, e.g. a classifier's AUC kernel on two fresh units)
    whose conditional means are each at most the statistic's population value: evidence that
    the statistic exceeds a bound, read by :func:`recaudit.adaptive.record_e_path`.
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
    variant: str = ORIGINAL
    null_mean: float | None = None
    null_p95: float | None = None
    null_p05: float | None = None
    self_floor: float | None = None
    table: str | None = None
    statistic: str | None = None
    sequence_table: str | None = None

    @field_validator("estimate", "ci_low", "ci_high", "p_value", "p_adjusted", "null_mean",
                     "null_p95", "null_p05", "self_floor", mode="before")
    @classmethod
    def _nan_to_none(cls, v: Any) -> Any:
        if v is None:
            return None
        v = float(v)
        return None if math.isnan(v) or math.isinf(v) else v


class Finding(_Model):
    """A sentence a reader should see first: its probe, severity, title, detail and effect.

    ``n``: the units the finding rests on (those of the record it is about); None: unknown, and
    the probe's units stand in (:func:`recaudit.verdicts.probe_status`).
    """

    probe: str
    severity: Literal["info", "low", "medium", "high"] = "info"
    title: str
    detail: str = ""
    effect: float | None = None
    n: int | None = None


class MetricSpecModel(_Model):
    """A metric's declaration as stored in results (see :mod:`recaudit.metrics.specs`)."""

    name: str
    description: str = ""
    higher_is_worse: bool | None = None
    null: float | None = None
    range: list[float] | None = None
    convention: str | None = None
    role: str | None = None
    noise_floor: bool = False  # positive under noise: records carry null_mean / null_p95


class UnitTable(_Model):
    """Per-unit values of one metric, ``values[u][c]`` (``None``: missing).

    ``values[u][c]`` is for unit ``units[u]`` (an instruction, a user) under condition
    ``conditions[c]`` (a value, a group, a position).

    ``id`` is unique within the probe result; records point at it with ``MetricRecord.table``.
    """

    id: str
    metric: str
    attribute: str | None = None
    k: int | None = None
    variant: str = ORIGINAL
    conditions: list[str]
    units: list[str]
    values: list[list[float | None]]

    def matrix(self) -> Any:
        """``values`` as a float array (units x conditions), NaN where missing."""
        import numpy as np

        return np.array([[np.nan if v is None else v for v in row] for row in self.values],
                        dtype=float).reshape(len(self.units), len(self.conditions))


class TradeoffPoint(_Model):
    """One point of a trade-off curve: the reranker at one parameter value.

    What it did to its target (estimate and CI) and what it cost (a utility loss, or the
    similarity of the re-ranked lists to the original ones where no held-out items exist).
    """

    value: Any = None
    variant: str
    target_estimate: float | None = None
    target_ci: list[float | None] = Field(default_factory=lambda: [None, None])
    target_attribute: str | None = None
    cost_metric: str
    cost_estimate: float | None = None
    cost_ci: list[float | None] = Field(default_factory=lambda: [None, None])


class Tradeoff(_Model):
    """A reranker's trade-off curve on one probe: ``parameter`` swept over ``points``."""

    reranker: str
    variant: str
    parameter: str | None = None
    target: str
    k: int | None = None
    baseline: str = ORIGINAL  # the variant "before" is read from (original@k: lists cut to k)
    before_estimate: float | None = None  # the target on the baseline lists
    before_ci: list[float | None] = Field(default_factory=lambda: [None, None])
    points: list[TradeoffPoint] = Field(default_factory=list)


class ProbeStatus(StrEnum):
    """How a probe run ended: ``ok`` (measured), ``error`` (it failed), ``skipped`` (not run)."""

    OK = "ok"
    ERROR = "error"
    SKIPPED = "skipped"


class SkipKind(StrEnum):
    """Why a probe was skipped, which decides whether the skip fails the audit.

    ``capability``: the model cannot serve the probe (it cannot score candidates);
    ``catalog``: the audit has no catalog (``catalog.source: none``) and the probe needs one;
    ``no_data``: the probe could not be fed (no eligible user, too few candidates). The first
    two are properties of the setup and never fail the audit; ``no_data`` fails it unless the
    probe is optional (:meth:`ProbeResult.fails_audit`).
    """

    CAPABILITY = "capability"
    CATALOG = "catalog"
    NO_DATA = "no_data"


#: skip kinds that are a property of the audited setup, not a failure of the audit
BENIGN_SKIPS = frozenset({SkipKind.CAPABILITY, SkipKind.CATALOG})


class ProbeResult(_Model):
    """Everything one probe run produced, including the raw records needed to recompute it.

    ``status`` and ``skip_kind`` say how it ended; ``error`` is the one-line reason of an error
    or a skip; ``optional``: the config's ``optional: true`` (its failure does not fail the
    audit). Engine facts: ``n_queries`` requests planned, ``n_failed`` of them without an answer
    (failed or not computed), ``n_missing`` of those not computed at all (``--max-requests``,
    ``--dry-run``, an interrupted run), ``first_error`` the first failed request's error.
    ``specs``: the declaration of every metric in ``metrics``; ``headline``: the metric names a
    reader looks at first; ``tags``: the probe's tags (fairness, robustness, ...);
    ``method_notes``: what a reader must know about the method; ``units``: unit tables.
    """

    id: str
    probe: str
    suite: str | None = None
    status: ProbeStatus = ProbeStatus.OK
    skip_kind: SkipKind | None = None
    error: str | None = None
    optional: bool = False
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: list[MetricRecord] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    examples: list[dict[str, Any]] = Field(default_factory=list)
    records: list[dict[str, Any]] = Field(default_factory=list)
    n_queries: int = 0
    n_failed: int = 0
    n_missing: int = 0
    first_error: str | None = None
    specs: dict[str, MetricSpecModel] = Field(default_factory=dict)
    headline: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    method_notes: list[str] = Field(default_factory=list)
    units: list[UnitTable] = Field(default_factory=list)
    tradeoffs: list[Tradeoff] = Field(default_factory=list)

    @model_validator(mode="after")
    def _skip_kind_only_when_skipped(self) -> "ProbeResult":
        if self.skip_kind is not None and self.status != ProbeStatus.SKIPPED:
            raise ValueError(f"skip_kind {self.skip_kind.value!r} with status "
                             f"{self.status.value!r}: only a skipped probe has a skip kind")
        return self

    def fails_audit(self) -> bool:
        """Whether this probe fails the audit (exit 4).

        It does when it ended in ``error``, or was skipped for a reason that is not a property
        of the setup (``no_data``, or a skip of unknown kind), unless it is ``optional``.
        """
        if self.optional or self.status == ProbeStatus.OK:
            return False
        return not (self.status == ProbeStatus.SKIPPED and self.skip_kind in BENIGN_SKIPS)

    def metric(self, metric: str, **where: Any) -> list[MetricRecord]:
        """Return the records of ``metric`` whose fields equal ``where`` (``attribute=...``)."""
        return [m for m in self.metrics if m.metric == metric
                and all(getattr(m, key) == val for key, val in where.items())]

    def unit_table(self, table_id: str | None) -> UnitTable | None:
        """Return the unit table ``table_id`` (None when absent)."""
        return next((t for t in self.units if t.id == table_id), None)

    def spec(self, metric: str) -> MetricSpecModel | None:
        """Return the declaration of ``metric`` (None when absent)."""
        return self.specs.get(metric)

    def describe_metrics(self) -> None:
        """Fill ``specs`` (and each record's direction) from the metric declarations."""
        from .metrics.specs import get_spec

        for m in self.metrics:
            if m.metric not in self.specs:
                spec = get_spec(m.metric)
                if spec is not None:
                    self.specs[m.metric] = MetricSpecModel(**spec.to_dict())
            spec_model = self.specs.get(m.metric)
            if m.higher_is_worse is None and spec_model is not None:
                m.higher_is_worse = spec_model.higher_is_worse


class GateResult(_Model):
    """A gate's verdict: what it bounded, what it observed, whether it passed, and why."""

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
    #: adaptive audits: "sequential" (decided by a confidence sequence), "fixed-n" (at the
    #: cap), "undecided" (the budget ran out); None: a fixed-n audit
    decision: str | None = None
    decided_after: int | None = None  # units asked when a sequential decision was taken
    #: per round: units, estimate and the confidence sequence (lower, upper) of the gate's
    #: deciding record
    path: list[dict[str, Any]] = Field(default_factory=list)


class Provenance(_Model):
    """Where a result came from: tool, model, weights, config, catalog, seeds, packages, time."""

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
    """An audit's results: provenance, config, probe results and gate verdicts (results.json)."""

    schema_version: str = SCHEMA_VERSION
    name: str = "audit"
    provenance: Provenance
    config: dict[str, Any] = Field(default_factory=dict)
    probes: list[ProbeResult] = Field(default_factory=list)
    gates: list[GateResult] = Field(default_factory=list)
    content_sha256: str | None = Field(
        None, description="sha256 of the file's canonical JSON without this key; set when "
                          "written, checked and cleared when loaded")

    # -- access -----------------------------------------------------------------------------
    def probe(self, probe_id: str) -> ProbeResult:
        """Return the probe result with this run id (or probe name); KeyError when absent."""
        for p in self.probes:
            if p.id == probe_id or p.probe == probe_id:
                return p
        raise KeyError(probe_id)

    def all_metrics(self) -> list[MetricRecord]:
        """Return every metric record of every probe."""
        return [m for p in self.probes for m in p.metrics]

    # -- serialisation ------------------------------------------------------------------------
    def to_json(self) -> str:
        """Return the text of ``results.json``, sealed with its ``content_sha256``."""
        sealed = self.model_copy(update={HASH_KEY: self.results_hash()})
        return sealed.model_dump_json(indent=1)

    def results_hash(self) -> str:
        """Return the sha256 of the result's canonical JSON without ``content_sha256``.

        Shown in every report; the ``content_sha256`` its results.json carries.
        """
        return content_digest(json.loads(self.model_dump_json(exclude={HASH_KEY})))

    def write_json(self, out_dir: str | Path) -> Path:
        """Write ``results.json`` into ``out_dir``; return its path.

        :func:`recaudit.report.save_result` writes the reports too. Raises
        :class:`~recaudit.errors.OutputError` when it cannot.
        """
        out = check_output_dir(out_dir)
        path = out / "results.json"
        try:
            path.write_text(self.to_json(), encoding="utf-8")
        except OSError as err:
            raise OutputError(f"cannot write to output directory {out_dir}: "
                              f"{err.strerror or err}") from None
        return path

    @classmethod
    def load(cls, path: str | Path) -> "AuditResult":
        """Read a results.json (or its directory), checking version and content hash.

        Any problem is a one-line :class:`~recaudit.errors.DataError` (exit 2); an older
        schema is brought up to date (:func:`upgrade`).
        """
        p = Path(path)
        if p.is_dir():
            p = p / "results.json"
        if not p.is_file():
            raise DataError(f"results file not found: {p}")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise DataError(f"{p}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at "
                            f"offset {err.start})") from None
        except json.JSONDecodeError as err:
            raise DataError(f"{p}: not valid JSON: {err}") from None
        except RecursionError:
            raise DataError(f"{p}: not a recaudit results file (JSON nested too deeply)") \
                from None
        if not isinstance(data, dict):
            raise DataError(f"{p}: not a recaudit results file")
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise DataError(f"{p}: results schema version {version!r} is not supported "
                            f"(this recaudit reads {', '.join(map(repr, READABLE_VERSIONS))})")
        stored = data.pop(HASH_KEY, None)
        if stored is not None and stored != content_digest(data):
            raise DataError(f"{p}: results file was modified after it was written "
                            f"({HASH_KEY} does not match its content)")
        try:
            return upgrade(cls.model_validate({**data, "schema_version": SCHEMA_VERSION}),
                           version)
        except ValidationError as err:
            from .yamlio import format_validation_error

            raise DataError(format_validation_error(
                err, f"{p}: not a valid recaudit results file")) from None


def content_digest(data: dict[str, Any]) -> str:
    """sha256 of ``data`` (parsed results.json) as canonical JSON, without ``content_sha256``."""
    body = {k: v for k, v in data.items() if k != HASH_KEY}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# Tags of the probes that existed in schema 1.0 (1.0 files did not record them).
_TAGS_1_0 = {"counterfactual": ["fairness", "consumer", "fairllm", "robustness"],
             "profile": ["fairness", "consumer", "cfairllm", "accuracy"],
             "leakage": ["fairness", "privacy", "up5"]}


def upgrade(result: AuditResult, version: str) -> AuditResult:
    """Bring a result read from schema ``version`` up to the current one.

    A 1.0 file gets its metric declarations (from :mod:`recaudit.metrics`) and its probes'
    tags; a skipped probe of a file before 1.4 gets its :class:`SkipKind` from the message
    those versions wrote (``"skipped: <model> lacks score"``, ``"skipped: needs a catalog"``).
    """
    if version == "1.0":
        for p in result.probes:
            p.describe_metrics()
            if not p.tags:
                p.tags = list(_TAGS_1_0.get(p.probe, []))
    if version in ("1.0", "1.1", "1.2", "1.3"):
        for p in result.probes:
            if p.status == ProbeStatus.SKIPPED and p.skip_kind is None:
                p.skip_kind = _old_skip_kind(p.error or "")
    return result


def _old_skip_kind(message: str) -> SkipKind | None:
    """Read the skip kind of a message written before schema 1.4 (None: unrecognised)."""
    if message.startswith("skipped: needs a catalog"):
        return SkipKind.CATALOG
    if message.startswith("skipped: ") and " lacks " in message:
        return SkipKind.CAPABILITY
    return None


def check_output_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir`` if needed and check that a file can be written in it.

    Called before any model call, so an audit never finishes only to find nowhere to put its
    results.
    """
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
    """Return the JSON Schema of results.json (shipped in ``recaudit/schema/``)."""
    schema = AuditResult.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"recaudit results (schema {SCHEMA_VERSION})"
    return schema


def schema_path() -> Path:
    """Return the path of the shipped JSON Schema."""
    return Path(__file__).with_name("schema") / "results.schema.json"


if __name__ == "__main__":  # regenerate the shipped schema
    schema_path().parent.mkdir(exist_ok=True)
    schema_path().write_text(json.dumps(json_schema(), indent=1) + "\n", encoding="utf-8")
    print(schema_path())
