"""Benchmark: the FaiRLLM table, ``similarity_matrix`` vs LangFair's ``evaluate_against_neutral``.

The FaiRLLM workload: M instructions x V attribute values, each value's top-K list compared with
its instruction's neutral list (one list object per instruction, as the counterfactual probe
passes it), Jaccard, SERP* and PRAG*, Sim(a) = mean over instructions, then SNSR / SNSV. Both
sides run in the same process on the same synthetic lists (duplicates in the sensitive lists;
all lists of length K, which LangFair requires). Timed: the whole table at k = K, and for every
k = 1..K (LangFair called once per k on the truncated lists); each best of ``--repeat`` runs.

Checks (exit status 1 when one fails):
- Jaccard: Sim(a) and SNSR / SNSV identical to LangFair's, bit for bit.
- SERP*: identical too (LangFair's ``score * 0.5 / (K (K + 1))`` is the same correctly rounded
  quotient as the FaiRLLM normaliser ``num / (2 K (K + 1))`` for neutral lists without repeats).
- PRAG*: LangFair divides the same pair count by ``K (K + 1)`` instead of ``K (K - 1) / 2``; the
  rescaled values agree to 1e-12 relative.
- Target: ours <= 1/50 of LangFair's time (``--target``), for k = K and for all k.

LangFair is a benchmark-only dependency (not in pyproject): ``pip install langfair --no-deps``
(its recommendation metrics need only numpy). ``--scalar`` also checks every metric against the
scalar reference functions in a Python loop (slow).

    python benchmarks/bench_metrics.py [--instructions 500] [--values 32] [--k 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

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

P = 0.9
THREE = ("jaccard", "serp_star", "prag_star")
LANGFAIR_NAMES = {"jaccard": "Jaccard", "serp_star": "SERP", "prag_star": "PRAG"}


def make_lists(
    n_instructions: int, n_values: int, k: int, n_items: int = 3000, seed: int = 0,
    short_share: float = 0.05,
) -> tuple[list[list[str]], list[list[str]]]:
    """Neutral lists drawn by Zipf popularity; each value's list is a perturbed copy.

    Pairs are instruction-major (pair ``m * n_values + v``); the neutral list of an instruction
    is one list object repeated for its values. ``short_share`` of the sensitive lists are cut
    short (LangFair needs ``short_share=0``).
    """
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    weights /= weights.sum()
    catalogue = [f"movie-{i}" for i in range(n_items)]
    S_lists, N_lists = [], []
    for _ in range(n_instructions):
        neutral = [catalogue[i] for i in rng.choice(n_items, size=k, replace=False, p=weights)]
        for _ in range(n_values):
            lst = list(neutral)
            replace = rng.random(k) < 0.35  # the value changes about a third of the items
            for pos in np.flatnonzero(replace):
                lst[pos] = catalogue[rng.choice(n_items, p=weights)]
            swaps = rng.integers(0, 4)  # and reorders a little
            for _ in range(swaps):
                i, j = rng.integers(0, k, 2)
                lst[i], lst[j] = lst[j], lst[i]
            if rng.random() < short_share:  # some outputs are short
                lst = lst[: rng.integers(5, k)]
            S_lists.append(lst)
            N_lists.append(neutral)
    return S_lists, N_lists


def ours(S_lists, N_lists, n_values: int, k_values) -> dict[str, list[dict]]:
    """metric -> per k: Sim(a) per value (mean over instructions), SNSR, SNSV."""
    mats = similarity_matrix(S_lists, N_lists, k_values=k_values, metrics=THREE, p=P)
    out = {}
    for m, mat in mats.items():
        per_k = []
        for col in range(mat.shape[1]):
            by_value = mat[:, col].reshape(-1, n_values).T.copy()  # (values, instructions)
            sims = [float(np.mean(row)) for row in by_value]
            per_k.append({"sims": sims, "SNSR": snsr(sims), "SNSV": snsv(sims)})
        out[m] = per_k
    return out


def langfair_table(S_lists, N_lists, n_values: int, k_values) -> dict[str, list[dict]]:
    """The same table with LangFair's RecommendationMetrics, one call per k."""
    from langfair.metrics.recommendation import RecommendationMetrics

    rm = RecommendationMetrics()
    n_inst = len(S_lists) // n_values
    out: dict[str, list[dict]] = {m: [] for m in THREE}
    for k in k_values:
        neutral = {str(i): N_lists[i * n_values][:k] for i in range(n_inst)}
        groups = [{str(i): S_lists[i * n_values + v][:k] for i in range(n_inst)}
                  for v in range(n_values)]
        res = rm.evaluate_against_neutral(group_dict_list=groups, neutral_dict=neutral)
        # Sim(a) per value as LangFair computes it (its result keeps only max / min / spread).
        sims = {m: [float(np.mean([rm_metric.evaluate(g[key], neutral[key]) for key in g]))
                    for g in groups]
                for m, rm_metric in zip(THREE, _metric_objects(rm))}
        for m in THREE:
            r = res[LANGFAIR_NAMES[m]]
            out[m].append({"sims": sims[m], "SNSR": float(r["SNSR"]), "SNSV": float(r["SNSV"])})
    return out


def _metric_objects(rm):
    by_name = {x.name: x for x in rm.metrics}
    return [by_name[LANGFAIR_NAMES[m]] for m in THREE]


def time_langfair(S_lists, N_lists, n_values: int, k_values) -> None:
    """Only LangFair's own call, as a user would run it (no extra Sim(a) pass)."""
    from langfair.metrics.recommendation import RecommendationMetrics

    rm = RecommendationMetrics()
    n_inst = len(S_lists) // n_values
    for k in k_values:
        neutral = {str(i): N_lists[i * n_values][:k] for i in range(n_inst)}
        groups = [{str(i): S_lists[i * n_values + v][:k] for i in range(n_inst)}
                  for v in range(n_values)]
        rm.evaluate_against_neutral(group_dict_list=groups, neutral_dict=neutral)


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def compare(a: dict, b: dict, k_values) -> list[str]:
    """Differences between our table and LangFair's (empty: they agree)."""
    bad = []
    for ki, k in enumerate(k_values):
        for m in ("jaccard", "serp_star"):
            x, y = a[m][ki], b[m][ki]
            if x["sims"] != y["sims"] or x["SNSR"] != y["SNSR"] or x["SNSV"] != y["SNSV"]:
                bad.append(f"{m}@{k}: SNSR {x['SNSR']!r} vs LangFair {y['SNSR']!r}")
        if k >= 2:  # LangFair PRAG = pairs / (k (k + 1)); ours = pairs / (k (k - 1) / 2)
            scale = (k - 1) / (2 * (k + 1))
            x, y = a["prag_star"][ki], b["prag_star"][ki]
            ok = np.allclose(np.array(x["sims"]) * scale, y["sims"], rtol=1e-12, atol=0)
            ok &= np.isclose(x["SNSR"] * scale, y["SNSR"], rtol=1e-12, atol=1e-15)
            if not ok:
                bad.append(f"prag_star@{k}: SNSR {x['SNSR'] * scale!r} vs LangFair {y['SNSR']!r}")
    return bad


def scalar_check(S_lists, N_lists, k_values) -> float:
    """Max |difference| of every metric against the scalar reference functions, looped."""
    fast = similarity_matrix(S_lists, N_lists, k_values=k_values, p=P)
    worst = 0.0
    for i, (s, n) in enumerate(zip(S_lists, N_lists)):
        for j, k in enumerate(k_values):
            sk, nk = s[:k], n[:k]
            ref = {"jaccard": jaccard(sk, nk), "serp_star": serp_star(sk, nk),
                   "serp_star_normalized": serp_star(sk, nk, variant="normalized"),
                   "prag_star": prag_star(sk, nk), "rbo": rbo(sk, nk, p=P)}
            worst = max(worst, *(abs(fast[m][i, j] - ref[m]) for m in SIMILARITY_METRICS))
    return worst


def run(quick: bool = False) -> list[dict]:
    """Rows {what, value, unit, note, key} for ``bench_all``: LangFair's time / ours at k = K
    (best of 3, tables compared) and for all k = 1..K (one run each, not compared: ``main``
    does that); quick: 100 instructions, one run."""
    n_inst, repeat = (100, 1) if quick else (500, 3)
    K, V = 20, 32
    try:
        import langfair  # noqa: F401
    except ImportError:
        return [{"what": "metrics vs LangFair", "value": None, "unit": "x", "key": "vs_langfair",
                 "note": "LangFair is not installed: pip install langfair --no-deps"}]
    S_lists, N_lists = make_lists(n_inst, V, K, short_share=0.0)
    rows = []
    for label, ks, reps in ((f"k = {K}", [K], repeat), (f"k = 1..{K}", list(range(1, K + 1)), 1)):
        t_ours = best_of(lambda: ours(S_lists, N_lists, V, ks), reps)
        t_lf = best_of(lambda: time_langfair(S_lists, N_lists, V, ks), reps)
        if ks == [K]:
            bad = compare(ours(S_lists, N_lists, V, ks), langfair_table(S_lists, N_lists, V, ks),
                          ks)
            check = f"{len(bad)} values differ from LangFair" if bad else "tables agree"
        else:
            check = "not compared here"
        rows.append({
            "what": f"metrics vs LangFair, {label}", "value": round(t_lf / t_ours, 1),
            "unit": "x", **({"key": "vs_langfair"} if ks == [K] else {}),
            "note": f"{n_inst} x {V} x K={K}, Jaccard/SERP*/PRAG*: ours {t_ours:.3f} s, "
                    f"LangFair {t_lf:.3f} s, best of {reps}; {check}"})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instructions", type=int, default=500)
    parser.add_argument("--values", type=int, default=32)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--target", type=float, default=50.0,
                        help="required LangFair time / our time (default 50)")
    parser.add_argument("--scalar", action="store_true",
                        help="also check all metrics against the scalar functions (slow)")
    args = parser.parse_args()
    try:
        import langfair  # noqa: F401
    except ImportError:
        print("LangFair is not installed: pip install langfair --no-deps", file=sys.stderr)
        return 2

    K, V = args.k, args.values
    S_lists, N_lists = make_lists(args.instructions, V, K, short_share=0.0)
    n_dup = sum(len(set(s)) < len(s) for s in S_lists)
    print(f"{args.instructions} instructions x {V} values = {len(S_lists)} pairs, K = {K}, "
          f"{', '.join(THREE)}; {n_dup} sensitive lists with repeats; best of {args.repeat}")
    failures = []
    for label, ks in ((f"k = {K}", [K]), (f"k = 1..{K}", list(range(1, K + 1)))):
        t_ours = best_of(lambda: ours(S_lists, N_lists, V, ks), args.repeat)
        t_lf = best_of(lambda: time_langfair(S_lists, N_lists, V, ks), args.repeat)
        ratio = t_lf / t_ours
        print(f"{label:10s} similarity_matrix + Sim/SNSR {t_ours:8.3f} s   LangFair "
              f"{t_lf:8.3f} s   ours = 1/{ratio:.1f} of LangFair (target 1/{args.target:g})")
        bad = compare(ours(S_lists, N_lists, V, ks), langfair_table(S_lists, N_lists, V, ks), ks)
        for line in bad[:10]:
            print("  MISMATCH", line)
        if bad:
            failures.append(f"{label}: {len(bad)} values differ from LangFair")
        else:
            print(f"{'':10s} Jaccard and SERP* Sim(a), SNSR, SNSV identical to LangFair; "
                  "PRAG* equal after rescaling")
        if ratio < args.target:
            failures.append(f"{label}: 1/{ratio:.1f} of LangFair's time, target 1/{args.target:g}")
    if args.scalar:
        short_s, short_n = make_lists(args.instructions, V, K, seed=1)
        worst = scalar_check(short_s, short_n, list(range(1, K + 2)))
        print(f"scalar reference (short lists too, all metrics): max |difference| {worst:.2e}")
        if worst > 1e-12:
            failures.append("vectorised and scalar results disagree")
    for f in failures:
        print("FAIL", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
