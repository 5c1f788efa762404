"""Continuous batching (issue 13): a finished row's slot is refilled with the next prompt at once,
and every output (tokens and log-probabilities) stays bit-identical to generating it alone."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from recaudit.errors import ModelSpecError
from recaudit.recommenders.base import Decoding, Request
from recaudit.recommenders.hf import HFRecommender

from . import tiny_models as tm

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = [("I am a female user who likes romance. " * (i % 4 + 1)) + f"Recommend {i + 3} movies."
           for i in range(10)]


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory) -> Path:
    return tm.make_causal(tmp_path_factory.mktemp("tiny_continuous") / "causal")


def _ids(rec: HFRecommender) -> list[list[int]]:
    return [rec.prompt_ids(Request.from_prompt(p)) for p in PROMPTS]


def _with_frequent_stop_token(rec: HFRecommender, prompts: list[list[int]]) -> None:
    """Make a token the random model writes often (not first) its EOS, so rows end at different
    steps and refills happen mid-run."""
    alone = rec.generate_ids(prompts)
    counts = Counter(t for toks, _ in alone for t in toks[1:])
    rec.eos_ids = frozenset({counts.most_common(3)[-1][0]})


def _static_decode_steps(outputs, batch_size: int) -> int:
    """Decode steps static batches (sorted by prompt length, as generate_ids sorts) would take:
    each batch runs until its longest row is done (the first token comes from the prefill)."""
    return sum(max(len(t) for t, _ in outputs[i:i + batch_size]) - 1
               for i in range(0, len(outputs), batch_size))


def test_refilled_rows_are_bit_identical_to_one_at_a_time(causal_dir):
    rec = HFRecommender(str(causal_dir), Decoding(max_new_tokens=16), batch_size=3)
    assert rec.exact_batching and rec.continuous_batching
    prompts = _ids(rec)
    assert len({len(p) for p in prompts}) > 3  # different lengths: merges need re-padding
    _with_frequent_stop_token(rec, prompts)
    alone = [rec.generate_ids([p])[0] for p in prompts]
    lengths = [len(t) for t, _ in alone]
    assert len(set(lengths)) > 2 and max(lengths) == 16  # rows end at different steps
    together = rec.generate_ids(prompts)
    stats = rec.generation_stats
    assert stats["refills"] >= 3  # newcomers joined a batch that was still decoding
    assert together == alone  # tokens and every log-probability, bit for bit
    rec.continuous_batching = False
    static = rec.generate_ids(prompts)
    assert static == alone
    by_length = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    static_steps = _static_decode_steps([alone[i] for i in by_length], rec.batch_size)
    assert stats["decode_steps"] < static_steps  # the decode batch stayed fuller
    assert stats["decode_rows"] == sum(lengths) - len(prompts)


def test_sampling_and_early_stop_with_refills_are_batch_invariant(causal_dir):
    hot = HFRecommender(str(causal_dir), Decoding(max_new_tokens=14, temperature=0.9, seed=3),
                        batch_size=2)
    prompts = _ids(hot)[:7]
    _with_frequent_stop_token(hot, prompts)
    together = hot.generate_ids(prompts)
    assert hot.generation_stats["refills"] >= 2
    assert together == [hot.generate_ids([p])[0] for p in prompts]
    ks = [1, None, 2, 50, 1, None, 3]  # early stop never fires on gibberish: EOS and budget do
    assert hot.generate_ids(prompts, ks) == [hot.generate_ids([p], [k])[0]
                                             for p, k in zip(prompts, ks)]


def test_cache_holds_only_what_active_rows_need(causal_dir):
    """Padding common to all rows is trimmed: the KV length never exceeds the longest prompt
    plus the token budget, however many prompts pass through the slots."""
    rec = HFRecommender(str(causal_dir), Decoding(max_new_tokens=12), batch_size=2)
    prompts = _ids(rec) * 3
    _with_frequent_stop_token(rec, prompts)
    widths: list[int] = []
    handle = rec.model.model.register_forward_pre_hook(
        lambda mod, args, kwargs: widths.append(kwargs["attention_mask"].shape[1]),
        with_kwargs=True)
    try:
        rec.generate_ids(prompts)
    finally:
        handle.remove()
    assert rec.generation_stats["refills"] >= 10
    assert len(widths) > 30
    assert max(widths) <= max(len(p) for p in prompts) + 12


def test_option_is_validated_and_leaves_the_fingerprint(causal_dir):
    on = HFRecommender(str(causal_dir))
    off = HFRecommender(str(causal_dir), continuous_batching=False)
    assert on.fingerprint() == off.fingerprint()  # same outputs, same cached answers
    with pytest.raises(ModelSpecError, match="continuous_batching must be true or false"):
        HFRecommender(str(causal_dir), continuous_batching="yes")


# ----------------------------------------------------------------------------- real SmolLM2
# (record id, k): rows that stop early at different steps, and rows that run to the budget
SMOL_ROWS = (("list-00", 1), ("fan-02", 2), ("fan-00", None), ("list-03", 1), ("json-02", None))


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    from recaudit.recommenders.gguf import GGUFRecommender, bundled_smollm2_path

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECAUDIT_CACHE_DIR", tm.session_cache_root(tmp_path_factory))
        return GGUFRecommender(str(bundled_smollm2_path()), Decoding(max_new_tokens=24),
                               batch_size=2, early_stop=True)


@pytest.mark.integration
def test_smollm2_continuous_batching_is_bit_identical(smollm2):
    rec = smollm2
    assert rec.exact_batching and rec.continuous_batching, rec.batch_invariance()
    records = {r["id"]: r for r in json.loads(
        (ROOT / "tests/data/smollm2_outputs.json").read_text())["records"]}
    prompts = [rec.prompt_ids(Request(records[i]["messages"])) for i, _ in SMOL_ROWS]
    ks = [k for _, k in SMOL_ROWS]
    assert len({len(p) for p in prompts}) == len(prompts)
    together = rec.generate_ids(prompts, ks)
    assert rec.generation_stats["refills"] >= 2
    alone = [rec.generate_ids([p], [k])[0] for p, k in zip(prompts, ks)]
    assert len({len(t) for t, _ in alone}) >= 3  # rows really end at different steps
    assert together == alone
