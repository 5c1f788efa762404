"""FaiRLLM's normalisation: the other reading of a text, for catalogue-free audits.

:func:`fairllm_items` reads a reply's items exactly as the FaiRLLM notebook does (METRICS.md
section 1b); items compare under it by string identity.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["fairllm_items"]

_FAIRLLM_SPLIT_RE = re.compile(r"(?<!\d)\d+\. ")
_FAIRLLM_QUOTED_RE = re.compile(r"\"([^\"]*)\"")


def _drop_parenthesised(s: str) -> str:
    r"""Return ``re.sub(r"\([^)]*\)", "", s)`` computed in linear time.

    Each ``(`` up to the next ``)`` is dropped, left to right. The regex itself retries from
    every ``(`` when no ``)`` follows, quadratic on ``"(((("``.
    """
    out: list[str] = []
    start = 0
    while (opening := s.find("(", start)) >= 0 and (closing := s.find(")", opening + 1)) >= 0:
        out.append(s[start:opening])
        start = closing + 1
    out.append(s[start:])
    return "".join(out)


def fairllm_items(text: Any) -> list[str]:
    r"""Read a reply's items exactly as the FaiRLLM notebook does (METRICS.md section 1b).

    Source: Zhang et al., "Is ChatGPT Fair for Recommendation?", RecSys 2023 (arXiv
    2305.07609), the evaluation notebook's ``clean`` and ``simplified_list``. The rules, in
    order:

    1. lowercase (``str.lower``); delete every apostrophe ``'`` and every newline ``\n``;
    2. split on the regex ``\d+\. `` ("one or more digits, a period, a space") and drop the
       text before the first match (a reply without such a number gives ``[]``);
    3. in each chunk cut everything from the first ``-`` onward (``"spider-man"`` ->
       ``"spider"``, as the notebook does);
    4. if the chunk contains a double quote ``"``: keep the first complete ``"..."`` substring,
       or, with no complete pair, delete the quotes; then strip surrounding whitespace;
    5. remove every parenthesised span ``\([^)]*\)`` (from a ``(`` to the next ``)``), then
       remove every space.

    No deduplication, no fuzzy matching, no filtering: a chunk that comes out empty stays an
    item (``""``). Items are equal when these strings are equal. Only ASCII ``'`` and ``"`` are
    treated (typographic quotes stay as they are); non-text gives ``[]``.

    >>> fairllm_items('Sure!\n1. "The Matrix" (1999) - sci-fi\n2. Ocean\'s 11\n')
    ['thematrix', 'oceans11']
    """
    if not isinstance(text, str):
        return []
    text = text.lower().replace("'", "").replace("\n", "")
    chunks = _FAIRLLM_SPLIT_RE.split(text)[1:]
    out: list[str] = []
    for chunk in chunks:
        chunk = chunk.split("-")[0]
        if '"' in chunk:
            m = _FAIRLLM_QUOTED_RE.search(chunk)
            chunk = m.group(1) if m else chunk.replace('"', "")
        chunk = chunk.strip()
        chunk = _drop_parenthesised(chunk).replace(" ", "")
        out.append(chunk)
    return out
