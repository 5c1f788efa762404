"""Sequential gates (adaptive audits): error rates and model calls, on synthetic unit tables.

``python -m validation.sequential [--out docs/VALIDATION.md]`` rewrites the document's section
"Sequential gates" (everything from its heading on). For each gate kind a synthetic model whose
population statistic is a known multiple of the gate's bound (0, 0.5, 1, 2 and 4 times) gives
each unit its cells; the units are asked in the adaptive rounds of
:func:`recaudit.adaptive.looks` (steps of a sixteenth of the cap) and the gate is judged after
each round by :func:`recaudit.adaptive.decide` at the sequential level 0.01 (a pass when the
pass-side bounds lie inside the bound; a fail when the record's e-value reaches 1 / 0.01, e-BH
for one record), exactly as an adaptive audit judges it. A run ends when the gate is decided or
at the cap; the table gives how often it failed or passed sequentially, how often it reached
the cap undecided (where the fixed-n test of docs/VALIDATION.md's first part decides at alpha -
0.01) and the mean share of the fixed plan's model calls it used.

Errors: at no effect, a sequential *fail* is a false alarm; at the bound (1x), a sequential *pass*
claims the statistic lies inside the bound when it lies on it, and a *fail* that it lies beyond.
Each must stay within the sequential level 0.01 (with Monte Carlo slack). Target: at 2x the
bound, at least 50% fewer model calls than the fixed plan; an adaptive audit never asks more
than the plan (by construction: the last look is the cap).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from recaudit.adaptive import (SEQUENTIAL_ALPHA, RecordLook, decide, looks,
                               prequential_path, record_e_path, record_path)
from recaudit.results import MetricRecord, UnitTable

__all__ = ["KINDS", "MULTIPLES", "SeqTally", "run_kind", "render_section", "SECTION",
           "section_rows"]

SECTION = "## Sequential gates (adaptive audits)"
#: effect sizes, as multiples of the gate's bound
MULTIPLES = (0.0, 0.5, 1.0, 2.0, 4.0)
RUNS = 100
CAP = 400
BOUND = 0.1


@dataclass(frozen=True)
class Kind:
    """A gate kind: the statistic the record carries, its conditions and its cell model."""

    name: str
    statistic: str
    conditions: int
    describe: str
    #: (rng, units, effect) -> cells (units x conditions) in [0, 1]
    cells: Callable[[np.random.Generator, int, float], np.ndarray]
    #: the statistic's no-effect value: the gate is ``max: null + BOUND``
    null: float = 0.0
    #: the cells are a prequential sequence (``MetricRecord.sequence_table``), read by
    #: :func:`recaudit.adaptive.prequential_path` (fail only)
    prequential: bool = False


def _spread(c: int) -> Callable[[np.random.Generator, int, float], np.ndarray]:
    def cells(rng: np.random.Generator, n: int, effect: float) -> np.ndarray:
        """Paired cells: a unit's Beta(4, 4) similarity plus N(0, 0.1) per condition.

        Condition 0 is shifted by ``effect``; cells are clipped to [0, 1].
        """
        base = rng.beta(4.0, 4.0, size=(n, 1))
        x = base + rng.normal(0.0, 0.1, size=(n, c))
        x[:, 0] += effect
        return np.clip(x, 0.0, 1.0)
    return cells


def _gap(rng: np.random.Generator, n: int, effect: float) -> np.ndarray:
    """Two groups of different units (each unit in one, NaN in the other).

    Values in Beta(4, 4); group 0 is shifted by ``effect``.
    """
    x = np.clip(rng.beta(4.0, 4.0, size=n) + np.where(np.arange(n) % 2 == 0, effect, 0.0),
                0.0, 1.0)
    cells = np.full((n, 2), np.nan)
    cells[np.arange(n), np.arange(n) % 2] = x
    return cells


def _position(rng: np.random.Generator, n: int, effect: float) -> np.ndarray:
    """Five input positions; which one comes first: 0.2 each, position 0 gains ``effect``."""
    first = rng.choice(5, size=n, p=_position_shares(effect))
    return np.eye(5)[first]


def _auc_kernels(rng: np.random.Generator, n: int, effect: float) -> np.ndarray:
    """Return the leakage probe's prequential pair kernels for a classifier of AUC 0.5 + effect.

    As :meth:`recaudit.probes.leakage.LeakageProbe._prequential` lays them out: the first
    look's units only train; in each later round its units, in order, two at a time, give one
    kernel (on the pair's first unit; NaN elsewhere, an odd unit out gives none). Two values:
    a list's score is N(d, 1) when it states the value the classifier looks for, N(0, 1)
    otherwise, ``d = sqrt(2) Phi^-1(AUC)``, and a pair (a, b) gives
    ``(1[s_a+ > s_b-] + 1[s_b+ > s_a-]) / 2``, whose mean is the AUC.
    """
    from scipy.stats import norm

    d = math.sqrt(2) * float(norm.ppf(0.5 + effect))
    cells = np.full((n, 1), np.nan)
    schedule = looks(n)
    for start, stop in zip(schedule[:-1], schedule[1:], strict=True):
        for a in range(start, stop - 1, 2):
            pos, neg = rng.normal(d, 1.0, 2), rng.normal(0.0, 1.0, 2)
            cells[a, 0] = (float(pos[0] > neg[1]) + float(pos[1] > neg[0])) / 2
    return cells


KINDS = (
    Kind("spread (2 values)", "range", 2, "SNSR of two attribute values: paired cells, a "
         "unit's Beta(4, 4) similarity plus N(0, 0.1) per value, one value shifted by the "
         "effect (a paired-difference sequence)", _spread(2)),
    Kind("spread (6 values)", "range", 6, "SNSR of six values, the same cells (the paired "
         "differences of each of the 15 pairs of values: a pass reads every pair's sequence, a "
         "fail the e-value averaged over the pairs)", _spread(6)),
    Kind("gap (2 groups)", "range", 2, "a group gap: each unit in one of two groups, Beta(4, 4) "
         "values, one group shifted by the effect (the k-th unit of one group paired with the "
         "k-th of the other)", _gap),
    Kind("position", "range", 5, "range of first-place shares over 5 input positions "
         "(one-hot cells, paired over the 10 pairs of positions; position 0 gains the effect)",
         _position),
    Kind("AUC (leakage)", "auc_macro_ovr", 1, "the leakage AUC, gate `max: 0.6` (the effect "
         "is the AUC's distance from 0.5): the probe's prequential pair kernels, a classifier "
         "fitted on earlier rounds scoring two new subjects at a time (the first round only "
         "trains; here the classifier is already as good as it gets). Fail-only: nothing shows "
         "that no classifier could beat the bound, so a leakage gate passes only at the cap",
         _auc_kernels, null=0.5, prequential=True),
)


@dataclass
class SeqTally:
    """Outcomes of ``runs`` runs of one kind at one effect multiple."""

    kind: str
    multiple: float
    runs: int
    fails: int
    passes: int
    at_cap: int
    mean_units: float


@dataclass(frozen=True)
class _Gate:
    """The gate a kind is judged on: ``max: null + BOUND``."""

    max: float | None = BOUND
    min: float | None = None


def run_kind(kind: Kind, multiple: float, runs: int = RUNS, cap: int = CAP,
             first_seed: int = 0) -> SeqTally:
    """Run ``runs`` seeded adaptive gates of ``kind`` at ``multiple`` times the bound."""
    fails = passes = at_cap = 0
    units_used = []
    schedule = looks(cap)
    conds = [f"c{i}" for i in range(kind.conditions)]
    record = MetricRecord(probe="p", metric="m", statistic=kind.statistic, table="t")
    gate = _Gate(max=kind.null + BOUND)
    for seed in range(first_seed, first_seed + runs):
        rng = np.random.default_rng([seed, int(multiple * 1000), kind.conditions])
        cells = kind.cells(rng, cap, multiple * BOUND)
        table = UnitTable(id="t", metric="leakage_auc" if kind.prequential else "jaccard",
                          conditions=conds, units=[str(u) for u in range(cap)],
                          values=[[None if np.isnan(v) else float(v) for v in row]
                                  for row in cells])
        fail_path = None
        if kind.prequential:
            form = prequential_path(record, table, table.units, gate, SEQUENTIAL_ALPHA,
                                    schedule)
            assert form is not None
            path, e_path = form
        else:
            path = record_path(record, table, table.units, SEQUENTIAL_ALPHA, schedule,
                               side="pass")
            e_path = record_e_path(record, table, table.units, gate, schedule)
            fail_path = (record_path(record, table, table.units, SEQUENTIAL_ALPHA, schedule)
                         if e_path is None else None)
        assert path is not None
        decision, used = "undecided", cap
        for i, n in enumerate(schedule):
            look = RecordLook("m", path[i], None if e_path is None else e_path[i],
                              None if fail_path is None else fail_path[i])
            decision = decide([look], gate, SEQUENTIAL_ALPHA)[0]
            if decision != "undecided":
                used = n
                break
        fails += decision == "fail"
        passes += decision == "pass"
        at_cap += decision == "undecided"
        units_used.append(used)
    return SeqTally(kind.name, multiple, runs, fails, passes, at_cap,
                    float(np.mean(units_used)))


def _position_shares(effect: float) -> np.ndarray:
    """First-place shares of the position world: 0.2 each, position 0 gains ``effect``."""
    p = np.full(5, 0.2 - effect / 5)
    p[0] = 0.2 + effect * 4 / 5
    return p


def position_wald_floor(multiple: float, alpha: float = SEQUENTIAL_ALPHA,
                        grid: int = 2001) -> float:
    r"""Return Wald's least mean number of units to fail the position world at ``multiple``.

    The least any level-``alpha`` sequential test can use at ``multiple`` times the bound (no
    overshoot).

    .. math:: E_P[N] \ge \frac{\log(1/\alpha)}{\inf_{Q \in H_0} KL(P \| Q)}

    for a test that rejects under ``P`` with probability near 1 (Wald 1945; Lai 1981). ``P``: the
    world's first-place shares; ``H_0``: the laws meeting the gate (range of shares at most the
    bound), a convex set invariant under permuting positions 1-4, so its KL-nearest law has
    equal shares there, ``0.2 + 4g/5`` and ``0.2 - g/5`` with ``0 <= g <= bound`` (searched on a
    grid).
    """
    p = _position_shares(multiple * BOUND)
    kl = min(float((p * np.log(p / _position_shares(g))).sum())
             for g in np.linspace(0.0, BOUND, grid))
    return math.log(1 / alpha) / kl


def auc_wald_floor(multiple: float, cap: int = CAP, alpha: float = SEQUENTIAL_ALPHA) -> float:
    r"""Return Wald's least mean number of units to fail the AUC world at ``multiple``.

    The least any level-``alpha`` sequential test on the pair kernels can use at ``multiple``
    times the bound.

    The first look only trains and each kernel takes two subjects, so the bound is
    ``looks(cap)[0] + 2 log(1/alpha) / K_inf``, with ``K_inf`` the Kullback-Leibler distance
    from the kernel's law (``(I_1 + I_2) / 2``, ``I`` Bernoulli(AUC)) to the laws on [0, 1]
    with mean at most the bound, by its dual (Honda & Takemura 2010):

    .. math:: K_{inf}(P, m) = \max_{0 \le \lambda \le 1/m} E_P \log(1 + \lambda (X - m))

    A lower bound for every test valid against all those laws (as the betting e-process is).
    """
    from scipy.optimize import minimize_scalar

    auc, m = 0.5 + multiple * BOUND, 0.5 + BOUND
    x = np.array([0.0, 0.5, 1.0])
    p = np.array([(1 - auc) ** 2, 2 * auc * (1 - auc), auc ** 2])
    best = minimize_scalar(lambda lam: -float((p * np.log1p(lam * (x - m))).sum()),
                           bounds=(0.0, (1 - 1e-9) / m), method="bounded")
    return looks(cap)[0] + 2 * math.log(1 / alpha) / -best.fun


def slack(runs: int, rate: float = SEQUENTIAL_ALPHA) -> float:
    """Return the largest share of ``runs`` consistent with ``rate`` (3 standard errors)."""
    return rate + 3 * math.sqrt(rate * (1 - rate) / runs)


def render_section(tallies: list[SeqTally], runs: int = RUNS, cap: int = CAP) -> str:
    """Return the document's section for ``tallies``."""
    lines = [SECTION, "",
             "Generated by `python -m validation.sequential` (see its docstring): "
             f"{runs} seeded runs per row, a fixed plan (the cap) of {cap} units, looks at "
             f"{', '.join(str(n) for n in looks(cap))} units, gate `max: {BOUND:g}` above the "
             "statistic's no-effect value (0 for a spread, "
             f"0.5 for an AUC), sequential level {SEQUENTIAL_ALPHA:g}. `fail` at 0x and 1x and "
             "`pass` at 1x are errors (each must "
             f"stay within {SEQUENTIAL_ALPHA:g}; 3 standard errors allow "
             f"{slack(runs):.1%} over {runs} runs); `at cap` runs go to the fixed-n gate. "
             "Calls: the mean share of the fixed plan's model calls.", ""]
    lines += [f"- **{k.name}**: {k.describe}." for k in KINDS]
    floor, auc_floor = position_wald_floor(2.0), auc_wald_floor(2.0, cap)
    lines += ["",
              "The position world at 2x cannot meet the target with this cap, by any method: "
              f"any sequential test at level {SEQUENTIAL_ALPHA:g} needs on average at least "
              f"{floor:.0f} units ({floor / cap:.0%} of the cap) to fail it (Wald's bound: "
              f"log(1/{SEQUENTIAL_ALPHA:g}) over the Kullback-Leibler divergence from the world "
              "to the nearest law that meets the gate; `position_wald_floor`). At this cap a "
              "sequential test has little room to stop early. Likewise the AUC at 2x: any test "
              "valid for every law of the pair kernels with mean at most the bound needs on "
              f"average at least {auc_floor:.0f} units ({auc_floor / cap:.0%} of the cap; the "
              "first look only trains and each kernel takes two subjects; "
              "`auc_wald_floor`).", "",
              "| kind | effect (x bound) | fail | pass | at cap | calls | target |",
              "|---|---|---|---|---|---|---|"]
    for t in tallies:
        target = ""
        if t.multiple == 0:
            target = "ok" if t.fails / t.runs <= slack(t.runs) else "no: false fails"
        elif t.multiple == 1:
            target = ("ok" if max(t.passes, t.fails) / t.runs <= slack(t.runs)
                      else "no: false passes or fails")
        elif t.multiple == 2:
            target = "ok" if t.mean_units / CAP <= 0.5 else "no: > 50% of calls"
        lines.append(f"| {t.kind} | {t.multiple:g} | {t.fails}/{t.runs} | {t.passes}/{t.runs} | "
                     f"{t.at_cap}/{t.runs} | {t.mean_units / CAP:.0%} | {target} |")
    return "\n".join(lines) + "\n"


ROW_PREFIX = "| "


def section_rows(text: str) -> dict[tuple[str, str], tuple[int, int, int]]:
    """Read (kind, multiple) -> (fails, passes, at cap) back from the section."""
    out = {}
    part = text[text.index(SECTION):] if SECTION in text else ""
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 7 and "/" in cells[2]:
            out[(cells[0], cells[1])] = tuple(int(c.split("/")[0]) for c in cells[2:5])
    return out


def _run_cell(cell: tuple[int, float, int]) -> SeqTally:
    kind, multiple, runs = cell
    return run_kind(KINDS[kind], multiple, runs)


def run_all(runs: int = RUNS, workers: int = 1) -> list[SeqTally]:
    """Every kind at every multiple (on ``workers`` spawned processes)."""
    cells = [(i, m, runs) for i in range(len(KINDS)) for m in MULTIPLES]
    if workers <= 1:
        return [_run_cell(c) for c in cells]
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return pool.map(_run_cell, cells)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m validation.sequential", description=__doc__)
    parser.add_argument("--out", default="docs/VALIDATION.md")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    path = Path(args.out)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    head = text[:text.index(SECTION)].rstrip() + "\n\n" if SECTION in text else \
        (text.rstrip() + "\n\n" if text else "")
    start = time.perf_counter()
    section = render_section(run_all(workers=args.workers))
    path.write_text(head + section, encoding="utf-8")
    print(f"{len(KINDS)} kinds x {len(MULTIPLES)} effects x {RUNS} runs in "
          f"{time.perf_counter() - start:.0f} s")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
