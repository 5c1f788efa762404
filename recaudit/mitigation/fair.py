r"""FA*IR top-k re-ranking (Zehlike et al., CIKM 2017) as vectorised numpy functions.

FA*IR guarantees *ranked group fairness*: every prefix of the top-k holds at least as many
protected candidates as a binomial significance test at level ``alpha`` demands for a target
protected proportion ``p``. The per-prefix minimum is the m-table,

.. math:: m_\alpha(i) = F^{-1}_{\mathrm{Bin}(i, p)}(\alpha), \quad i = 1..k,

and because k prefixes are tested, ``alpha`` is corrected to :math:`\alpha_c` so that the
probability that a fair ranking (protected flags i.i.d. Bernoulli(p)) fails some prefix test
equals ``alpha`` as closely as the discrete m-tables allow.

Every result matches the reference implementation fairsearchcore 1.0.4 (METRICS.md section 7):
its m-table (``MTableGenerator``), adjusted alpha (``RecursiveNumericFailProbabilityCalculator``,
here a dynamic programme over the binomial instead of its memoised recursion), ``is_fair``
(``check_ranking``) and ``re_rank`` (``fair_top_k``), including its quirks, which are documented
where they occur. Batch conventions: see :mod:`recaudit.mitigation`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from pydantic import Field, field_validator

from .registry import ListBatch, Reranker, RerankerParams, reranker

# fairsearchcore's bisection stops when the alpha bracket is this narrow (fail_prob.EPS).
_EPS = 1e-16


def _check_p_alpha(p: float, alpha: float) -> tuple[float, float]:
    out = []
    for name, value in (("p", p), ("alpha", alpha)):
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = float("nan")
        if not 0.0 < v < 1.0:  # also rejects NaN
            raise ValueError(f"{name} must lie in (0, 1), got {value}")
        out.append(v)
    return out[0], out[1]


def _check_k(k: int) -> int:
    try:
        whole = not isinstance(k, bool) and int(k) == k
    except (TypeError, ValueError):
        whole = False
    if not whole:
        raise ValueError(f"k must be a positive integer, got {k}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return int(k)


def _mtable(k: int, p: float, alpha: float) -> np.ndarray:
    """Compute the m-table without parameter checks (``alpha = 0`` gives all zeros)."""
    from scipy.stats import binom

    m = binom.ppf(alpha, np.arange(1, k + 1), p)
    # fairsearchcore MTableGenerator.m: ``0 if result < 0 else result`` (ppf(0) is -1)
    return np.where(m < 0, 0, m).astype(np.int64)


def mtable(k: int, p: float, alpha: float) -> np.ndarray:
    r"""Minimum number of protected candidates required in each prefix of a top-k ranking.

    .. math:: m(i) = \max\bigl(0, F^{-1}_{\mathrm{Bin}(i, p)}(\alpha)\bigr), \quad i = 1..k

    with :math:`F^{-1}` the binomial inverse CDF (:func:`scipy.stats.binom.ppf`, the smallest
    count whose CDF reaches ``alpha``). This is the *unadjusted* table; pass
    :func:`adjusted_alpha` as ``alpha`` for the corrected one.

    Source: Zehlike et al., "FA*IR: A Fair Top-k Ranking Algorithm", CIKM 2017, section 4;
    fairsearchcore 1.0.4 ``MTableGenerator.m`` / ``Fair.create_unadjusted_mtable``.

    Parameters
    ----------
    k : int
        Ranking length, at least 1.
    p : float
        Target proportion of protected candidates, in (0, 1).
    alpha : float
        Significance level of each prefix test, in (0, 1).

    Returns
    -------
    numpy.ndarray
        int64 array ``(k,)``; entry ``i - 1`` is the minimum for the prefix of length ``i``.

    Examples
    --------
    >>> mtable(10, 0.5, 0.1).tolist()
    [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]
    """
    p, alpha = _check_p_alpha(p, alpha)
    return _mtable(_check_k(k), p, alpha)


def _blocks(m: np.ndarray) -> np.ndarray:
    """Return the sizes of the runs between increments of m (fairsearchcore ``compute_aux_mtable``).

    Only positions ``1..k-1`` are scanned (``range(1, len(mtable))``), so an increment at the last
    position ``k`` is not part of the fail probability: a quirk of fairsearchcore 1.0.4 kept here
    for agreement (LensKit's FA*IR includes position k).
    """
    head = m[:-1]
    steps = np.flatnonzero(np.diff(head, prepend=0)) + 1  # 1-based positions where m increments
    return np.diff(steps, prepend=0)


def _fail_probability(m: np.ndarray, p: float) -> float:
    """Probability that i.i.d. Bernoulli(p) protected flags fail the m-table (fairsearchcore).

    Dynamic programme over blocks: ``S`` is the distribution of the protected count so far among
    rankings that passed every test; block j (size b) adds a Bin(b, p) count and must end with
    at least j protected. fairsearchcore returns 0 (not 1) when the success mass is 0.
    """
    from scipy.stats import binom

    S = np.ones(1)
    for j, b in enumerate(_blocks(m).tolist(), start=1):
        S = np.convolve(S, binom.pmf(np.arange(b + 1), b, p))
        S[:j] = 0.0
    success = float(S.sum())
    return 0.0 if success == 0 else 1.0 - success


@lru_cache(maxsize=256)
def _adjusted_alpha(k: int, p: float, alpha: float) -> float:
    """Adjust alpha for k prefix tests, step by step as fairsearchcore does.

    fairsearchcore: ``RecursiveNumericFailProbabilityCalculator.adjust_alpha``.
    """

    def boundary(a: float) -> tuple[float, int, float]:
        m = _mtable(k, p, a)
        return a, int(m.sum()), _fail_probability(m, p)

    minb, maxb, midb = boundary(0.0), boundary(alpha), boundary(alpha / 2)
    a_min, a_max = 0.0, alpha
    a_mid = (a_min + a_max) / 2
    while minb[1] < maxb[1] and midb[2] != alpha:
        if midb[2] < alpha:
            a_min = a_mid
            minb = boundary(a_min)
        elif midb[2] > alpha:
            a_max = a_mid
            maxb = boundary(a_max)
        a_mid = (a_min + a_max) / 2
        midb = boundary(a_mid)
        min_diff, max_diff = abs(minb[2] - alpha), abs(maxb[2] - alpha)
        if maxb[1] - minb[1] == 1 or maxb[0] - minb[0] <= _EPS:
            return minb[0] if min_diff <= max_diff else maxb[0]
        if maxb[1] - midb[1] == 1 and midb[1] - minb[1] == 1:
            mid_diff = abs(midb[2] - alpha)
            if mid_diff <= max_diff and mid_diff <= min_diff:
                return midb[0]
            if min_diff <= mid_diff and min_diff <= max_diff:
                return minb[0]
            return maxb[0]
    return midb[0]


def adjusted_alpha(k: int, p: float, alpha: float) -> float:
    r"""Significance level corrected for the k prefix tests of a top-k ranking.

    The fail probability of an m-table is the chance that a ranking whose protected flags are
    i.i.d. Bernoulli(p) violates some prefix; with the table split into blocks of sizes
    :math:`b_1, b_2, \dots` at the positions where m increases,

    .. math:: P_{\mathrm{fail}}(m) = 1 - \Pr\Bigl[\sum_{l \le j} X_l \ge j \ \forall j\Bigr],
              \quad X_l \sim \mathrm{Bin}(b_l, p),

    computed by a dynamic programme over the binomial. :math:`\alpha_c` is found by bisection on
    ``[0, alpha]`` and is the bracket end (or midpoint) whose m-table has the fail probability
    closest to ``alpha``, with fairsearchcore's exact stopping rules (m-table masses one apart,
    or the bracket narrower than 1e-16). Two fairsearchcore quirks are kept for agreement: the
    fail probability ignores the test at the last position k, and when ``mtable(k, p, alpha)``
    is all zeros the result is ``alpha / 2``.

    Source: Zehlike et al. CIKM 2017, section 4.3 (Algorithm 1, AdjustSignificance);
    fairsearchcore 1.0.4 ``Fair.adjust_alpha``.

    Parameters
    ----------
    k : int
        Ranking length, at least 1.
    p : float
        Target proportion of protected candidates, in (0, 1).
    alpha : float
        Overall significance level, in (0, 1).

    Returns
    -------
    float
        The corrected level; ``mtable(k, p, adjusted_alpha(k, p, alpha))`` is the adjusted table.

    Examples
    --------
    >>> adjusted_alpha(10, 0.5, 0.1)
    0.07500000000000001
    >>> mtable(10, 0.5, adjusted_alpha(10, 0.5, 0.1)).tolist()
    [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    """
    p, alpha = _check_p_alpha(p, alpha)
    return _adjusted_alpha(_check_k(k), p, alpha)


def _table(k: int, p: float, alpha: float, adjust: bool) -> np.ndarray:
    p, alpha = _check_p_alpha(p, alpha)
    k = _check_k(k)
    return _cached_mtable(k, p, _adjusted_alpha(k, p, alpha) if adjust else alpha)


@lru_cache(maxsize=256)
def _cached_mtable(k: int, p: float, alpha: float) -> np.ndarray:
    m = _mtable(k, p, alpha)
    m.flags.writeable = False
    return m


def _as_batch(
    protected: np.ndarray, valid: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(L, n)`` bool flags and valid mask; the mask is None when every candidate is valid."""
    prot = np.asarray(protected)
    if prot.ndim not in (1, 2):
        raise ValueError(f"protected must be 1-D or 2-D, got shape {prot.shape}")
    prot2 = np.atleast_2d(prot).astype(bool, copy=False)
    if valid is None:
        return prot2, None
    v = np.asarray(valid)
    if v.shape != prot.shape:
        raise ValueError(f"valid has shape {v.shape} but protected has shape {prot.shape}")
    ok = np.atleast_2d(v).astype(bool, copy=False)
    return prot2, None if ok.all() else ok


def _queues_all_valid(prot: np.ndarray, k: int, m_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Build the two queues as flat ``(L, k + 1)`` arrays, for lists of all-valid candidates.

    ``q[l * (k + 1) + r]`` = index of the (r+1)-th best candidate of the group in list l, ``n``
    past the end. Only what the merge can reach is filled: at step i the best remaining
    candidate overall has index <= i < k, so a candidate beyond the first k is only ever taken
    when it is protected and required, and at most ``m_max`` (= m(k)) protected ones are taken
    that way. Hence both queues come from the first k columns, plus, for lists with fewer than
    ``m_max`` protected there, their next protected candidates further down (one ``argmax``
    per rank). A queue cut short at k never changes a decision: the first k columns always
    still hold the best remaining candidate.
    """
    L, n = prot.shape
    w = k + 1
    base = np.arange(L) * w
    window = np.ascontiguousarray(prot[:, :k].T)
    q_prot = np.full(L * w, n, dtype=np.int64)
    q_other = np.full(L * w, n, dtype=np.int64)
    r_prot = np.zeros(L, dtype=np.int64)  # protected among the columns seen so far
    for j in range(k):
        # slot r_prot holds j until the next protected candidate is seen (then it is kept)
        q_prot[base + r_prot] = j
        q_other[base + (j - r_prot)] = j
        r_prot += window[j]
    q_prot[base + r_prot] = n  # the one slot per queue left holding a non-member
    q_other[base + (k - r_prot)] = n
    short = np.flatnonzero(r_prot < m_max)
    if n > k and short.size:
        deep = prot[short, k:].reshape(-1)  # a copy, cleared as its protected ones are found
        d = n - k
        row0 = np.arange(short.size) * d
        rank = r_prot[short]
        slot = short * w + rank
        for _ in range(m_max - int(rank.min())):
            pos = np.argmax(deep.reshape(short.size, d), axis=1)
            found = deep[row0 + pos] & (rank < m_max)
            # written without a find too (slot stays put; reset to n below); slots <= m_max <= k
            q_prot[slot] = k + pos
            deep[row0 + pos] = False
            slot += found
            rank += found
        q_prot[slot] = n
    return q_prot, q_other


def _first_members(member: np.ndarray, k: int) -> np.ndarray:
    """Return the index of the (r+1)-th True of each row, as a flat ``(L, k + 1)`` array.

    Row l's (r+1)-th True (r < k) is at ``l * (k + 1) + r``, ``n`` where there is none. A
    cumulative count over the flattened batch (nondecreasing) and a ``searchsorted`` for the
    L x k ranks.
    """
    L, n = member.shape
    counts = np.cumsum(member.reshape(-1), dtype=np.int64)
    ends = counts[n - 1 :: n]  # members up to the end of each row
    base = np.concatenate([[0], ends[:-1]])
    wanted = base[:, None] + np.arange(1, k + 1)
    pos = np.searchsorted(counts, wanted, side="left") - (np.arange(L) * n)[:, None]
    out = np.full((L, k + 1), n, dtype=np.int64)
    out[:, :k] = np.where(wanted <= ends[:, None], pos, n)
    return out.reshape(-1)


def _merge(q_prot: np.ndarray, q_other: np.ndarray, m: np.ndarray, n: int) -> np.ndarray:
    """Merge the queues of all lists at once, one position per iteration.

    fairsearchcore ``fair_top_k``, vectorised over the lists.
    """
    k = len(m)
    L = len(q_prot) // (k + 1)
    base = np.arange(L) * (k + 1)
    at_prot, at_other = base.copy(), base.copy()  # flat queue positions of the heads
    out = np.empty((k, L), dtype=np.int64)
    for i in range(k):
        c_prot, c_other = q_prot[at_prot], q_other[at_other]  # n: queue empty
        # protected if required (fewer than m(i) so far) and available (c_prot < n), else if
        # it is the better one (c_other = n when the non-protected queue is empty)
        need = at_prot < base + m[i]
        take = c_prot < np.maximum(c_other, need * n)
        out[i] = np.where(take, c_prot, c_other)
        at_prot += take
        at_other += ~take
    out[out == n] = -1  # both queues empty: the list ends
    return out.T


def is_fair(
    protected: np.ndarray,
    p: float,
    alpha: float,
    *,
    adjust: bool = True,
    valid: np.ndarray | None = None,
) -> np.ndarray | bool:
    r"""Whether each ranking meets the FA*IR m-table in every prefix (ranked group fairness).

    With ``k`` the ranking length (last axis of ``protected``) and ``m`` the m-table for
    ``(k, p, alpha_c)`` (``alpha_c = adjusted_alpha(k, p, alpha)``, or ``alpha`` when
    ``adjust=False``), a ranking is fair iff

    .. math:: \sum_{t \le i} \mathrm{protected}_t \ \ge\ m(i) \quad \text{for every } i = 1..k.

    With ``valid``, invalid positions are dropped (the valid entries keep their order) and a list
    with ``n < k`` valid entries is tested on its prefixes ``1..n`` against the same k-table; it
    is not failed for being short (fairsearchcore has no notion of a short list: its
    ``check_ranking`` raises).

    Source: Zehlike et al. CIKM 2017, definition of ranked group fairness; fairsearchcore 1.0.4
    ``Fair.is_fair`` (``adjust=True``) / ``check_ranking``.

    Parameters
    ----------
    protected : array_like of bool
        ``(L, k)`` protected flags of ``L`` rankings (position 0 the top), or ``(k,)``.
    p, alpha : float
        Target protected proportion and significance level, both in (0, 1).
    adjust : bool
        Use the multiple-testing corrected table (fairsearchcore's ``is_fair``), default true.
    valid : array_like of bool, optional
        Same shape as ``protected``; marks the real entries.

    Returns
    -------
    numpy.ndarray or bool
        bool ``(L,)``, or a bool for 1-D input.

    Examples
    --------
    >>> bool(is_fair([0, 0, 0, 1, 0, 0, 1, 0, 1, 0], 0.5, 0.1))
    True
    >>> bool(is_fair([0, 0, 0, 1, 0, 0, 0, 1, 1, 1], 0.5, 0.1))
    False
    """
    prot, ok = _as_batch(protected, valid)
    k = prot.shape[1]
    if k < 1:
        raise ValueError("protected has no positions (k = 0)")
    m = _table(k, p, alpha, adjust)
    if ok is None:
        ok = np.ones(prot.shape, dtype=bool)
    rank = np.cumsum(ok, axis=1)  # 1-based rank of each valid entry
    count = np.cumsum(prot & ok, axis=1)
    need = m[np.maximum(rank, 1) - 1]
    fair = np.all((count >= need) | ~ok, axis=1)
    return bool(fair[0]) if np.ndim(protected) == 1 else fair


def fair_rerank(
    protected: np.ndarray,
    k: int,
    p: float,
    alpha: float,
    *,
    adjust: bool = True,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    r"""FA*IR re-ranking: the best top-k that meets the m-table in every prefix.

    Candidates come sorted by relevance (position 0 best) with a protected flag each. Position
    ``i = 1..k`` is filled greedily from the two relevance-ordered queues (protected and
    non-protected candidates): if the ranking so far holds fewer than :math:`m(i)` protected
    candidates, the best remaining protected candidate; otherwise the best remaining candidate of
    either group. As in fairsearchcore's ``fair_top_k``: when one queue is empty the other is used
    even if the table asks for a protected candidate (the result is then not fair), and when both
    are empty the list ends (``-1`` padding here). ``m`` is ``mtable(k, p, adjusted_alpha(k, p,
    alpha))`` (fairsearchcore's ``re_rank``), or ``mtable(k, p, alpha)`` with ``adjust=False``.

    Relevance is the input order, strictly: fairsearchcore compares scores and gives an exact
    score tie to the protected candidate; with strictly decreasing scores the two agree.

    Implementation: a loop over the k positions, numpy over the lists. A list whose relevance
    order already meets the table comes back unchanged; for the others only the first k
    candidates and, where those hold fewer than m(k) protected ones, the next protected
    candidates further down are gathered (nothing else can be reached), so the cost grows
    with L and k, hardly with n. Lists with invalid entries take a general path (first k
    members of each group by a ``searchsorted`` over the batch).

    Source: Zehlike et al. CIKM 2017, Algorithm 2 (FA*IR); fairsearchcore 1.0.4 ``Fair.re_rank``.

    Parameters
    ----------
    protected : array_like of bool
        ``(L, n)`` protected flags of ``L`` relevance-sorted candidate lists, or ``(n,)``.
    k : int
        Length of the re-ranked lists, ``1 <= k <= n``.
    p, alpha : float
        Target protected proportion and significance level, both in (0, 1).
    adjust : bool
        Use the multiple-testing corrected table, default true.
    valid : array_like of bool, optional
        Same shape as ``protected``; marks the real candidates of padded lists.

    Returns
    -------
    numpy.ndarray
        int64 ``(L, k)`` indices into the candidate axis (``(k,)`` for 1-D input), ``-1`` where a
        list has fewer than ``k`` valid candidates.

    Examples
    --------
    >>> fair_rerank([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1], 10, 0.5, 0.1).tolist()
    [0, 1, 2, 8, 3, 4, 9, 5, 6, 10]
    """
    prot, ok = _as_batch(protected, valid)
    k = _check_k(k)
    L, n = prot.shape
    if k > n:
        raise ValueError(f"k={k} is larger than the candidate list ({n})")
    m = _table(k, p, alpha, adjust)
    if L == 0:
        out = np.empty((0, k), dtype=np.int64)
    elif ok is None:
        # a list whose relevance order already meets the table comes back unchanged (the
        # greedy never needs a protected candidate, so it takes the next one each time)
        window = np.ascontiguousarray(prot[:, :k].T)
        count = np.zeros(L, dtype=np.int64)
        unchanged = np.ones(L, dtype=bool)
        for i in range(k):
            count += window[i]
            unchanged &= count >= m[i]
        out = np.empty((L, k), dtype=np.int64)
        out[:] = np.arange(k)
        rest = np.flatnonzero(~unchanged)
        if rest.size:
            out[rest] = _merge(*_queues_all_valid(prot[rest], k, int(m[-1])), m, n)
    else:
        out = _merge(_first_members(prot & ok, k), _first_members(~prot & ok, k), m, n)
    return out[0] if np.ndim(protected) == 1 else out


# -- registry entry ------------------------------------------------------------------------------
class FairParams(RerankerParams):
    """Parameters of :class:`Fair` (FA*IR)."""

    protected: str = Field("head_tail=tail", description="COLUMN=VALUE: the protected item "
                                                         "group (any item-group column)")
    p: float = Field(0.5, gt=0.0, lt=1.0, description="target minimum protected proportion")
    alpha: float = Field(0.1, gt=0.0, lt=1.0, description="significance of the fairness test")
    adjust: bool = Field(True, description="adjust alpha for testing every prefix")

    @field_validator("protected")
    @classmethod
    def _protected(cls, v: str) -> str:
        column, sep, value = v.partition("=")
        if not sep or not column.strip() or not value.strip():
            raise ValueError(f"protected must be COLUMN=VALUE (e.g. head_tail=tail), got {v!r}")
        return v


@reranker("fair")
class Fair(Reranker):
    """FA*IR re-ranking (Zehlike et al. 2017).

    Every prefix of the top k holds at least the binomial minimum of protected items.
    """

    Params = FairParams
    sweep = "p"
    sweep_values = (0.1, 0.3, 0.5, 0.7, 0.9)
    target = "protected_share"
    params: FairParams

    def _protected(self, batch: ListBatch) -> np.ndarray:
        column, _, value = self.params.protected.partition("=")
        mapping = batch.item_groups(column.strip())
        values = sorted(set(mapping.values()))
        if len(values) < 2:
            raise ValueError(f"group column {column.strip()!r} has only one value "
                             f"({values[0] if values else 'none'!r}): nothing to re-balance")
        if value.strip() not in values:
            raise ValueError(f"group column {column.strip()!r} has no value "
                             f"{value.strip()!r}; values: {', '.join(values[:10])}")
        return batch.groups(column.strip()) == value.strip()

    def rerank(self, batch: ListBatch, k: int) -> list[list[str]]:
        """Re-rank every list with :func:`fair_rerank` (protected = the chosen group)."""
        order = fair_rerank(self._protected(batch) & batch.valid, k, self.params.p,
                            self.params.alpha, adjust=self.params.adjust, valid=batch.valid)
        return batch.lists(order)

    def target_values(self, batch: ListBatch, k: int) -> np.ndarray:
        """Return each list's protected share of its top ``k`` (``protected_share_at_k``)."""
        from ..metrics.mitigation import protected_share_at_k

        return protected_share_at_k(self._protected(batch), batch.valid, k)
