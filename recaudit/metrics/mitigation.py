"""What a mitigation reranker did to a list and what it cost (METRICS.md section 7).

Per list (the unit of every CI), the original top-k against the re-ranked top-k:

* ``rerank_jaccard``, ``rerank_rbo``: similarity of the re-ranked top k to the original top k
  (:func:`recaudit.metrics.similarity.jaccard`, :func:`~recaudit.metrics.similarity.rbo`);
* ``utility_cost``: original minus mitigated NDCG@k / HR@k against held-out items (positive =
  utility lost), with a paired CI;
* ``mitigation_change``: mitigated minus original value of the reranker's target measure;
* ``protected_share``: the share of the top k in the protected group (FA*IR's target);
* ``miscalibration``: Steck's C_KL of the list's category make-up against the user's.
"""

from __future__ import annotations

import numpy as np

from .specs import declare

__all__ = ["protected_share_at_k"]

declare("rerank_jaccard", "Jaccard overlap of the re-ranked top k with the original top k "
        "(1 = unchanged)", higher_is_worse=False, null=1.0, range=(0.0, 1.0))
declare("rerank_rbo", "rank-biased overlap of the re-ranked top k with the original top k "
        "(1 = unchanged)", higher_is_worse=False, null=1.0, range=(0.0, 1.0))
declare("utility_cost", "utility lost by re-ranking: original minus mitigated NDCG or HR "
        "against held-out items", higher_is_worse=True, null=0.0, range=(-1.0, 1.0))
declare("mitigation_change", "mitigated minus original value of the reranker's target measure "
        "(paired over lists)", higher_is_worse=None, null=0.0)
declare("protected_share", "share of the top k in the protected group (FA*IR's target)",
        higher_is_worse=False, range=(0.0, 1.0))
declare("miscalibration", "C_KL: KL divergence of the user's category make-up from the "
        "list's (Steck 2018; 0 = calibrated)", higher_is_worse=True, null=0.0,
        convention="alpha = 0.01 smoothing")


def protected_share_at_k(protected: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    """Return, per list, the share of its first ``min(k, n_l)`` valid entries that are protected.

    ``protected`` and ``valid`` are bool ``(L, n)``; NaN for an empty list.
    """
    p = np.asarray(protected, dtype=bool)[:, :k]
    v = np.asarray(valid, dtype=bool)[:, :k]
    n = v.sum(axis=1).astype(float)
    out = np.full(n.shape, np.nan)
    np.divide((p & v).sum(axis=1), n, out=out, where=n > 0)
    return out
