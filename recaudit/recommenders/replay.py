"""Adapter answering requests from recorded answers (``replay:PATH``); no model runs.

``PATH`` is one recording file or a directory searched recursively (hidden files and folders
skipped; files read in the order of their relative paths). Files ending ``.jsonl``/``.ndjson``
and ``.csv``/``.tsv`` are recordings; in a directory other files are ignored, a single ``PATH``
with another ending is an error. The format of a JSONL file is read from its first record:

* **OpenAI Batch input** (``{"custom_id", "method": "POST", "url": "/v1/chat/completions",
  "body": {"model", "messages", ...}}``) and **OpenAI Batch output** (``{"id", "custom_id",
  "response": {"status_code", "body": {"choices": [{"message": {"content"}}]}}, "error"}``).
  Every output line is joined on ``custom_id`` with the input lines of *all* batch input files
  under ``PATH`` (no pairing by file name, so any names work, e.g. the ``batch_..._output.jsonl``
  the API returns next to the file you uploaded). A ``custom_id`` must therefore name one
  message list across the input files (same id with other messages: one-line error; put each
  batch in its own directory), and an output ``custom_id`` missing from every input file is a
  one-line error naming it. An output line with an ``error`` object, an HTTP status other than
  200 or no ``choices[0].message.content`` is recorded as a failure: that request's response
  fails with the recorded reason. Batch input files alone (no output file) are an error.
* **Chat recordings**: ``{"messages": [{"role", "content"}, ...], "response": "text"}`` or
  ``{"prompt": "user text", "system": "optional", "response": "text"}``; other keys are
  ignored. ``"response"`` may also be a non-empty list of texts: several answers to the same
  messages (repeated samples, in order).

A CSV has one recording per row: ``prompt_col`` (default ``"prompt"``), ``response_col``
(default ``"response"``) and optionally ``system_col`` (an empty cell means no system message),
set in ``model_options``.

Matching: a request is answered by the recording whose message list equals the request's
messages exactly (same roles, same contents, same order: :meth:`Request.chat_dicts`), so a
system message must be recorded to match a request that has one, and a bare ``prompt`` matches
only a request made of that one user message. ``k``, candidates and decoding parameters are
not part of the match (the recording is taken as the answer to those messages). Several
recordings of one message list: the first (file order, then line order) is used, except that
a successful recording replaces a recorded failure (a re-submitted batch); later recordings
with a different answer are counted (:attr:`ReplayRecommender.n_conflicts`).

Repeated samples (``decoding: {samples: N}``): sample 0 is the answer above; sample j is the
j-th successful recorded answer of the message list (file order, then line order, then the
order of a ``"response"`` list; a CSV repeats the prompt row). A request with fewer recorded
answers than N gets, for each missing sample, the failed response ``"only m recorded answers
for this request; decoding.samples asks for sample j+1"``, and :meth:`missing_report` says how
many requests were short.

A request with no recording gets a failed response ``"no recorded answer for this request"``;
:meth:`ReplayRecommender.missing_report` says how many and shows the first few prompts.

Capabilities: ``generate`` only. The fingerprint is the sha256 of every recording file (names
relative to ``PATH`` and contents, in name order), the adapter version and the column options,
so changing a recording invalidates the response cache; :meth:`weights_sha256` is the hash of
the files alone. Bad input (missing path, no recordings, a line that is not JSON, a CSV
without the named columns, an unknown ``custom_id``) raises a one-line
:class:`~recaudit.errors.ModelSpecError` or :class:`~recaudit.errors.DataError` (exit 2).
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from recaudit.errors import DataError, ModelSpecError
from recaudit.recommenders.base import GENERATE, Decoding, Recommender, Request, Response

ADAPTER_VERSION = "1"
JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv", ".tsv")
MISSING = "no recorded answer for this request"
N_EXAMPLES = 3


def message_key(messages: Sequence[Any]) -> str:
    """sha256 of a message list in :class:`Request`'s canonical form (role, content, order)."""
    chat = Request(messages).chat_dicts()
    blob = json.dumps(chat, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _short(text: str, limit: int = 80) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _last_user(messages: Sequence[dict[str, str]]) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


@dataclass
class Recording:
    """One recorded answer (``error`` set for a recorded failure) and where it came from."""

    messages: list[dict[str, str]]
    text: str = ""
    error: str | None = None
    n_prompt_tokens: int = 0
    n_output_tokens: int = 0
    where: str = ""

    def response(self) -> Response:
        """Return the recorded answer as a :class:`Response` (``meta["recorded"]``: its source)."""
        return Response(text=self.text, error=self.error, n_prompt_tokens=self.n_prompt_tokens,
                        n_output_tokens=self.n_output_tokens, meta={"recorded": self.where})


def _messages(value: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
    out = []
    for m in value:
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)):
            raise DataError(f"{where}: every message needs a string 'role' and 'content'")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _prompt_messages(prompt: Any, system: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(prompt, str):
        raise DataError(f"{where}: 'prompt' must be a string")
    if system is not None and not isinstance(system, str):
        raise DataError(f"{where}: 'system' must be a string")
    return Request.from_prompt(prompt, system=system or None).chat_dicts()


def _read_jsonl(path: Path, name: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{name}:{lineno}: not valid JSON ({err.msg}; "
                                    "truncated line?)") from None
                if not isinstance(obj, dict):
                    raise DataError(f"{name}:{lineno}: expected a JSON object per line")
                rows.append((lineno, obj))
    except UnicodeDecodeError:
        raise DataError(f"{name}: not UTF-8 text") from None
    except OSError as err:
        raise DataError(f"{name}: cannot read ({err.strerror or err})") from None
    return rows


def _kind(obj: dict[str, Any]) -> str | None:
    if "custom_id" in obj and isinstance(obj.get("body"), dict):
        return "batch-input"
    if "custom_id" in obj and ("response" in obj or "error" in obj) \
            and not isinstance(obj.get("response"), str):
        return "batch-output"
    if ("messages" in obj or "prompt" in obj) and "response" in obj:
        return "chat"
    return None


def _batch_output(obj: dict[str, Any]) -> tuple[str, str | None, int, int]:
    """``(text, error, prompt tokens, output tokens)`` of one Batch API output line."""
    err = obj.get("error")
    if err:
        if isinstance(err, dict):
            msg = ": ".join(str(err[k]) for k in ("code", "message") if err.get(k))
        else:
            msg = str(err)
        return "", f"recorded batch error: {_short(msg or 'unknown', 200)}", 0, 0
    resp = obj.get("response")
    if not isinstance(resp, dict):
        return "", "recorded batch line has neither a response nor an error", 0, 0
    body = resp.get("body")
    status = resp.get("status_code")
    if status != 200:
        detail = ""
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            detail = ": " + _short(str(body["error"].get("message", "")), 200)
        return "", f"recorded HTTP status {status}{detail}", 0, 0
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        content = None
    if not isinstance(content, str):
        return "", "recorded response has no choices[0].message.content", 0, 0
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return (content, None, int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0))


class ReplayRecommender(Recommender):
    """Answer requests from recordings under ``path``. See the module docstring."""

    capabilities = frozenset({GENERATE})

    def __init__(self, path: str, decoding: Decoding | None = None, *, spec: str | None = None,
                 prompt_col: str = "prompt", response_col: str = "response",
                 system_col: str | None = None, batch_size: int | None = None,
                 **options: Any) -> None:
        super().__init__(spec or f"replay:{path}", decoding)
        del batch_size  # accepted like every adapter's option; nothing is batched here
        if options:
            raise ModelSpecError(f"replay: unknown model_options {', '.join(sorted(options))}; "
                                 "known: prompt_col, response_col, system_col")
        self.path = Path(path).expanduser()
        self.prompt_col, self.response_col, self.system_col = prompt_col, response_col, system_col
        if not self.path.exists():
            raise ModelSpecError(f"replay: {path} does not exist")
        self.files = self._find_files()
        self.recordings: dict[str, Recording] = {}
        #: every successful recorded answer of a message list, in order (repeated samples)
        self.answers: dict[str, list[Recording]] = {}
        self.n_short = 0  # requests with fewer recorded answers than the samples asked
        self.short_examples: list[str] = []
        self._short_keys: set[str] = set()
        self.n_recordings = 0
        self.n_conflicts = 0
        self.n_requests = 0
        self.n_missing = 0
        self.missing_examples: list[str] = []
        self._missing_keys: set[str] = set()
        self._n_other_system = 0
        self._load()
        self._by_user = {_last_user(r.messages) for r in self.recordings.values()}
        digest = hashlib.sha256()
        for name, path_ in self.files:
            digest.update(f"{name}\0{hashlib.sha256(path_.read_bytes()).hexdigest()}\n"
                          .encode("utf-8"))
        self._files_sha256 = digest.hexdigest()

    def __repr__(self) -> str:
        return f"ReplayRecommender({str(self.path)!r})"

    # -- loading --------------------------------------------------------------------------------
    def _find_files(self) -> list[tuple[str, Path]]:
        suffixes = JSONL_SUFFIXES + CSV_SUFFIXES
        if self.path.is_file():
            if self.path.suffix.lower() not in suffixes:
                raise DataError(f"replay: {self.path} is not a recording (expected a file "
                                f"ending {', '.join(suffixes)})")
            return [(self.path.name, self.path)]
        found = []
        for p in self.path.rglob("*"):
            rel = p.relative_to(self.path)
            if p.is_file() and p.suffix.lower() in suffixes \
                    and not any(part.startswith(".") for part in rel.parts):
                found.append((rel.as_posix(), p))
        if not found:
            raise DataError(f"replay: no recordings ({', '.join(suffixes)} files) in "
                            f"{self.path}")
        return sorted(found)

    def _label(self, name: str) -> str:
        return str(self.path) if self.path.is_file() else str(self.path / name)

    def _load(self) -> None:
        inputs: dict[str, tuple[list[dict[str, str]], str]] = {}  # custom_id -> messages, where
        outputs: list[tuple[dict[str, Any], str]] = []
        for name, path in self.files:
            label = self._label(name)
            if path.suffix.lower() in CSV_SUFFIXES:
                for rec in self._read_csv(path, label):
                    self._add(rec)
                continue
            rows = _read_jsonl(path, label)
            if not rows:
                continue
            kind = _kind(rows[0][1])
            if kind is None:
                raise DataError(f"{label}:{rows[0][0]}: not a recording: expected an OpenAI "
                                "Batch input/output line or {messages|prompt, response}")
            for lineno, obj in rows:
                where = f"{label}:{lineno}"
                if _kind(obj) != kind:
                    raise DataError(f"{where}: not a {kind} line like the first of this file")
                if kind == "chat":
                    for rec in self._chat(obj, where):
                        self._add(rec)
                elif kind == "batch-input":
                    self._batch_input(obj, where, inputs)
                else:
                    outputs.append((obj, where))
        if inputs and not outputs:
            raise DataError(f"replay: {self.path} has OpenAI Batch input files but no batch "
                            "output file to answer them")
        for obj, where in outputs:
            cid = str(obj.get("custom_id"))
            if cid not in inputs:
                raise DataError(f"{where}: custom_id {cid!r} is in no batch input file under "
                                f"{self.path}")
            text, error, n_in, n_out = _batch_output(obj)
            self._add(Recording(inputs[cid][0], text, error, n_in, n_out, where))
        if not self.n_recordings:
            raise DataError(f"replay: no recorded answers in {self.path}")

    def _chat(self, obj: dict[str, Any], where: str) -> list[Recording]:
        if "messages" in obj:
            messages = _messages(obj["messages"], where)
        else:
            messages = _prompt_messages(obj["prompt"], obj.get("system"), where)
        answers = obj["response"]
        if isinstance(answers, list) and answers and all(isinstance(a, str) for a in answers):
            return [Recording(messages, a, where=f"{where}[{i}]") for i, a in enumerate(answers)]
        if not isinstance(answers, str):
            raise DataError(f"{where}: 'response' must be a string or a non-empty list of "
                            "strings (several answers)")
        return [Recording(messages, answers, where=where)]

    @staticmethod
    def _batch_input(obj: dict[str, Any], where: str,
                     inputs: dict[str, tuple[list[dict[str, str]], str]]) -> None:
        url = obj.get("url")
        if url != "/v1/chat/completions":
            raise DataError(f"{where}: batch url {url!r} is not /v1/chat/completions")
        cid = str(obj["custom_id"])
        messages = _messages(obj["body"].get("messages"), where)
        seen = inputs.get(cid)
        if seen is not None and seen[0] != messages:
            raise DataError(f"{where}: custom_id {cid!r} also names other messages at "
                            f"{seen[1]}; put each batch in its own directory")
        inputs.setdefault(cid, (messages, where))

    def _read_csv(self, path: Path, label: str) -> list[Recording]:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        out = []
        try:
            with path.open(encoding="utf-8-sig", newline="") as fh:
                reader = csv.DictReader(fh, delimiter=delimiter)
                columns = list(reader.fieldnames or [])
                wanted = [self.prompt_col, self.response_col] + (
                    [self.system_col] if self.system_col else [])
                absent = [c for c in wanted if c not in columns]
                if absent:
                    raise DataError(
                        f"{label}: no column {', '.join(repr(c) for c in absent)} (columns: "
                        f"{', '.join(columns) or 'none'}); set model_options prompt_col/"
                        "response_col/system_col")
                for row in reader:
                    where = f"{label}:{reader.line_num}"
                    prompt, response = row.get(self.prompt_col), row.get(self.response_col)
                    if prompt is None or response is None:
                        raise DataError(f"{where}: row has fewer cells than the header")
                    system = row.get(self.system_col) if self.system_col else None
                    out.append(Recording(_prompt_messages(prompt, system, where), response,
                                         where=where))
        except csv.Error as err:
            raise DataError(f"{label}: malformed CSV ({err})") from None
        except UnicodeDecodeError:
            raise DataError(f"{label}: not UTF-8 text") from None
        return out

    def _add(self, rec: Recording) -> None:
        self.n_recordings += 1
        key = message_key(rec.messages)
        if rec.error is None:
            self.answers.setdefault(key, []).append(rec)
        first = self.recordings.get(key)
        if first is None or (first.error is not None and rec.error is None):
            self.recordings[key] = rec
        elif (first.text, first.error) != (rec.text, rec.error) and rec.error is None:
            self.n_conflicts += 1

    # -- the protocol ---------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Return the sha256 of the adapter version, the recording files' digest and columns."""
        blob = json.dumps({"adapter": "replay", "version": ADAPTER_VERSION,
                           "files": self._files_sha256,
                           "columns": [self.prompt_col, self.response_col, self.system_col]},
                          sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def weights_sha256(self) -> str | None:
        """Return the sha256 of the recording files (they stand in for the weights)."""
        return self._files_sha256

    def batch_invariance(self) -> str | None:
        """Return "yes": a recorded answer cannot depend on the rest of its batch."""
        return "yes (recorded answers)"

    def recommend(self, requests: Sequence[Request]) -> list[Response]:
        """Return the recorded answer of each request; an error response where none exists."""
        out = []
        for req in requests:
            self.n_requests += 1
            key = message_key(req.messages)
            rec = self.recordings.get(key)
            if rec is not None and req.sample:
                out.append(self._sample(key, req))
                continue
            if rec is not None:
                out.append(rec.response())
                continue
            if key not in self._missing_keys:
                self._missing_keys.add(key)
                self.n_missing += 1
                user = _last_user(req.chat_dicts())
                self._n_other_system += user in self._by_user
                if len(self.missing_examples) < N_EXAMPLES:
                    self.missing_examples.append(_short(user))
            out.append(Response(error=MISSING))
        return out

    def _sample(self, key: str, req: Request) -> Response:
        """Return sample ``req.sample`` of ``key``'s recorded answers, or a one-line error."""
        answers = self.answers.get(key, [])
        if req.sample < len(answers):
            return answers[req.sample].response()
        if key not in self._short_keys:
            self._short_keys.add(key)
            self.n_short += 1
            if len(self.short_examples) < N_EXAMPLES:
                self.short_examples.append(
                    f"{_short(_last_user(req.chat_dicts()))!r} has {len(answers)}")
        return Response(error=f"only {len(answers)} recorded answers for this request; "
                              f"decoding.samples asks for sample {req.sample + 1}")

    def missing_report(self) -> str | None:
        """Return one line on the requests that had no recording; ``None`` if there were none.

        The line gives how many requests had no recording and the first few prompts.
        """
        if not self.n_missing and not self.n_short:
            return None
        lines = []
        if self.n_missing:
            line = (f"replay: {self.n_missing} of {self.n_requests} requests had no recorded "
                    f"answer in {self.path}; first: "
                    + "; ".join(repr(p) for p in self.missing_examples))
            if self._n_other_system:
                line += (f"; {self._n_other_system} of them match a recording's user message "
                         "but not its other messages (system message?)")
            lines.append(line)
        if self.n_short:
            lines.append(f"replay: {self.n_short} prompts have fewer recorded answers than "
                         f"decoding.samples asks in {self.path}; first: "
                         + "; ".join(self.short_examples))
        return "; ".join(lines)
