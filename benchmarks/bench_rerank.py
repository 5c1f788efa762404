"""Benchmark: vectorised FA*IR ``fair_rerank`` vs fairsearchcore 1.0.4's ``re_rank`` in a loop.

The workload: L relevance-sorted candidate lists of n candidates with random protected flags
(each list its own protected rate, so the m-table often has to intervene), re-ranked to a fair
top-k with the adjusted m-table. Both implementations run in the same process on the same lists;
the script checks the outputs are identical and prints both times and the ratio (target >= 20x).

fairsearchcore needs a patch to run on current pandas (``LegalAssignmentKey.__hash__`` must
return an int); it is applied here, in this process only. Its ``FairScoreDoc`` inputs are built
before the clock starts. The "table" column is the one-off adjusted m-table (recaudit's
``adjusted_alpha`` caches are cleared; fairsearchcore gets a fresh ``Fair`` object). Each
timing is the best of ``--repeats`` runs.
With ``--oracle-lists`` below ``--lists``, fairsearchcore runs on that prefix of the lists only
and its re-rank time is extrapolated per list (the printout says so).

    python benchmarks/bench_rerank.py [--lists 10000] [--n 100] [--k 10] [--p 0.5]
        [--alpha 0.1] [--rates 0.05 0.6] [--repeats 3] [--oracle-lists N]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from recaudit.mitigation import fair


def patch_fairsearchcore() -> None:
    """Test/benchmark-only: fairsearchcore's hash does ``float << 16`` on current pandas."""
    from fairsearchcore import fail_prob

    def _int_hash(self) -> int:
        return ((int(self.remaining_candidates) + len(self.remaining_block_sizes)) << 16) + int(
            self.current_block_number) + int(self.candidates_assigned_so_far)

    fail_prob.LegalAssignmentKey.__hash__ = _int_hash


def make_lists(n_lists: int, n: int, rates: tuple[float, float], seed: int = 0) -> np.ndarray:
    """Protected flags (L, n) of relevance-sorted lists, each list's protected rate drawn
    uniformly from ``rates``."""
    rng = np.random.default_rng(seed)
    rate = rng.uniform(*rates, size=(n_lists, 1))
    return rng.random((n_lists, n)) < rate


def best_of(repeats: int, fn):
    """(smallest wall time, result) over ``repeats`` calls."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def run(quick: bool = False) -> list[dict]:
    """Rows {what, value, unit, note} for ``bench_all``: fairsearchcore's re-rank time / ours on
    the default workload (10,000 lists x 100, top 10; quick: 2,000 lists, fairsearchcore on 200
    and extrapolated per list), outputs compared."""
    import fairsearchcore
    from fairsearchcore.models import FairScoreDoc

    n_lists, n_oracle, repeats = (2_000, 200, 1) if quick else (10_000, 2_000, 3)
    n, k, p, alpha = 100, 10, 0.5, 0.1
    patch_fairsearchcore()
    prot = make_lists(n_lists, n, (0.05, 0.6))
    docs = [[FairScoreDoc(i, float(n - i), bool(x)) for i, x in enumerate(row)]
            for row in prot[:n_oracle]]
    fair.fair_rerank(prot[:1], k, p, alpha)  # its m-table, cached, outside the clock
    t_vec, fast = best_of(repeats, lambda: fair.fair_rerank(prot, k, p, alpha))
    f = fairsearchcore.Fair(k, p, alpha)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas FutureWarnings inside fairsearchcore
        f.create_adjusted_mtable()  # its one-off table, outside the clock as ours is cached
        t_ref, slow = best_of(repeats, lambda: [[d.id for d in f.re_rank(row)] for row in docs])
    mismatches = sum(fast[i].tolist() != slow[i] for i in range(n_oracle))
    ratio = t_ref / n_oracle * n_lists / t_vec
    return [{"what": "FA*IR re-rank vs fairsearchcore", "value": round(ratio, 1), "unit": "x",
             "note": f"{n_lists:,} lists x {n}, top {k}, p {p}, alpha {alpha}: ours "
                     f"{1e3 * t_vec:.2f} ms; fairsearchcore {1e6 * t_ref / n_oracle:.0f} "
                     f"us/list on {n_oracle:,} lists, extrapolated; {mismatches} differing lists; "
                     f"best of {repeats}"}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--p", type=float, default=0.5)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--rates", type=float, nargs=2, default=(0.05, 0.6),
                        help="range of the per-list protected rate")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--oracle-lists", type=int, default=None,
                        help="run fairsearchcore on only this many lists and extrapolate")
    args = parser.parse_args()

    import fairsearchcore
    from fairsearchcore.models import FairScoreDoc

    patch_fairsearchcore()
    prot = make_lists(args.lists, args.n, tuple(args.rates))
    n_oracle = min(args.oracle_lists or args.lists, args.lists)
    docs = [[FairScoreDoc(i, float(args.n - i), bool(x)) for i, x in enumerate(row)]
            for row in prot[:n_oracle]]
    print(f"{args.lists:,} lists x {args.n} candidates (protected rate per list "
          f"{args.rates[0]}-{args.rates[1]}), top-{args.k}, p = {args.p}, alpha = {args.alpha} "
          f"(adjusted); fairsearchcore on {n_oracle:,} lists; best of {args.repeats} runs")

    def vec_table() -> float:
        fair._adjusted_alpha.cache_clear()  # no cached tables: pay for them every run
        fair._cached_mtable.cache_clear()
        return fair.adjusted_alpha(args.k, args.p, args.alpha)

    def ref_table():
        f = fairsearchcore.Fair(args.k, args.p, args.alpha)  # a fresh object: no cached table
        return f, f.create_adjusted_mtable()

    t_table_vec, alpha_c = best_of(args.repeats, vec_table)
    t_rerank_vec, fast = best_of(
        args.repeats, lambda: fair.fair_rerank(prot, args.k, args.p, args.alpha))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas FutureWarnings inside fairsearchcore
        t_table_ref, (f, table) = best_of(args.repeats, ref_table)
        t_rerank_ref, slow = best_of(
            args.repeats, lambda: [[d.id for d in f.re_rank(row)] for row in docs])

    same_table = fair.mtable(args.k, args.p, alpha_c).tolist() == table
    mismatches = sum(fast[i].tolist() != slow[i] for i in range(n_oracle))
    changed = float(np.mean(np.any(fast != np.arange(args.k), axis=1)))
    per_ref = t_rerank_ref / n_oracle
    t_rerank_ref_all = per_ref * args.lists  # = measured when n_oracle == lists
    t_vec, t_ref = t_table_vec + t_rerank_vec, t_table_ref + t_rerank_ref_all
    note = "" if n_oracle == args.lists else f"  (extrapolated from {n_oracle:,} lists)"

    print(f"adjusted alpha {alpha_c!r}, m-table {table}; re-ranking changed "
          f"{changed:.0%} of the lists")
    print(f"{'':32}{'table (s)':>11}{'re-rank (s)':>13}{'total (s)':>11}{'per list (us)':>15}")
    print(f"{'fair_rerank (numpy, batch)':32}{t_table_vec:11.4f}{t_rerank_vec:13.4f}"
          f"{t_vec:11.4f}{1e6 * t_rerank_vec / args.lists:15.2f}")
    print(f"{'fairsearchcore re_rank, loop':32}{t_table_ref:11.4f}{t_rerank_ref_all:13.4f}"
          f"{t_ref:11.4f}{1e6 * per_ref:15.2f}{note}")
    print(f"speed-up, re-rank only:         {t_rerank_ref_all / t_rerank_vec:8.1f}x  "
          f"(target >= 20x)")
    print(f"speed-up, table + re-rank:      {t_ref / t_vec:8.1f}x")
    print(f"identical m-table: {same_table}; lists compared: {n_oracle:,}, "
          f"differing: {mismatches}")
    if not same_table or mismatches:
        raise SystemExit("fair_rerank and fairsearchcore disagree")


if __name__ == "__main__":
    main()
