"""The chat template's opening prefilled once (recaudit.recommenders.hf.shared_head)."""

from __future__ import annotations

import pytest

from recaudit.recommenders.base import Decoding, Request
from recaudit.recommenders.hf import HFRecommender
from recaudit.recommenders.hf import shared_head as sh

from . import tiny_models as tm

# a template that, like SmolLM2's, adds a default system prompt when the request has none
DEFAULT_SYSTEM = (
    "{% if messages[0]['role'] != 'system' %}<s>system\nYou are a helpful movie recommender "
    "who answers in lists</s>\n{% endif %}"
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}")
PROMPTS = ["I like romance. Recommend three movies.", "a b c",
           "Recommend ten thrillers from the nineties, please, as a list."]


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory):
    return tm.make_causal(tmp_path_factory.mktemp("head") / "causal")


def _tokenizer(path, template=DEFAULT_SYSTEM):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    tok.chat_template = template
    return tok


@pytest.fixture(scope="module")
def rec(causal_dir):
    return HFRecommender(str(causal_dir), Decoding(max_new_tokens=10), batch_size=3,
                         tokenizer=_tokenizer(causal_dir))


def _ids(rec):
    reqs = [Request.from_prompt(p) for p in PROMPTS]
    reqs.append(Request.from_prompt(PROMPTS[0], system="Be terse."))  # its own opening
    return [rec.prompt_ids(r) for r in reqs]


def test_the_head_is_what_the_template_puts_before_the_users_words(causal_dir):
    tok = _tokenizer(causal_dir)
    head = sh.find_head(tok)
    text = tok.apply_chat_template([{"role": "user", "content": "Zebra"}],
                                   add_generation_prompt=True, tokenize=False)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert head is not None and len(head) >= sh.MIN_HEAD and ids[:len(head)] == head
    assert "Zebra" not in tok.decode(head) and "movie recommender" in tok.decode(head)
    assert sh.find_head(_tokenizer(causal_dir, tm.CHAT_TEMPLATE)) is None  # 3 tokens: too short
    assert sh.find_head(_tokenizer(causal_dir, None)) is None  # no template


def test_left_align_moves_each_rows_keys_to_the_end():
    import torch

    class Layer:
        pass

    class Cache:
        layers = [Layer()]

    layer = Cache.layers[0]
    layer.keys = torch.arange(2 * 1 * 5 * 1, dtype=torch.float32).reshape(2, 1, 5, 1)
    layer.values = -layer.keys
    pads = sh.left_align(Cache, [3, 5], 5)
    assert pads == [2, 0]
    assert layer.keys[0, 0, 2:, 0].tolist() == [0.0, 1.0, 2.0]  # row 0's 3 keys, now last
    assert layer.keys[1, 0, :, 0].tolist() == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert torch.equal(layer.values, -layer.keys)


def test_shared_head_generation_is_bit_identical_to_one_at_a_time(rec):
    if rec.shared_head is None:
        pytest.skip("no lean decode path on this CPU: the head is not shared")
    ids = _ids(rec)
    head = rec.shared_head
    assert [p[:len(head)] == head for p in ids] == [True, True, True, False]
    alone = [rec.generate_ids([p])[0] for p in ids * 2]
    assert rec.generate_ids(ids * 2) == alone  # mixed: shared-head rows and a whole prompt
    rec.continuous_batching = False
    try:
        assert rec.generate_ids(ids * 2) == alone
    finally:
        rec.continuous_batching = True


def test_the_split_prefill_follows_the_whole_prefill_and_is_fingerprinted(rec, causal_dir):
    if rec.shared_head is None:
        pytest.skip("no lean decode path on this CPU: the head is not shared")
    ids = _ids(rec)
    split = rec.generate_ids(ids)
    whole = HFRecommender(str(causal_dir), Decoding(max_new_tokens=10), batch_size=3,
                          tokenizer=_tokenizer(causal_dir))
    whole.shared_head = None
    plain = whole.generate_ids(ids)
    for (t1, lp1), (t2, lp2) in zip(split, plain, strict=True):
        assert t1 == t2 and max(abs(a - b) for a, b in zip(lp1, lp2)) < 1e-4
    assert rec._numerics().endswith(f"-h{len(rec.shared_head)}")
    assert f"first {len(rec.shared_head)} tokens prefilled once" in rec.batch_invariance()
    assert whole._numerics() != rec._numerics()


def test_the_head_is_prefilled_once(rec, monkeypatch):
    if rec.shared_head is None:
        pytest.skip("no lean decode path on this CPU: the head is not shared")
    rec._head_kv = None
    heads = []
    run = rec._run

    def counting(phase, **inputs):
        if inputs["input_ids"].tolist() == [rec.shared_head]:
            heads.append(phase)
        return run(phase, **inputs)

    monkeypatch.setattr(rec, "_run", counting)
    ids = _ids(rec)
    rec.generate_ids(ids)
    rec.generate_ids(ids[:1])
    assert heads == ["prefill"]


def test_without_the_lean_path_the_head_is_not_shared(rec):
    """The head's tails run on the lean prefill: with the lean step off, prompts are prefilled
    whole, the numerics say so, and generation stays batch-invariant."""
    import dataclasses

    if rec.shared_head is None:
        pytest.skip("no lean decode path on this CPU: the head is not shared")
    ids = _ids(rec)
    lean = rec.generate_ids(ids)
    saved = rec.batching
    rec.batching = dataclasses.replace(saved, lean_decoder=None)
    try:
        assert rec.shared_head is None and "-h" not in rec._numerics()
        assert "prefilled once" not in rec.batch_invariance()
        forward = rec.generate_ids(ids)
        assert forward == [rec.generate_ids([p])[0] for p in ids]
    finally:
        rec.batching = saved
    assert rec.shared_head is not None
    for (t1, lp1), (t2, lp2) in zip(lean, forward, strict=True):
        assert t1 == t2 and max(abs(a - b) for a, b in zip(lp1, lp2)) < 1e-4
