"""Benchmark: recaudit batched generation vs llama.cpp one prompt at a time, same GGUF file.

Both sides take the bundled SmolLM2-135M-Instruct Q4_1 GGUF (``bundled_smollm2_path``), the
same chat-templated prompts (recaudit's token ids; llama.cpp gets those ids, or their text where
its binding takes text only), the same ``max_new_tokens``, greedy decoding, the same thread
count. recaudit runs the prompts as one batch (dequantized fp32, its batch-invariant tiles);
llama.cpp runs them one after the other (its Q4_1 kernels), as a sequential audit would.
Reported: tokens/s of each and the ratio recaudit / llama.cpp (issue-13 target >= 3x).

llama.cpp bindings, first found wins (neither is installed by ``make test`` or ``make bench``):

* ``llama_cpp`` (llama-cpp-python): PyPI has only its source, which compiles for 15+ minutes;
* ``llama_cpp_py_sync`` (llama-cpp-py-sync): a prebuilt manylinux x86-64 wheel (CFFI over
  ``libllama.so``); its shared libraries need glibc >= 2.38 (Debian 12 has 2.36).

    python benchmarks/bench_llamacpp.py [--prompts 16] [--max-new-tokens 48] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

NOT_INSTALLED = ("llama.cpp not installed: neither llama_cpp (pip install llama-cpp-python, "
                 "compiles 15+ min) nor llama_cpp_py_sync (prebuilt, needs glibc >= 2.38) "
                 "imports; make bench does not install it")


def load_llamacpp(gguf: str, threads: int, n_ctx: int = 1024
                  ) -> tuple[str, Callable[[list[int], str, int], int]]:
    """(binding name, generate(prompt_ids, prompt_text, max_tokens) -> tokens generated).

    Raises ImportError when no binding imports, RuntimeError when one imports but cannot load
    its library or the model.
    """
    try:
        import llama_cpp
    except ImportError:
        llama_cpp = None
    if llama_cpp is not None:
        llm = llama_cpp.Llama(model_path=gguf, n_ctx=n_ctx, n_threads=threads,
                              n_threads_batch=threads, seed=0, verbose=False)

        def generate(ids: list[int], text: str, max_tokens: int) -> int:
            llm.reset()  # no prompt-prefix reuse across prompts: each request stands alone
            out = llm.create_completion(ids, max_tokens=max_tokens, temperature=0.0, top_k=1,
                                        repeat_penalty=1.0)
            return int(out["usage"]["completion_tokens"])

        return f"llama-cpp-python {llama_cpp.__version__}", generate
    try:
        import llama_cpp_py_sync as sync

        llm = sync.Llama(gguf, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                         verbose=False)
    except ImportError:
        raise ImportError(NOT_INSTALLED) from None
    except Exception as exc:  # noqa: BLE001 -- e.g. its libllama.so needs a newer glibc
        raise RuntimeError("llama_cpp_py_sync is installed but cannot run here: "
                           + " ".join(str(exc).split())[:200]) from None

    def generate_text(ids: list[int], text: str, max_tokens: int) -> int:
        out = llm.generate(text, max_tokens=max_tokens, temperature=0.0, top_k=1,
                           repeat_penalty=1.0, seed=0)
        # the binding returns text only: count its tokens by re-tokenizing it
        return len(llm.tokenize(out, add_special=False)) if out else 0

    return f"llama-cpp-py-sync {sync.__version__} (llama.cpp {sync.__llama_cpp_tag__})", \
        generate_text


def recaudit_batched(rec: Any, ids: list[list[int]]) -> tuple[list[list[int]], float]:
    """(new token ids per prompt, seconds) of one batched ``generate_ids`` call after a
    warm-up."""
    rec.generate_ids([ids[0]])
    t0 = time.perf_counter()
    out = rec.generate_ids(ids)
    return [list(toks) for toks, _ in out], time.perf_counter() - t0


def run(quick: bool = False, rec: Any = None, n_prompts: int | None = None,
        max_new_tokens: int | None = None, recaudit_measured: tuple[int, float] | None = None
        ) -> list[dict]:
    """Rows {what, value, unit, note, key}; ``rec`` / ``recaudit_measured`` (tokens, seconds of
    the same prompts batched) let a caller share its model and its measurement."""
    import torch

    from bench_inference import prompts

    from recaudit.recommenders.base import Decoding, Request
    from recaudit.recommenders.gguf import GGUFRecommender, bundled_smollm2_path

    n_prompts = n_prompts or 16
    gguf = str(bundled_smollm2_path())
    threads = torch.get_num_threads()
    try:
        binding, generate = load_llamacpp(gguf, threads)
    except (ImportError, RuntimeError) as exc:
        return [{"what": "recaudit batched vs llama.cpp sequential", "value": None, "unit": "x",
                 "note": str(exc), "key": "vs_llamacpp"}]
    if rec is None:
        rec = GGUFRecommender(gguf, Decoding(max_new_tokens=max_new_tokens or
                                             (8 if quick else 48)), batch_size=16)
    budget = rec.decoding.max_new_tokens
    ids = [rec.prompt_ids(Request.from_prompt(p)) for p in prompts(n_prompts)]
    texts = [rec.tokenizer.decode(p) for p in ids]
    generate(ids[0], texts[0], budget)  # warm-up
    t0 = time.perf_counter()
    lc_tokens = sum(generate(p, t, budget) for p, t in zip(ids, texts))
    lc_s = time.perf_counter() - t0
    if recaudit_measured is None:
        outs, ra_s = recaudit_batched(rec, ids)
        recaudit_measured = (sum(len(t) for t in outs), ra_s)
    ra_tokens, ra_s = recaudit_measured
    lc_rate, ra_rate = lc_tokens / lc_s, ra_tokens / ra_s
    setup = f"{n_prompts} prompts, max_new_tokens {budget}, greedy, {threads} threads"
    return [
        {"what": "llama.cpp, one prompt at a time", "value": round(lc_rate, 1), "unit": "tok/s",
         "note": f"{binding}; {lc_tokens} tokens in {lc_s:.2f} s; {setup}"},
        {"what": "recaudit batched vs llama.cpp sequential", "value": round(ra_rate / lc_rate, 2),
         "unit": "x", "key": "vs_llamacpp",
         "note": f"recaudit {ra_rate:.1f} tok/s ({ra_tokens} tokens, batch {rec.batch_size}) vs "
                 f"llama.cpp {lc_rate:.1f} tok/s; same GGUF; {setup}"},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for row in run(args.quick, n_prompts=args.prompts, max_new_tokens=args.max_new_tokens):
        print(f"{row['what']}: {row['value']} {row['unit']}   {row['note']}")


if __name__ == "__main__":
    main()
