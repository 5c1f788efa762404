"""Metric declarations: what a metric measures, which way is worse, and what "no effect" is.

Every metric declares itself next to its function with :func:`declare`; downstream rooms
(report, gates, compare) read these declarations, never a metric's name. Spread statistics over
the conditions of a unit table are derived from their base metric by :func:`spread_spec`:

========  ===========================================  ===========  ======  ==================
kind      statistic over the condition means            worse when   null    range
========  ===========================================  ===========  ======  ==================
``snsr``  max - min (FaiRLLM SNSR)                      higher       0       [0, width]
``snsv``  population std, ddof=0 (FaiRLLM SNSV)         higher       0       [0, width / 2]
``gap``   max - min over groups (fairlearn difference)  higher       0       [0, width]
``ratio`` min / max over groups (fairlearn ratio)       lower        1       [0, 1]
========  ===========================================  ===========  ======  ==================

Every spread is positive under noise alone, so each derived spec declares ``noise_floor``: its
records carry the permutation null's ``null_mean`` / ``null_p95`` (the *floor*), a
bias-corrected CI, and are what gate mode ``floor`` judges (:mod:`recaudit.gates`).

With repeated samples (``decoding.samples`` >= 2) every range / std spread (``snsr``, ``snsv``,
``gap``) also carries ``self_floor``: the 95th percentile of the same statistic under the
model's disagreement with itself alone, from a split-half, sign-flip null of the per-sample
cells (the difference of two halves of a cell's samples, rescaled to the variance of the
cell's mean: it keeps the sampling noise and cancels any attribute effect;
:func:`recaudit.samples.self_consistency_floor`). An estimate at or below it is within what
the model's own resampling gives; the report says so beside the noise floor.

``width`` is the base metric's range width. Their names are ``snsr_<m>``, ``snsv_<m>``,
``<m>_gap`` and ``<m>_ratio``; :func:`get_spec` resolves them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["MetricSpec", "declare", "get_spec", "spread_spec", "all_specs", "SPREAD_KINDS"]


@dataclass(frozen=True)
class MetricSpec:
    """The declaration of one metric.

    ``higher_is_worse``: direction (``None``: neither, e.g. a share that only describes).
    ``null``: the value of "no effect" (0 for a gap, 0.5 for an AUC, 1 for a ratio; ``None``
    where the metric is not a disparity). ``range``: the values it can take.
    ``convention``: the variant where the literature has several (``"fairllm"``, ...).
    ``role``: what a report may do with it beyond listing it: ``"answer_quality"`` (a share of
    unusable answers, listed among the limitations), ``"selection_rate"`` (a per-group rate
    that impact ratios are computed from) or ``"group_ratio"`` (a group's rate over the
    highest group's: its ``null_p05`` is the floor the impact-ratio table shows).
    ``noise_floor``: the statistic is away from ``null`` under noise alone (a spread, Cramér's
    V, an AUC's distance from 0.5, NDKL...), so its records carry the *floor*: ``null_mean``
    and ``null_p95`` (and ``null_p05``, the floor where lower is worse) of the statistic under
    the probe's own null (stated in ``description``
    or the metric's docstring), and a bias-corrected bootstrap CI
    (:func:`recaudit.stats.bias_corrected_interval`). Report, gates and compare read the floor
    through this flag, never a metric's name.
    """

    name: str
    description: str
    higher_is_worse: bool | None
    null: float | None = None
    range: tuple[float, float] | None = None
    convention: str | None = None
    role: str | None = None
    noise_floor: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the declaration as a JSON-ready dict (``range`` as a list)."""
        d = asdict(self)
        d["range"] = list(self.range) if self.range is not None else None
        return d


_SPECS: dict[str, MetricSpec] = {}

#: kind -> (name pattern, description pattern, higher_is_worse, null)
SPREAD_KINDS: dict[str, tuple[str, str, bool, float]] = {
    "snsr": ("snsr_{}", "SNSR (max - min over values) of {}", True, 0.0),
    "snsv": ("snsv_{}", "SNSV (std over values) of {}", True, 0.0),
    "gap": ("{}_gap", "largest minus smallest group mean of {}", True, 0.0),
    "ratio": ("{}_ratio", "smallest over largest group mean of {} (1 = equal)", False, 1.0),
}


def declare(name: str, description: str, *, higher_is_worse: bool | None,
            null: float | None = None, range: tuple[float, float] | None = None,
            convention: str | None = None, role: str | None = None,
            noise_floor: bool = False) -> MetricSpec:
    """Register (or replace) the declaration of metric ``name`` and return it."""
    spec = MetricSpec(name, description, higher_is_worse, null,
                      None if range is None else (float(range[0]), float(range[1])), convention,
                      role, noise_floor)
    _SPECS[name] = spec
    return spec


def _short(description: str) -> str:
    """'Jaccard overlap ... (1 = same)' -> 'Jaccard overlap ...' (for derived descriptions)."""
    return description.split(" (")[0].split(":")[0]


def spread_spec(kind: str, base: MetricSpec) -> MetricSpec:
    """Return the declaration of a spread statistic (see the module table) of ``base``."""
    pattern, text, worse, null = SPREAD_KINDS[kind]
    width = None if base.range is None else base.range[1] - base.range[0]
    if kind == "ratio":
        rng: tuple[float, float] | None = (0.0, 1.0)
    elif width is None:
        rng = None
    else:
        rng = (0.0, width / 2 if kind == "snsv" else width)
    return MetricSpec(pattern.format(base.name), text.format(_short(base.description)), worse,
                      null, rng, base.convention, noise_floor=True)


def get_spec(name: str) -> MetricSpec | None:
    """Return the declaration of ``name`` (a declared metric or a spread of one), or None."""
    if name in _SPECS:
        return _SPECS[name]
    for kind, (pattern, *_rest) in SPREAD_KINDS.items():
        head, _, tail = pattern.partition("{}")
        if name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail):
            base = _SPECS.get(name[len(head): len(name) - len(tail)])
            if base is not None:
                return spread_spec(kind, base)
    return None


def all_specs() -> dict[str, MetricSpec]:
    """Every declared base metric, by name."""
    return dict(_SPECS)
