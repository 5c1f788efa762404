"""Continuous batching (issue 13): a finished row's slot is refilled with the next prompt at once,
and every output (tokens and log-probabilities) stays bit-identical to generating it alone."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from recaudit.errors import ModelSpecError
from recaudit.recommenders.base import Decoding, Request
from recaudit.recommenders.hf import HFRecommender

from . import tiny_models as tm

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = [("I am a female user who likes romance. " * (i % 4 + 1)) + f"Recommend {i + 3} movies."
           for i in range(6)]
MAX_NEW = 12


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory) -> Path:
    return tm.make_causal(tmp_path_factory.mktemp("tiny_continuous") / "causal")


def _stop_token(outputs) -> frozenset[int]:
    """The token (after the first) that would end the rows of ``outputs`` at the most different
    steps, as an EOS set."""
    free = [toks for toks, _ in outputs]

    def ends(tok: int) -> list[int]:
        return [toks.index(tok, 1) + 1 if tok in toks[1:] else MAX_NEW for toks in free]

    return frozenset({max(sorted({t for toks in free for t in toks[1:]}),
                          key=lambda t: len(set(ends(t))))})


@pytest.fixture(scope="module")
def tiny(causal_dir):
    """The tiny model (batch size 2: every finished row is refilled at once), its prompts
    and their one-at-a-time outputs.

    The token that ends the rows at the most different steps is made the EOS, so refills
    happen mid-run.
    """
    rec = HFRecommender(str(causal_dir), Decoding(max_new_tokens=MAX_NEW), batch_size=2)
    prompts = [rec.prompt_ids(Request.from_prompt(p)) for p in PROMPTS]
    rec.eos_ids = _stop_token(rec.generate_ids(prompts))
    alone = [rec.generate_ids([p])[0] for p in prompts]
    return rec, prompts, alone


def test_refilled_rows_are_bit_identical_to_one_at_a_time(tiny):
    rec, prompts, alone = tiny
    assert rec.exact_batching and rec.continuous_batching
    assert len({len(p) for p in prompts}) > 3  # different lengths: merges need re-padding
    lengths = [len(t) for t, _ in alone]
    assert len(set(lengths)) > 2 and max(lengths) == MAX_NEW  # rows end at different steps
    together = rec.generate_ids(prompts)
    stats = rec.generation_stats
    assert stats["refills"] >= 3  # newcomers joined a batch that was still decoding
    assert together == alone  # tokens and every log-probability, bit for bit
    assert stats["decode_rows"] == sum(lengths) - len(prompts)  # no row decoded past its end
    assert stats["decode_rows"] > stats["decode_steps"]  # rows decoded together
    rec.continuous_batching = False
    try:
        assert rec.generate_ids(prompts) == alone
    finally:
        rec.continuous_batching = True


def test_cache_holds_only_what_active_rows_need(tiny, monkeypatch):
    """Padding common to all rows is trimmed: the KV length never exceeds the longest prompt
    plus the token budget and the room for one key block (KEY_BLOCK positions, kept so the
    next block is read in place), however many prompts pass through the slots."""
    from recaudit.recommenders.hf.decode_attention import KEY_BLOCK

    rec, prompts, alone = tiny
    widths: list[int] = []
    run = rec._run

    def recording(phase, **inputs):
        widths.append(inputs["attention_mask"].shape[1])
        return run(phase, **inputs)

    monkeypatch.setattr(rec, "_run", recording)
    assert rec.generate_ids(prompts * 2) == alone * 2
    assert rec.generation_stats["refills"] >= 3
    assert len(widths) > 30
    assert max(widths) <= max(len(p) for p in prompts) + MAX_NEW + KEY_BLOCK


def test_sampling_and_early_stop_with_refills_are_batch_invariant(tiny):
    rec, prompts, _ = tiny
    greedy, eos = rec.decoding, rec.eos_ids
    rec.decoding = replace(greedy, temperature=0.9, seed=3)
    try:
        rec.eos_ids = frozenset()
        rec.eos_ids = _stop_token(rec.generate_ids(prompts))
        together = rec.generate_ids(prompts)
        assert rec.generation_stats["refills"] >= 2
        assert together == [rec.generate_ids([p])[0] for p in prompts]
    finally:
        rec.decoding, rec.eos_ids = greedy, eos
    ks = [1, None, 2, 50, 1, None]  # early stop never fires on gibberish: EOS and budget do
    assert rec.generate_ids(prompts, ks) == [rec.generate_ids([p], [k])[0]
                                             for p, k in zip(prompts, ks)]


def test_refills_enter_in_whole_prefill_tiles(tiny, causal_dir):
    on_heights = tiny[0]
    if on_heights.batching.heights is not None:  # a prefill costs its rows: no tile to fill
        on_heights.batch_size = 16
        try:
            assert on_heights._refill_count(15, [[1] * 10] * 20) == 1
        finally:
            on_heights.batch_size = 2
    rec = HFRecommender(str(causal_dir), prefill_rows=64)  # prefill on BLAS tiles of 64 rows
    m_p = rec.tile_rows[0]
    assert m_p == 64
    rec.batch_size = 16
    try:
        short, tile = [[1] * 10], [[1] * m_p]
        assert rec._refill_count(0, short * 20) == 16  # nothing decoding: fill every slot
        assert rec._refill_count(16, short * 20) == 0  # no free slot
        assert rec._refill_count(15, short * 20) == 0  # one short prompt: wait for more slots
        assert rec._refill_count(15, tile * 20) == 1  # it fills a prefill tile alone
        assert rec._refill_count(15, short) == 1  # the last prompt: nothing to wait for
        assert rec._refill_count(8, short * 20) == 8  # half the slots free
        third = [[1] * (m_p // 3 + 1)]
        assert rec._refill_count(12, third * 20) == 2  # 3 would spill into a second tile
    finally:
        rec.batch_size = 2


def test_option_is_validated_and_leaves_the_fingerprint(tiny, causal_dir):
    rec = tiny[0]
    off = HFRecommender(str(causal_dir), continuous_batching=False)
    assert rec.fingerprint() == off.fingerprint()  # same outputs, same cached answers
    with pytest.raises(ModelSpecError, match="continuous_batching must be true or false"):
        HFRecommender(str(causal_dir), continuous_batching="yes")


def test_auto_batch_size_follows_the_hardware_and_never_the_numerics(tiny, causal_dir,
                                                                    monkeypatch):
    from recaudit.recommenders.hf import sizing

    rec, prompts, _ = tiny
    monkeypatch.setattr(sizing, "_usable_cores", lambda: 4)
    monkeypatch.setattr(sizing, "_free_memory_bytes", lambda: 64 * 2 ** 30)
    auto = HFRecommender(str(causal_dir), Decoding(max_new_tokens=MAX_NEW))
    m_d = auto.batching.decode_rows or 1  # None: decode on verified heights
    want = min(4 * sizing._ROWS_PER_CORE, sizing._CPU_ROWS_CAP)
    assert auto.batch_size == -(-want // m_d) * m_d  # rows per core, whole decode tiles
    assert f"batch size {auto.batch_size} (auto: 4 cores)" in \
        auto.batch_invariance()
    assert "auto" not in rec.batch_invariance()  # set by the user: nothing to record
    monkeypatch.setattr(sizing, "_free_memory_bytes", lambda: 100_000)  # memory bounds the rows
    rows, why = sizing.auto_batch_size(auto.model, m_d, MAX_NEW)
    assert 1 <= rows < auto.batch_size and why == "auto: 4 cores, capped by free memory"
    assert auto.fingerprint() == rec.fingerprint()
    auto.eos_ids = rec.eos_ids
    assert auto.generate_ids(prompts) == rec.generate_ids(prompts)


def test_bfloat16_is_opt_in_fingerprinted_and_batch_invariant(tiny, causal_dir):
    import torch

    rec, prompts, _ = tiny
    bf16 = HFRecommender(str(causal_dir), Decoding(max_new_tokens=8), batch_size=2,
                         dtype="bfloat16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    assert bf16.exact_batching  # the tile self-check ran on the bf16 weights
    assert bf16.fingerprint() != rec.fingerprint()
    assert "weights bfloat16" in bf16.batch_invariance()
    together = bf16.generate_ids(prompts[:4])
    assert together == [bf16.generate_ids([p])[0] for p in prompts[:4]]
    with pytest.raises(ModelSpecError, match="dtype must be one of"):
        HFRecommender(str(causal_dir), dtype="float16")


# ----------------------------------------------------------------------------- real SmolLM2
# (record id, k): rows that stop early at different steps, and rows that run to the budget
SMOL_ROWS = (("list-00", 1), ("list-01", 1), ("fan-00", None), ("list-03", 1))


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    return tm.load_smollm2(tmp_path_factory, 16, batch_size=2, early_stop=True)


@pytest.mark.integration
def test_smollm2_continuous_batching_is_bit_identical(smollm2):
    rec = smollm2
    assert rec.exact_batching and rec.continuous_batching, rec.batch_invariance()
    records = {r["id"]: r for r in json.loads(
        (ROOT / "tests/data/smollm2_outputs.json").read_text())["records"]}
    prompts = [rec.prompt_ids(Request(records[i]["messages"])) for i, _ in SMOL_ROWS]
    ks = [k for _, k in SMOL_ROWS]
    assert len({len(p) for p in prompts}) >= 3  # merges need re-padding
    together = rec.generate_ids(prompts, ks)
    assert rec.generation_stats["refills"] >= 1
    alone = [rec.generate_ids([p], [k])[0] for p, k in zip(prompts, ks)]
    assert len({len(t) for t, _ in alone}) >= 3  # rows really end at different steps
    assert together == alone
