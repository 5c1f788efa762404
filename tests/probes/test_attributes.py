"""``attributes:`` of the wrong shape is one line saying what to write (issue 19, defect 9).

Before, ``attributes: gender`` (a string where a list or mapping belongs) failed with pydantic's
union branch: ``probes[0].params.attributes.dict[str,list[str]]: Input should be a valid
dictionary (+1 more)``.
"""

from __future__ import annotations

import pytest

from recaudit.config import parse_config
from recaudit.errors import ConfigError
from recaudit.probes.attributes import attributes_shape

from ..reliability.bad_input import assert_cli_error

MODEL = "model: python:tests.cli_recommenders:constant\ncatalog: {source: none}\n"
LIST_OR_MAPPING = "expected a list of attribute names or a mapping name -> values"


@pytest.mark.parametrize("probe", ["counterfactual", "leakage"])
def test_a_string_for_attributes_says_what_to_write(tmp_path, capsys, probe):
    path = tmp_path / "audit.yaml"
    path.write_text(MODEL + f"probes: [{{probe: {probe}, params: {{attributes: gender}}}}]\n",
                    encoding="utf-8")
    assert_cli_error(capsys, ["audit", path, "--dry-run"], 2,
                     f"{{path}}: probes[0].params.attributes: {LIST_OR_MAPPING}, got the string "
                     "'gender'; write attributes: [gender]", path=path)


def test_profile_attributes_are_a_mapping_and_the_message_shows_one(tmp_path, capsys):
    path = tmp_path / "audit.yaml"
    path.write_text("model: python:tests.cli_recommenders:constant\n"
                    "probes: [{probe: profile, params: {attributes: gender}}]\n",
                    encoding="utf-8")
    assert_cli_error(capsys, ["audit", path, "--dry-run"], 2,
                     "{path}: probes[0].params.attributes: expected a mapping name -> values, "
                     "got the string 'gender'; write attributes: {gender: [a female, a male]}",
                     path=path)


@pytest.mark.parametrize("value, fix", [
    ("eye colour", "write attributes: {eye colour: [<value>, <value>]}"),  # not a known name
    (5, "got 5; write attributes: [gender, age]"),
    ("", "got the string ''; write attributes: [gender, age]"),
])
def test_other_wrong_shapes(value, fix):
    with pytest.raises(ConfigError) as info:
        parse_config({"probes": [{"probe": "counterfactual", "params": {"attributes": value}}]})
    message = str(info.value)
    assert "\n" not in message and LIST_OR_MAPPING in message and message.endswith(fix)


def test_right_shapes_pass_through_unchanged():
    assert attributes_shape(["gender"]) == ["gender"]
    assert attributes_shape({"x": ["a", "b"]}, names=False) == {"x": ["a", "b"]}
