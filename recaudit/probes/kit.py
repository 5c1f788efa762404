"""The analysis kit every probe shares (docs/ARCHITECTURE.md, "Adding a probe").

A probe is typed ``Params``, ``plan`` (queries), ``measure`` (answers -> :class:`Table`) and its
findings in words. Everything else lives here:

* :func:`collect`: answers -> lists truncated to ``k``, hallucination and empty-list shares per
  query, and the raw records (text, grounded ids, unmatched entries, error) of every query;
* :class:`Table`: one declared metric's values, units x conditions (x k): instruction x value,
  user x group, request x input position, request x perturbation;
* :class:`Summariser`: tables -> :class:`~recaudit.results.MetricRecord` s. Condition means carry
  a bootstrap CI over units; spread statistics (``snsr``, ``snsv``, ``gap``, ``ratio``: see
  :mod:`recaudit.metrics.specs`) carry a paired-bootstrap CI (all conditions of a resampled unit
  move together) and, at the table's largest k, a paired permutation p-value (null: conditions
  exchangeable within a unit) and the *null floor*: the permutation null's mean and 95th
  percentile, i.e. what a model without any effect scores with this many units; with repeated
  samples a range / std spread also carries ``self_floor``, what the model's disagreement with
  itself alone gives (:func:`recaudit.samples.self_consistency_floor`). A record whose
  metric declares ``noise_floor`` (every spread; Cramér's V, NDKL, ... :mod:`recaudit.metrics.
  specs`) carries the bias-corrected bootstrap CI (:func:`recaudit.stats.
  bias_corrected_interval`: resampling's own noise inflates such a statistic, so the plain
  percentile interval can lie above the estimate) and its floor under the probe's own null
  (:meth:`Summariser.derived` ``null=``, :meth:`Summariser.attach_floor`). p-values are
  Benjamini-Hochberg adjusted within a family (one metric across attributes). Every record
  below ``stats.min_group_size`` units carries :func:`recaudit.verdicts.small_sample_warning`;
  significance and severity are :mod:`recaudit.verdicts`'s, and every resampling routine
  (multinomial unit counts, resampled means, percentile interval, null floor) is
  :mod:`recaudit.stats`'s.

Seeding policy: every random draw is seeded by ``sha256(stats.seed, probe id, metric,
attribute, variant, purpose)`` (:meth:`Summariser.seed`). A table's units are resampled once for
all its conditions and k values, so adding a metric, an attribute, a k or a variant never moves
another number's CI or p-value.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Iterator, Sequence

import numpy as np

from .. import verdicts
from ..results import ORIGINAL, Finding, MetricRecord, MetricSpecModel, ProbeResult, UnitTable
from ..stats import (benjamini_hochberg, bias_corrected_interval, bootstrap_counts,
                     column_means, null_floor, percentile_interval, permutation_test_values,
                     resampled_means, spread_statistic)

__all__ = ["ByKey", "Collected", "RawRecord", "collect", "Table", "Summariser",
           "SPREAD_STATISTIC", "variant_scope", "current_variant"]

#: spread kind -> the statistic over condition means it is (see stats.spread_statistic)
SPREAD_STATISTIC = {"snsr": "range", "snsv": "std", "gap": "range", "ratio": "ratio"}


_VARIANT: ContextVar[str] = ContextVar("recaudit_variant", default=ORIGINAL)


def current_variant() -> str:
    """Return the variant tables and records get by default.

    That is ``"original"``, or the mitigation whose lists a probe is measuring (inside
    :func:`variant_scope`).
    """
    return _VARIANT.get()


@contextmanager
def variant_scope(variant: str) -> Iterator[None]:
    """Measure under ``variant``: every Table and record made inside gets it by default.

    So a probe's own ``analyse`` measures a reranker's lists without knowing about mitigation.
    """
    token = _VARIANT.set(variant)
    try:
        yield
    finally:
        _VARIANT.reset(token)


# -- answers -> lists ----------------------------------------------------------------------------
def _id(key: Any) -> str:
    """Return the query id of a :class:`~recaudit.probes.base.QueryKey` (its string) or of an id."""
    return key if isinstance(key, str) else str(key)


class ByKey(dict):
    """Values by query id.

    Looked up by a :class:`~recaudit.probes.base.QueryKey` or by the id string itself
    (iteration yields the id strings).
    """

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__(_id(key))

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(_id(key), value)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(_id(key))

    def get(self, key: Any, default: Any = None) -> Any:
        """Return the value of ``key`` (a QueryKey or an id), or ``default``."""
        return super().get(_id(key), default)


@dataclass(frozen=True)
class RawRecord:
    """What one query got: the raw record stored in ``ProbeResult.records``.

    ``meta`` is the query's meta (unit, attribute, value, user...); the other fields are the
    engine's facts. :meth:`to_json` gives the stored layout: ``id``, the meta's keys, then
    ``request_key``, ``text``, ``item_ids``, ``unmatched``, ``hallucination``, ``empty_list``,
    ``error``; :meth:`from_json` reads it back.
    """

    id: str
    meta: dict[str, Any]
    request_key: str
    text: str | None
    item_ids: list[str] | None
    unmatched: list[str] | None
    hallucination: float | None
    empty_list: float | None
    error: str | None

    FIELDS: ClassVar[tuple[str, ...]] = ("request_key", "text", "item_ids", "unmatched",
                                         "hallucination", "empty_list", "error")

    @property
    def ok(self) -> bool:
        """True when the query was answered and grounded."""
        return self.item_ids is not None

    def to_json(self) -> dict[str, Any]:
        """Return the record as stored in results.json."""
        return {"id": self.id, **self.meta, **{f: getattr(self, f) for f in self.FIELDS}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RawRecord":
        """Read a stored record (see :meth:`to_json`); missing engine fields read as None."""
        meta = {k: v for k, v in data.items() if k != "id" and k not in cls.FIELDS}
        return cls(id=str(data["id"]), meta=meta, **{f: data.get(f) for f in cls.FIELDS})


@dataclass
class Collected:
    """Lists by query (``None``: failed or not computed), per-query answer shares, raw records.

    Every mapping is looked up by :class:`~recaudit.probes.base.QueryKey` or id.
    """

    lists: ByKey = field(default_factory=ByKey)
    hallucination: ByKey = field(default_factory=ByKey)
    empty: ByKey = field(default_factory=ByKey)
    raw: ByKey = field(default_factory=ByKey)
    #: with repeated samples (``decoding.samples`` > 1): every sample's list of a query, in
    #: sample order (``None``: that sample failed or was not computed); ``lists`` is sample 0
    samples: ByKey = field(default_factory=ByKey)

    @property
    def records(self) -> list[dict[str, Any]]:
        """The raw records in query order, as stored in ``ProbeResult.records``."""
        return [r.to_json() for r in self.raw.values()]

    def complete(self, keys: Iterable[Any]) -> bool:
        """Return True when every query in ``keys`` (QueryKeys or ids) has a list."""
        return all(self.lists.get(i) is not None for i in keys)


def collect(queries: Sequence[Any], answers: dict[str, Any], k: int) -> Collected:
    """Turn the engine's answers into lists (first ``k`` grounded items) and raw records.

    A record (:class:`RawRecord`) holds the query's id and meta, its request key, the raw text,
    the grounded ids, the unmatched entries, the hallucination and empty-list shares and the
    error, so every number of a probe can be recomputed from results.json.
    """
    out = Collected()
    for q in queries:
        a = answers.get(q.id)
        ok = a is not None and a.ok and a.grounding is not None
        out.lists[q.id] = list(a.item_ids[:k]) if ok else None
        if ok:
            out.hallucination[q.id] = float(a.grounding.hallucination_share)
            out.empty[q.id] = float(not a.item_ids)
        out.raw[q.id] = RawRecord(
            id=q.id, meta=dict(q.meta), request_key=q.request.key(),
            text=a.response.text if a else None, item_ids=out.lists[q.id],
            unmatched=list(a.grounding.unmatched) if ok else None,
            hallucination=out.hallucination.get(q.id), empty_list=out.empty.get(q.id),
            error=a.response.error if a else "not computed")
        if a is not None and a.samples and a.ranked is None:  # a reranker orders one list
            out.samples[q.id] = [list(s.item_ids[:k]) if s is not None and s.ok
                                 and s.grounding is not None else None for s in a.samples]
    return out


# -- tables --------------------------------------------------------------------------------------
@dataclass
class Table:
    """Values of one declared metric, by unit, condition and k.

    ``values[u, c, j]`` for unit ``u``, condition ``c`` and ``ks[j]`` (a 2-D ``values`` has no
    k axis). NaN = missing cell (left out of means). With repeated samples a cell is its mean
    over samples (:mod:`recaudit.samples`) and ``sample_values[s, u, c, j]`` keeps the
    per-sample cells; ``averaged=False`` marks a table already computed from every sample (it
    is not averaged again).
    """

    metric: str
    attribute: str | None
    conditions: list[str]
    units: list[str]
    values: np.ndarray
    ks: list[int] | None = None
    variant: str = field(default_factory=current_variant)
    part: str = ""  # tells apart two tables of one metric and attribute (e.g. a baseline)
    averaged: bool = True
    sample_values: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=float)
        if self.values.ndim == 2:
            self.values = self.values[:, :, None]
        want = (len(self.units), len(self.conditions), len(self.ks or [None]))
        if self.values.shape != want:
            raise ValueError(f"table {self.metric}: values of shape {self.values.shape}, "
                             f"expected {want}")
        from ..samples import table_made

        table_made(self)  # repeated samples: each cell becomes its mean over samples

    @property
    def max_k(self) -> int | None:
        """The largest truncation k (None for a table without a k axis)."""
        return max(self.ks) if self.ks else None

    @property
    def id(self) -> str:
        """Unique within a probe result: variant/metric/attribute@k (at the largest k)."""
        k = f"@{self.max_k}" if self.ks else ""
        part = f"/{self.part}" if self.part else ""
        return f"{self.variant}/{self.metric}/{self.attribute or ''}{part}{k}"

    def to_result(self) -> UnitTable:
        """Return the stored form: values at the largest k only (what compare re-tests)."""
        last = self.values[:, :, -1]
        return UnitTable(id=self.id, metric=self.metric, attribute=self.attribute,
                         k=self.max_k, variant=self.variant, conditions=list(self.conditions),
                         units=[str(u) for u in self.units],
                         values=[[None if np.isnan(v) else float(v) for v in row]
                                 for row in last])


# -- tables -> records ---------------------------------------------------------------------------
class Summariser:
    """Turns a probe's tables into records on its :class:`~recaudit.results.ProbeResult`.

    Call :meth:`means`, :meth:`spread`, :meth:`derived` and :meth:`record` while measuring, then
    :meth:`finish` once: it applies Benjamini-Hochberg per family, attaches the metric
    declarations, headline, tags and unit tables to the result.
    """

    def __init__(self, result: ProbeResult, stats: Any) -> None:
        self.res = result
        self.st = stats
        self.families: dict[str, list[MetricRecord]] = {}
        self._tables: dict[str, UnitTable] = {}
        self._boot: dict[tuple, np.ndarray] = {}

    # -- randomness ----------------------------------------------------------------------------
    def seed(self, *parts: Any) -> int:
        """Return the seed of one draw: it depends only on stats.seed, the probe id, ``parts``."""
        blob = "|".join(str(x) for x in (self.st.seed, self.res.id, *parts))
        return int(hashlib.sha256(blob.encode("utf-8")).hexdigest()[:15], 16)

    def boot_counts(self, n_units: int, *key: Any) -> np.ndarray:
        """(n_bootstrap, n_units) multinomial resample counts of units, seeded by ``key``."""
        ck = (n_units, *key)
        if ck not in self._boot:
            self._boot[ck] = bootstrap_counts(n_units, int(self.st.n_bootstrap),
                                              self.seed("bootstrap", *key))
        return self._boot[ck]

    def _boot_means(self, t: Table) -> np.ndarray:
        """(B, C, K) resampled condition means of a table (NaN cells left out)."""
        counts = self.boot_counts(len(t.units), t.metric, t.attribute, t.variant, t.part)
        return resampled_means(t.values, counts)

    def interval(self, boot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Percentile interval over axis 0 at ``stats.confidence`` (NaN resamples left out)."""
        return percentile_interval(boot, self.st.confidence)

    _interval = interval  # the name the leakage probe calls

    def metric_interval(self, metric: str, boot: np.ndarray, estimate: Any,
                        confidence: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return the CI of ``metric``'s replicates ``boot`` (over axis 0).

        The percentile interval (:meth:`interval`), or, when the metric's declaration has
        ``noise_floor`` and there is an estimate, the bias-corrected one
        (:func:`recaudit.stats.bias_corrected_interval`) clipped to the declared range; at
        ``confidence`` (default ``stats.confidence``; a family-wise adjusted level, e.g.).
        """
        from ..metrics.specs import get_spec

        spec = get_spec(metric)
        level = self.st.confidence if confidence is None else confidence
        est = np.asarray([np.nan if e is None else e for e in np.ravel(estimate)], dtype=float)
        if spec is None or not spec.noise_floor or not np.isfinite(est).any():
            return percentile_interval(boot, level)
        lo, hi = bias_corrected_interval(boot, est.reshape(boot.shape[1:]), level)
        if spec.range is not None:
            lo, hi = np.clip(lo, *spec.range), np.clip(hi, *spec.range)
        return lo, hi

    # -- records -------------------------------------------------------------------------------
    def warning(self, n: int) -> str | None:
        """Return the small-sample warning of a record on ``n`` units (or None)."""
        return verdicts.small_sample_warning(n, verdicts.min_units_of(self.st))

    def record(self, metric: str, *, attribute: str | None = None, value: str | None = None,
               k: int | None = None, estimate: Any = None, ci: tuple[Any, Any] = (None, None),
               n: int | None = None, convention: str | None = None,
               warning: str | None = None, variant: str | None = None,
               family: str | None = None, **extra: Any) -> MetricRecord:
        """Append one record (direction from the metric's declaration).

        ``family`` joins it to a Benjamini-Hochberg family (p-values adjusted together in
        :meth:`finish`).
        """
        from ..metrics.specs import get_spec

        spec = get_spec(metric)
        notes = [w for w in (self.warning(n) if n is not None else None, warning) if w]
        lo, hi = ci
        finite = lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi)
        rec = MetricRecord(
            probe=self.res.id, metric=metric, attribute=attribute, value=value, k=k,
            estimate=estimate, ci_low=lo if finite else None, ci_high=hi if finite else None,
            confidence=self.st.confidence if finite else None, n=n,
            convention=convention if convention is not None else (spec.convention if spec
                                                                  else None),
            higher_is_worse=spec.higher_is_worse if spec else None,
            warning="; ".join(dict.fromkeys(notes)) or None,
            variant=variant if variant is not None else current_variant(), **extra)
        self.res.metrics.append(rec)
        if family is not None:
            self.families.setdefault(family, []).append(rec)
        return rec

    def _keep(self, t: Table) -> str:
        stored = t.to_result()
        self._tables[stored.id] = stored
        return stored.id

    def keep_table(self, metric: str, attribute: str | None, conditions: Sequence[str],
                   units: Sequence[str], values: np.ndarray, k: int | None = None,
                   averaged: bool = True) -> str:
        """Store a table a record derives from by a probe's own statistic; returns its id.

        ``averaged=False``: the values already use every sample (see :class:`Table`).
        """
        return self._keep(Table(metric, attribute, list(conditions), list(units), values,
                                ks=None if k is None else [k], averaged=averaged))

    def means(self, t: Table, *, convention: str | None = None, warning: str | None = None,
              confidence: float | None = None) -> dict[tuple[str, int | None], MetricRecord]:
        """Per condition (and k): the mean over units with a bootstrap CI.

        At ``confidence`` (default ``stats.confidence``; e.g. a Bonferroni level when a gate
        judges every condition's record together).
        """
        if not t.units:
            return {(cond, k): self.record(t.metric, attribute=t.attribute, value=cond, k=k, n=0,
                                           convention=convention, variant=t.variant,
                                           warning="no responses")
                    for cond in t.conditions for k in (t.ks or [None])}
        est = column_means(t.values)
        lo, hi = self.metric_interval(t.metric, self._boot_means(t), est, confidence)
        n = (~np.isnan(t.values)).sum(axis=0)
        table_id = self._keep(t)
        out = {}
        ks = t.ks or [None]
        for ci_, cond in enumerate(t.conditions):
            for kj, k in enumerate(ks):
                at_max = k == t.max_k
                out[(cond, k)] = self.record(
                    t.metric, attribute=t.attribute, value=cond, k=k, estimate=est[ci_, kj],
                    ci=(lo[ci_, kj], hi[ci_, kj]), n=int(n[ci_, kj]), convention=convention,
                    warning=warning, variant=t.variant,
                    table=table_id if at_max else None, statistic="mean" if at_max else None)
        return out

    def spread(self, t: Table, kind: str, *, test: bool = True, name: str | None = None,
               convention: str | None = None, warning: str | None = None,
               estimate: Callable[[np.ndarray], np.ndarray] | None = None,
               family: str | None = None) -> dict[int | None, MetricRecord]:
        """Record a spread statistic of the condition means (``kind`` in SPREAD_STATISTIC).

        CI: paired bootstrap over units, bias-corrected (every spread declares ``noise_floor``).
        At the largest k: the null floor (``null_mean``, ``null_p95``) of the paired
        permutation null, always (the floor describes noise, it is no test), and with ``test``
        its p-value; the record then joins the Benjamini-Hochberg family ``family`` (default:
        its metric name; one family may span several metrics that answer one question).
        ``estimate`` overrides the point estimate (e.g. fairlearn's), given the (C, K) condition
        means. With repeated samples a range or std spread also carries ``self_floor`` at the
        largest k: :func:`recaudit.samples.self_consistency_floor` of the per-sample cells.
        """
        from ..metrics.specs import SPREAD_KINDS
        from ..samples import self_consistency_floor

        statistic = SPREAD_STATISTIC[kind]
        fn = spread_statistic(statistic)  # over the last axis
        metric = name or SPREAD_KINDS[kind][0].format(t.metric)
        means = column_means(t.values)  # (C, K)
        est = estimate(means) if estimate is not None else fn(means.T)  # (K,)
        boot = self._boot_means(t)  # (B, C, K)
        lo, hi = self.metric_interval(metric, fn(np.moveaxis(boot, 1, -1)), est)
        n_units = int((~np.isnan(t.values).all(axis=(1, 2))).sum())
        table_id = self._keep(t)
        out = {}
        for kj, k in enumerate(t.ks or [None]):
            extra: dict[str, Any] = {}
            at_max = k == t.max_k
            if at_max:
                extra = {"table": table_id, "statistic": statistic}
            if at_max and len(t.conditions) > 1 and n_units > 1:
                perm = permutation_test_values(
                    t.values[:, :, kj], statistic, self.st.n_permutations,
                    seed=self.seed("permutation", t.metric, t.attribute, t.variant, kind))
                extra.update(self.null_floor(perm.null_distribution))
                if test:
                    extra["p_value"] = perm.pvalue
            if at_max and t.sample_values is not None and statistic in ("range", "std"):
                extra["self_floor"] = self_consistency_floor(
                    t.sample_values[..., kj], fn,
                    self.seed("self floor", t.metric, t.attribute, t.variant, kind))
            out[k] = self.record(metric, attribute=t.attribute, k=k, estimate=est[kj],
                                 ci=(lo[kj], hi[kj]), n=n_units, convention=convention,
                                 warning=warning, variant=t.variant,
                                 family=(family or metric) if "p_value" in extra else None,
                                 **extra)
        return out

    def derived(self, t: Table, metric: str, fn: Callable[[np.ndarray], float], *,
                estimate: float | None, convention: str | None = None,
                warning: str | None = None, value: str | None = None,
                statistic: str | None = None, p_value: float | None = None,
                family: str | None = None, null: Any = None,
                confidence: float | None = None) -> MetricRecord:
        """Record a probe's own statistic of the condition means at the largest k.

        For example an inequality index of group means, with a paired-bootstrap CI over units.
        ``statistic`` names the same function in :data:`recaudit.metrics.tables.TABLE_STATISTICS`
        (the table is then stored, so compare can re-test the record); ``p_value`` (the
        probe's own test) joins the record to the Benjamini-Hochberg family ``family``
        (default: the metric's name).

        A metric whose declaration has ``noise_floor`` gets the bias-corrected CI and its floor
        (``null_mean``, ``null_p95``): from ``null``, the statistic's draws under the probe's
        own null, or else from the permutation null of conditions exchangeable within a unit
        (:func:`recaudit.stats.permutation_test_values` of ``fn``, which also gives the
        p-value when the probe has none). ``confidence`` replaces ``stats.confidence`` for
        this record's CI (and is stored as its ``confidence``): e.g. a Bonferroni level for
        records a gate judges together.
        """
        from ..metrics.specs import get_spec

        extra: dict[str, Any] = {}
        if statistic is not None:
            from ..metrics.tables import table_statistic

            table_statistic(statistic)  # a known statistic, or ValueError
            extra = {"table": self._keep(t), "statistic": statistic}
        boot = self._boot_means(t)[:, :, -1]
        vals = np.asarray([fn(row) for row in boot], dtype=float)
        lo, hi = self.metric_interval(metric, vals[:, None], estimate, confidence)
        n_units = int((~np.isnan(t.values).all(axis=(1, 2))).sum())
        spec = get_spec(metric)
        if null is None and spec is not None and spec.noise_floor and len(t.conditions) > 1 \
                and n_units > 1:
            perm = permutation_test_values(
                t.values[:, :, -1], fn, self.st.n_permutations,
                seed=self.seed("permutation", metric, t.attribute, t.variant, value))
            null = perm.null_distribution
            p_value = perm.pvalue if p_value is None else p_value
        if null is not None:
            extra.update(self.null_floor(null))
        if p_value is not None and np.isfinite(p_value):
            extra["p_value"] = float(p_value)
        rec = self.record(metric, attribute=t.attribute, value=value, k=t.max_k,
                          estimate=estimate, ci=(lo[0], hi[0]), n=n_units,
                          convention=convention, warning=warning, variant=t.variant,
                          family=(family or metric) if "p_value" in extra else None, **extra)
        if confidence is not None and rec.confidence is not None:
            rec.confidence = confidence
        return rec

    def attach_floor(self, rec: MetricRecord, null: Any, *, p_value: float | None = None,
                     family: str | None = None) -> MetricRecord:
        """Give ``rec`` its floor under the probe's own null (draws ``null``) and a p-value.

        For a record made by :meth:`means` of a statistic that is positive under noise (e.g. a
        mean NDKL). ``p_value`` (the probe's test against the same null) joins the
        Benjamini-Hochberg family ``family`` (default: the metric's name).
        """
        floor = self.null_floor(null)
        rec.null_mean, rec.null_p95 = floor["null_mean"], floor["null_p95"]
        if p_value is not None and np.isfinite(p_value):
            rec.p_value = float(p_value)
            self.families.setdefault(family or rec.metric, []).append(rec)
        return rec

    @staticmethod
    def null_floor(null: np.ndarray) -> dict[str, float | None]:
        """Return a record's null mean, 95th and 5th percentiles (stats.null_floor)."""
        floor = null_floor(null)
        return {"null_mean": floor.mean, "null_p95": floor.p95, "null_p05": floor.p05}

    # -- findings ------------------------------------------------------------------------------
    def severity(self, rec: MetricRecord, significant: bool | None) -> str:
        """Rate ``rec`` by :func:`recaudit.verdicts.severity` under its metric's declaration.

        The small-sample cap applies at ``stats.min_group_size`` units.
        """
        spec = self.res.specs.get(rec.metric) or self._spec(rec.metric)
        return verdicts.severity(rec, spec, significant, min_units=verdicts.min_units_of(self.st))

    def finding(self, rec: MetricRecord, title: str, detail: str, alpha: float) -> Finding:
        """Append a finding about ``rec``, rated by :meth:`severity`.

        Significance at ``alpha`` is :func:`recaudit.verdicts.is_significant`'s.
        """
        significant = verdicts.is_significant(rec, alpha)
        f = Finding(probe=self.res.id, severity=self.severity(rec, significant),
                    effect=rec.estimate, title=title, detail=detail, n=rec.n)
        self.res.findings.append(f)
        return f

    #: share of answers with no catalog item from which refusals become a finding
    REFUSAL_SHARE = verdicts.REFUSAL_SHARE

    def refusal_finding(self, empty: dict[str, float], consequence: str) -> float:
        """Flag answers that grounded to no catalog item (refusals, unparseable text).

        They are rated by :func:`recaudit.verdicts.refusal_severity` (a finding from
        :data:`REFUSAL_SHARE` of all answers; ``high`` from one half on; never above ``low`` on
        fewer answers than the small-sample rule); ``consequence`` says
        what they do to this probe's numbers. Returns their share.
        """
        share = float(np.mean(list(empty.values()))) if empty else 0.0
        label = verdicts.refusal_severity(share, len(empty), verdicts.min_units_of(self.st))
        if label is not None:
            self.res.findings.append(Finding(
                probe=self.res.id, severity=label, n=len(empty),
                effect=share, title=f"{share:.0%} of answers contain no catalog item (refusals "
                                    "or unparseable text)", detail=consequence))
        return share

    @staticmethod
    def _spec(metric: str) -> MetricSpecModel | None:
        from ..metrics.specs import get_spec

        spec = get_spec(metric)
        return None if spec is None else MetricSpecModel(**spec.to_dict())

    # -- finishing -----------------------------------------------------------------------------
    def adjust(self) -> None:
        """Adjust p-values by Benjamini-Hochberg within each family (e.g. one metric)."""
        for recs in self.families.values():
            tested = [r for r in recs if r.p_value is not None]
            if not tested:
                continue
            adj = benjamini_hochberg([r.p_value for r in tested],
                                     verdicts.alpha_of(self.st)).adjusted
            for r, pa in zip(tested, adj, strict=True):
                r.p_adjusted = float(pa)
        self.families.clear()

    def extend(self) -> ProbeResult:
        """Finish records added to an already finished result (a mitigation's measures).

        Adjusts their BH families and appends their declarations and unit tables.
        """
        self.adjust()
        self.res.describe_metrics()
        have = {t.id for t in self.res.units}
        self.res.units.extend(t for t in self._tables.values() if t.id not in have)
        return self.res

    def finish(self, headline: Sequence[str] = (), tags: Sequence[str] = (),
               method_notes: Sequence[str] = ()) -> ProbeResult:
        """Adjust the BH families and attach declarations, headline, tags, notes and tables."""
        self.adjust()
        self.res.describe_metrics()
        self.res.headline = list(headline)
        self.res.tags = list(tags)
        self.res.method_notes = list(method_notes)
        self.res.units = list(self._tables.values())
        return self.res
