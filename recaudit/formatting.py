"""The one number format of every sentence recaudit writes.

Findings, gate messages, compare tables and reports all format numbers here:

* :func:`fmt` -- an estimate or bound: fixed ``digits`` decimals; scientific when the value is
  not zero but would round to zero; ``n/a`` for None, NaN and infinities.
* :func:`fmt_p` -- a p-value: three decimals, ``<0.001`` below that.
* :func:`fmt_ci` -- an interval ``[lo, hi]`` (empty when either end is missing).

This module imports nothing from the package, so any room (probes, gates, report) may use it.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["fmt", "fmt_ci", "fmt_p", "is_number"]


def is_number(x: Any) -> bool:
    """Tell whether ``x`` is a finite int or float (a bool is not)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def fmt(x: Any, digits: int = 3) -> str:
    """Format an estimate or a bound with ``digits`` decimals (``0.213``).

    A non-zero value that would print as zero reads ``4.0e-05``; None and non-finite values read
    ``n/a``.

    Examples
    --------
    >>> fmt(0.21349), fmt(4e-05), fmt(None), fmt(float("nan")), fmt(12.5, 1)
    ('0.213', '4.0e-05', 'n/a', 'n/a', '12.5')
    """
    if not is_number(x):
        return "n/a"
    if x != 0 and abs(x) < 0.5 * 10 ** -digits:
        return f"{x:.1e}"
    return f"{x:.{digits}f}"


def fmt_p(p: Any) -> str:
    """Format a p-value: ``0.012``, ``<0.001`` below 0.001, ``n/a`` when missing.

    Examples
    --------
    >>> fmt_p(0.0123), fmt_p(0.0004), fmt_p(None)
    ('0.012', '<0.001', 'n/a')
    """
    if not is_number(p):
        return "n/a"
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}"


def fmt_ci(lo: Any, hi: Any, digits: int = 3) -> str:
    """Format an interval ``[lo, hi]`` as :func:`fmt` does; empty when either end is missing.

    Examples
    --------
    >>> fmt_ci(0.1, 0.25), fmt_ci(None, 0.25)
    ('[0.100, 0.250]', '')
    """
    if not (is_number(lo) and is_number(hi)):
        return ""
    return f"[{fmt(lo, digits)}, {fmt(hi, digits)}]"
