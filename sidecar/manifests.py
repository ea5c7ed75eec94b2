"""Tool manifests: YAML files in `manifests/tools/`, validated at start."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from ulid import ULID

from sidecar.definitions import (
    StoredTool,
    ToolDefinition,
    parse_definition,
    parse_tool_id,
)
from sidecar.errors import ManifestError

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


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that repeats a key (else the last one wins)."""


def _mapping_without_repeats(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeats
)


def _entries(path: Path) -> list[Any]:
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
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
