"""Hostile model output through the whole pipeline, checked in headless Chromium.

A recommender answers with real catalog titles mixed with ``<script>``, ``onerror=``,
``javascript:`` links and template syntax. The text goes through the engine, grounding, the
counterfactual probe, results.json and the HTML renderer; in the browser (CSP bypassed, so the
escaping itself is tested) nothing executes, no element is injected, and the raw output is
shown as text.
"""

from __future__ import annotations

import json

import pytest

from recaudit.audit import run_audit
from recaudit.catalog import Catalog
from recaudit.config import parse_config
from recaudit.recommenders.base import GENERATE, Recommender, Response
from recaudit.report import save_result

from .test_browser import CHROMIUM, DOM_REPORT, Chromium

pytestmark = pytest.mark.browser

HOSTILE = [
    "<script>document.title='pwned'</script>",
    "<img src=x onerror=\"document.title='pwned'\">",
    "[click me](javascript:document.title='pwned')",
    "<a href=\"javascript:document.title='pwned'\">click</a>",
    "{{ 7*7 }} {% if true %}jinja{% endif %}",
]


class HostileRecommender(Recommender):
    """Neutral prompts get two real titles; attributed prompts get every hostile string."""

    capabilities = frozenset({GENERATE})

    def fingerprint(self) -> str:
        return "hostile-v1"

    def recommend(self, requests):
        out = []
        for r in requests:
            prompt = r.messages[-1].content
            lines = ["Heat (1995)", "Toy Story"]
            if not prompt.startswith("I am a fan"):
                lines = ["Toy Story"] + HOSTILE
            out.append(Response(text="Sure!\n" + "\n".join(f"{i}. {t}"
                                                          for i, t in enumerate(lines, 1))))
        return out


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (run `make browser`); browser tests skipped")
    tmp = tmp_path_factory.mktemp("pipeline")
    (tmp / "items.csv").write_text("id,title,genres\n1,Toy Story (1995),Animation\n"
                                   "2,Heat (1995),Crime\n3,Fargo (1996),Crime\n")
    catalog = Catalog.from_csv(tmp / "items.csv", id_col="id", title_col="title",
                               genres_col="genres")
    cfg = parse_config({
        "name": "hostile <script>document.title='pwned'</script>",
        "probes": [{"probe": "counterfactual", "params": {
            "k": 5, "attributes": ["gender"],
            "subjects": {"source": "inline", "items": ["Heat", "Fargo <b>bold</b>"]}}}],
        "stats": {"n_bootstrap": 100, "n_permutations": 100, "min_group_size": 2},
        "engine": {"cache": str(tmp / "cache.sqlite"), "progress": False}})
    result = run_audit(cfg, recommender=HostileRecommender(spec="python:hostile"),
                       catalog=catalog, progress=False)
    written = save_result(result, tmp / "out")
    browser = Chromium(CHROMIUM, tmp / "profile")
    try:
        browser.open(written["html"].resolve().as_uri())
        yield browser, written, result
    finally:
        browser.close()


def test_hostile_output_survives_into_results_json(audited):
    _, written, _ = audited
    data = json.loads(written["json"].read_text())
    texts = "\n".join(r["text"] for r in data["probes"][0]["records"])
    unmatched = [u for r in data["probes"][0]["records"] for u in (r["unmatched"] or [])]
    for s in HOSTILE:
        assert s in texts  # stored verbatim: results stay recomputable
    assert any("<script>" in u for u in unmatched)  # grounded as a hallucination, not an item


def test_nothing_executes_and_text_is_shown(audited):
    browser, _, _ = audited
    dom = browser.evaluate(DOM_REPORT)
    # a script that ran would have replaced the title; the audit name is shown there as text
    assert dom["title"] != "pwned" and dom["title"].startswith("recaudit report")
    assert dom["scripts"] == 0 and dom["imgs"] == 0 and dom["iframes"] == 0
    assert dom["handlers"] == [] and dom["jsLinks"] == 0 and dom["links"] == []
    raw = browser.evaluate(
        "Array.from(document.querySelectorAll('pre')).map(p => p.textContent).join('\\n')")
    for s in HOSTILE:
        assert s in raw, f"raw model output not shown as text: {s!r}"
    # {{ 7*7 }} was not evaluated by the template engine (the literal is shown, checked above;
    # no "49 jinja" where it stood: a bare "49" may be part of a timestamp elsewhere in a <pre>)
    assert "49 jinja" not in raw and "49 {%" not in raw
    text = browser.evaluate("document.body.textContent")
    assert "Fargo <b>bold</b>" in text  # subject strings are escaped as well
    assert "hostile <script>" in text  # so is the audit name


def test_no_exceptions_or_console_errors(audited):
    browser, _, _ = audited
    bad = [ev for ev in browser.events
           if ev["method"] == "Runtime.exceptionThrown"
           or (ev["method"] == "Runtime.consoleAPICalled"
               and ev["params"].get("type") in ("error", "warning"))
           or (ev["method"] == "Log.entryAdded"
               and ev["params"]["entry"].get("level") in ("error", "warning"))]
    assert bad == []
