"""The lean decode step compiled by torch.compile (recaudit.recommenders.hf.compiled_step)."""

from __future__ import annotations

import shutil

import pytest

from recaudit.errors import ModelSpecError
from recaudit.recommenders.base import Decoding, Request
from recaudit.recommenders.hf import HFRecommender
from recaudit.recommenders.hf import compiled_step as cs

from . import tiny_models as tm

PROMPTS = ["I like romance. Recommend three movies.", "a b c",
           "Recommend ten thrillers from the nineties, please, as a list.",
           "Five comedies?"]


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return tm.make_causal(tmp_path_factory.mktemp("compiled") / "causal")


@pytest.fixture(scope="module")
def eager(path):
    return HFRecommender(str(path), Decoding(max_new_tokens=10), batch_size=4)


@pytest.fixture(scope="module")
def compiled(path, eager):
    if eager.batching.lean_decoder is None:
        pytest.skip(f"no lean step on this CPU: {eager.batching.lean_reason}")
    return HFRecommender(str(path), Decoding(max_new_tokens=10), batch_size=4, compile=True)


def _has_cpp_compiler() -> bool:
    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))


def test_the_compiled_step_serves_and_says_so(compiled):
    if not _has_cpp_compiler():  # the documented fallback, with its reason
        assert compiled.compile_reason.startswith("torch.compile failed")
        assert compiled.batching.lean_decoder.compiled is None
        return
    assert compiled.compile_reason == ""
    assert compiled.batching.numerics().endswith("-lean2c")
    assert "(compiled by torch.compile)" in compiled.batch_invariance()


def test_compiled_generation_keeps_rows_apart_and_follows_the_eager_step(compiled, eager):
    if compiled.batching.lean_decoder.compiled is None:
        pytest.skip(compiled.compile_reason)
    ids = [compiled.prompt_ids(Request.from_prompt(p)) for p in PROMPTS]
    together = compiled.generate_ids(ids)
    for i, one in enumerate(ids):
        assert compiled.generate_ids([one]) == [together[i]]  # bit for bit
    for (t1, lp1), (t2, lp2) in zip(together, eager.generate_ids(ids), strict=True):
        assert t1 == t2
        assert max(abs(a - b) for a, b in zip(lp1, lp2)) < 1e-4
    # other numerics: another fingerprint, so cached answers never mix
    assert compiled.fingerprint() != eager.fingerprint()


def test_a_failed_compile_leaves_the_eager_step_and_says_why(path, eager, monkeypatch):
    if eager.batching.lean_decoder is None:
        pytest.skip(f"no lean step on this CPU: {eager.batching.lean_reason}")

    def broken(self, *args):
        raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found\nmore")

    monkeypatch.setattr(cs.CompiledStep, "step", broken)
    rec = HFRecommender(str(path), Decoding(max_new_tokens=4), compile=True)
    assert rec.compile_reason == ("torch.compile failed: RuntimeError: InvalidCxxCompiler: no "
                                  "working C++ compiler found")
    assert rec.batching.lean_decoder.compiled is None
    assert rec.batching.numerics().endswith("-lean2")
    assert "compile: off (torch.compile failed" in rec.batch_invariance()
    assert not cs._STEPS or all(s.lean is not rec.batching.lean_decoder
                                for s in cs._STEPS.values())
    ids = [rec.prompt_ids(Request.from_prompt(p)) for p in PROMPTS[:2]]
    assert rec.generate_ids(ids) == HFRecommender(
        str(path), Decoding(max_new_tokens=4)).generate_ids(ids)


def test_a_compiled_step_that_mixes_rows_is_refused(path, eager, monkeypatch):
    if eager.batching.lean_decoder is None:
        pytest.skip(f"no lean step on this CPU: {eager.batching.lean_reason}")
    from recaudit.recommenders.hf import fast_decode as fd

    real = fd.LeanDecoder.keeps_rows_apart
    monkeypatch.setattr(fd.LeanDecoder, "keeps_rows_apart",
                        lambda self: self.compiled is None and real(self))
    monkeypatch.setattr(cs.CompiledStep, "step", lambda self, *a: self.lean._eager_step(*a))
    rec = HFRecommender(str(path), Decoding(max_new_tokens=4), compile=True)
    assert rec.compile_reason == "a row's compiled step depends on the other rows of its batch"
    assert rec.batching.lean_decoder.compiled is None


def test_compile_must_be_a_boolean(path):
    with pytest.raises(ModelSpecError, match="compile must be true or false, got 'yes'"):
        HFRecommender(str(path), compile="yes")
