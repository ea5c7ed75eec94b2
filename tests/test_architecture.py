"""The import rules of ARCHITECTURE.md, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sidecar", "tools", "sandbox")
DOORS = ("sidecar.api", "sidecar.app", "sidecar.cli", "sidecar.__main__", "sidecar.mcp.server")
COMPOSITION_ROOTS = ("sidecar.app", "sidecar.services", "sidecar.cli")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _sources() -> dict[str, set[str]]:
    return {
        _module_name(path): _imports(path)
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


SOURCES = _sources()


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if _within(m, ("tools",))))
def test_tools_know_only_the_tool_contract(module: str) -> None:
    assert not {name for name in SOURCES[module] if _within(name, ("sidecar", "sandbox"))}


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if _within(m, ("sandbox",))))
def test_sandbox_stands_alone(module: str) -> None:
    assert not {name for name in SOURCES[module] if _within(name, ("sidecar", "tools"))}


@pytest.mark.parametrize(
    "module",
    sorted(
        m for m in SOURCES if _within(m, ("sidecar",)) and not _within(m, DOORS + COMPOSITION_ROOTS)
    ),
)
def test_nothing_below_the_doors_imports_a_door(module: str) -> None:
    assert not {name for name in SOURCES[module] if _within(name, DOORS)}


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if _within(m, DOORS)))
def test_doors_run_tools_only_through_the_executor(module: str) -> None:
    tool_modules = {name for name in SOURCES[module] if _within(name, ("tools",))}
    assert tool_modules <= {"tools.base"}, "a door must not call a tool module directly"


def test_only_the_composition_root_imports_tool_kinds() -> None:
    importers = {
        module
        for module, names in SOURCES.items()
        if _within(module, ("sidecar",))
        and any(_within(name, ("tools",)) and name != "tools.base" for name in names)
    }
    allowed = {"sidecar.services", "sidecar.registry.factory", "sidecar.registry.definitions"}
    assert importers <= allowed, f"tool kinds imported outside the wiring: {importers - allowed}"
