"""report.pdf: the HTML report laid out by WeasyPrint, read back with poppler's pdftotext/pdftoppm.

One small result (leakage, a mitigation variant, an errored probe; one gate) is rendered once
per module; a hostile row (``</td>`` and ``<script>`` in a model-output cell) is planted in it.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import subprocess

import numpy as np
import pytest

from recaudit.cli import main
from recaudit.errors import ConfigError
from recaudit.formatting import fmt, fmt_ci
from recaudit.report import pdf_bytes, render_all
from recaudit.report import pdf as pdf_module
from recaudit.results import AuditResult

from .fixtures import make_minimal, make_small

PDFTOTEXT, PDFTOPPM = shutil.which("pdftotext"), shutil.which("pdftoppm")
HAS_WEASYPRINT = importlib.util.find_spec("weasyprint") is not None
needs_weasyprint = pytest.mark.skipif(not HAS_WEASYPRINT,
                                      reason="WeasyPrint not installed (extra 'pdf')")
needs_poppler = pytest.mark.skipif(PDFTOTEXT is None or PDFTOPPM is None,
                                   reason="pdftotext/pdftoppm not found (apt: poppler-utils)")
# A model output that tries to close its table cell, the table and run a script.
CELL_BREAKER = "x</td></tr></table><script>alert(1)</script>"
BREAKER_WEIGHT = 9.876


@functools.lru_cache(maxsize=None)
def _small() -> AuditResult:
    return make_small()


def small_result() -> AuditResult:
    """:func:`make_small` (leakage, a mitigation, an errored probe) with a hostile table row."""
    result = _small().model_copy(deep=True)
    leakage = next(p for p in result.probes if p.tables)
    leakage.tables["most predictive items"].append(
        {"attribute": "age", "value": "an old", "item": CELL_BREAKER, "weight": BREAKER_WEIGHT})
    return result


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """(result, pdf path, pdftotext text, pdftotext -layout text) of :func:`small_result`."""
    if not HAS_WEASYPRINT:
        pytest.skip("WeasyPrint not installed (extra 'pdf')")
    if PDFTOTEXT is None:
        pytest.skip("pdftotext not found (apt: poppler-utils)")
    result = small_result()
    out = tmp_path_factory.mktemp("pdf")
    path = render_all(result, out, formats=("pdf",))["pdf"]
    text = subprocess.run([PDFTOTEXT, str(path), "-"], capture_output=True, check=True,
                          text=True).stdout
    layout = subprocess.run([PDFTOTEXT, "-layout", str(path), "-"], capture_output=True,
                            check=True, text=True).stdout
    return result, path, text, layout


def _flat(text: str) -> str:
    return " ".join(text.split())


@needs_poppler
def test_numbers_of_the_report_are_text_in_the_pdf(rendered):
    result, path, text, _ = rendered
    assert path.name == "report.pdf" and path.read_bytes().startswith(b"%PDF-")
    flat = _flat(text)
    gate = result.gates[0]
    # the fixture's gate: observed 0.5 + 0.25 * bias (bias 1) = 0.75, CI [0.69, 0.81]
    assert (gate.name, fmt(gate.observed), fmt_ci(gate.ci_low, gate.ci_high)) == (
        "leakage-auc", "0.750", "[0.690, 0.810]")
    # the executive summary's gate line: name, bound, mode, formatted value and CI
    assert (f"{gate.name} \u2014 {gate.metric} {gate.bound} ({gate.mode} mode): observed "
            f"{fmt(gate.observed)} {fmt_ci(gate.ci_low, gate.ci_high)}") in flat
    gender = next(m for p in result.probes for m in p.metrics
                  if m.metric == "leakage_auc" and m.attribute == "gender")
    # 0.5 + 0.2 * bias = 0.7, CI +- 0.06
    assert (fmt(gender.estimate), fmt_ci(gender.ci_low, gender.ci_high)) == (
        "0.700", "[0.640, 0.760]")
    assert "0.700" in flat and "[0.640, 0.760]" in flat
    assert "Executive summary" in flat and "Gates" in flat and "Provenance" in flat
    assert "Compliance" in flat
    squeezed = "".join(text.split())  # hashes wrap anywhere
    assert result.provenance.model_spec == "smollm2" and "smollm2" in flat
    assert result.provenance.model_fingerprint in squeezed
    assert result.results_hash() in squeezed


@needs_poppler
def test_pages_are_numbered_and_details_are_printed_open(rendered):
    _, _, text, _ = rendered
    pages = text.count("\f")  # pdftotext ends every page with a form feed
    assert pages > 1
    flat = _flat(text)
    assert f"page 1 of {pages}" in flat and f"page {pages} of {pages}" in flat
    assert f"page {pages + 1} of" not in flat
    # <details> content, hidden in a closed <details> by the report's print CSS: shown
    assert "Parameters of this probe run" in flat and '"classifier": "logistic"' in flat
    assert "# note: <script>alert('cfg')</script>" in flat  # the config, verbatim


@needs_poppler
def test_untrusted_text_is_printed_literally_inside_its_cell(rendered):
    _, _, text, layout = rendered
    assert CELL_BREAKER in _flat(text)
    assert "<img src=x onerror=alert(1)>" in _flat(text)
    # the cell did not close: the hostile item sits in its row, between its value and weight
    row = [line for line in layout.splitlines() if CELL_BREAKER in line]
    assert len(row) == 1
    assert row[0].split() == ["age", "an", "old", CELL_BREAKER, fmt(BREAKER_WEIGHT)]
    assert fmt(BREAKER_WEIGHT) == "9.876"


@needs_poppler
def test_first_page_renders_to_a_non_blank_image(rendered, tmp_path):
    from PIL import Image

    _, path, _, _ = rendered
    subprocess.run([PDFTOPPM, "-r", "50", "-png", "-f", "1", "-l", "1", "-singlefile",
                    str(path), str(tmp_path / "page")], check=True, capture_output=True)
    with Image.open(tmp_path / "page.png") as image:
        assert image.format == "PNG"
        # A4 is 210 x 297 mm: 8.27 x 11.69 in, 413 x 585 px at 50 dpi
        assert abs(image.width - 413) <= 1 and abs(image.height - 585) <= 1
        rgb = np.asarray(image.convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    assert (rgb.min(axis=2) < 200).mean() > 0.005  # text and rules: not a white page
    assert (rgb.max(axis=2) < 60).any()  # black text
    assert ((r > 150) & (g < 100) & (b < 100)).any()  # the FAIL badge prints red, not grey


def test_every_details_tag_is_opened_once():
    html = ('<details><summary>a</summary></details><details open><summary>b</summary>'
            '<details class="x"><details\nopen=""><p>&lt;details&gt;</p><detailsx>')
    assert pdf_module._CLOSED_DETAILS.sub("<details open", html) == (
        '<details open><summary>a</summary></details><details open><summary>b</summary>'
        '<details open class="x"><details\nopen=""><p>&lt;details&gt;</p><detailsx>')


@needs_weasyprint
def test_the_pdf_fetches_no_url():
    import weasyprint

    fetch = pdf_module._refuse_every_url(weasyprint)
    for url in ("file:///etc/hostname", "http://127.0.0.1:9/x.png", "data:,x"):
        with pytest.raises(ValueError):
            fetch(url)


def test_missing_weasyprint_is_one_line_naming_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(__import__("sys").modules, "weasyprint", None)  # import fails
    result = make_minimal()
    with pytest.raises(ConfigError, match=r"pip install 'recaudit\[pdf\]'"):
        pdf_bytes(result)
    path = tmp_path / "results.json"
    path.write_text(result.to_json(), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["report", str(path), "--format", "html,pdf", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "recaudit[pdf]" in err and "libpango-1.0-0" in err
    assert not (out / "index.html").exists()  # refused before anything was written


def test_missing_pango_is_one_line_naming_the_library(monkeypatch):
    def no_pango(name):
        raise OSError("cannot load library 'libpango-1.0-0': libpango-1.0-0: cannot open "
                      "shared object file: No such file or directory\nmore")
    monkeypatch.setattr(pdf_module.importlib, "import_module", no_pango)
    with pytest.raises(ConfigError) as err:
        pdf_module.load_weasyprint()
    message = str(err.value)
    assert "\n" not in message and err.value.exit_code == 2
    assert "libpango-1.0-0 libpangoft2-1.0-0" in message and "OSError" in message


@needs_weasyprint
def test_cli_report_writes_pdf_and_model_card(tmp_path, capsys):
    from huggingface_hub import ModelCard

    small = _small()  # its leakage probe and gate only: a cheaper PDF
    result = small.model_copy(update={"probes": [p for p in small.probes if p.tables][:1]})
    path = tmp_path / "results.json"
    path.write_text(result.to_json(), encoding="utf-8")
    out = tmp_path / "reports"
    assert main(["report", str(path), "--format", "pdf,model-card", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"pdf: {out / 'report.pdf'}" in printed
    assert f"model-card: {out / 'model_card.md'}" in printed
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF-")
    card = ModelCard.load(out / "model_card.md")
    auc = {r.metric_args["attribute"]: r.metric_value for r in card.data.eval_results
           if r.metric_type == "leakage_auc"}
    assert auc == {"gender": 0.7, "age": 0.53, "race": 0.75, "country": 0.58}
    assert sorted(p.name for p in out.iterdir()) == ["model_card.md", "report.pdf"]


def test_one_result_formats_refuse_a_comparison(tmp_path):
    with pytest.raises(ConfigError, match="'model-card' writes one result"):
        render_all([make_minimal(), make_minimal()], tmp_path, formats=("modelcard",))
    assert list(tmp_path.iterdir()) == []
