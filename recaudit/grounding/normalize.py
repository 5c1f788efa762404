"""Normalisation: the canonical matching key of a title, and a title's trailing year.

:func:`normalize_title` maps a title to the key entries and catalogue titles compare under
(case, accents, quotes, markdown, trailing year, ``"Matrix, The"`` == ``"The Matrix"``, ``&`` ==
``and``, punctuation); :func:`split_year` takes a trailing year off.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["ARTICLES", "normalize_title", "split_year"]

#: Articles that MovieLens/IMDb move to the end of a title ("Matrix, The", "Misérables, Les").
ARTICLES = ("the", "a", "an", "les", "la", "le", "l'", "il", "das", "die", "der", "el", "los",
            "las", "lo")

_YEAR_RE = re.compile(r"\s*(?:[\(\[]\s*((?:18|19|20)\d\d)\s*[\)\]]|,\s*((?:18|19|20)\d\d))\s*$")
_QUOTES = "\"'`\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u00ab\u00bb\u2039\u203a\u00b4"
_APOS_RE = re.compile(r"(?<=\w)['\u2019\u2018`\u00b4](?=\w)")
_NONWORD_RE = re.compile(r"[^\w]+|_+")
_ARTICLE_TAIL_RE = re.compile(
    r"^(?P<body>.+?),\s*(?P<art>" + "|".join(re.escape(a) for a in ARTICLES) + r")\s*$",
    re.IGNORECASE)
_ELISION_TAIL_RE = re.compile(r"^(?P<body>.+?),\s*(?P<art>[LlDd]['\u2019])(?P<year>\s*\(\d{4}\))?$")
_MARKDOWN_RE = re.compile(r"(\*\*|__|\*|~~|`|^#+\s*)")


def split_year(s: str) -> tuple[str, int | None]:
    """Split a trailing year off a title: ``"The Matrix (1999)"`` -> ``("The Matrix", 1999)``.

    No trailing year gives ``(s, None)``.

    Also ``"[1999]"`` and ``"The Matrix, 1999"``; a year that is part of the title
    (``"Blade Runner 2049"``, ``"1917"``) is not split off.
    """
    m = _YEAR_RE.search(s)
    if m and m.start() > 0:
        return s[:m.start()].rstrip(), int(m.group(1) or m.group(2))
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
    m = _ELISION_TAIL_RE.match(s)
    if m:  # "Atalante, L'" -> "L'Atalante" before quote stripping eats the apostrophe
        s = f"{m.group('art')}{m.group('body')}{m.group('year') or ''}"
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

