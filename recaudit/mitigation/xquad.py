"""xQuAD re-ranking for popularity bias (METRICS.md section 7).

Source: H. Abdollahpouri, R. Burke and B. Mobasher, "Managing popularity bias in recommender
systems with personalized re-ranking", FLAIRS-32, 2019 (arXiv 1901.07555), eq. 4, which adapts
xQuAD (Santos, Macdonald and Ounis, WWW 2010) to the two item categories head and tail.

The greedy step adds to the selected list ``S`` the candidate ``v`` maximising

    (1 - lam) * P(v|u) + lam * sum_{c in {head, tail}} P(c|u) * P(v|c) * U(c, S)

with ``P(v|c) = 1`` if ``v`` belongs to ``c`` and ``0`` otherwise, ``P(tail|u)`` the user's
share of long-tail items in the profile, ``P(head|u) = 1 - P(tail|u)``, and the *uncovered
weight* ``U(c, S)`` (the paper's ``prod_{i in S} (1 - P(i|c, S))``):

* ``variant="binary"``: ``P(i|c, S) = 1`` if ``i`` is in ``c``, so ``U(c, S) = 1`` while ``S``
  holds no item of ``c`` and ``0`` from the first one on (the original xQuAD coverage);
* ``variant="smooth"``: the paper defines ``P(i|c, S)`` as "the ratio of items in list S that
  covers category c". We implement it as METRICS.md fixes it, the *uncovered share*
  ``U(c, S) = 1 - |S ∩ c| / |S|`` (``U = 1`` for the empty list). Taking the paper's product
  literally, with that ratio as a constant factor for every ``i in S``, would give
  ``(1 - |S ∩ c| / |S|) ** |S|`` instead; we do not use that reading.

With two categories the smooth bonus difference between a tail and a head candidate is
``P(tail|u) - |S ∩ tail| / |S|`` for non-empty ``S``: at ``lam = 1`` the list's tail share tracks
the user's tail preference (within one item of ``P(tail|u) * k``).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from .registry import ListBatch, Reranker, RerankerParams, reranker, valid_mask

__all__ = ["xquad_rerank"]

_VARIANTS = ("binary", "smooth")


def _check_k_lam(k: int, lam: float, n: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer, got {k!r}")
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, n_candidates={n}], got {k}")
    if not np.isfinite(lam) or not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam!r}")


def xquad_rerank(
    relevance: np.ndarray,
    tail: np.ndarray,
    k: int,
    lam: float,
    *,
    variant: str = "binary",
    tail_preference: np.ndarray | float | None = None,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Re-rank ``L`` candidate lists with popularity xQuAD (Abdollahpouri et al. 2019, eq. 4).

    Parameters
    ----------
    relevance
        ``(L, n)`` non-negative scores ``P(v|u)``, position 0 the best-ranked candidate (rank-based
        scores such as ``n - position`` are fine). Each list is divided by its largest valid
        score so that ``P(v|u)`` lies in ``[0, 1]`` with the best candidate at 1 (a list whose
        valid scores are all 0 stays 0); this keeps ``lam`` on the same scale as the bonus,
        whose terms lie in ``[0, 1]``.
    tail
        ``(L, n)`` bool, true where the candidate is a long-tail item (category ``tail``),
        false for the short head.
    k
        Length of the output lists, ``0 <= k <= n``.
    lam
        Trade-off ``lam`` in ``[0, 1]``: 0 ranks by relevance alone (stable: ties keep the
        earlier position, so a list whose relevance does not increase with position comes back
        in input order), 1 by the category bonus alone.
    variant
        ``"binary"`` (``U(c, S) = 1`` until ``S`` holds one item of ``c``, then 0) or
        ``"smooth"`` (``U(c, S) = 1 - |S ∩ c| / |S|``, 1 for empty ``S``); see the module
        docstring.
    tail_preference
        ``P(tail|u)``: the user's share of long-tail items in the profile, scalar or ``(L,)``,
        in ``[0, 1]``; ``P(head|u) = 1 - P(tail|u)``. ``None`` means 0.5 (no preference).
    valid
        ``(L, n)`` bool mask of real candidates (default all true); others are never chosen.

    Returns
    -------
    numpy.ndarray
        ``(L, k)`` int indices into the candidate axis in selection order, ``-1`` where a list
        has fewer than ``k`` valid candidates.

    Notes
    -----
    Greedy, one position at a time, vectorised over lists. The score of candidate ``v`` is
    ``(1 - lam) * P(v|u) + lam * P(c_v|u) * U(c_v, S)`` (only ``v``'s own category contributes,
    ``P(v|c) = 0`` otherwise); equal scores go to the earlier position.
    """
    rel = np.asarray(relevance, dtype=float)
    if rel.ndim != 2:
        raise ValueError(f"relevance must be 2-D (L, n), got shape {rel.shape}")
    n_lists, n = rel.shape
    mask = valid_mask(valid, rel.shape, "relevance")
    _check_k_lam(k, lam, n)
    if variant not in _VARIANTS:
        raise ValueError(f"variant must be one of {_VARIANTS}, got {variant!r}")
    is_tail = np.asarray(tail)
    if is_tail.shape != rel.shape:
        raise ValueError(f"tail has shape {is_tail.shape}, expected {rel.shape} (like relevance)")
    if is_tail.dtype != bool:
        if not np.isin(is_tail, (0, 1)).all():
            raise ValueError("tail must be a boolean (or 0/1) long-tail flag per candidate")
        is_tail = is_tail.astype(bool)
    rel_v = np.where(mask, rel, 0.0)
    if not np.isfinite(rel_v).all() or (rel_v < 0).any():
        raise ValueError("relevance must be finite and non-negative on valid candidates")

    if tail_preference is None:
        p_tail = np.full(n_lists, 0.5)
    else:
        pref = np.asarray(tail_preference, dtype=float)
        if pref.ndim == 0:
            p_tail = np.full(n_lists, float(pref))
        elif pref.shape == (n_lists,):
            p_tail = pref.copy()
        else:
            raise ValueError(
                f"tail_preference must be a scalar or shape ({n_lists},), got {pref.shape}"
            )
        if not np.isfinite(p_tail).all() or (p_tail < 0).any() or (p_tail > 1).any():
            raise ValueError("tail_preference must lie in [0, 1]")
    p_head = 1.0 - p_tail

    top = rel_v.max(axis=1, initial=0.0)
    safe_top = np.where(top > 0, top, 1.0)
    p_v = np.where(top[:, None] > 0, rel_v / safe_top[:, None], 0.0)

    out = np.full((n_lists, k), -1, dtype=np.int64)
    available = mask.copy()
    n_sel = np.zeros(n_lists)
    n_tail = np.zeros(n_lists)
    for pos in range(k):
        if variant == "binary":
            unc_tail = (n_tail == 0).astype(float)
            unc_head = ((n_sel - n_tail) == 0).astype(float)
        else:
            denom = np.where(n_sel > 0, n_sel, 1.0)
            unc_tail = np.where(n_sel > 0, 1.0 - n_tail / denom, 1.0)
            unc_head = np.where(n_sel > 0, 1.0 - (n_sel - n_tail) / denom, 1.0)
        bonus = np.where(is_tail, (p_tail * unc_tail)[:, None], (p_head * unc_head)[:, None])
        score = (1.0 - lam) * p_v + lam * bonus
        score = np.where(available, score, -np.inf)
        pick = np.argmax(score, axis=1)
        rows = np.flatnonzero(available.any(axis=1))
        if rows.size == 0:
            break
        chosen = pick[rows]
        out[rows, pos] = chosen
        available[rows, chosen] = False
        n_sel[rows] += 1
        n_tail[rows] += is_tail[rows, chosen]
    return out


# -- registry entry ------------------------------------------------------------------------------


class XQuADParams(RerankerParams):
    lam: float = Field(0.5, ge=0.0, le=1.0, description="weight of the coverage bonus")
    variant: str = Field("binary", pattern="^(binary|smooth)$")
    head_share: float = Field(0.8, gt=0.0, lt=1.0, description="share of interactions the "
                                                                "short head holds")


@reranker("xquad")
class XQuAD(Reranker):
    """xQuAD for popularity (Abdollahpouri et al. 2019).

    Long-tail items get a coverage bonus in proportion to the user's own long-tail taste (the
    shown history's tail share; 0.5 without a history).
    """

    Params = XQuADParams
    sweep = "lam"
    sweep_values = (0.0, 0.25, 0.5, 0.75, 1.0)
    target = "aplt"
    params: XQuADParams

    def _preference(self, batch: ListBatch) -> np.ndarray:
        head, _ = batch.catalog.head_tail(self.params.head_share)
        return np.array([np.mean([i not in head for i in h]) if h else 0.5
                         for h in batch.histories()], dtype=float)

    def rerank(self, batch: ListBatch, k: int) -> list[list[str]]:
        order = xquad_rerank(batch.relevance, batch.tail(self.params.head_share), k,
                             self.params.lam, variant=self.params.variant,
                             tail_preference=self._preference(batch), valid=batch.valid)
        return batch.lists(order)

    def target_values(self, batch: ListBatch, k: int) -> np.ndarray:
        from ..metrics.mitigation import protected_share_at_k

        return protected_share_at_k(batch.tail(self.params.head_share), batch.valid, k)
