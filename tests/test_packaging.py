"""Packaging metadata: `pip install -e .` must be quiet (no deprecated keys or lost packages)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_license_is_an_spdx_string():
    # a TOML table is deprecated by setuptools >= 77 and printed as a warning on every install
    assert isinstance(PYPROJECT["project"]["license"], str)
    requires = PYPROJECT["build-system"]["requires"]
    assert any(r.replace(" ", "").startswith("setuptools>=") and
               int(r.split(">=")[1].split(".")[0]) >= 77 for r in requires)


def _source_dir(package: str, package_dir: dict[str, str]) -> Path:
    """Where setuptools finds ``package``: the longest mapped prefix, else the dotted path."""
    for prefix in sorted(package_dir, key=len, reverse=True):
        if package == prefix or package.startswith(prefix + "."):
            rest = package[len(prefix):].lstrip(".").split(".") if package != prefix else []
            return ROOT.joinpath(package_dir[prefix], *[p for p in rest if p])
    return ROOT.joinpath(*package.split("."))


def test_every_shipped_folder_is_a_listed_package():
    tool = PYPROJECT["tool"]["setuptools"]
    packages = set(tool["packages"])
    package_dir = tool.get("package-dir", {})
    for package in packages:
        src = _source_dir(package, package_dir)
        assert src.is_dir(), f"{package}: {src} does not exist"
        for sub in src.iterdir():
            if sub.is_dir() and sub.name != "__pycache__" and any(
                    f.is_file() for f in sub.iterdir()):
                # setuptools warns "Package '...' is absent from the `packages` configuration"
                assert f"{package}.{sub.name}" in packages, f"{package}.{sub.name} not listed"
