"""Decode-step attention for many rows at once, each row's result independent of the others.

A decode step's query is one token per row, and each row attends to its own keys: the row-wise
attention of :mod:`.invariance` makes one SDPA call per row and layer (16 rows x 30 layers = 480
calls a step for SmolLM2), which cost more than the step's matmuls once those ran on oneDNN.
Batching rows of different key lengths needs padding, and padding changes a row's bits:
torch's CPU SDPA kernel split the work differently for 1 row than for 16 (measured: the same row
differed by up to 1e-7 between the two).

So rows are grouped by a length that depends on the row alone: its key count L rounded up to a
multiple of :data:`KEY_BLOCK`, P. A group's keys are the last P positions of the (left-padded)
cache, the first P - L of each row masked, and the attention is written out as two batched
matmuls and a softmax (the eager formula: softmax(q k^T * scaling + mask) v, softmax in fp32). A row
alone makes the same three calls on the same P positions, with other contents only where the
mask zeroes them, so it gets the same bits, provided those kernels keep a row independent of
the group's size. That is checked, never assumed: the first time a (P, heads, head dim, dtype,
device) is seen, random rows are run alone, in groups of 2 and 5, with other contents under
the mask and as a view of a longer cache (:func:`_block_is_invariant`); a P that fails is
served row by row (the row-wise SDPA, for every row of that P, alone or not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["KEY_BLOCK", "Block", "blocked_decode_attention", "kernel_probe", "plan_blocks"]

KEY_BLOCK = 32
_VERIFIED: dict[tuple, bool] = {}


def _bias(p_len: int, lens: Any, kv_heads: int, dtype: Any) -> Any:
    """Return a block's additive mask [n * Hkv, 1, P].

    -inf at the first ``P - lens[b]`` positions of row b (not its keys), 0 at its keys.
    """
    import torch

    hidden = torch.arange(p_len, device=lens.device)[None, :] < (p_len - lens)[:, None]
    bias = torch.zeros(hidden.shape, dtype=dtype, device=lens.device)
    bias.masked_fill_(hidden, float("-inf"))
    return bias.repeat_interleave(kv_heads, 0)[:, None, :]


def _attend(query: Any, key: Any, value: Any, lens: Any, scaling: float,
            bias: Any = None) -> Any:
    """Attend one-token queries to the last P positions, a row's last ``lens[b]`` its keys.

    query [n, H, 1, D], key/value [n, Hkv, P, D] -> [n, 1, H, D]: per row and key head,
    softmax(scaling * q K^T + bias) V, the softmax in fp32, in three calls (``baddbmm``,
    ``softmax``, ``bmm``: each call after a large matmul pays for code and data evicted from
    the caches, so fewer calls is faster here). ``bias``: the block's mask (:func:`_bias`),
    when already made.
    """
    import torch

    n, heads, _, dim = query.shape
    kv_heads, p_len = key.shape[1], key.shape[2]
    if bias is None:
        bias = _bias(p_len, lens, kv_heads, query.dtype)
    q = query.reshape(n * kv_heads, heads // kv_heads, dim)
    scores = torch.baddbmm(bias, q, key.reshape(n * kv_heads, p_len, dim).transpose(1, 2),
                           alpha=scaling)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    out = torch.bmm(probs, value.reshape(n * kv_heads, p_len, value.shape[-1]))
    return out.reshape(n, 1, heads, value.shape[-1])


@dataclass(frozen=True)
class Block:
    """The rows of a decode step that share a key block length ``p_len`` (see module doc).

    ``idx``: None when they are all the rows, a slice when they are consecutive (the engine
    sorts prompts by length, so blocks usually are: views, no gather), else their indices as a
    tensor; ``lens`` their key counts, ``bias`` the block's mask (:func:`_bias`).
    """

    p_len: int
    rows: list[int]
    idx: Any
    lens: Any
    bias: Any


def plan_blocks(left_pad: list[int], kv_len: int, kv_heads: int, dtype: Any,
                device: Any) -> list[Block]:
    """Group a step's rows by P = ceil(L / KEY_BLOCK) * KEY_BLOCK, L = ``kv_len - left_pad[b]``.

    The same for every layer of a step, so a decode step plans once.
    """
    import torch

    groups: dict[int, list[int]] = {}
    for b, pad in enumerate(left_pad):
        groups.setdefault(-(-(kv_len - pad) // KEY_BLOCK) * KEY_BLOCK, []).append(b)
    blocks = []
    for p_len, rows in groups.items():
        lens = torch.tensor([kv_len - left_pad[b] for b in rows], device=device)
        if len(rows) == len(left_pad):
            idx = None
        elif rows == list(range(rows[0], rows[-1] + 1)):
            idx = slice(rows[0], rows[-1] + 1)
        else:
            idx = torch.tensor(rows, device=device)
        blocks.append(Block(p_len, rows, idx, lens, _bias(p_len, lens, kv_heads, dtype)))
    return blocks


def _block_is_invariant(p_len: int, heads: int, kv_heads: int, dim: int, dtype: Any,
                        device: Any) -> bool:
    """Check that :func:`_attend` at key length ``p_len`` keeps each row's bits.

    Alone, in groups of 2 and 5, with other values at its masked positions, and on a view.
    """
    import torch

    gen = torch.Generator().manual_seed(p_len)
    n = 5

    def draw(*shape):
        return torch.randn(*shape, generator=gen).to(dtype=dtype, device=device)

    q, k, v = draw(n, heads, 1, dim), draw(n, kv_heads, p_len, dim), draw(n, kv_heads, p_len, dim)
    low = max(1, p_len - KEY_BLOCK + 1)
    lens = torch.randint(low, p_len + 1, (n,), generator=gen).to(device)
    lens[0] = low
    scale = dim ** -0.5
    group = _attend(q, k, v, lens, scale)
    pair = _attend(q[:2], k[:2], v[:2], lens[:2], scale)
    for b in range(n):
        alone = _attend(q[b:b + 1], k[b:b + 1], v[b:b + 1], lens[b:b + 1], scale)
        if not torch.equal(alone[0], group[b]):
            return False
    k2, v2 = k[:1].clone(), v[:1].clone()
    cut = p_len - int(lens[0])
    k2[:, :, :cut], v2[:, :, :cut] = draw(1, kv_heads, cut, dim), draw(1, kv_heads, cut, dim)
    other = _attend(q[:1], k2, v2, lens[:1], scale)
    # the cache's last P positions are a view of a longer tensor
    k3, v3 = draw(n, kv_heads, p_len + 7, dim), draw(n, kv_heads, p_len + 7, dim)
    k3[:, :, 7:], v3[:, :, 7:] = k, v
    view = _attend(q, k3[:, :, 7:], v3[:, :, 7:], lens, scale)
    return bool(torch.equal(pair[0], group[0]) and torch.equal(pair[1], group[1])
                and torch.equal(other[0], group[0]) and torch.equal(view, group))


def _verified(p_len: int, query: Any, key: Any) -> bool:
    import torch

    spec = (p_len, query.shape[1], key.shape[1], query.shape[-1], query.dtype, query.device.type,
            torch.get_num_threads())
    if spec not in _VERIFIED:
        with torch.inference_mode():
            _VERIFIED[spec] = _block_is_invariant(p_len, *spec[1:4], query.dtype, query.device)
    return _VERIFIED[spec]


def blocked_decode_attention(query: Any, key: Any, value: Any, left_pad: list[int],
                             scaling: float, rowwise: Any, blocks: list[Block] | None = None
                             ) -> Any:
    """Attention of a decode step (one query token per row) over left-padded cache rows.

    ``left_pad[b]``: row b's padding in front of its keys (its keys are the last
    ``kv_len - left_pad[b]`` positions). ``rowwise(rows)`` computes the given rows one by
    one (the fallback for a P that failed its check); it returns [len(rows), 1, H, D].
    ``blocks``: the step's :func:`plan_blocks`, when already made. Returns [n, 1, H, D].
    """
    n, kv_len = query.shape[0], key.shape[2]
    if blocks is None:
        blocks = plan_blocks(left_pad, kv_len, key.shape[1], query.dtype, query.device)
    out = None if len(blocks) == 1 else query.new_empty(n, 1, query.shape[1], value.shape[-1])
    for block in blocks:
        p_len, rows, idx = block.p_len, block.rows, block.idx
        whole = idx is None
        if not _verified(p_len, query, key):
            part = rowwise(rows)
        else:
            start = kv_len - p_len
            if start >= 0:
                kg = key[:, :, start:] if whole else key[idx, :, start:]
                vg = value[:, :, start:] if whole else value[idx, :, start:]
            else:  # the window reaches before the cache: zeros there (masked)
                kg = key.new_zeros(len(rows), key.shape[1], p_len, key.shape[-1])
                vg = value.new_zeros(len(rows), value.shape[1], p_len, value.shape[-1])
                kg[:, :, -start:] = key if whole else key[idx]
                vg[:, :, -start:] = value if whole else value[idx]
            part = _attend(query if whole else query[idx], kg, vg, block.lens, scaling,
                           block.bias)
        if out is None:
            return part
        out[idx] = part
    return out


def kernel_probe(heads: int, kv_heads: int, dim: int, dtype: Any, device: Any,
                 lengths: tuple[int, ...] = (64, 128, 256, 512, 1024)) -> list[bytes]:
    """Return the bytes of :func:`_attend` on fixed inputs at several block lengths.

    For comparing one thread count with another (:mod:`.threads`). Also causal SDPA of one
    row at several prompt lengths: the prefill's row-wise attention, whose CPU kernel splits
    its work by the thread count at some lengths only (seen on a tiny model: 17 differed), in
    the forward's form and in the lean tail prefill's (query heads stacked per key head).
    """
    import torch

    gen = torch.Generator().manual_seed(2)
    out = []
    with torch.inference_mode():
        for p_len in lengths:
            def draw(*shape):
                return torch.randn(*shape, generator=gen).to(dtype=dtype, device=device)

            q = draw(4, heads, 1, dim)
            k, v = draw(4, kv_heads, p_len, dim), draw(4, kv_heads, p_len, dim)
            lens = torch.tensor([p_len, p_len - 1, p_len // 2 + 1, 1], device=device)
            res = _attend(q, k, v, lens, dim ** -0.5)
            out.append(res.float().cpu().numpy().tobytes())
        group = heads // kv_heads
        for n in tuple(range(1, 34)) + (48, 64, 65, 96, 128, 200, 256, 300, 512):
            q = torch.randn(1, heads, n, dim, generator=gen).to(dtype=dtype, device=device)
            k = torch.randn(1, kv_heads, n, dim, generator=gen).to(dtype=dtype, device=device)
            v = torch.randn(1, kv_heads, n, dim, generator=gen).to(dtype=dtype, device=device)
            res = torch.nn.functional.scaled_dot_product_attention(
                q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1),
                is_causal=n > 1, scale=dim ** -0.5)
            out.append(res.float().cpu().numpy().tobytes())
            # the lean tail prefill's call: a key head's query heads stacked, after 8 cached keys
            k8 = torch.randn(1, kv_heads, n + 8, dim, generator=gen).to(dtype=dtype, device=device)
            v8 = torch.randn(1, kv_heads, n + 8, dim, generator=gen).to(dtype=dtype, device=device)
            mask = torch.ones(n, n + 8, dtype=torch.bool, device=device).tril(diagonal=8)
            res = torch.nn.functional.scaled_dot_product_attention(
                q.reshape(1, kv_heads, group * n, dim), k8, v8,
                attn_mask=mask.repeat(group, 1), scale=dim ** -0.5)
            out.append(res.float().cpu().numpy().tobytes())
    return out
