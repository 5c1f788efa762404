"""Reports of an :class:`~recaudit.results.AuditResult`: HTML, PDF, JUnit, Markdown, model card.

Every renderer works on the saved result only (no model, no torch), so
``recaudit report results.json`` re-renders without re-running anything. All of them share one
view of the result (:mod:`recaudit.report._common`): the same verdict, checks and findings.

* :func:`render_html` / :func:`html_report` -- one self-contained, offline HTML page (inline CSS
  and SVG charts, no script, no network), for one result or several compared side by side.
* :func:`render_junit` / :func:`junit_xml` -- one testcase per gate and per probe check.
* :func:`render_markdown` / :func:`markdown_summary` -- ``summary.md`` for a PR comment or
  ``$GITHUB_STEP_SUMMARY``.
* :func:`render_pdf` / :func:`pdf_bytes` -- ``report.pdf``: the HTML report as paginated A4
  pages (WeasyPrint, the extra ``pdf``; :mod:`recaudit.report.pdf`).
* :func:`render_model_card` / :func:`model_card_markdown` -- ``model_card.md``: a Hugging Face
  model card (``model-index`` metadata and the evaluation; :mod:`recaudit.report.model_card`).
* :func:`render_all` -- the files a run writes, by format name.
* :func:`save_result` -- results.json and every report into an output directory, with one
  clear error (exit 2) when the directory cannot be written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from ..errors import ConfigError, OutputError
from ..results import AuditResult, check_output_dir

__all__ = ["save_result", "render_all", "check_formats", "render_html", "html_report",
           "render_junit", "junit_xml", "render_markdown", "markdown_summary", "render_pdf",
           "pdf_bytes",
           "render_model_card", "model_card_markdown", "FORMATS", "DEFAULT_NAMES"]

DEFAULT_NAMES = {"html": "index.html", "junit": "junit.xml", "md": "summary.md",
                 "json": "results.json", "pdf": "report.pdf", "model-card": "model_card.md"}
FORMATS = tuple(DEFAULT_NAMES)
_ALIASES = {"markdown": "md", "xml": "junit", "htm": "html", "model_card": "model-card",
            "modelcard": "model-card", "card": "model-card"}
#: formats that describe one result (a list of results is compared in html, junit, md and pdf)
_ONE_RESULT = ("json", "model-card")


def check_formats(formats: Sequence[str], many: bool = False) -> list[str]:
    """Return the format keys of ``formats`` (aliases resolved, each once), or raise.

    One :class:`~recaudit.errors.ConfigError` line (exit 2) for an unknown format, a one-result
    format (``json``, ``model-card``) asked of ``many`` results, or ``pdf`` without WeasyPrint
    or Pango; ``recaudit audit`` asks before any model call.
    """
    wanted: list[str] = []
    for f in formats:
        key = _ALIASES.get(f.strip().lower(), f.strip().lower())
        if key not in DEFAULT_NAMES:
            raise ConfigError(f"unknown report format {f!r}; known: {', '.join(FORMATS)}")
        if key not in wanted:
            wanted.append(key)
    for key in _ONE_RESULT:
        if many and key in wanted:
            raise ConfigError(f"format {key!r} writes one result; save each result on its own")
    if "pdf" in wanted:
        from .pdf import load_weasyprint

        load_weasyprint()  # missing WeasyPrint or Pango: one line, nothing written yet
    return wanted


def render_all(result: AuditResult | Sequence[AuditResult], out_dir: str | Path,
               formats: Sequence[str] = ("html", "junit", "md"),
               names: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Write the reports of ``result`` (or a list of results, compared) into ``out_dir``.

    ``formats``: any of ``html``, ``junit``, ``md``, ``json``, ``pdf``, ``model-card``
    (``json`` and ``model-card`` only for one result). ``names`` overrides file names per format
    (default :data:`DEFAULT_NAMES`); the model card links the HTML report by its name when it
    is written now or is there already.
    Returns ``{format: path}`` of the written files. An unknown format, or ``pdf`` without
    WeasyPrint, raises :class:`~recaudit.errors.ConfigError` before anything is written.
    """
    wanted = check_formats(formats, many=not isinstance(result, AuditResult))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    file_names = {**DEFAULT_NAMES, **dict(names or {})}
    written: dict[str, Path] = {}
    for key in wanted:
        path = out / file_names[key]
        if key == "html":
            render_html(result, path)
        elif key == "junit":
            render_junit(result, path)
        elif key == "md":
            render_markdown(result, path)
        elif key == "pdf":
            render_pdf(result, path)
        elif key == "model-card":
            assert isinstance(result, AuditResult)
            html_name = file_names["html"]  # linked when it is written now or was before
            linked = "html" in wanted or (out / html_name).is_file()
            render_model_card(result, path, report_link=html_name if linked else None)
        else:  # json
            assert isinstance(result, AuditResult)
            path.write_text(result.to_json(), encoding="utf-8")
        written[key] = path
    return written


def save_result(result: AuditResult, out_dir: str | Path,
                formats: Sequence[str] = ("json", "html", "junit", "md")) -> dict[str, Path]:
    """Write results.json and the reports of ``result`` into ``out_dir``; returns the paths.

    Raises :class:`~recaudit.errors.OutputError` (exit 2) when ``out_dir`` cannot be written.
    """
    check_output_dir(out_dir)
    try:
        return render_all(result, out_dir, formats=formats)
    except OSError as err:
        raise OutputError(f"cannot write to output directory {out_dir}: "
                          f"{err.strerror or err}") from None


def render_html(results: AuditResult | Sequence[AuditResult], path: str | Path,
                title: str | None = None) -> Path:
    """Write the self-contained HTML report (one result, or several compared)."""
    from .html import render_html as _f

    return _f(results, path, title=title)


def html_report(results: AuditResult | Sequence[AuditResult], title: str | None = None) -> str:
    """Return the HTML report as a string."""
    from .html import html_report as _f

    return _f(results, title=title)


def render_junit(results: AuditResult | Sequence[AuditResult], path: str | Path) -> Path:
    """Write the JUnit XML of the gates and checks."""
    from .junit import render_junit as _f

    return _f(results, path)


def junit_xml(results: AuditResult | Sequence[AuditResult]) -> str:
    """Return the JUnit XML as a string."""
    from .junit import junit_xml as _f

    return _f(results)


def render_markdown(results: AuditResult | Sequence[AuditResult], path: str | Path) -> Path:
    """Write ``summary.md`` (PR comment / ``$GITHUB_STEP_SUMMARY``)."""
    from .markdown import render_markdown as _f

    return _f(results, path)


def markdown_summary(results: AuditResult | Sequence[AuditResult]) -> str:
    """Return the Markdown summary as a string."""
    from .markdown import markdown_summary as _f

    return _f(results)


def render_pdf(results: AuditResult | Sequence[AuditResult], path: str | Path,
               title: str | None = None) -> Path:
    """Write the PDF report (the HTML report laid out as A4 pages; needs WeasyPrint)."""
    from .pdf import render_pdf as _f

    return _f(results, path, title=title)


def pdf_bytes(results: AuditResult | Sequence[AuditResult], title: str | None = None) -> bytes:
    """Return the PDF report as bytes."""
    from .pdf import pdf_bytes as _f

    return _f(results, title=title)


def render_model_card(result: AuditResult, path: str | Path,
                      report_link: str | None = "index.html") -> Path:
    """Write the Hugging Face model card of one result (``report_link``: the HTML report)."""
    from .model_card import render_model_card as _f

    return _f(result, path, report_link=report_link)


def model_card_markdown(result: AuditResult, report_link: str | None = "index.html") -> str:
    """Return the Hugging Face model card of one result as a string."""
    from .model_card import model_card_markdown as _f

    return _f(result, report_link=report_link)
