"""``run_audit``: config -> catalog, recommender, probes -> engine -> analyses -> AuditResult.

One failing probe does not stop the run: its result has ``status="error"`` and the message; a
probe that cannot be fed (``ProbeCannotRun``) or served is ``skipped`` with its
:class:`~recaudit.results.SkipKind`. Statuses and the engine's facts (failed, missing requests,
the first error) are fields of each :class:`~recaudit.results.ProbeResult`, never prose to
parse. Gates (if any) are evaluated once, here, on the finished result.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable

from . import __version__
from .config import AuditConfig
from .errors import ProbeCannotRun, RecauditError
from .probes.registry import AuditContext, Query, build_probe
from .recommenders.base import Decoding, Recommender
from .results import AuditResult, ProbeResult, ProbeStatus, Provenance, SkipKind

PACKAGES = ("numpy", "scipy", "pandas", "torch", "transformers", "sentence-transformers",
            "fairlearn", "aif360", "scikit-learn", "rapidfuzz", "pydantic", "jinja2")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    """Return the installed versions of the packages results depend on (for provenance)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def load_catalog(cfg: AuditConfig):
    """Load the catalog of ``cfg``: MovieLens, a CSV/Parquet file, or an open one.

    ``source: none`` gives an :class:`~recaudit.catalog.OpenCatalog` whose items are the
    answers' normalised titles.
    """
    from .catalog import Catalog

    c = cfg.catalog
    if c.source == "none":
        from .catalog import OpenCatalog

        return OpenCatalog(parse=c.parse or "fairllm")
    if c.source == "movielens":
        return Catalog.from_movielens(holdout=c.holdout)
    if not c.path:
        from .errors import ConfigError
        raise ConfigError(f"catalog.path: required for source {c.source!r}")
    kwargs: dict[str, Any] = dict(id_col=c.id_col, title_col=c.title_col, year_col=c.year_col,
                                  genres_col=c.genres_col, genres_sep=c.genres_sep,
                                  popularity_col=c.popularity_col, group_cols=tuple(c.group_cols),
                                  interactions=c.interactions, holdout=c.holdout,
                                  user_col=c.user_col, item_col=c.item_col,
                                  rating_col=c.rating_col, timestamp_col=c.timestamp_col)
    loader = Catalog.from_csv if c.source == "csv" else Catalog.from_parquet
    return loader(c.path, **kwargs)


def build_recommender(cfg: AuditConfig) -> Recommender:
    """Load the recommender of ``cfg`` (its model spec, decoding and options)."""
    from .recommenders import load_recommender

    d = cfg.decoding
    return load_recommender(cfg.model, Decoding(d.max_new_tokens, d.temperature, d.seed),
                            allow_pickle=cfg.allow_pickle,
                            trust_remote_code=cfg.trust_remote_code, **cfg.model_options)


def _needs_catalog(p: Any) -> str | None:
    """Why probe ``p`` cannot run without catalog data, or None.

    A probe class that declares ``needs_catalog`` (popularity, profiles, position, exposure)
    always needs one; any other needs one when its prompts come from catalog data: user
    histories (``prompts`` other than ``subjects``) or subjects from the catalog
    (``subjects.source`` ``catalog_popular`` / ``catalog_genres``).
    """
    if getattr(p, "needs_catalog", False):
        return f"probe {p.name!r} uses item or user data"
    prompts = getattr(p.params, "prompts", "subjects")
    if prompts != "subjects":
        return f"prompts: {prompts} are built from user histories"
    subjects = getattr(p.params, "subjects", None)
    source = getattr(subjects, "source", None)
    if isinstance(source, str) and source.startswith("catalog_"):
        return f"subjects.source {source!r} (use inline or file subjects)"
    return None


@dataclass
class PlannedProbe:
    """One probe run after planning: its queries, or the status and reason it will not run.

    ``status`` is ``ok`` when ``queries`` is set; otherwise ``skipped`` (with ``skip_kind``) or
    ``error``, and ``reason`` says why in one line. ``optional`` is the config's flag.
    """

    probe: Any
    queries: list[Query] | None = None
    status: ProbeStatus = ProbeStatus.OK
    skip_kind: SkipKind | None = None
    reason: str | None = None
    optional: bool = False

    def skip(self, kind: SkipKind, reason: str) -> None:
        """Mark the probe skipped, for ``kind``, because of ``reason``."""
        self.status, self.skip_kind, self.reason, self.queries = (ProbeStatus.SKIPPED, kind,
                                                                  reason, None)

    def fail(self, reason: str) -> None:
        """Mark the probe failed (status ``error``) with a one-line ``reason``."""
        self.status, self.skip_kind, self.reason, self.queries = (ProbeStatus.ERROR, None,
                                                                  reason, None)

    def result(self) -> ProbeResult:
        """Return the result of a probe that did not run (status, skip kind and reason)."""
        p = self.probe
        return ProbeResult(id=p.run_id, probe=p.name, suite=p.suite, status=self.status,
                           skip_kind=self.skip_kind, error=self.reason, optional=self.optional,
                           params=p.params.model_dump(mode="json"))


def _exc_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def plan_probes(cfg: AuditConfig, ctx: AuditContext, spec: str = "the model"
                ) -> tuple[list[PlannedProbe], dict[str, list[Query]]]:
    """Plan every probe of ``cfg``, and the extra queries of the model-backed rerankers.

    The extra queries are keyed by probe run.

    A probe the recommender (``ctx.capabilities``) cannot serve is skipped (``capability``); one
    that needs catalog data in a catalog-free audit is skipped (``catalog``); one whose ``plan``
    raises :class:`~recaudit.errors.ProbeCannotRun` is skipped (``no_data``) with its reason;
    one whose planning fails otherwise is an ``error`` (a broken probe never stops the others).
    """
    planned: list[PlannedProbe] = []
    for s in cfg.probes:
        item = PlannedProbe(build_probe(s), optional=s.optional)
        p = item.probe
        why = _needs_catalog(p) if getattr(ctx.catalog, "open_vocabulary", False) else None
        if p.requires and not (p.requires & ctx.capabilities):
            item.skip(SkipKind.CAPABILITY, f"{spec} lacks {'/'.join(sorted(p.requires))}")
        elif why is not None:
            item.skip(SkipKind.CATALOG, f"needs a catalog (catalog source: none): {why}")
        else:
            try:
                item.queries = p.plan(ctx)
            except ProbeCannotRun as err:
                item.skip(SkipKind.NO_DATA, err.reason)
            except RecauditError:
                raise
            except Exception as err:  # noqa: BLE001 - a broken probe must not stop the others
                item.fail(_exc_line(err))
        planned.append(item)
    extra: dict[str, list[Query]] = {}
    if cfg.mitigation:
        from .mitigation.apply import plan_model_queries

        for item in planned:
            if item.queries:
                extra[item.probe.run_id] = plan_model_queries(cfg.mitigation, item.probe,
                                                              item.queries)
    return planned, extra


def _measure(item: PlannedProbe, ctx: AuditContext, cfg: AuditConfig,
             answers_by_key: dict[str, Any], extra: list[Query]) -> ProbeResult:
    """Analyse one planned probe on its answers (and mitigate it), with the engine's facts.

    ``n_failed``: queries without an answer; ``n_missing``: those not computed at all;
    ``first_error``: the first failed answer's error. An analysis that raises
    :class:`~recaudit.errors.ProbeCannotRun` is a ``no_data`` skip, any other exception an
    ``error``, and so is a probe whose every computed request failed (it measured nothing);
    the facts are kept either way.
    """
    p, queries = item.probe, item.queries or []
    answers = {q.id: answers_by_key[q.request.key()] for q in queries
               if q.request.key() in answers_by_key}
    try:
        res = p.analyse(ctx, queries, answers)
        if cfg.mitigation:
            from .mitigation.apply import mitigate_probe

            answers.update({q.id: answers_by_key[q.request.key()] for q in extra
                            if q.request.key() in answers_by_key})
            mitigate_probe(p, ctx, queries, answers, res, cfg.mitigation)
    except ProbeCannotRun as err:
        item.skip(SkipKind.NO_DATA, err.reason)
        res = item.result()
    except RecauditError:
        raise
    except Exception as exc:  # noqa: BLE001
        item.fail(_exc_line(exc))
        res = item.result()
    res.optional = item.optional
    res.n_queries = len(queries)
    res.n_missing = sum(1 for q in queries if q.id not in answers)
    errors = [answers[q.id].response.error for q in queries
              if q.id in answers and not answers[q.id].ok]
    res.n_failed = res.n_missing + len(errors)
    res.first_error = errors[0] if errors else None
    if errors and len(errors) == len(queries) - res.n_missing and res.status == ProbeStatus.OK:
        res.status = ProbeStatus.ERROR  # nothing to measure on: not a result a CI may pass
        res.error = (f"every request failed ({len(errors)} of {len(queries)}; "
                     f"first: {errors[0]})")
    if res.n_missing:
        res.warnings.append(f"{res.n_missing} of {len(queries)} requests were not computed "
                            "(--max-requests/--dry-run); rerun to resume from the cache")
    if errors:  # e.g. a replay without a recorded answer, an endpoint that gave up
        res.warnings.append(f"incomplete: {len(errors)} of {len(queries)} requests failed "
                            f"(first: {errors[0]})")
    unknown = [i for q in queries if q.id in answers
               for i in _unknown_ids(answers[q.id])]
    if unknown:
        res.warnings.append(f"{len(unknown)} item ids in the answers are not in the catalog "
                            f"(first: {unknown[0]!r}); counted as unmatched (hallucinated) "
                            "entries")
    return res


def _unknown_ids(answer: Any) -> list[str]:
    """Return the item ids an adapter gave for ``answer`` that the catalog lacks.

    The engine moved them to the grounding's unmatched entries.
    """
    g = answer.grounding
    return list(g.unmatched) if g is not None and answer.response.item_ids is not None else []


def run_audit(cfg: AuditConfig, *, recommender: Recommender | None = None, catalog: Any = None,
              progress: bool = True, command_line: str | None = None,
              evaluate_gates: bool = True,
              on_measured: Callable[[AuditResult], None] | None = None) -> AuditResult:
    """Run every probe of ``cfg`` and return the :class:`AuditResult`, gates evaluated.

    ``on_measured`` is called with the result before its gates are evaluated (the CLI writes
    results.json there, so a misspelt gate never loses a finished audit). The gates of the
    config are evaluated here, and only here, unless ``evaluate_gates`` is false or the
    engine makes a dry run (nothing was computed, so there is nothing to gate).
    """
    from .engine import Engine

    cfg.require_probes()
    started = _now()
    catalog = catalog if catalog is not None else load_catalog(cfg)
    rec = recommender if recommender is not None else build_recommender(cfg)
    ctx = AuditContext(catalog=catalog, stats=cfg.stats, capabilities=rec.capabilities,
                       config=cfg, recommender=rec)
    planned, extra = plan_probes(cfg, ctx, rec.spec)
    requests = [q.request for item in planned for q in item.queries or []]
    requests += [q.request for qs in extra.values() for q in qs]
    e = cfg.engine
    engine = Engine(rec, catalog, cache_path=e.cache, batch_size=e.batch_size,
                    max_requests=e.max_requests, dry_run=e.dry_run,
                    progress=progress and e.progress, backend=e.backend,
                    ray_workers=e.ray_workers, fresh_cache=e.fresh_cache,
                    ray_address=e.ray_address, samples=cfg.decoding.samples)
    adaptive = None
    try:
        if e.adaptive or e.budget:
            adaptive = _run_in_rounds(cfg, ctx, planned, extra, engine, evaluate_gates)
            results = adaptive.results
        else:
            answers_by_key = engine.run(requests)
    except BaseException:
        if recommender is None:  # built here (an endpoint that refused the key, ...)
            rec.close()
        raise
    finally:
        engine.close()
    if adaptive is None:
        results = [_measure(item, ctx, cfg, answers_by_key, extra.get(item.probe.run_id, []))
                   if item.queries is not None else item.result() for item in planned]
    text = cfg.source_text
    prov = Provenance(
        tool_version=__version__, model_spec=rec.spec, model_fingerprint=rec.fingerprint(),
        weights_sha256=rec.weights_sha256(), config_text=text,
        config_sha256=hashlib.sha256(text.encode()).hexdigest() if text else cfg.fingerprint(),
        catalog_sha256=catalog.fingerprint() if hasattr(catalog, "fingerprint") else None,
        seeds={"stats": cfg.stats.seed, "decoding": cfg.decoding.seed},
        packages=package_versions(), started_at=started, finished_at=_now(),
        command_line=command_line or " ".join(sys.argv),
        engine={**engine.stats.to_dict(), **(adaptive.summary() if adaptive else {})},
        batch_invariance=rec.batch_invariance())
    if recommender is None:  # built here: release its HTTP client and pooled connections
        rec.close()
    result = AuditResult(name=cfg.name, provenance=prov,
                         config=cfg.model_dump(mode="json"), probes=results)
    if on_measured is not None:
        on_measured(result)
    if cfg.gates and evaluate_gates and not e.dry_run:  # a dry run measured nothing to gate
        from .gates import evaluate_gates as _evaluate
        if adaptive is None:
            result.gates = _evaluate(result, cfg.gates)
        else:
            result.gates = adaptive.gate_results(result)
    return result


@dataclass
class _Rounds:
    """An audit run in rounds (:mod:`recaudit.adaptive`): its results and how it went."""

    rounds: Any  # recaudit.adaptive.AdaptiveRounds
    results: list[ProbeResult]
    alpha_cap: float | None  # the fixed-n gates' level at the cap (None: none reached it)

    def summary(self) -> dict[str, Any]:
        r = self.rounds
        out: dict[str, Any] = {"rounds": r.rounds, "units_asked": dict(r.asked),
                               "units_planned": {k: len(v) for k, v in r.orders.items()},
                               "adaptive": r.adaptive}
        if r.budget is not None:
            out["budget"] = {"limit": r.budget.describe(), "spent": round(r.spent, 6),
                             "exhausted": r.budget_exhausted}
        return out

    def gate_results(self, result: AuditResult) -> list[Any]:
        from .gates import evaluate_gates as _evaluate

        fixed = _evaluate(result, self.rounds.gates, alpha=self.alpha_cap)
        return [self.rounds.gate_result(i, g) for i, g in enumerate(fixed)]


def _run_in_rounds(cfg: AuditConfig, ctx: AuditContext, planned: list[PlannedProbe],
                   extra: dict[str, list[Query]], engine: Any, gate: bool) -> _Rounds:
    """Run the probes in rounds of units (adaptive) or in one round under a budget.

    A gate still undecided at the cap of an adaptive audit is judged on an analysis at level
    ``alpha - SEQUENTIAL_ALPHA`` (the hybrid of :mod:`recaudit.adaptive`).
    """
    import dataclasses

    from .adaptive import SEQUENTIAL_ALPHA, AdaptiveRounds, Budget
    from .verdicts import alpha_of

    def measure(item: PlannedProbe, answers: dict[str, Any], ex: list[Query],
                units: dict[str, int] | None, run_ctx: AuditContext = ctx) -> ProbeResult:
        """Analyse ``item`` on ``units`` (unit -> the round it was asked in; None: all)."""
        part = dataclasses.replace(item, queries=[q for q in item.queries or []
                                                  if units is None or str(q.key.unit) in units])
        if units is not None:
            run_ctx = dataclasses.replace(run_ctx, arrival=dict(units))
        res = _measure(part, run_ctx, cfg, answers, ex)
        res.n_queries, res.n_missing = len(item.queries or []), res.n_missing + \
            len(item.queries or []) - len(part.queries or [])
        if len(part.queries or []) < len(item.queries or []):
            res.warnings.append(f"adaptive: {len(part.queries or [])} of "
                                f"{len(item.queries or [])} planned requests asked")
        return res

    e = cfg.engine
    alpha = alpha_of(cfg.stats)
    rounds = AdaptiveRounds(planned, extra, engine, measure, cfg.gates if gate else [],
                            seed=cfg.stats.seed, alpha=alpha, adaptive=e.adaptive,
                            budget=Budget.parse(e.budget) if e.budget else None,
                            min_units=cfg.stats.min_group_size,
                            say=lambda line: print(f"recaudit: {line}", file=sys.stderr))
    by_run = {r.id: r for r in rounds.run(lambda rs: {r.id: r for r in rs})}
    alpha_cap = None
    at_cap = e.adaptive and not rounds.budget_exhausted and any(
        t.decision == "undecided" for t in rounds.tracks.values())
    if at_cap and alpha > SEQUENTIAL_ALPHA:
        alpha_cap = alpha - SEQUENTIAL_ALPHA
        stats = cfg.stats.model_copy(update={"alpha": alpha_cap, "confidence": 1 - alpha_cap})
        cap_ctx = dataclasses.replace(ctx, stats=stats)
        for item in planned:
            run = item.probe.run_id
            if run in by_run and rounds.asked.get(run) == len(rounds.orders[run]):
                by_run[run] = measure(item, rounds.answers, extra.get(run, []),
                                      rounds.arrival(run), cap_ctx)
    results = [by_run.get(item.probe.run_id) or item.result() for item in planned]
    return _Rounds(rounds, results, alpha_cap)


def failed_probes(result: AuditResult) -> list[ProbeResult]:
    """Return the probes that fail the audit (exit 4): :meth:`ProbeResult.fails_audit`."""
    return [p for p in result.probes if p.fails_audit()]
