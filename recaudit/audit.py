"""``run_audit``: config -> catalog, recommender, probes -> engine -> analyses -> AuditResult.

One failing probe does not stop the run: its result has ``status="error"`` and the message.
Gates (if any) are evaluated on the finished result.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import sys
from importlib import metadata
from typing import Any

from . import __version__
from .config import AuditConfig
from .errors import RecauditError
from .probes.registry import AuditContext, Query, build_probe
from .recommenders.base import Decoding, Recommender
from .results import AuditResult, ProbeResult, Provenance

PACKAGES = ("numpy", "scipy", "pandas", "torch", "transformers", "sentence-transformers",
            "fairlearn", "aif360", "scikit-learn", "rapidfuzz", "pydantic", "jinja2")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def load_catalog(cfg: AuditConfig):
    """The catalog of ``cfg``: MovieLens, a CSV/Parquet file, or (``source: none``) an
    :class:`~recaudit.catalog.OpenCatalog` whose items are the answers' normalised titles."""
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


Planned = list[tuple[Any, "list[Query] | None", "str | None"]]


def plan_probes(cfg: AuditConfig, ctx: AuditContext, spec: str = "the model"
                ) -> tuple[Planned, dict[str, list[Query]]]:
    """Every probe of ``cfg`` as (probe, its queries or None, why not), and the extra queries
    of the model-backed rerankers by probe run. A probe the recommender (``ctx.capabilities``)
    cannot serve or the catalog cannot feed is skipped with the reason; one whose planning
    fails is recorded as an error (a broken probe never stops the others)."""
    planned: Planned = []
    for p in (build_probe(s) for s in cfg.probes):
        if p.requires and not (p.requires & ctx.capabilities):
            planned.append((p, None, f"skipped: {spec} lacks {'/'.join(sorted(p.requires))}"))
            continue
        why = _needs_catalog(p) if getattr(ctx.catalog, "open_vocabulary", False) else None
        if why is not None:
            planned.append((p, None, f"skipped: needs a catalog (catalog source: none): {why}"))
            continue
        try:
            planned.append((p, p.plan(ctx), None))
        except RecauditError:
            raise
        except Exception as err:  # noqa: BLE001 - a broken probe must not stop the others
            planned.append((p, None, f"{type(err).__name__}: {err}"))
    extra: dict[str, list[Query]] = {}
    if cfg.mitigation:
        from .mitigation.apply import plan_model_queries

        for p, qs, _ in planned:
            if qs:
                extra[p.run_id] = plan_model_queries(cfg.mitigation, p, qs)
    return planned, extra


def run_audit(cfg: AuditConfig, *, recommender: Recommender | None = None, catalog: Any = None,
              progress: bool = True, command_line: str | None = None,
              evaluate_gates: bool = True) -> AuditResult:
    """Run every probe of ``cfg`` and return the :class:`AuditResult`.

    Gates of the config are evaluated unless ``evaluate_gates`` is false (the CLI saves the
    results first, so a misspelt gate never loses a finished audit).
    """
    from .engine import Engine

    cfg.require_probes()
    started = _now()
    catalog = catalog if catalog is not None else load_catalog(cfg)
    rec = recommender if recommender is not None else build_recommender(cfg)
    ctx = AuditContext(catalog=catalog, stats=cfg.stats, capabilities=rec.capabilities,
                       config=cfg, recommender=rec)
    planned, extra = plan_probes(cfg, ctx, rec.spec)
    requests = [q.request for _, qs, _ in planned if qs for q in qs]
    requests += [q.request for qs in extra.values() for q in qs]
    e = cfg.engine
    engine = Engine(rec, catalog, cache_path=e.cache, batch_size=e.batch_size,
                    max_requests=e.max_requests, dry_run=e.dry_run,
                    progress=progress and e.progress, backend=e.backend,
                    ray_workers=e.ray_workers, fresh_cache=e.fresh_cache,
                    ray_address=e.ray_address)
    try:
        answers_by_key = engine.run(requests)
    except BaseException:
        if recommender is None:  # built here (an endpoint that refused the key, ...)
            rec.close()
        raise
    finally:
        engine.close()
    results: list[ProbeResult] = []
    for p, queries, err in planned:
        if queries is None:
            status = "skipped" if err and err.startswith("skipped") else "error"
            results.append(ProbeResult(id=p.run_id, probe=p.name, suite=p.suite, status=status,
                                       error=err, params=p.params.model_dump(mode="json")))
            continue
        answers = {q.id: answers_by_key[q.request.key()] for q in queries
                   if q.request.key() in answers_by_key}
        try:
            res = p.analyse(ctx, queries, answers)
            if cfg.mitigation:
                from .mitigation.apply import mitigate_probe

                answers.update({q.id: answers_by_key[q.request.key()]
                                for q in extra.get(p.run_id, [])
                                if q.request.key() in answers_by_key})
                mitigate_probe(p, ctx, queries, answers, res, cfg.mitigation)
        except RecauditError:
            raise
        except Exception as exc:  # noqa: BLE001
            res = ProbeResult(id=p.run_id, probe=p.name, suite=p.suite, status="error",
                              error=f"{type(exc).__name__}: {exc}",
                              params=p.params.model_dump(mode="json"))
        res.n_queries = len(queries)
        res.n_failed = sum(1 for q in queries if q.id not in answers or not answers[q.id].ok)
        missing = sum(1 for q in queries if q.id not in answers)
        if missing:
            res.warnings.append(f"{missing} of {len(queries)} requests were not computed "
                                "(--max-requests/--dry-run); rerun to resume from the cache")
        errors = [answers[q.id].response.error for q in queries
                  if q.id in answers and not answers[q.id].ok]
        if errors:  # e.g. a replay without a recorded answer, an endpoint that gave up
            res.warnings.append(f"incomplete: {len(errors)} of {len(queries)} requests failed "
                                f"(first: {errors[0]})")
        results.append(res)
    text = cfg.source_text
    prov = Provenance(
        tool_version=__version__, model_spec=rec.spec, model_fingerprint=rec.fingerprint(),
        weights_sha256=rec.weights_sha256(), config_text=text,
        config_sha256=hashlib.sha256(text.encode()).hexdigest() if text else cfg.fingerprint(),
        catalog_sha256=catalog.fingerprint() if hasattr(catalog, "fingerprint") else None,
        seeds={"stats": cfg.stats.seed, "decoding": cfg.decoding.seed},
        packages=package_versions(), started_at=started, finished_at=_now(),
        command_line=command_line or " ".join(sys.argv), engine=engine.stats.to_dict(),
        batch_invariance=rec.batch_invariance())
    if recommender is None:  # built here: release its HTTP client and pooled connections
        rec.close()
    result = AuditResult(name=cfg.name, provenance=prov,
                         config=cfg.model_dump(mode="json"), probes=results)
    if cfg.gates and evaluate_gates:
        from .gates import evaluate_gates as _evaluate
        result.gates = _evaluate(result, cfg.gates)
    return result
