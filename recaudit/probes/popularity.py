"""Popularity bias of history-based recommendations (METRICS.md section 4).

Design: sample ``n_users`` real users (seeded) with at least ``history_items`` training
interactions and at least one held-out (test) item. Each user gets three prompts that differ
only in the history shown:

* ``original``: ``history_items`` of the user's own training items (``sampling`` as in the
  profile probe);
* ``niche`` / ``blockbuster``: every shown item swapped for an *equally rated* long-tail
  (niche) / short-head (blockbuster) item: the pool item whose mean training rating is nearest
  to the user's rating of the shown item (ties in a seeded random order), never one of the
  user's own training or held-out items and never twice in one history. Pool items need at
  least ``min_popularity`` training users (so their mean rating exists). Items keep their
  position in the shown list.

Popularity is the number of distinct training users of an item; the short head holds
``head_share`` of the training interactions (:meth:`recaudit.catalog.Catalog.head_tail`).

Measured per user (units = users; CIs by the kit's bootstrap over users). Each list is the
first ``k`` grounded items; ``history_echo`` is the share of them that repeats the history shown
in the prompt (small models mostly repeat it, which makes any list "follow" the history's
popularity; a finding says so). ``exclude_history: true`` drops the shown items before
truncating to ``k``; beware that this alone shifts the lists of a history-blind model
(dropping niche items from its list leaves more popular ones), so it is off by default.

* ``arp``, ``aplt``, ``aclt`` of each condition's list (means over users);
* on the original lists: ``gini`` (both normalisations, named by ``convention``) and
  ``item_coverage`` / ``item_coverage_share`` of the catalogue, without CIs (a bootstrap
  resample repeats users, so it under-counts distinct items and over-states concentration);
  ``pop_rsp`` and ``pop_reo`` (against the held-out items; candidates exclude the user's
  training items) with CIs over users (ratios of per-user sums);
* ``popularity_lift`` per user group (``niche`` / ``diverse`` / ``blockbuster`` by the share of
  short-head items in the *shown* history, :func:`recaudit.metrics.user_popularity_groups`):
  the lists' mean popularity against the shown history's;
* ``position_popularity``: mean popularity of the item at each output position (LLMRank);
* the counterfactual: ``arp_gap`` and ``aplt_gap`` = |blockbuster - niche| of the condition
  means, with a paired bootstrap CI, a paired permutation p-value (null: the two histories are
  exchangeable within a user) and the null floor; both gaps form one Benjamini-Hochberg family
  (the *popularity-following test*: flagged when either adjusted p-value is below alpha);
  ``jaccard`` of the niche and blockbuster lists with the original list and its gap.

Repeated samples (``decoding.samples`` = N): a user's N lists per condition are observations
within that user. Table cells are means over samples; ``pop_rsp`` / ``pop_reo`` are the pooled
ratio of the users' mean counts over samples (each sample weighs 1/N within its user), with a
floor that draws a head count per sample and averages it within the user; ``popularity_lift``
is that of the mean cells. ``gini`` and ``item_coverage`` (catalogue numbers without units)
are the mean over samples of each sample's value. CIs and floors resample users, never samples.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..recommenders.base import EMBED, GENERATE, Request
from ..results import MetricRecord, ProbeResult
from .attributes import require_placeholders
from .base import AuditContext, Probe, ProbeParams, Query, QueryKey, Run
from .findings import ci_text, floor_sentence, fmt, p_text, verdict_title
from .histories import history_ids, history_title
from .kit import current_variant
from .registry import probe
from .sampling import UserSampler, require

POPULARITY_TEMPLATE = (
    "I have watched the following movies: {history}. Please provide me with a list of {K} "
    "movie titles in order of preference that you think I might like. Please do not provide "
    "any additional information about the movies, such as artist, genre, or release date.")
POPULARITY_SYSTEM = "You are a movie recommendation system."
ORIGINAL_H, NICHE, BLOCKBUSTER = "original", "niche", "blockbuster"
CONDITIONS = (ORIGINAL_H, NICHE, BLOCKBUSTER)
SWAPPED = (NICHE, BLOCKBUSTER)
HISTORY = "history"  # the attribute of the counterfactual tables
USER_GROUP = "user_group"
POSITION = "position"
FAMILY = "popularity_following"
GINI_CONVENTIONS = {"n": "normalization=n (standard Gini, maximum (n-1)/n)",
                    "n-1": "normalization=n-1 (RankSys / Elliot, maximum 1)"}
METHOD_NOTES = (
    "Counterfactual histories swap each shown item for an equally rated (nearest mean training "
    "rating) long-tail or short-head item the user never rated; only the popularity of the "
    "history changes by design, but the swapped titles also differ in genre and era.",
    "Popularity = distinct training users per item; the short head holds the given share of "
    "the training interactions (Abdollahpouri et al. 2019).",
    "Item coverage and Gini carry no CI: a bootstrap resample repeats users, so it "
    "under-counts distinct items and over-states concentration. PopRSP, PopREO and the "
    "popularity lift CIs resample users (ratios of per-user sums).",
    "history_echo is the share of the top k that repeats the shown history: where it is "
    "high, following the history's popularity is largely repetition.",
)
ECHO_WARN = 0.2  # a history_echo share from which a finding warns about repetition
LONG = 10 ** 6  # collect every grounded id; lists are truncated after removing the history


class PopularityParams(ProbeParams):
    """Parameters of the popularity probe (see the module docstring for each one's role)."""

    n_users: int = Field(50, ge=1)
    history_items: int = Field(10, ge=1)
    sampling: Literal["random", "top_rated", "recent"] = "random"
    k: int = Field(10, ge=1, le=200)
    head_share: float = Field(0.8, gt=0.0, le=1.0)
    niche_share: float = Field(0.2, ge=0.0, le=1.0)
    blockbuster_share: float = Field(0.2, ge=0.0, le=1.0)
    min_popularity: int = Field(1, ge=1)
    exclude_history: bool = False
    template: str = POPULARITY_TEMPLATE
    system: str | None = POPULARITY_SYSTEM
    history_sep: str = "; "
    n_examples: int = Field(3, ge=0)
    seed: int = 0

    @field_validator("template")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        return require_placeholders(v, ("{history}", "{K}"))

    @model_validator(mode="after")
    def _shares(self) -> "PopularityParams":
        if self.niche_share + self.blockbuster_share > 1:
            raise ValueError("niche_share + blockbuster_share must not exceed 1")
        return self

    def prompt(self, history: list[str]) -> str:
        """Fill the template with K and the shown history's titles, joined by ``history_sep``."""
        return (self.template.replace("{K}", str(self.k))
                .replace("{history}", self.history_sep.join(history)))


class _Pool:
    """Candidate swap items of one kind (head or tail) with their mean training rating."""

    def __init__(self, ids: list[str], mean_rating: np.ndarray) -> None:
        self.ids = ids
        self.mean_rating = mean_rating
        self.index = {i: j for j, i in enumerate(ids)}

    def swap(self, shown: list[str], ratings: list[float], own: set[str],
             rng: np.random.Generator) -> tuple[list[str], int]:
        """One equally rated pool item per shown item; returns (items, number of fallbacks)."""
        n = len(self.ids)
        order = rng.permutation(n)  # seeded tie-break among equally rated items
        mr = self.mean_rating[order]
        banned = np.zeros(n, dtype=bool)  # in ``order`` positions
        pos = np.empty(n, dtype=int)
        pos[order] = np.arange(n)
        own_idx = [pos[self.index[i]] for i in own if i in self.index]
        shown_idx = [pos[self.index[i]] for i in shown if i in self.index]
        out, fallbacks = [], 0
        for r in ratings:
            dist = np.zeros(n) if np.isnan(r) else np.abs(mr - r)
            strict = banned.copy()
            strict[own_idx] = True
            if strict.all():  # pool exhausted by the user's own items: allow unshown ones
                strict = banned.copy()
                strict[shown_idx] = True
                fallbacks += 1
            if strict.all():
                continue
            j = int(np.argmin(np.where(strict, np.inf, dist)))
            banned[j] = True
            out.append(self.ids[int(order[j])])
        return out, fallbacks


@probe("popularity", tags=["fairness", "popularity", "provider", "consumer"])
class PopularityProbe(Probe):
    """Popularity bias: whether history-based lists favour popular items and follow the history."""

    Params = PopularityParams
    requires = frozenset({GENERATE, EMBED})
    needs_catalog = True
    params: PopularityParams

    headline = ("aplt_gap", "arp_gap", "arp", "aplt", "gini", "pop_rsp")
    method_notes = METHOD_NOTES

    # -- plan -----------------------------------------------------------------------------------
    def sample_users(self, catalog: Any) -> list[dict[str, Any]]:
        """Sample the users, each with its three shown histories and held-out ids.

        Seeded: the users and shown histories of
        :class:`~recaudit.probes.sampling.UserSampler`, the swaps drawn from the same generator.
        """
        p = self.params
        sampler = UserSampler(catalog, min_train=p.history_items, seed=p.seed)
        pools = self._pools(catalog, catalog.split("train"))
        users = []
        for sampled in sampler.histories(p.n_users, p.history_items, p.sampling):
            train, test, shown = sampled.train, sampled.test, sampled.history
            rating = (dict(zip(train["item_id"].astype(str), train["rating"].astype(float),
                               strict=True)) if "rating" in train.columns else {})
            ratings = [float(rating.get(i, np.nan)) for i in shown]
            own = set(history_ids(train)) | set(history_ids(test))
            user = {"user_id": sampled.user_id, "held_out": sampled.held_out,
                    "histories": {ORIGINAL_H: shown}, "fallbacks": 0}
            for cond in SWAPPED:
                items, fb = pools[cond].swap(shown, ratings, own, sampler.rng)
                user["histories"][cond] = items
                user["fallbacks"] += fb
            users.append(user)
        return users

    def _pools(self, catalog: Any, train: Any) -> dict[str, _Pool]:
        p = self.params
        pop = catalog.train_popularity()
        head, _tail = catalog.head_tail(p.head_share)
        if "rating" in train.columns and len(train):
            mean = train.groupby(train["item_id"].astype(str))["rating"].mean()
        else:
            mean = None
        pools = {}
        for cond, want_head in ((NICHE, False), (BLOCKBUSTER, True)):
            ids = [str(i) for i, n in pop.items() if n >= p.min_popularity
                   and (str(i) in head) == want_head]
            mr = (np.full(len(ids), np.nan) if mean is None
                  else mean.reindex(ids).to_numpy(dtype=float))
            require(ids, f"no {'short-head' if want_head else 'long-tail'} item has >= "
                         f"{p.min_popularity} training users to swap in; lower min_popularity")
            pools[cond] = _Pool(ids, mr)
        return pools

    def plan(self, ctx: AuditContext) -> list[Query]:
        """Plan one query per sampled user and history (original, niche, blockbuster)."""
        p = self.params
        catalog = ctx.catalog
        users = self.sample_users(catalog)
        needed = {i for u in users for h in u["histories"].values() for i in h}
        shown_title = {i: history_title(catalog, i) for i in needed}
        queries = []
        for user in users:
            uid = user["user_id"]
            for cond in CONDITIONS:
                hist = user["histories"][cond]
                titles = [shown_title[i] for i in hist]
                queries.append(Query(QueryKey(uid, value=cond), Request.from_prompt(
                    p.prompt(titles), k=p.k, system=p.system),
                    {"user_id": uid, "condition": cond, "history": hist,
                     "original_history": user["histories"][ORIGINAL_H],
                     "held_out": user["held_out"], "fallbacks": user["fallbacks"]}))
        return queries

    # -- measure --------------------------------------------------------------------------------
    def list_length(self) -> int:
        """Collect every grounded id: lists are cut to ``k`` after the history is removed.

        The history is removed only with ``exclude_history: true``.
        """
        return LONG

    def measure(self, run: Run) -> dict[str, Any] | None:
        """Compute the popularity metrics per user and condition; None without complete users."""
        from ..metrics.popularity import (gini, item_coverage, pop_reo, pop_rsp,
                                          popularity_lift, user_popularity_groups)
        from ..metrics.similarity import jaccard
        from ..samples import sample_count, sample_lists
        from ..stats import column_means
        from .kit import ByKey, Table

        p, got, kit, res, queries = self.params, run.got, run.summary, run.result, run.queries
        K = p.k
        catalog = run.ctx.catalog
        lists = ByKey()  # query -> its list (cut to k, the history removed if asked)
        echo = ByKey()  # query -> share of the raw top k that repeats the shown history
        n_samples = sample_count(got)
        sampled = [ByKey() for _ in range(n_samples)]  # the same for every sample's list
        for q in queries:
            full = got.lists.get(q.key)
            seen = set(q.meta["history"])
            for j, lst in enumerate(sample_lists(got, q.key)[:n_samples]):
                sampled[j][q.key] = None if lst is None else (
                    [i for i in lst if i not in seen][:K] if p.exclude_history else lst[:K])
            if full is None:
                lists[q.key] = None
                continue
            top = full[:K]
            echo[q.key] = sum(i in seen for i in top) / len(top) if top else float("nan")
            lists[q.key] = ([i for i in full if i not in seen][:K] if p.exclude_history
                            else top)
        pop = {str(i): float(v) for i, v in catalog.train_popularity().items()}
        head, tail = catalog.head_tail(p.head_share)
        n_items = len(catalog)

        meta = {q.meta["user_id"]: q.meta for q in queries if q.meta["condition"] == ORIGINAL_H}
        shown = {(q.meta["user_id"], q.meta["condition"]): q.meta["history"] for q in queries}
        users = list(meta)
        if len(users) < p.n_users:
            run.warn(f"only {len(users)} users qualify (>= {p.history_items} training items and "
                     f"a held-out item); {p.n_users} were asked for")
        fallbacks = sum(int(m.get("fallbacks", 0)) for m in meta.values())
        if fallbacks:
            run.warn(f"{fallbacks} swapped history items could not avoid the user's own unshown "
                     "items (small pool)")

        def key(u: str, c: str) -> QueryKey:
            return QueryKey(u, value=c)

        units = [u for u in users if all(lists.get(key(u, c)) is not None for c in CONDITIONS)]
        n = len(units)
        run.units_complete(None, n, len(users), noun="users")
        if n == 0:
            for m in ("arp", "aplt", "aclt", "arp_gap", "aplt_gap", "gini", "pop_rsp",
                      "pop_reo"):
                kit.record(m, attribute=HISTORY if m[:3] in ("arp", "apl", "acl") else None,
                           k=K, n=0, warning="no users with complete answers")
            run.headline = ("aplt_gap", "arp_gap")
            return None

        L = {c: [lists[key(u, c)] for u in units] for c in CONDITIONS}
        per = np.full((n, len(CONDITIONS), 3), np.nan)  # arp, aplt, aclt
        for ci, c in enumerate(CONDITIONS):
            for ui, lst in enumerate(L[c]):
                per[ui, ci, 2] = sum(i in tail for i in lst)
                if lst:
                    per[ui, ci, 0] = float(np.mean([pop.get(i, 0.0) for i in lst]))
                    per[ui, ci, 1] = per[ui, ci, 2] / len(lst)
        h = np.array([[got.hallucination[key(u, c)] for c in CONDITIONS] for u in units])
        kit.means(Table("hallucination", HISTORY, list(CONDITIONS), units, h),
                  convention="share of parsed entries matching no catalog item")
        e = np.array([[echo[key(u, c)] for c in CONDITIONS] for u in units])
        echo_recs = kit.means(Table("history_echo", HISTORY, list(CONDITIONS), units, e,
                                    ks=[K]), convention="share of the raw top-k grounded items")
        gaps: dict[str, MetricRecord] = {}
        for j, m in enumerate(("arp", "aplt", "aclt")):
            kit.means(Table(m, HISTORY, list(CONDITIONS), units, per[:, :, j], ks=[K]))
            if m != "aclt":
                cf = Table(m, HISTORY, list(SWAPPED), units, per[:, 1:, j], ks=[K],
                           part="niche_vs_blockbuster")
                # one BH family: the popularity-following test is both gaps together
                gaps[m] = kit.spread(cf, "gap", convention="|blockbuster - niche| of the "
                                     "condition means (same users)", family=FAMILY)[K]

        jac = np.array([[jaccard(lists[key(u, c)], lists[key(u, ORIGINAL_H)]) for c in SWAPPED]
                        for u in units])
        jt = Table("jaccard", HISTORY, list(SWAPPED), units, jac, ks=[K])
        kit.means(jt, convention="overlap with the original-history list")
        jgap = kit.spread(jt, "gap", convention="|blockbuster - niche| of the mean overlap "
                          "with the original-history list")[K]

        # catalogue-level metrics of the original lists (with repeated samples: the mean over
        # samples of each sample's value, on the users complete in that sample)
        orig = L[ORIGINAL_H]
        orig_by_sample = [[s[key(u, ORIGINAL_H)] for u in users
                           if all(s.get(key(u, c)) is not None for c in CONDITIONS)]
                          for s in sampled] if n_samples > 1 else [orig]
        orig_by_sample = [o for o in orig_by_sample if o]
        recommended = {i for lst in orig for i in lst}
        for norm, conv in GINI_CONVENTIONS.items():
            kit.record("gini", k=K, estimate=_mean_over_samples(
                [gini(o, n_items, norm) for o in orig_by_sample]), n=n,
                       convention=f"{conv}; no CI (see method notes)",
                       warning=None if recommended else "no item was recommended")
        covered = [item_coverage(o, n_items) for o in orig_by_sample]
        count = _mean_over_samples([c for c, _ in covered])
        share = _mean_over_samples([sh for _, sh in covered])
        conv = "distinct items over the original-history lists; no CI (see method notes)"
        kit.record("item_coverage", k=K, estimate=float(count), n=n, convention=conv)
        kit.record("item_coverage_share", k=K, estimate=share, n=n,
                   convention=f"{conv}; catalogue of {n_items} items")

        tr_df = catalog.split("train")
        tr_df = tr_df[tr_df["user_id"].astype(str).isin(set(units))]
        by_user = tr_df.groupby(tr_df["user_id"].astype(str))["item_id"].agg(
            lambda s: set(s.astype(str)))
        train = {u: by_user.get(u, set()) for u in units}
        test = [set(meta[u]["held_out"]) for u in units]
        # per sample (a user's samples are observations within the user; NaN: the sample is
        # missing a condition, as the tables leave it out); sample 0 is the original lists
        per_sample = [orig] + [[s[key(u, ORIGINAL_H)] if all(
            s.get(key(u, c)) is not None for c in CONDITIONS) else None for u in units]
            for s in sampled[1:]]
        rsp_s = np.full((len(per_sample), n, 4), np.nan)
        reo_s = np.full((len(per_sample), n, 4), np.nan)
        for j, sample in enumerate(per_sample):
            for ui, (u, lst) in enumerate(zip(units, sample, strict=True)):  # one per unit
                if lst is None:
                    continue
                relevant = test[ui] - train[u]
                for g, group in enumerate((head, tail)):
                    rsp_s[j, ui, g] = sum(i in group for i in lst)
                    rsp_s[j, ui, 2 + g] = len(group) - len(group & train[u])
                    in_g = relevant & group
                    reo_s[j, ui, g] = sum(i in in_g for i in lst)
                    reo_s[j, ui, 2 + g] = len(in_g)
        rsp, reo = rsp_s[0], reo_s[0]
        rates = ["recommended_head", "recommended_tail", "candidates_head", "candidates_tail"]
        tr = [train[u] for u in units]
        # the pools a popularity-blind model draws from: the whole head and tail (PopRSP counts
        # every recommended item), each user's relevant head and tail items (PopREO's hits)
        pools = {"pop_rsp": np.tile([len(head), len(tail)], (n, 1)), "pop_reo": reo[:, 2:]}
        rsp_t = Table("pop_rsp", None, rates, units, rsp, ks=[K])
        reo_t = Table("pop_reo", None, rates, units, reo, ks=[K])
        if n_samples > 1:  # the pooled ratio of the users' mean counts over samples
            ests = {m: _rsp_of_means(column_means(t.values)[:, 0])
                    for m, t in (("pop_rsp", rsp_t), ("pop_reo", reo_t))}
        else:
            ests = {"pop_rsp": pop_rsp(orig, head, tail, train=tr),
                    "pop_reo": pop_reo(orig, head, tail, test=test, train=tr)}
        floors = {m: _popularity_blind_floor(
            x if n_samples > 1 else x[0], pools[m], int(kit.st.n_permutations), ests[m],
            np.random.default_rng(kit.seed("null", m, current_variant())))
            for m, x in (("pop_rsp", rsp_s), ("pop_reo", reo_s))}
        if n_samples > 1:
            run.method_notes.append(
                f"Repeated samples ({n_samples}): PopRSP / PopREO pool each user's mean counts "
                "over its samples (floor: one blind head count per sample, averaged within the "
                "user); Gini and item coverage are means over samples of each sample's value; "
                "CIs resample users, never samples.")
        kit.derived(rsp_t, "pop_rsp", _rsp_of_means, **floors["pop_rsp"])
        reo_rec = kit.derived(reo_t, "pop_reo", _rsp_of_means, **floors["pop_reo"])
        if reo_rec.estimate is None:
            reo_rec.warning = "; ".join(w for w in (reo_rec.warning, "undefined: no held-out "
                                        "item was recommended, or a group has no held-out "
                                        "item") if w)

        # popularity lift per user group (by the share of head items in the shown history)
        profiles = [shown[(u, ORIGINAL_H)] for u in units]
        labels = user_popularity_groups(profiles, head, p.niche_share, p.blockbuster_share)
        lift = popularity_lift(orig, profiles, pop, labels)
        gap_rp = np.array([[np.mean([pop.get(i, 0.0) for i in lst]) if lst and pr else np.nan,
                            np.mean([pop.get(i, 0.0) for i in pr]) if lst and pr else np.nan]
                           for lst, pr in zip(orig, profiles, strict=True)])  # one per unit
        lifts: dict[str, MetricRecord] = {}
        for g in ("niche", "diverse", "blockbuster"):
            members = [ui for ui, lab in enumerate(labels) if lab == g]
            if not members:
                kit.record("popularity_lift", attribute=USER_GROUP, value=g, k=K, n=0,
                           warning="no user in this group")
                continue
            lt = Table("popularity_lift", USER_GROUP, ["recommended", "profile"],
                       [units[ui] for ui in members], gap_rp[members], ks=[K], part=g)
            est = _lift_of_means(column_means(lt.values)[:, 0]) if n_samples > 1 else lift[g]
            lifts[g] = kit.derived(lt, "popularity_lift", _lift_of_means, estimate=est,
                                   convention="GAP = mean item popularity; profile = the "
                                              "shown history", value=g)

        # mean popularity by output position (LLMRank)
        width = max((len(lst) for lst in orig), default=0)
        if width:
            pos = np.full((n, width), np.nan)
            for ui, lst in enumerate(orig):
                pos[ui, :len(lst)] = [pop.get(i, 0.0) for i in lst]
            kit.means(Table("position_popularity", POSITION, [str(j + 1) for j in range(width)],
                            units, pos, ks=[K]), convention="original-history lists")

        per_user = res.tables.setdefault("per_user", [])
        for ui, u in enumerate(units):
            for ci, c in enumerate(CONDITIONS):
                per_user.append({"user_id": u, "condition": c, "arp": _f(per[ui, ci, 0]),
                                 "aplt": _f(per[ui, ci, 1]), "aclt": _f(per[ui, ci, 2]),
                                 "jaccard": 1.0 if ci == 0 else float(jac[ui, ci - 1]),
                                 "user_group": labels[ui]})

        return {"gaps": gaps, "jgap": jgap, "lifts": lifts, "echo": echo_recs, "units": units,
                "per": per, "lists": lists, "shown": shown}

    # -- say ------------------------------------------------------------------------------------
    def say(self, run: Run, measured: dict[str, Any] | None) -> None:
        """Write the popularity-following, lift and history-echo findings, and the examples."""
        if measured is None:  # no user with complete answers: nothing to say
            return
        alpha = run.ctx.stats.alpha
        self._findings(run.result, run.summary, measured["gaps"], measured["jgap"],
                       measured["lifts"], alpha)
        self._echo_finding(run.summary, measured["echo"], alpha)
        self._examples(run.result, run.ctx.catalog, measured["units"], measured["per"],
                       measured["lists"], measured["shown"])

    def _findings(self, res: ProbeResult, kit: Any, gaps: dict[str, MetricRecord],
                  jgap: MetricRecord, lifts: dict[str, MetricRecord], alpha: float) -> None:
        def mean(metric: str, value: str) -> float | None:
            recs = [r for r in res.metrics if r.metric == metric and r.attribute == HISTORY
                    and r.value == value and r.statistic == "mean"]
            return recs[0].estimate if recs else None

        names = {"arp": "ARP (mean training users per item)", "aplt": "the long-tail share"}
        for m, rec in gaps.items():
            if rec.estimate is None or rec.p_adjusted is None:
                continue
            nic, blk = mean(m, NICHE), mean(m, BLOCKBUSTER)
            follows = (blk or 0) > (nic or 0) if m == "arp" else (nic or 0) > (blk or 0)
            verb = ("follow the popularity of the shown history" if follows
                    else "move against the popularity of the shown history")
            title = verdict_title(rec, alpha, subject=f"{m.upper()}@{rec.k}",
                                  effect=f"lists {verb}",
                                  no_effect="no significant change between niche and "
                                            "blockbuster histories",
                                  statistic=f"gap {fmt(rec.estimate)}")
            kit.finding(rec, title=title, detail=(
                f"The same users shown equally rated niche items get {names[m]} {fmt(nic)}; "
                f"shown blockbusters, {fmt(blk)}. CI of the gap {ci_text(rec)}, n = {rec.n} "
                "users." + floor_sentence(rec, "users", "a model that ignores the history's "
                                                        "popularity")),
                alpha=alpha)
        if jgap.estimate is not None and jgap.p_adjusted is not None:
            jn, jb = mean("jaccard", NICHE), mean("jaccard", BLOCKBUSTER)
            kit.finding(jgap, title=(
                f"Jaccard@{jgap.k} with the original list: niche history {fmt(jn)}, "
                f"blockbuster history {fmt(jb)} (gap {p_text(jgap)})"),
                detail=("How much of each user's original list survives when the history is "
                        "swapped for niche or for blockbuster items; a large asymmetry means "
                        "the lists lean towards one kind of history."), alpha=alpha)
        for g, rec in lifts.items():
            if rec.estimate is None or g != "niche":
                continue
            ci = f" (CI {ci_text(rec)})" if rec.ci_low is not None and rec.ci_high is not None \
                else ""
            kit.finding(rec, title=(f"Niche users: recommendations {100 * rec.estimate:+.0f}% "
                                    f"popularity against their shown history{ci}"),
                        detail=(f"Popularity lift of the {rec.n} users with the lowest share of "
                                "short-head items in the shown history: (mean popularity of "
                                "the list - of the history) / of the history."), alpha=alpha)

    def _echo_finding(self, kit: Any, recs: dict[tuple[str, int | None], MetricRecord],
                      alpha: float) -> None:
        shares = {c: r.estimate for (c, _k), r in recs.items() if r.estimate is not None}
        if not shares or max(shares.values()) < ECHO_WARN:
            return
        worst = max(shares, key=lambda c: shares[c])
        kit.finding(recs[(worst, self.params.k)], title=(
            f"Lists repeat the shown history: {100 * shares[worst]:.0f}% of the top "
            f"{self.params.k} with the {worst} history"), detail=(
            "Where the lists repeat the history, they follow its popularity by repetition; "
            "read the popularity-following gaps with this in mind. Shares by history: "
            + ", ".join(f"{c} {100 * v:.0f}%" for c, v in shares.items()) + "."), alpha=alpha)

    def _examples(self, res: ProbeResult, catalog: Any, units: list[str], per: np.ndarray,
                  lists: dict[str, list[str] | None], shown: dict[tuple[str, str], list[str]]
                  ) -> None:
        shift = np.nan_to_num(per[:, 2, 0] - per[:, 1, 0], nan=-np.inf)
        for ui in np.argsort(-shift, kind="stable")[: self.params.n_examples]:
            u = units[int(ui)]
            res.examples.append({
                "user_id": u, "arp_shift": _f(per[ui, 2, 0] - per[ui, 1, 0]),
                **{f"{c}_history": [catalog.title(i) for i in shown[(u, c)]] for c in CONDITIONS},
                **{f"{c}_list": [catalog.title(i) for i in lists[QueryKey(u, value=c)] or []]
                   for c in CONDITIONS}})


def _f(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _mean_over_samples(values: list[float]) -> float:
    """Return the mean of a catalogue-level number over samples (the value itself with one)."""
    if len(values) == 1:
        return values[0]
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _rsp_of_means(m: np.ndarray) -> float:
    """Return PopRSP from per-user means: std / mean (ddof=0) of the head and tail rates.

    ``m`` holds the means of (recommended head, recommended tail, candidates head, candidates
    tail); a group's rate is recommended / candidates.
    """
    den = m[2:4]
    if not np.all(den > 0):
        return float("nan")
    prob = m[0:2] / den
    mu = prob.mean()
    return float(np.std(prob) / mu) if mu > 0 else float("nan")


def _popularity_blind_floor(x: np.ndarray, pool: np.ndarray, n_draws: int,
                            estimate: float | None, rng: np.random.Generator) -> dict[str, Any]:
    """PopRSP / PopREO's estimate, floor draws and p-value under a popularity-blind model.

    ``x`` holds per user (recommended head, recommended tail, candidates head, candidates
    tail); ``pool`` per user the head and tail items a blind model draws from. The null: the
    user's head-or-tail recommendations are drawn without regard to popularity from the pool,
    so the head count is hypergeometric (``ngood``, ``nbad`` = the pool's head and tail,
    ``nsample`` = head + tail recommended, capped at the pool); each draw is
    :func:`_rsp_of_means` of the column means (the candidates as observed). With repeated
    samples ``x`` is ``(samples, users, 4)`` (a missing sample's row NaN): each sample of a
    user draws its own head count and the user's counts are their mean over its samples, as
    the estimate's. Returns the keyword arguments of
    :meth:`~recaudit.probes.kit.Summariser.derived` (``estimate``, ``null`` and, with an
    estimate, ``p_value``).
    """
    from ..stats import permutation_pvalue, tie_tolerance

    x = np.asarray(x, dtype=float)
    xs = x[None] if x.ndim == 2 else x  # (S, users, 4)
    good, bad = pool[:, 0].astype(int), pool[:, 1].astype(int)
    present = np.isfinite(xs[:, :, 0])  # (S, users)
    picked = np.minimum(np.nan_to_num(xs[:, :, 0] + xs[:, :, 1]).astype(int), good + bad)
    ok = (good >= 0) & (bad >= 0) & (good + bad > 0)
    null = np.full(n_draws, np.nan)
    if ok.any():
        n_ok = int(ok.sum())
        if len(xs) == 1:
            heads = rng.hypergeometric(np.maximum(good[ok], 0), np.maximum(bad[ok], 0),
                                       picked[0, ok], size=(n_draws, n_ok))
            chosen = picked[0, ok]
        else:  # per sample, then each user's mean over its samples
            shape = (len(xs), n_ok)
            draws = rng.hypergeometric(np.broadcast_to(np.maximum(good[ok], 0), shape),
                                       np.broadcast_to(np.maximum(bad[ok], 0), shape),
                                       picked[:, ok], size=(n_draws,) + shape)
            w = present[:, ok] / np.maximum(present[:, ok].sum(axis=0), 1)  # (S, n_ok)
            heads = (draws * w).sum(axis=1)
            chosen = (picked[:, ok] * w).sum(axis=0)
        means = np.empty((n_draws, 4))
        n = xs.shape[1]  # users without candidates recommend nothing from either group
        means[:, 0] = heads.sum(axis=1) / n
        means[:, 1] = (chosen - heads).sum(axis=1) / n
        means[:, 2:] = xs[0, :, 2:].mean(axis=0)  # candidates do not depend on the sample
        null = np.asarray([_rsp_of_means(m) for m in means], dtype=float)
    out: dict[str, Any] = {"estimate": estimate, "null": null}
    if estimate is not None and np.isfinite(estimate) and np.isfinite(null).any():
        out["p_value"] = permutation_pvalue(null[np.isfinite(null)], estimate,
                                            tie_tolerance(1.0, xs.shape[1]))
    return out


def _lift_of_means(m: np.ndarray) -> float:
    """(GAP recommended - GAP profile) / GAP profile from the two condition means."""
    return float((m[0] - m[1]) / m[1]) if m[1] > 0 else float("nan")
