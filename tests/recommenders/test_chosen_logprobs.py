"""Chosen tokens' log-probabilities, all rows at once (recaudit.recommenders.hf.chosen_logprobs)."""

import pytest

from recaudit.recommenders.hf import chosen_logprobs as C


def _logits(n, vocab, seed=0):
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, vocab, generator=gen) * 4


@pytest.mark.parametrize("n,vocab", [(1, 50), (5, 1000), (64, 49152)])
def test_each_row_gets_its_log_softmax_alone(n, vocab):
    import torch

    logits = _logits(n, vocab)
    tokens = [(7 * j) % vocab for j in range(n)]
    got = C.chosen_log_probs(logits, tokens)
    assert got == [float(torch.log_softmax(logits[j], dim=-1)[t]) for j, t in enumerate(tokens)]
    # and what log(p) says in float64, to float32 precision
    probs = torch.softmax(logits.double(), dim=-1)
    assert got == pytest.approx([float(probs[j, t].log()) for j, t in enumerate(tokens)],
                                rel=1e-5)


def test_no_rows_no_log_probs():
    assert C.chosen_log_probs(_logits(0, 10), []) == []


def test_the_batched_call_is_checked_once_and_used(monkeypatch):
    import torch

    monkeypatch.setattr(C, "_VERIFIED", {})
    calls = []
    real = C._batched_is_exact
    monkeypatch.setattr(C, "_batched_is_exact", lambda *a: calls.append(a) or real(*a))
    C.chosen_log_probs(_logits(3, 300), [1, 2, 3])
    C.chosen_log_probs(_logits(4, 300), [1, 2, 3, 4])
    assert len(calls) == 1
    assert C._VERIFIED == {(300, torch.float32, "cpu", torch.get_num_threads()): True}


def test_a_kernel_that_mixes_rows_fails_the_check_and_rows_go_alone(monkeypatch):
    import torch

    real = torch.log_softmax

    def mixing(x, dim):  # each row's result shifted by the batch size: rows not apart
        out = real(x, dim=dim)
        return out - 1e-3 * x.shape[0] if x.dim() == 2 else out

    monkeypatch.setattr(C, "_VERIFIED", {})
    monkeypatch.setattr(torch, "log_softmax", mixing)
    assert not C._batched_is_exact(300, torch.float32, torch.device("cpu"))
    logits = _logits(4, 300)
    got = C.chosen_log_probs(logits, [0, 1, 2, 3])
    assert list(C._VERIFIED.values()) == [False]
    assert got == [float(real(logits[j], dim=-1)[j]) for j in range(4)]
