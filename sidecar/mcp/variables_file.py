"""The variables file of the MCP face: variables and secrets for calls whose clients send none.

MCP clients (desktop apps, IDEs) have no way to pass orq `variables` with a tool
call, so the operator writes them into one YAML or JSON file, read once at start:

    WEATHER_API_KEY: {secret: true, value: "wk-..."}
    units: metric

Error messages name the file, the variable and the line, never a value: the file
holds secrets, and YAML's own messages quote the offending line.
"""

from __future__ import annotations

import stat
from pathlib import Path

import yaml

from sidecar.errors import BadRequest
from sidecar.logs import get_logger
from sidecar.strict_yaml import load_yaml
from sidecar.variables import parse_variables
from tools.base import VariableValue

__all__ = ["VariablesFileError", "load_variables_file"]

log = get_logger("sidecar.mcp.variables_file")


class VariablesFileError(ValueError):
    """A variables file that cannot be read or does not hold a map of variables."""


def load_variables_file(path: Path | None) -> dict[str, VariableValue]:
    """The variables in `path` (none without a file); `VariablesFileError` names what is wrong."""
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise VariablesFileError(f"{path}: cannot read the variables file: {reason}") from None
    document = _document(path, text)
    if document is None:
        return {}
    if not isinstance(document, dict) or not all(isinstance(name, str) for name in document):
        raise VariablesFileError(f"{path}: expected a map of variable names to values")
    try:
        variables = parse_variables(document, param="")
    except BadRequest as exc:
        raise VariablesFileError(f"{path}: {exc.message}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("variables_file.readable_by_others", path=str(path), hint="chmod 600")
    return variables


def _document(path: Path, text: str) -> object:
    try:
        return load_yaml(text)
    except yaml.MarkedYAMLError as exc:
        where = exc.problem_mark or exc.context_mark
        at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        raise VariablesFileError(f"{path}: not valid YAML or JSON: {exc.problem}{at}") from None
    except yaml.YAMLError:
        raise VariablesFileError(f"{path}: not valid YAML or JSON") from None
