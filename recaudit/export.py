"""Write every request an audit would make, to answer them elsewhere (``export-requests``).

The probes are planned as :func:`recaudit.audit.run_audit` plans them (config, catalog, probes,
model-backed rerankers), with the capabilities ``{generate}`` and without loading the model.
Probes that need another capability (``score``, ``embed`` only) are skipped, and so are
scoring requests (candidates): a chat endpoint answers neither.

Requests are deduplicated by what is sent, the message list (the requests' :meth:`Request.key`
minus ``k``, which a chat body cannot carry): two requests with the same messages get one line.
Each line's ``custom_id`` is ``"req-"`` + the first 32 hex digits of the sha256 of the
canonical message list (:func:`recaudit.recommenders.replay.message_key`), so it is unique in
the file and the same in every export of the same audit. Formats:

* ``openai-batch``: OpenAI Batch API input, ``{"custom_id", "method": "POST", "url":
  "/v1/chat/completions", "body": {"model", "messages", "max_tokens", "temperature", "seed"}}``
  (the body the ``openai:`` adapter sends; decoding from the config);
* ``jsonl``: ``{"messages": [...]}`` per line; add ``"response"`` to each line to replay it.

The batch's output file, next to this input file in one directory, replays as
``model: replay:DIR``: a complete audit when every line has an answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError, OutputError
from .recommenders.base import GENERATE, Request
from .recommenders.replay import message_key

FORMATS = ("openai-batch", "jsonl")
CAPABILITIES = frozenset({GENERATE})


@dataclass
class ExportPlan:
    """The deduplicated requests of an audit and what was left out."""

    requests: list[Request] = field(default_factory=list)
    n_planned: int = 0
    skipped_probes: list[str] = field(default_factory=list)
    n_scoring: int = 0


def custom_id(request: Request) -> str:
    """Stable id of a request's message list: ``"req-"`` + 32 hex digits."""
    return "req-" + message_key(request.messages)[:32]


def plan_requests(cfg: Any, catalog: Any = None) -> ExportPlan:
    """Plan ``cfg``'s probes as :func:`~recaudit.audit.run_audit` does, with ``{generate}``."""
    from .audit import load_catalog, plan_probes
    from .probes.registry import AuditContext

    cfg.require_probes()
    catalog = catalog if catalog is not None else load_catalog(cfg)
    ctx = AuditContext(catalog=catalog, stats=cfg.stats, capabilities=CAPABILITIES,
                       config=cfg, recommender=None)
    plan = ExportPlan()
    planned, extra = plan_probes(cfg, ctx, "the export")
    queries: list[Any] = []
    for item in planned:
        if item.queries is None:
            plan.skipped_probes.append(f"{item.probe.run_id} ({item.status}: {item.reason})")
            continue
        queries.extend(item.queries)
        queries.extend(extra.get(item.probe.run_id, []))
    seen: set[str] = set()
    for q in queries:
        plan.n_planned += 1
        req = q.request
        if req.candidates is not None:
            plan.n_scoring += 1
            continue
        cid = custom_id(req)
        if cid not in seen:
            seen.add(cid)
            plan.requests.append(req)
    return plan


def request_line(request: Request, fmt: str, cfg: Any, model: str | None = None
                 ) -> dict[str, Any]:
    """One line of the export for ``request`` in format ``fmt``."""
    if fmt == "jsonl":
        return {"messages": request.chat_dicts()}
    d = cfg.decoding
    return {"custom_id": custom_id(request), "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model or cfg.model, "messages": request.chat_dicts(),
                     "max_tokens": d.max_new_tokens, "temperature": d.temperature,
                     "seed": d.seed}}


def write_requests(plan: ExportPlan, fh: IO[str], fmt: str, cfg: Any,
                   model: str | None = None) -> int:
    """Write ``plan``'s requests to ``fh`` as JSON lines; returns how many."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    for req in plan.requests:
        fh.write(json.dumps(request_line(req, fmt, cfg, model), ensure_ascii=False) + "\n")
    return len(plan.requests)


def export_requests(cfg: Any, fmt: str, out: str | Path | None = None,
                    model: str | None = None, stdout: IO[str] | None = None) -> ExportPlan:
    """Plan ``cfg`` and write its requests to ``out`` (or ``stdout``)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    plan = plan_requests(cfg)
    if out is None:
        import sys
        write_requests(plan, stdout or sys.stdout, fmt, cfg, model)
        return plan
    path = Path(out)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as fh:
            write_requests(plan, fh, fmt, cfg, model)
        tmp.replace(path)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from None
    return plan
