"""Position bias of LLM rankers (LLMRank; Hou et al., ECIR 2024, arXiv 2305.08845;
METRICS.md section 5).

Design: sample ``n_users`` real users (seeded) with a training history and a held-out (test)
item. Per user, ``n_candidates`` (N, default 20) candidates: the user's first held-out item and
N - 1 items sampled from those the user never interacted with (train or test), in a random
order. Sampled titles are kept distinct and never a substring of one another (so the parsing
rule below cannot confuse two candidates). Then:

* one query per input position ``p`` in ``positions`` (default 0/5/10/15/19): the held-out
  item is moved to position ``p`` of the user's fixed random order of the others;
* ``n_shuffles`` queries with the N candidates in independently drawn random orders (each copy
  shuffled on its own; LLMRank's reference code shuffles all copies identically).

Two ways of ranking, chosen per adapter capability (``mode: auto``: ``generate`` when the
adapter can, else ``score``) or forced by ``mode``:

* ``generate``: the candidates are listed in the LLMRank prompt; the output is parsed by the
  METRICS.md rule (per line: drop a leading ``digits.`` prefix; the first candidate whose title is
  a substring of the line is the next ranked item; a repeat ends that line); the j-th found
  candidate (0-based) scores N - j, candidates never found share the minimum
  (:func:`~recaudit.metrics.position.candidate_scores_from_ranking`);
* ``score``: the same history and candidate list in ``score_template``, and one score per
  candidate title (``Request(candidates=...)``; the hf/gguf adapters give the sum of the title's
  token log-probabilities after the prompt); higher = better, ties broken by item id, never by
  input position.

Measured (units: users):

* ``ndcg`` and ``hr`` at ``k`` of the held-out item per input position (table users x positions)
  with bootstrap CIs; ``ndcg_gap`` / ``hr_gap`` (max - min over positions) with a paired
  bootstrap CI, a permutation p-value (null: positions exchangeable within a user) and the null
  floor. A held-out item that was not parsed ties with the other unparsed candidates: its
  NDCG/HR is the expectation over a random order of the tie
  (:func:`~recaudit.metrics.position.tied_ndcg_hr`), so ties cannot favour an input position;
* ``first_place_share`` per input position 0..N-1 on the shuffled copies (uniform 1/N if the
  ranker ignores order, since each copy's order is uniform and independent of the items) and
  ``first_place_v`` (Cramér's V) with the chi-square test against uniform
  (:func:`~recaudit.metrics.position.first_position_chi2`) as its p-value; the positioned
  queries are left out of this count (the held-out item sits on five fixed positions there);
* ``rank_consistency_rbo`` / ``rank_consistency_tau``: mean over pairs of a user's shuffled
  copies of RBO (persistence ``rbo_p``) and Kendall tau-b on the union (missing items tied
  last), bootstrap CIs over users;
* ``unparsed_share`` per position: share of candidates the parser did not find.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..errors import ProbeCannotRun
from ..recommenders.base import GENERATE, SCORE, Request, Response
from ..results import ProbeResult
from .histories import history_ids, user_sort_key
from .registry import AuditContext, Probe, ProbeParams, Query, probe

LLMRANK_TEMPLATE = (
    "I've watched the following movies in the past in order:\n{history}\n\nNow there are {N} "
    "candidate movies that I can watch next:\n{candidates}\nPlease rank these {N} movies by "
    "measuring the possibilities that I would like to watch next most, according to my watching "
    "history. Please think step by step.\nPlease show me your ranking results with order "
    "numbers. Split your output with line break. You MUST rank the given candidate movies. You "
    "can not generate movies that are not in the given candidate list.")
SCORE_TEMPLATE = (
    "I've watched the following movies in the past in order:\n{history}\n\nNow there are {N} "
    "candidate movies that I can watch next:\n{candidates}\nThe candidate movie I would like to "
    "watch next most, according to my watching history, is:")
POSITION_ATTR = "input_position"
UTILITY_CONV = "binary relevance: the user's held-out item among the candidates"
METHOD_NOTES = (
    "Candidates are the user's held-out item plus items the user never interacted with "
    "(sampled negatives); a sampled negative may still be an item the user would like.",
    "First-place frequencies and ranking consistency are measured on independently shuffled "
    "copies of each user's candidates; the chi-square approximation needs about 5 expected "
    "rankings per position (n_users x n_shuffles >= 5 N).",
)
_PREFIX = re.compile(r"^\s*\d+\.\s")


def parse_ranking(text: str, titles: list[str]) -> list[int]:
    """Indices of ``titles`` in the order the output ranks them (METRICS.md section 5).

    Per line: drop a leading ``"digits. "`` prefix; the first title (in candidate order) that is
    a substring of the line is the next ranked candidate; a repeat of an already ranked
    candidate ends that line. Each line ranks at most one candidate.

    >>> parse_ranking("1. B\\n2. A (the best)\\nA again\\nC", ["A", "B", "C"])
    [1, 0, 2]
    """
    out: list[int] = []
    seen: set[int] = set()
    for line in (text or "").splitlines():
        line = _PREFIX.sub("", line, count=1)
        if not line.strip():
            continue
        for i, t in enumerate(titles):
            if t and t in line:
                if i not in seen:
                    seen.add(i)
                    out.append(i)
                break
    return out


def render_list(titles: list[str]) -> str:
    """LLMRank's rendering: a Python-style list of ``"j. title"`` strings, j from 0."""
    return str([f"{j}. {t}" for j, t in enumerate(titles)])


class PositionParams(ProbeParams):
    n_users: int = Field(50, ge=1)
    n_candidates: int = Field(20, ge=2, le=200)
    positions: list[int] = Field(default_factory=lambda: [0, 5, 10, 15, 19])
    n_shuffles: int = Field(3, ge=0, le=50)
    history_items: int = Field(50, ge=1)
    min_history: int = Field(1, ge=1)
    k: int = Field(10, ge=1)
    mode: Literal["auto", "generate", "score"] = "auto"
    template: str = LLMRANK_TEMPLATE
    score_template: str = SCORE_TEMPLATE
    system: str | None = None
    rbo_p: float = Field(0.9, gt=0.0, lt=1.0)
    seed: int = 0

    @field_validator("positions")
    @classmethod
    def _positions(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("positions is empty")
        if any(p < 0 for p in v) or len(set(v)) != len(v):
            raise ValueError("positions must be distinct non-negative input positions")
        return v

    @field_validator("template", "score_template")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        missing = [p for p in ("{history}", "{candidates}") if p not in v]
        if missing:
            raise ValueError(f"template lacks placeholder {', '.join(missing)}")
        return v

    @model_validator(mode="after")
    def _fits(self) -> "PositionParams":
        if max(self.positions) >= self.n_candidates:
            raise ValueError(f"n_candidates = {self.n_candidates} is too few for input position "
                             f"{max(self.positions)} (positions count from 0; need at least "
                             f"{max(self.positions) + 1})")
        return self

    def prompt(self, history: list[str], candidates: list[str], template: str) -> str:
        return (template.replace("{N}", str(len(candidates)))
                .replace("{history}", render_list(history))
                .replace("{candidates}", render_list(candidates)))


def shown_title(catalog: Any, item_id: str) -> str:
    """How a movie is shown: the natural title without year ('Matrix, The (1999)' ->
    'The Matrix')."""
    from .subjects import natural_title

    return " ".join(natural_title(catalog.title(item_id)).split())


def shown_titles(catalog: Any) -> dict[str, str]:
    """:func:`shown_title` of every catalog item, by id (one pass over the items table)."""
    from .subjects import natural_title

    items = getattr(catalog, "items", None)
    if items is None or "title" not in getattr(items, "columns", ()):
        return {str(i): shown_title(catalog, i) for i in catalog.item_ids}
    return {str(i): "" if t is None or t != t else " ".join(natural_title(str(t)).split())
            for i, t in zip(items.index, items["title"])}


@dataclass(frozen=True)
class RankingRecord:
    """What a stored position record keeps of one ranking request beyond the kit's raw fields.

    ``mode`` is how the candidates were ranked (``generate`` or ``score``); ``candidates`` the
    candidate ids in input order; ``ranking`` the parsed candidate ids in the ranker's order
    (None: the request failed); ``candidate_scores`` one score per candidate in input order,
    :func:`~recaudit.metrics.position.candidate_scores_from_ranking` of ``ranking`` (the j-th
    ranked candidate scores N - j; unparsed candidates share the minimum), so ordering the
    candidates by it (ties by item id) gives ``ranking`` back.
    """

    mode: str
    candidates: tuple[str, ...]
    ranking: tuple[str, ...] | None
    candidate_scores: tuple[float, ...] | None

    @classmethod
    def measured(cls, meta: Mapping[str, Any], ranking: Sequence[str] | None
                 ) -> "RankingRecord":
        """The record of a request (its query ``meta``) whose answer ranked as ``ranking``."""
        from ..metrics.position import candidate_scores_from_ranking

        cands = tuple(str(c) for c in meta["candidates"])
        scores = (None if ranking is None else
                  tuple(candidate_scores_from_ranking(list(ranking), list(cands)).tolist()))
        return cls(mode=str(meta["mode"]), candidates=cands,
                   ranking=None if ranking is None else tuple(ranking), candidate_scores=scores)

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> "RankingRecord":
        """Read back from a stored record (a dict of results.json)."""
        ranking, scores = record.get("ranking"), record.get("candidate_scores")
        return cls(mode=str(record.get("mode")),
                   candidates=tuple(str(c) for c in record.get("candidates") or ()),
                   ranking=None if ranking is None else tuple(str(c) for c in ranking),
                   candidate_scores=None if scores is None else tuple(float(x) for x in scores))

    def fields(self) -> dict[str, Any]:
        """The keys this record adds to the kit's raw record (JSON types)."""
        return {"ranking": None if self.ranking is None else list(self.ranking),
                "candidate_scores": (None if self.candidate_scores is None
                                     else list(self.candidate_scores))}


@probe("position", tags=["robustness", "position-bias", "llmrank", "accuracy"])
class PositionProbe(Probe):
    """LLMRank: does the input position of the held-out item change how it is ranked?"""

    Params = PositionParams
    requires = frozenset({GENERATE, SCORE})
    needs_catalog = True
    params: PositionParams

    # -- planning -------------------------------------------------------------------------------
    def mode(self, capabilities: frozenset[str]) -> str:
        """``generate`` or ``score`` for an adapter with ``capabilities`` (ValueError if the
        forced mode is not one of them)."""
        m = self.params.mode
        if m == "auto":
            return GENERATE if GENERATE in capabilities else SCORE
        if m not in capabilities:
            raise ValueError(f"mode {m!r} needs the {m!r} capability; the recommender has "
                             f"{', '.join(sorted(capabilities)) or 'none'}")
        return m

    def sample_users(self, catalog: Any) -> tuple[list[dict[str, Any]], list[str]]:
        """The sampled users (history, held-out item, candidates in a random order) and
        warnings. Seeded by ``seed``.

        Raises :class:`~recaudit.errors.ProbeCannotRun` when no user qualifies (a probe-level
        status with the reason, never an audit abort).
        """
        p = self.params
        n_train = catalog.split("train")["user_id"].astype(str).value_counts()
        n_test = catalog.split("test")["user_id"].astype(str).value_counts()
        eligible = [u for u in sorted(catalog.user_ids(), key=user_sort_key)
                    if n_train.get(str(u), 0) >= p.min_history and n_test.get(str(u), 0) >= 1]
        if not eligible:
            raise ProbeCannotRun(f"no user has >= {p.min_history} training interactions and a "
                                 "held-out item; lower min_history")
        rng = np.random.default_rng(p.seed)
        order = rng.permutation(len(eligible))
        titles = self._titles = shown_titles(catalog)
        all_items = list(titles)
        users, warnings = [], []
        for idx in order:
            if len(users) >= p.n_users:
                break
            u = str(eligible[int(idx)])
            train = history_ids(catalog.history(u, split="train"))
            test = history_ids(catalog.history(u, split="test"))
            held = test[0]
            seen = set(train) | set(test)
            picked = [held]
            for j in rng.permutation(len(all_items)):
                if len(picked) == p.n_candidates:
                    break
                item = all_items[int(j)]
                t = titles[item]
                if item in seen or not t or any(t in titles[o] or titles[o] in t
                                                for o in picked):
                    continue
                picked.append(item)
            if len(picked) < p.n_candidates:
                warnings.append(f"user {u}: only {len(picked) - 1} unambiguous unseen items "
                                f"for {p.n_candidates - 1} negatives; user left out")
                continue
            negatives = picked[1:]
            shuffles = [[picked[int(i)] for i in rng.permutation(len(picked))]
                        for _ in range(p.n_shuffles)]
            users.append({"user_id": u, "history": train[-p.history_items:], "held_out": held,
                          "negatives": negatives, "shuffles": shuffles})
        if not users:
            raise ProbeCannotRun(f"no user has {p.n_candidates - 1} unseen items with distinct "
                                 "titles to sample as negatives; lower n_candidates")
        if len(users) < p.n_users:
            warnings.append(f"only {len(users)} users qualify; {p.n_users} were asked for")
        return users, warnings

    def plan(self, ctx: AuditContext) -> list[Query]:
        p = self.params
        mode = self.mode(ctx.capabilities)
        catalog = ctx.catalog
        users, self._plan_warnings = self.sample_users(catalog)
        queries = []
        for user in users:
            uid = user["user_id"]
            history = [self._titles[i] for i in user["history"]]
            meta = {"user_id": uid, "held_out": user["held_out"], "history": user["history"],
                    "mode": mode}
            copies = [("position", pos, user["negatives"][:pos] + [user["held_out"]]
                       + user["negatives"][pos:]) for pos in p.positions]
            copies += [("shuffle", b, c) for b, c in enumerate(user["shuffles"])]
            for kind, which, cands in copies:
                shown = [self._titles[i] for i in cands]
                slot = "position" if kind == "position" else "copy"
                queries.append(Query(f"{uid}|{kind}|{which}",
                                     self._request(history, shown, mode), {
                    **meta, "kind": kind, slot: which, "candidates": cands, "titles": shown,
                    "history_titles": history}))
        return queries

    def _request(self, history: list[str], shown: list[str], mode: str) -> Request:
        p = self.params
        if mode == GENERATE:
            return Request.from_prompt(p.prompt(history, shown, p.template), k=len(shown),
                                       system=p.system)
        msgs = ([{"role": "system", "content": p.system}] if p.system else [])
        msgs.append({"role": "user", "content": p.prompt(history, shown, p.score_template)})
        return Request(msgs, k=len(shown), candidates=shown)

    def requery(self, q: Query, order: list[int], suffix: str) -> Query:
        """The same request with its candidates in ``order`` (a permutation of their indices),
        id ``<q.id>|<suffix>``; :meth:`ranking` reads its answer like any other."""
        cands = [q.meta["candidates"][i] for i in order]
        shown = [q.meta["titles"][i] for i in order]
        meta = {**q.meta, "candidates": cands, "titles": shown, "reordered_from": q.id}
        return Query(f"{q.id}|{suffix}", self._request(q.meta["history_titles"], shown,
                                                        q.meta["mode"]), meta)

    # -- a saved result (recaudit mitigate) ------------------------------------------------------
    @staticmethod
    def saved_capabilities(records: Sequence[Mapping[str, Any]]) -> frozenset[str] | None:
        """The ranking mode(s) a stored result ran in, as capabilities: re-planning with them
        gives the same requests (None: no record says)."""
        modes = {RankingRecord.of(r).mode for r in records if r.get("mode")}
        return frozenset(modes) or None

    @staticmethod
    def saved_response(query: Query, record: Mapping[str, Any]) -> Response:
        """The response a stored record replays: its text and error, and in score mode its
        candidate scores (which order the candidates as the ranker did)."""
        scores = RankingRecord.of(record).candidate_scores if query.meta.get("mode") == SCORE \
            else None
        return Response(text=record.get("text") or "", error=record.get("error"),
                        scores=None if scores is None else list(scores))

    # -- analysis -------------------------------------------------------------------------------
    @staticmethod
    def ranking(q: Query, answer: Any) -> list[str] | None:
        """The candidate ids in the ranker's order (parsed ones only); None if it failed."""
        from ..metrics.position import ranking_from_scores

        if answer is None or not answer.ok:
            return None
        if answer.ranked is not None:  # a mitigation's order of the candidates
            return [str(c) for c in answer.ranked]
        cands = q.meta["candidates"]
        if q.meta["mode"] == SCORE:
            scores = answer.response.scores
            if scores is None or len(scores) != len(cands):
                return None
            return [str(c) for c in ranking_from_scores(scores, cands)]
        return [cands[i] for i in parse_ranking(answer.response.text, q.meta["titles"])]

    def analyse(self, ctx: AuditContext, queries: list[Query], answers: dict[str, Any]
                ) -> ProbeResult:
        from ..metrics.position import (candidate_scores_from_ranking, cramers_v_of_shares,
                                        cramers_v_uniform,
                                        first_position_chi2, pairwise_consistency, tied_ndcg_hr)
        from .kit import Summariser, Table, collect

        p = self.params
        st = ctx.stats
        K = p.k
        N = p.n_candidates
        res = ProbeResult(id=self.run_id, probe=self.name, suite=self.suite,
                          params=p.model_dump(mode="json"))
        res.warnings.extend(getattr(self, "_plan_warnings", []))
        got = collect(queries, answers, N)
        kit = Summariser(res, st)
        rankings: dict[str, list[str] | None] = {}
        for q, rec in zip(queries, got.records):
            r = self.ranking(q, answers.get(q.id))
            rankings[q.id] = r
            rec.update(RankingRecord.measured(q.meta, r).fields())
            rec.pop("titles", None)
        res.records = got.records

        users = list(dict.fromkeys(q.meta["user_id"] for q in queries))
        by_id = {q.id: q for q in queries}
        conds = [str(x) for x in p.positions]
        mode = queries[0].meta["mode"] if queries else self.params.mode

        # NDCG / HR / unparsed per input position (users with every position answered)
        complete = [u for u in users
                    if all(rankings.get(f"{u}|position|{x}") is not None for x in p.positions)]
        if len(complete) < len(users):
            res.warnings.append(f"{len(users) - len(complete)} of {len(users)} users left out "
                                "of the per-position tables (a response failed or was not "
                                "computed)")
        util = np.full((len(complete), len(p.positions), 3), np.nan)
        per_user = res.tables.setdefault("per_user", [])
        for ui, u in enumerate(complete):
            for pi, x in enumerate(p.positions):
                q = by_id[f"{u}|position|{x}"]
                cands = q.meta["candidates"]
                r = rankings[q.id]
                scores = candidate_scores_from_ranking(r, cands)
                ndcg, hr = tied_ndcg_hr(scores, cands.index(q.meta["held_out"]), K)
                unparsed = 1.0 - len(r) / len(cands)
                util[ui, pi] = (ndcg, hr, unparsed)
                per_user.append({"user_id": u, "position": x, "ndcg": ndcg, "hr": hr,
                                 "unparsed_share": unparsed})
        small = kit.warning(len(complete))
        if small:
            res.warnings.append(f"only {len(complete)} users ({small})")
        gaps = {}
        for j, m in enumerate(("ndcg", "hr")):
            t = Table(m, POSITION_ATTR, conds, complete, util[:, :, j], ks=[K])
            kit.means(t, convention=UTILITY_CONV)
            if complete:
                gaps[m] = kit.spread(t, "gap", convention="max - min over input positions of "
                                                          "the per-position means")[K]
        kit.means(Table("unparsed_share", POSITION_ATTR, conds, complete, util[:, :, 2]))

        # first place per input position and consistency, on the shuffled copies
        fp_users, fp_rows, counts = [], [], np.zeros(N)
        cons_users, cons = [], []
        for u in users:
            rs = [(by_id[qid], rankings.get(qid)) for qid in
                  (f"{u}|shuffle|{b}" for b in range(p.n_shuffles)) if qid in by_id]
            rs = [(q, r) for q, r in rs if r]  # failed or nothing parsed: no first place
            if rs:
                row = np.zeros(N)
                for q, r in rs:
                    row[q.meta["candidates"].index(r[0])] += 1
                counts += row
                fp_users.append(u)
                fp_rows.append(row / len(rs))
            if len(rs) >= 2:
                cons_users.append(u)
                cons.append(pairwise_consistency([r for _, r in rs], p=p.rbo_p))
        chi = first_position_chi2(counts)
        v_rec = None
        if p.n_shuffles:
            fp = Table("first_place_share", POSITION_ATTR, [str(i) for i in range(N)], fp_users,
                       np.asarray(fp_rows).reshape(len(fp_users), N))
            kit.means(fp)
            res.tables["first_place"] = [{"position": i, "count": int(c)}
                                         for i, c in enumerate(counts)]
            expected = chi.n / N
            warn = (f"expected {expected:.1f} first places per position (< 5): the chi-square "
                    "approximation is poor" if chi.n and expected < 5 else None)
            if fp_users:
                v_rec = kit.derived(fp, "first_place_v",
                                    lambda m: float(cramers_v_of_shares(m)),
                                    estimate=cramers_v_uniform(counts),
                                    convention=f"Pearson chi-square vs uniform: chi2 = "
                                               f"{chi.statistic:.2f}, dof = {chi.dof}, "
                                               f"n = {chi.n} rankings", warning=warn,
                                    statistic="cramers_v", p_value=chi.pvalue)
            else:
                v_rec = kit.record("first_place_v", attribute=POSITION_ATTR, n=0,
                                   warning="no shuffled copy was ranked")
            arr = np.asarray(cons, dtype=float).reshape(len(cons_users), 2)
            for j, m in enumerate(("rank_consistency_rbo", "rank_consistency_tau")):
                kit.means(Table(m, None, ["shuffled copies"], cons_users, arr[:, [j]]),
                          convention=(f"mean over pairs of {p.n_shuffles} independently "
                                      f"shuffled copies" + (f", p = {p.rbo_p:g}" if j == 0
                                                            else ", union, missing tied last")))
        kit.adjust()
        self._findings(res, kit, gaps, v_rec, counts, chi, st.alpha, mode)
        return kit.finish(headline=("ndcg_gap", "first_place_v", "rank_consistency_rbo"),
                          tags=self.tags,
                          method_notes=(f"Ranking mode: {mode}.", *METHOD_NOTES))

    def _findings(self, res: ProbeResult, kit: Any, gaps: dict[str, Any], v_rec: Any,
                  counts: np.ndarray, chi: Any, alpha: float, mode: str) -> None:
        rec = gaps.get("ndcg")
        if rec is not None and rec.estimate is not None:
            pa = rec.p_adjusted if rec.p_adjusted is not None else rec.p_value
            means = {r.value: r.estimate for r in res.metrics if r.metric == "ndcg"
                     and r.attribute == POSITION_ATTR and r.estimate is not None}
            sig = pa is not None and pa < alpha
            worst = min(means, key=lambda v: means[v]) if means else "?"
            best = max(means, key=lambda v: means[v]) if means else "?"
            floor = (f" With {rec.n} users, a ranker that ignores position scores up to "
                     f"{rec.null_p95:.3f} (95th percentile of the permutation null)."
                     if rec.null_p95 is not None else "")
            p_txt = f"p = {pa:.3g}" if pa is not None else "no test"
            kit.finding(rec, title=(
                f"NDCG@{rec.k} depends on the input position of the held-out item (gap "
                f"{rec.estimate:.3f}, {p_txt})" if sig else
                f"No significant NDCG@{rec.k} difference across input positions (gap "
                f"{rec.estimate:.3f}, {p_txt})"),
                detail=(f"Held-out item shown at position {best}: NDCG {means.get(best, 0):.3f}; "
                        f"at position {worst}: {means.get(worst, 0):.3f} ({mode} mode, "
                        f"n = {rec.n} users).{floor}"), alpha=alpha)
        if v_rec is not None and v_rec.estimate is not None:
            pa = v_rec.p_adjusted if v_rec.p_adjusted is not None else v_rec.p_value
            sig = pa is not None and pa < alpha
            top = int(np.argmax(counts))
            share = counts[top] / counts.sum() if counts.sum() else 0.0
            p_txt = f"chi-square p = {pa:.3g}" if pa is not None else "no test"
            kit.finding(v_rec, title=(
                f"Some input positions are ranked first more often than others (V = "
                f"{v_rec.estimate:.3f}, {p_txt})" if sig else
                f"First places are spread evenly over input positions (V = "
                f"{v_rec.estimate:.3f}, {p_txt})"),
                detail=(f"Input position {top} came out first in {share:.0%} of {chi.n} "
                        f"shuffled rankings (uniform: {1 / len(counts):.0%})."), alpha=alpha)
