"""A demo-shaped report in headless Chromium: variants never mix.

A real audit (``recaudit audit``) of a recommender with a planted gender bias, its counterfactual
lists re-ranked by consensus as the demo does (``mitigation: consensus``), written to
results.json and index.html. In the browser: the original's "Disparity per attribute" table
shows exactly results.json's original records (the old report showed the consensus variant's
0.000 there); the original section comes before the variant's; every chart and table lies in
the section of the one variant it names.
"""

from __future__ import annotations

import json
import shutil

import pytest

from recaudit.formatting import fmt

from .. import gate_recommenders as gr
from .test_browser import CHROMIUM, Chromium

pytestmark = pytest.mark.browser

CONFIG = """\
model: python:tests.gate_recommenders:biased
engine: {{cache: {cache}, progress: false}}
stats: {{n_bootstrap: 100, n_permutations: 99, min_group_size: 5}}
catalog: {{source: csv, path: {items}}}
probes:
  - probe: counterfactual
    suite: fairllm
    params:
      k: 10
      similarities: [jaccard, rbo]
      n_examples: 2
      attributes: {{gender: [a female, a girl, a male, a boy], age: [a young, an old]}}
      subjects: {{source: inline, items: [Alpha Station, Blue Harbor, Cold Summit, Desert Echo,
                                         Ember Road, Frozen Lake]}}
mitigation:
  - {{reranker: consensus, sweep: []}}
out: {out}
"""

PAGE = r"""(() => {
  const cf = Array.from(document.querySelectorAll('div.variant')).filter(d =>
    d.querySelector('section[id^="r-probe-counterfactual-fairllm"]'));
  const original = document.getElementById('r-probe-counterfactual-fairllm-section');
  const h4 = Array.from(original.querySelectorAll('h4'))
    .find(h => h.textContent.startsWith('Disparity per attribute'));
  let el = h4.nextElementSibling;
  while (el && !el.querySelector('table')) el = el.nextElementSibling;
  const table = el.querySelector('table');
  const cols = Array.from(table.querySelectorAll('thead th')).map(th => th.textContent.trim());
  const rows = Array.from(table.querySelectorAll('tbody tr')).map(tr =>
    Array.from(tr.children).map(td => {
      const est = td.querySelector('.est');
      return (est ? est.textContent : td.textContent).replace('\u26a0', '').trim();
    }));
  const misplaced = [];
  let charts = 0, tables = 0;
  for (const node of document.querySelectorAll('svg.chart, table[data-variant]')) {
    const home = node.parentElement.closest('div.variant');
    if (!home) continue;  // summary, gates, checks: not a probe section
    node.tagName.toLowerCase() === 'svg' ? charts++ : tables++;
    if (node.dataset.variant !== home.dataset.variant)
      misplaced.push(node.tagName + ' ' + node.dataset.variant + ' in ' + home.dataset.variant);
  }
  const unnamed = Array.from(document.querySelectorAll('div.variant svg.chart'))
    .filter(s => !s.dataset.variant).length;
  return {order: cf.map(d => d.dataset.variant), cols, rows, misplaced, charts, tables, unnamed,
          table_variant: table.dataset.variant};
})()"""


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (run `make browser`); browser tests skipped")
    from recaudit.cli import main

    tmp = tmp_path_factory.mktemp("variants")
    items = tmp / "items.csv"
    items.write_text("id,title\n" + "".join(f"{i},{t}\n" for i, t in enumerate(gr.TITLES)),
                     encoding="utf-8")
    cfg = tmp / "audit.yaml"
    cfg.write_text(CONFIG.format(cache=tmp / "c.sqlite", items=items, out=tmp / "out"),
                   encoding="utf-8")
    assert main(["audit", str(cfg), "--no-progress", "--format", "json,html"]) == 0
    results = json.loads((tmp / "out" / "results.json").read_text(encoding="utf-8"))
    browser = Chromium(CHROMIUM, tmp / "profile")
    try:
        browser.open((tmp / "out" / "index.html").resolve().as_uri())
        dom = browser.evaluate(PAGE)
        shot = browser.screenshot(tmp / "variants.png", full=True)
        shutil.copyfile(shot, "/tmp/recaudit_variants.png")
    finally:
        browser.close()
    return dom, results


def test_the_report_has_a_consensus_variant(page):
    _, results = page
    variants = {m["variant"] for m in results["probes"][0]["metrics"]}
    assert variants == {"original", "consensus"}


def test_original_per_attribute_table_equals_the_original_records(page):
    dom, results = page
    metrics = [m for m in results["probes"][0]["metrics"]
               if m["variant"] == "original" and m["value"] is None
               and m["metric"].startswith("snsr_")]
    top = max(m["k"] for m in metrics)
    expected = {m["attribute"]: {} for m in metrics}
    for m in metrics:
        if m["k"] == top:
            expected[m["attribute"]][m["metric"]] = fmt(m["estimate"])
    cols = dom["cols"][1:-1]  # attribute ... n
    shown = {row[0]: dict(zip(cols, row[1:-1], strict=True)) for row in dom["rows"]}
    assert shown == expected  # the old report showed the consensus variant's 0.000 here
    assert any(v != "0.000" for row in expected.values() for v in row.values())  # planted bias
    assert dom.get("table_variant") == "original"


def test_original_first_and_no_chart_or_table_mixes_variants(page):
    dom, _ = page
    assert dom["order"] == ["original", "consensus"]
    assert dom["misplaced"] == [] and dom["unnamed"] == 0
    assert dom["charts"] >= 6 and dom["tables"] >= 4
