"""Parsing: the list entries of a language model's free-text answer.

:func:`parse_list` extracts the entries from raw output (numbered, bulleted, quoted, JSON,
comma-separated, markdown bold; preambles, descriptions and closing chatter dropped);
:func:`parse_entries` also says which format it found them in.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .normalize import _QUOTES, split_year

__all__ = ["parse_entries", "parse_list"]

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
    """Tell whether a list line opens a sub-list (``"**Action movies:**"``) rather than a title."""
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
    """Tell whether ``word`` is prose rather than part of a title.

    A prose word is lowercase and not one of the small words titles keep lowercase (a verb or
    other prose: ``"recommend"``, ``"enjoy"``, ``"are"``).
    """
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
    """Cut the text after its first sentence: ``"Alien (1979). Enjoy!"`` -> ``"Alien (1979)"``.

    The cut is at the first sentence end that more text follows (not after an abbreviation
    such as ``"Dr."`` or an initial).
    """
    for m in _SENTENCE_END_RE.finditer(part):
        word = m.group("word")
        if word == ")" or (len(word) > 1 and word.lower() not in _ABBREVIATIONS):
            return part[:m.start() + len(word)]
    return part


def _trim_prose_tail(part: str) -> str:
    """Trim the prose after the last piece of a prose list (``"Alien. Enjoy!"`` -> ``"Alien"``).

    Cut at the first sentence end (:func:`_cut_sentence`), then before the first prose word
    (``"Alien are all great"`` -> ``"Alien"``).
    """
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
    if not cells:  # separator rows only: no header, no entries
        return []
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
    # consecutive pairs: ``cuts[1:]`` is one shorter by design
    pieces = [line[a:b].strip() for a, b in zip(cuts, cuts[1:], strict=False)]
    pieces[-1] = _cut_sentence(pieces[-1])  # "3. Alien (1979). Enjoy!" -> "3. Alien (1979)"
    return ([head] if head else []) + pieces


def _plain_line_ok(line: str) -> bool:
    """Tell whether a plain line can be a title on its own (one-title-per-line output)."""
    s = line.strip()
    if not s or s.endswith(":") or len(s) > 120:
        return False
    words = _WORD_RE.findall(s)
    if not words or len(words) > 12:
        return False
    if s.endswith((".", "!", "?")) and len(words) > 4:
        return False
    return True


def parse_entries(text: Any) -> tuple[list[str], str]:
    r"""Return the list entries of a model's output and the format they were found in.

    The parser behind :func:`parse_list` (see there for what it recognises), without its
    last-resort guard: it is written never to raise, and the tests hold it to that. The format
    is one of ``"list"`` (numbered or bulleted), ``"table"``, ``"json"``, ``"bold"``,
    ``"quoted"``, ``"comma"``, ``"lines"``, ``"none"`` (nothing found) or ``"empty"`` (no text).
    Only a ``"list"`` keeps its first entries when more lines are appended (the early stop of
    :mod:`recaudit.recommenders.hf.early_stop` relies on it).

    >>> parse_entries("1. Heat\n2. Alien")
    (['Heat', 'Alien'], 'list')
    """
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
    r"""Extract the list entries from raw model output, in order.

    Recognised: numbered (``1. X``, ``1) X``, ``#1: X``), bulleted (``-``, ``*``, ``•``), JSON
    arrays (of strings, or of objects with a ``title``/``name`` key; also inside a ```` ```json````
    fence, wrapped in an object, or truncated), markdown bold ``**X**``, quoted titles in prose,
    a comma-separated line, and one title per line. Preambles (``"Sure! Here are 10 movies:"``),
    section headers and closing chatter are skipped. Entries keep a year that follows the title
    (``"Heat (1995)"``); a trailing description after ``" - "`` or ``": "`` is dropped when it
    reads as prose rather than a subtitle. Never raises; returns ``[]`` for non-text.

    >>> parse_list("Sure! Here are 2 movies:\n1. **Heat** (1995) - A heist thriller.\n2. Alien")
    ['Heat (1995)', 'Alien']
    """
    try:
        return parse_entries(text)[0]
    except Exception:  # noqa: BLE001 - grounding must never fail an audit
        return []


# --------------------------------------------------------------------------------------------
