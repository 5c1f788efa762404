"""Repeated samples of one prompt (``decoding.samples`` = N): averaging and self-consistency.

The engine asks every request N times (sample ``j`` seeded by
:func:`recaudit.recommenders.base.sample_seed`, cached per sample) and hands a probe sample 0's
answer with every sample in :attr:`recaudit.engine.Answer.samples`. Two things happen here:

* **Metrics average over samples, at the table.** :func:`averaged_over_samples` (entered by
  :meth:`recaudit.probes.base.Probe.analyse`) first measures the probe once per sample, on that
  sample's answers, and keeps every :class:`~recaudit.probes.kit.Table` it builds; in the real
  measurement each table's cell (unit, condition, k) is then the mean over the samples in which
  that cell was measured, before any mean, spread, CI or test is computed. The units are those
  of the first sample's table. So a unit's Jaccard with its neutral list is
  ``(1/N) sum_j Jaccard(list_j(value), list_j(neutral))``, sample j against sample j. The
  per-sample cells stay on the table (``Table.sample_values``) for the self-consistency floor.
* **Metrics average over samples, from the lists.** A number a probe computes from its lists
  without a table reads every sample through :func:`sample_lists` (or ``Answer.samples``) and
  says in its docstring how: a unit's sampled lists are extra observations *within* that unit
  (popularity's PopRSP / PopREO counts, exposure's skew and NDKL, profile's fairlearn gap,
  leakage's item features, position's first places), or the statistic is averaged over
  samples (popularity's Gini and coverage, which have no units). Resampling (bootstrap,
  permutation, null draws) stays at the unit: samples are never independent units. A re-ranked
  variant's lists (a reranker re-ranks one list per request) are one sample.
* **Self-consistency** (:mod:`recaudit.probes.consistency`). With N >= 2, every probe
  records ``self_consistency_jaccard`` and ``self_consistency_rbo``: per request, the mean
  over the pairs of its samples of the Jaccard (RBO, p = 0.9) of their top-k lists; then the
  mean over requests with a bootstrap CI (the kit's means). 1 means the model always gives
  the same list.
* **Self-consistency floor of a spread** (:func:`self_consistency_floor`). Every range / std
  spread (``snsr``, ``snsv``, ``gap``) of a table with N >= 2 samples carries ``self_floor``:
  the 95th percentile of the spread that the model's disagreement with itself alone gives with
  these units and samples (a split-half, sign-flip null; definition in that function).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Iterator

import numpy as np

from .metrics.similarity import jaccard, rbo
from .metrics.specs import declare

declare("self_consistency_jaccard", "self-consistency: Jaccard overlap of two samples of the same "
        "prompt (1 = the model always gives the same items)", higher_is_worse=False,
        range=(0.0, 1.0))
declare("self_consistency_rbo", "self-consistency: rank-biased overlap (p = 0.9) of two samples "
        "of the same prompt (1 = the same list)", higher_is_worse=False, range=(0.0, 1.0))

def n_samples(answers: dict[str, Any]) -> int:
    """Return how many samples the answers carry (1 without repeated samples).

    A re-ranked answer (``Answer.ranked``) counts as one sample: a reranker orders one list.
    """
    return max((len(a.samples) for a in answers.values()
                if a is not None and a.samples and a.ranked is None), default=1)


def sample_view(answers: dict[str, Any], j: int) -> dict[str, Any]:
    """Return the answers of sample ``j`` by query id (queries without that sample left out)."""
    out = {}
    for qid, a in answers.items():
        if a is None:
            continue
        if a.samples and a.ranked is None:
            s = a.samples[j] if j < len(a.samples) else None
        else:
            s = a if j == 0 else None
        if s is not None:
            out[qid] = s
    return out


@dataclass
class _Captured:
    """The tables of one measurement, in the order the probe built them."""

    tables: list[Any] = field(default_factory=list)


@dataclass
class _Averager:
    """Replaces each table of the real measurement by its mean over the captured samples."""

    samples: list[_Captured]
    made: int = 0
    unmatched: int = 0

    def average(self, t: Any) -> None:
        """Set ``t.values`` to the mean over samples of the table built at its position."""
        i, self.made = self.made, self.made + 1
        same = [c.tables[i] for c in self.samples if i < len(c.tables)
                and _signature(c.tables[i]) == _signature(t)]
        if len(same) < len(self.samples):
            self.unmatched += 1
        if not same:
            return
        stack = np.full((len(same),) + t.values.shape, np.nan)
        for s, other in enumerate(same):
            row = {u: r for r, u in enumerate(other.units)}
            for r, u in enumerate(t.units):
                if u in row:
                    stack[s, r] = other.values[row[u]]
        t.sample_values = stack  # per-sample cells: the self-consistency floor reads them
        with warnings.catch_warnings():  # a cell measured in no sample stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            t.values = np.nanmean(stack, axis=0)


def _signature(t: Any) -> tuple[Any, ...]:
    return (t.metric, t.attribute, tuple(t.conditions), tuple(t.ks or ()), t.variant, t.part)


_CAPTURE: ContextVar[_Captured | None] = ContextVar("recaudit_sample_capture", default=None)
_AVERAGE: ContextVar[_Averager | None] = ContextVar("recaudit_sample_average", default=None)


def table_made(t: Any) -> None:
    """Capture a new :class:`~recaudit.probes.kit.Table`, or average it over samples (its hook).

    A table built with ``averaged=False`` (one computed from every sample at once) is skipped
    in both the captures and the real measurement, so the positions of the others still match.
    """
    if not getattr(t, "averaged", True):
        return
    captured = _CAPTURE.get()
    if captured is not None:
        captured.tables.append(t)
        return
    averager = _AVERAGE.get()
    if averager is not None:
        averager.average(t)


@contextmanager
def averaged_over_samples(probe: Any, ctx: Any, queries: list[Any],
                          answers: dict[str, Any]) -> Iterator[list[str]]:
    """Make every table built inside the mean over samples of its per-sample tables.

    Measures ``probe`` once per sample first (with the cheapest resampling settings: only the
    tables are kept). Yields a list that receives notes for the method notes (how many
    samples were averaged; tables that could not be matched across samples). A no-op with
    one sample.
    """
    notes: list[str] = []
    n = n_samples(answers)
    if n < 2:
        yield notes
        return
    cheap = _cheap_context(ctx)
    captured, failed = [], 0
    for j in range(n):
        tables = _Captured()
        token = _CAPTURE.set(tables)
        try:
            probe.measure(probe.begin(cheap, queries, sample_view(answers, j)))
            captured.append(tables)
        except Exception:  # noqa: BLE001 - a sample this probe cannot measure is left out
            failed += 1
        finally:
            _CAPTURE.reset(token)
    averager = _Averager(captured)
    token = _AVERAGE.set(averager)
    try:
        yield notes
    finally:
        _AVERAGE.reset(token)
    notes.append(f"Repeated samples: each unit's table cell is the mean of its metric over "
                 f"{len(captured)} samples of every prompt (decoding.samples = {n}); numbers "
                 "computed from lists without a table use every sample within its unit (see "
                 "the probe's notes); bootstrap and permutations resample units, never "
                 "samples; re-ranked variants re-rank one list per request.")
    if failed:
        notes.append(f"Repeated samples: {failed} of {n} samples could not be measured and "
                     "are left out of the averages.")
    if averager.unmatched:
        notes.append(f"Repeated samples: {averager.unmatched} tables differ in shape between "
                     "samples; they average the samples that match.")


def _cheap_context(ctx: Any) -> Any:
    """Return ``ctx`` with the smallest bootstrap and permutation counts (tables only)."""
    import dataclasses

    stats = ctx.stats
    if hasattr(stats, "model_copy"):
        stats = stats.model_copy(update={"n_bootstrap": 50, "n_permutations": 99})
    return dataclasses.replace(ctx, stats=stats)


def sample_lists(got: Any, key: Any) -> list[list[str] | None]:
    """Return every sample's list of one query, sample 0 first (``[got.lists[key]]`` with one).

    ``got`` is a :class:`~recaudit.probes.kit.Collected`; ``None`` marks a sample that failed or
    was not computed.
    """
    samples = got.samples.get(key)
    return list(samples) if samples else [got.lists.get(key)]


def sample_count(got: Any) -> int:
    """Return the number of samples the collected lists carry (1 without repeated samples)."""
    return max((len(s) for s in got.samples.values()), default=1)


#: draws of the self-disagreement null in :func:`self_consistency_floor`
SELF_FLOOR_DRAWS = 400


def self_consistency_floor(samples: np.ndarray, statistic: Any, seed: int) -> float | None:
    r"""Return the spread that the model's disagreement with itself alone gives (its 95th pct).

    ``samples`` holds the per-sample cells ``x[s, u, c]`` (sample, unit, condition; NaN =
    missing) of a table whose cells are means over samples; ``statistic`` maps condition means
    (last axis) to the spread (range or std, :func:`recaudit.stats.spread_statistic`).

    Definition (a split-half, sign-flip null). Split a cell's ``a + b`` samples into halves
    ``A`` and ``B`` (a random split of the sample indices) and form the pseudo cell
    :math:`y_{uc} = \epsilon_{uc} (\bar x_{A,uc} - \bar x_{B,uc}) \sqrt{ab} / (a + b)`, with
    a random sign :math:`\epsilon_{uc}`. Whatever the attribute does, its effect cancels within
    a cell, so :math:`y_{uc}` has mean 0 and, for independent samples, the variance
    :math:`\sigma^2_{uc} / (a + b)` of the real cell's own sampling noise. Each of
    :data:`SELF_FLOOR_DRAWS` seeded draws takes the statistic of the pseudo condition means
    :math:`\bar y_c` (mean over units): a model with the same self-disagreement and no
    attribute effect. Returns their 95th percentile, so an estimate above it is beyond what
    the model's resampling gives at the 5% level. A deterministic model (identical samples)
    has floor 0. ``None`` with fewer than two samples or conditions.
    """
    x = np.asarray(samples, dtype=float)
    if x.ndim != 3 or x.shape[0] < 2 or x.shape[2] < 2:
        return None
    rng = np.random.default_rng(seed)
    n_s = x.shape[0]
    # the draws' random splits and signs, in the order a draw-by-draw loop takes them
    in_a = np.zeros((SELF_FLOOR_DRAWS, n_s), dtype=bool)
    signs = np.empty((SELF_FLOOR_DRAWS,) + x.shape[1:])
    for d in range(SELF_FLOOR_DRAWS):
        in_a[d, rng.permutation(n_s)[:n_s // 2]] = True
        signs[d] = rng.choice((-1.0, 1.0), size=x.shape[1:])
    present = ~np.isnan(x)
    filled = np.where(present, x, 0.0)
    # per draw, the halves' sums and counts over their samples: (draws, units, conditions)
    sum_a, sum_b = (np.einsum("ds,suc->duc", half.astype(float), filled)
                    for half in (in_a, ~in_a))
    a, b = (np.einsum("ds,suc->duc", half.astype(float), present.astype(float))
            for half in (in_a, ~in_a))
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        y = (sum_a / a - sum_b / b) * np.sqrt(a * b) / (a + b)
        y[(a == 0) | (b == 0)] = np.nan
        y *= signs
        means = np.nanmean(y, axis=1)  # (draws, C)
    draws = np.asarray(statistic(means[np.isfinite(means).all(axis=1)]), dtype=float)
    return float(np.quantile(draws, 0.95)) if draws.size else None


def pair_similarities(samples: list[list[str] | None]) -> tuple[float, float] | None:
    """Return the mean Jaccard and RBO over the pairs of a request's sampled lists.

    ``None`` when fewer than two samples have a list. Formulas: :func:`recaudit.metrics.
    similarity.jaccard` and :func:`~recaudit.metrics.similarity.rbo` (p = 0.9).
    """
    lists = [s for s in samples if s is not None]
    if len(lists) < 2:
        return None
    pairs = list(combinations(lists, 2))
    return (float(np.mean([jaccard(a, b) for a, b in pairs])),
            float(np.mean([rbo(a, b) for a, b in pairs])))
