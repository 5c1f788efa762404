"""load_recommender: spec parsing and consent flags."""

from __future__ import annotations

import uuid

import pytest

from recaudit.errors import ModelSpecError
from recaudit.recommenders import load_recommender

from ..support.plugins import fake_distribution, forget_modules


@pytest.mark.parametrize("spec, needle", [
    ("", "empty model spec"),
    ("nosuchmodel", "unknown model spec"),
    ("foo:bar", "unknown model kind 'foo'"),
    ("openai:http://127.0.0.1:9", "openai:URL#MODEL"),
    ("hf:/definitely/not/here", "/definitely/not/here"),
    ("gguf:/definitely/not/here.gguf", "/definitely/not/here.gguf"),
    ("embedding:/definitely/not/here", "/definitely/not/here"),
    ("python:no_such_module_xyz:fn", "no_such_module_xyz"),
])
def test_bad_specs_are_one_line_errors(spec, needle):
    with pytest.raises(ModelSpecError) as info:
        load_recommender(spec)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_trust_remote_code_only_for_hf():
    with pytest.raises(ModelSpecError, match="hf: checkpoints only"):
        load_recommender("python:tests.cli_recommenders:constant", trust_remote_code=True)


def test_python_spec_loads():
    rec = load_recommender("python:tests.cli_recommenders:constant")
    assert rec.supports("generate") and rec.spec == "python:tests.cli_recommenders:constant"


# -- recommender kinds: one registry, and plugins through recaudit.recommenders ----------------
PLUGIN = '''
from recaudit.recommenders.base import GENERATE, Recommender, Response


class Echo(Recommender):
    capabilities = frozenset({GENERATE})

    def __init__(self, target, *, spec, decoding=None, repeat=1):
        super().__init__(spec=spec, decoding=decoding)
        self.target, self.repeat = target, repeat

    def fingerprint(self):
        return f"echo:{self.target}"

    def recommend(self, requests):
        return [Response(text="\\n".join([self.target] * self.repeat)) for _ in requests]


def make(target, *, spec, decoding=None, repeat=1):
    """Echoes its target: generate"""
    return Echo(target, spec=spec, decoding=decoding, repeat=repeat)


def consents(target, *, spec, decoding=None, allow_pickle=False):
    """Reports the pickle consent it was given"""
    return Echo(f"pickle={allow_pickle}", spec=spec, decoding=decoding)


def not_a_recommender(target, *, spec, decoding=None):
    """Returns a string"""
    return "oops"
'''


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """A folder on sys.path for a fake distribution; the kinds are restored afterwards."""
    from recaudit.recommenders import RECOMMENDER_KINDS

    before = dict(RECOMMENDER_KINDS.entries)
    monkeypatch.syspath_prepend(str(tmp_path))
    RECOMMENDER_KINDS.refresh()
    yield tmp_path
    RECOMMENDER_KINDS.entries.clear()
    RECOMMENDER_KINDS.entries.update(before)
    RECOMMENDER_KINDS.refresh()


def _install(root, entries):
    from recaudit.recommenders import ENTRY_POINT_GROUP

    pkg = f"recplug_{uuid.uuid4().hex[:8]}"
    fake_distribution(root, {ENTRY_POINT_GROUP: {k: v.format(pkg=pkg) for k, v in
                                                 entries.items()}}, {f"{pkg}.kinds": PLUGIN})
    return pkg


def test_an_installed_package_adds_a_recommender_kind(plugin_path, capsys):
    from recaudit.cli import main
    from recaudit.recommenders import Request, kinds

    pkg = _install(plugin_path, {"echo": "{pkg}.kinds:make", "consents": "{pkg}.kinds:consents"})
    try:
        rec = load_recommender("echo:hello", repeat=2)
        assert rec.spec == "echo:hello" and rec.fingerprint() == "echo:hello"
        assert rec.recommend([Request.from_prompt("hi")])[0].text == "hello\nhello"
        assert load_recommender("consents:x", allow_pickle=True).target == "pickle=True"
        assert list(kinds())[:6] == ["hf", "gguf", "embedding", "openai", "python", "replay"]
        assert kinds()["echo"] == "Echoes its target: generate"
        with pytest.raises(ModelSpecError, match=r"^model_options: unknown option 'repeats' for "
                                                 r"echo models; known: repeat$"):
            load_recommender("echo:hello", repeats=2)
        assert main(["models"]) == 0
        assert "echo:" in capsys.readouterr().out
    finally:
        forget_modules(pkg)


def test_a_plugin_kind_must_return_a_recommender(plugin_path):
    pkg = _install(plugin_path, {"odd": "{pkg}.kinds:not_a_recommender"})
    try:
        with pytest.raises(ModelSpecError) as err:
            load_recommender("odd:x")
        assert str(err.value) == (f"model kind 'odd' (entry point 'odd' ({pkg}.kinds:"
                                  "not_a_recommender) of recaudit.recommenders) returned "
                                  "builtins.str, not a Recommender")
    finally:
        forget_modules(pkg)


def test_a_broken_or_clashing_kind_plugin_is_one_line(plugin_path):
    from recaudit.errors import ConfigError

    pkg = _install(plugin_path, {"bad": "{pkg}.kinds:no_such_factory"})
    try:
        with pytest.raises(ConfigError) as err:
            load_recommender("bad:x")
        assert str(err.value).startswith(f"model kind plugin 'bad' ({pkg}.kinds:no_such_factory) "
                                         "failed to load: AttributeError")
        assert "\n" not in str(err.value)
    finally:
        forget_modules(pkg)


def test_a_plugin_cannot_take_a_builtin_kind(plugin_path):
    from recaudit.errors import ConfigError

    pkg = _install(plugin_path, {"hf": "{pkg}.kinds:make"})
    try:
        with pytest.raises(ConfigError, match=r"^duplicate model kind 'hf': registered by "
                           r"recaudit\.recommenders\._hf and again by entry point 'hf' "):
            load_recommender("hf:x")
    finally:
        forget_modules(pkg)


def test_unknown_kind_lists_the_kinds_in_their_order():
    with pytest.raises(ModelSpecError) as err:
        load_recommender("bogus:x")
    assert str(err.value) == ("unknown model kind 'bogus' in 'bogus:x'; known: hf, gguf, "
                              "embedding, openai, python, replay, vllm, rankings")
