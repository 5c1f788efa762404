"""House rules that keep the rooms apart: report, gates and compare know no probe or metric by
name (they read the declarations a probe result carries)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "recaudit"
ROOMS = sorted((ROOT / "report").glob("*.py")) + [ROOT / "gates.py", ROOT / "compare.py"]


def _names() -> set[str]:
    from recaudit.metrics.specs import SPREAD_KINDS, all_specs
    from recaudit.probes.registry import registry

    specs = all_specs()
    names = set(registry()) | set(specs)
    for base in specs:
        names |= {pattern.format(base) for pattern, *_ in SPREAD_KINDS.values()}
    return names


def _string_constants(path: Path) -> list[tuple[int, str]]:
    """Every string literal of a module except docstrings, with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


@pytest.mark.parametrize("path", ROOMS, ids=lambda p: p.name)
def test_no_probe_or_metric_name_in_report_gates_or_compare(path):
    names = _names()
    assert {"counterfactual", "snsr_jaccard", "leakage_auc", "ndcg_gap"} <= names  # the check bites
    found = [(line, s) for line, s in _string_constants(path) if s in names]
    assert not found, f"{path.name} names {found}: read the probe result's declarations instead"
