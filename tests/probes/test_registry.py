"""Probe registry: built-in probes found by module discovery, and a user's own probe named
``package.module:ClassName`` in a config (resolved, registered, run; bad specs one-line errors)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from recaudit.audit import run_audit
from recaudit.config import parse_config
from recaudit.errors import ConfigError
from recaudit.probes.registry import (_REGISTRY, HELPER_MODULES, Probe, builtin_modules,
                                      get_probe, probe, registry)
from recaudit.recommenders.base import GENERATE, Recommender, Response

from .synthetic_catalog import synthetic_catalog

ROOT = Path(__file__).resolve().parents[2]

USER_PROBES = '''
from __future__ import annotations

from pydantic import Field

from recaudit.probes import AuditContext, Probe, ProbeParams, Query, probe
from recaudit.recommenders.base import Request
from recaudit.results import ProbeResult


class MyParams(ProbeParams):
    k: int = Field(5, ge=1)


class MyProbe(Probe):
    """Asks once for k movies."""

    Params = MyParams

    def plan(self, ctx: AuditContext) -> list[Query]:
        return [Query("q0", Request.from_prompt("Some movies, please.", k=self.params.k))]

    def analyse(self, ctx, queries, answers) -> ProbeResult:
        a = answers["q0"]
        return ProbeResult(id=self.run_id, probe=self.name, suite=self.suite,
                           params=self.params.model_dump(), n_queries=len(queries),
                           warnings=[f"{len(a.response.item_ids or [])} items"])


@probe("named-user-probe", tags=["custom"])
class Named(MyProbe):
    """A user probe registered by the decorator."""


class Inherits(Named):
    """Inherits the decorated name but is not registered itself."""


class NotAProbe:
    pass


def not_a_class():
    pass
'''


@pytest.fixture
def user_pkg(tmp_path, monkeypatch):
    """A package ``<name>`` with ``mod.py`` (the probes above) and ``broken.py`` on sys.path;
    the registry and sys.modules are restored afterwards."""
    name = f"tmp_pkg_{uuid.uuid4().hex[:8]}"
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "mod.py").write_text(textwrap.dedent(USER_PROBES), encoding="utf-8")
    (pkg / "broken.py").write_text("raise RuntimeError('boom\\nsecond line')\n",
                                   encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = dict(_REGISTRY)
    yield name
    _REGISTRY.clear()
    _REGISTRY.update(before)
    for m in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[m]


class ListRecommender(Recommender):
    capabilities = frozenset({GENERATE})

    def __init__(self) -> None:
        super().__init__(spec="list")

    def fingerprint(self) -> str:
        return "list"

    def recommend(self, requests):
        return [Response(item_ids=[str(i) for i in range(r.k)]) for r in requests]


# -- built-in probes ----------------------------------------------------------------------------
def test_builtin_probes_are_discovered_from_the_package():
    mods = builtin_modules()
    assert {"counterfactual", "leakage", "profile"} <= set(mods)
    assert not set(mods) & HELPER_MODULES
    probes = registry()
    assert {"counterfactual", "leakage", "profile"} <= set(probes)
    # every discovered module defines a probe (a new helper module belongs in HELPER_MODULES)
    defined = {cls.__module__ for cls in probes.values()}
    assert {f"recaudit.probes.{m}" for m in mods} <= defined


def test_help_imports_no_probe_module_nor_heavy_library():
    code = ("import sys\nfrom recaudit.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "bad = [m for m in ('recaudit.probes', 'recaudit.probes.counterfactual', 'torch',"
            " 'transformers', 'sklearn', 'pandas') if m in sys.modules]\n"
            "print('LOADED', bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, cwd=ROOT).stdout
    assert "LOADED []" in out


# -- a user's own probe -------------------------------------------------------------------------
def test_user_probe_spec_resolves_validates_and_runs(user_pkg, tmp_path):
    spec = f"{user_pkg}.mod:MyProbe"
    cfg = parse_config({"probes": [{"probe": spec, "params": {"k": 3}}],
                        "engine": {"cache": str(tmp_path / "c.sqlite"), "progress": False}})
    assert cfg.probes[0].params == {"k": 3}
    cls = get_probe(spec)
    assert cls.__name__ == "MyProbe" and cls.name == spec and registry()[spec] is cls
    assert get_probe(spec) is cls  # a second lookup finds the registered class
    result = run_audit(cfg, recommender=ListRecommender(), catalog=synthetic_catalog(),
                       progress=False)
    pr = result.probes[0]
    assert (pr.status, pr.id, pr.probe, pr.warnings) == ("ok", spec, spec, ["3 items"])
    with pytest.raises(ConfigError, match=r"probes\[0\]\.params\.k: Input should be greater"):
        parse_config({"probes": [{"probe": spec, "params": {"k": 0}}]})


def test_user_probe_decorated_with_probe_keeps_its_name(user_pkg):
    cls = get_probe(f"{user_pkg}.mod:Named")
    assert cls.name == "named-user-probe" and cls.tags == ("custom",)
    assert get_probe("named-user-probe") is cls
    assert f"{user_pkg}.mod:Named" not in registry()
    # a subclass inheriting the decorated name is registered under its spec, not over it
    sub = get_probe(f"{user_pkg}.mod:Inherits")
    assert sub.name == f"{user_pkg}.mod:Inherits" and get_probe("named-user-probe") is cls


@pytest.mark.parametrize(("target", "message"), [
    ("{pkg}.nosuch:MyProbe", "cannot import module '{pkg}.nosuch' (ModuleNotFoundError: No "
                             "module named '{pkg}.nosuch')"),
    ("{pkg}.broken:MyProbe", "cannot import module '{pkg}.broken' (RuntimeError: boom)"),
    ("{pkg}.mod:Missing", "module '{pkg}.mod' has no attribute 'Missing'"),
    ("{pkg}.mod:NotAProbe", "'NotAProbe' is not a subclass of recaudit.probes.Probe"),
    ("{pkg}.mod:not_a_class", "'not_a_class' is not a subclass of recaudit.probes.Probe"),
    ("{pkg}.mod:", "expected package.module:ClassName"),
    (":MyProbe", "expected package.module:ClassName"),
])
def test_bad_user_probe_specs_are_one_line_config_errors(user_pkg, target, message):
    spec = target.format(pkg=user_pkg)
    with pytest.raises(ConfigError) as err:
        parse_config({"probes": [{"probe": spec}]}, where="audit.yaml")
    text = str(err.value)
    assert "\n" not in text
    assert text == f"audit.yaml: probes[0].probe: probe {spec!r}: {message.format(pkg=user_pkg)}"


def test_unknown_plain_name_still_lists_the_available_probes():
    with pytest.raises(ConfigError, match=r"unknown probe 'nope'; known: .*counterfactual"):
        get_probe("nope")


def test_a_second_probe_under_a_taken_name_is_refused_in_one_line():
    """Before, the second class silently replaced the built-in counterfactual probe."""
    registry()
    before = dict(_REGISTRY)
    with pytest.raises(ConfigError) as err:
        @probe("counterfactual")
        class Impostor(Probe):
            """Not the real one."""
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("duplicate probe 'counterfactual': registered by "
                                     "recaudit.probes.counterfactual.CounterfactualProbe and "
                                     "again by ")
    assert dict(_REGISTRY) == before and get_probe("counterfactual").__name__ == \
        "CounterfactualProbe"


def test_an_entrys_attribute_mapping_replaces_the_suites_not_merges_into_it():
    """``attributes: {gender: [...]}`` on the eight-attribute fairllm suite ran all eight (the
    mapping merged key by key); other mappings (``subjects``) still merge."""
    import yaml

    cfg = parse_config(yaml.safe_load(textwrap.dedent("""
        model: "python:builtins:len"
        probes:
          - probe: counterfactual
            suite: fairllm
            params:
              attributes: {gender: [a female, a male]}
              control: {colour: [a blue-loving, a green-loving]}
              subjects: {n: 7}
    """)))
    params = cfg.probes[0].params
    assert params["attributes"] == {"gender": ["a female", "a male"]}
    assert params["control"] == {"colour": ["a blue-loving", "a green-loving"]}
    assert (params["subjects"]["source"], params["subjects"]["n"]) == ("catalog_popular", 7)
    assert params["k"] == 20  # the suite's
