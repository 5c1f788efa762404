"""The matched control: whether a disparity is beyond what an irrelevant word of the prompt changes.

LLMs change their lists when any word of the prompt changes, so a spread of Sim(a) over the
values of a sensitive attribute that is above its noise floor may be prompt sensitivity, not
identity bias. A *control* attribute (e.g. a favourite colour, :data:`CONTROL_ATTRIBUTES`) is
put in the attribute's place of the same template, on the same units, and its spread is the
yardstick.

For a sensitive attribute with per-unit similarities ``A`` (units x its ``C_a`` values) and the
control's ``G`` (the same units x its ``C_g`` values), at the largest k:

* estimate ``D = s(mean_u A) - s(mean_u G)``, ``s`` the spread statistic (range for SNSR,
  population std for SNSV);
* CI: paired bootstrap over units (one resample of units moves both tables together),
  bias-corrected (:func:`recaudit.stats.bias_corrected_interval`, the CI of every metric that
  declares ``noise_floor``) so it is centred on the estimate;
* floor: what noise alone gives. Under pure noise the ``C_a + C_g`` similarities of a unit are
  exchangeable; each permutation shuffles them within every unit and deals the first ``C_a`` to
  the attribute. The null's mean and 95th percentile are recorded (``null_mean``,
  ``null_p95``): with ``C_a != C_g`` it is away from 0 (the range of more values is larger
  under noise alone);
* p-value: paired bootstrap test, one-sided (the attribute beyond the control), of the excess
  over that floor, ``E = D - null_mean``: the centred resamples ``D*_b - D`` stand for the null
  (Hall & Wilson, Biometrics 47, 1991), ``p = (1 + #{D*_b - D >= E}) / (1 + B)``. Words, not
  only units, move lists: a model whose every word shifts its list by that word's own amount
  breaks the within-unit exchangeability, so the test treats the values as fixed and resamples
  units only.

Observed, permuted and resampled statistics go through the same arithmetic (:func:`_means`), and
ties are judged by :func:`recaudit.stats.permutation_pvalue` at
:func:`recaudit.stats.tie_tolerance` of the data's magnitude.
"""

from __future__ import annotations

from typing import Any, Iterable, NamedTuple

import numpy as np

from ..metrics.specs import declare, get_spec
from ..stats import (bias_corrected_interval, permutation_pvalue, resampled_means,
                     spread_statistic, tie_tolerance)

__all__ = ["ControlDifference", "control_difference", "control_label", "versus_control_name",
           "declare_versus_control", "compare_with_controls"]

#: suffix of the metric comparing a spread with the control's (``snsr_jaccard_vs_control``)
VERSUS_CONTROL = "_vs_control"
_CHUNK = 250  # permutations materialised at once


def control_label(name: str) -> str:
    """Return the attribute label a control's queries and records carry: ``"colour (control)"``."""
    return f"{name} (control)"


def is_control(attribute: str | None) -> bool:
    """Return whether a record's attribute is a matched control's (:func:`control_label`)."""
    return attribute is not None and attribute.endswith(control_label(""))


def versus_control_name(spread_metric: str) -> str:
    """Return the name of the difference metric of a spread: ``snsr_jaccard_vs_control``."""
    return spread_metric + VERSUS_CONTROL


def declare_versus_control(spread_metric: str) -> str:
    """Declare ``<spread>_vs_control`` (attribute spread minus the control's) and return its name.

    Higher is worse (the attribute moves the list more than an irrelevant word), null 0, range
    ``[-w, w]`` with ``w`` the width of the spread's own range; ``noise_floor``: with unequal
    numbers of values it is away from 0 under noise alone (see the module docstring), so its
    records carry the floor and gates of mode ``floor`` / ``ci`` judge the excess over it.
    """
    name = versus_control_name(spread_metric)
    base = get_spec(spread_metric)
    width = None if base is None or base.range is None else base.range[1] - base.range[0]
    what = base.description if base is not None else spread_metric
    declare(name, f"{what}, minus the same spread over a control attribute's values (an "
                  "irrelevant word in the same place of the same prompts)",
            higher_is_worse=True, null=0.0, noise_floor=True,
            range=None if width is None else (-width, width),
            convention=None if base is None else base.convention)
    return name


class ControlDifference(NamedTuple):
    """Attribute spread minus control spread, with its paired CI, p-value and null floor."""

    estimate: float
    attribute_spread: float
    control_spread: float
    ci_low: float
    ci_high: float
    p_value: float
    null_mean: float
    null_p95: float
    n: int


def _means(block: np.ndarray) -> np.ndarray:
    """``(..., C)`` column means over the units axis (-2) of ``(..., U, C)``, NaN left out."""
    observed = ~np.isnan(block)
    sums = np.where(observed, block, 0.0).sum(axis=-2)
    counts = observed.sum(axis=-2)
    out = np.full(sums.shape, np.nan)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


def control_difference(attribute: np.ndarray, control: np.ndarray, statistic: str, *,
                       counts: np.ndarray, n_permutations: int, seed: int,
                       confidence: float) -> ControlDifference:
    """Compare a sensitive attribute's spread with the control's on the same units.

    ``attribute`` is ``(U, C_a)``, ``control`` ``(U, C_g)``: per-unit values (e.g. Jaccard with
    the neutral list) of the same ``U`` units in the same order (NaN = missing cell).
    ``statistic``: ``"range"`` or ``"std"`` (:func:`recaudit.stats.spread_statistic`);
    ``counts``: ``(B, U)`` bootstrap counts shared by both tables (the paired bootstrap).
    See the module docstring for the estimate, the CI and the permutation null.
    """
    a = np.asarray(attribute, dtype=float)
    g = np.asarray(control, dtype=float)
    if a.ndim != 2 or g.ndim != 2 or a.shape[0] != g.shape[0]:
        raise ValueError(f"expected (units x values) tables of the same units, got {a.shape} "
                         f"and {g.shape}")
    fn = spread_statistic(statistic)
    n_a = a.shape[1]
    pooled = np.concatenate([a, g], axis=1)  # (U, C_a + C_g)

    def difference(block: np.ndarray) -> np.ndarray:
        means = _means(block)
        return fn(means[..., :n_a]) - fn(means[..., n_a:])

    observed = float(difference(pooled[None])[0])
    boot = resampled_means(pooled, counts)  # (B, C_a + C_g): units resampled once for both
    boot_d = fn(boot[:, :n_a]) - fn(boot[:, n_a:])
    lo, hi = bias_corrected_interval(boot_d[:, None], [observed], confidence)
    rng = np.random.default_rng(seed)
    null = []
    for start in range(0, int(n_permutations), _CHUNK):
        b = min(_CHUNK, int(n_permutations) - start)
        order = rng.random((b, *pooled.shape)).argsort(axis=2)
        null.append(difference(np.take_along_axis(pooled[None], order, axis=2)))
    null_d = np.concatenate(null) if null else np.empty(0)
    finite = pooled[np.isfinite(pooled)]
    magnitude = float(np.abs(finite).max()) if finite.size else 0.0
    kept = null_d[np.isfinite(null_d)]
    floor = float(kept.mean()) if kept.size else 0.0
    p = permutation_pvalue(boot_d - observed, observed - floor,
                           tie_tolerance(magnitude, pooled.shape[0]))
    means = _means(pooled)
    n_units = int((~np.isnan(pooled).all(axis=1)).sum())
    return ControlDifference(
        estimate=observed, attribute_spread=float(fn(means[:n_a])),
        control_spread=float(fn(means[n_a:])), ci_low=float(lo[0]), ci_high=float(hi[0]),
        p_value=float(p), null_mean=floor if kept.size else float("nan"),
        null_p95=float(np.quantile(kept, 0.95)) if kept.size else float("nan"), n=n_units)


def compare_with_controls(run: Any, cells: dict[tuple[str, str], tuple[list[Any], np.ndarray]],
                          attributes: Iterable[str], controls: dict[str, list[str]],
                          spreads: Iterable[tuple[str, str, str, str | None]], k: int | None,
                          noun: str) -> dict[tuple[str, str, str], Any]:
    """Record ``<spread>_vs_control`` of every attribute against every control.

    ``cells[(attribute or control label, base metric)]`` = (units, ``(U, C)`` values at ``k``);
    ``spreads``: ``(base metric, spread metric, statistic, convention)``. The comparison uses
    the units both have; each metric is one Benjamini-Hochberg family across attributes. A
    method note names the control values. Returns the records by (attribute, control, spread).
    """
    kit, st = run.summary, run.ctx.stats
    out: dict[tuple[str, str, str], Any] = {}
    if not controls:
        return out
    run.method_notes.append(
        "Matched control: " + "; ".join(f"{c} = {', '.join(map(repr, v))}"
                                        for c, v in controls.items())
        + f", in the attribute's place of the same prompts for the same {noun}. "
        "'<spread>_vs_control' is the attribute's spread minus the control's (paired bootstrap "
        f"CI and test over {noun}); a spread within the control's is what any irrelevant word "
        "of the prompt changes, not evidence about the attribute.")
    spreads = list(spreads)
    for attr in attributes:
        for ctrl in controls:
            for base, spread, statistic, convention in spreads:
                if (attr, base) not in cells or (ctrl, base) not in cells:
                    continue
                a_units, a_x = cells[(attr, base)]
                c_units, c_x = cells[(ctrl, base)]
                common = [u for u in a_units if u in set(c_units)]
                if len(common) < 2:
                    continue
                metric = declare_versus_control(spread)
                d = control_difference(
                    a_x[[a_units.index(u) for u in common]],
                    c_x[[c_units.index(u) for u in common]], statistic,
                    counts=kit.boot_counts(len(common), "control", attr, ctrl),
                    n_permutations=int(st.n_permutations), confidence=st.confidence,
                    seed=kit.seed("control", metric, attr, ctrl))
                out[(attr, ctrl, spread)] = kit.record(
                    metric, attribute=attr, value=ctrl, k=k, estimate=d.estimate,
                    ci=(d.ci_low, d.ci_high), n=d.n, p_value=d.p_value, null_mean=d.null_mean,
                    null_p95=d.null_p95, family=metric, convention=convention)
    return out
