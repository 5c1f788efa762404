"""The probe base: a probe is *plan, measure, say* (docs/ARCHITECTURE.md, "Adding a probe").

* :class:`QueryKey`: what one planned query means to its probe (unit, attribute, value, extra),
  a frozen, hashable dataclass; ``str(key)`` is the query id the engine and results.json use
  (``"unit|attribute|value|extra..."``, ``None`` parts left out), made in this one place.
* :class:`Query`: one planned model call, with its key, request and meta.
* :class:`Probe`: typed ``Params``; ``plan(ctx)`` -> queries; ``analyse(ctx, queries, answers)``
  is ``begin`` -> ``measure(run)`` -> BH adjustment -> ``say(run, measured)`` -> ``finish``.
* :meth:`Probe.begin` -> :class:`Run`: the shared preamble, i.e. the
  :class:`~recaudit.results.ProbeResult`, the collected lists (:class:`~recaudit.probes.kit.
  Collected`, looked up by key) with the raw records stored on the result, and the
  :class:`~recaudit.probes.kit.Summariser`; :meth:`Run.units_complete` writes the shared
  "n of m units left out" and small-sample warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from ..yamlio import no_bool_for_number

if TYPE_CHECKING:  # pragma: no cover
    from ..catalog import Catalog
    from ..engine import Answer
    from ..recommenders.base import Recommender, Request, Response
    from ..results import ProbeResult
    from .kit import Collected, RawRecord, Summariser

__all__ = ["NEUTRAL", "AuditContext", "Probe", "ProbeParams", "Query", "QueryKey", "Run"]

#: the separator of a query id's parts (``str(QueryKey(...))``)
SEP = "|"
#: the value part of a unit's neutral query (``QueryKey(unit, value=NEUTRAL)`` -> ``"3|neutral"``)
NEUTRAL = "neutral"


class ProbeParams(BaseModel):
    """Base of every probe's typed parameters.

    Unknown keys are refused, and so is a boolean for a number (``k: true`` is not k = 1;
    :func:`~recaudit.yamlio.no_bool_for_number`).
    """

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: Any, info: ValidationInfo) -> Any:
        return no_bool_for_number(value, cls.model_fields[info.field_name].annotation)


@dataclass(frozen=True)
class QueryKey:
    """What a query means to its probe: its unit, and the attribute, value and extra parts.

    ``str(key)`` is the query id: the parts ``unit, attribute, value, *extra`` that are not
    ``None``, joined by ``"|"`` (``QueryKey(3, "gender", "a girl")`` -> ``"3|gender|a girl"``,
    ``QueryKey(3, value="neutral")`` -> ``"3|neutral"``). A probe builds keys in ``plan`` and
    looks answers up by the same keys in ``measure``; it never parses an id back.
    """

    unit: Any
    attribute: str | None = None
    value: str | None = None
    extra: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.extra, tuple):
            object.__setattr__(self, "extra", tuple(self.extra))

    def parts(self) -> tuple[Any, ...]:
        """Return the parts written into the id, in order (``None`` left out)."""
        return tuple(x for x in (self.unit, self.attribute, self.value, *self.extra)
                     if x is not None)

    def __str__(self) -> str:
        return SEP.join(str(x) for x in self.parts())


@dataclass(frozen=True)
class Query:
    """One planned model call and what it means to the probe.

    ``id`` may be given as a :class:`QueryKey` (stored as ``key``; ``id`` becomes ``str(key)``)
    or as a plain string (then ``key`` is ``QueryKey(id)``, whose string is the same id).
    """

    id: str
    request: "Request"
    meta: dict[str, Any] = field(default_factory=dict)
    key: QueryKey = field(default=None, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        ident = self.id
        if isinstance(ident, QueryKey):
            object.__setattr__(self, "key", ident)
            object.__setattr__(self, "id", str(ident))
        elif self.key is None:
            object.__setattr__(self, "key", QueryKey(ident))
        elif str(self.key) != ident:
            raise ValueError(f"query id {ident!r} is not its key's string {str(self.key)!r}")


@dataclass
class AuditContext:
    """What a probe may use: the catalog, the stats settings and the recommender's abilities."""

    catalog: "Catalog"
    stats: Any  # recaudit.config.StatsConfig (not imported: the config imports this module)
    capabilities: frozenset[str]
    config: Any = None  # recaudit.config.AuditConfig | None
    recommender: "Recommender | None" = None
    #: adaptive audits: the round (0 = first) in which each unit (``str(QueryKey.unit)``) was
    #: asked; a probe with a prequential form fits on earlier rounds and scores later ones
    arrival: Mapping[str, int] | None = None


@dataclass
class Run:
    """One ``analyse`` call in progress: what :meth:`Probe.begin` hands a probe.

    ``result`` is the :class:`~recaudit.results.ProbeResult` being filled (its ``records``
    already hold every query's raw record), ``got`` the collected lists and shares by
    :class:`QueryKey`, ``summary`` the :class:`~recaudit.probes.kit.Summariser` writing the
    metric records, ``method_notes`` the notes :meth:`finish` stores (the probe's class
    notes; a probe may add to them).
    """

    probe: "Probe"
    ctx: AuditContext
    queries: list[Query]
    answers: dict[str, "Answer"]
    result: "ProbeResult"
    got: "Collected"
    summary: "Summariser"
    method_notes: list[str] = field(default_factory=list)
    #: the headline :meth:`finish` stores (None: the probe's ``headline``)
    headline: Sequence[str] | None = None

    @property
    def params(self) -> Any:
        """The probe's validated parameters."""
        return self.probe.params

    def warn(self, message: str) -> None:
        """Add a warning to the result (once)."""
        if message not in self.result.warnings:
            self.result.warnings.append(message)

    def units_complete(self, label: str | None, n_complete: int, n_total: int, *,
                       noun: str = "units", reason: str = "a response failed or was not "
                       "computed") -> str | None:
        """Warn when units were left out and when too few remain.

        Returns the small-sample warning (None when there are enough units). Writes
        ``"<label>: <n_total - n_complete> of <n_total> <noun> left out (<reason>)"``
        and ``"<label>: <small-sample warning> (units: <noun>)"`` (the one sentence of
        :func:`recaudit.verdicts.small_sample_warning` every probe writes; no ``label:``
        prefix when ``label`` is None); the small-sample rule is ``stats.min_group_size``.
        """
        prefix = f"{label}: " if label else ""
        if n_complete < n_total:
            self.warn(f"{prefix}{n_total - n_complete} of {n_total} {noun} left out ({reason})")
        small = self.summary.warning(n_complete)
        if small:
            self.warn(f"{prefix}{small} (units: {noun})")
        return small

    def finish(self) -> "ProbeResult":
        """Adjust p-values, store declarations, unit tables, headline, tags and notes."""
        return self.summary.finish(
            headline=self.probe.headline if self.headline is None else self.headline,
            tags=self.probe.tags, method_notes=self.method_notes)


class Probe:
    """Base of every probe: ``plan`` (queries), ``measure`` (records), ``say`` (findings).

    Subclasses set ``Params``, ``requires`` (any of these capabilities), ``headline`` (the
    metrics the report leads with) and ``method_notes``, and implement :meth:`plan` and
    :meth:`measure` (and :meth:`say` when they have findings). :meth:`analyse` is what the
    audit and mitigation call; a probe that needs another order may override it and still use
    :meth:`begin`.
    """

    name: ClassVar[str] = ""
    tags: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    Params: ClassVar[type[ProbeParams]] = ProbeParams
    requires: ClassVar[frozenset[str]] = frozenset()  # any of these capabilities
    #: True when the probe always needs catalog data (popularity, genres, item groups, user
    #: histories): a catalog-free audit (``catalog: {source: none}``) skips it with the reason
    needs_catalog: ClassVar[bool] = False
    #: params a config entry gives whole: its value replaces the suite's instead of merging into
    #: it key by key (``attributes: {gender: [...]}`` on the fairllm suite runs gender only)
    whole_params: ClassVar[frozenset[str]] = frozenset()
    #: the metrics the report leads with
    headline: ClassVar[tuple[str, ...]] = ()
    #: how to read the numbers (stored on every result)
    method_notes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: ProbeParams, run_id: str | None = None,
                 suite: str | None = None) -> None:
        self.params = params
        self.run_id = run_id or self.name
        self.suite = suite

    # -- plan -----------------------------------------------------------------------------------
    def plan(self, ctx: AuditContext) -> list[Query]:
        """Return the queries to send.

        Raises :class:`recaudit.errors.ProbeCannotRun` when the probe cannot be fed (see
        :mod:`recaudit.probes.sampling`).
        """
        raise NotImplementedError

    # -- measure and say --------------------------------------------------------------------------
    def list_length(self) -> int:
        """How many grounded items of each answer :meth:`begin` keeps (default ``params.k``)."""
        return int(self.params.k)  # type: ignore[attr-defined]

    def begin(self, ctx: AuditContext, queries: Iterable[Query], answers: dict[str, "Answer"],
              k: int | None = None) -> Run:
        """Start the analysis: the shared preamble every probe runs.

        Returns a :class:`Run` holding a fresh result, the answers collected into lists of the
        first ``k`` grounded items (default :meth:`list_length`), the raw records stored on the
        result, and a summariser.
        """
        from ..results import ProbeResult
        from .kit import Summariser, collect

        queries = list(queries)
        res = ProbeResult(id=self.run_id, probe=self.name, suite=self.suite,
                          params=self.params.model_dump(mode="json"))
        got = collect(queries, answers, self.list_length() if k is None else k)
        res.records = got.records
        return Run(probe=self, ctx=ctx, queries=queries, answers=answers, result=res, got=got,
                   summary=Summariser(res, ctx.stats), method_notes=list(self.method_notes))

    def measure(self, run: Run) -> Any:
        """Turn the collected lists into metric records (``run.summary``).

        What it returns (e.g. the records the findings are about) is handed to :meth:`say`.
        """
        raise NotImplementedError(f"probe {self.name!r} implements neither measure nor analyse")

    def say(self, run: Run, measured: Any) -> None:
        """Write the findings about ``measured``; none by default.

        p-values are adjusted by the time it is called.
        """

    def analyse(self, ctx: AuditContext, queries: list[Query],
                answers: dict[str, "Answer"]) -> "ProbeResult":
        """Analyse the answers: begin, measure, Benjamini-Hochberg adjustment, say, finish.

        With repeated samples (``decoding.samples`` >= 2) every table ``measure`` builds holds
        the mean over samples of each cell, and the model's self-consistency is recorded
        (:mod:`recaudit.samples`).
        """
        from ..samples import averaged_over_samples
        from .consistency import record_self_consistency

        with averaged_over_samples(self, ctx, queries, answers) as notes:
            run = self.begin(ctx, queries, answers)
            measured = self.measure(run)
        run.method_notes.extend(notes)
        record_self_consistency(run)
        run.summary.adjust()
        self.say(run, measured)
        return run.finish()

    # -- a saved result (recaudit mitigate) -----------------------------------------------------
    def saved_capabilities(self, records: Sequence["RawRecord"]) -> frozenset[str] | None:
        """Return the capabilities a stored result of this probe ran with.

        They are read from its raw records, so that re-planning gives the same requests; None
        (the default): planning does not depend on them.
        """
        return None

    def saved_response(self, query: Query, record: "RawRecord") -> "Response":
        """Return the response a stored raw record replays (``recaudit mitigate``).

        By default its text and error; a probe whose records keep more of the answer
        (position's candidate scores) adds it.
        """
        from ..recommenders.base import Response

        return Response(text=record.text or "", error=record.error)
