"""Exposure and provider-side fairness of recommended lists (METRICS.md section 6).

Prompts: FaiRLLM's *neutral* requests ("I am a fan of {name}. Please provide me with a list of
{K} movie titles...", value ``neutral``, default "a"), one per subject; subjects come from a
:class:`~recaudit.probes.subjects.SubjectSource` (default: the 100 most popular catalog items),
exactly as in the counterfactual probe, so with the same template, k and system message the
requests are byte-identical to its neutral ones and the engine computes them once. With
``prompts: profiles`` the requests are instead CFaiRLLM's neutral history prompts ("I am a
user. I have watched the following movies: ...") of ``n_users`` real users sampled as the
profile probe samples them (same ``seed``, ``history_items``; with ``system: "You are a movie
recommendation system."`` and the same k they are its neutral requests). The unit of every CI
is the request (one list).

For each item-group column named in ``groups`` (any categorical column of the catalog, or the
built-ins ``genre`` = first listed genre, ``decade``, ``head_tail``; see
:meth:`recaudit.catalog.Catalog.item_groups`; a column that does not exist is a one-line
DataError when planning, exit 2) and each list ``L_u`` truncated to ``k``:

* ``exposure_share[u, g] = sum_{r: group(L_u,r) = g} 1/log2(1+r) / sum_r 1/log2(1+r)``
  (position exposure, :func:`recaudit.metrics.exposure.group_exposure_share` of one list);
  reported as the mean over lists with a bootstrap CI over requests;
* ``topk_share[u, g]`` = share of the top-k entries in group ``g`` at each k of ``skew_ks``;
* ``skew_at_k(g) = ln(mean_u topk_share[u, g] / p_g)`` (Geyik et al. 2019, eq. 1, of the mean
  share: with lists of equal length the share of the pooled top-k slots), with a bootstrap CI
  over requests (:meth:`Summariser.derived`), at the largest k simultaneous over the groups
  (Bonferroni, :meth:`ExposureProbe._skews`); undefined (no record estimate) when the group is
  in no list (``-inf``) or its desired share is 0;
* ``ndkl[u]`` = NDKL of list ``u`` against ``p`` (Geyik et al. 2019, section 4.1.2), mean over
  lists with a bootstrap CI (value label ``"<column> vs <catalog|uniform|target>"``); a list
  holding a group whose desired share is 0 has NDKL ``inf`` and is left out of that mean
  (counted in a warning).

The desired shares ``p`` are, per column, ``reference: catalog`` (the share of catalog items in
each group, default) or ``uniform`` (1 / number of groups); ``targets: {column: {group: share}}``
overrides some groups, and the remaining mass is split over the other groups in proportion to
the reference (:func:`recaudit.metrics.exposure.resolve_target`). Missing group values (NaN)
are the group ``"unknown"``. Lists that failed or hold no catalog item are left out (counted).

Repeated samples (``decoding.samples`` = N): a request's N lists are observations within that
request. Each cell (``exposure_share``, ``topk_share``, ``ndkl``) is its mean over the request's
samples, skew@k is the log ratio of the mean of those cells, and the group-blind floor draws one
list per sample of every request (so its mean over lists is the null of the same averages);
CIs resample requests, never samples.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from .. import verdicts
from ..errors import ConfigError, DataError, ProbeCannotRun
from ..recommenders.base import EMBED, GENERATE, Request
from ..results import Finding, ProbeResult
from .attributes import DOMAINS, FAIRLLM_TEMPLATE, require_placeholders, subject_queries
from .base import NEUTRAL, AuditContext, Probe, ProbeParams, Query, QueryKey, Run
from ..stats import permutation_pvalue, tie_tolerance
from .findings import fmt
from .kit import current_variant
from .registry import probe
from .sampling import sample_histories, sample_subjects
from .subjects import SubjectSource

__all__ = ["ExposureParams", "ExposureProbe", "group_labels"]

METHOD_NOTES = (
    "Exposure of the item at rank r is 1/log2(1+r) (the DCG discount); a group's share is its "
    "part of a list's total exposure, averaged over lists (the unit of every CI).",
    "The desired shares are the catalog's own make-up unless targets are given: an "
    "over-exposed group may be one users prefer; skew says how far the lists are from the "
    "reference, not that the reference is the right one.",
)


def group_labels(mapping: dict[str, Any]) -> dict[str, str]:
    """Group values as strings; missing values (None, NaN) become ``"unknown"``."""
    out = {}
    for item, g in mapping.items():
        missing = g is None or (isinstance(g, float) and math.isnan(g))
        out[str(item)] = "unknown" if missing else str(g)
    return out


class ExposureParams(ProbeParams):
    """Parameters of the exposure probe (see the module docstring for each one's role)."""

    domain: Literal["movie", "music"] = "movie"
    system: str | None = Field(None, description="default: 'You are a {kind} recommendation "
                                                 "system.'")
    prompts: Literal["subjects", "profiles"] = "subjects"
    template: str | None = Field(None, description="default: FaiRLLM's (subjects) or "
                                                   "CFaiRLLM's profile template (profiles)")
    neutral: str = "a"
    k: int = Field(20, ge=1, le=200)
    subjects: SubjectSource = Field(default_factory=SubjectSource)
    n_users: int = Field(50, ge=1)
    history_items: int = Field(10, ge=1)
    seed: int = 0
    groups: list[str] = Field(default_factory=lambda: ["genre", "head_tail", "decade"])
    reference: Literal["catalog", "uniform"] = "catalog"
    targets: dict[str, dict[str, float]] = Field(default_factory=dict)
    skew_ks: list[int] = Field(default_factory=lambda: [5, 10])

    @field_validator("groups")
    @classmethod
    def _groups(cls, v: list[str]) -> list[str]:
        if not v or any(not str(g).strip() for g in v):
            raise ValueError("groups: name at least one item-group column")
        if len(set(v)) != len(v):
            raise ValueError("groups: a column is named twice")
        return v

    @field_validator("skew_ks")
    @classmethod
    def _ks(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError("skew_ks must be >= 1")
        return v

    @model_validator(mode="after")
    def _targets(self) -> "ExposureParams":
        slot = "{history}" if self.prompts == "profiles" else "{name}"
        require_placeholders(self.base_template(), ("{value}", slot, "{K}"))
        for col, shares in self.targets.items():
            if col not in self.groups:
                raise ValueError(f"targets names column {col!r}, which is not in groups")
            if any(not 0.0 <= float(s) <= 1.0 for s in shares.values()) or \
                    sum(shares.values()) > 1.0 + 1e-9:
                raise ValueError(f"targets.{col}: shares must lie in [0, 1] and sum to at "
                                 "most 1")
        return self

    def ks(self) -> list[int]:
        """Return the truncations of topk_share / skew: ``skew_ks`` up to k, and k itself."""
        return sorted({x for x in self.skew_ks if x < self.k} | {self.k})

    def base_template(self) -> str:
        """Return the template: the configured one, else FaiRLLM's or CFaiRLLM's profile one."""
        from .profile import PROFILE_TEMPLATE

        return self.template or (PROFILE_TEMPLATE if self.prompts == "profiles"
                                 else FAIRLLM_TEMPLATE)

    def system_prompt(self) -> str | None:
        """Return the system message; ``system: ""`` in the config sends none at all."""
        if self.system is not None:
            return self.system or None
        return f"You are a {DOMAINS[self.domain]['kind']} recommendation system."

    def prompt(self, value: str, name: str) -> str:
        """Fill the template with the domain's words, K, the subject ``name`` and ``value``."""
        d = DOMAINS[self.domain]
        return (self.base_template().replace("{items}", d["items"]).replace("{about}", d["about"])
                .replace("{K}", str(self.k)).replace("{name}", name).replace("{value}", value))


def group_blind_null(lengths: list[int], catalog: list[float], target: list[float], k: int,
                     n_draws: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    r"""Draw the mean NDKL@k and each group's skew@k under a group-blind model.

    The null: a model blind to the groups fills each list (of its observed length) with
    items whose groups are independent draws from the catalog's group shares ``catalog``, so
    each list's top ``k' = min(k, |list|)`` groups are i.i.d. categorical. Per draw: the mean
    over lists of :func:`~recaudit.metrics.exposure.ndkl` against ``target`` (a list holding a
    group of desired share 0 left out, as the probe does), and per group
    :math:`\ln(\overline{N_{k,g}/k'} / q_g)` (-inf, a group in no list, becomes NaN).
    Returns ``(n_draws,)`` and ``(n_draws, G)`` arrays.
    """
    G, U = len(catalog), len(lengths)
    p = np.asarray(catalog, dtype=float)
    p = p / p.sum() if p.sum() > 0 else np.full(G, 1.0 / G)
    q = np.asarray(target, dtype=float)
    eff = np.minimum(np.asarray(lengths, dtype=int), k)
    L = int(eff.max()) if U else 0
    i = np.arange(1, L + 1)
    w = 1.0 / np.log2(i + 1.0)
    valid = i[None, :] <= eff[:, None]  # (U, L)
    nd_out, skew_out = np.full(n_draws, np.nan), np.full((n_draws, G), np.nan)
    if not U or not L:
        return nd_out, skew_out
    chunk = max(1, 4_000_000 // (U * L * G))
    with np.errstate(divide="ignore", invalid="ignore"):
        for start in range(0, n_draws, chunk):
            b = min(chunk, n_draws - start)
            codes = rng.choice(G, size=(b, U, L), p=p)
            cum = (codes[..., None] == np.arange(G)).cumsum(axis=2)  # (b, U, L, G)
            share = cum / i[None, None, :, None]
            kl = np.where(share > 0, share * np.log(share / q), 0.0).sum(axis=-1)  # (b, U, L)
            per = (np.where(valid, kl * w, 0.0).sum(axis=-1)
                   / np.where(valid, w, 0.0).sum(axis=-1))  # (b, U)
            per[~np.isfinite(per)] = np.nan
            ok = np.isfinite(per)
            nd_out[start:start + b] = np.where(ok, per, 0.0).sum(axis=1) / ok.sum(axis=1)
            top = np.take_along_axis(cum, (eff - 1)[None, :, None, None], axis=2)[:, :, 0, :]
            skew = np.log((top / eff[None, :, None]).mean(axis=1) / q)
            skew[~np.isfinite(skew)] = np.nan
            skew_out[start:start + b] = skew
    return nd_out, skew_out


@probe("exposure", tags=["fairness", "provider", "exposure"])
class ExposureProbe(Probe):
    """Whether item groups (genres, providers, decades, head/tail) get their desired exposure."""

    Params = ExposureParams
    requires = frozenset({GENERATE, EMBED})
    needs_catalog = True
    headline = ("ndkl", "skew_at_k")
    method_notes = METHOD_NOTES
    params: ExposureParams

    # -- plan -----------------------------------------------------------------------------------
    def desired(self, catalog: Any, column: str) -> tuple[dict[str, str], dict[str, float]]:
        """Return one column's (item -> group, desired share per group).

        Groups are ordered by their catalog share (largest first). Raises
        :class:`~recaudit.errors.ProbeCannotRun` when the catalog has no such column,
        ConfigError for a target naming a group the column does not have.
        """
        from ..metrics.exposure import item_shares, resolve_target

        p = self.params
        try:
            mapping = group_labels(catalog.item_groups(column))
        except DataError as err:  # the catalog has no such data: the probe cannot be fed
            raise ProbeCannotRun(str(err)) from None
        cat = item_shares(mapping)
        groups = sorted(cat, key=lambda g: (-cat[g], g))
        ref = cat if p.reference == "catalog" else {g: 1.0 / len(groups) for g in groups}
        try:
            target = resolve_target(groups, p.targets.get(column, {}), ref)
        except ValueError as err:
            raise ConfigError(f"exposure: targets.{column}: {err}") from None
        return mapping, target

    def plan(self, ctx: AuditContext) -> list[Query]:
        """Plan one neutral request per subject, or per sampled user with ``prompts: profiles``."""
        p = self.params
        for col in p.groups:  # fail before any model call
            self.desired(ctx.catalog, col)
        if p.prompts == "subjects":
            return subject_queries(sample_subjects(p.subjects, ctx.catalog), {}, p.prompt, p.k,
                                   p.system_prompt(), neutral=p.neutral)
        from .histories import history_title
        from .profile import ProfileParams

        # the profile probe's users and neutral prompts (byte-identical requests)
        template = ProfileParams(k=p.k, template=p.base_template())
        queries = []
        for user in sample_histories(ctx.catalog, n_users=p.n_users,
                                     history_items=p.history_items, seed=p.seed):
            titles = [history_title(ctx.catalog, i) for i in user.history]
            queries.append(Query(QueryKey(user.user_id, value=NEUTRAL), Request.from_prompt(
                template.prompt(p.neutral, titles), k=p.k, system=p.system_prompt()),
                {"unit": user.user_id, "user_id": user.user_id, "history": user.history,
                 "attribute": None, "value": p.neutral}))
        return queries

    # -- measure --------------------------------------------------------------------------------
    def measure(self, run: Run) -> None:
        """Record each column's exposure and top-k shares, skew@k and NDKL, with its finding."""
        from ..metrics.exposure import group_exposure_share, ndkl, topk_group_share
        from ..samples import sample_count, sample_lists
        from .kit import Table

        p, got, kit, res, ctx, queries = (self.params, run.got, run.summary, run.result,
                                          run.ctx, run.queries)
        K = p.k
        ks = p.ks()
        usable = [q for q in queries if got.lists.get(q.key)]
        run.units_complete(None, len(usable), len(queries), noun="requests",
                           reason="failed, or no catalog item in the answer")
        ok = [q.id for q in queries if q.key in got.hallucination]
        for metric, shares in (("hallucination", got.hallucination), ("empty_list", got.empty)):
            kit.means(Table(metric, None, [p.neutral], ok,
                            np.array([shares[i] for i in ok], dtype=float).reshape(-1, 1)))
        kit.refusal_finding(got.empty, "Those requests are left out of every exposure number; "
                                       "the exposure shares describe the remaining lists only.")
        units = [str(q.meta["unit"]) for q in usable]
        lists = [got.lists[q.key] for q in usable]
        # the group-blind null draws every sampled list of a usable request (one per sample),
        # so its mean over lists is the null of the tables' means over samples
        lengths = [len(lst) for q in usable for lst in sample_lists(got, q.key) if lst]
        if sample_count(got) > 1:
            run.method_notes.append(
                "Repeated samples: exposure shares, skew@k and NDKL average each request's "
                "samples (a cell is its mean over samples); the group-blind floor draws one "
                "list per sample of every request, so it is the null of those means; the "
                "bootstrap resamples requests, never samples.")
        for col in p.groups:
            mapping, target = self.desired(ctx.catalog, col)
            groups = list(target)
            ref = "target" if col in p.targets else p.reference
            conv = f"desired shares: {ref}"
            if not lists:
                for m in ("exposure_share", "skew_at_k", "ndkl"):
                    kit.record(m, attribute=col, k=K, n=0, warning="no usable lists")
                continue
            dflt = "unknown"  # an id outside the catalog (a python recommender's)
            expo = np.array([[group_exposure_share([lst], mapping, default=dflt)[g]
                              for g in groups] for lst in lists])
            kit.means(Table("exposure_share", col, groups, units, expo))
            top = np.stack([np.stack([topk_group_share(lst, mapping, groups, k, default=dflt)
                                      for k in ks], axis=-1) for lst in lists])  # (U, G, K)
            top_t = Table("topk_share", col, groups, units, top, ks=ks)
            kit.means(top_t)
            from ..metrics.exposure import item_shares

            cat = item_shares(mapping)
            null_nd, null_skew = group_blind_null(
                lengths, [cat.get(g, 0.0) for g in groups],
                [target[g] for g in groups], K, int(kit.st.n_permutations),
                np.random.default_rng(kit.seed("null", "exposure", col, current_variant())))
            skews = self._skews(kit, Table, col, groups, units, top, ks, target, conv,
                                null_skew)
            nd = np.array([[ndkl(lst, mapping, target, k, default=dflt) for k in ks]
                           for lst in lists])
            n_inf = int(np.isinf(nd[:, -1]).sum())
            warn = None
            if n_inf:
                warn = (f"{n_inf} lists hold a group with desired share 0 (NDKL inf), left out")
                run.warn(f"{col}: {warn}")
            nd[np.isinf(nd)] = np.nan
            # condition label unique per column (the report reads one label under two
            # attributes as the same prompt)
            label = f"{col} vs {ref}"
            ndk = kit.means(Table("ndkl", col, [label], units, nd[:, None, :], ks=ks),
                            convention=conv, warning=warn)
            nd_rec = ndk[(label, K)]
            if nd_rec.estimate is not None:
                kit.attach_floor(nd_rec, null_nd, p_value=permutation_pvalue(
                    null_nd, nd_rec.estimate, tie_tolerance(max(1.0, nd_rec.estimate),
                                                            len(units))))
            self._finding(res, col, skews, ndk[(label, K)], target,
                          top_t.values[:, :, -1].mean(axis=0), groups,
                          verdicts.min_units_of(kit.st))

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _skews(kit: Any, Table: Any, col: str, groups: list[str], units: list[str],
               top: np.ndarray, ks: list[int], target: dict[str, float], conv: str,
               null: np.ndarray | None = None) -> dict:
        """skew@k per group and k (bootstrap CI over lists); the records at the largest k.

        At the largest k a record carries its floor (``null[:, g]``: draws under a group-blind
        model, :func:`group_blind_null`) and a two-sided p-value against it, and its CI is
        *simultaneous* over the ``G`` groups recorded there (Bonferroni: each at confidence
        ``1 - (1 - c) / G``), since a gate without ``value`` judges those ``G`` records
        together, on both sides: with per-record 95% CIs a group-blind model failed such a gate
        in about 3 x 5% of audits.
        """
        out = {}
        n_family = sum(1 for g in groups if target[g] > 0)
        family_level = 1.0 - (1.0 - float(kit.st.confidence)) / max(1, n_family)
        for j, k in enumerate(ks):
            t = Table("topk_share", col, groups, units, top[:, :, j], ks=[k], part=f"skew@{k}")
            means = t.values[:, :, 0].mean(axis=0)  # with repeated samples: cells' sample means
            for gi, g in enumerate(groups):
                q = target[g]
                if q <= 0:
                    continue
                est = math.log(means[gi] / q) if means[gi] > 0 else None

                def fn(row: np.ndarray, gi: int = gi, q: float = q) -> float:
                    return math.log(row[gi] / q) if row[gi] > 0 else float("nan")

                floor: dict[str, Any] = {}
                if null is not None and k == ks[-1]:
                    col_null = null[:, gi]
                    floor["null"] = col_null
                    if est is not None:
                        floor["p_value"] = permutation_pvalue(
                            col_null[np.isfinite(col_null)], est,
                            tie_tolerance(max(1.0, abs(est)), len(units)), "two-sided")
                simultaneous = k == ks[-1] and n_family > 1
                rec = kit.derived(t, "skew_at_k", fn, estimate=est,
                                  convention=f"{conv} (this group: {q:.4g})" + (
                                      f"; CI simultaneous over {n_family} groups "
                                      "(Bonferroni)" if simultaneous else ""),
                                  confidence=family_level if simultaneous else None,
                                  warning=None if est is not None else
                                  "group in no list (skew -inf)", value=g, **floor)
                if k == ks[-1]:
                    out[g] = rec
        return out

    def _finding(self, res: ProbeResult, col: str, skews: dict, nd: Any,
                 target: dict[str, float], shares: np.ndarray, groups: list[str],
                 min_units: int = verdicts.MIN_UNITS) -> None:
        """Write one finding per column.

        It names the group furthest from its desired share whose CI excludes 0 (severity by
        |skew|: >= ln 2 high, >= ln 1.5 medium; never above low on fewer than ``min_units``
        lists, :func:`recaudit.verdicts.enough_units`), else it is an info finding.
        """
        sig = [r for r in skews.values() if r.estimate is not None and r.ci_low is not None
               and r.ci_high is not None and (r.ci_low > 0 or r.ci_high < 0)]
        absent = [g for g, r in skews.items() if r.estimate is None]
        nd_txt = f"NDKL@{nd.k} = {fmt(nd.estimate)}"
        n = None
        if sig:
            worst = max(sig, key=lambda r: abs(r.estimate))
            n = worst.n
            e = worst.estimate
            sev = "high" if abs(e) >= math.log(2) else "medium" if abs(e) >= math.log(1.5) \
                else "low"
            if not verdicts.enough_units(worst.n, min_units):  # the small-sample rule
                sev = "low"
            share = shares[groups.index(worst.value)]
            title = (f"{col}: {worst.value!r} is {'over' if e > 0 else 'under'}-represented "
                     f"(skew@{worst.k} = {'+' if e >= 0 else ''}{fmt(e)}: {share:.1%} of the "
                     f"top-{worst.k} slots vs "
                     f"{target[worst.value]:.1%} desired)")
        else:
            sev, e = "info", None
            title = f"{col}: no group significantly off its desired share ({nd_txt})"
        n_sig = len(sig)
        detail = (f"{n_sig} of {len(skews)} groups have a skew@k whose simultaneous 95% CI "
                  f"(Bonferroni over the groups) excludes 0; {nd_txt}.")
        if absent:
            detail += (f" {len(absent)} groups with a positive desired share never appear "
                       f"(e.g. {', '.join(map(repr, absent[:3]))}).")
        res.findings.append(Finding(probe=self.run_id, severity=sev, effect=e, title=title,
                                    detail=detail, n=n))
