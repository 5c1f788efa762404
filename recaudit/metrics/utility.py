"""Top-k utility of a recommendation list against a user's held-out items (binary relevance).

Used by the preference-aligned fairness probe (CFaiRLLM, METRICS.md section 2), the position
bias probe (LLMRank, section 5) and to price every mitigation reranker (section 7).

Conventions: relevance is binary (an item is relevant iff it is in ``relevant``); a relevant
item repeated in the list earns credit only at its first occurrence, so no score exceeds 1.
With no relevant items the metrics are undefined and return NaN (callers report how many users
that affected rather than counting them as 0).
"""

from __future__ import annotations

from .specs import declare

import math
from collections.abc import Collection, Hashable, Sequence

__all__ = ["hit_rate_at_k", "ndcg_at_k", "recall_at_k"]


def _check_k(k: int) -> int:
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _first_hits(lst: Sequence[Hashable], relevant: set, k: int) -> list[int]:
    """0-based positions (within the top k) of the first occurrence of each relevant item."""
    seen: set = set()
    hits = []
    for pos, item in enumerate(list(lst)[:k]):
        if item in relevant and item not in seen:
            seen.add(item)
            hits.append(pos)
    return hits


def hit_rate_at_k(lst: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """HR@k: 1.0 if any of the first ``k`` entries is relevant, else 0.0 (NaN if none relevant).

    Source: standard top-k hit rate; as used by CFaiRLLM (Deldjoo & Di Noia, arXiv 2403.05668).

    Examples
    --------
    >>> hit_rate_at_k(["a", "b", "c"], {"c"}, k=2)
    0.0
    >>> hit_rate_at_k(["a", "b", "c"], {"c"}, k=3)
    1.0
    """
    k = _check_k(k)
    rel = set(relevant)
    if not rel:
        return float("nan")
    return 1.0 if _first_hits(lst, rel, k) else 0.0


declare("hr", "hit rate: share of lists with a held-out item in the top k",
        higher_is_worse=False, range=(0.0, 1.0), convention="binary relevance",
        role="selection_rate")


def ndcg_at_k(lst: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    r"""NDCG@k with binary relevance and a log2 discount.

    .. math:: DCG@k = \sum_{r=1}^{k} \frac{rel_r}{\log_2(r + 1)}, \quad
              IDCG@k = \sum_{r=1}^{\min(k, |R|)} \frac{1}{\log_2(r + 1)}, \quad
              NDCG@k = DCG@k / IDCG@k

    with 1-based rank ``r`` and ``rel_r = 1`` at the first occurrence of a relevant item.
    NaN when ``relevant`` is empty.

    Source: Järvelin & Kekäläinen, TOIS 2002; LLMRank (Hou et al., arXiv 2305.08845).

    Examples
    --------
    >>> round(ndcg_at_k(["a", "b", "c"], {"b"}, k=3), 6)  # 1 / log2(3)
    0.63093
    """
    k = _check_k(k)
    rel = set(relevant)
    if not rel:
        return float("nan")
    dcg = sum(1.0 / math.log2(pos + 2) for pos in _first_hits(lst, rel, k))
    idcg = sum(1.0 / math.log2(r + 1) for r in range(1, min(k, len(rel)) + 1))
    return dcg / idcg


declare("ndcg", "NDCG of the list against the user's held-out items",
        higher_is_worse=False, range=(0.0, 1.0), convention="binary relevance")


def recall_at_k(lst: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    r"""Recall@k = |distinct relevant items in the top k| / |relevant| (NaN if none relevant).

    Source: standard top-k recall (denominator ``|R|``, not ``min(k, |R|)``).

    Examples
    --------
    >>> recall_at_k(["a", "b", "a"], {"a", "c"}, k=3)
    0.5
    """
    k = _check_k(k)
    rel = set(relevant)
    if not rel:
        return float("nan")
    return len(_first_hits(lst, rel, k)) / len(rel)
