"""List-similarity metrics for consumer-side counterfactual fairness (METRICS.md section 1).

Every function is called ``f(S, N)`` with the list of the counterfactual (sensitive) prompt
first and the list of the neutral prompt second: SERP* and PRAG* are asymmetric. Lists are any
sequences of hashable item ids (grounded catalogue ids); duplicates are allowed and handled as
each docstring states.

The scalar functions are the reference implementations. :func:`similarity_matrix` computes the
same numbers for many pairs and every truncation ``k`` at once with numpy; the tests check the
two agree on random lists with duplicates, short, empty and disjoint lists: bit for bit for
Jaccard, both SERP* variants and PRAG* (integer numerators, one division each), to 1e-12 for RBO.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from itertools import chain

import numpy as np

from .specs import declare

__all__ = [
    "SIMILARITY_METRICS",
    "jaccard",
    "prag_star",
    "rbo",
    "serp_star",
    "similarity_matrix",
    "snsr",
    "snsv",
]

#: Names accepted by :func:`similarity_matrix` (``serp_star`` is the ``"fairllm"`` variant).
SIMILARITY_METRICS: tuple[str, ...] = (
    "jaccard",
    "serp_star",
    "serp_star_normalized",
    "prag_star",
    "rbo",
)

_SERP_VARIANTS = ("fairllm", "normalized")


def _check_p(p: float) -> float:
    p = float(p)
    if not 0.0 < p < 1.0:
        raise ValueError(f"RBO persistence p must satisfy 0 < p < 1, got {p!r}")
    return p


# --------------------------------------------------------------------------------------------
# Scalar reference implementations
# --------------------------------------------------------------------------------------------


def jaccard(S: Sequence[Hashable], N: Sequence[Hashable]) -> float:
    r"""Jaccard similarity of the item sets of two lists.

    .. math:: J(S, N) = \frac{|set(S) \cap set(N)|}{|set(S) \cup set(N)|}

    Duplicates collapse (sets). Two empty lists are identical: ``jaccard([], []) == 1.0``
    (METRICS.md: "both empty -> define as 1.0 and count it"); one empty list gives 0.

    Source: FaiRLLM, Zhang et al., RecSys 2023 (arXiv 2305.07609), "Jaccard*".

    Parameters
    ----------
    S, N : sequence of hashable
        Sensitive-prompt list and neutral-prompt list (already truncated to ``k``).

    Returns
    -------
    float
        In [0, 1].

    Examples
    --------
    >>> jaccard(["a", "b", "c"], ["b", "c", "d"])
    0.5
    >>> jaccard([], [])
    1.0
    """
    s, n = set(S), set(N)
    union = len(s | n)
    if union == 0:
        return 1.0
    return len(s & n) / union


declare("jaccard", "Jaccard overlap of the list with the neutral list (1 = same items)",
        higher_is_worse=False, range=(0.0, 1.0))


def serp_star(S: Sequence[Hashable], N: Sequence[Hashable], variant: str = "fairllm") -> float:
    r"""SERP*: rank-weighted overlap of the sensitive list with the neutral list.

    ``variant="fairllm"`` (the normaliser the FaiRLLM reference code and Table 1 use), with
    0-based positions ``p`` of ``S`` and ``c(x, N)`` the number of occurrences of ``x`` in ``N``:

    .. math:: \mathrm{SERP}^*(S, N) = \frac{\sum_{p=0}^{L_s-1} (L_s - p + 1)\, c(S_p, N)}
              {2 L_n (L_n + 1)}

    and 0 when ``L_n = 0``. For identical lists of length ``K`` its value is
    ``(K + 3) / (4 (K + 1))`` (0.273810 at ``K = 20``), not 1. It has no upper bound: the
    numerator grows with ``L_s`` and the denominator with ``L_n``, so a long sensitive list
    against a short neutral one scores above 1 (``(L_s + 1) / 4`` for ``L_n = 1`` and ``S_0``
    in ``N``); hence no range is declared.

    ``variant="normalized"`` (the formula printed in the paper, eq. 2), with 1-based ranks ``r``
    in ``S`` and ``K = L_s``:

    .. math:: \mathrm{SERP}^*_{norm}(S, N) = \frac{\sum_{r=1}^{L_s} \mathbb{1}[S_r \in N]\,
              (L_s - r + 1)}{L_s (L_s + 1) / 2}

    whose maximum is 1 for any inputs (the indicator, not the count, makes duplicates in ``N``
    harmless); 0 when either list is empty.

    Source: FaiRLLM, Zhang et al., RecSys 2023 (arXiv 2305.07609); METRICS.md section 1.

    Parameters
    ----------
    S, N : sequence of hashable
        Sensitive-prompt list and neutral-prompt list (already truncated to ``k``).
    variant : {"fairllm", "normalized"}
        Which normaliser; reports must say which one produced a number.

    Returns
    -------
    float

    Examples
    --------
    >>> round(serp_star(list(range(20)), list(range(20))), 6)
    0.27381
    >>> serp_star(list(range(20)), list(range(20)), variant="normalized")
    1.0
    """
    if variant not in _SERP_VARIANTS:
        raise ValueError(f"variant must be one of {_SERP_VARIANTS}, got {variant!r}")
    S, N = list(S), list(N)
    ls, ln = len(S), len(N)
    if variant == "fairllm":
        if ln == 0:
            return 0.0
        counts = Counter(N)
        num = sum((ls - p + 1) * counts.get(x, 0) for p, x in enumerate(S))
        return num / (2 * ln * (ln + 1))
    if ls == 0 or ln == 0:
        return 0.0
    in_n = set(N)
    num = sum(ls - p for p, x in enumerate(S) if x in in_n)
    return num / (ls * (ls + 1) / 2)


declare("serp_star", "SERP*: rank-weighted overlap with the neutral list (FaiRLLM normaliser; "
        "maximum (K+3)/(4(K+1)) for two K-item lists, 0.2738 at K=20; above 1 possible when "
        "the sensitive list is the longer one)", higher_is_worse=False, range=None,
        convention="fairllm")
declare("serp_star_normalized", "SERP*: rank-weighted overlap with the neutral list, normalised "
        "to a maximum of 1", higher_is_worse=False, range=(0.0, 1.0), convention="normalized")


def prag_star(S: Sequence[Hashable], N: Sequence[Hashable]) -> float:
    r"""PRAG*: share of ordered pairs of the sensitive list whose order the neutral list keeps.

    0 if either list is empty. If ``L_s = 1``: 1 when ``S == N`` (as lists) else 0. Otherwise,
    over all index pairs ``i < j`` of ``S``:

    .. math:: \mathrm{PRAG}^*(S, N) = \frac{\sum_{i<j} \mathbb{1}[S_i \in N \wedge
              (S_j \notin N \vee pos_N(S_i) < pos_N(S_j))]}{L_s (L_s - 1) / 2}

    where ``pos_N(x)`` is the *last* index of ``x`` in ``N`` (as in the FaiRLLM reference
    code). A pair of equal items (duplicates in ``S``) never scores.

    Source: FaiRLLM, Zhang et al., RecSys 2023 (arXiv 2305.07609); METRICS.md section 1.

    Parameters
    ----------
    S, N : sequence of hashable
        Sensitive-prompt list and neutral-prompt list (already truncated to ``k``).

    Returns
    -------
    float
        In [0, 1].

    Examples
    --------
    >>> prag_star(["a", "b", "c"], ["a", "b", "c"])
    1.0
    >>> prag_star(["a", "b", "c"], ["c", "b", "a"])
    0.0
    """
    S, N = list(S), list(N)
    ls, ln = len(S), len(N)
    if ls == 0 or ln == 0:
        return 0.0
    if ls == 1:
        return 1.0 if S == N else 0.0
    last = {x: j for j, x in enumerate(N)}
    # rank key: last position in N, or +inf when absent. Pair (i, j) scores iff key_i < key_j:
    # key_i finite (S_i in N) and either key_j infinite (S_j not in N) or pos_i < pos_j.
    key = [last.get(x, math.inf) for x in S]
    hits = sum(1 for i in range(ls - 1) for j in range(i + 1, ls) if key[i] < key[j])
    return hits / (ls * (ls - 1) / 2)


declare("prag_star", "PRAG*: share of item pairs kept in the same order as the neutral list",
        higher_is_worse=False, range=(0.0, 1.0))


def rbo(S: Sequence[Hashable], N: Sequence[Hashable], p: float = 0.9) -> float:
    r"""Extrapolated rank-biased overlap for lists of unequal length (RBO_ext).

    Webber, Moffat & Zobel, "A similarity measure for indefinite rankings", ACM TOIS 2010,
    eq. 32. Let ``L`` be the longer list (length ``l``), ``T`` the shorter (length ``s``),
    ``X_d`` the overlap of the depth-``d`` prefixes (for ``d > s`` the whole short list):

    .. math:: \mathrm{RBO}_{ext} = \frac{1-p}{p} \Big( \sum_{d=1}^{l} \frac{X_d}{d} p^d
              + \sum_{d=s+1}^{l} \frac{X_s (d-s)}{s\, d} p^d \Big)
              + \Big( \frac{X_l - X_s}{l} + \frac{X_s}{s} \Big) p^l

    With ``s = l`` it reduces to eq. 30. RBO is defined on rankings without repeats: each list
    is de-duplicated first, keeping the first occurrence of an item. Conventions for empty
    lists (not in the paper): both empty -> 1.0 (identical), exactly one empty -> 0.0.

    Parameters
    ----------
    S, N : sequence of hashable
        Sensitive-prompt list and neutral-prompt list (RBO itself is symmetric).
    p : float
        Persistence, ``0 < p < 1``; give it explicitly and report it (0.9 weights the first
        10 ranks with about 86% of the total).

    Returns
    -------
    float
        In [0, 1].

    Examples
    --------
    >>> round(rbo([1, 2, 3, 4, 5], [2, 3, 4, 1, 5], p=0.9), 6)
    0.828
    """
    p = _check_p(p)
    a = list(dict.fromkeys(S))
    b = list(dict.fromkeys(N))
    if not a and not b:
        return 1.0
    if not a or not b:
        return 0.0
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    s, l = len(short), len(long_)  # noqa: E741 - Webber et al.'s notation
    seen_short: set = set()
    seen_long: set = set()
    overlap = 0
    x = [0] * (l + 1)  # x[d] = X_d
    for d in range(1, l + 1):
        if d <= s:
            item = short[d - 1]
            seen_short.add(item)
            if item in seen_long:
                overlap += 1
        item = long_[d - 1]
        seen_long.add(item)
        if item in seen_short:
            overlap += 1
        x[d] = overlap
    x_s, x_l = x[s], x[l]
    sum1 = sum(x[d] / d * p**d for d in range(1, l + 1))
    sum2 = sum(x_s * (d - s) / (s * d) * p**d for d in range(s + 1, l + 1))
    return (1 - p) / p * (sum1 + sum2) + ((x_l - x_s) / l + x_s / s) * p**l


# --------------------------------------------------------------------------------------------
# Sensitive-attribute spread (SNSR / SNSV)
# --------------------------------------------------------------------------------------------


declare("rbo", "rank-biased overlap with the neutral list (extrapolated, explicit p)",
        higher_is_worse=False, range=(0.0, 1.0))


def _sim_values(sims: Mapping[Hashable, float] | Iterable[float]) -> np.ndarray:
    values = list(sims.values()) if isinstance(sims, Mapping) else list(sims)
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("need at least one attribute value's similarity")
    return arr


def snsr(sims: Mapping[Hashable, float] | Iterable[float]) -> float:
    r"""Sensitive-to-Neutral Similarity Range: ``max_a Sim(a) - min_a Sim(a)``.

    Source: FaiRLLM, Zhang et al., RecSys 2023 (arXiv 2305.07609); METRICS.md section 1.

    Parameters
    ----------
    sims : mapping value -> float (or a sequence of floats)
        ``Sim(a)`` for every value ``a`` of one attribute (mean similarity over instructions).

    Returns
    -------
    float

    Examples
    --------
    >>> snsr({"a boy": 0.8, "a girl": 0.6})
    0.20000000000000007
    """
    v = _sim_values(sims)
    return float(v.max() - v.min())


def snsv(sims: Mapping[Hashable, float] | Iterable[float]) -> float:
    r"""Sensitive-to-Neutral Similarity Variance: population standard deviation of ``Sim(a)``.

    .. math:: \mathrm{SNSV} = \sqrt{\frac{1}{|A|} \sum_a (Sim(a) - \overline{Sim})^2}

    A standard deviation with ``ddof=0`` despite the name (the paper's numbers are); with two
    values ``SNSV = SNSR / 2`` exactly.

    Source: FaiRLLM, Zhang et al., RecSys 2023 (arXiv 2305.07609); METRICS.md section 1.

    Examples
    --------
    >>> round(snsv({"a boy": 0.8, "a girl": 0.6}), 12)
    0.1
    """
    v = _sim_values(sims)
    return float(np.std(v, ddof=0))


# --------------------------------------------------------------------------------------------
# Vectorised batch version
# --------------------------------------------------------------------------------------------

# Pairs per chunk are chosen so that a (pairs x K x K) block has about this many elements.
_CHUNK_ELEMENTS = 1 << 19


def _encode(
    S_lists: Sequence[Sequence[Hashable]], N_lists: Sequence[Sequence[Hashable]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Factorise the items of all lists to integer ids once, and pad to one width.

    Two items get the same id iff they are the same dict key, the rule the scalar functions'
    sets and Counters apply (an item's id is the flat index of its first appearance). A
    neutral list passed for several pairs as the same object (one per instruction, repeated
    for every attribute value) is encoded once. Returns ``(S, N, ls, ln, n_row)``: the
    ``(pairs, width)`` id matrix of the sensitive lists padded with -1, the ``(distinct neutral
    lists, width)`` matrix padded with -2 (padding never matches), the lengths of each, and
    ``n_row[i]``, the row of ``N`` paired with ``S[i]``.
    """
    n = len(S_lists)
    ids = np.fromiter(map(id, N_lists), dtype=np.int64, count=n)
    _, first_pair, n_row = np.unique(ids, return_index=True, return_inverse=True)
    neutral = [N_lists[i] for i in first_pair.tolist()]
    lists = [*S_lists, *neutral]
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    width = max(int(lengths.max(initial=0)), 1)
    flat = list(chain.from_iterable(lists))
    vocab: dict[Hashable, int] = {}
    dtype = np.int32 if len(flat) < 2**31 - 2 else np.int64
    codes = np.fromiter(map(vocab.setdefault, flat, range(len(flat))), dtype=dtype,
                        count=len(flat))
    if lengths.size and int(lengths.min()) == width:  # all lists full: no padding
        mats = codes.reshape(len(lists), width)
    else:
        mats = np.full((len(lists), width), -1, dtype=dtype)
        mats[n:] = -2
        mats[np.arange(width)[None, :] < lengths[:, None]] = codes  # row-major = list order
    return mats[:n], mats[n:], lengths[:n], lengths[n:], n_row


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape), dtype=float)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _first_occurrence(mat: np.ndarray, valid: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Mask of the valid positions holding the first occurrence of their item in the row.

    ``first[c, i] = valid[c, i] and not any_{j < i} mat[c, j] == mat[c, i]`` (``lower[i, j]`` is
    ``j < i``), one broadcast comparison of every position with every earlier one.
    """
    dup = ((mat.T[:, :, None] == mat[None, :, :]) & lower.T[:, None, :]).any(axis=0)
    return valid & ~dup


def _chunk_metrics_general(
    S: np.ndarray,
    N: np.ndarray,
    ls: np.ndarray,
    ln: np.ndarray,
    kc: np.ndarray,
    metrics: Sequence[str],
    p: float,
) -> dict[str, np.ndarray]:
    r"""All requested metrics for a chunk of pairs; ``kc`` = truncations clipped to the width.

    Notation: ``E[c, i, j] = (S_i == N_j)`` (one broadcast comparison of the id matrices). A pair
    of positions ``(i, j)`` is inside the ``k x k`` prefix square iff its *entry time*
    ``t_ij = max(i, j) < k``, so every prefix sum for every ``k`` is a sum of the terms with
    entry time below ``k``: no work is repeated per ``k``. Every numerator below is an exact
    integer, and each metric is one division ``numerator / denominator`` with the scalar
    function's denominator, so the results equal the scalar functions bit for bit.

    - SERP* (FaiRLLM): :math:`\sum_{p<k} (L_s - p + 1) c_k(S_p) = (L_s + 1) T_k - P_k` with
      :math:`T_k = \sum_{t_{pj} < k} E_{pj}` and :math:`P_k = \sum_{t_{pj} < k} p\, E_{pj}`:
      one matrix product of the flattened ``E`` with the 0/1 (and ``p``-weighted) masks
      :math:`[t_{pj} < k]` of all ``k`` (float32 while the sums stay below ``2^24``: exact).
    - Item ``S_i`` is in ``N[:k]`` and in ``S[:k]`` iff :math:`e_i = \min_{j: E_{ij}} t_{ij} < k`
      (``w`` when absent); SERP* normalised is
      :math:`\sum_{e_p < k} (L_s - p) = L_s \#\{p: e_p < k\} - \sum_{e_p < k} p`.
    - Jaccard: :math:`|set(S[:k]) \cap set(N[:k])|` counts the first occurrences ``i`` in
      ``S`` with :math:`e_i < k`; :math:`|set(S[:k])|` is a prefix count of first occurrences.
    - PRAG*: with :math:`key^k_i` the last position of ``S_i`` in ``N[:k]`` (``w`` if absent;
      -1 for padding), hits are :math:`\#\{i < j < k: key^k_i < key^k_j\}`; the keys of all
      ``k`` come from one running maximum over ``j`` (or one max per ``k`` for a few ``k``).
    - RBO uses the depth at which each shared item enters the overlap ``X_d`` of the
      de-duplicated lists: :math:`\sum_d X_d p^d / d = \sum_{items} (H[l] - H[depth - 1])`.
    """
    c, w = S.shape
    pos = np.arange(w)
    small = np.int8 if w < 127 else np.int32  # positions and counts fit: cheaper arithmetic
    entry_t = np.maximum.outer(pos, pos).astype(np.int16 if w < 32000 else np.int64)
    lsk = np.minimum(ls[:, None], kc[None, :])  # (c, nk) truncated lengths
    lnk = np.minimum(ln[:, None], kc[None, :])
    valid_s = pos[None, :] < ls[:, None]
    rows = np.repeat(np.arange(c), w)
    out: dict[str, np.ndarray] = {}
    wanted = set(metrics)

    def cum_hist(row_idx, entry, weights=None):
        """[c, k] -> sum of weights of terms with entry < k (entry w = never)."""
        h = np.bincount(row_idx * (w + 1) + entry, weights=weights, minlength=c * (w + 1))
        return np.cumsum(h.reshape(c, w + 1), axis=1)[:, kc - 1]

    # eq[j, c, i] = (S_i == N_j): the N position first, so every reduction over j is an
    # elementwise operation between (c, w) slices. Padding never matches (-1 vs -2).
    eq = N.T[:, :, None] == S[None, :, :]

    if "serp_star" in wanted:
        # cnt[k - 1, c, p] = c_k(S_p), occurrences of S_p in N[:k]; then for each k
        # T_k = sum_{p<k} c_k(S_p) and P_k = sum_{p<k} p c_k(S_p), a batched product with
        # the masks [p < k] and p [p < k] (float32: sums of integers below 2^24 are exact).
        cnt = np.cumsum(eq, axis=0, dtype=small)[kc - 1]  # (nk, c, w)
        exact32 = w * w * w < 1 << 24
        ftype = np.float32 if exact32 else np.float64
        inside = pos[None, :] < kc[:, None]  # (nk, w)
        masks = np.stack([inside, inside * pos[None, :]], axis=2).astype(ftype)  # (nk, w, 2)
        sums = np.matmul(cnt.astype(ftype), masks).astype(float)  # (nk, c, 2)
        num = (lsk + 1) * sums[:, :, 0].T - sums[:, :, 1].T
        out["serp_star"] = _safe_div(num, 2.0 * lnk * (lnk + 1))

    if "prag_star" in wanted:
        ks = np.unique(kc[kc >= 2])
        jpos = pos.astype(small)[:, None, None]
        absent = np.where(eq, jpos, small(-1))  # (j, c, i): j where S_i == N_j, else -1
        last = None
        if ks.size > 2:  # last[j, c, i] = last position of S_i within N[:j+1], else -1
            last = np.maximum.accumulate(absent, axis=0)
        jj, ii = np.tril_indices(w, -1)  # pairs i < j, ordered by j: j < k <=> first k(k-1)/2
        hits = np.zeros(lsk.shape, dtype=np.int64)
        for k in ks:
            key = absent[:k].max(axis=0) if last is None else last[k - 1].copy()
            key[key < 0] = w  # absent from N[:k]: after every position
            key[~valid_s] = -1  # padding: never after anything, so its pairs never score
            npairs = k * (k - 1) // 2
            count = np.count_nonzero(key[:, ii[:npairs]] < key[:, jj[:npairs]], axis=1)
            hits[:, kc == k] = count[:, None]
        res = _safe_div(hits.astype(float), lsk * (lsk - 1) / 2.0)
        single = (lnk == 1) & eq[0, :, 0][:, None]
        res = np.where(lsk == 1, single.astype(float), res)
        res = np.where((lsk == 0) | (lnk == 0), 0.0, res)
        out["prag_star"] = res

    if wanted & {"serp_star_normalized", "jaccard", "rbo"}:
        # enter[c, i] = min over matches j of max(i, j): S_i is in S[:k] and in N[:k] iff
        # enter < k; w if never.
        enter = np.where(eq, entry_t[:, None, :], entry_t.dtype.type(w)).min(axis=0)

    if "serp_star_normalized" in wanted:
        flat_enter = enter.ravel()
        cnt = cum_hist(rows, flat_enter)  # #{p < k : S_p in N[:k]}
        psum = cum_hist(rows, flat_enter, np.tile(pos, c).astype(float))
        num = lsk * cnt - psum  # weights L_s - p
        out["serp_star_normalized"] = _safe_div(num.astype(float), lsk * (lsk + 1) / 2.0)

    if wanted & {"jaccard", "rbo"}:
        # De-duplicated lists: an item lives at its first occurrence; its rank in dedup(S) is
        # the number of first occurrences before it. dedup(S[:k]) = dedup(S)[:a(k)].
        lower = pos[:, None] > pos[None, :]
        first_s = _first_occurrence(S, valid_s, lower)
        first_n = _first_occurrence(N, pos[None, :] < ln[:, None], lower)
        cs = np.cumsum(first_s, axis=1)
        cn = np.cumsum(first_n, axis=1)
        zeros = np.zeros((c, 1), dtype=cs.dtype)
        a = np.concatenate([zeros, cs], axis=1)[:, kc]  # |dedup(S[:k])|
        b = np.concatenate([zeros, cn], axis=1)[:, kc]
        # A shared item = a first occurrence in S found in N. It is in both truncated lists
        # once k > enter.
        shared_enter = np.where(first_s, enter, w).ravel()
        x_ab = cum_hist(rows, shared_enter)  # |set(S[:k]) & set(N[:k])|

        if "jaccard" in wanted:
            union = a + b - x_ab
            out["jaccard"] = np.where(union == 0, 1.0, _safe_div(x_ab.astype(float), union))

        if "rbo" in wanted:
            first_in_n = eq.argmax(axis=0)  # first position of S_i in N (where present)
            # Depth at which a shared item enters the overlap X_d of the dedup lists.
            rank_n = np.take_along_axis(cn, first_in_n, axis=1)  # 1-based rank in dedup(N)
            depth = np.maximum(np.maximum(cs, rank_n), 1)  # 1-based: X_d counts it for d >= depth
            d = np.arange(w + 2)
            pw = p ** d.astype(float)
            wd = np.zeros(w + 2)
            wd[1:] = pw[1:] / d[1:]
            hp = np.cumsum(wd)  # H[x] = sum_{d<=x} p^d / d
            gp = np.cumsum(np.concatenate([[0.0], pw[1:]]))  # G[x] = sum_{d<=x} p^d
            s_len = np.minimum(a, b)
            l_len = np.maximum(a, b)
            # sum_{d=1}^{l} X_d p^d / d = sum over shared items of H[l] - H[depth - 1].
            sum1 = x_ab * hp[l_len] - cum_hist(rows, shared_enter, hp[depth - 1].ravel())
            # X_s: shared items present at k whose depth is within the shorter list.
            present = shared_enter.reshape(c, w)[:, :, None] < kc[None, None, :]
            x_s = np.count_nonzero(present & (depth[:, :, None] <= s_len[:, None, :]), axis=1)
            inv_s = _safe_div(np.ones(s_len.shape), s_len.astype(float))
            inv_l = _safe_div(np.ones(l_len.shape), l_len.astype(float))
            # sum_{d=s+1}^{l} X_s (d - s) / (s d) p^d = X_s [(G[l] - G[s]) / s - (H[l] - H[s])]
            sum2 = x_s * ((gp[l_len] - gp[s_len]) * inv_s - (hp[l_len] - hp[s_len]))
            tail = ((x_ab - x_s) * inv_l + x_s * inv_s) * pw[l_len]
            val = (1 - p) / p * (sum1 + sum2) + tail
            val = np.where(s_len == 0, 0.0, val)
            val = np.where(l_len == 0, 1.0, val)
            out["rbo"] = val
    return out


#: Widest list the bitmask kernel handles: position masks are built as float64 sums of
#: powers of two, exact below 2**53.
_BITMASK_WIDTH = 52
#: Metrics the bitmask kernel computes; the others always take the general kernel.
_BITMASK_METRICS = frozenset({"jaccard", "serp_star", "prag_star"})


def _bitmasks(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``M[c, i] = sum_j 2**j [A[c, i] == B[c, j]]``: where ``A_i`` occurs in ``B``, as bits.

    One broadcast comparison and one matrix product with the powers of two (float32 while the
    sums stay below 2**24, else float64: both exact), returned as uint64.
    """
    w = B.shape[1]
    ftype = np.float32 if w <= 24 else np.float64
    pow2 = np.ldexp(1.0, np.arange(w)).astype(ftype)
    eq = (A[:, :, None] == B[:, None, :]).astype(ftype)
    return np.matmul(eq, pow2).astype(np.uint64)


def _first_occurrences(A: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mask of the valid positions holding the first occurrence of their item in the row."""
    w = A.shape[1]
    below = (np.uint64(1) << np.arange(w, dtype=np.uint64)) - np.uint64(1)  # bits j < i
    return valid & ((_bitmasks(A, A) & below) == 0)


def _chunk_metrics_bitmask(
    S: np.ndarray,
    N: np.ndarray,
    ls: np.ndarray,
    ln: np.ndarray,
    kc: np.ndarray,
    metrics: Sequence[str],
    first_n: np.ndarray,
) -> dict[str, np.ndarray]:
    r"""Jaccard, SERP* (FaiRLLM) and PRAG* for a chunk of pairs of lists at most 52 long.

    ``B[c, i]`` is the bitmask of the positions ``j`` of ``N`` holding ``S_i``
    (:func:`_bitmasks`); restricted to ``N[:k]`` it is ``B_i \& (2^k - 1)``. Everything else
    is arithmetic on these ``(pairs, K)`` words, once per distinct ``k``:

    - SERP*: :math:`c_k(S_p) = \mathrm{popcount}(B_p \& (2^k - 1))`, numerator
      :math:`\sum_{p<k} (L_s - p + 1)\, c_k(S_p)`.
    - Jaccard: the distinct items of ``N[:k]`` found in ``S[:k]`` are the first-occurrence
      positions of ``N[:k]`` among the bits of :math:`\bigvee_{i<k} B_i`, so
      :math:`|set(S[:k]) \cap set(N[:k])| = \mathrm{popcount}(\bigvee_{i<k} B_i \,\&\, F_N
      \,\&\, (2^k - 1))`; the set sizes are prefix counts of first occurrences.
    - PRAG*: :math:`pos_N(S_i)` within ``N[:k]`` is the highest set bit of
      :math:`B_i \& (2^k - 1)`; key ``w`` when absent, -1 for padding; hits are
      :math:`\#\{i < j < k: key_i < key_j\}`.

    Numerators are exact integers and each value is one division by the scalar function's
    denominator, so the results equal the scalar functions (and the general kernel) bit for
    bit.
    """
    c, w = S.shape
    pos = np.arange(w)
    lsk = np.minimum(ls[:, None], kc[None, :])  # (c, nk) truncated lengths
    lnk = np.minimum(ln[:, None], kc[None, :])
    valid_s = pos[None, :] < ls[:, None]
    wanted = set(metrics)
    B = _bitmasks(S, N)
    out = {m: np.zeros((c, kc.size)) for m in wanted}
    if "jaccard" in wanted:
        first_s = _first_occurrences(S, valid_s)
        zeros = np.zeros((c, 1), dtype=np.int64)
        a = np.concatenate([zeros, np.cumsum(first_s, axis=1)], axis=1)  # |set(S[:k])|
        b = np.concatenate([zeros, np.cumsum(first_n, axis=1)], axis=1)  # |set(N[:k])|
        f_n = (first_n.astype(np.uint64) << pos.astype(np.uint64)).sum(axis=1, dtype=np.uint64)
        seen = np.bitwise_or.accumulate(B, axis=1)  # seen[:, k - 1] = OR_{i<k} B_i
    jj, ii = np.tril_indices(w, -1)  # pairs i < j, ordered by j
    for k in np.unique(kc).tolist():
        cols = kc == k
        bk = B[:, :k] & np.uint64((1 << k) - 1)
        if "serp_star" in wanted:
            cnt = np.bitwise_count(bk).astype(np.int64)  # c_k(S_p), p < k
            num = (lsk[:, cols] + 1) * cnt.sum(axis=1)[:, None] - (cnt @ pos[:k])[:, None]
            out["serp_star"][:, cols] = _safe_div(num.astype(float),
                                                  2.0 * lnk[:, cols] * (lnk[:, cols] + 1))
        if "jaccard" in wanted:
            x = np.bitwise_count(seen[:, k - 1] & f_n & np.uint64((1 << k) - 1))
            x = x.astype(np.int64)[:, None]
            union = a[:, [k]] + b[:, [k]] - x
            out["jaccard"][:, cols] = np.where(union == 0, 1.0,
                                               _safe_div(x.astype(float), union))
        if "prag_star" in wanted and k >= 2:
            key = np.frexp(bk.astype(float))[1] - 1  # highest set bit; -1 when absent
            key[bk == 0] = w  # absent from N[:k]: after every position
            key[~valid_s[:, :k]] = -1  # padding: never after anything, so its pairs never score
            key = key.astype(np.int8 if w < 127 else np.int16)
            npairs = k * (k - 1) // 2  # pairs i < j < k: the first npairs of (ii, jj)
            hits = np.count_nonzero(key[:, ii[:npairs]] < key[:, jj[:npairs]], axis=1)
            out["prag_star"][:, cols] = _safe_div(hits.astype(float)[:, None],
                                                  lsk[:, cols] * (lsk[:, cols] - 1) / 2.0)
    if "prag_star" in wanted:
        res = out["prag_star"]
        single = (lnk == 1) & ((B[:, 0] & np.uint64(1)) != 0)[:, None]
        res = np.where(lsk == 1, single.astype(float), res)
        out["prag_star"] = np.where((lsk == 0) | (lnk == 0), 0.0, res)
    return out


def similarity_matrix(
    S_lists: Sequence[Sequence[Hashable]],
    N_lists: Sequence[Sequence[Hashable]],
    k_values: Iterable[int] | None = None,
    metrics: Sequence[str] = SIMILARITY_METRICS,
    *,
    p: float = 0.9,
) -> dict[str, np.ndarray]:
    r"""Every similarity metric for every pair and every truncation ``k``, vectorised.

    Entry ``[i, j]`` of ``result[m]`` equals the scalar reference
    ``m(S_lists[i][:k], N_lists[i][:k])`` with ``k = k_values[j]``: ``"jaccard"``
    (:func:`jaccard`), ``"serp_star"`` (:func:`serp_star` with ``variant="fairllm"``),
    ``"serp_star_normalized"`` (``variant="normalized"``), ``"prag_star"`` (:func:`prag_star`)
    and ``"rbo"`` (:func:`rbo` with the given ``p``).

    Items are factorised to integer ids once for the whole table (a neutral list passed as
    the same object for several pairs is encoded once). For lists of at most 52 items Jaccard,
    SERP* and PRAG* come from per-position bitmasks of where each item of ``S`` occurs in
    ``N`` (:func:`_chunk_metrics_bitmask`: one ``pairs x K x K`` comparison, then word
    arithmetic per distinct ``k``); the other metrics, and longer lists, read all truncations
    off entry-time histograms of the item-equality matrix (:func:`_chunk_metrics_general`).
    Pairs are processed in chunks to bound memory.

    Parameters
    ----------
    S_lists, N_lists : sequence of sequences of hashable
        Sensitive-prompt lists and, aligned with them, neutral-prompt lists. A neutral list is
        usually repeated once per attribute value.
    k_values : iterable of int, optional
        Truncations, each >= 1; default ``1..K`` with ``K`` the longest list. A ``k`` beyond a
        list's length uses the whole list.
    metrics : sequence of str
        Subset of :data:`SIMILARITY_METRICS`.
    p : float
        RBO persistence (keyword only; pass it explicitly and report it).

    Returns
    -------
    dict of str to ndarray
        Each of shape ``(n_pairs, len(k_values))``, float64.

    Examples
    --------
    >>> out = similarity_matrix([["a", "b"]], [["b", "a"]], k_values=[1, 2], p=0.9)
    >>> out["jaccard"].tolist()
    [[0.0, 1.0]]
    """
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in SIMILARITY_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {SIMILARITY_METRICS}")
    p = _check_p(p)
    S_lists = S_lists if isinstance(S_lists, (list, tuple)) else list(S_lists)
    N_lists = N_lists if isinstance(N_lists, (list, tuple)) else list(N_lists)
    if not set(map(type, S_lists)) <= {list, tuple}:
        S_lists = [x if isinstance(x, (list, tuple)) else list(x) for x in S_lists]
    if not set(map(type, N_lists)) <= {list, tuple}:
        N_lists = [x if isinstance(x, (list, tuple)) else list(x) for x in N_lists]
    if len(S_lists) != len(N_lists):
        raise ValueError(
            f"S_lists and N_lists must be aligned: {len(S_lists)} != {len(N_lists)} lists"
        )
    n = len(S_lists)
    if k_values is None:
        longest = max((len(x) for x in chain(S_lists, N_lists)), default=0)
        kv = np.arange(1, max(longest, 1) + 1, dtype=np.int64)
    else:
        kv = np.asarray(list(k_values), dtype=np.int64).reshape(-1)
        if kv.size and kv.min() < 1:
            raise ValueError("k_values must all be >= 1")
    out = {m: np.zeros((n, kv.size), dtype=float) for m in metrics}
    if n == 0 or kv.size == 0 or not metrics:
        return out
    S, N_rows, ls, ln_rows, n_row = _encode(S_lists, N_lists)
    w = S.shape[1]
    kc = np.minimum(kv, w)
    bitmask = [m for m in metrics if m in _BITMASK_METRICS] if w <= _BITMASK_WIDTH else []
    general = [m for m in metrics if m not in bitmask]
    chunk = max(1, _CHUNK_ELEMENTS // (w * max(w, kv.size)))
    if "jaccard" in bitmask:  # first occurrences of each distinct neutral list, once
        valid_n = np.arange(w)[None, :] < ln_rows[:, None]
        first_rows = np.concatenate(
            [_first_occurrences(N_rows[i : i + chunk], valid_n[i : i + chunk])
             for i in range(0, len(N_rows), chunk)])
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        rows = n_row[sl]
        N, ln = N_rows[rows], ln_rows[rows]
        part = {}
        if bitmask:
            first_n = first_rows[rows] if "jaccard" in bitmask else None
            part.update(_chunk_metrics_bitmask(S[sl], N, ls[sl], ln, kc, bitmask, first_n))
        if general:
            part.update(_chunk_metrics_general(S[sl], N, ls[sl], ln, kc, general, p))
        for m in metrics:
            out[m][sl] = part[m]
    return out
