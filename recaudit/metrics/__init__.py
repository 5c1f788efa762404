"""Metrics: pure functions on recommendation lists and arrays.

A metric knows nothing about models, prompts or reports: it takes lists of item ids (already
grounded to the catalogue and truncated to ``k``), per-unit values, or counts, and returns
numbers. Each function's docstring states its formula and the paper it comes from; the
definitions and their conventions are fixed by ``METRICS.md``. Where the literature has two
conventions both are offered under explicit names (``serp_star(variant="fairllm" |
"normalized")``, ``gini`` vs ``one_minus_gini``) so a report can say which produced a number.

Families
--------
similarity
    Consumer-side counterfactual fairness (FaiRLLM): :func:`jaccard`, :func:`serp_star`,
    :func:`prag_star`, :func:`rbo`, always called ``f(S, N)`` with the sensitive list first;
    :func:`snsr` / :func:`snsv` across attribute values; :func:`similarity_matrix` computes all
    of them for many pairs and every truncation ``k`` at once.
popularity
    Popularity bias: :func:`item_popularity`, :func:`head_tail_split`, :func:`arp`,
    :func:`aplt`, :func:`aclt`, :func:`gini`, :func:`one_minus_gini`, :func:`item_coverage`,
    :func:`pop_rsp`, :func:`pop_reo`, :func:`popularity_lift`, :func:`popularity_by_position`.
utility
    :func:`hit_rate_at_k`, :func:`ndcg_at_k`, :func:`recall_at_k` against held-out items.
exposure
    Provider fairness: :func:`exposure_weights`, :func:`group_exposure_share`,
    :func:`skew_at_k`, :func:`ndkl`.
position
    Position bias of LLM rankers: :func:`candidate_scores_from_ranking`,
    :func:`first_position_chi2`, :func:`kendall_tau_union`.
fairness
    Group gaps of per-user utility: :func:`group_gaps` (fairlearn ``MetricFrame``),
    :func:`between_group_generalized_entropy`, :func:`between_group_theil_index` (AIF360).
selection
    Groups of candidates in ranked lists (NYC LL144): selection rates, impact ratios, exposure
    per member under within-request label permutation, first place by input position.
classification
    Attribute leakage: :func:`auc_binary` (ROC AUC as the Mann-Whitney pair statistic, with
    bootstrap weights), :func:`auc_macro_ovr` (macro one-vs-rest AUC).

answers
    Shares of unusable answers: ``hallucination``, ``empty_list`` (declarations only).
specs
    Every metric's declaration (:func:`declare`, :func:`get_spec`): description, direction,
    null value, range, convention; report, gates and compare read these, never a name.
tables
    Statistics of a unit table under unit weights (:func:`table_statistic`), for compare.

Uncertainty (bootstrap CIs, permutation tests, multiple-comparison control) lives in
:mod:`recaudit.stats`.
"""

from __future__ import annotations

from recaudit.metrics import answers as _answers  # noqa: F401 - registers its declarations
from recaudit.metrics import selection as _selection  # noqa: F401 - registers its declarations
from recaudit.metrics.classification import auc_binary, auc_macro_ovr
from recaudit.metrics.specs import MetricSpec, declare, get_spec
from recaudit.metrics.tables import table_statistic
from recaudit.metrics.exposure import exposure_weights, group_exposure_share, ndkl, skew_at_k
from recaudit.metrics.fairness import (
    GroupGaps,
    between_group_generalized_entropy,
    between_group_theil_index,
    generalized_entropy_index,
    group_gaps,
)
from recaudit.metrics.mitigation import protected_share_at_k
from recaudit.metrics.popularity import (
    HeadTailSplit,
    aclt,
    aplt,
    arp,
    gini,
    head_tail_split,
    item_coverage,
    item_popularity,
    one_minus_gini,
    pop_reo,
    pop_rsp,
    popularity_by_position,
    popularity_lift,
    user_popularity_groups,
)
from recaudit.metrics.position import (
    ChiSquareResult,
    candidate_scores_from_ranking,
    first_position_chi2,
    kendall_tau_union,
)
from recaudit.metrics.similarity import (
    SIMILARITY_METRICS,
    jaccard,
    prag_star,
    rbo,
    serp_star,
    similarity_matrix,
    snsr,
    snsv,
)
from recaudit.metrics.utility import hit_rate_at_k, ndcg_at_k, recall_at_k

__all__ = [
    # similarity
    "SIMILARITY_METRICS",
    "jaccard",
    "prag_star",
    "rbo",
    "serp_star",
    "similarity_matrix",
    "snsr",
    "snsv",
    # mitigation
    "protected_share_at_k",
    # popularity
    "HeadTailSplit",
    "aclt",
    "aplt",
    "arp",
    "gini",
    "head_tail_split",
    "item_coverage",
    "item_popularity",
    "one_minus_gini",
    "pop_reo",
    "pop_rsp",
    "popularity_by_position",
    "popularity_lift",
    "user_popularity_groups",
    # utility
    "hit_rate_at_k",
    "ndcg_at_k",
    "recall_at_k",
    # exposure
    "exposure_weights",
    "group_exposure_share",
    "ndkl",
    "skew_at_k",
    # position
    "ChiSquareResult",
    "candidate_scores_from_ranking",
    "first_position_chi2",
    "kendall_tau_union",
    # fairness
    "GroupGaps",
    "between_group_generalized_entropy",
    "between_group_theil_index",
    "generalized_entropy_index",
    "group_gaps",
    # classification
    "auc_binary",
    "auc_macro_ovr",
    # declarations and tables
    "MetricSpec",
    "declare",
    "get_spec",
    "table_statistic",
]
