"""Grounding: turn a language model's free-text list into catalogue item ids.

Three steps, each usable on its own:

1. :func:`parse_list` extracts the list entries from raw output (numbered, bulleted, quoted,
   JSON, comma-separated, markdown bold; preambles, descriptions and closing chatter dropped).
2. :func:`normalize_title` maps a title to a canonical key (case, accents, quotes, markdown,
   trailing year, ``"Matrix, The"`` == ``"The Matrix"``, ``&`` == ``and``, punctuation).
3. :class:`TitleMatcher` matches an entry to an item id: exact key first (a year in the entry
   picks among same-titled items), then fuzzy matching above a threshold.

:func:`ground` chains them and returns a :class:`Grounding`: the matched ids in order (duplicates
dropped and counted), the entries that matched nothing (hallucinations, or titles the catalogue
lacks) and the parsed entries. It never raises on any text.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "ARTICLES",
    "Grounding",
    "TitleMatcher",
    "ground",
    "normalize_title",
    "parse_list",
    "split_year",
]

#: Articles that MovieLens/IMDb move to the end of a title ("Matrix, The", "Misérables, Les").
ARTICLES = ("the", "a", "an", "les", "la", "le", "l'", "il", "das", "die", "der", "el", "los",
            "las", "lo")


# --------------------------------------------------------------------------------------------
# Grounding result
# --------------------------------------------------------------------------------------------
@dataclass
class Grounding:
    """Result of grounding one text.

    Attributes
    ----------
    item_ids
        Matched catalogue ids in list order, each at most once.
    unmatched
        Entries that matched no item (in order).
    duplicates
        Entries that matched an id already in ``item_ids`` (dropped).
    entries
        All parsed entries, in order (matched, unmatched and duplicates).
    """

    item_ids: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    duplicates: int = 0
    entries: list[str] = field(default_factory=list)

    @property
    def hallucination_share(self) -> float:
        """Share of parsed entries that matched no catalogue item; 0.0 when nothing was parsed."""
        return len(self.unmatched) / len(self.entries) if self.entries else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Grounding":
        return cls(item_ids=[str(x) for x in d.get("item_ids", [])],
                   unmatched=[str(x) for x in d.get("unmatched", [])],
                   duplicates=int(d.get("duplicates", 0)),
                   entries=[str(x) for x in d.get("entries", [])])


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------
_YEAR_RE = re.compile(r"\s*[\(\[]\s*((?:18|19|20)\d\d)\s*[\)\]]\s*$")
_QUOTES = "\"'`\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u00ab\u00bb\u2039\u203a\u00b4"
_APOS_RE = re.compile(r"(?<=\w)['\u2019\u2018`\u00b4](?=\w)")
_NONWORD_RE = re.compile(r"[^\w]+|_+")
_ARTICLE_TAIL_RE = re.compile(
    r"^(?P<body>.+?),\s*(?P<art>" + "|".join(re.escape(a) for a in ARTICLES) + r")\s*$",
    re.IGNORECASE)
_MARKDOWN_RE = re.compile(r"(\*\*|__|\*|~~|`|^#+\s*)")


def split_year(s: str) -> tuple[str, int | None]:
    """``"The Matrix (1999)"`` -> ``("The Matrix", 1999)``; no trailing year -> ``(s, None)``."""
    m = _YEAR_RE.search(s)
    if m and m.start() > 0:
        return s[:m.start()].rstrip(), int(m.group(1))
    return s, None


def _strip_accents(s: str) -> str:
    decomposed = unicodedata.normalize("NFKD", s)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def normalize_title(s: str) -> str:
    """Canonical matching key of a title.

    Casefolded, accents removed, quotes and markdown stripped, a trailing ``(1999)`` dropped, a
    trailing article moved to the front (``"Matrix, The"`` -> ``"the matrix"``; also ``A``,
    ``An`` and the foreign articles MovieLens inverts: ``Les``, ``La``, ``Le``, ``L'``, ``Il``,
    ``Das``, ``Die``, ``Der``, ``El``, ...), ``&`` -> ``and``, apostrophes inside words removed
    (``"Schindler's"`` -> ``"schindlers"``), other punctuation and whitespace collapsed to one
    space.

    >>> normalize_title('**"Matrix, The" (1999)**')
    'the matrix'
    >>> normalize_title("Misérables, Les")
    'les miserables'
    >>> normalize_title("Dumb & Dumber")
    'dumb and dumber'
    """
    if not isinstance(s, str):
        return ""
    s = unicodedata.normalize("NFKC", s)
    s = _MARKDOWN_RE.sub("", s).strip()
    s = s.strip(_QUOTES + " \t.,;:!?-").strip()
    s, _ = split_year(s)
    s = s.strip(_QUOTES + " \t.,;:!?-").strip()
    m = _ARTICLE_TAIL_RE.match(s)
    if m:
        art = m.group("art")
        sep = "" if art.endswith("'") else " "
        s = f"{art}{sep}{m.group('body')}"
    s = _strip_accents(s).casefold()
    s = s.replace("&", " and ")
    s = _APOS_RE.sub("", s)
    s = _NONWORD_RE.sub(" ", s)
    return " ".join(s.split())
