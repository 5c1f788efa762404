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

:func:`fairllm_items` is the other reading of a text, for catalogue-free audits: FaiRLLM's own
normalisation (METRICS.md section 1b), which items compare under by string identity.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

__all__ = [
    "ARTICLES",
    "Grounding",
    "fairllm_items",
    "TitleMatcher",
    "ground",
    "match_entry",
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
    """``"The Matrix (1999)"`` -> ``("The Matrix", 1999)``; no trailing year -> ``(s, None)``.

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


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------
_NUMBERED_RE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<bold>\*\*|__)?(?:#\s*)?(?P<num>\d{1,3})\s*(?:[.):\]]|\s-(?=\s))"
    r"[ \t]*(?P<body>.*)$")
_BULLET_RE = re.compile(r"^(?P<indent>[ \t]*)[-*\u2022\u00b7+\u2023\u25e6\u25aa\u2013\u2014>]"
                        r"[ \t]+(?P<body>.+)$")
_BOLD_RE = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_QUOTED_RE = re.compile(r"\"([^\"\n]{1,300})\"|\u201c([^\u201d\n]{1,300})\u201d"
                        r"|\u00ab([^\u00bb\n]{1,300})\u00bb")
_LEADING_QUOTED_RE = re.compile(r"^[\"\u201c\u00ab']\s*(?P<q>[^\"\u201d\u00bb\n]+?)\s*"
                                r"[\"\u201d\u00bb'](?=$|[\s,.;:(\[\-\u2013\u2014])(?P<rest>.*)$")
_YEAR_AFTER_RE = re.compile(r"^\s*[,\-]?\s*[\(\[]\s*((?:18|19|20)\d\d)\s*[\)\]]")
_DESC_SEP_RE = re.compile(r"\s+[-\u2013\u2014|]\s+|:\s+|\s+[\u2013\u2014]|[\u2013\u2014]\s+")
# a fenced block in a programming language (not JSON): code, never a list of titles
_CODE_FENCE_RE = re.compile(r"```[ \t]*(?!json|JSON)[A-Za-z][\w+#-]*[ \t]*\n.*?(?:```|\Z)",
                            re.DOTALL)
_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.DOTALL)
_TITLE_KEYS = ("title", "name", "movie", "movie_title", "movietitle", "film", "song", "item",
               "song_title", "track")
_JSON_TITLE_RE = re.compile(
    r"[\"'](?:" + "|".join(_TITLE_KEYS) + r")[\"']\s*:\s*\"((?:[^\"\\\n]|\\.){1,300})\""
    r"(?:\s*,\s*[\"']year[\"']\s*:\s*\"?((?:18|19|20)\d\d))?", re.IGNORECASE)
_JSON_STR_RE = re.compile(r"\"((?:[^\"\\\n]|\\.){1,300})\"")
_EMPHASIS_RE = re.compile(r"(?<![\w*])\*([^*\s](?:[^*]*[^*\s])?)\*(?![\w*])"
                          r"|(?<!\w)_([^_\s](?:[^_]*[^_\s])?)_(?!\w)")
_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)
_JSON_START_RE = re.compile(r"[\[{]")
_MAX_ENTRY = 300
_MAX_TEXT = 200_000
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\ufeff\u00ad"), None)


def _clean_text(text: Any) -> str:
    if not isinstance(text, str):
        return ""
    text = text[:_MAX_TEXT].translate(_ZERO_WIDTH)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # lone surrogates cannot be encoded and break downstream JSON writers
    return text.encode("utf-8", "replace").decode("utf-8")


def _tidy(s: str) -> str:
    """Trim whitespace, wrapping quotes/markdown and trailing punctuation of an entry."""
    s = _EMPHASIS_RE.sub(lambda m: m.group(1) or m.group(2) or "", " ".join(s.split()))
    prev = None
    while prev != s:
        prev = s
        s = s.strip(" \t,;:.!?")
        for a, b in (("**", "**"), ("__", "__"), ("*", "*"), ("`", "`"), ("\"", "\""),
                     ("\u201c", "\u201d"), ("\u00ab", "\u00bb"), ("'", "'"), ("[", "]")):
            if len(s) > len(a) + len(b) and s.startswith(a) and s.endswith(b) \
                    and (a != "'" or s.count("'") == 2):
                s = s[len(a):len(s) - len(b)].strip()
        if s.startswith("**") and s.count("**") == 1:
            s = s[2:].strip()
        if s.endswith("**") and s.count("**") == 1:
            s = s[:-2].strip()
    return s[:_MAX_ENTRY]


def _with_year(title: str, rest: str) -> str:
    """Append a year that immediately follows a bold/quoted title: ``"X" (1999)``."""
    m = _YEAR_AFTER_RE.match(rest)
    return f"{title} ({m.group(1)})" if m else title


_SMALL_WORDS = frozenset("a an the of and or in on at to for from with by vs de la le".split())


def _looks_like_description(tail: str) -> bool:
    """Whether the text after a separator reads as a description rather than a subtitle.

    Subtitles are short and title-cased (``"A New Hope"``, ``"Episode IV - A New Hope"``,
    ``"The Professional"``); descriptions are prose (``"A thief who steals secrets."``).
    """
    words = _WORD_RE.findall(tail)
    if not words:
        return True
    if len(words) > 24:
        return True
    if tail.rstrip().endswith((".", "!")) and len(words) >= 3:
        return True
    content = [w for w in words if w.lower() not in _SMALL_WORDS]
    if not content:
        return False
    capitalised = sum(1 for w in content if not w[:1].islower())
    return capitalised / len(content) < 0.6


def _strip_description(s: str) -> str:
    """``"Inception (2010) - A thief who steals ..."`` -> ``"Inception (2010)"``.

    Strips at the first separator whose tail reads as a description (see
    :func:`_looks_like_description`) or whose head ends with a year (a ``"(1999)"`` closes the
    title: what follows is director, cast or prose). So ``"Star Wars: Episode IV - A New Hope"``
    and ``"Léon: The Professional"`` survive, and ``"Title: Subtitle - a description"`` keeps
    its subtitle. :func:`match_entry` later retries the part before a ``" - "`` separator.
    """
    for m in _DESC_SEP_RE.finditer(s):
        head, tail = s[:m.start()].strip(), s[m.end():].strip()
        if head and (_looks_like_description(tail) or split_year(head)[1] is not None):
            return head
    return s


def _clean_entry(body: str) -> str:
    """One list line's body -> the title it names (with a following year kept)."""
    body = body.strip()
    if not body:
        return ""
    # "**Title** (1999): description" / "1. **Title**" -> bold span
    m = _BOLD_RE.search(body)
    if m and m.start() <= 2:
        title = _tidy(m.group(1) or m.group(2) or "")
        if title.endswith(":"):
            title = title[:-1].strip()
        return _with_year(title, body[m.end():]) if title else ""
    # "\"Title\" (1999) - description" -> quoted span
    m = _LEADING_QUOTED_RE.match(body)
    if m:
        rest = m.group("rest").strip()
        words = _WORD_RE.findall(rest)
        if words and rest[:1].isalnum() and not words[0][:1].islower() \
                and _titleish(rest, cased=True):
            # a misplaced quote: '"The Godfather" Part II' names "The Godfather Part II"
            body = f"{m.group('q')} {rest}"
        else:
            return _with_year(_tidy(m.group("q")), m.group("rest"))
    return _tidy(_strip_description(_tidy(_collapse_repeats(" ".join(body.split())))))


def _collapse_repeats(s: str) -> str:
    """Degenerate repetition: ``"A: B: B: B:"`` -> ``"A: B"``, ``"A: A (1987)"`` -> ``"A (1987)"``.

    Small models loop; a colon-separated segment equal to the previous one is dropped.
    """
    if ": " not in s:
        return s
    base, year = split_year(s[:20 * _MAX_ENTRY])
    out: list[str] = []
    for seg in base.split(": "):
        seg = seg.strip().rstrip(":").strip()
        if seg and (not out or seg != out[-1]):
            out.append(seg)
    return ": ".join(out) + (f" ({year})" if year else "")


def _is_header(body: str) -> bool:
    """A list line that introduces a sub-list (``"**Action movies:**"``) rather than a title."""
    b = body.strip().rstrip("*_").strip()
    return b.endswith(":")


def _json_entries(obj: Any, out: list[str], depth: int = 0) -> None:
    if depth > 6:
        return
    if isinstance(obj, str):
        s = _tidy(obj)
        if s:
            out.append(s)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out.append(str(obj))
    elif isinstance(obj, list):
        for x in obj:
            _json_entries(x, out, depth + 1)
    elif isinstance(obj, dict):
        lower = {str(k).lower().replace(" ", "_"): v for k, v in obj.items()}
        for key in _TITLE_KEYS:
            v = lower.get(key)
            if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                s = _tidy(str(v))
                year = lower.get("year") or lower.get("release_year")
                if s and isinstance(year, (int, str)) and re.fullmatch(r"(18|19|20)\d\d",
                                                                       str(year).strip()):
                    s = f"{s} ({str(year).strip()})"
                if s:
                    out.append(s)
                return
        # a wrapper object ({"movies": [...]}): descend into list values
        for v in obj.values():
            if isinstance(v, (list, dict)):
                _json_entries(v, out, depth + 1)


def _parse_json(text: str) -> list[str] | None:
    """Entries of the first JSON array/object in the text, or of a truncated one; None if none."""
    fenced = _FENCE_RE.search(text)
    candidates = [fenced.group(1)] if fenced else []
    candidates.append(text)
    dec = json.JSONDecoder()
    for cand in candidates:
        # decode every top-level JSON value in turn (a truncated array still yields the
        # complete objects inside it); bounded attempts keep "[[[[..." linear
        out: list[str] = []
        pos, attempts, last_end = 0, 0, 0
        while attempts < 64:
            m = _JSON_START_RE.search(cand, pos)
            if m is None:
                break
            attempts += 1
            try:
                obj, end = dec.raw_decode(cand, m.start())
            except (ValueError, RecursionError):
                pos = m.start() + 1
                continue
            if isinstance(obj, (list, dict)):
                before = len(out)
                _json_entries(obj, out)
                if len(out) > before:
                    last_end = end
            pos = max(end, m.start() + 1)
        if out:
            # a truncated outer value: complete title fields after the last decoded object
            for t, y in _JSON_TITLE_RE.findall(cand[last_end:]):
                t = _tidy(_unescape(t))
                if t:
                    out.append(f"{t} ({y})" if y else t)
            return out
    # truncated / slightly invalid JSON: objects with a title key, or an array of strings
    scope = candidates[0]
    hits = _JSON_TITLE_RE.findall(scope)
    if hits:
        return [f"{_tidy(_unescape(t))} ({y})" if y else _tidy(_unescape(t))
                for t, y in hits if _tidy(_unescape(t))]
    m = re.search(r"\[\s*\"", scope)
    if m:
        end = scope.find("]", m.end())
        segment = scope[m.start():] if end < 0 else scope[m.start():end]
        strs = [_tidy(_unescape(s)) for s in _JSON_STR_RE.findall(segment)]
        strs = [s for s in strs if s]
        if strs:
            return strs
    return None


def _unescape(s: str) -> str:
    try:
        return json.loads(f'"{s}"')
    except ValueError:
        return s


_SENTENCE_BREAK_RE = re.compile(r"\b[a-z]{3,}[.!?]\s+[A-Z]")


def _titleish(part: str, cased: bool) -> bool:
    """Whether a comma-separated piece reads like a title (short, title-cased, not prose)."""
    words = _WORD_RE.findall(part)
    if not words or len(words) > 12 or _SENTENCE_BREAK_RE.search(part):
        return False
    if not cased:
        return True
    content = [w for w in words if w.lower() not in _SMALL_WORDS]
    if not content:
        return True
    return sum(1 for w in content if not w[:1].islower()) / len(content) >= 0.6


_WRAP_CHARS = _QUOTES + "*_,.:;!?()[]"
#: abbreviations whose period does not end a sentence ("Dr. Strangelove", "St. Elmo's Fire")
_ABBREVIATIONS = frozenset("mr mrs ms dr st jr sr vs vol no pt".split())
_SENTENCE_END_RE = re.compile(r"(?P<word>[^\W_]+|\))[.!?]+(?=\s+\S)")


def _prose_word(word: str) -> bool:
    """A lowercase word that is not one of the small words titles keep lowercase (a verb or
    other prose: ``"recommend"``, ``"enjoy"``, ``"are"``)."""
    core = word.strip(_WRAP_CHARS)
    return bool(core) and core[:1].islower() and core.lower() not in _SMALL_WORDS


def _trim_prose_lead(part: str) -> str | None:
    """``"Sure! I recommend The Matrix"`` -> ``"The Matrix"``; None when there is no lead-in.

    The lead-in ends at the last prose word (:func:`_prose_word`); what follows must start
    like a title (capitalised, a digit, a quote, or an article).
    """
    words = part.split()
    cut = max((i for i, w in enumerate(words) if _prose_word(w)), default=None)
    if cut is None or cut == len(words) - 1:
        return None
    first = words[cut + 1].lstrip(_QUOTES + "*_")
    if not first or not (first[:1].isupper() or first[:1].isdigit()
                         or first.lower() in ("the", "a", "an") or first != words[cut + 1]):
        return None
    return " ".join(words[cut + 1:])


def _cut_sentence(part: str) -> str:
    """``"Alien (1979). Enjoy!"`` -> ``"Alien (1979)"``: the text up to the first sentence end
    that more text follows (not after an abbreviation such as ``"Dr."`` or an initial)."""
    for m in _SENTENCE_END_RE.finditer(part):
        word = m.group("word")
        if word == ")" or (len(word) > 1 and word.lower() not in _ABBREVIATIONS):
            return part[:m.start() + len(word)]
    return part


def _trim_prose_tail(part: str) -> str:
    """``"Alien. Enjoy!"`` / ``"Alien are all great"`` -> ``"Alien"`` (the last piece of a
    prose list): cut at the first sentence end (:func:`_cut_sentence`), then before the first
    prose word."""
    part = _cut_sentence(part)
    words = part.split()
    cut = next((i for i, w in enumerate(words) if i > 0 and _prose_word(w)), None)
    return " ".join(words[:cut]) if cut is not None else part


def _split_commas(line: str) -> list[str]:
    """Entries of one comma-separated line.

    Pieces are split at commas, semicolons, an Oxford ``", and "``/``", or "`` and an ``" and "``
    before a capital. A prose sentence (``"I recommend A, B, and C."``) loses its lead-in
    (everything up to the last lowercase prose word of the first piece) and the last piece its
    closing chatter (from a sentence end or the first prose word).
    """
    cased = any(ch.isupper() for ch in line)
    pre = re.match(r"^([^:]{0,80}):\s+(?=\S)", line)
    if pre and not (cased and _titleish(pre.group(1), cased)):
        line = line[pre.end():]  # "Here are some: A, B" (a title-cased "Die Hard: X" stays)
    parts = re.split(r",\s*(?:and|or)\s+|,\s*|;\s*|\s+and\s+(?=[A-Z\"\u201c])", line)
    if cased and len(parts) >= 2:
        # a sentence ("Based on your taste, I recommend A, B, and C."): pieces of pure prose
        # before the lead-in are dropped, the lead-in trimmed off the first title
        for i, piece in enumerate(parts[:-1]):
            lead = _trim_prose_lead(piece)
            if lead is not None:
                parts = [lead, *parts[i + 1:-1], _trim_prose_tail(parts[-1])]
                break
            if not any(_prose_word(w) for w in piece.split()):
                break  # a title, not prose: no lead-in to look for
    parts = [p for p in (_clean_entry(p) for p in parts) if p]
    ok = [p for p in parts if _titleish(p, cased)]
    if len(ok) < 2 or len(ok) < 0.6 * len(parts):
        return []
    return ok


_TABLE_SEP_RE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_TITLE_HEADERS = ("title", "movie", "film", "name", "song", "item", "recommendation")


def _parse_table(lines: list[str]) -> list[str]:
    """Entries of a markdown table: the title column (by header, else the first text column)."""
    rows = [ln.strip() for ln in lines if ln.strip().startswith("|") and ln.count("|") >= 2]
    if len(rows) < 2 or not any(_TABLE_SEP_RE.match(r) for r in rows):
        return []
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows
             if not _TABLE_SEP_RE.match(r)]
    header, body = cells[0], cells[1:]
    col = next((i for i, h in enumerate(header)
                if any(k in h.casefold() for k in _TITLE_HEADERS)), None)
    if col is None:
        col = next((i for i in range(len(header))
                    if any(i < len(r) and _WORD_RE.search(r[i]) and not r[i].strip("#. ").isdigit()
                           for r in body)), 0)
    year_col = next((i for i, h in enumerate(header) if "year" in h.casefold()), None)
    out = []
    for r in body:
        if col >= len(r):
            continue
        e = _clean_entry(r[col])
        if e and year_col is not None and year_col < len(r) and split_year(e)[1] is None:
            y = re.fullmatch(r"\s*((?:18|19|20)\d\d)\s*", r[year_col])
            if y:
                e = f"{e} ({y.group(1)})"
        if e:
            out.append(e)
    return out


_INLINE_NUM_RE = re.compile(r"(?:(?<=\s)|^)(?:\*\*|__)?(?P<num>\d{1,3})[.)][ \t]+(?=\S)")


def _split_inline_numbering(line: str) -> list[str]:
    """``"Sure! 1. A 2. B 3. C"`` -> ``["Sure!", "1. A", "2. B", "3. C"]``.

    A line is split at list numbers only when they form a run ``n, n+1, ...`` of at least two
    (starting at 1) or three (starting elsewhere) markers ``"N. "``/``"N) "`` after a space;
    numbers in titles (``"Apollo 13. 2. Heat"``, ``"2001: A Space Odyssey"``) are skipped
    because they break the run. Other lines come back unchanged.
    """
    marks = list(_INLINE_NUM_RE.finditer(line))
    if len(marks) < 2:
        return [line]
    best: list[re.Match[str]] = []
    for i, start in enumerate(marks):
        run = [start]
        for m in marks[i + 1:]:
            if int(m.group("num")) == int(run[-1].group("num")) + 1:
                run.append(m)
        if len(run) > len(best):
            best = run
    first = int(best[0].group("num"))
    if len(best) < 2 or (first != 1 and len(best) < 3):
        return [line]
    cuts = [m.start() for m in best] + [len(line)]
    head = line[:cuts[0]].strip()
    pieces = [line[a:b].strip() for a, b in zip(cuts, cuts[1:])]
    pieces[-1] = _cut_sentence(pieces[-1])  # "3. Alien (1979). Enjoy!" -> "3. Alien (1979)"
    return ([head] if head else []) + pieces


def _plain_line_ok(line: str) -> bool:
    """A plain line that can be a title on its own (one-title-per-line output)."""
    s = line.strip()
    if not s or s.endswith(":") or len(s) > 120:
        return False
    words = _WORD_RE.findall(s)
    if not words or len(words) > 12:
        return False
    if s.endswith((".", "!", "?")) and len(words) > 4:
        return False
    return True


def _parse(text: Any) -> tuple[list[str], str]:
    """Entries and the format they were found in."""
    text = _CODE_FENCE_RE.sub("\n", _clean_text(text))
    if not text.strip():
        return [], "empty"
    lines = [piece for line in text.split("\n") for piece in _split_inline_numbering(line)]

    # list lines (numbered / bulleted), choosing the outer list when nested
    numbered: list[tuple[int, str]] = []
    bulleted: list[tuple[int, str]] = []
    for line in lines:
        m = _NUMBERED_RE.match(line)
        if m and m.group("body").strip():
            body = m.group("body")
            bold = m.group("bold")
            if bold:  # "**1. Title** - why" -> "**Title** - why"; "**1.** Title" -> "Title"
                body = body[len(bold):] if body.startswith(bold) else bold + body
            numbered.append((len(m.group("indent").expandtabs(4)), body))
            continue
        m = _BULLET_RE.match(line)
        if m:
            bulleted.append((len(m.group("indent").expandtabs(4)), m.group("body")))
    table = _parse_table(lines)
    if table:
        return table, "table"
    json_first = text.lstrip().startswith(("[", "{", "```"))
    if (numbered or bulleted) and not json_first:
        kinds = [k for k in (numbered, bulleted) if k]
        kinds.sort(key=lambda k: min(i for i, _ in k))
        for kind in kinds:
            base = min(i for i, _ in kind)
            bodies = [b for i, b in kind if i <= base + 1]
            if all(_is_header(b) for b in bodies) and len(kinds) > 1:
                continue  # a list of section headers: the titles are in the other kind
            entries = [_clean_entry(b) for b in bodies]
            entries = [e for e in entries if e]
            if entries:
                return entries, "list"

    parsed = _parse_json(text) if ("[" in text or "{" in text) else None
    if parsed:
        return parsed, "json"

    # markdown bold titles outside a list
    bold = [_tidy(a or b) for a, b in _BOLD_RE.findall(text)]
    bold = [b for b in bold if b and not b.endswith(":")]
    if len(bold) >= 2:
        return bold, "bold"

    # quoted titles in prose
    quoted = [_tidy(a or b or c) for a, b, c in _QUOTED_RE.findall(text)]
    quoted = [q for q in quoted if q]
    if len(quoted) >= 2 or (len(quoted) == 1 and len(text) > 3 * len(quoted[0]) + 10):
        return quoted, "quoted"

    content = [ln.strip() for ln in lines if ln.strip()]
    # one comma-separated line (the longest one with commas)
    with_commas = [ln for ln in content if ln.count(",") >= 2 or
                   (ln.count(",") == 1 and len(content) == 1)]
    if with_commas:
        best = max(with_commas, key=lambda ln: ln.count(","))
        parts = _split_commas(best)
        if len(parts) >= 2:
            return parts, "comma"

    # one title per line, preamble ("...:") and chatter (sentences) skipped
    plain = [ln for ln in content if _plain_line_ok(ln)]
    if plain:
        entries = [e for e in (_clean_entry(ln) for ln in plain) if e]
        if entries:
            return entries, "lines"
    if quoted:
        return quoted, "quoted"
    return [], "none"


def parse_list(text: str) -> list[str]:
    """Extract the list entries from raw model output, in order.

    Recognised: numbered (``1. X``, ``1) X``, ``#1: X``), bulleted (``-``, ``*``, ``•``), JSON
    arrays (of strings, or of objects with a ``title``/``name`` key; also inside a ```` ```json````
    fence, wrapped in an object, or truncated), markdown bold ``**X**``, quoted titles in prose,
    a comma-separated line, and one title per line. Preambles (``"Sure! Here are 10 movies:"``),
    section headers and closing chatter are skipped. Entries keep a year that follows the title
    (``"Heat (1995)"``); a trailing description after ``" - "`` or ``": "`` is dropped when it
    reads as prose rather than a subtitle. Never raises; returns ``[]`` for non-text.

    >>> parse_list("Sure! Here are 2 movies:\\n1. **Heat** (1995) - A heist thriller.\\n2. Alien")
    ['Heat (1995)', 'Alien']
    """
    try:
        return _parse(text)[0]
    except Exception:  # noqa: BLE001 - grounding must never fail an audit
        return []


# --------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------
_PAREN_RE = re.compile(r"\s*\(([^()]*)\)\s*$")
_AKA_RE = re.compile(r"^\s*(?:a\.?k\.?a\.?|aka|also known as)\s+", re.IGNORECASE)
_NUM_TOKEN_RE = re.compile(r"\b(?:\d+|[ivx]{1,5})\b")
_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6, "vii": 7, "viii": 8, "ix": 9,
          "x": 10}
_EPISODE_RE = re.compile(r"^(.+?):\s*(?:Episode|Part|Chapter|Vol\.?|Volume)\s+[\dIVX]+\s*[-:\u2013]"
                         r"\s*(.+)$", re.IGNORECASE)
_LEAD_ARTICLE_RE = re.compile(r"^(?:the|a|an) (?=\S)")
_FUZZY_LIMIT = 5


def _numbers(key: str) -> frozenset[int]:
    """Sequel markers of a normalised key: digits and roman numerals II..X (not a lone "i"/"x")."""
    out = set()
    for tok in _NUM_TOKEN_RE.findall(key):
        if tok.isdigit():
            out.add(int(tok))
        elif tok in _ROMAN and tok not in ("i", "x", "v"):
            out.add(_ROMAN[tok])
    return frozenset(out)


def _aliases(title: str) -> tuple[str, list[str], list[str]]:
    """Primary key, alternative keys and prefix keys of a catalogue title.

    ``"Seven (a.k.a. Se7en)"`` -> ``("seven", ["seven a k a se7en", "se7en"], [])``;
    ``"Name of the Rose, The (Name der Rose, Der)"`` -> ``("the name of the rose",
    ["der name der rose", ...], [])``; a leading article also yields the key without it. The
    prefix keys are the part before a colon (``"Lion King II: Simba's Pride, The"`` ->
    ``"the lion king ii"``): matched exactly, last, and never fuzzily.
    """
    base, _ = split_year(title)
    parens: list[str] = []
    core = base
    while True:
        m = _PAREN_RE.search(core)
        if not m or m.start() == 0:
            break
        parens.append(m.group(1))
        core = core[:m.start()]
    primary = normalize_title(core) or normalize_title(base)
    alts = []
    m = _EPISODE_RE.match(core)
    if m:  # "Star Wars: Episode IV - A New Hope" -> "Star Wars: A New Hope", "A New Hope"
        alts.append(normalize_title(f"{m.group(1)}: {m.group(2)}"))
        alts.append(normalize_title(m.group(2)))
    full = normalize_title(base)
    if full and full != primary:
        alts.append(full)
    for p in parens:
        k = normalize_title(_AKA_RE.sub("", p))
        if k and not k.isdigit():
            alts.append(k)
    for k in [primary, *alts]:
        short = _LEAD_ARTICLE_RE.sub("", k)
        if short != k and len(short) >= 3:
            alts.append(short)
    seen = {primary}
    uniq = []
    for a in alts:
        if a not in seen:
            seen.add(a)
            uniq.append(a)
    prefixes = []
    art = _ARTICLE_TAIL_RE.match(core.strip())
    natural = f"{art.group('art')} {art.group('body')}" if art else core
    if ": " in natural:
        pre = normalize_title(natural.split(": ", 1)[0])
        if len(pre) >= 4 and pre not in seen:
            prefixes.append(pre)
            short = _LEAD_ARTICLE_RE.sub("", pre)
            if short != pre and len(short) >= 4 and short not in seen:
                prefixes.append(short)
    return primary, uniq, prefixes


class TitleMatcher:
    """Match list entries to catalogue item ids.

    Parameters
    ----------
    titles
        ``{item_id: title}``. Titles may be in MovieLens form (``"Matrix, The"``, alternative
        titles in trailing parentheses, optional ``"(1999)"``).
    threshold
        Minimum fuzzy score (0-100) to accept a non-exact match.
    years
        ``{item_id: year}``; defaults to a trailing ``"(1999)"`` in the title.
    popularity
        ``{item_id: count}``; breaks ties among items with the same title (most popular wins,
        then catalogue order).
    scorer
        ``"token_sort_ratio"`` (default), ``"WRatio"``, ``"ratio"`` or ``"token_set_ratio"``.
    year_tolerance
        ``None`` (default): a year in the entry only chooses among same-titled items. An integer
        ``n``: an entry whose year is more than ``n`` years from every same-titled item matches
        nothing (strict mode: ``"The Lion King (2019)"`` is then not the 1994 film).

    Matching, in order, for the normalised entry (:func:`normalize_title`):

    1. exact match of an item's primary title;
    2. exact match of an alternative key: the title with its parentheses, an alternative title
       from the parentheses (``"Se7en"``), the title without a leading article, the franchise
       form of an episode title (``"Star Wars: A New Hope"``);
    3. exact match of the part before a colon (``"The Lion King II"`` for
       ``"Lion King II: Simba's Pride, The"``; ``"Star Wars"`` -> the most popular Star Wars);
    4. fuzzy match over primary and alternative keys with ``rapidfuzz.fuzz.token_sort_ratio``
       at ``threshold`` (default 90), rejecting candidates whose sequel numbers differ
       (``"Toy Story 2"`` never matches ``"Toy Story 3"``); keys shorter than 4 characters are
       only matched exactly.

    Same-titled items (MovieLens has e.g. three "Alice in Wonderland") are disambiguated by the
    year in the entry (exact year, then within one year), else by popularity. An entry whose year
    matches no candidate still matches by title (small models get years wrong).

    Why ``token_sort_ratio`` at 90, measured on 54 real SmolLM2-135M-Instruct outputs (220
    hand-labelled entries, 132 naming a MovieLens film; ``tests/data/``) against MovieLens,
    per-entry precision / recall:

    ================  ===========  ===========  ===========
    scorer            80           85-88        90-95
    ================  ===========  ===========  ===========
    token_sort_ratio  0.92 / 0.99  0.95 / 0.99  1.00 / 0.99
    WRatio            0.64 / 1.00  0.67 / 1.00  0.68-0.98 / 0.99-1.00
    token_set_ratio   0.66 / 1.00  0.67 / 1.00  0.72 / 1.00
    ================  ===========  ===========  ===========

    ``WRatio`` and ``token_set_ratio`` match invented titles to real ones that share words
    (``"The Rocky Horror Ride"`` -> ``"Rocky"``, ``"The Mandalorian"`` -> ``"Man, The"``,
    ``"1984: A Space Odyssey"`` -> ``"1984"``, ``"Jurassic Park: The Last Stand"`` ->
    ``"Jurassic Park"``): the small model invents exactly such titles. Below 90,
    ``token_sort_ratio`` accepts ``"The Princess Brb"`` -> ``"Princess Bride, The"`` and
    ``"The Lady in White"`` -> ``"Lady in the Water"``. At 90 it still takes one typo in a
    ten-letter word (``"Forest Gump"`` 95.7, ``"Jurrasic Park"`` 92.3, ``"Pulp Fictoin"`` 91.7);
    a transposition in a short title is rejected (``"Inceptoin"`` 88.9). The one miss on the
    real set is ``"The Matrix: Full Movie"`` (a text after a colon is never dropped, which is
    what keeps invented subtitles unmatched). Results are cached per (normalised entry, year).
    """

    def __init__(self, titles: Mapping[str, str], threshold: float = 90.0, *,
                 years: Mapping[str, int | None] | None = None,
                 popularity: Mapping[str, float] | None = None,
                 scorer: str = "token_sort_ratio", year_tolerance: int | None = None) -> None:
        from rapidfuzz import fuzz

        scorers = {"token_sort_ratio": fuzz.token_sort_ratio, "WRatio": fuzz.WRatio,
                   "ratio": fuzz.ratio, "token_set_ratio": fuzz.token_set_ratio}
        if scorer not in scorers:
            raise ValueError(f"scorer must be one of {sorted(scorers)}, got {scorer!r}")
        self.threshold = float(threshold)
        self.scorer_name = scorer
        self._scorer = scorers[scorer]
        self._primary: dict[str, list[tuple[str, int | None, float, int]]] = {}
        self._alias: dict[str, list[tuple[str, int | None, float, int]]] = {}
        self._prefix: dict[str, list[tuple[str, int | None, float, int]]] = {}
        self.year_tolerance = year_tolerance
        for order, (item_id, title) in enumerate(titles.items()):
            if not isinstance(title, str) or not title.strip():
                continue
            item_id = str(item_id)
            year = (years or {}).get(item_id) if years is not None else None
            if year is None or year != year:  # NaN
                year = split_year(title)[1]
            pop = float((popularity or {}).get(item_id, 0) or 0)
            cand = (item_id, None if year is None else int(year), pop, order)
            primary, alts, prefixes = _aliases(title)
            if primary:
                self._primary.setdefault(primary, []).append(cand)
            for a in alts:
                self._alias.setdefault(a, []).append(cand)
            for a in prefixes:
                self._prefix.setdefault(a, []).append(cand)
        self._choices = list(dict.fromkeys([*self._primary, *self._alias]))
        self._numbers = [_numbers(c) for c in self._choices]
        self._cache: dict[tuple[str, int | None], tuple[str | None, float]] = {}

    def __len__(self) -> int:
        return len(self._primary)

    @staticmethod
    def _pick(cands: list[tuple[str, int | None, float, int]], year: int | None) -> str:
        def rank(c: tuple[str, int | None, float, int]) -> tuple[int, float, int]:
            if year is None or c[1] is None:
                tier = 2
            else:
                diff = abs(c[1] - year)
                tier = 0 if diff == 0 else 1 if diff == 1 else 2
            return tier, -c[2], c[3]

        return min(cands, key=rank)[0]

    def _candidates(self, key: str, prefixes: bool = False
                    ) -> list[tuple[str, int | None, float, int]]:
        found = self._primary.get(key) or self._alias.get(key)
        if not found and prefixes:
            found = self._prefix.get(key)
        return found or []

    def _year_ok(self, cands: list[tuple[str, int | None, float, int]], year: int | None
                 ) -> bool:
        if self.year_tolerance is None or year is None:
            return True
        known = [c[1] for c in cands if c[1] is not None]
        return not known or any(abs(y - year) <= self.year_tolerance for y in known)

    def match_with_score(self, entry: str) -> tuple[str | None, float]:
        """``(item_id, score)`` for an entry; ``(None, best_score_below_threshold)`` if none.

        Exact matches score 100.
        """
        if not isinstance(entry, str):
            return None, 0.0
        raw = _tidy(entry)
        _, year = split_year(raw)
        key = normalize_title(raw)
        if not key:
            return None, 0.0
        ck = (key, year)
        hit = self._cache.get(ck)
        if hit is None:
            hit = self._match_key(key, year)
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[ck] = hit
        return hit

    def _match_key(self, key: str, year: int | None) -> tuple[str | None, float]:
        cands = self._candidates(key, prefixes=True)
        if cands:
            if not self._year_ok(cands, year):
                return None, 0.0
            return self._pick(cands, year), 100.0
        if len(key) < 4 or not self._choices:
            return None, 0.0
        from rapidfuzz import process

        nums = _numbers(key)
        best_below = 0.0
        results = process.extract(key, self._choices, scorer=self._scorer, processor=None,
                                  limit=_FUZZY_LIMIT, score_cutoff=min(self.threshold, 60.0))
        for choice, score, idx in results:
            if score < self.threshold:
                best_below = max(best_below, float(score))
                continue
            if nums != self._numbers[idx] and (nums or len(self._numbers[idx]) > 0):
                # sequel numbers must agree; a number-less entry may match a numbered title only
                # when that title has no number-less sibling (handled by exact match above)
                if nums:
                    continue
            cands = self._candidates(choice)
            if not self._year_ok(cands, year):
                continue
            return self._pick(cands, year), float(score)
        return None, best_below

    def match(self, entry: str) -> str | None:
        """The item id an entry names, or ``None``."""
        return self.match_with_score(entry)[0]


_VARIANT_SEP_RE = re.compile(r"\s+[-\u2013\u2014|]\s+|\s+[\u2013\u2014]|[\u2013\u2014]\s+")


def _variants(entry: str) -> list[str]:
    """The entry, then shorter readings: before a separator, without a trailing parenthesis."""
    out = [entry]
    base, year = split_year(entry)
    suffix = f" ({year})" if year else ""
    # " - Director" / " | note" tails; not ": " (a title-cased text after a colon is a
    # subtitle, and "Franchise: Invented Subtitle" must not ground to the franchise's film)
    for m in _VARIANT_SEP_RE.finditer(base):
        head = base[:m.start()].strip()
        if head:
            out.append(head + suffix)
    m = _PAREN_RE.search(base)
    if m and m.start() > 0:
        out.append(base[:m.start()].strip() + suffix)
    m = re.search(r"\s+(?:by|directed by|starring|from)\s+[A-Z]", base)
    if m and m.start() > 0:
        out.append(base[:m.start()].strip() + suffix)
    return list(dict.fromkeys(o for o in out if o.strip()))


def match_entry(entry: str, matcher: TitleMatcher) -> str | None:
    """Item id of one parsed entry, trying its shorter readings (see :func:`ground`)."""
    best: tuple[float, str] | None = None
    for i, v in enumerate(_variants(entry)):
        item, score = matcher.match_with_score(v)
        if item is None:
            continue
        if score >= 100.0 and i == 0:
            return item
        if best is None or score > best[0]:
            best = (score, item)
    return None if best is None else best[1]


def ground(text: str, matcher: TitleMatcher) -> Grounding:
    """Parse ``text`` into entries and match each to an item id.

    Keeps the list order; an entry matching an id already taken is dropped and counted in
    ``duplicates``; entries matching nothing go to ``unmatched``. For an entry with a separator
    (``"Title - description"``, ``"Title: subtitle"``) or a trailing parenthesis, the shorter
    readings are tried too and the best-scoring match wins (a full exact match wins outright).
    For comma-separated output, two neighbouring pieces are re-joined when together they name a
    title that neither names alone (``"The Good, the Bad and the Ugly"``). Never raises.
    """
    try:
        entries, fmt = _parse(text)
        if fmt == "comma":
            entries = _rejoin_commas(entries, matcher)
        return ground_entries(entries, lambda e: match_entry(e, matcher))
    except Exception:  # noqa: BLE001 - grounding must never fail an audit
        return Grounding()


def ground_entries(entries: list[str], match: Callable[[str], str | None]) -> Grounding:
    """A Grounding of parsed ``entries`` in list order: ``match(entry)`` gives its item (None:
    unmatched); an entry whose item is already taken is dropped and counted in
    ``duplicates``."""
    out = Grounding(entries=list(entries))
    seen: set[str] = set()
    for e in entries:
        item = match(e)
        if item is None:
            out.unmatched.append(e)
        elif item in seen:
            out.duplicates += 1
        else:
            seen.add(item)
            out.item_ids.append(item)
    return out


def _rejoin_commas(parts: list[str], matcher: TitleMatcher) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(parts):
        if i + 1 < len(parts):
            joined = f"{parts[i]}, {parts[i + 1]}"
            j_item, j_score = matcher.match_with_score(joined)
            if j_item is not None and j_score >= 100.0:
                a, sa = matcher.match_with_score(parts[i])
                b, sb = matcher.match_with_score(parts[i + 1])
                if not (a is not None and sa >= 100.0 and b is not None and sb >= 100.0):
                    out.append(joined)
                    i += 2
                    continue
        out.append(parts[i])
        i += 1
    return out


# --------------------------------------------------------------------------------------------
# FaiRLLM's normalisation (catalogue-free audits)
# --------------------------------------------------------------------------------------------
# ``\d+\. `` as FaiRLLM writes it; the look-behind only skips match attempts inside a run of
# digits, which can never start a match (the run's first digit is tried first), so the splits
# are the same, in linear instead of quadratic time on a long run of digits
_FAIRLLM_SPLIT_RE = re.compile(r"(?<!\d)\d+\. ")
_FAIRLLM_QUOTED_RE = re.compile(r"\"([^\"]*)\"")


def _drop_parenthesised(s: str) -> str:
    """``re.sub(r"\\([^)]*\\)", "", s)`` (each ``(`` up to the next ``)``, left to right) in
    linear time: the regex retries from every ``(`` when no ``)`` follows, quadratic on
    ``"(((("``."""
    out: list[str] = []
    start = 0
    while (opening := s.find("(", start)) >= 0 and (closing := s.find(")", opening + 1)) >= 0:
        out.append(s[start:opening])
        start = closing + 1
    out.append(s[start:])
    return "".join(out)


def fairllm_items(text: Any) -> list[str]:
    """A reply's items exactly as the FaiRLLM notebook reads them (METRICS.md section 1b).

    Source: Zhang et al., "Is ChatGPT Fair for Recommendation?", RecSys 2023 (arXiv
    2305.07609), the evaluation notebook's ``clean`` and ``simplified_list``. The rules, in
    order:

    1. lowercase (``str.lower``); delete every apostrophe ``'`` and every newline ``\\n``;
    2. split on the regex ``\\d+\\. `` ("one or more digits, a period, a space") and drop the
       text before the first match (a reply without such a number gives ``[]``);
    3. in each chunk cut everything from the first ``-`` onward (``"spider-man"`` ->
       ``"spider"``, as the notebook does);
    4. if the chunk contains a double quote ``"``: keep the first complete ``"..."`` substring,
       or, with no complete pair, delete the quotes; then strip surrounding whitespace;
    5. remove every parenthesised span ``\\([^)]*\\)`` (from a ``(`` to the next ``)``), then
       remove every space.

    No deduplication, no fuzzy matching, no filtering: a chunk that comes out empty stays an
    item (``""``). Items are equal when these strings are equal. Only ASCII ``'`` and ``"`` are
    treated (typographic quotes stay as they are); non-text gives ``[]``.

    >>> fairllm_items('Sure!\\n1. "The Matrix" (1999) - sci-fi\\n2. Ocean\\'s 11\\n')
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
