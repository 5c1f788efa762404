"""recaudit: audit LLM-based recommenders for fairness, bias and robustness.

Public API (imported lazily so ``recaudit --help`` stays instant)::

    import recaudit as ra
    catalog = ra.Catalog.from_movielens()
    rec = ra.load_recommender("smollm2")
    result = ra.run_audit(ra.load_config("audit.yaml"))
    ra.save_result(result, "out/")   # results.json, index.html, junit.xml, summary.md
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "AuditConfig": "recaudit.config", "load_config": "recaudit.config",
    "parse_config": "recaudit.config",
    "Catalog": "recaudit.catalog", "Grounding": "recaudit.grounding",
    "load_recommender": "recaudit.recommenders", "Recommender": "recaudit.recommenders.base",
    "Request": "recaudit.recommenders.base", "Response": "recaudit.recommenders.base",
    "Decoding": "recaudit.recommenders.base",
    "Engine": "recaudit.engine", "Answer": "recaudit.engine",
    "run_audit": "recaudit.audit",
    "AuditResult": "recaudit.results", "ProbeResult": "recaudit.results",
    "MetricRecord": "recaudit.results",
    "probe": "recaudit.probes.registry", "Probe": "recaudit.probes.registry",
    "evaluate_gates": "recaudit.gates", "compare_results": "recaudit.compare",
    "render_all": "recaudit.report", "save_result": "recaudit.report",
    "RecauditError": "recaudit.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'recaudit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
