"""The RestrictedPython policy for Python code tools: compile, run, validate the result.

Pure and in-process: the sandbox child calls it, and the process around it supplies
the limits a policy cannot (time, memory, files, network). What tool code may touch:
`POLICY` (the builtins and importable module facades), the guards in `sandbox.guards`
and the facades in `sandbox.facades`.

    PolicyError(kind)    compile_error | runtime_error | output_limit | invalid_result
"""

from __future__ import annotations

import ast
import builtins
import json
import re
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from RestrictedPython.compile import compile_restricted_exec
from RestrictedPython.transformer import RestrictingNodeTransformer

from sandbox.facades import (
    ALLOWED_MODULES,
    Facade,
    HttpCall,
    HttpError,
    HttpHelper,
    build_facades,
    make_importer,
)
from sandbox.guards import (
    JsonValue,
    NotPlainJson,
    PolicyError,
    RunGuards,
    guarded_getattr,
    guarded_hasattr,
    plain_json,
)

__all__ = [
    "ALLOWED_MODULES",
    "DEFAULT_LIMITS",
    "MAX_SOURCE_BYTES",
    "POLICY",
    "TOOL_FILENAME",
    "HttpCall",
    "HttpError",
    "JsonValue",
    "PolicyDescription",
    "PolicyError",
    "PolicyLimits",
    "compile_tool",
    "run_tool",
]

TOOL_FILENAME: Final = "<tool>"
MAX_SOURCE_BYTES: Final = 262_144
# Compile errors quote only the source, which never holds a call's variables, so
# they are cut here. Messages of a run quote its values (secrets among them): they
# leave whole, and the service redacts them before it cuts them.
_MAX_COMPILE_MESSAGE_CHARS = 1_000


@dataclass(frozen=True)
class PolicyLimits:
    """Limits the policy itself enforces (the process layer adds time and memory)."""

    max_output_chars: int = 65_536
    max_result_bytes: int = 1_048_576
    max_result_depth: int = 64


DEFAULT_LIMITS: Final = PolicyLimits()

# Left out on purpose: type, object, super, id, vars, dir, globals, locals, setattr,
# delattr, open, eval, exec, compile, input, breakpoint, help, memoryview, exit, quit.
# `getattr`/`hasattr` are the guarded versions; `__import__` hands out facades only.
_PLAIN_BUILTINS = (
    *("None", "False", "True", "Ellipsis", "abs", "all", "any", "ascii", "bin", "bool"),
    *("bytearray", "bytes", "callable", "chr", "classmethod", "complex", "dict", "divmod"),
    *("enumerate", "filter", "float", "format", "frozenset", "hash", "hex", "int"),
    *("isinstance", "issubclass", "iter", "len", "list", "map", "max", "min", "next", "oct"),
    *("ord", "pow", "property", "range", "repr", "reversed", "round", "set", "slice"),
    *("sorted", "staticmethod", "str", "sum", "tuple", "zip"),
)
_EXCEPTIONS = (
    *("ArithmeticError", "AssertionError", "AttributeError", "BaseException", "BufferError"),
    *("ConnectionError", "EOFError", "Exception", "FloatingPointError", "GeneratorExit"),
    *("ImportError", "IndexError", "KeyError", "KeyboardInterrupt", "LookupError"),
    *("MemoryError", "NameError", "NotImplementedError", "OSError", "OverflowError"),
    *("RecursionError", "ReferenceError", "RuntimeError", "StopIteration", "SyntaxError"),
    *("SystemError", "SystemExit", "TimeoutError", "TypeError", "UnboundLocalError"),
    *("UnicodeDecodeError", "UnicodeEncodeError", "UnicodeError", "ValueError"),
    *("Warning", "ZeroDivisionError"),
)
_BASE_BUILTINS: Final[Mapping[str, object]] = types.MappingProxyType(
    {
        **{name: getattr(builtins, name) for name in (*_PLAIN_BUILTINS, *_EXCEPTIONS)},
        "__build_class__": builtins.__build_class__,
        "getattr": guarded_getattr,
        "hasattr": guarded_hasattr,
        "HttpError": HttpError,
    }
)


@dataclass(frozen=True)
class PolicyDescription:
    """What tool code is given: builtin names and importable modules."""

    builtins: tuple[str, ...]
    modules: tuple[str, ...]


POLICY: Final = PolicyDescription(
    builtins=tuple(sorted(name for name in _BASE_BUILTINS if not name.startswith("_"))),
    modules=ALLOWED_MODULES,
)


class _ToolTransformer(RestrictingNodeTransformer):
    """RestrictedPython's transformer, plus annotated assignments (annotation dropped)."""

    def visit(self, node: ast.AST) -> Any:
        """`NodeVisitor.visit`, with the method for each node type looked up once.

        The stock one builds the method's name anew for every node, and the
        interpreter's attribute cache cannot keep a name it has never seen.
        """
        kind = type(node)
        method = _VISITORS.get(kind)
        if method is None:
            generic = _ToolTransformer.generic_visit
            method = _VISITORS[kind] = getattr(_ToolTransformer, f"visit_{kind.__name__}", generic)
        return method(self, node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> object:
        if node.value is None:
            return ast.copy_location(ast.Pass(), node)
        assign = ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)
        return self.visit_Assign(assign)


_SIZER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # made once, not per call
_VISITORS: dict[type[ast.AST], Callable[[_ToolTransformer, ast.AST], Any]] = {}
_ERROR_LINE = re.compile(r"Line (\d+|None): (.*)", re.DOTALL)


def compile_tool(source: str) -> types.CodeType:
    """Compile tool source under the policy, or raise `PolicyError("compile_error")`."""
    if not isinstance(source, str):
        raise PolicyError("compile_error", "source must be text")
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        raise PolicyError(
            "compile_error", f"source is {size} bytes; the limit is {MAX_SOURCE_BYTES} bytes"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compiled = compile_restricted_exec(
                source, filename=TOOL_FILENAME, policy=_ToolTransformer
            )
    except SyntaxError as exc:
        message = f"line {exc.lineno}: {type(exc).__name__}: {exc.msg}"
        raise PolicyError("compile_error", message, exc.lineno) from None
    except (RecursionError, MemoryError, OverflowError):
        raise PolicyError(
            "compile_error", "source is nested too deeply or is too complex to compile"
        ) from None
    except ValueError as exc:
        raise PolicyError("compile_error", _clip(str(exc))) from None
    if compiled.errors or compiled.code is None:
        raise _compile_error(compiled.errors)
    assert isinstance(compiled.code, types.CodeType)
    return compiled.code


def _compile_error(errors: Sequence[str]) -> PolicyError:
    first: int | None = None
    parts: list[str] = []
    for error in errors[:5]:
        match = _ERROR_LINE.fullmatch(error)
        if match is None:
            parts.append(_clip(error, 200))
            continue
        number = None if match[1] == "None" else int(match[1])
        first = first if first is not None else number
        where = f"line {number}: " if number is not None else ""
        parts.append(where + _clip(match[2], 200))
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more")
    return PolicyError("compile_error", "; ".join(parts) or "source did not compile", first)


def run_tool(
    code: types.CodeType,
    names: dict[str, JsonValue],
    *,
    http: HttpCall | None,
    limits: PolicyLimits = DEFAULT_LIMITS,
) -> tuple[JsonValue, str]:
    """Run compiled tool code; return (`result` as plain JSON, printed output).

    Each entry of `names` becomes a top-level variable (names starting with `_` are
    skipped: tool code could not read them, and they would shadow the guards). The
    `http` helper wins over a name `http`.
    """
    guards = RunGuards(limits.max_output_chars)
    facades = build_facades()
    scope: dict[str, object] = {
        name: value for name, value in names.items() if not name.startswith("_")
    }
    scope.update(guards.names())
    scope.update(
        __builtins__=_builtins(facades),
        __name__="tool",
        http=HttpHelper(http),
    )
    failure: PolicyError | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(code, scope)  # noqa: S102 - the point of the module: restricted code, guarded scope
    except PolicyError as exc:
        failure = exc
    except BaseException as exc:  # noqa: BLE001 - any exception of tool code is its failure
        failure = _runtime_error(exc)
    if guards.output.exceeded:
        raise PolicyError(
            "output_limit", f"printed output exceeds {limits.max_output_chars} characters"
        )
    if failure is not None:
        raise failure from None
    return _result(scope.get("result"), limits), guards.output.text()


def _builtins(facades: Mapping[str, Facade]) -> dict[str, object]:
    table = dict(_BASE_BUILTINS)
    table["__import__"] = make_importer(facades)
    return table


def _runtime_error(exc: BaseException) -> PolicyError:
    line: int | None = None
    trace = exc.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == TOOL_FILENAME:
            line = trace.tb_lineno
        trace = trace.tb_next
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a message that cannot be printed is still an error
        text = "<unprintable message>"
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if line is not None:
        message += f" (line {line})"
    return PolicyError("runtime_error", message, line)


def _result(value: object, limits: PolicyLimits) -> JsonValue:
    too_big = PolicyError("output_limit", f"result is larger than {limits.max_result_bytes} bytes")
    try:
        plain = plain_json(
            value,
            root="result",
            max_depth=limits.max_result_depth,
            max_chars=limits.max_result_bytes,
        )
        size = len(_SIZER.encode(plain).encode())
    except NotPlainJson as exc:
        raise PolicyError("invalid_result", f"result must be plain JSON: {exc}") from None
    except OverflowError:
        raise too_big from None
    except ValueError as exc:  # an int too long to print, a lone surrogate
        raise PolicyError("invalid_result", f"result must be plain JSON: {exc}") from None
    if size > limits.max_result_bytes:
        raise too_big
    return plain


def _clip(text: str, limit: int = _MAX_COMPILE_MESSAGE_CHARS) -> str:
    """A compile error cut to `limit` (only for text made of the source)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
