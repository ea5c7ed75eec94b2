"""Tool manifests: YAML files in `manifests/tools/`, validated at start."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from ulid import ULID

from sidecar.errors import ManifestError
from sidecar.registry.definitions import (
    StoredTool,
    ToolDefinition,
    parse_definition,
    parse_tool_id,
)
from sidecar.strict_yaml import load_yaml

__all__ = ["load_tool_manifests", "manifest_files"]

SUFFIXES = (".yaml", ".yml", ".json")


def manifest_files(manifests_dir: Path) -> list[Path]:
    """The tool manifest files, in a stable order."""
    folder = manifests_dir / "tools"
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.suffix in SUFFIXES and path.is_file())


def load_tool_manifests(manifests_dir: Path) -> list[StoredTool]:
    """Every tool of every manifest file; `ManifestError` names the file and the field."""
    tools: list[StoredTool] = []
    seen: dict[str, Path] = {}
    for path in manifest_files(manifests_dir):
        for index, entry in enumerate(_entries(path)):
            tool = _stored(path, index, entry)
            key = tool.definition.key
            if key in seen:
                raise ManifestError(f"{path}: key {key!r} is already defined in {seen[key]}")
            seen[key] = path
            tools.append(tool)
    return tools


def _entries(path: Path) -> list[Any]:
    try:
        document = load_yaml(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    if isinstance(document, dict) and "tools" in document and "type" not in document:
        document = document["tools"]
    if isinstance(document, dict):
        return [document]
    if isinstance(document, list):
        return document
    raise ManifestError(f"{path}: expected a tool definition or a 'tools' list")


def _stored(path: Path, index: int, entry: Any) -> StoredTool:
    where = f"{path}" if index == 0 else f"{path}[{index}]"
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: a tool definition must be a mapping")
    body = dict(entry)
    explicit_id = body.pop("id", None)
    explicit_id = body.pop("_id", None) or explicit_id
    definition = _definition(where, body)
    modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    return StoredTool(
        id=_manifest_id(where, explicit_id, definition),
        definition=definition,
        created=modified,
        updated=modified,
        source="manifest",
    )


def _definition(where: str, body: dict[str, Any]) -> ToolDefinition:
    return parse_definition(body, where=where)


def _manifest_id(where: str, explicit: object, definition: ToolDefinition) -> str:
    if explicit is not None:
        parsed = parse_tool_id(str(explicit))
        if parsed is None:
            raise ManifestError(f"{where}: id {explicit!r} is not a tool_<ULID> or a ULID")
        return parsed
    # A zero timestamp keeps manifest tools after every API tool in newest-first lists;
    # the rest of the id is derived from the key, so it is stable across restarts.
    digest = hashlib.sha256(f"manifest:{definition.key}".encode()).digest()
    return str(ULID.from_bytes(bytes(6) + digest[:10]))
