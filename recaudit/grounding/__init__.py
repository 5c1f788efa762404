"""Grounding: turn a language model's free-text list into catalogue item ids.

Three steps, each usable on its own, one module each:

1. :func:`parse_list` (:mod:`.parse`) extracts the list entries from raw output (numbered,
   bulleted, quoted, JSON, comma-separated, markdown bold; preambles, descriptions and closing
   chatter dropped); :func:`parse_entries` also names the format found.
2. :func:`normalize_title` (:mod:`.normalize`) maps a title to a canonical key (case, accents,
   quotes, markdown, trailing year, ``"Matrix, The"`` == ``"The Matrix"``, ``&`` == ``and``,
   punctuation).
3. :class:`TitleMatcher` (:mod:`.match`) matches an entry to an item id: exact key first (a year
   in the entry picks among same-titled items), then fuzzy matching above a threshold.

:func:`ground` (:mod:`.match`) chains them and returns a :class:`Grounding`: the matched ids in
order (duplicates dropped and counted), the entries that matched nothing (hallucinations, or
titles the catalogue lacks) and the parsed entries. It never raises on any text.

:func:`fairllm_items` (:mod:`.fairllm`) is the other reading of a text, for catalogue-free
audits: FaiRLLM's own normalisation (METRICS.md section 1b), which items compare under by
string identity.
"""

from __future__ import annotations

from .fairllm import fairllm_items
from .match import Grounding, TitleMatcher, ground, ground_entries, match_entry
from .normalize import ARTICLES, normalize_title, split_year
from .parse import parse_entries, parse_list

__all__ = [
    "ARTICLES",
    "Grounding",
    "fairllm_items",
    "TitleMatcher",
    "ground",
    "ground_entries",
    "match_entry",
    "normalize_title",
    "parse_entries",
    "parse_list",
    "split_year",
]
