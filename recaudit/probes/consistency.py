"""The model's self-consistency under repeated samples (``decoding.samples`` >= 2).

Recorded once per probe by :meth:`recaudit.probes.base.Probe.analyse`; the averaging over
samples and the metric declarations live in :mod:`recaudit.samples`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..samples import pair_similarities
from .kit import Table

#: the condition of the self-consistency tables (one unit per request)
PAIRS = "sample pairs"


def record_self_consistency(run: Any) -> None:
    """Record the probe's self-consistency (N >= 2 samples) and state it in the method notes.

    One unit per distinct request whose samples have at least two lists; the records are
    means with a bootstrap CI over requests (:meth:`~recaudit.probes.kit.Summariser.means`).
    """
    got = run.got
    by_request: dict[str, tuple[float, float]] = {}
    n = 1
    for qid, samples in got.samples.items():
        n = max(n, len(samples))
        key = got.raw[qid].request_key
        sims = pair_similarities(samples)
        if sims is not None and key not in by_request:
            by_request[key] = sims
    if n < 2:
        return
    units = list(by_request)
    values = np.array([by_request[u] for u in units], dtype=float).reshape(len(units), 2)
    recs = {}  # called after the averaging over samples ended: these tables are as built
    for col, metric in enumerate(("self_consistency_jaccard", "self_consistency_rbo")):
        table = Table(metric, None, [PAIRS], units, values[:, col:col + 1])
        recs[metric] = run.summary.means(table)[(PAIRS, None)]
    jac = recs["self_consistency_jaccard"]
    if jac.estimate is None or not np.isfinite(jac.estimate):
        run.method_notes.append(f"Self-consistency: no request has two sampled lists "
                                f"(decoding.samples = {n}).")
        return
    from ..formatting import fmt

    ci = (f" (95% CI [{fmt(jac.ci_low)}, {fmt(jac.ci_high)}])"
          if jac.ci_low is not None else "")
    run.method_notes.append(
        f"Self-consistency: two samples of the same prompt share a Jaccard of "
        f"{fmt(jac.estimate)}{ci} over {len(units)} requests ({n} samples each). The model "
        f"changes {fmt(1 - jac.estimate)} of a list when nothing in the prompt changes. Each "
        "range / std spread records the spread this disagreement with itself alone gives "
        "(self_floor: the 95th percentile of a split-half, sign-flip null of its per-sample "
        "cells), shown beside its noise floor.")
