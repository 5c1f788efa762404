"""The registry helper: one name once (a duplicate is one line naming both places, the same
object again is fine), listing, lazy built-ins, entry-point plugins and the one "unknown X"
sentence."""

from __future__ import annotations

import uuid

import pytest

from recaudit.errors import ConfigError, ModelSpecError
from recaudit.registry import Registry, unknown_name_message

from .support.plugins import fake_distribution, forget_modules


def first():
    """The first thing."""


def second():
    """The second thing."""


def _group() -> str:
    return f"recaudit.test_{uuid.uuid4().hex[:8]}"


def test_unknown_name_message_is_one_sentence():
    assert unknown_name_message("reranker", "nope", ["a", "b"]) == \
        "unknown reranker 'nope'; known: a, b"
    assert unknown_name_message("model kind", "x", [], context="in 'x:y'") == \
        "unknown model kind 'x' in 'x:y'; known: none"


def test_a_duplicate_name_is_refused_in_one_line_naming_both_places():
    reg = Registry("widget", _group())
    reg.register("w", first)
    with pytest.raises(ConfigError) as err:
        reg.register("w", second)
    msg = str(err.value)
    assert msg == ("duplicate widget 'w': registered by tests.test_registry.first and again by "
                   "tests.test_registry.second")
    assert reg.get("w") is first  # the first registration stands


def test_the_same_object_registered_again_is_a_no_op():
    reg = Registry("widget", _group())
    assert reg.register("w", first) is first
    assert reg.register("w", first) is first
    assert reg.names() == ["w"]


def test_a_class_redefined_by_importing_its_module_again_replaces_the_first(tmp_path,
                                                                             monkeypatch):
    reg = Registry("widget", _group())
    mod = f"regmod_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{mod}.py").write_text("class W:\n    pass\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    one = importlib.import_module(mod).W
    reg.register("w", one)
    forget_modules(mod)
    two = importlib.import_module(mod).W
    forget_modules(mod)
    assert one is not two
    assert reg.register("w", two) is two and reg.get("w") is two


def test_decorator_listing_and_order():
    reg = Registry("widget", _group())
    reg.add("zeta")(first)
    reg.add("alpha")(second)
    assert reg.names() == ["alpha", "zeta"] and list(reg) == ["alpha", "zeta"]
    assert reg.items() == [("alpha", second), ("zeta", first)]
    assert "alpha" in reg and "beta" not in reg and len(reg) == 2
    ordered = Registry("widget", _group(), sort_names=False)
    ordered.add("zeta")(first)
    ordered.add("alpha")(second)
    assert ordered.names() == ["zeta", "alpha"]


def test_unknown_name_lists_the_known_ones_with_the_registrys_error():
    reg = Registry("gadget", _group(), error=ModelSpecError)
    reg.register("b", first)
    reg.register("a", second)
    with pytest.raises(ModelSpecError, match=r"^unknown gadget 'c' in 'c:1'; known: a, b$"):
        reg.get("c", context="in 'c:1'")
    with pytest.raises(ConfigError, match="non-empty string"):
        reg.register("", first)


def test_builtins_are_loaded_once_on_the_first_lookup():
    calls = []

    def builtins():
        calls.append(1)
        reg.register("built", first)
        assert "built" in reg  # a lookup while loading does not recurse

    reg = Registry("widget", _group(), builtins=builtins)
    assert calls == []
    assert reg.names() == ["built"] and reg.get("built") is first
    assert calls == [1]


def test_entry_point_plugins_register_objects_and_modules(tmp_path, monkeypatch):
    group = _group()
    pkg = f"plug_{uuid.uuid4().hex[:8]}"
    fake_distribution(tmp_path, {group: {"thing": f"{pkg}.things:make",
                                         "mod": f"{pkg}.selfreg"}},
                      {f"{pkg}.things": "def make():\n    '''Makes.'''\n",
                       f"{pkg}.selfreg": "from tests.test_registry import REG\n"
                                         "REG.register('selfreg', len)\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    global REG
    REG = Registry("widget", group)
    try:
        assert REG.names() == ["selfreg", "thing"]
        assert REG.get("thing").__doc__ == "Makes."
        assert REG.where("thing") == f"entry point 'thing' ({pkg}.things:make) of {group}"
        REG.register("thing", REG.get("thing"))  # a second load of the plugin is a no-op
    finally:
        forget_modules(pkg)


REG: Registry | None = None


def test_a_broken_plugin_is_one_line_and_is_not_skipped_on_the_next_lookup(tmp_path,
                                                                           monkeypatch):
    group = _group()
    pkg = f"broken_{uuid.uuid4().hex[:8]}"
    fake_distribution(tmp_path, {group: {"bad": f"{pkg}.boom:make"}},
                      {f"{pkg}.boom": "raise RuntimeError('boom\\nsecond line')\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("widget", group)
    for _ in range(2):
        with pytest.raises(ConfigError) as err:
            reg.names()
        assert str(err.value) == (f"widget plugin 'bad' ({pkg}.boom:make) failed to load: "
                                  "RuntimeError: boom")
    forget_modules(pkg)


def test_a_plugin_whose_name_is_taken_is_refused_naming_the_entry_point(tmp_path,
                                                                         monkeypatch):
    group = _group()
    pkg = f"clash_{uuid.uuid4().hex[:8]}"
    fake_distribution(tmp_path, {group: {"w": f"{pkg}.m:make"}},
                      {f"{pkg}.m": "def make():\n    pass\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("widget", group)
    reg.register("w", first)
    with pytest.raises(ConfigError, match=r"^duplicate widget 'w': registered by "
                       r"tests\.test_registry\.first and again by entry point 'w' "):
        reg.names()
    forget_modules(pkg)
