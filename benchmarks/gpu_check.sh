#!/usr/bin/env bash
# The GPU check of issue 21 (<= 10 minutes on one GPU), three parts on the bundled SmolLM2
# (GGUF dequantized through transformers, run by the hf adapter with model_options.device):
#   1. the batch-invariance self-check on cuda: the tiles verified on the GPU-resident weights,
#      then 16 prompts generated batched and one at a time (tokens and log-probs equal) and
#      candidates scored batched and alone (scores equal);
#   2. a short audit on cuda: benchmarks/gpu_check.yaml (FaiRLLM counterfactual, 10 subjects);
#      its provenance must name the GPU;
#   3. the generation bench on cuda: 16 and 64 prompts x 48 tokens, batched (tiles) vs one at
#      a time vs plain batching, tokens/s.
# Without CUDA each part says why it is skipped, the refusal of device: cuda is checked (one
# line, exit 2: never a silent CPU run), and parts 1 and 3 run on the CPU at small sizes
# (--quick: not at all, ~15 s). Exit 0 when every check that ran passed.
#
#   benchmarks/gpu_check.sh [--quick]     GPU_CHECK_OUT=DIR (audit output), PYTHON=python
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
OUT=${GPU_CHECK_OUT:-out/gpu-check}
FAILED=0
T0=$(date +%s)

say() { printf '[gpu_check] %s\n' "$*"; }
step() { say "$1: $2 ($(( $(date +%s) - T0 )) s)"; }
fail() { say "FAIL: $*"; FAILED=1; }

CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
if [ "$CUDA" = 1 ]; then
    DEVICE=cuda
    "$PY" -c "import torch; p = torch.cuda.get_device_properties(0); \
print(f'[gpu_check] device: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, \
CUDA {torch.version.cuda}')"
    N_CHECK=16; TOKENS=48; BENCH_SIZES="16 64"
else
    DEVICE=cpu
    WHY="torch.cuda.is_available() is False on this machine"
    N_CHECK=4; TOKENS=8; BENCH_SIZES="4"
fi

# --- the Python of parts 1 and 3: `check DEVICE N TOKENS` or `bench DEVICE TOKENS SIZES...`
run_py() {
    "$PY" - "$@" <<'PY'
import sys
import time

sys.path.insert(0, "benchmarks")
from recaudit.recommenders import load_recommender  # noqa: E402
from recaudit.recommenders.base import Decoding, Request  # noqa: E402

try:
    from bench_inference import prompts
except ImportError:  # the bench's prompt list moved: the same shape of prompt
    def prompts(n):
        return [f"I am fan number {i} of action movies. Recommend {5 + i % 6} movies I should "
                "watch next, as a numbered list with years." for i in range(n)]

what, device, *rest = sys.argv[1:]


def load(tokens, **options):
    t0 = time.perf_counter()
    rec = load_recommender("smollm2", Decoding(max_new_tokens=tokens), device=device, **options)
    print(f"  loaded in {time.perf_counter() - t0:.1f} s on {rec.device}; batch-invariant: "
          f"{rec.batch_invariance()}", flush=True)
    return rec


def timed(fn):
    if device == "cuda":
        import torch
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


if what == "check":
    n, tokens = int(rest[0]), int(rest[1])
    rec = load(tokens)
    print(f"  fingerprint {rec.fingerprint()[:16]}")
    ok = rec.exact_batching and rec.device == device
    reqs = [Request.from_prompt(p) for p in prompts(n)]
    ids = [rec.prompt_ids(r) for r in reqs]
    batched = rec.generate_ids(ids)
    alone = [rec.generate_ids([p])[0] for p in ids]
    same = sum(b == a for b, a in zip(batched, alone))
    print(f"  generation, batched vs one at a time: {same}/{n} identical (tokens and log-probs)")
    titles = ["The Matrix (1999)", "Heat (1995)", "Toy Story (1995)", "Fargo (1996)"]
    scoring = [Request(r.messages, k=r.k, candidates=titles[: 2 + i % 3])
               for i, r in enumerate(reqs)]
    scores = rec.score(scoring)
    scored_same = sum(rec.score([r])[0] == s for r, s in zip(scoring, scores))
    print(f"  scoring, batched vs alone: {scored_same}/{n} identical")
    sys.exit(0 if ok and same == n and scored_same == n else 1)

tokens, sizes = int(rest[0]), [int(s) for s in rest[1:]]
rec = load(tokens)
plain = load(tokens, batching="plain")
for n in sizes:
    ids = [rec.prompt_ids(Request.from_prompt(p)) for p in prompts(n)]
    rec.generate_ids(ids[:1])  # warm-up
    plain.generate_ids(ids[:1])
    t_b, batched = timed(lambda: rec.generate_ids(ids))
    t_1, alone = timed(lambda: [rec.generate_ids([p])[0] for p in ids])
    t_p, plained = timed(lambda: plain.generate_ids(ids))
    tok = sum(len(t) for t, _ in batched)
    same = sum(b == a for b, a in zip(batched, alone))
    print(f"  {n} prompts x {tokens} tokens on {device}: batched (tiles) {tok / t_b:8.1f} tok/s; "
          f"one at a time {sum(len(t) for t, _ in alone) / t_1:8.1f} tok/s "
          f"({t_1 / t_b:.2f}x); plain batching (not invariant) "
          f"{sum(len(t) for t, _ in plained) / t_p:8.1f} tok/s; batched = alone: {same}/{n}",
          flush=True)
PY
}

# --- 1. invariance self-check ------------------------------------------------------------
if [ "$DEVICE" = cuda ]; then
    step 1 "invariance self-check on cuda"
    run_py check cuda "$N_CHECK" "$TOKENS" || fail "invariance self-check on cuda"
else
    step 1 "skip the invariance self-check on cuda: $WHY"
    if [ "$QUICK" = 0 ]; then
        say "   running it on the cpu instead ($N_CHECK prompts x $TOKENS tokens)"
        run_py check cpu "$N_CHECK" "$TOKENS" || fail "invariance self-check on cpu"
    fi
fi

# --- 2. a short audit -------------------------------------------------------------------
if [ "$DEVICE" = cuda ]; then
    step 2 "audit benchmarks/gpu_check.yaml on cuda -> $OUT"
    "$PY" -m recaudit audit benchmarks/gpu_check.yaml --out "$OUT" --no-progress
    rc=$?
    if [ "$rc" != 0 ]; then
        fail "audit exit $rc"
    elif ! "$PY" -c "import json, sys; line = json.load(open(sys.argv[1]))['provenance']\
['batch_invariance']; print('[gpu_check]   provenance:', line); sys.exit('device cuda' not in line)" \
            "$OUT/results.json"; then
        fail "the audit's provenance does not name the cuda device"
    fi
else
    step 2 "skip the audit on cuda: $WHY"
    say "   checking that device: cuda is refused in one line (exit 2), not run on the cpu"
    ERR=$("$PY" -m recaudit audit benchmarks/gpu_check.yaml --dry-run --no-progress 2>&1 >/dev/null)
    rc=$?
    say "   exit $rc: $ERR"
    if [ "$rc" != 2 ] || [ "$(printf '%s\n' "$ERR" | wc -l)" != 1 ] \
            || ! printf '%s' "$ERR" | grep -q "device is cuda"; then
        fail "device: cuda without CUDA was not a one-line exit 2"
    fi
fi

# --- 3. generation bench ------------------------------------------------------------------
if [ "$DEVICE" = cuda ]; then
    step 3 "generation bench on cuda"
    # shellcheck disable=SC2086
    run_py bench cuda "$TOKENS" $BENCH_SIZES || fail "generation bench on cuda"
else
    step 3 "skip the generation bench on cuda: $WHY"
    if [ "$QUICK" = 0 ]; then
        say "   running it on the cpu instead (sizes: $BENCH_SIZES prompts x $TOKENS tokens)"
        # shellcheck disable=SC2086
        run_py bench cpu "$TOKENS" $BENCH_SIZES || fail "generation bench on cpu"
    fi
fi

step done "$([ "$FAILED" = 0 ] && echo "every check passed" || echo "a check failed")"
exit "$FAILED"
