"""Tiny ``python:`` recommenders for the profile and leakage probe tests.

Each returns ``{"item_ids": [...]}`` of the synthetic catalog built in the tests (ids ``"0"`` to
``"39"`` plus the marker items ``"F"`` and ``"M"``), so no grounding is involved. The list is a
deterministic function of the prompt's *content* (the FaiRLLM subject or the profile history);
only ``gender_marker`` and ``noise`` look at the stated value.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

N_ITEMS = 40
_CONTENT = re.compile(r"(?:fan of|following movies:)\s*(.+?)\.\s*Please", re.S)
_FEMALE = re.compile(r"\bfemale\b")
_MALE = re.compile(r"\bmale\b")


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def _content(messages) -> str:
    prompt = messages[-1]["content"]
    m = _CONTENT.search(prompt)
    return m.group(1) if m else prompt


def content_list(messages, k: int) -> list[str]:
    """k catalog ids drawn without replacement, seeded by the prompt's content only."""
    rng = np.random.default_rng(_seed(_content(messages)))
    return [str(i) for i in rng.choice(N_ITEMS, size=min(k, N_ITEMS), replace=False)]


def ignore(messages, k):
    """Ignores the stated attribute: the same list for every value."""
    return {"item_ids": content_list(messages, k)}


def gender_marker(messages, k):
    """Replaces the last item with a gender-specific marker item ("F" / "M")."""
    items = content_list(messages, k)
    prompt = messages[-1]["content"]
    if _FEMALE.search(prompt):
        items[-1] = "F"
    elif _MALE.search(prompt):
        items[-1] = "M"
    return {"item_ids": items}


def noise(messages, k):
    """Lists seeded by the whole prompt: they change with the value, but in no systematic way."""
    rng = np.random.default_rng(_seed(messages[-1]["content"]))
    return {"item_ids": [str(i) for i in rng.choice(N_ITEMS, size=min(k, N_ITEMS),
                                                    replace=False)]}
