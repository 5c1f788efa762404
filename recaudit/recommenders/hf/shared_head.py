"""The chat template's opening, prefilled once: every prompt that starts with it reuses its keys.

A chat prompt opens with what the template puts before the user's words: the default system
prompt and the user-turn header. For SmolLM2 that is 24 of the bench's ~56 tokens, the same in
every request of an audit that sets no system prompt, and the prefill's matmuls run near the
machine's fp32 peak (1.5 ms a row on 2 AMD cores), so computing it once per model is what
shortens the prefill.

The split is canonical, a function of the prompt alone: the *head* is the token sequence the
chat template renders before the user's text (:func:`find_head`: the common prefix of two
renderings that differ only in that text). A prompt longer than the head and starting with it
is prefilled in two parts: the head's keys and values (computed once, alone, and kept), then
the prompt's *tail* continuing them (each row's queries attend to the head's keys and its own,
on its unpadded keys). Any other prompt is prefilled whole. Alone or in a batch a prompt makes
the same calls on the same numbers, so outputs stay bit-identical to one at a time; they are
not the bits of a whole-prompt prefill (the attention is split in two), so the fingerprint's
numerics say ``-h<length>``.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["MIN_HEAD", "find_head", "left_align"]

# a head shorter than this saves less than the second pass costs
MIN_HEAD = 8


def find_head(tokenizer: Any) -> list[int] | None:
    """Return the tokens the chat template renders before a user's text.

    None: no template, or fewer than :data:`MIN_HEAD` tokens.
    """
    if not getattr(tokenizer, "chat_template", None):
        return None
    renderings = []
    for word in ("Alpha", "Omega"):
        try:
            text = tokenizer.apply_chat_template([{"role": "user", "content": word}],
                                                 add_generation_prompt=True, tokenize=False)
        except Exception:  # noqa: BLE001 - a template that needs other roles or fields
            return None
        renderings.append(list(tokenizer(text, add_special_tokens=False)["input_ids"]))
    head = os.path.commonprefix(renderings)
    return list(head) if len(head) >= MIN_HEAD else None


def left_align(cache: Any, lengths: list[int], width: int) -> list[int]:
    """Move each row's first ``lengths[r]`` positions to the end of its row, in place.

    After a right-padded pass row r's keys are positions [0, lengths[r]) of ``width``; the
    decode expects them last, after left padding. One gather per layer's keys and values
    (positions before a row's keys get copies of its position 0: padding, never read).
    Returns the left pads.
    """
    import torch

    from .kv import _kv_layers

    layers = _kv_layers(cache)
    device = layers[0].keys.device
    pads = [width - n for n in lengths]
    pos = torch.arange(width, device=device)[None, :] - torch.tensor(pads, device=device)[:, None]
    index = pos.clamp(min=0)
    for layer in layers:
        for name in ("keys", "values"):
            t = getattr(layer, name)
            rows, heads, _, dim = t.shape
            idx = index[:, None, :, None].expand(rows, heads, width, dim)
            setattr(layer, name, torch.gather(t[:, :, :width], 2, idx))
    return pads
