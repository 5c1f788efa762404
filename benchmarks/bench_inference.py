"""Inference benchmarks of the Hugging Face / GGUF adapter on the bundled SmolLM2-135M-Instruct.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_inference.py``

Every figure is a ratio (or fraction) measured side by side in this one run, on this machine:

1. generation: batched (batch 16) vs one request at a time, 16 recommendation prompts
   (target >= 4x); the outputs must be identical, and the count is printed; plus plain
   (not batch-invariant) batching of the same prompts, i.e. what the invariance costs;
2. scoring: prefix reuse (prompt run once, its KV cache copied for all candidates) vs naive
   full-sequence scoring, 20 candidates (target >= 5x), with the largest score difference;
3. utilisation: batched generation tokens/s x FLOPs per token (2 x parameters) as a fraction of
   the fp32 matmul peak measured here (``torch.matmul`` on 2048 x 2048);
4. ``bench_cache``: warm-cache vs cold audit of a small FaiRLLM config (same cache file);
5. early stop: the same prompts (each asking for k items) generated with ``early_stop`` on vs
   off: tokens generated, wall time ratio, and whether the first k grounded entries agree
   (``--early-stop-only`` runs just this row).

``run(quick)`` returns the rows of the ``make bench`` table (``--rows [--quick]`` prints them):
batched (continuous, tiles) vs one-at-a-time generation and its fraction of the fp32 roofline,
continuous vs static batching, scoring batched across requests vs per request, bf16 vs fp32,
and a static KV cache / torch.compile vs eager on plain ``generate`` (``--compile-only``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GROUPS = ["female", "male", "young", "elderly", "Black", "white", "Asian", "Hispanic",
          "Christian", "Muslim", "Jewish", "atheist", "American", "Chinese", "Brazilian", "Indian"]
GENRES = ["action", "romance", "horror", "comedy", "drama", "sci-fi", "family", "thriller"]
TITLES = ["The Matrix (1999)", "Heat (1995)", "Toy Story (1995)", "Fargo (1996)",
          "Casablanca (1942)", "Jaws (1975)", "The Godfather (1972)", "Amelie (2001)",
          "Spirited Away (2001)", "Titanic (1997)", "Alien (1979)", "Rocky (1976)",
          "Psycho (1960)", "Vertigo (1958)", "Pulp Fiction (1994)", "Forrest Gump (1994)",
          "The Lion King (1994)", "Braveheart (1995)", "Se7en (1995)", "Goodfellas (1990)"]


def prompts(n: int = 16) -> list[str]:
    return [f"I am a {GROUPS[i % len(GROUPS)]} fan of {GENRES[i % len(GENRES)]} movies. "
            f"Recommend {5 + i % 6} movies I should watch next, as a numbered list with years."
            for i in range(n)]


def matmul_peak_gflops(n: int = 2048, reps: int = 5) -> float:
    """Best-of-``reps`` fp32 ``torch.matmul`` throughput on an n x n product, in GFLOP/s."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def bench_generation(rec, n_prompts: int = 16) -> dict[str, float]:
    from recaudit.recommenders.base import Request

    reqs = [Request.from_prompt(p) for p in prompts(n_prompts)]
    ids = [rec.prompt_ids(r) for r in reqs]
    rec.generate_ids([ids[0]])  # warm-up
    t0 = time.perf_counter()
    batched = rec.generate_ids(ids)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = [rec.generate_ids([p])[0] for p in ids]
    t_single = time.perf_counter() - t0
    n_tokens = sum(len(t) for t, _ in batched)
    same = sum(b == s for b, s in zip(batched, single))
    print(f"generation: {n_prompts} prompts, {n_tokens} new tokens, max_new_tokens="
          f"{rec.decoding.max_new_tokens}, batch_size={rec.batch_size}")
    print(f"  one at a time {t_single:8.2f} s   batched {t_batched:8.2f} s   "
          f"speed-up {t_single / t_batched:5.2f}x  (target >= 4x)")
    print(f"  identical outputs (tokens and log-probs, bitwise): {same}/{n_prompts}")
    return {"t_batched": t_batched, "t_single": t_single, "tokens": n_tokens, "ids": ids,
            "batched": batched}


def bench_tiles(rec) -> None:
    """The measurement behind the tile order of choose_tile_rows: cost ceil(R / M) * t(M) of the
    reference workloads (decode 16 rows a step, prefill 16 prompts x 64 tokens), each M
    checked for invariance on this CPU."""
    import torch

    from recaudit.recommenders.hf import DECODE_ROW_CHOICES, PREFILL_ROW_CHOICES, tile_seconds
    from recaudit.recommenders.hf.invariance import _tile_rows_are_invariant

    shapes: dict = {}
    for lin in rec.model.modules():
        if isinstance(lin, torch.nn.Linear):
            key = (lin.in_features, lin.out_features, lin.bias is not None)
            shapes.setdefault(key, [lin, 0])[1] += 1
    layers = [(lin, n) for lin, n in shapes.values()]
    gen = torch.Generator().manual_seed(0)
    for phase, choices, rows in (("prefill", PREFILL_ROW_CHOICES, 16 * 64),
                                 ("decode", DECODE_ROW_CHOICES, 16)):
        cells = []
        with torch.inference_mode():
            for m in sorted(choices):
                ok = all(_tile_rows_are_invariant(lin, m, gen) for lin, _ in layers)
                cost = -(-rows // m) * tile_seconds(layers, m)
                cells.append(f"M={m}: {1e3 * cost:7.1f} ms{'' if ok else ' (not invariant)'}")
        print(f"tiles, {phase} ({rows} rows): " + "; ".join(cells))


def bench_plain(plain, gen: dict) -> None:
    """Plain batching (``batching: plain``: no tiles, no row-wise attention) of the same prompts."""
    plain.generate_ids([gen["ids"][0]])  # warm-up
    t0 = time.perf_counter()
    out = plain.generate_ids(gen["ids"])
    t_plain = time.perf_counter() - t0
    same = sum(a == b for a, b in zip(out, gen["batched"]))
    print(f"  plain batching (not invariant) {t_plain:8.2f} s: batch invariance costs "
          f"{gen['t_batched'] / t_plain:5.2f}x; outputs equal to the invariant ones: "
          f"{same}/{len(out)}")


def bench_scoring(rec, n_candidates: int = 20, reps: int = 3) -> None:
    from recaudit.recommenders.base import Request

    base = Request.from_prompt(prompts(1)[0] + " Name the one movie you recommend most.", k=1)
    req = Request(base.messages, k=1, candidates=TITLES[:n_candidates])
    rec.score([req])  # warm-up
    t_fast = t_naive = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fast = rec.score([req])[0]
        t_fast = min(t_fast, time.perf_counter() - t0)
        t0 = time.perf_counter()
        naive = rec.score_naive([req])[0]
        t_naive = min(t_naive, time.perf_counter() - t0)
    diff = max(abs(a - b) for a, b in zip(fast, naive))
    print(f"scoring: {n_candidates} candidates, prompt {len(rec.prompt_ids(req))} tokens "
          f"(best of {reps})")
    print(f"  naive {t_naive:8.3f} s   prefix reuse {t_fast:8.3f} s   "
          f"speed-up {t_naive / t_fast:5.2f}x  (target >= 5x)   max |diff| {diff:.2e}")


def bench_utilisation(rec, gen: dict[str, float]) -> None:
    n_params = sum(p.numel() for p in rec.model.parameters())
    flops_per_token = 2 * n_params
    peak = matmul_peak_gflops()
    tok_s = gen["tokens"] / gen["t_batched"]
    achieved = tok_s * flops_per_token / 1e9
    print(f"utilisation: {n_params / 1e6:.1f} M parameters, "
          f"{flops_per_token / 1e9:.3f} GFLOP/token")
    print(f"  fp32 matmul peak (2048^2) {peak:8.1f} GFLOP/s   batched generation {tok_s:8.1f} "
          f"tokens/s = {achieved:6.1f} GFLOP/s = {achieved / peak:6.1%} of peak")


def bench_cache(rec) -> None:
    """Warm-cache vs cold audit: the same FaiRLLM audit twice against one response cache.

    Cold = every request generated; warm = every request read from the SQLite cache (grounding,
    metrics and statistics recomputed as in a real rerun). "warm, fresh process" also recomputes
    the model and catalog fingerprints (what a new ``recaudit audit`` pays); model loading is
    excluded from both sides.
    """
    import tempfile

    from recaudit.audit import run_audit
    from recaudit.catalog import Catalog
    from recaudit.config import parse_config

    from dataclasses import replace

    rec.decoding = replace(rec.decoding, max_new_tokens=96)  # room for a list of 10 titles
    catalog = Catalog.from_movielens()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_config({
            "probes": [{"probe": "counterfactual", "suite": "fairllm", "params": {
                "k": 10, "system": "", "attributes": ["gender", "physics"],
                "subjects": {"source": "catalog_popular", "n": 4}}}],
            "stats": {"n_bootstrap": 1000, "n_permutations": 1000},
            "engine": {"cache": f"{tmp}/cache.sqlite", "progress": False}})
        times = {}
        for label in ("cold", "warm, fresh process", "warm, same process"):
            if label == "warm, fresh process":  # drop per-object memo: as a new process would
                rec._fingerprint = None
                catalog._fingerprint = None
            t = time.perf_counter()
            result = run_audit(cfg, recommender=rec, catalog=catalog, progress=False)
            times[label] = time.perf_counter() - t
        eng = result.provenance.engine
    cold = times["cold"]
    print(f"cache: audit of {eng['unique']} requests: cold {cold:.2f} s; "
          + "; ".join(f"{k} {v:.3f} s = {cold / v:.0f}x" for k, v in times.items() if k != "cold")
          + " (target >= 50x)")


def bench_early_stop(rec, n_prompts: int = 16, max_new_tokens: int = 160) -> None:
    """Early stop on vs off, side by side: the same prompts (k = the number each asks for),
    batched, greedy, ``max_new_tokens`` large enough for a list of up to 10 titles."""
    from dataclasses import replace

    from recaudit.grounding import parse_list
    from recaudit.recommenders.base import Request

    reqs = [Request.from_prompt(p, k=5 + i % 6) for i, p in enumerate(prompts(n_prompts))]
    saved = (rec.decoding, rec.early_stop)
    rec.decoding = replace(rec.decoding, max_new_tokens=max_new_tokens)
    try:
        rec.recommend(reqs[:1])  # warm-up
        runs = {}
        for on in (False, True):
            rec.early_stop = on
            t0 = time.perf_counter()
            out = rec.recommend(reqs)
            runs[on] = (time.perf_counter() - t0, out)
    finally:
        rec.decoding, rec.early_stop = saved
    (t_off, off), (t_on, on) = runs[False], runs[True]
    tok_off = sum(r.n_output_tokens for r in off)
    tok_on = sum(r.n_output_tokens for r in on)
    stopped = sum(bool(r.meta.get("early_stop")) for r in on)
    same = sum(parse_list(a.text)[:q.k] == parse_list(b.text)[:q.k] and b.text.startswith(a.text)
               for q, a, b in zip(reqs, on, off))
    print(f"early stop: {n_prompts} prompts (k = 5..10), max_new_tokens={max_new_tokens}, "
          f"batch_size={rec.batch_size}")
    print(f"  off {tok_off:6d} tokens {t_off:8.2f} s   on {tok_on:6d} tokens {t_on:8.2f} s   "
          f"tokens {tok_on / tok_off:6.1%}   wall time ratio off/on {t_off / t_on:5.2f}x")
    print(f"  rows stopped early {stopped}/{n_prompts}; first k entries equal and text a prefix: "
          f"{same}/{n_prompts}")


# ------------------------------------------------------------------ table rows (make bench)
def _row(what: str, value: float, unit: str, note: str = "") -> dict:
    return {"what": what, "value": value, "unit": unit, "note": note}


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _load(max_new_tokens: int, batch_size: int, **options):
    from recaudit.recommenders.base import Decoding
    from recaudit.recommenders.gguf import GGUFRecommender, bundled_smollm2_path

    return GGUFRecommender(str(bundled_smollm2_path()), Decoding(max_new_tokens=max_new_tokens),
                           batch_size=batch_size, **options)


def _generation_rows(rec, ids: list, peak: float) -> list[dict]:
    """Batched (continuous, tiles) vs one at a time, and the fraction of the fp32 roofline."""
    rec.generate_ids([ids[0]])  # warm-up
    t_batched, batched = _timed(lambda: rec.generate_ids(ids))
    t_single, single = _timed(lambda: [rec.generate_ids([p])[0] for p in ids])
    tokens = sum(len(t) for t, _ in batched)
    same = sum(b == s for b, s in zip(batched, single))
    flops_per_token = 2 * sum(p.numel() for p in rec.model.parameters())
    tok_s = tokens / t_batched
    where = (f"{len(ids)} prompts, {tokens} tokens, batch {rec.batch_size}, "
             f"max_new_tokens {rec.decoding.max_new_tokens}")
    return [
        _row("generation, batched (batch-invariant tiles)", tok_s, "tok/s", where),
        _row("generation, one request at a time", tokens / t_single, "tok/s", where),
        _row("generation, batched / one at a time", t_single / t_batched, "x",
             f"outputs bit-identical: {same}/{len(ids)}"),
        _row("generation, fraction of the fp32 roofline", tok_s * flops_per_token / 1e9 / peak,
             "fraction", f"{tok_s:.1f} tok/s x {flops_per_token / 1e9:.3f} GFLOP/token / "
             f"{peak:.1f} GFLOP/s (torch.matmul 2048^2)"),
    ]


def _continuous_rows(rec, ids: list, ks: list[int]) -> list[dict]:
    """Continuous vs static batching of the same prompts, each stopping after its k-th list
    entry (rows end at different steps; more prompts than slots)."""
    saved = rec.early_stop
    rec.early_stop = True
    try:
        rec.continuous_batching = False
        t_static, static = _timed(lambda: rec.generate_ids(ids, ks))
        rec.continuous_batching = True
        t_cont, cont = _timed(lambda: rec.generate_ids(ids, ks))
    finally:
        rec.early_stop, rec.continuous_batching = saved, True
    stats = rec.generation_stats
    tokens = sum(len(t) for t, _ in cont)
    per_step = stats["decode_rows"] / max(1, stats["decode_steps"])
    note = (f"{len(ids)} prompts, batch {rec.batch_size}, early stop k=1..3, "
            f"{stats['refills']} refills, {per_step:.1f} rows/step; outputs equal: "
            f"{sum(a == b for a, b in zip(cont, static))}/{len(ids)}")
    return [
        _row("generation, continuous batching", tokens / t_cont, "tok/s", note),
        _row("generation, static batching", tokens / t_static, "tok/s", note),
        _row("generation, continuous / static", t_static / t_cont, "x", note),
    ]


def _scoring_rows(rec, n_requests: int, n_candidates: int) -> list[dict]:
    """Candidates of many requests in shared forward passes vs per request (prompt cache reused
    per request, the previous default), and the largest difference to naive scoring."""
    import torch

    from recaudit.recommenders.base import Request

    reqs = [Request(Request.from_prompt(p + " Name the one movie you recommend most.").messages,
                    k=1, candidates=TITLES[i % 3:i % 3 + n_candidates])
            for i, p in enumerate(prompts(n_requests))]
    rec.score(reqs[:1])  # warm-up

    def per_request():
        with torch.inference_mode():
            return [rec._score_causal(rec.prompt_ids(r), [rec.candidate_ids(c)
                                                          for c in r.candidates])
                    for r in reqs]

    t_batched, batched = _timed(lambda: rec.score(reqs))
    t_single, single = _timed(per_request)
    diff = max(abs(a - b) for x, y in zip(batched, single) for a, b in zip(x, y))
    note = (f"{n_requests} requests x {n_candidates} candidates; max |diff| to per-request "
            f"{diff:.1e}")
    n = n_requests * n_candidates
    return [
        _row("scoring, batched across requests", n / t_batched, "candidates/s", note),
        _row("scoring, per request", n / t_single, "candidates/s", note),
        _row("scoring, batched / per request", t_single / t_batched, "x", note),
    ]


def _bf16_rows(fp32, ids: list) -> list[dict]:
    """The same prompts batched with bf16 weights vs fp32, side by side."""
    from recaudit.recommenders.hf import cpu_has_native_bf16

    bf16 = _load(fp32.decoding.max_new_tokens, fp32.batch_size, dtype="bfloat16")
    bf16.generate_ids([ids[0]])
    t_fp32, out32 = _timed(lambda: fp32.generate_ids(ids))
    t_bf16, out16 = _timed(lambda: bf16.generate_ids(ids))
    same = sum(a[0] == b[0] for a, b in zip(out32, out16))
    note = (f"native bf16: {'yes' if cpu_has_native_bf16() else 'no'}; bf16 tiles "
            f"{bf16.tile_rows}; token sequences equal to fp32: {same}/{len(ids)}")
    return [
        _row("generation, bf16", sum(len(t) for t, _ in out16) / t_bf16, "tok/s", note),
        _row("generation, fp32", sum(len(t) for t, _ in out32) / t_fp32, "tok/s", note),
        _row("generation, bf16 / fp32 (wall time)", t_fp32 / t_bf16, "x", note),
    ]


def _compile_rows(ids: list, max_new_tokens: int) -> list[dict]:
    """torch.compile and a static KV cache, measured on plain transformers ``generate`` (greedy,
    left-padded batch, no tiles) side by side with its eager dynamic-cache run: whether either
    is worth carrying into the tiled path. A failure is reported in the note."""
    import torch

    rec = _load(max_new_tokens, len(ids), batching="plain")
    model, pad = rec.model, rec.pad_id
    width = max(len(p) for p in ids)
    batch = torch.tensor([[pad] * (width - len(p)) + p for p in ids])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in ids])
    kwargs = {"attention_mask": mask, "max_new_tokens": max_new_tokens,
              "min_new_tokens": max_new_tokens, "do_sample": False, "pad_token_id": pad}

    def gen(**extra):
        with torch.inference_mode():
            return model.generate(batch, **kwargs, **extra)

    tokens = len(ids) * max_new_tokens
    gen()  # warm-up
    t_eager, _ = _timed(gen)
    rows = [_row("generate (plain), eager dynamic cache", tokens / t_eager, "tok/s",
                 f"{len(ids)} prompts x {max_new_tokens} tokens, transformers generate")]
    for label, extra, compile_ in (("static KV cache", {"cache_implementation": "static"}, False),
                                   ("static KV cache + torch.compile",
                                    {"cache_implementation": "static"}, True)):
        forward = model.forward
        try:
            if compile_:
                model.forward = torch.compile(forward, dynamic=False)
            t_first, _ = _timed(lambda: gen(**extra))  # compiles / allocates
            t, _ = _timed(lambda: gen(**extra))
            rows.append(_row(f"generate (plain), {label} / eager", t_eager / t, "x",
                             f"first call {t_first:.1f} s (compile/allocate)"))
        except Exception as exc:  # noqa: BLE001 - a failure is a finding, not a crash
            rows.append(_row(f"generate (plain), {label} / eager", float("nan"), "x",
                             f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"))
        finally:
            model.forward = forward
    return rows


def run(quick: bool) -> list[dict]:
    """Rows ``{"what", "value", "unit", "note"}`` for the ``make bench`` table: every ratio is
    measured side by side in this run. ``quick``: small sizes (a minute or two)."""
    from dataclasses import replace

    from recaudit.recommenders.base import Request

    n, max_new, batch = (8, 16, 4) if quick else (32, 48, 16)
    rec = _load(max_new, batch)
    ids = [rec.prompt_ids(Request.from_prompt(p)) for p in prompts(n)]
    rows = _generation_rows(rec, ids, matmul_peak_gflops())
    saved = rec.decoding
    rec.decoding = replace(saved, max_new_tokens=48 if quick else 160)
    try:
        rows += _continuous_rows(rec, ids * 2, [1 + i % 3 for i in range(2 * n)])
    finally:
        rec.decoding = saved
    rows += _scoring_rows(rec, 4 if quick else 16, 10 if quick else 20)
    rows += _bf16_rows(rec, ids)
    rows += _compile_rows(ids, 16 if quick else 48)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--early-stop-only", action="store_true",
                        help="run only the early stop on/off row")
    parser.add_argument("--early-stop-tokens", type=int, default=160,
                        help="max_new_tokens of the early stop row")
    parser.add_argument("--rows", action="store_true",
                        help="print only the make-bench table rows (run())")
    parser.add_argument("--quick", action="store_true", help="with --rows: small sizes")
    parser.add_argument("--compile-only", action="store_true",
                        help="with --rows: only the torch.compile / static cache rows")
    args = parser.parse_args(argv)
    if args.rows:
        if args.compile_only:
            from recaudit.recommenders.base import Request

            rec = _load(16, 8)
            rows = _compile_rows([rec.prompt_ids(Request.from_prompt(p)) for p in prompts(8)],
                                 16 if args.quick else 48)
        else:
            rows = run(args.quick)
        for row in rows:
            print(f"{row['what']:<48} {row['value']:>10.3f} {row['unit']:<13} {row['note']}")
        return

    import torch

    from recaudit.recommenders.base import Decoding
    from recaudit.recommenders.gguf import GGUFRecommender, bundled_smollm2_path

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs")
    t0 = time.perf_counter()
    rec = GGUFRecommender(str(bundled_smollm2_path()),
                          Decoding(max_new_tokens=args.max_new_tokens), batch_size=16)
    print(f"load: {time.perf_counter() - t0:.1f} s (from cache: {rec.loaded_from_cache}); "
          f"batch-invariant: {rec.batch_invariance()}")
    if args.early_stop_only:
        bench_early_stop(rec, args.prompts, args.early_stop_tokens)
        return
    bench_tiles(rec)
    gen = bench_generation(rec, args.prompts)
    bench_plain(GGUFRecommender(str(bundled_smollm2_path()),
                                Decoding(max_new_tokens=args.max_new_tokens), batch_size=16,
                                batching="plain"), gen)
    bench_scoring(rec, args.candidates)
    bench_utilisation(rec, gen)
    bench_early_stop(rec, args.prompts, args.early_stop_tokens)
    bench_cache(rec)


if __name__ == "__main__":
    main()
