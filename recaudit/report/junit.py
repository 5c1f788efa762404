"""JUnit XML of an audit, for CI test-report viewers (GitHub, GitLab, Jenkins).

One ``<testsuite>`` per kind of check (per model when several results are given):

* ``gates``    one testcase per gate; a failed gate is a ``<failure>`` (it fails the job too).
* ``probes``   one testcase per probe run ("ran ok"); an errored probe is an ``<error>``, a
               skipped one ``<skipped>``. Its headline metrics are ``<properties>``.
* ``checks``   one testcase per statistical test and consistency check. A significant but
               ungated difference still passes (only gates decide CI) and says ``FLAGGED`` in
               its ``<system-out>`` and a ``flagged`` property.
* ``findings`` one testcase per finding a probe reported (severity low and above).

Metric values are ``<property>`` elements. Everything is built with :mod:`xml.etree`, which
escapes markup; characters XML 1.0 forbids (control characters in model output) are replaced.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

from ..results import AuditResult
from . import _common as c

__all__ = ["junit_xml", "render_junit"]

MAX_TEXT = 4000


def _t(text: object, limit: int = MAX_TEXT) -> str:
    return c.truncate(text, limit)


def _properties(parent: ET.Element, props: dict[str, str]) -> None:
    if not props:
        return
    el = ET.SubElement(parent, "properties")
    for k, v in props.items():
        ET.SubElement(el, "property", name=_t(k, 200), value=_t(v, 1000))


class _Suite:
    def __init__(self, root: ET.Element, name: str, props: dict[str, str] | None = None) -> None:
        self.el = ET.SubElement(root, "testsuite", name=_t(name, 300))
        self.counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        if props:
            _properties(self.el, props)

    def case(self, classname: str, name: str, props: dict[str, str], *, failure: str | None = None,
             error: str | None = None, skipped: str | None = None, out: str | None = None,
             kind: str = "") -> ET.Element:
        tc = ET.SubElement(self.el, "testcase", classname=_t(classname, 300), name=_t(name, 500),
                           time="0")
        _properties(tc, props)
        self.counts["tests"] += 1
        if failure is not None:
            f = ET.SubElement(tc, "failure", message=_t(failure, 1000), type=kind or "failure")
            f.text = _t(failure)
            self.counts["failures"] += 1
        elif error is not None:
            e = ET.SubElement(tc, "error", message=_t(error, 1000), type=kind or "error")
            e.text = _t(error)
            self.counts["errors"] += 1
        elif skipped is not None:
            ET.SubElement(tc, "skipped", message=_t(skipped, 1000))
            self.counts["skipped"] += 1
        if out:
            so = ET.SubElement(tc, "system-out")
            so.text = _t(out)
        return tc

    def close(self) -> None:
        for k, v in self.counts.items():
            self.el.set(k, str(v))
        self.el.set("time", "0")


def _suite_props(result: AuditResult) -> dict[str, str]:
    pr = result.provenance
    props = {"recaudit.version": pr.tool_version, "model_spec": pr.model_spec,
             "audit": result.name, "results_hash": result.results_hash(),
             "alpha": repr(c.alpha_of(result))}
    for key in ("model_fingerprint", "weights_sha256", "config_sha256", "catalog_sha256",
                "started_at", "finished_at"):
        v = getattr(pr, key)
        if v:
            props[key] = str(v)
    return props


def _build(root: ET.Element, result: AuditResult, label: str | None) -> list[_Suite]:
    prefix = f"recaudit[{label}]" if label else "recaudit"
    props = _suite_props(result)
    suites = {kind: _Suite(root, f"{prefix}.{kind}", props if kind == "gates" else None)
              for kind in ("gates", "probes", "checks", "findings")}
    for chk in c.checks(result):
        if chk.kind == "gate":
            suites["gates"].case(f"{prefix}.gates", chk.name, chk.properties,
                                 failure=chk.detail if chk.status == "fail" else None,
                                 out=chk.detail if chk.status == "pass" else None,
                                 kind="GateFailed")
        elif chk.kind == "probe":
            suites["probes"].case(
                f"{prefix}.probes", chk.name, chk.properties,
                error=chk.detail if chk.status == "error" else None,
                skipped=chk.detail if chk.status == "skipped" else None,
                out=(chk.detail + ("; some queries failed" if chk.status == "warn" else ""))
                if chk.status in ("pass", "warn") else None, kind="ProbeError")
        else:
            p = dict(chk.properties)
            if chk.status == "flag":
                p["flagged"] = "true"
            out = {"flag": "FLAGGED (not gated): ", "warn": "WARNING: "}.get(chk.status, "")
            suites["checks"].case(f"{prefix}.{chk.probe or 'checks'}", chk.name, p,
                                  out=out + chk.detail)
    for pr in result.probes:
        for f in pr.findings:
            if f.severity == "info":
                continue
            p = {"severity": f.severity}
            if f.effect is not None:
                p["effect"] = repr(f.effect)
            suites["findings"].case(f"{prefix}.{pr.id}", f"[{f.severity}] {f.title}", p,
                                    out=f"FINDING ({f.severity}): {f.title}\n{f.detail}")
    kept = []
    for kind, s in suites.items():
        if s.counts["tests"] == 0 and kind != "gates":  # keep gates: it carries provenance
            root.remove(s.el)
            continue
        s.close()
        kept.append(s)
    return kept


def junit_xml(results: AuditResult | Sequence[AuditResult]) -> str:
    """Return the JUnit XML document as a string (UTF-8, with an XML declaration)."""
    rs = c.coerce_results(results)
    labels = c.labels(rs)
    root = ET.Element("testsuites", name=_t(f"recaudit: {rs[0].name}", 300))
    suites: list[_Suite] = []
    for r, lab in zip(rs, labels, strict=True):
        suites += _build(root, r, lab if len(rs) > 1 else None)
    for k in ("tests", "failures", "errors", "skipped"):
        root.set(k, str(sum(s.counts[k] for s in suites)))
    root.set("time", "0")
    ET.indent(root, space=" ")
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            + ET.tostring(root, encoding="unicode") + "\n")


def render_junit(results: AuditResult | Sequence[AuditResult], path: str | Path) -> Path:
    """Write the JUnit XML of the gates and checks to ``path``; return it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(junit_xml(results), encoding="utf-8")
    return out
