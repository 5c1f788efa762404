"""Calibrated recommendations (METRICS.md section 7).

Source: H. Steck, "Calibrated recommendations", RecSys 2018. With ``p(g|u)`` the user's
category distribution (from the profile) and ``p(g|i)`` each item's (genres split equally,
one-hot popularity bins, ...), the distribution of a list ``S`` is

    q(g|S) = sum_{i in S} p(g|i) / |S|

(Steck's q(g|u) with equal item weights ``w_r(i) = 1``: we do not weight by rank), smoothed as
``q~ = (1 - alpha) q + alpha p`` (Steck: ``alpha = 0.01``), and the miscalibration is

    C_KL(p, q) = KL(p || q~) = sum_g p(g|u) log(p(g|u) / q~(g|S))     (0 log 0 = 0).

The re-ranker greedily maximises ``(1 - lam) * sum_{i in S} s(i) - lam * C_KL(p, q(S))``.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from .registry import ListBatch, Reranker, RerankerParams, reranker, valid_mask

__all__ = ["calibrated_rerank", "categories_of_selection", "miscalibration"]

_SUM_TOL = 1e-6


def _check_alpha(alpha: float) -> None:
    if not np.isfinite(alpha) or not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must be in [0, 1), got {alpha!r}")


def _check_target(target: np.ndarray, n_lists: int, n_cat: int) -> np.ndarray:
    p = np.asarray(target, dtype=float)
    if p.shape == (n_cat,):
        p = np.broadcast_to(p, (n_lists, n_cat))
    elif p.shape != (n_lists, n_cat):
        raise ValueError(
            f"target must have shape ({n_cat},) or ({n_lists}, {n_cat}), got {p.shape}"
        )
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("target must be a finite, non-negative distribution over categories")
    if not np.allclose(p.sum(axis=-1), 1.0, rtol=0.0, atol=_SUM_TOL):
        raise ValueError("target must sum to 1 over categories (a distribution p(g|u))")
    return p


def _kl(p: np.ndarray, q: np.ndarray, alpha: float) -> np.ndarray:
    """Compute ``KL(p || (1 - alpha) q + alpha p)`` over the last axis.

    ``0 log 0 = 0``; inf if q~ = 0 where p > 0 (only possible with ``alpha = 0``).
    """
    q_s = (1.0 - alpha) * q + alpha * p
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / q_s), 0.0)
    return terms.sum(axis=-1)


def miscalibration(
    target: np.ndarray,
    categories_of_list: np.ndarray,
    alpha: float = 0.01,
    *,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Steck's miscalibration ``C_KL(p, q)`` of each list (RecSys 2018).

    ``C_KL = sum_g p(g|u) log(p(g|u) / q~(g|u))`` with ``q(g|u) = sum_{i in list} p(g|i) / |list|``
    (equal item weights), ``q~ = (1 - alpha) q + alpha p`` and ``0 log 0 = 0``. 0 means perfectly
    calibrated; with ``alpha > 0`` the value is at most ``-log(alpha)``.

    Parameters
    ----------
    target
        ``p(g|u)``: ``(C,)`` shared by all lists or ``(L, C)``, each row summing to 1.
    categories_of_list
        ``(L, k, C)``: ``p(g|i)`` of the items of each list (see
        :func:`categories_of_selection`).
    alpha
        Smoothing in ``[0, 1)``; ``alpha = 0`` gives ``inf`` when the list misses a category
        the user has.
    valid
        ``(L, k)`` bool, false at padding (default all true).

    Returns
    -------
    numpy.ndarray
        ``(L,)`` floats; ``nan`` for a list with no valid item (``q`` undefined).
    """
    cats = np.asarray(categories_of_list, dtype=float)
    if cats.ndim != 3:
        raise ValueError(f"categories_of_list must be 3-D (L, k, C), got shape {cats.shape}")
    n_lists, _, n_cat = cats.shape
    mask = valid_mask(valid, cats.shape[:2], "categories_of_list[..., 0]")
    _check_alpha(alpha)
    p = _check_target(target, n_lists, n_cat)
    cats = np.where(mask[..., None], cats, 0.0)
    if not np.isfinite(cats).all() or (cats < 0).any():
        raise ValueError("categories_of_list must be finite and non-negative")
    size = mask.sum(axis=1)
    q = cats.sum(axis=1) / np.where(size > 0, size, 1)[:, None]
    out = _kl(p, q, alpha)
    return np.where(size > 0, out, np.nan)


def categories_of_selection(
    item_categories: np.ndarray, selected: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gather ``p(g|i)`` of the selected items, ready for :func:`miscalibration`.

    Maps ``(L, n, C)`` categories and ``(L, k)`` indices (``-1`` = padding) to
    ``((L, k, C), valid (L, k))``.
    """
    cats = np.asarray(item_categories, dtype=float)
    sel = np.asarray(selected)
    if cats.ndim != 3 or sel.ndim != 2 or sel.shape[0] != cats.shape[0]:
        raise ValueError(
            f"expected item_categories (L, n, C) and selected (L, k), got {cats.shape} and "
            f"{sel.shape}"
        )
    ok = sel >= 0
    idx = np.where(ok, sel, 0)
    gathered = np.take_along_axis(cats, idx[..., None], axis=1)
    return np.where(ok[..., None], gathered, 0.0), ok


def calibrated_rerank(
    relevance: np.ndarray,
    item_categories: np.ndarray,
    target: np.ndarray,
    k: int,
    lam: float,
    *,
    alpha: float = 0.01,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy calibrated re-ranking (Steck, RecSys 2018) of ``L`` candidate lists.

    Each step adds the candidate ``i`` maximising the objective of the extended list,

        (1 - lam) * sum_{j in S + i} s(j) - lam * C_KL(p, q(S + i)),

    i.e. ``(1 - lam) * s(i) - lam * C_KL(p, q(S + i))`` (the relevance of ``S`` is common to all
    candidates), with ``q`` and ``C_KL`` as in :func:`miscalibration` (equal item weights).

    Parameters
    ----------
    relevance
        ``(L, n)`` finite scores ``s(i)``, used as given (no normalisation, so the scale of
        ``lam`` depends on the scale of the scores); position 0 the best-ranked candidate.
    item_categories
        ``(L, n, C)`` ``p(g|i)`` per candidate, each valid row non-negative and summing to 1.
    target
        ``p(g|u)``: ``(C,)`` or ``(L, C)``, summing to 1.
    k
        Output length, ``0 <= k <= n``.
    lam
        Trade-off in ``[0, 1]``: 0 ranks by relevance alone (ties keep the earlier position, so
        a list whose relevance does not increase with position comes back in input order),
        1 by calibration alone.
    alpha
        Smoothing of ``q`` in ``[0, 1)`` (Steck: 0.01).
    valid
        ``(L, n)`` bool mask of real candidates (default all true).

    Returns
    -------
    numpy.ndarray
        ``(L, k)`` int indices into the candidate axis in selection order, ``-1`` where a list
        has fewer than ``k`` valid candidates.

    Notes
    -----
    Greedy, as in Steck, is not an exact maximiser: at ``lam = 1`` the chosen list can be
    *worse* calibrated than the top-k by relevance (see the tests). Equal
    objectives go to the earlier position; if every remaining candidate has infinite
    miscalibration (``alpha = 0``) the most relevant one is taken.
    """
    rel = np.asarray(relevance, dtype=float)
    if rel.ndim != 2:
        raise ValueError(f"relevance must be 2-D (L, n), got shape {rel.shape}")
    n_lists, n = rel.shape
    cats = np.asarray(item_categories, dtype=float)
    if cats.ndim != 3 or cats.shape[:2] != rel.shape:
        raise ValueError(
            f"item_categories must have shape ({n_lists}, {n}, C), got {cats.shape}"
        )
    n_cat = cats.shape[2]
    mask = valid_mask(valid, rel.shape, "relevance")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer, got {k!r}")
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, n_candidates={n}], got {k}")
    if not np.isfinite(lam) or not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam!r}")
    _check_alpha(alpha)
    p = _check_target(target, n_lists, n_cat)
    rel_v = np.where(mask, rel, 0.0)
    if not np.isfinite(rel_v).all():
        raise ValueError("relevance must be finite on valid candidates")
    cats = np.where(mask[..., None], cats, 0.0)
    if not np.isfinite(cats).all() or (cats < 0).any():
        raise ValueError("item_categories must be finite and non-negative on valid candidates")
    sums = cats.sum(axis=2)
    if (np.abs(sums - 1.0) > _SUM_TOL)[mask].any():
        raise ValueError("each valid candidate's item_categories row must sum to 1 (p(g|i))")

    out = np.full((n_lists, k), -1, dtype=np.int64)
    available = mask.copy()
    acc = np.zeros((n_lists, n_cat))
    size = np.zeros(n_lists)
    for pos in range(k):
        rows = np.flatnonzero(available.any(axis=1))
        if rows.size == 0:
            break
        if lam == 0.0:
            obj = rel_v
        else:
            q_new = (acc[:, None, :] + cats) / (size + 1.0)[:, None, None]
            obj = (1.0 - lam) * rel_v - lam * _kl(p[:, None, :], q_new, alpha)
        key = np.where(available, obj, -np.inf)
        pick = np.argmax(key, axis=1)
        stuck = np.isneginf(key.max(axis=1))
        if stuck.any():
            by_rel = np.argmax(np.where(available, rel_v, -np.inf), axis=1)
            pick = np.where(stuck, by_rel, pick)
        chosen = pick[rows]
        out[rows, pos] = chosen
        available[rows, chosen] = False
        acc[rows] += cats[rows, chosen]
        size[rows] += 1
    return out


# -- registry entry ------------------------------------------------------------------------------


class CalibrationParams(RerankerParams):
    lam: float = Field(0.5, ge=0.0, le=1.0, description="weight of the calibration term")
    alpha: float = Field(0.01, ge=0.0, lt=1.0, description="smoothing of q toward p")
    categories: str = Field("genres", description="'genres' (an item's genres split "
                                                  "equally) or any item-group column")


@reranker("calibration")
class Calibration(Reranker):
    """Steck's calibrated re-ranking.

    The list's category make-up follows the user's history (the catalog's make-up for a
    request without a history).
    """

    Params = CalibrationParams
    sweep = "lam"
    sweep_values = (0.0, 0.25, 0.5, 0.75, 1.0)
    target = "miscalibration"
    params: CalibrationParams

    def _distributions(self, batch: ListBatch) -> tuple[np.ndarray, np.ndarray]:
        """(L, n, C) p(g|i) of every entry and (L, C) p(g|u) of every list's user."""
        cat = batch.catalog
        if self.params.categories == "genres":
            per_item = {str(i): list(g) or ["(none)"]
                        for i, g in zip(cat.items.index, cat.items["genres"], strict=True)}
        else:
            per_item = {i: [g] for i, g in batch.item_groups(self.params.categories).items()}
        names = sorted({g for gs in per_item.values() for g in gs} | {"unknown"})
        col = {g: c for c, g in enumerate(names)}

        def dist(items: list[str]) -> np.ndarray:
            out = np.zeros(len(names))
            for i in items:
                gs = per_item.get(str(i), ["unknown"])
                for g in gs:
                    out[col[g]] += 1.0 / len(gs)
            return out / out.sum() if out.sum() else out

        cats = np.zeros((*batch.ids.shape, len(names)))
        for li, row in enumerate(batch.ids):
            for j, item in enumerate(row):
                if batch.valid[li, j]:
                    cats[li, j] = dist([item])
        overall = dist(list(per_item))
        target = np.stack([dist(h) if h else overall for h in batch.histories()]) \
            if len(batch.queries) else np.zeros((0, len(names)))
        if len(names) < 2:
            raise ValueError(f"categories {self.params.categories!r} has only one value")
        return cats, target

    def rerank(self, batch: ListBatch, k: int) -> list[list[str]]:
        cats, target = self._distributions(batch)
        order = calibrated_rerank(batch.relevance, cats, target, k, self.params.lam,
                                  alpha=self.params.alpha, valid=batch.valid)
        return batch.lists(order)

    def target_values(self, batch: ListBatch, k: int) -> np.ndarray:
        cats, target = self._distributions(batch)
        return miscalibration(target, cats[:, :k], self.params.alpha,
                              valid=batch.valid[:, :k])
