"""The findings sentences, in one place.

Every probe's "significant or not" title, its CI and its null-floor sentence read the same way.
Whether a record is significant, and the p-value that decides it, come from
:mod:`recaudit.verdicts` (the p-value Benjamini-Hochberg adjusted where there is one);
numbers are written by :mod:`recaudit.formatting` (the one number format).
"""

from __future__ import annotations

from typing import Any

from ..formatting import fmt, fmt_ci, fmt_p
from ..verdicts import decision_p, is_significant

__all__ = ["fmt", "ci_text", "p_text", "significant", "verdict_title", "floor_sentence",
           "control_sentence"]


def ci_text(rec: Any, digits: int = 3) -> str:
    """``"[low, high]"`` of a record's CI (:func:`~recaudit.formatting.fmt_ci`), or ``"n/a"``."""
    return fmt_ci(rec.ci_low, rec.ci_high, digits) or "n/a"


def significant(rec: Any, alpha: float) -> bool:
    """Return whether the record's deciding p-value is below ``alpha``.

    See :func:`recaudit.verdicts.is_significant`; a record without a p-value is not significant.
    """
    return bool(is_significant(rec, alpha))


def p_text(rec: Any) -> str:
    """``"p_adj = 0.012"`` (``"p = ..."`` for an unadjusted p-value; ``"p = n/a"`` without)."""
    return f"{'p_adj' if rec.p_adjusted is not None else 'p'} = {fmt_p(decision_p(rec))}"


def verdict_title(rec: Any, alpha: float, *, subject: str, effect: str, no_effect: str,
                  statistic: str) -> str:
    """Return a finding's title: the effect when the record is significant, else its absence.

    ``"<subject>: <effect> (<statistic>, p_adj = ...)"`` when the record is significant at
    ``alpha``, else ``"<subject>: <no_effect> (<statistic>, p_adj = ...)"``.
    """
    claim = effect if significant(rec, alpha) else no_effect
    return f"{subject}: {claim} ({statistic}, {p_text(rec)})"


def floor_sentence(rec: Any, noun: str, blind: str = "an attribute-blind model",
                   digits: int = 3) -> str:
    """Return the null-floor sentence: what a model without the effect scores with n units.

    The floor is the permutation null's 95th percentile (``null_p95``); ``""`` without a null.
    With repeated samples it adds whether the estimate is within ``self_floor``, what the
    model's own resampling gives (:func:`recaudit.samples.self_consistency_floor`).
    """
    if rec.null_p95 is None:
        return ""
    own = getattr(rec, "self_floor", None)
    within = "" if own is None or rec.estimate is None else (
        f" The estimate is {'within' if rec.estimate <= own else 'beyond'} what the model's own "
        f"resampling gives (up to {fmt(own, digits)}).")
    return (f" With {rec.n} {noun}, {blind} scores up to {fmt(rec.null_p95, digits)} "
            f"(95th percentile of the permutation null).{within}")


def control_sentence(diff: Any, alpha: float, *, control: str, spread: str,
                     control_estimate: float | None = None, digits: int = 3) -> str:
    """Return the matched-control sentence of a ``<spread>_vs_control`` record ``diff``.

    Significant at ``alpha`` (the attribute's spread beyond the control's): " Beyond what an
    irrelevant attribute (<control>) changes ...", else " Within what an irrelevant attribute
    (<control>) changes ...", with the control's spread, the difference, its CI and p-value.
    """
    beyond = significant(diff, alpha)
    head = "Beyond" if beyond else "Within"
    of_control = ("" if control_estimate is None
                  else f" ({spread} {fmt(control_estimate, digits)})")
    return (f" {head} what an irrelevant attribute ({control}) changes{of_control}: the "
            f"difference is {fmt(diff.estimate, digits)}, 95% CI {ci_text(diff, digits)}, "
            f"{p_text(diff)}.")
