"""The reranker registry: a taken name is refused in one line (it used to overwrite silently),
the same class again is fine, and installed packages add rerankers through the
``recaudit.rerankers`` entry-point group (a broken one is one line)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from recaudit.errors import ConfigError
from recaudit.mitigation.registry import (ENTRY_POINT_GROUP, RERANKERS, ListBatch, Reranker,
                                          get_reranker, reranker, reranker_names)

from ..support.plugins import fake_distribution, forget_modules

PLUGIN = '''
from recaudit.mitigation.registry import Reranker, reranker


class Reverse(Reranker):
    """Puts each list's head in reverse order."""

    def rerank(self, batch, k):
        import numpy as np

        n = batch.valid.sum(axis=1)
        return batch.lists(np.array([[j for j in range(min(k, m) - 1, -1, -1)] + [-1] *
                                     (k - min(k, m)) for m in n]))


@reranker("selfnamed")
class SelfNamed(Reverse):
    """Registers itself when its module is imported."""
'''


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """A folder on sys.path for a fake distribution; the registry is restored afterwards."""
    before = dict(RERANKERS.entries)
    monkeypatch.syspath_prepend(str(tmp_path))
    RERANKERS.refresh()
    yield tmp_path
    RERANKERS.entries.clear()
    RERANKERS.entries.update(before)
    RERANKERS.refresh()


def test_a_taken_name_is_refused_in_one_line():
    original = get_reranker("fair")

    class Impostor(Reranker):
        """Would silently replace FA*IR."""

    with pytest.raises(ConfigError) as err:
        reranker("fair")(Impostor)
    assert str(err.value) == (
        "duplicate reranker 'fair': registered by recaudit.mitigation.fair.Fair and "
        "again by tests.mitigation.test_registry."
        "test_a_taken_name_is_refused_in_one_line.<locals>.Impostor")
    assert get_reranker("fair") is original and Impostor.name == ""


def test_the_same_class_registered_again_is_fine():
    cls = get_reranker("xquad")
    assert reranker("xquad")(cls) is cls and get_reranker("xquad") is cls


def test_unknown_reranker_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        get_reranker("nope")
    assert str(err.value) == f"unknown reranker 'nope'; known: {', '.join(reranker_names())}"
    assert reranker_names() == sorted(reranker_names())


def test_an_installed_package_adds_rerankers(plugin_path):
    pkg = f"rrplug_{uuid.uuid4().hex[:8]}"
    fake_distribution(plugin_path, {ENTRY_POINT_GROUP: {"reverse": f"{pkg}.rr:Reverse",
                                                        "anything": f"{pkg}.rr"}},
                      {f"{pkg}.rr": PLUGIN})
    try:
        assert {"reverse", "selfnamed", "fair"} <= set(reranker_names())
        cls = get_reranker("reverse")
        assert cls.name == "reverse"
        assert cls.description == "Puts each list's head in reverse order."
        batch = ListBatch.of([["a", "b", "c", "d"]], [None], catalog=None)
        assert cls(cls.Params()).rerank(batch, 3) == [["c", "b", "a", "d"]]
        assert get_reranker("selfnamed").__module__ == f"{pkg}.rr"
    finally:
        forget_modules(pkg)


def test_a_broken_reranker_plugin_is_one_line(plugin_path):
    pkg = f"rrbroken_{uuid.uuid4().hex[:8]}"
    fake_distribution(plugin_path, {ENTRY_POINT_GROUP: {"bad": f"{pkg}.rr:Nope"}},
                      {f"{pkg}.rr": "class Other:\n    pass\n"})
    try:
        with pytest.raises(ConfigError) as err:
            reranker_names()
        msg = str(err.value)
        assert "\n" not in msg
        assert msg.startswith(f"reranker plugin 'bad' ({pkg}.rr:Nope) failed to load: "
                              "AttributeError")
    finally:
        forget_modules(pkg)


def test_a_plugin_that_is_not_a_reranker_is_one_line(plugin_path):
    pkg = f"rrodd_{uuid.uuid4().hex[:8]}"
    fake_distribution(plugin_path, {ENTRY_POINT_GROUP: {"odd": f"{pkg}.ok:VALUE"}},
                      {f"{pkg}.ok": "VALUE = 3\n"})
    try:
        with pytest.raises(ConfigError, match=r"^reranker plugin 'odd': 3 is neither a module "
                                              r"nor a Reranker subclass$"):
            reranker_names()
    finally:
        forget_modules(pkg)


def test_listing_imports_every_builtin_once():
    names = reranker_names()
    assert {"calibration", "consensus", "det", "fair", "psc", "xquad"} <= set(names)
    assert all(isinstance(get_reranker(n), type) and get_reranker(n).name == n for n in names)
    assert np.all([issubclass(get_reranker(n), Reranker) for n in names])
