"""Benchmark: vectorised ``similarity_matrix`` vs the scalar similarity functions in a loop.

The FaiRLLM workload: M instructions x V attribute values, each value's top-K list compared with
its instruction's neutral list, for every metric and every truncation k = 1..K. Both
implementations run in the same process on the same synthetic lists (with duplicates and some
short lists, as LLM output has); the script checks they agree and prints both times and the
ratio (target >= 10x).

    python benchmarks/bench_metrics.py [--instructions 500] [--values 32] [--k 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from recaudit.metrics.similarity import (
    SIMILARITY_METRICS,
    jaccard,
    prag_star,
    rbo,
    serp_star,
    similarity_matrix,
)

P = 0.9


def make_lists(
    n_instructions: int, n_values: int, k: int, n_items: int = 3000, seed: int = 0
) -> tuple[list[list[str]], list[list[str]]]:
    """Neutral lists drawn by Zipf popularity; each value's list is a perturbed copy."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    weights /= weights.sum()
    catalogue = np.array([f"movie-{i}" for i in range(n_items)], dtype=object)
    S_lists, N_lists = [], []
    for _ in range(n_instructions):
        neutral = list(catalogue[rng.choice(n_items, size=k, replace=False, p=weights)])
        for _ in range(n_values):
            lst = list(neutral)
            replace = rng.random(k) < 0.35  # the value changes about a third of the items
            for pos in np.flatnonzero(replace):
                lst[pos] = catalogue[rng.choice(n_items, p=weights)]
            swaps = rng.integers(0, 4)  # and reorders a little
            for _ in range(swaps):
                i, j = rng.integers(0, k, 2)
                lst[i], lst[j] = lst[j], lst[i]
            if rng.random() < 0.05:  # some outputs are short
                lst = lst[: rng.integers(5, k)]
            S_lists.append([str(x) for x in lst])
            N_lists.append([str(x) for x in neutral])
    return S_lists, N_lists


def scalar_matrix(S_lists, N_lists, k_values) -> dict[str, np.ndarray]:
    """The straightforward implementation: the scalar reference functions, looped."""
    out = {m: np.empty((len(S_lists), len(k_values))) for m in SIMILARITY_METRICS}
    for i, (s, n) in enumerate(zip(S_lists, N_lists)):
        for j, k in enumerate(k_values):
            sk, nk = s[:k], n[:k]
            out["jaccard"][i, j] = jaccard(sk, nk)
            out["serp_star"][i, j] = serp_star(sk, nk)
            out["serp_star_normalized"][i, j] = serp_star(sk, nk, variant="normalized")
            out["prag_star"][i, j] = prag_star(sk, nk)
            out["rbo"][i, j] = rbo(sk, nk, p=P)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instructions", type=int, default=500)
    parser.add_argument("--values", type=int, default=32)
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args()

    S_lists, N_lists = make_lists(args.instructions, args.values, args.k)
    k_values = list(range(1, args.k + 1))
    n_pairs = len(S_lists)
    print(f"{args.instructions} instructions x {args.values} values = {n_pairs} pairs, "
          f"k = 1..{args.k}, {len(SIMILARITY_METRICS)} metrics "
          f"({n_pairs * len(k_values) * len(SIMILARITY_METRICS):,} numbers), RBO p = {P}")

    t0 = time.perf_counter()
    fast = similarity_matrix(S_lists, N_lists, k_values=k_values, p=P)
    t_vec = time.perf_counter() - t0

    t0 = time.perf_counter()
    slow = scalar_matrix(S_lists, N_lists, k_values)
    t_loop = time.perf_counter() - t0

    worst = max(float(np.max(np.abs(fast[m] - slow[m]))) for m in SIMILARITY_METRICS)
    print(f"similarity_matrix (numpy):      {t_vec:8.3f} s")
    print(f"scalar functions, Python loop:  {t_loop:8.3f} s")
    print(f"speed-up:                       {t_loop / t_vec:8.1f}x  (target >= 10x)")
    print(f"max |difference|:               {worst:.2e}")
    if worst > 1e-9:
        raise SystemExit("vectorised and scalar results disagree")


if __name__ == "__main__":
    main()
