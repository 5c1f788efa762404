"""Logged rankings (``rankings:PATH``): a ranker's recorded answers to candidate lists, no model.

A log holds, per request, the candidates shown (ids, group labels, input order) and what the
ranker returned: its ranking (candidate ids, best first) or its raw text. The
``candidate_groups`` probe with ``log: PATH`` plans one query per logged request
(:func:`logged_request`), and this adapter answers each from the same file by its request id
(the request's messages name it), so the probe's whole analysis runs on recorded rankings.
``recaudit audit --rankings PATH`` does both without a config.

**JSONL** (``.jsonl`` / ``.ndjson``), one object per line (blank lines skipped)::

    {"request_id": "r1",
     "candidates": [{"id": "c1", "name": "Emily", "groups": {"race": "White", "sex": "female"}},
                    {"id": "c2", "group": "small provider"}, ...],
     "ranking": ["c2", "c1"]}          # or "text": "raw answer", parsed by the probe

The candidates are listed in input order (or every one carries ``"position"``, its 0-based
input position). A candidate has an ``id``, a group (``"group": label``: the attribute
``group``; or ``"groups": {attribute: label}``) and optionally the ``name`` it was shown as
(default: its id). Every candidate of the file has the same attributes.

**CSV** (``.csv``), one row per candidate with the columns ``request_id``, ``candidate_id``,
``position`` (0-based input position), ``group`` or ``group.<attribute>`` columns (e.g.
``group.race``, ``group.sex``), optionally ``name``, and either ``rank`` (1-based; empty: not
ranked) or ``text`` (the raw answer, on at least one row of the request).

Bad input is one line naming the file and line (:class:`~recaudit.errors.DataError`, exit 2):
a missing file, an empty one, a line that is not JSON, a missing field, a candidate without a
group, a duplicate request or candidate, a ranking that names no candidate of its request.

The adapter's capability is ``generate``; a request it has no log record for gets a failed
response. Its fingerprint is the sha256 of the file and the adapter version.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import DataError, ModelSpecError
from .base import GENERATE, Decoding, Recommender, Request, Response
from .replay import message_key

__all__ = ["LoggedRequest", "read_rankings", "logged_request", "RankingsRecommender",
           "LOG_TEMPLATE", "DEFAULT_ATTRIBUTE"]

ADAPTER_VERSION = "1"
JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)
#: the attribute of a candidate's ``"group"`` (CSV: the ``group`` column)
DEFAULT_ATTRIBUTE = "group"
#: the prompt of a logged request: its id and candidates in input order
LOG_TEMPLATE = ("Logged request {request_id}. Rank the following {N} candidates from the most "
                "to the least suitable, one per line, best first.\n\n{candidates}")
MISSING = "no logged ranking for this request"


@dataclass(frozen=True)
class LoggedRequest:
    """One logged request: candidates in input order, their groups, the ranker's answer.

    ``groups[attribute][i]`` is candidate ``i``'s label; exactly one of ``ranking`` (candidate
    ids, best first) and ``text`` (the raw answer) is set; ``where`` is ``file:line``.
    """

    request_id: str
    candidates: tuple[str, ...]
    names: tuple[str, ...]
    groups: dict[str, tuple[str, ...]]
    ranking: tuple[str, ...] | None
    text: str | None
    where: str

    def response(self) -> Response:
        """Return the logged answer: the ranking as ``item_ids``, or the raw text."""
        meta = {"logged": self.where}
        if self.ranking is not None:
            return Response(item_ids=list(self.ranking), meta=meta)
        return Response(text=self.text or "", meta=meta)


def logged_request(req: LoggedRequest) -> Request:
    """Return the request of a logged record (:data:`LOG_TEMPLATE`, one user message).

    The probe asks it and :class:`RankingsRecommender` answers it: it names the request id,
    so two logged requests with the same candidates stay apart.
    """
    lines = "\n".join(f"- {name}" for name in req.names)
    prompt = (LOG_TEMPLATE.replace("{request_id}", req.request_id)
              .replace("{N}", str(len(req.candidates))).replace("{candidates}", lines))
    return Request.from_prompt(prompt, k=len(req.candidates))


# -- reading -------------------------------------------------------------------------------------
def _text(value: Any) -> str | None:
    """Return a label as a string: strings and integers (not booleans); None for the rest."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _check(where: str, rid: str, ids: list[str], names: list[str],
           groups: list[dict[str, str]], ranking: list[str] | None, text: str | None,
           attributes: list[str] | None) -> LoggedRequest:
    """Check one request's fields and return it (DataError naming ``where`` otherwise)."""
    if not ids:
        raise DataError(f"{where}: request {rid!r} has no candidates")
    seen: set[str] = set()
    for c in ids:
        if c in seen:
            raise DataError(f"{where}: request {rid!r} lists candidate {c!r} twice")
        seen.add(c)
    want = attributes if attributes is not None else list(groups[0])
    for c, g in zip(ids, groups, strict=True):
        if not g:
            raise DataError(f"{where}: candidate {c!r} has no group ('group' or 'groups')")
        missing = [a for a in want if a not in g]
        extra = [a for a in g if a not in want]
        if missing or extra:
            raise DataError(f"{where}: candidate {c!r} has no {(missing or extra)[0]!r} group "
                            f"(the candidates of this log have {', '.join(want)})")
    if (ranking is None) == (text is None):
        raise DataError(f"{where}: request {rid!r} needs either 'ranking' (candidate ids) or "
                        "'text' (the raw answer), not both and not neither")
    if ranking is not None:
        ranked: set[str] = set()
        for c in ranking:
            if c not in seen:
                raise DataError(f"{where}: ranking names {c!r}, which is no candidate of "
                                f"request {rid!r}")
            if c in ranked:
                raise DataError(f"{where}: ranking names {c!r} twice")
            ranked.add(c)
    return LoggedRequest(rid, tuple(ids), tuple(names),
                         {a: tuple(g[a] for g in groups) for a in want},
                         None if ranking is None else tuple(ranking), text, where)


def _jsonl_candidates(cands: Any, where: str) -> tuple[list[str], list[str],
                                                        list[dict[str, str]]]:
    if not isinstance(cands, list) or not cands:
        raise DataError(f"{where}: 'candidates' must be a non-empty list")
    rows = []
    for i, c in enumerate(cands):
        if not isinstance(c, dict):
            raise DataError(f"{where}: candidates[{i}] must be an object with 'id' and 'group'")
        cid = _text(c.get("id"))
        if cid is None:
            raise DataError(f"{where}: candidates[{i}] has no 'id'")
        name = _text(c.get("name")) or cid
        if "groups" in c:
            raw = c["groups"]
            if not isinstance(raw, dict) or not raw:
                raise DataError(f"{where}: candidate {cid!r}: 'groups' must be an object of "
                                "attribute: label")
            groups = {str(a): _text(v) for a, v in raw.items()}
        elif "group" in c:
            groups = {DEFAULT_ATTRIBUTE: _text(c["group"])}
        else:
            groups = {}
        bad = [a for a, v in groups.items() if v is None]
        if bad:
            raise DataError(f"{where}: candidate {cid!r} has no {bad[0]!r} group (empty label)")
        position = c.get("position")
        rows.append((position, cid, name, {a: str(v) for a, v in groups.items()}))
    positions = [r[0] for r in rows]
    if any(p is not None for p in positions):
        if any(isinstance(p, bool) or not isinstance(p, int) for p in positions) or \
                sorted(positions) != list(range(len(rows))):  # type: ignore[type-var]
            raise DataError(f"{where}: 'position' must be given on every candidate, as the "
                            f"input positions 0..{len(rows) - 1}")
        rows.sort(key=lambda r: r[0])
    return [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]


def _read_jsonl(path: Path, label: str) -> list[LoggedRequest]:
    out: list[LoggedRequest] = []
    attributes: list[str] | None = None
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{label}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: not valid JSON ({err.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{where}: expected a JSON object per line")
            for key in ("request_id", "candidates"):
                if key not in obj:
                    raise DataError(f"{where}: missing {key!r}")
            rid = _text(obj["request_id"])
            if rid is None:
                raise DataError(f"{where}: 'request_id' must be a non-empty string or integer")
            ids, names, groups = _jsonl_candidates(obj["candidates"], where)
            ranking = obj.get("ranking")
            if ranking is not None:
                if not isinstance(ranking, list) or any(_text(c) is None for c in ranking):
                    raise DataError(f"{where}: 'ranking' must be a list of candidate ids")
                ranking = [_text(c) for c in ranking]
            text = obj.get("text")
            if text is not None and not isinstance(text, str):
                raise DataError(f"{where}: 'text' must be a string")
            rec = _check(where, rid, ids, names, groups, ranking, text, attributes)
            attributes = list(rec.groups)
            out.append(rec)
    return out


def _read_csv(path: Path, label: str) -> list[LoggedRequest]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        rows = list(enumerate(reader, 2))
    if not header:
        return []
    missing = [c for c in ("request_id", "candidate_id", "position") if c not in header]
    if missing:
        raise DataError(f"{label}:1: missing column {missing[0]!r} (a logged-rankings CSV has "
                        "request_id, candidate_id, position, group or group.<attribute>, and "
                        "rank or text)")
    group_cols = [(c, DEFAULT_ATTRIBUTE if c == "group" else c[len("group."):])
                  for c in header if c == "group" or (c.startswith("group.")
                                                      and len(c) > len("group."))]
    if not group_cols:
        raise DataError(f"{label}:1: no group column ('group' or 'group.<attribute>')")
    has_rank, has_text = "rank" in header, "text" in header
    if has_rank == has_text:
        raise DataError(f"{label}:1: needs either a 'rank' or a 'text' column, not "
                        f"{'both' if has_rank else 'neither'}")
    by_request: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for lineno, row in rows:
        if None in row:  # more cells than the header has columns
            raise DataError(f"{label}:{lineno}: more cells than columns")
        rid = _text(row.get("request_id"))
        if rid is None:
            raise DataError(f"{label}:{lineno}: missing 'request_id'")
        by_request.setdefault(rid, []).append((lineno, row))
    out = []
    attributes: list[str] | None = None
    for rid, cand_rows in by_request.items():
        where = f"{label}:{cand_rows[0][0]}"
        parsed = []
        for lineno, row in cand_rows:
            at = f"{label}:{lineno}"
            cid = _text(row.get("candidate_id"))
            if cid is None:
                raise DataError(f"{at}: missing 'candidate_id'")
            try:
                position = int((row.get("position") or "").strip())
            except ValueError:
                raise DataError(f"{at}: 'position' must be an integer (0-based input "
                                "position)") from None
            groups = {attr: (row.get(col) or "").strip() for col, attr in group_cols}
            empty = [a for a, v in groups.items() if not v]
            if empty:
                raise DataError(f"{at}: candidate {cid!r} has no {empty[0]!r} group")
            rank = (row.get("rank") or "").strip() if has_rank else ""
            if rank:
                try:
                    rank_no = int(rank)
                except ValueError:
                    rank_no = 0
                if rank_no < 1:
                    raise DataError(f"{at}: 'rank' must be a positive integer or empty")
            parsed.append((position, cid, _text(row.get("name")) or cid, groups,
                           int(rank) if rank else None, (row.get("text") or "")))
        if sorted(p[0] for p in parsed) != list(range(len(parsed))):
            raise DataError(f"{where}: request {rid!r}: 'position' must number its candidates "
                            f"0..{len(parsed) - 1}")
        parsed.sort(key=lambda p: p[0])
        ranking = text = None
        if has_rank:
            ranks = [(p[4], p[1]) for p in parsed if p[4] is not None]
            if len({r for r, _ in ranks}) != len(ranks):
                raise DataError(f"{where}: request {rid!r}: two candidates share a rank")
            ranking = [c for _, c in sorted(ranks)]
        else:
            texts = {p[5] for p in parsed if p[5].strip()}
            if len(texts) > 1:
                raise DataError(f"{where}: request {rid!r}: its rows give different 'text'")
            text = texts.pop() if texts else ""
        rec = _check(where, rid, [p[1] for p in parsed], [p[2] for p in parsed],
                     [p[3] for p in parsed], ranking, text, attributes)
        attributes = list(rec.groups)
        out.append(rec)
    return out


def read_rankings(path: str | Path) -> list[LoggedRequest]:
    """Read and check a logged-rankings file (module docstring); one-line DataError if bad."""
    p = Path(path).expanduser()
    label = str(path)
    if not p.is_file():
        raise DataError(f"rankings log {label} does not exist or is not a file")
    suffix = p.suffix.lower()
    if suffix not in JSONL_SUFFIXES + CSV_SUFFIXES:
        raise DataError(f"rankings log {label}: expected a file ending "
                        f"{', '.join(JSONL_SUFFIXES + CSV_SUFFIXES)}")
    try:
        records = (_read_csv(p, label) if suffix in CSV_SUFFIXES else _read_jsonl(p, label))
    except UnicodeDecodeError:
        raise DataError(f"{label}: not UTF-8 text") from None
    except csv.Error as err:
        raise DataError(f"{label}: not a readable CSV ({err})") from None
    except OSError as err:
        raise DataError(f"{label}: cannot read ({err.strerror or err})") from None
    if not records:
        raise DataError(f"rankings log {label} holds no logged request (empty file)")
    first: dict[str, str] = {}
    for rec in records:
        if rec.request_id in first:
            raise DataError(f"{rec.where}: request {rec.request_id!r} again (first at "
                            f"{first[rec.request_id]})")
        first[rec.request_id] = rec.where
    return records


# -- the adapter ---------------------------------------------------------------------------------
class RankingsRecommender(Recommender):
    """Answer each logged request (:func:`logged_request`) from the log. See the module doc."""

    capabilities = frozenset({GENERATE})

    def __init__(self, path: str, decoding: Decoding | None = None, *, spec: str | None = None,
                 batch_size: int | None = None) -> None:
        super().__init__(spec or f"rankings:{path}", decoding)
        del batch_size  # accepted like every adapter's option; nothing is batched here
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise ModelSpecError(f"rankings: {path} does not exist")
        self.records = read_rankings(path)
        self._answers = {message_key(logged_request(r).messages): r for r in self.records}
        self._sha256 = hashlib.sha256(self.path.read_bytes()).hexdigest()
        self.n_missing = 0

    def __repr__(self) -> str:
        return f"RankingsRecommender({str(self.path)!r})"

    def fingerprint(self) -> str:
        """Return the sha256 of the adapter version and the log file's digest."""
        blob = json.dumps({"adapter": "rankings", "version": ADAPTER_VERSION,
                           "file": self._sha256}, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def weights_sha256(self) -> str | None:
        """Return the sha256 of the log (it stands in for the weights)."""
        return self._sha256

    def batch_invariance(self) -> str | None:
        """Return "yes": a logged answer cannot depend on the rest of its batch."""
        return "yes (logged rankings)"

    def recommend(self, requests: Sequence[Request]) -> list[Response]:
        """Return each request's logged answer; a failed response where the log has none."""
        out = []
        for req in requests:
            rec = self._answers.get(message_key(req.messages))
            if rec is None or req.sample:
                self.n_missing += 1
                out.append(Response(error=MISSING))
            else:
                out.append(rec.response())
        return out

    def missing_report(self) -> str | None:
        """Return one line on the requests the log did not answer; ``None`` if none."""
        if not self.n_missing:
            return None
        return (f"rankings: {self.n_missing} request(s) have no logged ranking in {self.path} "
                "(the probe's log and the model's file differ?)")
