"""Position bias of LLM rankers (LLMRank; METRICS.md section 5).

LLMRank: Hou et al., ECIR 2024, arXiv 2305.08845.

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

Repeated samples (``decoding.samples`` = N): table cells are means over a request's samples. A
shuffled copy's first place is the mean of its samples' one-hot first places (a share per input
position), so ``first_place_v`` is Cramér's V of those expected counts (n = copies); its floor
and p-value come from the same null drawn per sample (each sample's first place uniformly
random, averaged within the copy), since the chi-square reference does not hold for averaged
counts. CIs resample users, never samples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..errors import ProbeCannotRun
from ..recommenders.base import GENERATE, SCORE, Request, Response
from .base import AuditContext, Probe, ProbeParams, Query, QueryKey, Run
from .findings import floor_sentence, fmt, verdict_title
from .histories import history_ids
from .registry import probe
from .sampling import UserSampler, draw_candidates

if TYPE_CHECKING:  # pragma: no cover
    from .kit import RawRecord

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
#: the two kinds of query per user: the held-out item at a fixed input position, a shuffled copy
POSITIONED, SHUFFLED = "position", "shuffle"
UTILITY_CONV = "binary relevance: the user's held-out item among the candidates"
METHOD_NOTES = (
    "Candidates are the user's held-out item plus items the user never interacted with "
    "(sampled negatives); a sampled negative may still be an item the user would like.",
    "First-place frequencies and ranking consistency are measured on independently shuffled "
    "copies of each user's candidates; the chi-square approximation needs about 5 expected "
    "rankings per position (n_users x n_shuffles >= 5 N).",
)
_PREFIX = re.compile(r"^\s*\d+\.\s")


def query_key(user_id: str, kind: str, which: int) -> QueryKey:
    """Return the key of one ranking request: ``<user>|position|<p>`` or ``<user>|shuffle|<b>``."""
    return QueryKey(user_id, kind, str(which))


def parse_ranking(text: str, titles: list[str]) -> list[int]:
    r"""Return the indices of ``titles`` in the order the output ranks them (METRICS.md section 5).

    Per line: drop a leading ``"digits. "`` prefix; the first title (in candidate order) that is
    a substring of the line is the next ranked candidate; a repeat of an already ranked
    candidate ends that line. Each line ranks at most one candidate.

    >>> parse_ranking("1. B\n2. A (the best)\nA again\nC", ["A", "B", "C"])
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
    """Parameters of the position probe (see the module docstring for each one's role)."""

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
        """Fill ``template`` with the history and candidates (:func:`render_list`) and N."""
        return (template.replace("{N}", str(len(candidates)))
                .replace("{history}", render_list(history))
                .replace("{candidates}", render_list(candidates)))


def shown_title(catalog: Any, item_id: str) -> str:
    """Return how a movie is shown: its natural title without year.

    'Matrix, The (1999)' -> 'The Matrix'.
    """
    from .subjects import natural_title

    return " ".join(natural_title(catalog.title(item_id)).split())


def shown_titles(catalog: Any) -> dict[str, str]:
    """:func:`shown_title` of every catalog item, by id (one pass over the items table)."""
    from .subjects import natural_title

    items = getattr(catalog, "items", None)
    if items is None or "title" not in getattr(items, "columns", ()):
        return {str(i): shown_title(catalog, i) for i in catalog.item_ids}
    return {str(i): "" if t is None or t != t else " ".join(natural_title(str(t)).split())
            for i, t in zip(items.index, items["title"], strict=True)}


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
        """Build the record of a request (its query ``meta``) whose answer ranked as ``ranking``."""
        from ..metrics.position import candidate_scores_from_ranking

        cands = tuple(str(c) for c in meta["candidates"])
        scores = (None if ranking is None else
                  tuple(candidate_scores_from_ranking(list(ranking), list(cands)).tolist()))
        return cls(mode=str(meta["mode"]), candidates=cands,
                   ranking=None if ranking is None else tuple(ranking), candidate_scores=scores)

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> "RankingRecord":
        """Read a record back from a stored one.

        ``record`` is a dict of results.json, or a typed raw record's ``meta``
        (:class:`~recaudit.probes.kit.RawRecord`).
        """
        ranking, scores = record.get("ranking"), record.get("candidate_scores")
        return cls(mode=str(record.get("mode")),
                   candidates=tuple(str(c) for c in record.get("candidates") or ()),
                   ranking=None if ranking is None else tuple(str(c) for c in ranking),
                   candidate_scores=None if scores is None else tuple(float(x) for x in scores))

    def fields(self) -> dict[str, Any]:
        """Return the keys this record adds to the kit's raw record (JSON types)."""
        return {"ranking": None if self.ranking is None else list(self.ranking),
                "candidate_scores": (None if self.candidate_scores is None
                                     else list(self.candidate_scores))}


@dataclass(frozen=True)
class RankingUser:
    """One sampled user: shown history, held-out item, negatives and the shuffled copies.

    ``negatives`` are in the user's fixed random order; :meth:`positioned` puts the held-out
    item among them; ``shuffles`` are independently shuffled copies of all candidates.
    """

    user_id: str
    history: list[str]
    held_out: str
    negatives: list[str]
    shuffles: list[list[str]]

    def positioned(self, position: int) -> list[str]:
        """Return the candidates with the held-out item at input ``position``."""
        return self.negatives[:position] + [self.held_out] + self.negatives[position:]


@probe("position", tags=["robustness", "position-bias", "llmrank", "accuracy"])
class PositionProbe(Probe):
    """LLMRank: whether the input position of the held-out item changes how it is ranked."""

    Params = PositionParams
    requires = frozenset({GENERATE, SCORE})
    needs_catalog = True
    headline = ("ndcg_gap", "first_place_v", "rank_consistency_rbo")
    method_notes = METHOD_NOTES
    params: PositionParams

    # -- planning -------------------------------------------------------------------------------
    def mode(self, capabilities: frozenset[str]) -> str:
        """Choose the ranking mode, ``generate`` or ``score``, for an adapter's ``capabilities``.

        Raises ValueError if the forced mode is not one of them.
        """
        m = self.params.mode
        if m == "auto":
            return GENERATE if GENERATE in capabilities else SCORE
        if m not in capabilities:
            raise ValueError(f"mode {m!r} needs the {m!r} capability; the recommender has "
                             f"{', '.join(sorted(capabilities)) or 'none'}")
        return m

    def sample_users(self, catalog: Any) -> tuple[list[RankingUser], list[str]]:
        """Sample the users (history, held-out item, candidates in a random order), seeded.

        Returns them with the warnings; the seed is ``seed``.

        Users are walked in the seeded order of :meth:`~recaudit.probes.sampling.UserSampler.
        order`; each one's negatives are drawn from the same generator
        (:func:`~recaudit.probes.sampling.draw_candidates`), and a user without enough of them
        is left out with a warning.

        Raises :class:`~recaudit.errors.ProbeCannotRun` when no user qualifies (a probe-level
        status with the reason, never an audit abort).
        """
        p = self.params
        sampler = UserSampler(catalog, min_train=p.min_history, seed=p.seed, knob="min_history")
        rng = sampler.rng
        titles = self._titles = shown_titles(catalog)
        all_items = list(titles)
        users: list[RankingUser] = []
        warnings: list[str] = []
        for user_id in sampler.order():
            if len(users) >= p.n_users:
                break
            u = str(user_id)
            train = history_ids(catalog.history(u, split="train"))
            test = history_ids(catalog.history(u, split="test"))
            held = test[0]
            seen = set(train) | set(test)

            def distinct(item: str, picked: list[str], seen: set[str] = seen) -> bool:
                t = titles[item]
                return not (item in seen or not t or any(t in titles[o] or titles[o] in t
                                                         for o in picked))

            picked = draw_candidates(rng, all_items, p.n_candidates, distinct, picked=[held])
            if len(picked) < p.n_candidates:
                warnings.append(f"user {u}: only {len(picked) - 1} unambiguous unseen items "
                                f"for {p.n_candidates - 1} negatives; user left out")
                continue
            shuffles = [[picked[int(i)] for i in rng.permutation(len(picked))]
                        for _ in range(p.n_shuffles)]
            users.append(RankingUser(user_id=u, history=train[-p.history_items:], held_out=held,
                                     negatives=picked[1:], shuffles=shuffles))
        if not users:
            raise ProbeCannotRun(f"no user has {p.n_candidates - 1} unseen items with distinct "
                                 "titles to sample as negatives; lower n_candidates")
        if len(users) < p.n_users:
            warnings.append(f"only {len(users)} users qualify; {p.n_users} were asked for")
        return users, warnings

    def plan(self, ctx: AuditContext) -> list[Query]:
        """Plan, per user, one request per held-out input position, then the shuffled copies.

        The keys are :func:`query_key`.
        """
        p = self.params
        mode = self.mode(ctx.capabilities)
        users, self._plan_warnings = self.sample_users(ctx.catalog)
        queries = []
        for user in users:
            uid = user.user_id
            history = [self._titles[i] for i in user.history]
            meta = {"user_id": uid, "held_out": user.held_out, "history": user.history,
                    "mode": mode}
            copies = [(POSITIONED, pos, user.positioned(pos)) for pos in p.positions]
            copies += [(SHUFFLED, b, c) for b, c in enumerate(user.shuffles)]
            for kind, which, cands in copies:
                shown = [self._titles[i] for i in cands]
                slot = "position" if kind == POSITIONED else "copy"
                queries.append(Query(query_key(uid, kind, which),
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
        """Return the same request with its candidates in ``order``.

        ``order`` is a permutation of their indices; the key is ``q.key`` with ``suffix`` as one
        more part; :meth:`ranking` reads its answer like any other.
        """
        cands = [q.meta["candidates"][i] for i in order]
        shown = [q.meta["titles"][i] for i in order]
        meta = {**q.meta, "candidates": cands, "titles": shown, "reordered_from": q.id}
        key = QueryKey(q.key.unit, q.key.attribute, q.key.value, (*q.key.extra, suffix))
        return Query(key, self._request(q.meta["history_titles"], shown, q.meta["mode"]), meta)

    # -- a saved result (recaudit mitigate) ------------------------------------------------------
    def saved_capabilities(self, records: Sequence[RawRecord]) -> frozenset[str] | None:
        """Return the ranking mode(s) a stored result ran in, as capabilities.

        Re-planning with them gives the same requests (None: no record says).
        """
        modes = {RankingRecord.of(r.meta).mode for r in records if r.meta.get("mode")}
        return frozenset(modes) or None

    def saved_response(self, query: Query, record: RawRecord) -> Response:
        """Rebuild the response a stored record replays.

        That is its text and error, and in score mode its candidate scores (which order the
        candidates as the ranker did).
        """
        scores = (RankingRecord.of(record.meta).candidate_scores
                  if query.meta.get("mode") == SCORE else None)
        return Response(text=record.text or "", error=record.error,
                        scores=None if scores is None else list(scores))

    # -- analysis -------------------------------------------------------------------------------
    @staticmethod
    def ranking(q: Query, answer: Any) -> list[str] | None:
        """Return the candidate ids in the ranker's order (parsed ones only); None if it failed."""
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

    def list_length(self) -> int:
        """Every candidate of an answer is kept (``n_candidates``)."""
        return self.params.n_candidates

    def measure(self, run: Run) -> "_Measured":
        """Measure the rankings: NDCG/HR/unparsed by input position, first places, consistency.

        The NDCG/HR gaps are over input positions; first places (Cramér's V) and consistency
        are on the shuffled copies.
        """
        p = self.params
        for w in getattr(self, "_plan_warnings", []):
            run.warn(w)
        rankings: dict[QueryKey, list[str] | None] = {}
        for q, rec in zip(run.queries, run.result.records, strict=True):
            r = self.ranking(q, run.answers.get(q.id))
            rankings[q.key] = r
            rec.update(RankingRecord.measured(q.meta, r).fields())
            rec.pop("titles", None)
        users = list(dict.fromkeys(q.meta["user_id"] for q in run.queries))
        by_key = {q.key: q for q in run.queries}
        mode = run.queries[0].meta["mode"] if run.queries else p.mode
        run.method_notes.insert(0, f"Ranking mode: {mode}.")
        gaps = self._by_position(run, users, by_key, rankings)
        v_rec, counts, chi = self._shuffled(run, users, by_key, rankings)
        return _Measured(gaps=gaps, v_rec=v_rec, counts=counts, chi=chi, mode=mode)

    def _by_position(self, run: Run, users: list[str], by_key: dict[QueryKey, Query],
                     rankings: dict[QueryKey, list[str] | None]) -> dict[str, Any]:
        """Measure NDCG / HR / unparsed share per input position and the NDCG / HR gaps.

        Only users with every position answered count.
        """
        from ..metrics.position import candidate_scores_from_ranking, tied_ndcg_hr
        from .kit import Table

        p, kit, K = self.params, run.summary, self.params.k
        conds = [str(x) for x in p.positions]
        complete = [u for u in users if all(rankings.get(query_key(u, POSITIONED, x)) is not None
                                            for x in p.positions)]
        run.units_complete(None, len(complete), len(users), noun="users",
                           reason="a positioned request failed or was not computed")
        util = np.full((len(complete), len(p.positions), 3), np.nan)
        per_user = run.result.tables.setdefault("per_user", [])
        for ui, u in enumerate(complete):
            for pi, x in enumerate(p.positions):
                q = by_key[query_key(u, POSITIONED, x)]
                cands = q.meta["candidates"]
                r = rankings[q.key]
                scores = candidate_scores_from_ranking(r, cands)
                ndcg, hr = tied_ndcg_hr(scores, cands.index(q.meta["held_out"]), K)
                unparsed = 1.0 - len(r) / len(cands)
                util[ui, pi] = (ndcg, hr, unparsed)
                per_user.append({"user_id": u, "position": x, "ndcg": ndcg, "hr": hr,
                                 "unparsed_share": unparsed})
        gaps = {}
        for j, m in enumerate(("ndcg", "hr")):
            t = Table(m, POSITION_ATTR, conds, complete, util[:, :, j], ks=[K])
            kit.means(t, convention=UTILITY_CONV)
            if complete:
                gaps[m] = kit.spread(t, "gap", convention="max - min over input positions of "
                                                          "the per-position means")[K]
        kit.means(Table("unparsed_share", POSITION_ATTR, conds, complete, util[:, :, 2]))
        return gaps

    def _shuffled(self, run: Run, users: list[str], by_key: dict[QueryKey, Query],
                  rankings: dict[QueryKey, list[str] | None]) -> tuple[Any, np.ndarray, Any]:
        """First place per input position and ranking consistency, on the shuffled copies."""
        from ..metrics.position import (cramers_v_of_shares, cramers_v_uniform,
                                        first_position_chi2, pairwise_consistency)
        from ..stats import permutation_pvalue, tie_tolerance
        from .kit import Table

        p, kit, N = self.params, run.summary, self.params.n_candidates
        fp_users, fp_rows, counts = [], [], np.zeros(N)
        cons_users, cons = [], []
        sizes: list[int] = []  # per ranked copy: how many of its samples have a first place
        for u in users:
            rs = [(by_key[key], rankings.get(key)) for key in
                  (query_key(u, SHUFFLED, b) for b in range(p.n_shuffles)) if key in by_key]
            rs = [(q, r) for q, r in rs if r]  # failed or nothing parsed: no first place
            if rs:
                row = np.zeros(N)
                for q, r in rs:  # a copy's first place: the mean over its samples' one-hots
                    firsts = [x[0] for x in self.sample_rankings(q, run.answers.get(q.id), r)
                              if x]
                    sizes.append(len(firsts))
                    for first in firsts:
                        row[q.meta["candidates"].index(first)] += 1 / len(firsts)
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
            run.result.tables["first_place"] = [  # with samples: expected counts
                {"position": i, "count": int(c) if c == int(c) else round(float(c), 6)}
                for i, c in enumerate(counts)]
            expected = chi.n / N
            warn = (f"expected {expected:.1f} first places per position (< 5): the chi-square "
                    "approximation is poor" if chi.n and expected < 5 else None)
            null = self._first_place_null(kit, counts, fp.variant, sizes)
            p_first = chi.pvalue
            if max(sizes, default=1) > 1:  # averaged counts: the chi-square reference is off
                p_first = permutation_pvalue(null, cramers_v_uniform(counts),
                                             tie_tolerance(1.0, len(sizes)))
                run.method_notes.append(
                    "Repeated samples: each shuffled copy's first place is the mean over its "
                    "samples (a share per input position), so first_place_v is Cramér's V of "
                    "those expected counts; its p-value and floor come from the same null "
                    "drawn per sample (a uniformly random first place, averaged within the "
                    "copy), not from the chi-square reference; CIs resample users.")
            if fp_users:
                v_rec = kit.derived(fp, "first_place_v",
                                    lambda m: float(cramers_v_of_shares(m)),
                                    estimate=cramers_v_uniform(counts),
                                    convention=f"Pearson chi-square vs uniform: chi2 = "
                                               f"{chi.statistic:.2f}, dof = {chi.dof}, "
                                               f"n = {chi.n} rankings", warning=warn,
                                    statistic="cramers_v", p_value=p_first, null=null)
            else:
                v_rec = kit.record("first_place_v", attribute=POSITION_ATTR, n=0,
                                   warning="no shuffled copy was ranked")
            arr = np.asarray(cons, dtype=float).reshape(len(cons_users), 2)
            for j, m in enumerate(("rank_consistency_rbo", "rank_consistency_tau")):
                kit.means(Table(m, None, ["shuffled copies"], cons_users, arr[:, [j]]),
                          convention=(f"mean over pairs of {p.n_shuffles} independently "
                                      f"shuffled copies" + (f", p = {p.rbo_p:g}" if j == 0
                                                            else ", union, missing tied last")))
        return v_rec, counts, chi

    def sample_rankings(self, q: Query, answer: Any, ranking: list[str] | None
                        ) -> list[list[str] | None]:
        """Return the ranking of every sample of ``q``'s answer (``[ranking]`` with one sample).

        ``ranking`` is sample 0's (already parsed); a re-ranked answer is one sample.
        """
        if answer is None or not answer.samples or answer.ranked is not None:
            return [ranking]
        return [ranking] + [self.ranking(q, a) for a in answer.samples[1:]]

    @staticmethod
    def _first_place_null(kit: Any, counts: np.ndarray, variant: str,
                          sizes: Sequence[int] = ()) -> np.ndarray:
        """Draws of ``first_place_v`` under its null: input positions exchangeable per ranking.

        Permuting the position labels of each ranking's first place puts it at a uniformly
        random input position, so the n first places fall multinomially, 1/N each;
        ``stats.n_permutations`` draws of Cramér's V of those counts. With repeated samples
        (``sizes``: each copy's number of sampled first places, some > 1) every sample draws
        its own first place and a copy counts the mean of its samples' one-hots, as the
        estimate does.
        """
        n, N = int(round(counts.sum())), counts.size
        if n == 0 or N < 2:
            return np.full(0, np.nan)
        rng = np.random.default_rng(kit.seed("null", "first_place_v", variant))
        if max(sizes, default=1) > 1:
            draws = np.zeros((int(kit.st.n_permutations), N))
            size_of = np.asarray(sizes, dtype=int)
            for s in sorted(set(size_of[size_of > 0])):
                m = int((size_of == s).sum())
                draws += rng.multinomial(int(s), np.full(N, 1.0 / N),
                                         size=(int(kit.st.n_permutations), m)).sum(axis=1) / s
        else:
            draws = rng.multinomial(n, np.full(N, 1.0 / N), size=int(kit.st.n_permutations))
        expected = n / N  # Cramér's V of each draw, as metrics.position.cramers_v_uniform
        chi2 = ((draws - expected) ** 2 / expected).sum(axis=1)
        return np.minimum(1.0, np.sqrt(chi2 / (n * (N - 1))))

    def say(self, run: Run, measured: "_Measured") -> None:
        """Write the NDCG-gap and first-place findings (:mod:`~recaudit.probes.findings`)."""
        alpha = run.ctx.stats.alpha
        kit, res = run.summary, run.result
        rec = measured.gaps.get("ndcg")
        if rec is not None and rec.estimate is not None:
            means = {r.value: r.estimate for r in res.metrics if r.metric == "ndcg"
                     and r.attribute == POSITION_ATTR and r.estimate is not None}
            worst = min(means, key=lambda v: means[v]) if means else "?"
            best = max(means, key=lambda v: means[v]) if means else "?"
            kit.finding(rec, title=verdict_title(
                rec, alpha, subject=f"NDCG@{rec.k}",
                effect="depends on the input position of the held-out item",
                no_effect="no significant difference across input positions",
                statistic=f"gap {fmt(rec.estimate)}"),
                detail=(f"Held-out item shown at position {best}: NDCG "
                        f"{fmt(means.get(best, 0))}; at position {worst}: "
                        f"{fmt(means.get(worst, 0))} ({measured.mode} mode, n = {rec.n} users)."
                        + floor_sentence(rec, "users", blind="a ranker that ignores position")),
                alpha=alpha)
        v_rec, counts = measured.v_rec, measured.counts
        if v_rec is not None and v_rec.estimate is not None:
            top = int(np.argmax(counts))
            share = counts[top] / counts.sum() if counts.sum() else 0.0
            kit.finding(v_rec, title=verdict_title(
                v_rec, alpha, subject="first places",
                effect="some input positions are ranked first more often than others",
                no_effect="spread evenly over input positions",
                statistic=f"Cramér's V {fmt(v_rec.estimate)}, chi-square test"),
                detail=(f"Input position {top} came out first in {share:.0%} of "
                        f"{measured.chi.n} shuffled rankings (uniform: {1 / len(counts):.0%})."),
                alpha=alpha)


@dataclass
class _Measured:
    """What :meth:`PositionProbe.measure` hands :meth:`PositionProbe.say`."""

    gaps: dict[str, Any]
    v_rec: Any
    counts: np.ndarray
    chi: Any
    mode: str
