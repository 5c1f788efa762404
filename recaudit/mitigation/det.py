"""Deterministic fair rerankers of Geyik, Ambler & Kenthapadi (KDD 2019), METRICS.md section 7.

Source: S. C. Geyik, S. Ambler and K. Kenthapadi, "Fairness-Aware Ranking in Search &
Recommendation Systems with Application to LinkedIn Talent Search", KDD 2019 (arXiv 1905.01989):
DetGreedy (Algorithm 1), DetCons and DetRelaxed (Algorithm 2) and DetConstSort (Algorithm 3).

Every algorithm targets a distribution ``p`` over ``G`` groups. At a prefix of length ``r``
(1-based) group ``g`` should hold at least ``floor(r p_g)`` items (the *minimum* count) and at
most ``ceil(r p_g)`` (the *maximum* count). Within a group candidates always keep their
relevance order (the input order), so every algorithm only decides which group fills each slot.

Conventions (see :mod:`recaudit.mitigation`): ``(L, n)`` batches of candidate lists, position 0
best, ``valid`` marks real candidates, the output is ``(L, k)`` indices into the candidate axis
with ``-1`` padding, bad parameters raise a one-line ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field

from .registry import ListBatch, Reranker, RerankerParams, reranker

__all__ = ["METHODS", "det_rerank"]

METHODS: tuple[str, ...] = ("greedy", "cons", "relaxed", "constsort")

#: relative slack of the floor / ceil of ``r * p`` (``50 * 0.58 = 28.999999999999996`` is 29)
_EPS = 1e-9


def _floor(x: np.ndarray | float) -> np.ndarray:
    """``floor`` that treats values within ``_EPS`` (relative) below an integer as that integer."""
    x = np.asarray(x, dtype=float)
    return np.floor(x + _EPS * np.maximum(1.0, np.abs(x))).astype(np.int64)


def _ceil(x: np.ndarray | float) -> np.ndarray:
    """``ceil`` that treats values within ``_EPS`` (relative) above an integer as that integer."""
    x = np.asarray(x, dtype=float)
    return np.ceil(x - _EPS * np.maximum(1.0, np.abs(x))).astype(np.int64)


def _check_targets(targets: np.ndarray | Sequence[float]) -> np.ndarray:
    try:
        p = np.asarray(targets, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("targets must be a sequence of numbers (one share per group)") from None
    if p.ndim != 1:
        raise ValueError(f"targets must be 1-D (one share per group), got shape {p.shape}")
    if p.size < 2:
        raise ValueError(f"targets need at least 2 groups, got {p.size}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"targets must be finite and non-negative, got {p.tolist()}")
    total = float(p.sum())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"targets must sum to 1, got {total:.6g}")
    return p


def _check_inputs(
    groups: np.ndarray,
    targets: np.ndarray | Sequence[float],
    k: int,
    method: str,
    scores: np.ndarray | None,
    valid: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    p = _check_targets(targets)
    g = np.asarray(groups)
    if g.ndim != 2:
        raise ValueError(f"groups must be a 2-D (lists, candidates) array, got shape {g.shape}")
    n_lists, n = g.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer, got {k!r}")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if k > n:
        raise ValueError(f"k={k} is larger than the candidate list ({n})")
    if valid is None:
        ok = np.ones((n_lists, n), dtype=bool)
    else:
        ok = np.asarray(valid)
        if ok.shape != g.shape:
            raise ValueError(f"valid has shape {ok.shape}, groups has {g.shape}")
        if ok.dtype != bool:
            raise ValueError(f"valid must be a boolean mask, got dtype {ok.dtype}")
    if g.dtype.kind == "f":
        if not np.all(np.isfinite(g[ok])) or np.any(g[ok] != np.round(g[ok])):
            raise ValueError("groups must hold integer group ids")
    elif g.dtype.kind not in "iu":
        raise ValueError(f"groups must hold integer group ids, got dtype {g.dtype}")
    gi = np.where(ok, g, 0).astype(np.int64)
    if np.any((gi < 0) | (gi >= p.size)):
        raise ValueError(f"group ids must lie in 0..{p.size - 1} (one per target share)")
    if scores is None:
        s = np.broadcast_to(np.arange(n, 0, -1, dtype=float), (n_lists, n)).copy()
    else:
        s = np.asarray(scores, dtype=float)
        if s.shape != g.shape:
            raise ValueError(f"scores has shape {s.shape}, groups has {g.shape}")
        if not np.all(np.isfinite(s[ok])):
            raise ValueError("scores must be finite for valid candidates")
    return gi, p, s, ok


def _group_queues(gi: np.ndarray, ok: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per list and group, the candidate indices of that group in input order, ``-1`` padded.

    Returns ``queue`` ``(L, G, n)`` and ``size`` ``(L, G)``.
    """
    n_lists, n = gi.shape
    queue = np.full((n_lists, n_groups, n), -1, dtype=np.int64)
    size = np.zeros((n_lists, n_groups), dtype=np.int64)
    cols = np.arange(n)
    for grp in range(n_groups):
        member = ok & (gi == grp)
        order = np.argsort(~member, axis=1, kind="stable")
        cnt = member.sum(axis=1)
        queue[:, grp, :] = np.where(cols[None, :] < cnt[:, None], order, -1)
        size[:, grp] = cnt
    return queue, size


def _pick_best(eligible: np.ndarray, head_score: np.ndarray, head_pos: np.ndarray) -> np.ndarray:
    """Row-wise group with the highest head score among ``eligible``; ties: earlier position."""
    masked = np.where(eligible, head_score, -np.inf)
    best = masked.max(axis=1, keepdims=True)
    tie = eligible & (masked == best)
    big = np.iinfo(np.int64).max
    return np.argmin(np.where(tie, head_pos, big), axis=1)


def _greedy_family(
    gi: np.ndarray, p: np.ndarray, s: np.ndarray, ok: np.ndarray, k: int, method: str
) -> np.ndarray:
    """DetGreedy / DetCons / DetRelaxed, one position at a time, numpy over the lists."""
    n_lists = gi.shape[0]
    n_groups = p.size
    queue, size = _group_queues(gi, ok, n_groups)
    counts = np.zeros((n_lists, n_groups), dtype=np.int64)
    out = np.full((n_lists, k), -1, dtype=np.int64)
    rows = np.arange(n_lists)
    safe_p = np.where(p > 0, p, 1.0)
    for r in range(1, k + 1):
        lo = _floor(r * p)  # (G,) minimum counts at prefix r
        hi = _ceil(r * p)  # (G,) maximum counts at prefix r
        available = counts < size
        head_pos = np.take_along_axis(queue, np.minimum(counts, queue.shape[2] - 1)[..., None],
                                      axis=2)[..., 0]
        head_pos = np.where(available, head_pos, -1)
        head_score = np.where(available, s[rows[:, None], np.maximum(head_pos, 0)], -np.inf)
        below_min = available & (counts < lo)
        below_max = available & (counts >= lo) & (counts < hi)
        any_min = below_min.any(axis=1)
        any_max = below_max.any(axis=1)
        any_left = available.any(axis=1)

        pick_min = _pick_best(below_min, head_score, head_pos)
        if method == "greedy":
            pick_max = _pick_best(below_max, head_score, head_pos)
        else:
            if method == "cons":
                urgency = hi / safe_p  # ceil(r p_g) / p_g
            else:  # relaxed
                urgency = _ceil(hi / safe_p).astype(float)  # ceil(ceil(r p_g) / p_g)
            u = np.where(below_max, urgency[None, :], np.inf)
            most_urgent = below_max & (u == u.min(axis=1, keepdims=True))
            pick_max = _pick_best(most_urgent, head_score, head_pos)
        pick_any = _pick_best(available, head_score, head_pos)
        pick = np.where(any_min, pick_min, np.where(any_max, pick_max, pick_any))
        chosen = head_pos[rows, pick]
        out[:, r - 1] = np.where(any_left, chosen, -1)
        counts[rows, pick] += any_left
    return out


def _due_prefixes(p: np.ndarray, n: int) -> list[list[int]]:
    """``due[g][j - 1]``: the first prefix length ``r`` with ``floor(r p_g) >= j``, ``j = 1..n``.

    Groups with a zero share are never due (empty list).
    """
    j = np.arange(1, n + 1, dtype=float)
    due: list[list[int]] = []
    for pg in p.tolist():
        if pg <= 0:
            due.append([])
            continue
        r = np.maximum(np.ceil(j / pg).astype(np.int64) - 2, 1)
        short = _floor(r * pg) < j
        while short.any():
            r += short
            short = _floor(r * pg) < j
        due.append(r.tolist())
    return due


def _const_sort_one(
    queues: list[list[int]], due: list[list[int]], score: list[float], k: int
) -> list[int]:
    """DetConstSort (Algorithm 3) on one list, *before* truncation to ``k``.

    ``queues[g]`` holds group ``g``'s candidate indices in relevance order, ``due[g][j]`` the
    prefix length at which group ``g``'s minimum count reaches ``j + 1``; ``score`` is indexed
    by candidate. The paper loops over ``r = 1, 2, ...``; only the prefix lengths at which some
    minimum count grows do anything, so those are visited directly. The loop stops once at
    least ``k`` items are placed, completing the last batch as the paper does, so the result
    may be longer than ``k``. A group that has run out is skipped; when no group has a due
    candidate left before ``k`` items are placed, the remaining slots are filled with the best
    remaining candidates of any group (by score, then position).
    """
    events = sorted((d, g) for g, q in enumerate(queues) for d in due[g][: len(q)])
    counts = [0] * len(queues)
    ranked: list[int] = []
    ranked_score: list[float] = []
    max_index: list[int] = []  # 0-based last position the item may occupy
    e = 0
    while len(ranked) < k and e < len(events):
        r = events[e][0]
        batch = []
        while e < len(events) and events[e][0] == r:
            batch.append(events[e][1])
            e += 1
        batch.sort(key=lambda g: (-score[queues[g][counts[g]]], queues[g][counts[g]]))
        for g in batch:
            item = queues[g][counts[g]]
            sc = score[item]
            ranked.append(item)
            ranked_score.append(sc)
            max_index.append(r - 1)
            start = len(ranked) - 1
            while start > 0 and max_index[start - 1] >= start and ranked_score[start - 1] < sc:
                ranked[start - 1], ranked[start] = ranked[start], ranked[start - 1]
                ranked_score[start - 1], ranked_score[start] = sc, ranked_score[start - 1]
                max_index[start - 1], max_index[start] = max_index[start], max_index[start - 1]
                start -= 1
            counts[g] += 1
    if len(ranked) < k:
        rest = [item for q, c in zip(queues, counts, strict=True) for item in q[c:]]
        rest.sort(key=lambda i: (-score[i], i))
        ranked.extend(rest[: k - len(ranked)])
    return ranked


def _const_sort(gi: np.ndarray, p: np.ndarray, s: np.ndarray, ok: np.ndarray, k: int) -> np.ndarray:
    n_lists, n = gi.shape
    queue, size = _group_queues(gi, ok, p.size)
    due = _due_prefixes(p, n)
    out = np.full((n_lists, k), -1, dtype=np.int64)
    queue_l, size_l, s_l = queue.tolist(), size.tolist(), s.tolist()
    for row in range(n_lists):
        queues = [q[:c] for q, c in zip(queue_l[row], size_l[row], strict=True)]
        ranked = _const_sort_one(queues, due, s_l[row], k)[:k]
        out[row, : len(ranked)] = ranked
    return out


def det_rerank(
    groups: np.ndarray,
    targets: np.ndarray | Sequence[float],
    k: int,
    method: str = "greedy",
    *,
    scores: np.ndarray | None = None,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Rerank candidate lists towards target group shares (Geyik et al., KDD 2019).

    Let ``counts[g]`` be the number of group-``g`` items placed so far and, for the prefix
    length ``r`` (1-based) being filled, ``lo_g = floor(r p_g)`` and ``hi_g = ceil(r p_g)``.
    The head of a group is its best not yet placed candidate (earliest position). With
    ``belowMin = {g : counts[g] < lo_g}`` and ``belowMax = {g : lo_g <= counts[g] < hi_g}``:

    * ``"greedy"`` (DetGreedy, Algorithm 1): if ``belowMin`` is non-empty take the best-scoring
      head among it, else the best-scoring head among ``belowMax``;
    * ``"cons"`` (DetCons, Algorithm 2): as DetGreedy while ``belowMin`` is non-empty, else the
      group of ``belowMax`` minimising ``ceil(r p_g) / p_g`` (ties: best-scoring head);
    * ``"relaxed"`` (DetRelaxed, Algorithm 2): as DetCons but minimising
      ``ceil(ceil(r p_g) / p_g)``, ties broken by the best-scoring head;
    * ``"constsort"`` (DetConstSort, Algorithm 3): for ``r = 1, 2, ...`` the groups whose
      minimum count grows insert their heads (best score first) at the end of the list, each
      then swapped upwards past lower-scoring items as long as the item moved down stays
      within its own prefix ``r`` deadline; stops once ``k`` items are placed (the last batch
      is completed as in the paper, then the list is cut to ``k``).

    Score ties between heads go to the earlier position. Floors and ceilings of ``r p_g``
    tolerate a relative rounding error of ``1e-9`` (``50 * 0.58`` counts as 29).

    Running out of candidates (not in the paper, which assumes enough of every group): a group
    with no candidates left is left out of ``belowMin`` / ``belowMax`` (DetConstSort skips it);
    when no group is eligible the slot goes to the best remaining candidate of any group
    (DetConstSort: remaining slots are filled that way, by score, once every group with a
    positive share has run out). Lists with fewer than ``k`` valid candidates are padded with
    ``-1``. For comparison, AIF360 0.6.1 raises ``IndexError`` once any group runs out; the
    ``reranking`` package 0.3.6 takes the best remaining candidate of any group as soon as a
    group of the deciding set has run out (even if another group of that set has candidates
    left), and its det_cons raises ``KeyError`` when the group it picks has run out.

    DetConstSort's pseudo-code, as transcribed by the ``reranking`` package, stores
    ``maxIndices[lastEmpty] = k`` with a 0-based ``lastEmpty``; that lets an item sink to
    position ``k + 1`` and break its own minimum count, against the paper's claim that
    DetConstSort always meets the minimum counts. This implementation uses the 0-based
    deadline ``k - 1`` (as AIF360 does), so the minimum counts hold at every prefix.

    Parameters
    ----------
    groups : numpy.ndarray
        Integer ``(L, n)`` group id (``0 .. G-1``) of each candidate; candidates are sorted by
        relevance, position 0 best.
    targets : numpy.ndarray or Sequence[float]
        ``(G,)`` desired group shares, non-negative, summing to 1, ``G >= 2``.
    k : int
        Output length, ``1 <= k <= n``.
    method : str
        One of :data:`METHODS`.
    scores : numpy.ndarray, optional
        ``(L, n)`` relevance used where heads of different groups are compared; default
        ``n - position``. Assumed non-increasing along each list (the head of a group is its
        earliest remaining candidate whatever its score).
    valid : numpy.ndarray, optional
        Boolean ``(L, n)`` mask of real candidates; default all true.

    Returns
    -------
    numpy.ndarray
        Int ``(L, k)`` candidate indices, best first, ``-1`` where a list runs out.

    Raises
    ------
    ValueError
        On bad targets, ``k``, ``method`` or array shapes.
    """
    gi, p, s, ok = _check_inputs(groups, targets, k, method, scores, valid)
    if method == "constsort":
        return _const_sort(gi, p, s, ok, int(k))
    return _greedy_family(gi, p, s, ok, int(k), method)


# -- registry entry ------------------------------------------------------------------------------
class DetParams(RerankerParams):
    """Parameters of :class:`Det` (Geyik et al.'s Det* re-rankers)."""

    column: str = Field("genre", description="the item-group column (genre, decade, "
                                             "head_tail or any catalog column)")
    method: str = Field("greedy", pattern="^(greedy|cons|relaxed|constsort)$")
    targets: dict[str, float] | None = Field(None, description="desired share per group; "
                                                               "default the catalog's shares")
    lam: float = Field(1.0, ge=0.0, le=1.0, description="0 = the lists' own pooled make-up, "
                                                        "1 = the targets")


@reranker("det")
class Det(Reranker):
    """Geyik et al.'s DetGreedy / DetCons / DetRelaxed / DetConstSort re-ranking.

    Moves each list toward target shares of a multi-valued item group (shares mixed as
    ``(1 - lam) * lists' own + lam * targets``).
    """

    Params = DetParams
    sweep = "lam"
    sweep_values = (0.0, 0.25, 0.5, 0.75, 1.0)
    target = "ndkl"
    params: DetParams

    def _setup(self, batch: ListBatch) -> tuple[list[str], np.ndarray, dict[str, str],
                                                dict[str, float]]:
        """Return the groups (ordered), each entry's group, item -> group and desired shares."""
        from ..metrics.exposure import item_shares, resolve_target

        mapping = batch.item_groups(self.params.column)
        catalog = item_shares(mapping)
        groups = sorted(set(catalog) | {"unknown"}, key=lambda g: (-catalog.get(g, 0.0), g))
        if len(catalog) < 2:
            raise ValueError(f"group column {self.params.column!r} has only one value "
                             f"({next(iter(catalog), 'none')!r}): nothing to re-balance")
        given = dict(self.params.targets or {})
        unknown = [g for g in given if g not in catalog]
        if unknown:
            raise ValueError(f"targets name group {unknown[0]!r}, which column "
                             f"{self.params.column!r} does not have")
        desired = resolve_target(groups, given, catalog) if given else \
            {g: catalog.get(g, 0.0) for g in groups}
        return groups, batch.groups(self.params.column), mapping, desired

    def rerank(self, batch: ListBatch, k: int) -> list[list[str]]:
        """Re-rank every list with :func:`det_rerank` toward the mixed shares."""
        groups, labels, _, desired = self._setup(batch)
        index = {g: i for i, g in enumerate(groups)}
        gid = np.vectorize(lambda g: index.get(g, index["unknown"]), otypes=[int])(labels)
        own = np.bincount(gid[batch.valid], minlength=len(groups)).astype(float)
        own = own / own.sum() if own.sum() else np.full(len(groups), 1.0 / len(groups))
        want = np.array([desired[g] for g in groups])
        shares = (1 - self.params.lam) * own + self.params.lam * want
        order = det_rerank(np.where(batch.valid, gid, 0), shares / shares.sum(), k,
                           self.params.method, scores=batch.relevance, valid=batch.valid)
        return batch.lists(order)

    def target_values(self, batch: ListBatch, k: int) -> np.ndarray:
        """Return each list's NDKL at ``k`` from the desired shares (NaN: undefined)."""
        from ..metrics.exposure import ndkl

        _, _, mapping, desired = self._setup(batch)
        desired = {g: v for g, v in desired.items() if v > 0}
        out = []
        for row, ok in zip(batch.ids, batch.valid, strict=True):
            lst = [str(x) for x, v in zip(row, ok, strict=True) if v]
            val = ndkl(lst, mapping, desired, k, default="unknown") if lst else float("nan")
            out.append(val if np.isfinite(val) else float("nan"))
        return np.asarray(out, dtype=float)
