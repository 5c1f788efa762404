"""Decode attention in key blocks (recaudit.recommenders.hf.decode_attention)."""

import pytest

from recaudit.recommenders.hf import decode_attention as A


def _cache(n=6, heads=4, kv_heads=2, dim=16, kv_len=150, seed=0):
    """A left-padded cache: row b's keys are its last lens[b] positions."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n, heads, 1, dim, generator=gen)
    k = torch.randn(n, kv_heads, kv_len, dim, generator=gen)
    v = torch.randn(n, kv_heads, kv_len, dim, generator=gen)
    lens = [kv_len, 3, 64, 65, 130, 1][:n]
    return q, k, v, [kv_len - n_ for n_ in lens]


def _eager(q, k, v, pads, scale):
    """Each row on its own unpadded keys, by the textbook formula (GQA heads repeated)."""
    import torch

    outs = []
    group = q.shape[1] // k.shape[1]
    for b, pad in enumerate(pads):
        kb = k[b, :, pad:].repeat_interleave(group, 0)
        vb = v[b, :, pad:].repeat_interleave(group, 0)
        w = torch.softmax(q[b] @ kb.transpose(-1, -2) * scale, dim=-1)
        outs.append((w @ vb).transpose(0, 1))
    return torch.stack(outs)


def test_blocked_attention_is_the_attention_formula():
    import torch

    q, k, v, pads = _cache()
    out = A.blocked_decode_attention(q, k, v, pads, 0.25, None)
    assert out.shape == (6, 1, 4, 16)
    assert torch.allclose(out, _eager(q, k, v, pads, 0.25), atol=1e-5)


def test_a_rows_bits_do_not_depend_on_its_companions():
    import torch

    q, k, v, pads = _cache()
    together = A.blocked_decode_attention(q, k, v, pads, 0.25, None)
    for b, pad in enumerate(pads):
        # alone: a cache holding only its own keys (the window reaches before it: zeros)
        alone = A.blocked_decode_attention(q[b:b + 1], k[b:b + 1, :, pad:],
                                           v[b:b + 1, :, pad:], [0], 0.25, None)
        assert torch.equal(alone[0], together[b]), b
        # beside other rows, in another order and with more left padding
        order = [b] + [j for j in range(len(pads)) if j != b][:2]
        extra = 7
        k2 = torch.nn.functional.pad(k[order], (0, 0, extra, 0), value=3.0)
        v2 = torch.nn.functional.pad(v[order], (0, 0, extra, 0), value=-2.0)
        mixed = A.blocked_decode_attention(q[order], k2, v2, [pads[j] + extra for j in order],
                                           0.25, None)
        assert torch.equal(mixed[0], together[b]), b


def test_a_block_length_that_fails_its_check_is_served_row_by_row(monkeypatch):
    import torch

    def block(n):
        return -(-n // A.KEY_BLOCK) * A.KEY_BLOCK

    failing = block(150)  # the block of rows 0 and 4 (150 and 130 keys)
    monkeypatch.setattr(A, "_VERIFIED", {})
    monkeypatch.setattr(A, "_block_is_invariant", lambda p_len, *a: p_len != failing)
    q, k, v, pads = _cache(kv_len=150)
    assert [b for b, pad in enumerate(pads) if block(150 - pad) == failing] == [0, 4]
    asked = []

    def rowwise(rows):
        asked.append(list(rows))
        return _eager(q[rows], k[rows], v[rows], [pads[r] for r in rows], 0.25)

    out = A.blocked_decode_attention(q, k, v, pads, 0.25, rowwise)
    assert asked == [[0, 4]]
    assert torch.allclose(out, _eager(q, k, v, pads, 0.25), atol=1e-5)


def test_the_check_catches_a_kernel_that_depends_on_the_group(monkeypatch):
    real = A._attend

    def group_dependent(q, k, v, lens, scale):
        return real(q, k, v, lens, scale) * (1 + 1e-6 * q.shape[0])

    assert A._block_is_invariant(64, 4, 2, 16, _dtype(), "cpu")
    monkeypatch.setattr(A, "_attend", group_dependent)
    assert not A._block_is_invariant(64, 4, 2, 16, _dtype(), "cpu")


def test_the_check_catches_masked_positions_leaking(monkeypatch):
    import torch

    def leaky(q, k, v, lens, scale):
        n, heads, _, dim = q.shape
        w = torch.softmax(q.reshape(n, k.shape[1], -1, dim) @ k.transpose(-1, -2) * scale, -1)
        return (w @ v).reshape(n, 1, heads, dim)  # no mask

    monkeypatch.setattr(A, "_attend", leaky)
    assert not A._block_is_invariant(64, 4, 2, 16, _dtype(), "cpu")


def _dtype():
    import torch

    return torch.float32


@pytest.mark.parametrize("kv_len", [1, 63, 64, 65])
def test_lengths_at_block_edges(kv_len):
    import torch

    q, k, v, _ = _cache(n=2, kv_len=kv_len)
    pads = [0, kv_len - 1]
    out = A.blocked_decode_attention(q, k, v, pads, 0.25, None)
    assert torch.allclose(out, _eager(q, k, v, pads, 0.25), atol=1e-5)
