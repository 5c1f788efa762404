"""load_recommender: spec parsing and consent flags."""

from __future__ import annotations

import pytest

from recaudit.errors import ModelSpecError
from recaudit.recommenders import load_recommender


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
