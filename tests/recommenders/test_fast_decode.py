"""The lean Llama decode step (recaudit.recommenders.hf.fast_decode)."""

from __future__ import annotations

import dataclasses

import pytest

from recaudit.recommenders.base import Decoding, Request
from recaudit.recommenders.hf import HFRecommender
from recaudit.recommenders.hf import fast_decode as fd
from recaudit.recommenders.hf.invariance import establish_batch_invariance

from . import tiny_models as tm

PROMPTS = ["I like romance. Recommend three movies.", "a b c",
           "Recommend ten thrillers from the nineties, please, as a list."]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lean")
    return {"causal": tm.make_causal(root / "causal"), "bart": tm.make_bart(root / "bart")}


@pytest.fixture(scope="module")
def rec(dirs):
    return HFRecommender(str(dirs["causal"]), Decoding(max_new_tokens=12), batch_size=3)


def _lean_or_skip(rec):
    if rec.batching.heights is None:
        pytest.skip("oneDNN heights not established on this CPU: no lean step")
    return rec.batching.lean_decoder


def test_a_llama_decodes_on_the_lean_path_and_says_so(rec):
    lean = _lean_or_skip(rec)
    assert lean is not None, rec.batching.lean_reason
    assert rec.batching.numerics().endswith("-lean2")
    assert "lean Llama path" in rec.batch_invariance()
    ok, diff = lean.agrees_with_forward()
    assert ok and diff < fd.TOLERANCE


def test_lean_generation_follows_the_models_forward(rec):
    """Greedy tokens equal transformers' forward's, log-probs within float rounding."""
    _lean_or_skip(rec)
    ids = [rec.prompt_ids(Request.from_prompt(p)) for p in PROMPTS]
    lean = rec.generate_ids(ids)
    saved = rec.batching
    rec.batching = dataclasses.replace(saved, lean_decoder=None)
    try:
        forward = rec.generate_ids(ids)
    finally:
        rec.batching = saved
    for (t1, lp1), (t2, lp2) in zip(lean, forward, strict=True):
        assert t1 == t2
        assert max(abs(a - b) for a, b in zip(lp1, lp2)) < 1e-4


def test_lean_generation_is_batch_invariant(rec):
    _lean_or_skip(rec)
    ids = [rec.prompt_ids(Request.from_prompt(p)) for p in PROMPTS * 2]
    together = rec.generate_ids(ids)
    assert together == [rec.generate_ids([p])[0] for p in ids]


def test_other_architectures_keep_the_forward(dirs):
    bart = HFRecommender(str(dirs["bart"]), Decoding(max_new_tokens=4), batch_size=2)
    assert bart.batching.lean_decoder is None
    assert "-lean" not in bart.batching.numerics()


def test_a_lean_step_that_disagrees_with_the_forward_is_not_used(dirs, monkeypatch):
    import torch

    rec = HFRecommender(str(dirs["causal"]), Decoding(max_new_tokens=4), batch_size=2)
    _lean_or_skip(rec)
    model = rec.model

    def wrong_norm(h, norm):  # a formula slip: the mean of |x| for the root mean square
        x = h.to(torch.float32)
        return norm.weight * (x / x.abs().mean(-1, keepdim=True)).to(h.dtype)

    monkeypatch.setattr(fd.LeanDecoder, "_rms", staticmethod(wrong_norm))
    again = establish_batch_invariance(model, "auto", None, None)
    assert again.lean_decoder is None
    assert "differ from the forward's" in again.lean_reason
    assert "-lean" not in again.numerics()


def test_the_load_check_covers_the_tail_prefill(dirs, monkeypatch):
    rec = HFRecommender(str(dirs["causal"]), Decoding(max_new_tokens=4), batch_size=2)
    lean = _lean_or_skip(rec)
    real = fd.LeanDecoder.prefill_tails

    def off_by_a_bit(self, *args):  # a slip in the prefill alone: the step is untouched
        return real(self, *args) + 1e-2

    monkeypatch.setattr(fd.LeanDecoder, "prefill_tails", off_by_a_bit)
    ok, diff = lean.agrees_with_forward()
    assert not ok and diff >= 1e-2


def test_a_lean_step_whose_rows_meet_is_not_used(dirs, monkeypatch):
    rec = HFRecommender(str(dirs["causal"]), Decoding(max_new_tokens=4), batch_size=2)
    lean = _lean_or_skip(rec)
    assert lean.keeps_rows_apart()
    real = fd.LeanDecoder._rms

    def mixing_norm(h, norm):  # a batch-wide statistic: each row's result depends on the others
        return real(h, norm) * (1 + 1e-6 * h.mean())

    monkeypatch.setattr(fd.LeanDecoder, "_rms", staticmethod(mixing_norm))
    assert not lean.keeps_rows_apart()
    again = establish_batch_invariance(rec.model, "auto", None, None)
    assert again.lean_decoder is None and "other rows of its batch" in again.lean_reason
    assert "-lean" not in again.numerics()


def test_build_names_why_it_does_not_serve(dirs):
    rec = HFRecommender(str(dirs["causal"]), Decoding(max_new_tokens=4), batch_size=2)
    lean, why = fd.LeanDecoder.build(rec.model, None)
    assert lean is None and "verified heights" in why
    bart = HFRecommender(str(dirs["bart"]), Decoding(max_new_tokens=4), batch_size=2)
    heights = rec.batching.heights
    if heights is not None:
        lean, why = fd.LeanDecoder.build(bart.model, heights)
        assert lean is None and "not a Llama-family" in why


def test_the_cache_grows_in_place_and_survives_reselection():
    import torch

    class Layer:
        pass

    store = Layer()
    store.keys = torch.randn(3, 2, 5, 4)
    first = fd._append(store, "keys", torch.ones(3, 2, 1, 4))
    buffer = store._recaudit_keys
    second = fd._append(store, "keys", 2 * torch.ones(3, 2, 1, 4))
    assert store._recaudit_keys is buffer  # written in place, no new buffer
    assert second.shape == (3, 2, 7, 4) and torch.equal(second[:, :, :6], first)
    assert torch.equal(second[:, :, 6], 2 * torch.ones(3, 2, 4))
    store.keys = store.keys[torch.tensor([2, 0])]  # rows selected: a fresh tensor
    third = fd._append(store, "keys", torch.zeros(2, 2, 1, 4))
    assert store._recaudit_keys is not buffer
    assert torch.equal(third[:, :, :7], second[[2, 0]]) and third.shape == (2, 2, 8, 4)
