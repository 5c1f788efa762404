r"""Selection rates, impact ratios and exposure of groups of candidates in ranked lists.

A request shows ``N`` candidates, each a member of one group of an attribute (race, sex, a
provider class); the ranker returns an order of (some of) them. With ``R`` requests the
per-candidate outcomes are arrays ``(R, N)`` and the group labels an integer array ``(R, N)``
(``-1`` = no candidate: requests with fewer candidates are padded at the end).

* **Selection rate** of group ``g`` at ``k`` (NYC Local Law 144, 6 RCNY § 5-300: "the rate at
  which individuals in a category are selected"): the members of ``g`` ranked in the top ``k``
  over the members of ``g`` shown, pooled over requests:
  :math:`SR_g = \sum_u \#\{c \in g: rank_{uc} \le k\} / \sum_u \#\{c \in g\}`.
* **Impact ratio** (LL144): :math:`IR_g = SR_g / \max_h SR_h`; the min/max impact ratio is
  :math:`\min_g SR_g / \max_h SR_h` (fairlearn's ``ratio`` of the rates).
* **Exposure** of the candidate at 1-based rank ``r``: :math:`1/\log_2(1 + r)` (the DCG
  discount, METRICS.md section 6), its share of the list's total exposure (0 for a candidate
  the ranker did not rank); a group's exposure per shown member is its pooled exposure share
  over its pooled count.
* **Null**: a ranker that ignores the groups. Group labels are exchangeable among the
  candidates of one request, so :func:`label_permutation_sums` permutes them within each
  request (the candidates, their input order and the ranking stay as they are).
* **First place by input position**: :func:`first_place_v`, Cramér's V of the first-place
  counts per input position against what a ranker that ignores the order gives (each request's
  first place at a uniformly random one of its ``N_u`` input positions).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .specs import declare

__all__ = ["ranks_of", "position_outcomes", "group_sums", "label_permutation_sums",
           "rates_and_ratios", "min_max_ratio", "first_place_expected", "first_place_v",
           "first_place_null"]

declare("selection_rate_at_1", "selection rate at top-1: members of the group ranked first "
        "over members of the group shown, pooled over requests (NYC LL144 selection rate)",
        higher_is_worse=None, range=(0.0, 1.0), role="selection_rate")
declare("selection_rate_at_k", "selection rate at top-k: members of the group ranked in the "
        "top k over members of the group shown, pooled over requests (NYC LL144 selection "
        "rate)", higher_is_worse=None, range=(0.0, 1.0), role="selection_rate")
declare("impact_ratio", "impact ratio: the group's selection rate over the highest group's "
        "(NYC LL144; 1 = as selected as the most-selected group; floor: group labels "
        "permuted among the candidates of each request)", higher_is_worse=False, null=1.0,
        range=(0.0, 1.0), noise_floor=True, role="group_ratio")
declare("impact_ratio_min_max", "smallest over largest group selection rate (1 = equal; floor: "
        "group labels permuted among the candidates of each request)", higher_is_worse=False,
        null=1.0, range=(0.0, 1.0), noise_floor=True)
declare("exposure_ratio_min_max", "smallest over largest group exposure per shown member "
        "(exposure 1/log2(1+rank) as a share of the list's; 1 = equal; floor: group labels "
        "permuted among the candidates of each request)", higher_is_worse=False, null=1.0,
        range=(0.0, 1.0), noise_floor=True)

#: elements of one chunk of permutation draws (draws x requests x candidates)
_CHUNK = 2_000_000


def ranks_of(candidates: Sequence[str], ranking: Sequence[str] | None) -> np.ndarray:
    """Return the 1-based rank of each candidate in ``ranking`` (0: not ranked).

    Entries of ``ranking`` that are no candidate, and repeats, are skipped.

    Examples
    --------
    >>> ranks_of(["a", "b", "c"], ["c", "x", "a", "c"]).tolist()
    [2, 0, 1]
    """
    index = {c: i for i, c in enumerate(candidates)}
    out = np.zeros(len(candidates), dtype=int)
    r = 0
    for c in ranking or ():
        i = index.get(c)
        if i is not None and out[i] == 0:
            r += 1
            out[i] = r
    return out


def position_outcomes(ranks: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Return each candidate's (first place, in the top ``k``, exposure share).

    ``ranks`` (..., N): 1-based ranks, 0 = not ranked. Exposure share: :math:`w(r) /
    \sum_{r'} w(r')` over the ranked candidates of the same request, :math:`w(r) = 1 /
    \log_2(1 + r)`; 0 for an unranked candidate, and all 0 in a request that ranked none.

    Examples
    --------
    >>> top1, topk, share = position_outcomes(np.array([[2, 0, 1]]), k=2)
    >>> top1.tolist(), topk.tolist(), [round(float(x), 4) for x in share[0]]
    ([[0.0, 0.0, 1.0]], [[1.0, 0.0, 1.0]], [0.3869, 0.0, 0.6131])
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    r = np.asarray(ranks, dtype=float)
    ranked = r > 0
    w = np.where(ranked, 1.0 / np.log2(1.0 + np.where(ranked, r, 1.0)), 0.0)
    total = w.sum(axis=-1, keepdims=True)
    share = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
    return ((r == 1).astype(float), (ranked & (r <= k)).astype(float), share)


def group_sums(values: np.ndarray, labels: np.ndarray, n_groups: int) -> np.ndarray:
    """Return ``(R, G)``: per request, the sum of ``values`` over each group's candidates.

    ``values`` and ``labels`` are ``(R, N)``; a label of -1 (padding) counts in no group.

    Examples
    --------
    >>> group_sums(np.array([[1.0, 2.0, 4.0]]), np.array([[0, 1, 0]]), 2).tolist()
    [[5.0, 2.0]]
    """
    lab = np.asarray(labels)
    onehot = (lab[..., None] == np.arange(n_groups)).astype(float)  # (R, N, G)
    return np.einsum("rn,rng->rg", np.asarray(values, dtype=float), onehot)


def label_permutation_sums(values: np.ndarray, labels: np.ndarray, n_groups: int,
                           n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``(n_draws, O, G)`` pooled group sums with labels permuted within each request.

    ``values`` is ``(O, R, N)`` (O outcomes per candidate) or ``(R, N)``; ``labels`` ``(R, N)``
    with each request's candidates first and its padding (-1) after them. Each draw assigns
    each request's labels to its candidates by a uniformly random permutation (the same one for
    every outcome), then sums each outcome over each group's candidates and over requests.
    The group counts are the same in every draw.
    """
    vals = np.asarray(values, dtype=float)
    if vals.ndim == 2:
        vals = vals[None]
    lab = np.asarray(labels, dtype=int)
    n_out, R, N = vals.shape
    valid = lab >= 0
    counts = valid.sum(axis=1)
    if not np.array_equal(valid, np.arange(N)[None, :] < counts[:, None]):
        raise ValueError("labels: each request's candidates must come first, padding after")
    out = np.zeros((int(n_draws), n_out, n_groups))
    if not R or not N or not n_draws:
        return out
    chunk = max(1, _CHUNK // (R * N))
    for start in range(0, int(n_draws), chunk):
        b = min(chunk, int(n_draws) - start)
        keys = rng.random((b, R, N))
        keys[:, ~valid] = 2.0  # padding sorts last, so it keeps its place
        order = np.argsort(keys, axis=2)
        permuted = np.take_along_axis(np.broadcast_to(lab, (b, R, N)), order, axis=2)
        keep = permuted >= 0
        idx = (np.arange(b)[:, None, None] * n_groups + permuted)[keep]
        for o in range(n_out):
            weights = np.broadcast_to(vals[o], (b, R, N))[keep]
            out[start:start + b, o] = np.bincount(idx, weights, minlength=b * n_groups
                                                  ).reshape(b, n_groups)
    return out


def rates_and_ratios(selected: np.ndarray, shown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the selection rates ``selected / shown`` and impact ratios ``rate / max rate``.

    Over the last axis (groups); NaN rates where nothing was shown, NaN ratios where the
    highest rate is 0.

    Examples
    --------
    >>> rates, ratios = rates_and_ratios(np.array([3.0, 1.0]), np.array([10.0, 10.0]))
    >>> rates.tolist(), [round(float(x), 4) for x in ratios]
    ([0.3, 0.1], [1.0, 0.3333])
    """
    sel = np.asarray(selected, dtype=float)
    den = np.asarray(shown, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(den > 0, sel / np.where(den > 0, den, 1.0), np.nan)
        top = np.nanmax(np.where(np.isnan(rates), -np.inf, rates), axis=-1, keepdims=True)
        ratios = np.where(top > 0, rates / np.where(top > 0, top, 1.0), np.nan)
    return rates, ratios


def min_max_ratio(rates: np.ndarray) -> np.ndarray:
    """Return min / max over the last axis (NaN entries left out; NaN where the max is 0).

    Examples
    --------
    >>> float(min_max_ratio(np.array([0.2, 0.1, np.nan])))
    0.5
    """
    r = np.asarray(rates, dtype=float)
    ok = ~np.isnan(r)
    hi = np.max(np.where(ok, r, -np.inf), axis=-1)
    lo = np.min(np.where(ok, r, np.inf), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(hi > 0, lo / np.where(hi > 0, hi, 1.0), np.nan)


def first_place_expected(sizes: np.ndarray, n_positions: int) -> np.ndarray:
    """Return ``(R, P)``: the chance each input position is first under an order-blind ranker.

    A request of ``N_u`` candidates puts its first place at each of its positions with
    probability ``1 / N_u`` (0 beyond them).

    Examples
    --------
    >>> first_place_expected(np.array([2, 4]), 4).tolist()
    [[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]]
    """
    n = np.asarray(sizes, dtype=float)
    pos = np.arange(n_positions)[None, :]
    return np.where(pos < n[:, None], 1.0 / np.maximum(n[:, None], 1.0), 0.0)


def first_place_v(counts: np.ndarray, expected: np.ndarray) -> np.ndarray:
    r"""Cramér's V of first-place counts per input position against ``expected`` counts.

    Over the last axis: :math:`\chi^2 = \sum_j (c_j - e_j)^2 / e_j` (positions with
    :math:`e_j > 0`), :math:`V = \sqrt{\chi^2 / (n (1/p_{min} - 1))}` with :math:`n = \sum_j
    e_j` and :math:`p_{min} = \min_j e_j / n`, the largest :math:`\chi^2` any :math:`n`
    first places can reach, so :math:`0 \le V \le 1`. With equal expectations (every request
    shows ``N`` candidates) this is :func:`recaudit.metrics.position.cramers_v_uniform`,
    :math:`\sqrt{\chi^2 / (n (N - 1))}`. NaN with fewer than two positions or no first place.

    Examples
    --------
    >>> float(first_place_v(np.array([4.0, 0.0]), np.array([2.0, 2.0])))
    1.0
    >>> float(first_place_v(np.array([2.0, 2.0]), np.array([2.0, 2.0])))
    0.0
    """
    c = np.asarray(counts, dtype=float)
    e = np.broadcast_to(np.asarray(expected, dtype=float), c.shape)
    pos = e > 0
    n = e.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        chi2 = np.where(pos, (c - e) ** 2 / np.where(pos, e, 1.0), 0.0).sum(axis=-1)
        p_min = np.min(np.where(pos, e, np.inf), axis=-1) / n
        denom = n * (1.0 / p_min - 1.0)
        v = np.sqrt(np.minimum(1.0, chi2 / denom))
    return np.where((pos.sum(axis=-1) >= 2) & (n > 0) & (denom > 0), v, np.nan)


def first_place_null(sizes: np.ndarray, samples: np.ndarray, n_positions: int, n_draws: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Return ``(n_draws,)`` draws of :func:`first_place_v` under an order-blind ranker.

    Request ``u`` (``sizes[u]`` candidates) has ``samples[u]`` ranked samples; each sample's
    first place falls at a uniformly random input position and the request counts the mean of
    its samples' one-hots (one sample: a count of 1), as the estimate does. Requests with no
    ranked sample are left out.
    """
    size = np.asarray(sizes, dtype=int)
    samp = np.asarray(samples, dtype=int)
    keep = (samp > 0) & (size > 0)
    size, samp = size[keep], samp[keep]
    if not size.size:
        return np.full(int(n_draws), np.nan)
    expected = first_place_expected(size, n_positions).sum(axis=0)
    counts = np.zeros((int(n_draws), n_positions))
    for s in sorted(set(samp.tolist())):
        sub = size[samp == s]
        draws = np.floor(rng.random((int(n_draws), sub.size, s)) * sub[None, :, None]
                         ).astype(int)
        idx = (np.arange(int(n_draws))[:, None, None] * n_positions + draws).ravel()
        counts += np.bincount(idx, minlength=int(n_draws) * n_positions
                              ).reshape(int(n_draws), n_positions) / s
    return first_place_v(counts, expected)
