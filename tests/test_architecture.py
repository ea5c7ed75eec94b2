"""The import rules of ARCHITECTURE.md, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sidecar", "tools", "sandbox")
DOORS = ("sidecar.api", "sidecar.app", "sidecar.cli", "sidecar.__main__", "sidecar.mcp")
COMPOSITION_ROOTS = ("sidecar.app", "sidecar.services", "sidecar.cli", "sidecar.__main__")
# The layers inside `sidecar/`, top down: a module may import its own layer and those
# below it, never one above. The doors sit above the registry, the registry above the
# pipeline modules (the architecture's vocabulary, at the top level of the package).
REGISTRY = ("sidecar.registry",)
LLM = ("sidecar.llm",)
# The stores' database package and the tracing package sit in the pipeline layer too.
PIPELINE = (
    *(
        f"sidecar.{path.stem}"
        for path in sorted((ROOT / "sidecar").glob("*.py"))
        if f"sidecar.{path.stem}" not in COMPOSITION_ROOTS and path.stem != "__init__"
    ),
    "sidecar.database",
    "sidecar.tracing",
)


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


def _sidecar_imports(module: str) -> set[str]:
    return {name for name in SOURCES[module] if _within(name, ("sidecar",))}


def test_the_pipeline_layer_is_the_list_the_architecture_names() -> None:
    expected = {
        "execution", "arguments", "deadlines", "variables", "templating", "redaction",
        "outbound", "mcp_pool", "code_runner", "settings", "errors", "logs", "metrics",
        "ids", "strict_yaml", "database", "mcp_lean_call", "lean_http", "shutdown",
        "limits", "tracing",
    }  # fmt: skip
    assert {module.removeprefix("sidecar.") for module in PIPELINE} == expected


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if _within(m, PIPELINE)))
def test_pipeline_modules_import_only_pipeline_modules(module: str) -> None:
    above = {name for name in _sidecar_imports(module) if not _within(name, PIPELINE)}
    assert not above, f"{module} reaches up to {above}"


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if _within(m, REGISTRY)))
def test_the_registry_imports_only_itself_and_the_pipeline(module: str) -> None:
    above = {name for name in _sidecar_imports(module) if not _within(name, REGISTRY + PIPELINE)}
    assert not above, f"{module} reaches up to {above}"


def test_settings_is_a_leaf() -> None:
    assert not _sidecar_imports("sidecar.settings")


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if _within(m, LLM)))
def test_the_model_core_takes_only_the_tool_contract_from_tools(module: str) -> None:
    tool_modules = {name for name in SOURCES[module] if _within(name, ("tools",))}
    assert tool_modules <= {"tools.base"}
    assert not {name for name in _sidecar_imports(module) if _within(name, DOORS)}


def test_provider_adapters_know_neither_the_loop_nor_the_registry_nor_execution() -> None:
    forbidden = ("sidecar.llm.loop", "sidecar.registry", "sidecar.execution")
    for module in (m for m in SOURCES if _within(m, ("sidecar.llm.providers",))):
        assert not {name for name in _sidecar_imports(module) if _within(name, forbidden)}


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if _within(m, PACKAGES)))
def test_only_the_mcp_pool_and_the_outbound_guard_use_httpx2(module: str) -> None:
    if module in ("sidecar.mcp_pool", "sidecar.outbound"):
        return
    assert not {name for name in SOURCES[module] if _within(name, ("httpx2", "httpcore2"))}


def test_the_cli_does_not_reach_into_http_handlers() -> None:
    handlers = ("sidecar.api.calls", "sidecar.api.registry_routes", "sidecar.api.health")
    assert not {name for name in SOURCES["sidecar.cli"] if _within(name, handlers)}


def test_the_http_and_mcp_doors_do_not_import_each_other() -> None:
    for module in (m for m in SOURCES if _within(m, ("sidecar.api",))):
        assert not {name for name in SOURCES[module] if _within(name, ("sidecar.mcp",))}
    for module in (m for m in SOURCES if _within(m, ("sidecar.mcp",))):
        assert not {name for name in SOURCES[module] if _within(name, ("sidecar.api",))}
