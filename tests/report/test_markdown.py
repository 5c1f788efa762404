"""summary.md: verdict, gates, findings, probes; escaped for GitHub; short enough to post."""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt

from recaudit.report import markdown_summary, render_all
from recaudit.report.markdown import MAX_CHARS, md
from recaudit.results import GateResult

from .fixtures import HOSTILE, make_minimal, shared_pair


@pytest.fixture(scope="module")
def text() -> str:
    return markdown_summary(shared_pair()[0])


def _html(markdown: str) -> str:
    # Worst case for escaping: raw HTML allowed (GitHub allows a subset of it).
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)


def test_structure(text):
    assert text.startswith("## \u274c recaudit: **FAIL**")
    assert "2 of 3 gates failed" in text
    for head in ("### Gates", "### Top findings", "### Probes"):
        assert head in text
    assert "| \u274c FAIL | race-jaccard-gap |" in text
    assert "| \u2705 PASS | hallucination |" in text
    assert re.search(r"^1\. \*\*high\*\* .*race", text, flags=re.M)
    assert "\U0001f6d1 ERROR" in text and "SKIPPED" in text
    assert "<details><summary>All checks:" in text and "not significant" in text
    assert len(text) < MAX_CHARS


def test_tables_keep_their_columns(text):
    for block in re.findall(r"(?:^\|.*\|\n)+", text, flags=re.M):
        rows = block.strip("\n").split("\n")
        widths = {len(re.findall(r"(?<!\\)\|", row)) for row in rows}
        assert len(widths) == 1, rows


def test_rendered_markdown_has_no_markup_from_data(text):
    html = _html(text)
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    assert "<a " not in html and "href=" not in html  # no link at all
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # shown as text
    assert "<table>" in html and "<details>" in html


def test_md_escape():
    assert md("a|b") == "a\\|b"
    assert "\n" not in md("one\ntwo\r\nthree")
    assert "@\u200bsomeone" in md("hi @someone")
    assert "https://" not in md("see https://evil.example") and "www." not in md("www.x.io")
    assert md("`x`") == "\\`x\\`"
    assert md("<b>&") == "&lt;b&gt;&amp;"
    for s in HOSTILE:
        out = _html(md(s))
        assert "<script" not in out and "<img" not in out and "<a " not in out


def test_pr_comment_limit_is_respected():
    r = make_minimal()
    r.gates = [GateResult(name=f"gate-{i}-" + "x" * 60, probe="p", metric="m", mode="ci",
                          bound="<= 0.1", passed=i % 2 == 0, message="long " * 40)
               for i in range(600)]
    out = markdown_summary(r)
    assert len(out) <= MAX_CHARS + 200
    assert out.rstrip().endswith("_Summary truncated; see index.html for everything._")
    assert out.count("<details>") == out.count("</details>")


def test_minimal_and_comparison(tmp_path):
    out = markdown_summary(make_minimal())
    assert "NO GATES" in out and "No gates configured" in out
    pair = list(shared_pair())
    both = render_all(pair, tmp_path, formats=("md",))["md"].read_text(encoding="utf-8")
    assert both.startswith("## recaudit: model comparison")
    assert "| smollm2 | embedding:all-MiniLM-L6-v2 |" in both
    assert both.count("### ") >= 2 and "#### Gates" in both
