"""The report shows an adaptive gate's stopping path (estimate and confidence sequence by round)."""

from __future__ import annotations

import re

from recaudit.report import charts, html_report
from recaudit.results import GateResult, ProbeResult

from ..gate_recommenders import audit_result

PATH = [{"round": 1, "units": 20, "n": 20, "estimate": 0.05, "lower": 0.0, "upper": 0.38},
        {"round": 2, "units": 40, "n": 40, "estimate": 0.02, "lower": 0.0, "upper": 0.19}]


def _gate(**kw) -> GateResult:
    base = dict(name="age<b>", probe="p", metric="snsr_jaccard", mode="ci", bound="<= 0.2",
                passed=True, observed=0.02, selected=1, message="decided after 40 units")
    return GateResult(**{**base, **kw})


def test_a_sequential_gate_gets_a_chart_and_a_fixed_n_gate_none():
    page = html_report(audit_result(
        [ProbeResult(id="p", probe="p")],
        gates=[_gate(decision="sequential", decided_after=40, path=PATH),
               _gate(name="plain", decision=None)]))
    section = page[page.index("Stopping paths"):]
    assert "age&lt;b&gt;: sequential, after 40 units" in section
    assert "plain:" not in section.split("</section>")[0]
    svg = re.findall(r"<svg\b.*?</svg>", section, flags=re.S)
    assert len(svg) == 1 and "age&lt;b&gt;: stopping path" in svg[0]


def test_no_path_no_chart_and_no_section():
    assert charts.stopping_path(_gate()) == ""
    page = html_report(audit_result([ProbeResult(id="p", probe="p")], gates=[_gate()]))
    assert "Stopping paths" not in page


def test_the_band_and_the_bound_are_drawn():
    svg = charts.stopping_path(_gate(path=PATH))
    assert svg.count("<path") >= 3  # the band, the estimate line, the dashed bound
