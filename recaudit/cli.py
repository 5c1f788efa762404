"""The ``recaudit`` command. Thin: parses arguments and calls the Python API.

Exit codes (:mod:`recaudit.errors`): 0 success / all gates pass, 1 a gate failed (or compare
found a regression), 2 usage or input error, 3 runtime failure (a model could not be loaded or
run), 4 a probe ended in error or could not be fed and is not ``optional: true``. When several
apply, ``audit`` exits with the first of 2, 3, 4, 1; results.json is written before any of them.
Heavy libraries are imported inside the command functions, so ``recaudit --help`` is instant.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any, Sequence

from . import __version__
from .errors import (EXIT_BUDGET, EXIT_GATE_FAILED, EXIT_OK, EXIT_PROBE_FAILED, EXIT_RUNTIME,
                     EXIT_USAGE,
                     ConfigError, RecauditError)

EPILOG = """exit codes:
  0  success (all gates pass)
  1  a gate failed, or compare found a regression
  2  usage or input error (config, catalog, model path, endpoint, results file)
  3  runtime failure (a model could not be loaded or run, every request failed)
  4  a probe ended in error, or had no data to run on, and is not 'optional: true'
     (a model that cannot serve a probe, or a catalog-free audit, is no failure)
  5  the --budget ran out before every gate was decided (no gate failed); rerun with a
     larger budget: cached answers are reused
"""


BUNDLE_EPILOG = """The bundle (a zip) holds results.json, the reports present, provenance.json,
the config the audit recorded (audit.yaml) and manifest.json (each member's size and sha256, the
UTC time, the recaudit and results schema versions); --sign adds manifest.sig and signer.pub.
exit codes: 0 written; 2 bad input (no OUT_DIR or results.json, a key that is not an ed25519
private key, BUNDLE exists without --force)
"""

VERIFY_EPILOG = """exit codes:
  0  verified: every sum matches (and the signature, when signed)
  1  verification failed: a member changed, missing or not listed, the manifest edited, a bad
     signature, or a signature not by --key (each problem on its own line, then a summary)
  2  bad input: not a zip, unreadable, no manifest, a --key that is not an ed25519 public key
Without --key a signature only shows the bundle is as the holder of the enclosed key made it;
--key (a public key you obtained elsewhere) says who signed.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep it one line
        self.print_usage(sys.stderr)
        raise SystemExit(f"recaudit: error: {message}")


def _add_model_flags(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--model", required=required, help="model spec: smollm2, minilm, hf:PATH, "
                   "gguf:PATH, embedding:PATH, openai:URL#MODEL, python:MODULE:FUNC, replay:FILE, "
                   "vllm:PATH, rankings:FILE")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow loading pickle weights (.bin/.pt/.pkl): they can execute code")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow an hf: checkpoint's own modelling code to run (off by default)")
    p.add_argument("--batch-size", type=int, help="requests per model batch")
    p.add_argument("--max-new-tokens", type=int, help="generation length limit")
    p.add_argument("--cache", help="SQLite response cache file")
    p.add_argument("--fresh-cache", action="store_true", help="if the response cache file is "
                   "unusable (corrupt), move it aside to <name>.corrupt-<timestamp>, start empty")


def build_parser() -> argparse.ArgumentParser:
    """Build the ``recaudit`` argument parser and its subcommands."""
    parser = _Parser(prog="recaudit", description="Audit LLM-based recommenders for fairness, "
                     "popularity and position bias, with confidence intervals and CI gates.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"recaudit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("recommend", help="ask one model for a grounded top-k list",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_flags(p, required=True)
    p.add_argument("--prompt", required=True, help="user message")
    p.add_argument("--system", default="You are a movie recommendation system.",
                   help="system message ('' for none)")
    p.add_argument("--k", type=int, default=10, help="list length (default 10)")
    p.add_argument("--raw", action="store_true", help="also print the raw model output")

    sub.add_parser("models", help="list model kinds and bundled short names")
    sub.add_parser("probes", help="list registered probes and bundled suites")

    p = sub.add_parser("audit", help="run the probes of an audit config",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="audit YAML file (or --rankings FILE)")
    p.add_argument("--rankings", metavar="FILE", help="audit logged rankings of candidate "
                   "lists (JSONL or CSV, see README) with no config and no model")
    _add_model_flags(p)
    p.add_argument("--out", help="output directory (default: config 'out')")
    p.add_argument("--max-requests", type=int, help="compute at most N uncached requests")
    p.add_argument("--dry-run", action="store_true", help="print the plan, compute nothing")
    p.add_argument("--adaptive", action="store_true", help="ask units in seeded rounds and "
                   "stop once every gate is decided (engine: {adaptive: true})")
    p.add_argument("--budget", metavar="SPEC", help="never spend more than requests=N, "
                   "tokens=M or cost=C,in=P,out=Q (prices per 1,000 input/output tokens)")
    p.add_argument("--seed", type=int, help="statistics seed")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--format", default="json,html,junit,md",
                   help="outputs to write (comma list of json, html, junit, md, pdf (needs "
                   "recaudit[pdf]), model-card)")
    p.add_argument("--strict", action="store_true",
                   help="with a replay: model, exit 2 if any request had no recorded answer")
    p.add_argument("--ray-address", metavar="ADDR", help="run on the Ray cluster at ADDR (auto, "
                   "host:port or ray://host:port; sets engine.backend: ray); exit 2 if unreachable")

    p = sub.add_parser("export-requests", help="write every request an audit would make "
                       "(OpenAI Batch input or JSONL) to answer elsewhere and replay",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="audit YAML file")
    p.add_argument("--format", required=True, choices=["openai-batch", "jsonl"],
                   help="openai-batch: Batch API input lines; jsonl: {\"messages\": [...]}")
    p.add_argument("--out", help="output file (default: stdout)")
    p.add_argument("--model", help="model name in each batch body (default: the config's model)")

    p = sub.add_parser("gate", help="evaluate gates on saved results",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", help="results.json (or its directory)")
    p.add_argument("--gates", help="YAML file with a 'gates:' list (default: the audit's own)")
    p.add_argument("--junit", help="write a JUnit XML file of the verdicts")
    p.add_argument("--markdown", help="write a Markdown summary of the verdicts")

    p = sub.add_parser("compare", help="flag metrics that regressed against a baseline",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("baseline")
    p.add_argument("current")
    p.add_argument("--tolerance", type=float, default=0.02,
                   help="minimum worsening (metric units) that counts as a regression, "
                   "in addition to significance of the paired test (default 0.02)")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--markdown", help="write the comparison as Markdown")

    p = sub.add_parser("mitigate", help="re-rank the lists of saved results and measure the "
                       "effect and its cost (no model run)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", help="results.json (or its directory)")
    p.add_argument("--reranker", required=True, help="reranker name (see 'recaudit rerankers')")
    p.add_argument("params", nargs="*", metavar="KEY=VALUE",
                   help="reranker parameters, anywhere on the line, e.g. p=0.5 alpha=0.1 "
                   "protected=head_tail=tail")
    p.add_argument("--probe", action="append", default=[], help="probe run id (repeatable; "
                   "default: every probe the reranker can serve)")
    p.add_argument("--k", type=int, help="re-rank the top k of each list (default: all)")
    p.add_argument("--sweep", help="comma list of values of the reranker's sweep parameter "
                   "('' for none; default: the reranker's grid)")
    p.add_argument("--id", help="variant name (default: reranker(params))")
    p.add_argument("--out", help="output directory (default: next to results.json)")
    p.add_argument("--format", default="json,html,junit,md")
    sub.add_parser("rerankers", help="list the mitigation rerankers")

    p = sub.add_parser("report", help="re-render reports from saved results (no model run)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    p.add_argument("--format", default="html", help="html, md, junit, json, pdf (needs "
                   "recaudit[pdf]), model-card (model_card.md) or a comma list")
    p.add_argument("--out", help="output directory (default: next to results.json)")

    p = sub.add_parser("bundle", help="pack an audit's output directory (results, reports, "
                       "provenance, config) with a sha256 manifest into one zip, optionally "
                       "signed", epilog=BUNDLE_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", metavar="OUT_DIR", help="the audit's output directory")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="the bundle to write (*.zip)")
    p.add_argument("--config", metavar="PATH", help="also pack this config file (config/NAME)")
    p.add_argument("--sign", metavar="KEY", help="sign the manifest with this ed25519 private "
                   "key (PEM, PKCS8; 'recaudit keygen' makes one)")
    p.add_argument("--force", action="store_true", help="replace an existing BUNDLE")

    p = sub.add_parser("verify", help="check an evidence bundle's sums and signature",
                       epilog=VERIFY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", metavar="BUNDLE", help="the bundle (*.zip) 'recaudit bundle' wrote")
    p.add_argument("--key", metavar="PUBKEY", help="the signer's public key (PEM or raw "
                   "base64): the signature must verify under it")

    p = sub.add_parser("keygen", help="make an ed25519 key pair to sign bundles with")
    p.add_argument("key", metavar="KEY", help="private key file to write (mode 0600); the "
                   "public key goes to KEY.pub")
    p.add_argument("--force", action="store_true", help="replace existing key files")
    return parser


# -- commands -----------------------------------------------------------------------------------
def _model_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if getattr(args, "batch_size", None):
        opts["batch_size"] = args.batch_size
    return opts


def cmd_recommend(args: argparse.Namespace) -> int:
    """Ask one model for a grounded top-k list and print it."""
    from .catalog import Catalog
    from .engine import Engine
    from .recommenders import Decoding, Request, load_recommender

    if args.k < 1:
        raise RecauditError("--k must be at least 1")
    rec = load_recommender(args.model, Decoding(max_new_tokens=args.max_new_tokens or 256),
                           allow_pickle=args.allow_pickle,
                           trust_remote_code=args.trust_remote_code, **_model_options(args))
    catalog = Catalog.from_movielens()
    engine = Engine(rec, catalog, cache_path=args.cache, progress=False,
                    fresh_cache=args.fresh_cache)
    try:
        req = Request.from_prompt(args.prompt, k=args.k, system=args.system or None)
        answer = engine.run([req])[req.key()]
    finally:
        engine.close()
    print(render_list(args.model, answer, catalog, args.k, raw=args.raw))
    return EXIT_RUNTIME if answer.response.error else EXIT_OK


def render_list(spec: str, answer: Any, catalog: Any, k: int, raw: bool = False) -> str:
    """Render one answer as ranked catalog titles (control characters removed)."""
    g = answer.grounding
    lines = [f"== {spec}: top-{k} grounded to the catalog "
             f"({'cached' if answer.cached else 'computed'}) =="]
    if answer.response.error:
        lines.append(f"error: {answer.response.error}")
        return "\n".join(lines)
    for rank, item in enumerate((g.item_ids if g else [])[:k], 1):
        lines.append(f"{rank:>3}. {catalog.title(item)}  [item {item}]")
    if g and g.unmatched:
        lines.append(f"  unmatched ({len(g.unmatched)}): " + "; ".join(g.unmatched[:10]))
    if raw:
        lines.append("-- raw output --")
        lines.append(answer.response.text)
    from .report._common import clean  # model text must not drive the terminal (ESC, BEL...)

    return clean("\n".join(lines))


def cmd_models(args: argparse.Namespace) -> int:
    """List model kinds and bundled short names."""
    from .recommenders import SHORT_NAMES, kinds

    print("kinds:")
    for kind, text in kinds().items():
        print(f"  {kind + ':':<11} {text}")
    print("bundled short names:")
    for name, text in SHORT_NAMES.items():
        print(f"  {name:<11} {text}")
    return EXIT_OK


def cmd_probes(args: argparse.Namespace) -> int:
    """List registered probes and bundled suites."""
    from .probes.registry import registry, suite_names

    print("probes:")
    for name, cls in sorted(registry().items()):
        print(f"  {name:<15} [{', '.join(cls.tags)}] {cls.description}")
    print("suites:", ", ".join(suite_names()))
    return EXIT_OK


def _nothing_answered(result: Any) -> str | None:
    """Say in one line why nothing was measured, or None.

    That is when every request the audit computed failed and none was cached (an endpoint
    that kept failing, a model that errs on every input).
    """
    eng = result.provenance.engine or {}
    computed, failed = eng.get("computed", 0), eng.get("failed", 0)
    if not computed or failed != computed or eng.get("cached", 0):
        return None
    first = next((p.first_error for p in result.probes if p.first_error), None)
    first = " ".join(first.split()) if first else ""
    return (f"all {failed} model requests failed, nothing was measured"
            + (f" (first: {first})" if first else "") + "; results.json keeps the errors")


def _probe_failures(failed: list[Any]) -> str:
    """One line naming the probes that fail the audit (exit 4) and why."""
    def one(p: Any) -> str:
        what = f"skipped ({p.skip_kind or 'unknown kind'})" if p.status == "skipped" else p.status
        reason = " ".join((p.error or "no reason recorded").split())
        return f"{p.id} {what}: {reason[:200]}"

    head = "1 probe did not measure" if len(failed) == 1 else \
        f"{len(failed)} probes did not measure"
    return (f"{head} ({'; '.join(one(p) for p in failed)}); results.json keeps them; "
            "'optional: true' on a probe entry accepts this")


def cmd_audit(args: argparse.Namespace) -> int:
    """Run an audit config, write its outputs, print the summary; see :func:`_audit_exit`."""
    from .audit import run_audit
    from .config import load_config

    overrides: dict[str, Any] = {}
    if args.model:
        overrides["model"] = args.model
    if args.allow_pickle:
        overrides["allow_pickle"] = True
    if args.trust_remote_code:
        overrides["trust_remote_code"] = True
    if args.batch_size or args.max_requests is not None or args.dry_run or args.cache \
            or args.no_progress or args.fresh_cache or args.adaptive or args.budget:
        eng: dict[str, Any] = {}
        if args.adaptive:
            eng["adaptive"] = True
        if args.budget:
            eng["budget"] = args.budget
        if args.batch_size:
            eng["batch_size"] = args.batch_size
        if args.max_requests is not None:
            eng["max_requests"] = args.max_requests
        if args.dry_run:
            eng["dry_run"] = True
        if args.cache:
            eng["cache"] = args.cache
        if args.no_progress:
            eng["progress"] = False
        if args.fresh_cache:
            eng["fresh_cache"] = True
        overrides["engine"] = eng
    if args.ray_address:
        overrides.setdefault("engine", {}).update(backend="ray", ray_address=args.ray_address)
    if args.max_new_tokens:
        overrides["decoding"] = {"max_new_tokens": args.max_new_tokens}
    if args.seed is not None:
        overrides["stats"] = {"seed": args.seed}
    if args.out:
        overrides["out"] = args.out
    if args.rankings:  # the log, no model, no catalog: the config is built in memory
        if args.config or args.model:
            raise ConfigError("audit: --rankings FILE takes no config file and no --model")
        from .config import parse_config
        from .probes.candidates import logged_audit_config
        cfg = parse_config(logged_audit_config(args.rankings), where="--rankings",
                           overrides=overrides)
    elif not args.config:
        raise ConfigError("audit: give an audit YAML file (or --rankings FILE)")
    else:
        cfg = load_config(args.config, overrides=overrides)
    cfg.require_probes()
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    from .report import check_formats
    check_formats(formats)  # an unknown format, or pdf without WeasyPrint: before any model call
    if not cfg.engine.dry_run:
        from .results import check_output_dir
        check_output_dir(cfg.out)  # before any model call: a finished audit needs a place
    rec = None
    if cfg.model.strip().startswith(("replay:", "rankings:")):  # kept: ask it what it lacked
        from .audit import build_recommender
        rec = build_recommender(cfg)
    from .report import save_result

    def save_measured(result: Any) -> None:  # before the gates: none can lose a finished audit
        if not cfg.engine.dry_run:
            save_result(result, cfg.out, formats=("json",))

    result = run_audit(cfg, command_line="recaudit " + shlex.join(sys.argv[1:]),
                       progress=not args.no_progress, recommender=rec,
                       on_measured=save_measured)
    if cfg.engine.dry_run:
        print("dry run: nothing computed, nothing written", file=sys.stderr)
        return EXIT_OK
    written = save_result(result, cfg.out, formats=formats)
    from .summary import print_summary
    print_summary(result)
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return _audit_exit(result, rec, strict=args.strict)


def _audit_exit(result: Any, rec: Any, strict: bool) -> int:
    """Return the exit code of a finished (and saved) audit.

    The first of 2 (``--strict`` and a replay without some answers), 3 (every request
    failed), 4 (a probe that fails the audit), 1 (a gate failed), 5 (the budget ran out with
    a gate undecided), else 0; each non-zero one says why on stderr in one line.
    """
    from .audit import failed_probes

    missing = rec.missing_report() if hasattr(rec, "missing_report") else None
    if missing and strict:
        print(f"recaudit: error: {missing} (--strict)", file=sys.stderr)
        return EXIT_USAGE
    if missing:
        print(f"recaudit: warning: {missing}", file=sys.stderr)
    nothing = None if missing else _nothing_answered(result)
    if nothing:  # exit 0 would pass a CI job on an audit that measured nothing
        print(f"recaudit: error: {nothing}", file=sys.stderr)
        return EXIT_RUNTIME
    failed = failed_probes(result)
    if failed:  # a probe in error measured nothing: a CI job must not pass on it
        print(f"recaudit: error: {_probe_failures(failed)}", file=sys.stderr)
        return EXIT_PROBE_FAILED
    undecided = [g for g in result.gates if g.decision == "undecided"]
    if any(not g.passed and g.decision != "undecided" for g in result.gates):
        return EXIT_GATE_FAILED
    if undecided:
        budget = result.provenance.engine.get("budget", {}).get("limit", "")
        print(f"recaudit: error: the budget ({budget}) ran out with {len(undecided)} gate(s) "
              f"undecided (first: {undecided[0].name}); rerun with a larger --budget: cached "
              "answers are reused", file=sys.stderr)
        return EXIT_BUDGET
    return EXIT_OK


def cmd_export_requests(args: argparse.Namespace) -> int:
    """Write every request an audit would make, to answer elsewhere and replay."""
    from .config import load_config
    from .export import export_requests

    cfg = load_config(args.config)
    plan = export_requests(cfg, args.format, out=args.out, model=args.model)
    where = args.out or "stdout"
    line = (f"{len(plan.requests)} requests written to {where} ({plan.n_planned} planned, "
            "deduplicated by messages)")
    if plan.n_scoring:
        line += f"; {plan.n_scoring} scoring requests left out"
    if plan.skipped_probes:
        line += "; probes skipped: " + ", ".join(plan.skipped_probes)
    print(line, file=sys.stderr)
    return EXIT_OK


def cmd_gate(args: argparse.Namespace) -> int:
    """Evaluate gates on saved results (exit 1 when one fails)."""
    from .gates import GateSpec, evaluate_gates, load_gates
    from .results import AuditResult

    result = AuditResult.load(args.results)
    specs = load_gates(args.gates) if args.gates else None
    if specs is None:
        specs = [GateSpec.model_validate(g) for g in result.config.get("gates", [])]
    result.gates = evaluate_gates(result, specs)
    for g in result.gates:
        print(f"{'PASS' if g.passed else 'FAIL'}  {g.name}: {g.message}")
    from .report import render_all
    from pathlib import Path
    if args.junit:
        render_all(result, Path(args.junit).parent, formats=("junit",),
                   names={"junit": Path(args.junit).name})
    if args.markdown:
        render_all(result, Path(args.markdown).parent, formats=("md",),
                   names={"md": Path(args.markdown).name})
    return EXIT_GATE_FAILED if any(not g.passed for g in result.gates) else EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare two results (exit 1 on a regression)."""
    from .compare import compare_results
    from .report.markdown import render_comparison
    from .results import AuditResult

    cmp = compare_results(AuditResult.load(args.baseline), AuditResult.load(args.current),
                          tolerance=args.tolerance, alpha=args.alpha)
    text = render_comparison(cmp)
    print(text)
    if args.markdown:
        from pathlib import Path
        Path(args.markdown).write_text(text + "\n", encoding="utf-8")
    return EXIT_GATE_FAILED if cmp.regressions else EXIT_OK


def _scalar(text: str) -> Any:
    """Read a command-line value as YAML does: 0.5 -> float, true -> bool, else the string."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _key_values(items: Sequence[str]) -> dict[str, Any]:
    """Read ``KEY=VALUE`` command-line items as a mapping (values as YAML scalars).

    A malformed item or a key given twice is a one-line ConfigError (exit 2), as a duplicate
    YAML key is.
    """
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"reranker parameter {item!r}: expected KEY=VALUE")
        if key in params:
            raise ConfigError(f"reranker parameter {key!r} given twice "
                              f"({key}={params[key]!r} and {item}); give it once")
        params[key] = _scalar(value)
    return params


#: MitigationSpec fields as ``recaudit mitigate`` spells them, for one-line errors
_MITIGATE_FLAGS = {"reranker": "--reranker", "params": "KEY=VALUE", "probes": "--probe",
                   "k": "--k", "sweep": "--sweep", "id": "--id"}


def cmd_mitigate(args: argparse.Namespace) -> int:
    """Re-rank the lists of saved results and write the results with the new variant."""
    from pathlib import Path

    from pydantic import ValidationError

    from .config import MitigationSpec
    from .mitigation.saved import mitigate_saved
    from .report import save_result
    from .results import AuditResult, check_output_dir

    params = _key_values(args.params)
    sweep = None
    if args.sweep is not None:
        sweep = [_scalar(v) for v in args.sweep.split(",") if v.strip()]
    try:
        spec = MitigationSpec(reranker=args.reranker, params=params, probes=args.probe,
                              k=args.k, sweep=sweep, id=args.id)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        where = _MITIGATE_FLAGS.get(str(first["loc"][0]) if first["loc"] else "", "mitigate")
        raise ConfigError(f"{where}: {first['msg']}") from None
    src = Path(args.results)
    out = Path(args.out) if args.out else (src if src.is_dir() else src.parent)
    check_output_dir(out)
    result = mitigate_saved(AuditResult.load(args.results), [spec])
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    for kind, path in save_result(result, out, formats=formats).items():
        print(f"{kind}: {path}")
    return EXIT_OK


def cmd_rerankers(args: argparse.Namespace) -> int:
    """List the mitigation rerankers."""
    from .mitigation.registry import get_reranker, reranker_names

    for name in reranker_names():
        cls = get_reranker(name)
        sweep = f" (sweeps {cls.sweep})" if cls.sweep else ""
        print(f"  {name:<12} {cls.description}{sweep}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """Re-render reports from saved results."""
    from pathlib import Path

    from .report import render_all
    from .results import AuditResult

    result = AuditResult.load(args.results)
    src = Path(args.results)
    out = Path(args.out) if args.out else (src if src.is_dir() else src.parent)
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    for kind, path in render_all(result, out, formats=formats).items():
        print(f"{kind}: {path}")
    return EXIT_OK


def cmd_bundle(args: argparse.Namespace) -> int:
    """Pack an audit's output directory into an evidence bundle (see recaudit.bundle)."""
    from .bundle import create_bundle

    info = create_bundle(args.out_dir, args.out, config=args.config, key=args.sign,
                         force=args.force)
    config = info.manifest["config"]
    if not config["recorded"] and not config["given"]:
        print("recaudit: warning: results.json records no config text; pass --config PATH to "
              "pack the config", file=sys.stderr)
    if config["given_matches_recorded"] is False:
        print(f"recaudit: warning: {args.config} is not the config results.json records "
              "(sha256 differs); packed as given", file=sys.stderr)
    signed = (f"signed, key fingerprint {info.fingerprint}" if info.fingerprint
              else "unsigned")
    print(f"bundle: {info.path} ({len(info.members)} members: {', '.join(info.members)}; "
          f"{signed})")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    """Check an evidence bundle: 0 verified, 1 failed, 2 bad input."""
    from .bundle import verify_bundle

    outcome = verify_bundle(args.bundle, key=args.key)
    for line in outcome.lines():
        print(line)
    return outcome.exit_code


def cmd_keygen(args: argparse.Namespace) -> int:
    """Write an ed25519 key pair for ``bundle --sign``."""
    from .bundle import generate_key

    private, public, fingerprint = generate_key(args.key, force=args.force)
    print(f"private key: {private} (mode 0600; keep it secret)")
    print(f"public key: {public} (fingerprint {fingerprint}; give it to whoever verifies)")
    return EXIT_OK


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; ``mitigate``'s KEY=VALUE parameters may stand anywhere on its line.

    argparse alone takes a positional list only in one run, right after RESULTS.
    """
    args, rest = parser.parse_known_args(argv)
    if rest and args.command == "mitigate":
        args.params = list(args.params) + [x for x in rest if _is_key_value(x)]
        rest = [x for x in rest if not _is_key_value(x)]
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def _is_key_value(item: str) -> bool:
    return "=" in item and not item.startswith("-")


COMMANDS = {"recommend": cmd_recommend, "models": cmd_models, "probes": cmd_probes,
            "audit": cmd_audit, "gate": cmd_gate, "compare": cmd_compare, "report": cmd_report,
            "mitigate": cmd_mitigate, "rerankers": cmd_rerankers,
            "export-requests": cmd_export_requests, "bundle": cmd_bundle,
            "verify": cmd_verify, "keygen": cmd_keygen}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``recaudit`` with ``argv``; return the exit code (errors are one line on stderr)."""
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return EXIT_USAGE
        return int(exc.code or 0) and EXIT_USAGE
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except RecauditError as err:
        if args.debug:
            raise
        print(f"recaudit: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("recaudit: interrupted; finished requests are cached, rerun to resume",
              file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - unexpected: one line, traceback with --debug
        if args.debug:
            raise
        print(f"recaudit: error: unexpected {type(err).__name__}: {err} (rerun with --debug)",
              file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
