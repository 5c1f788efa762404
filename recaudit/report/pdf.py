"""``report.pdf``: the HTML report laid out as paginated A4 pages by WeasyPrint.

The PDF is the HTML report of :func:`recaudit.report.html.html_report` (executive summary,
gates, per-probe tables and charts in one variant each, the original first, checks,
limitations, provenance, compliance) with a print stylesheet of its own, :data:`PRINT_CSS`, added
on top of the report's ``@media print`` rules: A4 pages, "page N of M" in every footer, no
break inside a table row, chart or example (a long table breaks between rows, its header
repeated on each page, rather than leaving a heading alone on a page before it), and every
``<details>`` opened (paper cannot be clicked) with its summary printed as a small heading. The
HTML report itself is unchanged. Text stays text (selectable and searchable); the SVG charts
stay vectors.

Safety: the HTML renderer has escaped every string of the result, so ``<script>`` or ``</td>`` in
a model output is printed as those characters; WeasyPrint runs no script and the URL fetcher
given to it refuses every URL, so laying out a report loads nothing.

WeasyPrint is the optional extra ``pdf`` (``pip install 'recaudit[pdf]'``) and needs the system's
Pango library; without either, :func:`load_weasyprint` raises one
:class:`~recaudit.errors.ConfigError` line (exit 2) that says what to install. WeasyPrint logs a
warning for each CSS property it does not lay out (the SVG presentation properties of the inline
charts, which its SVG renderer does draw, and the report's screen-only media query): noise about
our own stylesheet, not the result, so its logger is held at ERROR while it renders.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import ConfigError, first_line
from ..results import AuditResult

__all__ = ["PRINT_CSS", "DEFAULT_NAME", "load_weasyprint", "pdf_bytes", "render_pdf",
           "print_html"]

DEFAULT_NAME = "report.pdf"
INSTALL_HINT = ("pip install 'recaudit[pdf]' (WeasyPrint) and the Pango library "
                "(Debian/Ubuntu: apt-get install libpango-1.0-0 libpangoft2-1.0-0)")

#: Laid over the report's own stylesheet (which has ``@page`` and ``@media print`` rules already).
#: WeasyPrint gives it the user origin, below the page's author rules: a declaration that
#: overrides one of the report's own says ``!important``.
PRINT_CSS = """
@page {
  size: A4; margin: 14mm 12mm 16mm 12mm;
  @bottom-left { content: string(report-title); font-size: 8pt; color: #59636e; }
  @bottom-right { content: "page " counter(page) " of " counter(pages); font-size: 8pt;
                  color: #59636e; }
}
header.top h1 { string-set: report-title content(); }
thead { display: table-header-group; }
table { break-inside: auto !important; }
tr, figure, svg.chart, .example, .verdict-box, .alert, ol.findings li, .model-title {
  break-inside: avoid; }
.table-wrap { overflow: visible; }
details > summary { display: block !important; list-style: none; color: #1f2328 !important;
                    font-weight: 600 !important; font-size: 9pt !important;
                    margin: 6px 0 2px !important; }
footer { margin: 20px 0 0 !important; padding: 8px 0 0 !important; max-width: none !important; }
"""

# An opening <details> tag without the ``open`` attribute. Only our templates write tags: every
# string of a result is escaped (``<`` -> ``&lt;``) before it reaches the page.
_CLOSED_DETAILS = re.compile(r"<details(?=[\s>])(?![^>]*\sopen[\s>=])")


def load_weasyprint() -> Any:
    """Import WeasyPrint, or raise one ConfigError line (exit 2) saying what to install."""
    try:
        return importlib.import_module("weasyprint")
    except ImportError:
        raise ConfigError(f"format 'pdf' needs WeasyPrint, which is not installed: "
                          f"{INSTALL_HINT}") from None
    except OSError as err:  # WeasyPrint loads Pango with cffi's dlopen when imported
        raise ConfigError(f"format 'pdf' needs the Pango library ({first_line(err)}): "
                          f"{INSTALL_HINT}") from None


def print_html(results: AuditResult | Sequence[AuditResult], title: str | None = None) -> str:
    """Return the HTML report with every ``<details>`` open, as the PDF prints it."""
    from .html import html_report

    return _CLOSED_DETAILS.sub("<details open", html_report(results, title=title))


def _refuse_every_url(weasyprint: Any) -> Any:
    """Return a URL fetcher that fetches nothing (the report has no resource to load)."""
    fetcher_class = getattr(weasyprint, "URLFetcher", None)  # newer WeasyPrint; older: a function
    if fetcher_class is not None:
        return fetcher_class(allowed_protocols=())

    def refuse(url: str, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(f"the PDF report loads nothing: {url}")
    return refuse


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Hold a logger at ERROR (warnings about unknown CSS properties are not news)."""
    logger = logging.getLogger(logger_name)
    before = logger.level
    logger.setLevel(max(before, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(before)


def pdf_bytes(results: AuditResult | Sequence[AuditResult], title: str | None = None) -> bytes:
    """Return the report (one result, or several compared) as PDF bytes."""
    weasyprint = load_weasyprint()
    html = print_html(results, title=title)
    with _quiet("weasyprint"):
        document = weasyprint.HTML(string=html, url_fetcher=_refuse_every_url(weasyprint))
        return document.write_pdf(stylesheets=[weasyprint.CSS(string=PRINT_CSS)])


def render_pdf(results: AuditResult | Sequence[AuditResult], path: str | Path,
               title: str | None = None) -> Path:
    """Write the PDF report to ``path`` and return the file written.

    ``path`` is a file, or a directory (an existing one, or a path without a suffix) that gets
    :data:`DEFAULT_NAME`.
    """
    out = Path(path)
    if out.is_dir() or not out.suffix:
        out = out / DEFAULT_NAME
    data = pdf_bytes(results, title=title)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out
