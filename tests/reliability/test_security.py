"""Security of the tool against the model it audits and the files it is given (issue 14, item 5).

* Hostile model output (HTML, JS, Markdown, jinja2 templates, XML breakers, control characters,
  lone surrogates) is inert in every artefact of a real audit: index.html, summary.md (also the
  GitHub job summary), junit.xml and results.json; also in the compare Markdown and on the
  terminal (the audit's summary table, ``recaudit recommend --raw``).
* Checkpoint code never runs by default: every loader call in the package passes
  ``trust_remote_code`` only from the explicit consent (default False), ``torch.load`` /
  ``pickle`` never appear, and a pickle-only checkpoint is refused before it is unpickled.
* Config and model data cannot make recaudit write outside the output directory.
* A planted API key never reaches results, reports, logs, the cache or export-requests output.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import sqlite3
import threading
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from . import tally

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "recaudit"

# ------------------------------------------------------------------------------ hostile output
JINJA_MARK = "50337"  # 7*7191: appears only if a template payload was evaluated
PAYLOADS = [
    "<script>alert('xss-script')</script>",
    "<img src=x onerror=alert('xss-img')>",
    "<a href=\"javascript:alert('xss-href')\">click</a>",
    "<xssprobe data-x=1>tag</xssprobe>",
    "<svg/onload=alert('xss-svg')>",
    "[md-link](javascript:alert(1)) ![md-image](http://evil.example/x.png)",
    "<details open><summary>md-html</summary></details>",
    "| md | table | break |\n|---|---|---|",
    "`md code` ```md fence``` @octocat www.evil.example https://evil.example",
    "{{ 7*7191 }} {% for x in range(3) %}jinja{% endfor %} {# c #}",
    "]]><injected-xml/><![CDATA[ & &amp; &#0; <?xml-stylesheet href='x'?>",
    "ctl:\x00\x01\x07\x08\x0b\x0c\x1b[31m\x1f\x7f:end",
    "lone \ud800 surrogate \udfff end",
    "\u202e RTL override \ufeff BOM \ufffe",
]
#: elements a payload tries to open (the report's own charts are <svg> without handlers)
_ATTACK_TAGS = {"script", "img", "xssprobe", "iframe", "object", "embed"}


def hostile(messages, k):
    """A python: recommender whose every answer carries every payload; for one subject it
    raises with a payload (failed-request messages reach the reports too)."""
    user = " ".join(m["content"] for m in messages if m["role"] == "user")
    if "Cold Summit" in user:
        raise RuntimeError("model crashed: " + PAYLOADS[0] + PAYLOADS[10])
    lines = [f"{i}. {p}" for i, p in enumerate(PAYLOADS, 1)]
    return "Here you go:\n" + "\n".join(lines[:k + 4]) + "\n" + "\n".join(PAYLOADS)


def _audit_config(tmp_path: Path, model: str, *, out: str = "out", name: str = "hostile",
                  extra: str = "") -> Path:
    cfg = tmp_path / f"{out}.yaml"
    cfg.write_text(
        f"name: {json.dumps(name)}\n"
        f"model: {json.dumps(model)}\n"
        f"engine: {{cache: {json.dumps(str(tmp_path / 'cache.sqlite'))}, progress: false}}\n"
        "stats: {n_bootstrap: 50, n_permutations: 99, min_group_size: 2}\n"
        "catalog: {source: none, parse: recaudit}\n"
        "probes:\n  - probe: counterfactual\n    params:\n      k: 10\n"
        "      similarities: [jaccard]\n      n_examples: 5\n"
        "      attributes: {gender: [a female, a male]}\n"
        "      subjects: {source: inline, items: [Alpha Station, Blue Harbor, Cold Summit,"
        " Desert Echo]}\n"
        "gates:\n  - {name: gender-snsr, probe: counterfactual, metric: snsr_jaccard, max: 0.1,"
        " mode: point}\n"
        f"out: {json.dumps(str(tmp_path / out))}\n" + extra, encoding="utf-8")
    return cfg


def _taint(result):
    """Every free-text field a renderer shows gets a payload (beyond what the audit put there)."""
    from recaudit.results import Finding

    joined = " ".join(p for p in PAYLOADS if "\ud800" not in p)  # results.json cannot hold it
    result.name += joined + " [/x] [bold red]rich markup[/bold red]"
    result.provenance.model_spec += joined
    result.provenance.batch_invariance = "no (" + joined + ")"
    for p in result.probes:
        p.warnings.append(joined)
        p.method_notes.append(joined)
        p.findings.append(Finding(probe=p.id, severity="high", title=joined, detail=joined,
                                  effect=0.5))
        for m in p.metrics[:20]:
            m.warning = joined
            if m.value is not None:
                m.value += PAYLOADS[1]
        for g in result.gates:
            g.message += joined
            g.name += PAYLOADS[3]
    return result


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    """One real audit of the hostile recommender (saved by save_result), plus the same result
    with payloads planted in every free-text field, rendered again."""
    from recaudit import load_config, run_audit
    from recaudit.gates import evaluate_gates
    from recaudit.report import save_result
    from recaudit.results import AuditResult

    tmp = tmp_path_factory.mktemp("hostile")
    cfg = load_config(_audit_config(tmp, "python:tests.reliability.test_security:hostile"))
    result = run_audit(cfg, evaluate_gates=False)
    result.gates = evaluate_gates(result, cfg.gates)
    real = save_result(result, tmp / "out")
    tally.add("bad inputs", len(PAYLOADS))
    tainted = _taint(AuditResult.load(real["json"]))
    return {"real": real, "tainted": save_result(tainted, tmp / "tainted"),
            "tainted_result": tainted}


def test_the_payloads_reach_the_results(artefacts) -> None:
    """Not vacuous: the model's raw text and grounded items carry the payloads into results."""
    text = artefacts["real"]["json"].read_text(encoding="utf-8")
    data = json.loads(text)
    assert "<script>alert('xss-script')</script>" in json.dumps(data)
    assert "model crashed" in json.dumps(data)
    html = artefacts["real"]["html"].read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(" in html  # the raw output is shown, escaped


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        self.text.append(data)


@pytest.mark.parametrize("which", ["real", "tainted"])
def test_html_report_is_inert(artefacts, which) -> None:
    page = artefacts[which]["html"].read_text(encoding="utf-8")
    parser = _Elements()
    parser.feed(page)
    parser.close()
    tags = {t for t, _ in parser.tags}
    assert not tags & _ATTACK_TAGS, tags & _ATTACK_TAGS
    for tag, attrs in parser.tags:
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name, value)
            assert name not in ("data-x",), (tag, name)
            assert not re.match(r"\s*(javascript|data|vbscript):", value or "", re.I), (tag, value)
    # the payload is there as text, decoded from escapes, never as markup
    text = "".join(parser.text)
    assert "<img src=x onerror=alert('xss-img')>" in text
    assert JINJA_MARK not in page and "{{ 7*7191 }}" in text
    assert "<meta http-equiv=\"Content-Security-Policy\"" in page
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", page), "control character"


def _markdown_tokens(text: str):
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable("table").enable("strikethrough")
    out = []

    def walk(tokens):
        for t in tokens:
            out.append(t)
            if t.children:
                walk(t.children)

    walk(md.parse(text))
    return out


_ALLOWED_MD_HTML = {"<details>", "</details>", "<br>", "</summary>"}


@pytest.mark.parametrize("which", ["real", "tainted"])
def test_markdown_summary_is_inert(artefacts, which) -> None:
    """summary.md (also what the workflow appends to $GITHUB_STEP_SUMMARY): the payloads open
    no link, image, HTML tag or code span; no autolink or @mention survives."""
    text = artefacts[which]["md"].read_text(encoding="utf-8")
    tokens = _markdown_tokens(text)
    kinds = {t.type for t in tokens}
    assert not kinds & {"link_open", "image", "fence", "code_block"}, kinds
    for t in tokens:
        if t.type == "html_block":  # only the tool's own collapsible checks table
            assert re.fullmatch(r"<details><summary>All checks: \d+ passed, \d+ need "
                                r"attention</summary>\n|</details>\n", t.content), t.content
        if t.type == "html_inline":
            tag = t.content.strip()
            assert tag in _ALLOWED_MD_HTML or tag.startswith("<summary>"), tag
        if t.type == "code_inline":
            assert re.fullmatch(r"[0-9a-f]{16}", t.content), t.content  # only the results hash
    rendered = " ".join(t.content for t in tokens if t.type == "text")
    assert not re.search(r"(?i)\b(https?|javascript):", rendered)
    assert not re.search(r"(?i)\bwww\.", rendered)
    assert not re.search(r"(?<![\w\u200b])@octocat", rendered)
    assert JINJA_MARK not in text
    # every table row keeps the header's column count (no pipe from a payload breaks it)
    for table in re.findall(r"((?:^\|.*\|$\n?)+)", text, flags=re.M):
        rows = [r for r in table.splitlines() if r]
        widths = {len(re.findall(r"(?<!\\)\|", r)) for r in rows}
        assert len(widths) == 1, rows[:3]
    if which == "tainted":
        assert "xssprobe" in text  # the planted text is there, escaped


def test_compare_markdown_is_inert() -> None:
    """``recaudit compare --markdown`` (also meant for a job summary): probe ids, group values
    (catalog data such as genres), notes and labels open no link, image, HTML or code span."""
    from types import SimpleNamespace

    from recaudit.report.markdown import render_comparison

    evil = " ".join(p for p in PAYLOADS if "\ud800" not in p)
    row = SimpleNamespace(status="regression", worsening=0.1, probe=evil, metric="snsr_jaccard",
                          where=evil, baseline=0.1, baseline_ci=(0.0, 0.2), current=0.3,
                          current_ci=(0.2, 0.4), delta=0.2, higher_is_worse=True, p_value=0.01,
                          p_adjusted=0.02, method=evil, note=evil)
    cmp = SimpleNamespace(regressions=[row], improvements=[], rows=[row], tolerance=0.02,
                          alpha=0.05, baseline=evil, current=evil, notes=[evil])
    text = render_comparison(cmp)
    tally.add("bad inputs")
    tokens = _markdown_tokens(text)
    assert not {t.type for t in tokens} & {"link_open", "image", "html_block", "html_inline",
                                           "code_inline", "fence", "code_block"}
    rendered = " ".join(t.content for t in tokens if t.type == "text")
    assert not re.search(r"(?i)\b(https?|javascript):|\bwww\.", rendered)
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f]", text)
    table = [r for r in text.splitlines() if r.startswith("|")]
    assert len({len(re.findall(r"(?<!\\)\|", r)) for r in table}) == 1, table
    assert "**regression**" in text and "snsr_jaccard" in text


_JUNIT_TAGS = {"testsuites", "testsuite", "testcase", "properties", "property", "failure",
               "error", "skipped", "system-out", "system-err"}


@pytest.mark.parametrize("which", ["real", "tainted"])
def test_junit_xml_is_well_formed_and_inert(artefacts, which) -> None:
    from junitparser import JUnitXml

    path = artefacts[which]["junit"]
    raw = path.read_bytes()
    assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]", raw), "XML 1.0 forbids these"
    root = ET.fromstring(raw)
    assert {el.tag for el in root.iter()} <= _JUNIT_TAGS
    suites = JUnitXml.fromfile(str(path))
    n_cases = sum(1 for suite in suites for _ in suite)
    assert n_cases >= 2
    assert JINJA_MARK not in raw.decode("utf-8")
    if which == "tainted":
        assert "]]><injected-xml/>" in ET.tostring(root, encoding="unicode").replace(
            "&gt;", ">").replace("&lt;", "<")


def test_terminal_summary_is_plain_text(artefacts, capsys) -> None:
    """The rich table ``recaudit audit`` prints: result text is never rich markup (``[/x]``
    made rich raise, exit 3 after a finished audit) and carries no control characters."""
    from recaudit.summary import print_summary

    print_summary(artefacts["tainted_result"])
    out = capsys.readouterr().out
    assert "[/x] [bold" in out.replace("\n", "")
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f]", out)


def test_recommend_command_prints_no_control_characters() -> None:
    """``recaudit recommend --raw`` prints the model's raw text: escape sequences (ESC, BEL,
    OSC hyperlinks) must not reach the terminal."""
    from recaudit.catalog import OpenCatalog
    from recaudit.cli import render_list
    from recaudit.engine import Answer
    from recaudit.recommenders.base import Request, Response

    text = "1. A\x1b]8;;http://evil.example\x07B\x1b]8;;\x07\n2. \x1b[2J\x1b[31mC\x00\x08"
    catalog = OpenCatalog("recaudit")
    answer = Answer(Request.from_prompt("x"), Response(text=text), catalog.ground(text))
    out = render_list("python:m:f", answer, catalog, 10, raw=True)
    tally.add("bad inputs")
    assert "-- raw output --" in out and "evil.example" in out
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f]", out)


def test_results_json_is_strict_json_with_surrogates_replaced(artefacts) -> None:
    """results.json is strict JSON (no NaN constant) and loads back; the model's lone surrogates
    (unencodable in UTF-8: they crashed the audit at the cache write) arrive as U+FFFD, the rest
    of the raw text unchanged."""
    from recaudit.results import AuditResult

    path = artefacts["real"]["json"]
    text = path.read_text(encoding="utf-8")
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    raw = json.loads(text)["probes"][0]["records"][0]["text"]
    assert "lone \ufffd surrogate \ufffd end" in raw and "<script>alert(" in raw
    assert "ctl:\\u0000\\u0001" in text  # control characters kept, JSON-escaped
    AuditResult.load(path)


# ------------------------------------------------------------------------------ checkpoint code
def _py_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _src(node: ast.AST) -> str:
    return ast.unparse(node)


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` of a name or attribute chain (cheap, unlike ast.unparse); "" otherwise."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else ""
    return ""


_PICKLE_MODULES = ("pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve")


def _code_loading_violations(tree: ast.AST, name: str) -> tuple[list[str], int]:
    """(what breaks the policy, number of loader calls seen) in one module's AST: loaders get
    ``trust_remote_code`` only as False or from the consent (whose defaults must be False); no
    pickle-family import; no ``torch.load``; ``*.load(..., allow_pickle=...)`` only False."""
    bad: list[str] = []
    loader_calls = 0
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(n.split(".")[0] in _PICKLE_MODULES for n in names):
                bad.append(f"{where}: imports {names}")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            pos = args.posonlyargs + args.args
            defaults = [None] * (len(pos) - len(args.defaults)) + list(args.defaults)
            for a, d in [*zip(pos, defaults), *zip(args.kwonlyargs, args.kw_defaults)]:
                if a.arg in ("trust_remote_code", "allow_pickle") and not (
                        isinstance(d, ast.Constant) and d.value is False):
                    bad.append(f"{where}: {a.arg} does not default to False")
        if not isinstance(node, ast.Call):
            continue
        func = _dotted(node.func)
        if func in ("torch.load", "torch.jit.load", "pickle.load", "pickle.loads"):
            bad.append(f"{where}: {func}")
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        if func.endswith("load") and "allow_pickle" in kw and not (
                isinstance(kw["allow_pickle"], ast.Constant) and kw["allow_pickle"].value is False):
            bad.append(f"{where}: {func}(allow_pickle={_src(kw['allow_pickle'])})")
        if func.endswith("from_pretrained") or func == "SentenceTransformer":
            loader_calls += 1
        value = kw.get("trust_remote_code")
        if value is not None and not (isinstance(value, ast.Constant) and value.value is False) \
                and not (not isinstance(value, ast.Constant) and _from_consent(value, node, tree)):
            bad.append(f"{where}: trust_remote_code={_src(value)}")
    return bad, loader_calls


def test_no_pickle_and_no_implicit_remote_code_in_the_package() -> None:
    bad: list[str] = []
    loader_calls = 0
    for f in _py_files():
        found, n = _code_loading_violations(ast.parse(f.read_text(encoding="utf-8")),
                                            str(f.relative_to(REPO)))
        bad += found
        loader_calls += n
    assert bad == []
    assert loader_calls >= 5  # the walk saw the loaders (hf, gguf, embedding, peft)


@pytest.mark.parametrize("source", [
    "AutoModel.from_pretrained(p, trust_remote_code=True)",
    "def load(p, flag):\n    return AutoModel.from_pretrained(p, trust_remote_code=flag)",
    "def load(p, trust_remote_code=True):\n    pass",
    "import torch\ntorch.load(f)",
    "import pickle",
    "from joblib import load",
    "np.load(f, allow_pickle=True)",
])
def test_the_code_loading_check_catches_violations(source: str) -> None:
    assert _code_loading_violations(ast.parse(source), "snippet")[0]


def _from_consent(value: ast.AST, call: ast.Call, tree: ast.AST) -> bool:
    """``value`` is the consent itself: the ``trust_remote_code`` parameter, a
    ``X.trust_remote_code`` field (the adapter's copy, the config's, the CLI flag's: all default
    False, see the next test), or a local name assigned from one of them in the function."""
    text = _src(value)
    if text == "trust_remote_code" or (isinstance(value, ast.Attribute)
                                       and value.attr == "trust_remote_code"):
        return True
    if not isinstance(value, ast.Name):
        return False
    enclosing = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and n.lineno <= call.lineno <= (n.end_lineno or n.lineno)]
    if not enclosing:
        return False
    fn = max(enclosing, key=lambda n: n.lineno)  # the innermost
    return any(isinstance(n, ast.Assign) and any(_src(t) == value.id for t in n.targets)
               and _src(n.value) in ("self.trust_remote_code", "trust_remote_code",
                                     "bool(trust_remote_code)")
               for n in ast.walk(fn))


def test_config_and_cli_consents_default_off() -> None:
    from recaudit.cli import build_parser
    from recaudit.config import AuditConfig

    fields = AuditConfig.model_fields
    assert fields["allow_pickle"].default is False
    assert fields["trust_remote_code"].default is False
    ns = build_parser().parse_args(["audit", "x.yaml"])
    assert ns.allow_pickle is False and ns.trust_remote_code is False


class _Boom:
    """Unpickling this writes a marker file: proof that pickle code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("kind,weights", [("hf", "pytorch_model.bin"),
                                          ("embedding", "pytorch_model.bin")])
def test_pickle_only_checkpoint_is_refused_unopened(tmp_path, kind, weights) -> None:
    import pickle

    from recaudit.errors import ModelSpecError
    from recaudit.recommenders import load_recommender

    tally.add("bad inputs")
    marker = tmp_path / "pickle-code-ran"
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "gpt2"}', encoding="utf-8")
    (model / weights).write_bytes(pickle.dumps(_Boom(marker)))
    with pytest.raises(ModelSpecError, match="pickle"):
        load_recommender(f"{kind}:{model}")
    assert not marker.exists()


# ------------------------------------------------------------------------------ output paths
def test_config_and_model_data_cannot_write_outside_out(tmp_path, monkeypatch) -> None:
    """Hostile ``name``, suite path, attribute values and model output with ``../``; a relative
    ``out``: every file the audit writes lies under ``out`` (or is the cache file named)."""
    from recaudit.cli import main

    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "cf.yaml").write_text(
        "probe: counterfactual\nparams:\n  k: 5\n  similarities: [jaccard]\n"
        "  attributes: {../../../x: [../../../y, /etc/z]}\n", encoding="utf-8")
    monkeypatch.chdir(work)
    cfg = work / "audit.yaml"
    cfg.write_text(
        "name: ../../../escaped-name\n"
        "model: python:tests.reliability.test_security:dot_dot\n"
        "engine: {cache: c.sqlite, progress: false}\n"
        "stats: {n_bootstrap: 50, n_permutations: 99, min_group_size: 2}\n"
        "catalog: {source: none, parse: recaudit}\n"
        "probes:\n  - probe: counterfactual\n    suite: ../../suites/cf.yaml\n"
        "    id: ../../../probe-id\n"
        "    params: {subjects: {source: inline, items: [../../../s1, /tmp/s2]}}\n"
        "mitigation:\n  - {reranker: consensus, id: ../../../variant, sweep: []}\n"
        "out: out\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(REPO))
    before = {p for p in tmp_path.rglob("*")}
    rc = main(["audit", str(cfg), "--no-progress"])
    tally.add("bad inputs", 6)
    assert rc in (0, 1)
    written = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    allowed_cache = {work / "c.sqlite", work / "c.sqlite-wal", work / "c.sqlite-shm",
                     work / "c.sqlite-journal"}
    outside = [p for p in written if (work / "out") not in p.parents and p not in allowed_cache]
    assert outside == []
    assert {p.name for p in (work / "out").iterdir()} == {
        "results.json", "index.html", "junit.xml", "summary.md"}
    data = json.loads((work / "out" / "results.json").read_text(encoding="utf-8"))
    assert data["name"] == "../../../escaped-name"  # the hostile names were used, not dropped
    assert data["probes"][0]["id"] == "../../../probe-id"
    assert "../../../variant" in {m["variant"] for m in data["probes"][0]["metrics"]}
    assert any("../../../pwned-1.txt" in json.dumps(r) for r in data["probes"][0]["records"])


def test_config_with_a_lone_surrogate_is_refused_before_any_model_call(tmp_path, monkeypatch,
                                                                       capsys) -> None:
    """``name: "\\ud800"`` used to run the whole audit and then fail writing results.json (exit
    3); now it is a one-line config error (exit 2) before the model is called."""
    from recaudit.cli import main

    marker = tmp_path / "called"
    monkeypatch.setenv("RECAUDIT_TEST_MARKER", str(marker))
    cfg = _audit_config(tmp_path, "python:tests.cli_recommenders:marking", name="x")
    cfg.write_text(cfg.read_text(encoding="utf-8").replace('name: "x"', 'name: "x\\ud800"'),
                   encoding="utf-8")
    rc = main(["audit", str(cfg), "--no-progress"])
    err = capsys.readouterr().err
    tally.add("bad inputs")
    assert rc == 2, err
    assert err.count("\n") == 1 and "lone surrogate" in err and f"{cfg}:1:" in err
    assert not marker.exists()


def dot_dot(messages, k):
    return "\n".join(f"{i}. ../../../pwned-{i}.txt" for i in range(1, k + 1))


# ------------------------------------------------------------------------------ secrets
KEY = "sk-planted-3f9c1e7a2b5d4c6e8f0a1b2c3d4e5f60"
URL_KEY = "sk-planted-in-url-9d8c7b6a5f4e3d2c1b0a"


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def _handler(seen: list[str]):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            seen.append(self.headers.get("Authorization", ""))
            self._send(200, {"object": "list", "data": [{"id": "m", "owned_by": "test"}]})

        def do_POST(self):  # noqa: N802
            auth = self.headers.get("Authorization", "")
            seen.append(auth)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            text = json.dumps(body["messages"])
            if "Cold Summit" in text or "REJECT" in seen:  # echoes the credentials it got
                self._send(401 if "REJECT" in seen else 400,
                           {"error": f"bad request; your auth was {auth}"})
                return
            answer = "\n".join(f"{i}. Title {i} {len(text) % 7}" for i in range(1, 11))
            self._send(200, {"choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": answer}}],
                             "model": "m", "usage": {"prompt_tokens": 3,
                                                     "completion_tokens": 5}})
    return Handler


@pytest.fixture
def server():
    seen: list[str] = []
    srv = _Server(("127.0.0.1", 0), _handler(seen))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", seen
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def _leaks(paths: list[Path], texts: dict[str, str], secret: str) -> list[str]:
    needle = secret.encode()
    found = [str(p) for p in paths if p.is_file() and needle in p.read_bytes()]
    return found + [name for name, t in texts.items() if secret in t]


def _cache_bytes_cover_the_answers(cache: Path) -> None:
    """The SQLite cache really holds the answers (so grepping its bytes is meaningful)."""
    with sqlite3.connect(cache) as db:
        tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        assert any(db.execute(f"select count(*) from {t}").fetchone()[0] for t in tables)


def test_planted_key_never_leaks(tmp_path, server, monkeypatch, capsys, caplog) -> None:
    from recaudit.cli import main

    url, seen = server
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.syspath_prepend(str(REPO))
    caplog.set_level(logging.DEBUG)
    cfg = _audit_config(tmp_path, f"openai:{url}#m",
                        extra="model_options: {max_retries: 0, concurrency: 2}\n")
    rc = main(["audit", str(cfg), "--no-progress"])
    export = tmp_path / "batch.jsonl"
    rc_export = main(["export-requests", str(cfg), "--format", "openai-batch", "--out",
                      str(export)])
    out, err = capsys.readouterr()
    assert rc in (0, 1), err
    assert rc_export == 0, err
    assert f"Bearer {KEY}" in seen  # the key was really used
    results = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert results["probes"][0]["n_failed"] >= 1  # the echoing answer was recorded as failed
    cache = tmp_path / "cache.sqlite"
    _cache_bytes_cover_the_answers(cache)
    artefacts = [*sorted((tmp_path / "out").iterdir()), export,
                 *sorted(tmp_path.glob("cache.sqlite*"))]
    leaks = _leaks(artefacts, {"stdout": out, "stderr": err, "logs": caplog.text}, KEY)
    tally.add("bad inputs")
    assert leaks == []
    # a server that rejects the key (HTTP 401) and echoes it: the one-line error masks it
    seen.append("REJECT")
    rc = main(["audit", str(cfg), "--no-progress", "--cache",
               str(tmp_path / "other.sqlite")])
    out, err = capsys.readouterr()
    tally.add("bad inputs")
    assert rc in (2, 3) and "401" in err, err
    assert _leaks([], {"stdout": out, "stderr": err, "logs": caplog.text}, KEY) == []


def test_key_in_the_model_url_is_refused_without_echo(tmp_path, server, monkeypatch, capsys,
                                                      caplog) -> None:
    """``openai:http://user:KEY@host#m`` would put the key in the spec, the provenance and every
    report: refused (exit 2) with a message that does not repeat it; nothing is written."""
    from recaudit.cli import main

    url, seen = server
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    caplog.set_level(logging.DEBUG)
    host = url.removeprefix("http://")
    for spec in (f"openai:http://user:{URL_KEY}@{host}#m", f"openai:http://{URL_KEY}@{host}#m",
                 f"openai:http://user:{URL_KEY}@{host}"):
        cfg = _audit_config(tmp_path, "python:tests.cli_recommenders:constant")
        rc = main(["audit", str(cfg), "--no-progress", "--model", spec])
        out, err = capsys.readouterr()
        tally.add("bad inputs")
        assert rc == 2, err
        assert "credentials" in err or "model name" in err
        assert len(err.strip().splitlines()) == 1
        assert _leaks(sorted(tmp_path.rglob("*")),
                      {"stdout": out, "stderr": err, "logs": caplog.text}, URL_KEY) == []
    assert not any(URL_KEY in s for s in seen)  # never even sent


def test_key_in_model_options_is_not_echoed(tmp_path, monkeypatch, capsys, caplog) -> None:
    """No headers option exists; a key given as one is refused without being repeated."""
    from recaudit.cli import main

    caplog.set_level(logging.DEBUG)
    cfg = _audit_config(tmp_path, "openai:http://127.0.0.1:9#m",
                        extra=f"model_options: {{headers: {{Authorization: Bearer {KEY}}}}}\n")
    rc = main(["audit", str(cfg), "--no-progress"])
    out, err = capsys.readouterr()
    tally.add("bad inputs")
    assert rc == 2, err
    written = [p for p in sorted(tmp_path.rglob("*")) if p != cfg]  # the user's own file aside
    assert _leaks(written, {"stdout": out, "stderr": err, "logs": caplog.text}, KEY) == []
    assert os.environ.get("OPENAI_API_KEY") != KEY
