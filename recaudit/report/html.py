"""The self-contained HTML report (jinja2, autoescaped, CSS and SVG charts inlined).

Layout: ``reports/templates/report.html.j2`` includes one partial per section and, per probe,
``partials/probe_<probe name>.html`` when it exists, else ``partials/probe_generic.html``; a new
probe (or mitigation reranker) brings its own section by adding one partial.

Safety: every value from a result -- model output above all -- is autoescaped; nothing from a
result is ever marked safe or compiled as a template. Only the CSS file and the SVG charts made
by :mod:`recaudit.report.charts` are inserted verbatim. A Content-Security-Policy meta tag forbids
scripts and every network load, and the page references no external resource, so it renders
offline.
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

from markupsafe import Markup

from .. import __version__
from ..probes.registry import ACCURACY, FAIRNESS, ROBUSTNESS
from ..results import ORIGINAL, AuditResult, MetricRecord, ProbeResult
from ..verdicts import MIN_UNITS, is_significant, min_units_of
from . import _common as c
from . import charts
from .story import story

__all__ = ["html_report", "render_html", "template_root", "partial_for", "compliance_rows"]

TEMPLATE = "report.html.j2"
MAX_EXAMPLES = 5
MAX_RAW_CHARS = 3000
MAX_TABLE_ROWS = 60
MAX_PARAMS_CHARS = 4000
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*")


# -- templates -----------------------------------------------------------------------------------
def template_root() -> Any:
    """Return the template directory.

    That is the installed ``recaudit.templates`` package, else the repo's ``reports/templates``.
    """
    try:
        root = resources.files("recaudit.templates")
        if root.joinpath(TEMPLATE).is_file():
            return root
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - not installed
        pass
    return Path(__file__).resolve().parents[2] / "reports" / "templates"


def _source(name: str) -> str | None:
    if not _NAME.fullmatch(name) or ".." in name.split("/"):
        return None
    node = template_root()
    for part in name.split("/"):
        node = node.joinpath(part)
    return node.read_text(encoding="utf-8") if node.is_file() else None


def partial_for(probe_name: str) -> str:
    """``partials/probe_<name>.html`` if a partial for that probe exists, else the generic one."""
    name = re.sub(r"[^a-z0-9_]", "_", probe_name.lower())
    candidate = f"partials/probe_{name}.html"
    return candidate if name and _source(candidate) is not None else "partials/probe_generic.html"


def _printable(value: Any) -> Any:
    """Clean every ``{{ }}`` output before autoescaping.

    Plain text loses control characters (:func:`_common.clean`); our own markup (charts, CSS)
    and non-text values pass unchanged.
    """
    return c.clean(value) if isinstance(value, str) and not isinstance(value, Markup) else value


@functools.lru_cache(maxsize=1)
def _env() -> Any:  # noqa: D401 - the jinja2 environment, built once
    from jinja2 import Environment, FunctionLoader, StrictUndefined

    env = Environment(loader=FunctionLoader(_source), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      auto_reload=False, finalize=_printable)
    env.filters.update(num=c.num, pval=c.pval, where=c.where, clip=c.truncate,
                       metric_text=_metric_text, slug=c.slug, conf=c.conf_pct,
                       est=c.estimate_text)
    env.globals.update(ci=c.ci, version=__version__, variant_of=c.one_variant,
                       noise_of=c.noise_of_record)
    return env


_SPECS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("recaudit_specs",
                                                                                default=None)


def _metric_text(metric: str) -> str:
    """Template filter: a metric's declared description, from the results being rendered.

    The declarations are set for the duration of one render.
    """
    return c.metric_text(metric, _SPECS.get())


# -- helpers the templates call --------------------------------------------------------------------
@dataclass
class Example:
    caption: list[tuple[str, str]]
    left_title: str = ""
    right_title: str = ""
    left: list[tuple[str, bool]] = field(default_factory=list)   # (item, differs)
    right: list[tuple[str, bool]] = field(default_factory=list)
    left_raw: str | None = None
    right_raw: str | None = None
    other: list[tuple[str, str]] = field(default_factory=list)


_LEFT = ("neutral", "baseline", "before", "original")
_RIGHT = ("sensitive", "after", "treated", "perturbed", "reranked")


class Helpers:
    """Functions exposed to the templates as ``h``; charts get ids unique within one page.

    The templates hand it one variant of a probe at a time (:func:`_common.split_variants`);
    chart titles name that variant when the probe has several.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._n = 0
        self._tags: dict[int, str] = {}  # id of a variant's probe view -> its title tag

    def _id(self) -> str:
        self._n += 1
        return f"{self.prefix}{self._n}"

    def register(self, views: Sequence[c.VariantView]) -> None:
        """Remember a probe's variant views, so that charts of them say which one they show."""
        for v in views:
            self._tags[id(v.probe)] = f" [{v.variant}]" if len(views) > 1 else ""

    def tag(self, p: ProbeResult) -> str:
        """`` [variant]`` for a chart title of a probe with several variants, else ``""``."""
        return self._tags.get(id(p), "")

    @staticmethod
    def variant_of(records: Iterable[MetricRecord]) -> str:
        """Return the one variant of a table's records (ValueError if they mix variants)."""
        return c.one_variant(records) or ""

    # records
    aggregates = staticmethod(c.aggregates)
    per_value = staticmethod(c.per_value)
    metric_names = staticmethod(c.metric_names)
    headline = staticmethod(c.headline)

    @staticmethod
    def records(p: ProbeResult, metric: str, *, value: bool | None = None,
                k: int | None | str = "max", attribute: str | None = None
                ) -> list[MetricRecord]:
        recs = [m for m in p.metrics if m.metric == metric
                and (value is None or (m.value is not None) == value)
                and (attribute is None or m.attribute == attribute)]
        if k == "max":
            return c.at_max_k(recs)
        if k == "all":
            return recs
        return [m for m in recs if m.k == k]

    @staticmethod
    def attributes(records: Iterable[MetricRecord]) -> list[str]:
        seen: dict[str, None] = {}
        for m in records:
            seen.setdefault(m.attribute or "", None)
        return list(seen)

    @staticmethod
    def top_attributes(p: ProbeResult, metric: str, n: int = 4) -> list[str]:
        """Attributes ordered by the aggregate ``metric`` at its largest k, largest first."""
        recs = [m for m in c.at_max_k(x for x in p.metrics if x.metric == metric
                                      and x.value is None) if m.estimate is not None]
        recs.sort(key=lambda m: -(m.estimate or 0.0))
        return [m.attribute or "" for m in recs][:n]

    @staticmethod
    def max_k(records: Iterable[MetricRecord]) -> int | None:
        ks = [m.k for m in records if m.k is not None]
        return max(ks) if ks else None

    @staticmethod
    def ks(records: Iterable[MetricRecord]) -> list[int]:
        return sorted({m.k for m in records if m.k is not None})

    @staticmethod
    def pivot(records: Iterable[MetricRecord], rows: Sequence[str] = ("attribute", "value"),
              col: str = "metric") -> tuple[list[str], list[tuple[tuple, dict[str, MetricRecord]]]]:
        cols: dict[str, None] = {}
        table: dict[tuple, dict[str, MetricRecord]] = {}
        for m in records:
            key = tuple(getattr(m, r) for r in rows)
            cname = str(getattr(m, col))
            cols.setdefault(cname, None)
            table.setdefault(key, {})[cname] = m
        return list(cols), list(table.items())

    @staticmethod
    def findings(p: ProbeResult) -> list[Any]:
        """Return a probe's findings, most severe and largest effect first."""
        return sorted(p.findings, key=lambda f: (-c.SEVERITY_RANK.get(f.severity, 0),
                                                 -abs(f.effect or 0.0)))

    @staticmethod
    def significant(m: MetricRecord | None, alpha: float) -> bool:
        return bool(m is not None and is_significant(m, alpha))

    @staticmethod
    def params_text(p: ProbeResult) -> str:
        text = json.dumps(p.params, indent=1, sort_keys=True, ensure_ascii=False, default=str)
        return c.truncate(text, MAX_PARAMS_CHARS)

    @staticmethod
    def probe_tests(p: ProbeResult, alpha: float, min_units: int = MIN_UNITS) -> list[c.Check]:
        return c.probe_tests(p, alpha, min_units=min_units)

    tradeoff_rows = staticmethod(c.tradeoff_rows)

    # charts (the only values inserted unescaped: SVG written and escaped by matplotlib)
    def tradeoff(self, curve: Any) -> Markup:
        return Markup(charts.tradeoff_curve(curve, chart_id=self._id()))

    def stopping_path(self, gate: Any) -> Markup:
        return Markup(charts.stopping_path(gate, chart_id=self._id()))

    def bars(self, p: ProbeResult, metric: str, *, k: int | None | str = "max",
             ref: float | None = None, xlim: tuple[float, float] | None = None,
             title: str | None = None) -> Markup:
        recs = self.records(p, metric, value=True, k=k)
        kk = self.max_k(recs)
        label = title or f"{metric} per value" + (f" at k={kk}" if kk is not None else "")
        conf = c.conf_pct(recs[0].confidence) if recs else "95%"
        return Markup(charts.value_bars(recs, title=f"{label} ({conf} CI){self.tag(p)}",
                                        xlabel=metric,
                                        ref=ref, xlim=xlim, chart_id=self._id()))

    def agg_bars(self, p: ProbeResult, metric: str, *, ref: float | None = None,
                 xlim: tuple[float, float] | None = None, title: str | None = None) -> Markup:
        recs = self.records(p, metric, value=False)
        kk = self.max_k(recs)
        label = title or f"{metric} per attribute" + (f" at k={kk}" if kk is not None else "")
        conf = c.conf_pct(recs[0].confidence) if recs else "95%"
        return Markup(charts.aggregate_bars(recs, title=f"{label} ({conf} CI){self.tag(p)}",
                                            xlabel=metric,
                                            ref=ref, xlim=xlim, chart_id=self._id()))

    def curves(self, p: ProbeResult, metric: str, attribute: str | None,
               title: str | None = None) -> Markup:
        recs = self.records(p, metric, value=True, k="all", attribute=attribute)
        title = (title or f"{attribute}: {metric} by k") + self.tag(p)
        return Markup(charts.k_curves(recs, title=title, ylabel=metric, chart_id=self._id()))

    def agg_curves(self, p: ProbeResult, metric: str, title: str | None = None) -> Markup:
        recs = self.records(p, metric, value=False, k="all")
        title = (title or f"{metric} by k, per attribute") + self.tag(p)
        return Markup(charts.k_curves(recs, title=title, ylabel=metric, series="attribute",
                                      chart_id=self._id()))

    # examples
    @staticmethod
    def example(ex: dict[str, Any]) -> Example:
        def as_list(v: Any) -> list[str] | None:
            if isinstance(v, (list, tuple)):
                return [c.truncate(x, 200) for x in v]
            return None

        left_key = next((k for k in _LEFT if as_list(ex.get(k)) is not None), None)
        right_key = next((k for k in _RIGHT if as_list(ex.get(k)) is not None), None)
        caption = [(key, c.truncate(ex[key], 200) if not isinstance(ex[key], float)
                    else c.num(ex[key]))
                   for key in ex if key not in (left_key, right_key)
                   and not key.endswith("_text") and not isinstance(ex[key], (list, dict))]
        if left_key is None or right_key is None:
            other = [(k, c.truncate(json.dumps(v, ensure_ascii=False, default=str)
                                    if isinstance(v, (list, dict)) else v, 600))
                     for k, v in ex.items()]
            return Example(caption=[], other=other)
        left = as_list(ex[left_key]) or []
        right = as_list(ex[right_key]) or []
        lset, rset = set(left), set(right)

        def raw(key: str) -> str | None:
            v = ex.get(f"{key}_text")
            if v is None:
                return None
            s = c.clean(v)
            return s if len(s) <= MAX_RAW_CHARS else (
                s[:MAX_RAW_CHARS] + f"\n\u2026 ({len(s) - MAX_RAW_CHARS} more characters in "
                "results.json)")

        value = ex.get("value")
        right_title = (f"{right_key}: \u201c{c.truncate(value, 80)}\u201d"
                       if value is not None else right_key)
        return Example(caption=caption, left_title=left_key, right_title=right_title,
                       left=[(x, x not in rset) for x in left],
                       right=[(x, x not in lset) for x in right],
                       left_raw=raw(left_key), right_raw=raw(right_key))

    @staticmethod
    def table(rows: list[dict[str, Any]], limit: int = MAX_TABLE_ROWS
              ) -> tuple[list[tuple[str, bool]], list[list[str]], int]:
        """Lay out a free-form table: (columns with a 'numeric' flag, cell texts, rows left)."""
        cols: dict[str, None] = {}
        for r in rows[:limit]:
            for k in r:
                cols.setdefault(str(k), None)
        out = []
        for r in rows[:limit]:
            cells = []
            for k in cols:
                v = r.get(k)
                if isinstance(v, float):
                    cells.append(c.num(v))
                elif isinstance(v, (list, dict)):
                    cells.append(c.truncate(json.dumps(v, ensure_ascii=False, default=str), 300))
                else:
                    cells.append(c.truncate("" if v is None else v, 300))
            out.append(cells)
        numeric = [all(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)
                       for r in rows[:limit] if r.get(k) is not None) for k in cols]
        return list(zip(cols, numeric, strict=True)), out, max(len(rows) - limit, 0)


# -- compliance ----------------------------------------------------------------------------------
def _tagged(results: Sequence[AuditResult], tag: str) -> list[str]:
    """Ids of the finished probe runs tagged ``tag`` (fairness, robustness, accuracy)."""
    out: list[str] = []
    for r in results:
        for p in r.probes:
            if p.status == "ok" and tag in p.tags and p.id not in out:
                out.append(p.id)
    return out


def _mitigated(results: Sequence[AuditResult]) -> list[str]:
    """Return the mitigation variants evaluated (records of a variant other than original)."""
    out: list[str] = []
    for r in results:
        for p in r.probes:
            for m in p.metrics:
                label = f"{p.id} [{m.variant}]"
                if m.variant != ORIGINAL and label not in out:
                    out.append(label)
    return out


def impact_ratios(results: Sequence[AuditResult], labels: Sequence[str]
                  ) -> list[dict[str, Any]]:
    """Return group selection rates over the most-selected group's, one row per group.

    LL144's impact ratio (category rate / rate of the most selected category) of every rate a
    probe declares with role ``selection_rate`` (a recommendation hit rate: by analogy): one
    row per (model, probe, rate metric, attribute, k, value). ``floor``: the ``null_p05`` of the
    probe's record with role ``group_ratio`` at the same attribute, value and k (the impact
    ratio a ranker that ignores the groups stays above in 95% of audits), where it has one.
    """
    rows = []
    for r, label in zip(results, labels, strict=True):
        for p in r.probes:
            if p.status != "ok":
                continue
            recs = [m for m in c.per_value(p) if m.estimate is not None and m.attribute
                    and m.variant == ORIGINAL and c.has_role(p, m.metric, "selection_rate")]
            floors = {(m.attribute, m.value, m.k): m.null_p05 for m in p.metrics
                      if m.variant == ORIGINAL and m.value is not None
                      and m.null_p05 is not None and c.has_role(p, m.metric, "group_ratio")}
            by_attr: dict[tuple[str, str, int | None], list[MetricRecord]] = {}
            for m in recs:
                by_attr.setdefault((m.metric, m.attribute or "", m.k), []).append(m)
            for (metric, attr, _k), ms in by_attr.items():
                best = max(m.estimate for m in ms if m.estimate is not None)
                for m in ms:
                    ratio = (m.estimate / best) if best and m.estimate is not None else None
                    floor = floors.get((m.attribute, m.value, m.k))
                    rows.append({"model": label, "probe": p.id, "metric": metric,
                                 "attribute": attr, "value": m.value, "k": m.k,
                                 "rate": m.estimate, "n": m.n, "ratio": ratio,
                                 "below": ratio is not None and ratio < 0.8, "floor": floor,
                                 "below_floor": ratio is not None and floor is not None
                                 and ratio < floor})
    return rows


def compliance_rows(results: Sequence[AuditResult]) -> list[dict[str, Any]]:
    """Map what was tested to the obligations it can support (factual; not legal advice)."""
    fairness = _tagged(results, FAIRNESS)
    mitig = _mitigated(results)
    robust = _tagged(results, ROBUSTNESS)
    accuracy = _tagged(results, ACCURACY)
    ir_rows = impact_ratios(results, ["" for _ in results])
    # a probe that records its own group impact ratios (role group_ratio: rankings of
    # candidates) rather than a recommendation hit rate read by analogy
    of_people = any(row["floor"] is not None for row in ir_rows)
    ran = list(dict.fromkeys(p.id for r in results for p in r.probes if p.status == "ok"))

    def status(ok: bool, partial: bool = False) -> str:
        return "evidence" if ok else ("partial" if partial else "not covered")

    rob_ev = ", ".join(robust)
    return [
        {"instrument": "EU AI Act (Regulation (EU) 2024/1689)", "article": "Art. 10(2)(f)",
         "obligation": "Training, validation and testing data of high-risk AI systems are "
                       "examined for possible biases likely to affect health and safety, "
                       "fundamental rights, or lead to discrimination prohibited by Union law.",
         "tested": ("Bias in the system's outputs examined by: " + ", ".join(fairness))
         if fairness else "No bias probe ran.",
         "status": status(False, bool(fairness)),
         "note": "This audit examines model outputs, not the data sets themselves; it supports "
                 "but does not replace the data examination. Art. 10 applies to high-risk "
                 "systems (Art. 6, Annex III); most content recommenders are not high-risk."},
        {"instrument": "EU AI Act", "article": "Art. 10(2)(g)",
         "obligation": "Appropriate measures to detect, prevent and mitigate the biases "
                       "identified under point (f).",
         "tested": ("Detection: the probes above with CIs and multiple-comparison control. "
                    + ("Mitigation evaluated by: " + ", ".join(mitig) + "."
                       if mitig else "No mitigation reranker was evaluated in this run."))
         if fairness else "Nothing tested.",
         "status": status(bool(fairness and mitig), bool(fairness)),
         "note": "Gates in CI turn detection into a repeatable control."},
        {"instrument": "EU AI Act", "article": "Art. 15",
         "obligation": "High-risk AI systems achieve an appropriate level of accuracy, "
                       "robustness and cybersecurity, consistently over their lifecycle.",
         "tested": "; ".join(x for x in (
             ("Robustness: " + rob_ev) if rob_ev else "",
             ("Accuracy: HR/NDCG against held-out items in " + ", ".join(accuracy))
             if accuracy else "") if x) or "No accuracy or robustness probe ran.",
         "status": status(bool(rob_ev) and bool(accuracy), bool(rob_ev or accuracy)),
         "note": "Cybersecurity is not tested by recaudit."},
        {"instrument": "EU AI Act", "article": "Annex IV 2(g)",
         "obligation": "The technical documentation describes the validation and testing "
                       "procedures used, the validation and testing data and their main "
                       "characteristics, the metrics used to measure accuracy, robustness and "
                       "compliance with Chapter III and potentially discriminatory impacts, and "
                       "includes test logs and all test reports, dated and signed by the "
                       "responsible persons.",
         "tested": ("results.json records every metric with its confidence interval and "
                    "p-value, the raw answers and the provenance (model fingerprint, config, "
                    "catalog hash, seeds, package versions, start and end times) for: "
                    + ", ".join(ran) + "; potentially discriminatory impacts: "
                    + (", ".join(fairness) if fairness else "no bias probe ran")
                    + ". The reports (HTML, JUnit XML, Markdown) are the test reports; "
                    "'recaudit bundle --sign KEY' packs them with a manifest of sha256 sums, "
                    "dated (UTC) and signed with the user's ed25519 key.")
         if ran else "No probe finished: no test report to date or sign.",
         "status": status(False, bool(ran)),
         "note": "The date and signature are those of whoever holds the key: recaudit cannot "
                 "know who the responsible person is, and this report cannot show whether it "
                 "was bundled or signed (check with 'recaudit verify BUNDLE --key KEY.pub'). "
                 "The test data are identified (config, catalog hash), not characterised. "
                 "Annex IV applies to high-risk systems (Art. 11)."},
        {"instrument": "Digital Services Act (Regulation (EU) 2022/2065)", "article": "Art. 34",
         "obligation": "Providers of very large online platforms and search engines assess "
                       "systemic risks, including negative effects on fundamental rights such as "
                       "non-discrimination (Art. 34(1)(b)), taking into account the design of "
                       "their recommender systems (Art. 34(2)(a)).",
         "tested": ("Discrimination-related behaviour of the recommender measured by: "
                    + ", ".join(fairness)) if fairness else "No bias probe ran.",
         "status": status(False, bool(fairness)),
         "note": "Applies only to designated VLOPs/VLOSEs. One input to a risk assessment, "
                 "not the assessment itself."},
        {"instrument": "Digital Services Act", "article": "Art. 35",
         "obligation": "Reasonable, proportionate and effective mitigation measures, including "
                       "testing and adapting algorithmic and recommender systems "
                       "(Art. 35(1)(d)).",
         "tested": ("Mitigation rerankers tested: " + ", ".join(mitig)) if mitig
         else "No mitigation reranker was evaluated in this run.",
         "status": status(bool(mitig)),
         "note": "Applies only to designated VLOPs/VLOSEs."},
        {"instrument": "New York City Local Law 144 of 2021 (6 RCNY \u00a7 5-300)",
         "article": "Bias audit, impact ratio",
         "obligation": "Automated employment decision tools used for hiring or promotion in "
                       "NYC need a yearly independent bias audit reporting selection rates and "
                       "impact ratios (category rate / rate of the most selected category) by "
                       "sex, race/ethnicity and their intersections.",
         "tested": ("Selection rates and impact ratios per category, with each ratio's noise "
                    "floor where the probe records one: the impact-ratio table below (for "
                    "recommendation hit rates the convention applies by analogy).") if ir_rows else
         "Not computed: no per-group selection or hit rate in this run.",
         "status": "partial" if of_people else "not applicable",
         "note": ("Applies if the ranked candidates are applicants or employees screened for NYC "
                  "jobs. The table supplies the numbers with their noise floors; the audit "
                  "itself must be made by an independent auditor, yearly, on the tool's "
                  "historical data (test data where there is too little)."
                  if of_people else
                  "Does not apply to a content recommender; it would apply only if the system "
                  "screened candidates or employees for NYC jobs.")
                 + " LL144 sets no threshold; 0.8 (the EEOC four-fifths rule of thumb) is marked "
                   "for reference only."},
    ]


# -- page ----------------------------------------------------------------------------------------
def _report_view(result: AuditResult, label: str, index: int, many: bool) -> dict[str, Any]:
    alpha, min_units = c.alpha_of(result), min_units_of(result)
    anchor = f"m{index}" if many else "r"
    helpers = Helpers(f"{anchor}c")
    probes = []
    seen: dict[str, int] = {}
    for p in result.probes:
        s = c.slug(p.id)
        seen[s] = seen.get(s, 0) + 1
        if seen[s] > 1:
            s = f"{s}-{seen[s]}"
        views = c.split_variants(p)
        helpers.register(views)
        # One section per variant, the original first; a variant's anchor is its index.
        sections = [{"p": v.probe, "view": v, "partial": partial_for(p.probe),
                     "anchor": f"{anchor}-probe-{s}" + (f"-v{i}" if i else ""),
                     "verdict": c.probe_verdict(v.probe, alpha, min_units),
                     "small_sample": c.probe_small_sample(v.probe, min_units),
                     "first": i == 0}
                    for i, v in enumerate(views)]
        probes.append({**sections[0], "variants": sections[1:]})
    checks = c.checks(result)
    prov = result.provenance
    config_text = prov.config_text
    if not config_text and result.config:
        config_text = json.dumps(result.config, indent=1, sort_keys=True, ensure_ascii=False,
                                 default=str)
    return {
        "result": result, "label": label, "anchor": anchor, "alpha": alpha,
        "confidence": c.confidence_of(result), "verdict": c.verdict(result),
        "probes": probes, "checks": checks,
        "attention": [x for x in checks if x.status != "pass"],
        "passed": [x for x in checks if x.status == "pass"],
        "top": c.top_findings(result, 3), "lim": c.limitations(result),
        "story": story(result).sections(),
        "prov": prov, "config_text": c.clean(config_text) if config_text else None,
        "results_hash": result.results_hash(),
        "h": helpers,
    }


def _css() -> Markup:
    text = _source("report.css") or ""
    # Our own file; defensively make sure it cannot close the <style> element or load anything.
    text = re.sub(r"</\s*style", "", text, flags=re.I)
    text = re.sub(r"(?im)^\s*@import\b[^;]*;", "", text)
    return Markup(text)


def html_report(results: AuditResult | Sequence[AuditResult], title: str | None = None) -> str:
    """Return the report as one HTML string (one result, or several side by side)."""
    rs = c.coerce_results(results)
    labels = c.labels(rs)
    many = len(rs) > 1
    reports = [_report_view(r, lab, i, many)
               for i, (r, lab) in enumerate(zip(rs, labels, strict=True))]
    page_title = title or (rs[0].name if not many else
                           f"{rs[0].name}: " + " vs ".join(labels))
    ctx = {
        "title": c.clean(page_title), "reports": reports, "many": many, "labels": labels,
        "comparison": c.comparison(rs) if many else [],
        "compliance": compliance_rows(rs), "impact": impact_ratios(rs, labels),
        "css": _css(), "version": __version__,
    }
    specs = {name: spec for r in rs for p in r.probes for name, spec in p.specs.items()}
    token = _SPECS.set(specs)
    try:
        return _env().get_template(TEMPLATE).render(**ctx)
    finally:
        _SPECS.reset(token)


def render_html(results: AuditResult | Sequence[AuditResult], path: str | Path,
                title: str | None = None) -> Path:
    """Write the HTML report to ``path`` and return the file written.

    ``path`` is a file, or a directory (an existing one, or a path without a suffix) that gets
    ``index.html``.
    """
    out = Path(path)
    if out.is_dir() or not out.suffix:
        out = out / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html_report(results, title=title), encoding="utf-8")
    return out
