"""Manifests: tools in `manifests/tools/`, agents in `manifests/agents/`, validated at start."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml
from ulid import ULID

from sidecar.errors import ManifestError
from sidecar.registry.agent_definitions import StoredAgent, parse_agent, parse_agent_id
from sidecar.registry.definitions import (
    StoredTool,
    ToolDefinition,
    parse_definition,
    parse_tool_id,
)
from sidecar.strict_yaml import load_yaml

__all__ = ["load_agent_manifests", "load_tool_manifests", "manifest_files"]

SUFFIXES = (".yaml", ".yml", ".json")
T = TypeVar("T")


def manifest_files(manifests_dir: Path, folder_name: str = "tools") -> list[Path]:
    """The manifest files of `tools/` (or `agents/`), in a stable order."""
    folder = manifests_dir / folder_name
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.suffix in SUFFIXES and path.is_file())


def load_tool_manifests(manifests_dir: Path) -> list[StoredTool]:
    """Every tool of every manifest file; `ManifestError` names the file and the field."""
    return _load(manifests_dir, "tools", _stored, lambda tool: tool.definition.key)


def load_agent_manifests(manifests_dir: Path) -> list[StoredAgent]:
    """Every agent of every file in `agents/`; `ManifestError` names the file and the field."""
    return _load(manifests_dir, "agents", _agent, lambda agent: agent.definition.key)


def _load(
    manifests_dir: Path,
    folder: str,
    make: Callable[[Path, int, Any], T],
    key_of: Callable[[T], str],
) -> list[T]:
    """Every entry of every file in `folder`, made by `make`; a key is defined once."""
    made: list[T] = []
    seen: dict[str, Path] = {}
    for path in manifest_files(manifests_dir, folder):
        for index, entry in enumerate(_entries(path, folder)):
            one = make(path, index, entry)
            key = key_of(one)
            if key in seen:
                raise ManifestError(f"{path}: key {key!r} is already defined in {seen[key]}")
            seen[key] = path
            made.append(one)
    return made


def _agent(path: Path, index: int, entry: Any) -> StoredAgent:
    where = f"{path}" if index == 0 else f"{path}[{index}]"
    body = dict(entry) if isinstance(entry, dict) else entry
    explicit = None
    if isinstance(body, dict):
        explicit = body.pop("id", None)
        explicit = body.pop("_id", None) or explicit
    definition = parse_agent(body, where=where)
    modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    return StoredAgent(
        id=_agent_id(where, explicit, definition.key),
        definition=definition,
        created=modified,
        updated=modified,
        source="manifest",
    )


def _entries(path: Path, plural: str) -> list[Any]:
    try:
        document = load_yaml(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    if isinstance(document, dict) and plural in document and "key" not in document:
        document = document[plural]
    if isinstance(document, dict):
        return [document]
    if isinstance(document, list):
        return document
    raise ManifestError(f"{path}: expected a definition or a {plural!r} list")


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
    return _derived_id(f"manifest:{definition.key}")


def _agent_id(where: str, explicit: object, key: str) -> str:
    if explicit is not None:
        parsed = parse_agent_id(str(explicit))
        if parsed is None:
            raise ManifestError(f"{where}: id {explicit!r} is not an agent_<ULID> or a ULID")
        return parsed
    return _derived_id(f"manifest-agent:{key}")


def _derived_id(seed: str) -> str:
    # A zero timestamp keeps manifest entries after every API one in newest-first lists;
    # the rest of the id is derived from the key, so it is stable across restarts.
    digest = hashlib.sha256(seed.encode()).digest()
    return str(ULID.from_bytes(bytes(6) + digest[:10]))
