"""Shared test setup: offline hubs, an isolated cache directory, warnings as errors (pyproject)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session shares one cache dir (so the GGUF dequantization is paid once)."""
    root = os.environ.get("RECAUDIT_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "cache")
    monkeypatch.setenv("RECAUDIT_CACHE_DIR", root)
    yield
