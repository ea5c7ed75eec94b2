"""The MCP variables file: YAML or JSON, secrets flagged, errors that name the file, not values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar.mcp.variables_file import VariablesFileError, load_variables_file
from tests.support.secrets import assert_no_secret
from tools.base import Secret

SECRET = "file-secret-Zq81-value"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_means_no_variables() -> None:
    assert load_variables_file(None) == {}


def test_yaml_holds_plain_values_and_flagged_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path, "vars.yaml", f"TOKEN: {{secret: true, value: {SECRET}}}\nunits: metric\ndays: 3\n"
    )
    assert load_variables_file(path) == {"TOKEN": Secret(SECRET), "units": "metric", "days": 3}


def test_json_is_read_too(tmp_path: Path) -> None:
    body = {"TOKEN": {"secret": True, "value": SECRET}, "nested": {"a": [1, 2]}}
    path = write(tmp_path, "vars.json", json.dumps(body))
    variables = load_variables_file(path)
    assert variables == {"TOKEN": Secret(SECRET), "nested": {"a": [1, 2]}}


def test_an_empty_file_holds_no_variables(tmp_path: Path) -> None:
    assert load_variables_file(write(tmp_path, "vars.yaml", "")) == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"TOKEN: {SECRET}\nTOKEN: again\n", "key 'TOKEN' appears twice (line 2"),
        (f'TOKEN: {{secret: true, value: "{SECRET}\n', "not valid YAML or JSON"),
        (f"- {SECRET}\n", "expected a map of variable names to values"),
        ("1: one\n", "expected a map of variable names to values"),
        ("TOKEN: {secret: true}\n", "secret variable 'TOKEN' needs a string 'value'"),
    ],
)
def test_a_bad_file_is_named_without_quoting_its_values(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, "vars.yaml", text)
    with pytest.raises(VariablesFileError) as raised:
        load_variables_file(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message
    assert_no_secret(message, SECRET)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(VariablesFileError, match=r"missing\.yaml: cannot read the variables file"):
        load_variables_file(tmp_path / "missing.yaml")
