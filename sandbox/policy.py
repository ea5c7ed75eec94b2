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
import sys
import types
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from RestrictedPython.compile import compile_restricted_exec
from RestrictedPython.transformer import IOPERATOR_TO_STR, RestrictingNodeTransformer

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
    SPECIAL_METHODS,
    JsonValue,
    NotPlainJson,
    PolicyError,
    RunGuards,
    guarded_getattr,
    guarded_hasattr,
    is_private_name,
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
# The module name of tool code (its classes' `__module__`). Registered as an empty
# module, as any module defining classes is: dataclasses looks a class's module up to
# read string annotations (`from __future__ import annotations`).
TOOL_MODULE: Final = "sandbox.tool_code"
sys.modules.setdefault(TOOL_MODULE, types.ModuleType(TOOL_MODULE))
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
    """RestrictedPython's transformer, with what everyday code needs:

    - augmented assignment to attributes and items (`obj.n += 1`, `totals[k] += v`),
      which RestrictedPython refuses, rewritten to the guarded plain assignment with
      the target evaluated once;
    - annotated assignments: kept in class bodies (dataclasses read them), the
      annotation dropped elsewhere;
    - names and attributes with one leading underscore (`self._items`); the guards
      decide at run time whose attributes they are (`RunGuards.getattr`);
    - the special methods of `SPECIAL_METHODS` in class bodies.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._scopes: list[str] = []  # "class" or "function", innermost last
        self._instances: list[str | None] = []  # per scope: a method's `self`, else None
        self._made: set[int] = set()  # ids of the guard names this transformer wrote
        self._methods: set[int] = set()  # ids of special-method definitions allowed
        self._temporaries = 0

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

    def check_name(self, node: Any, name: str | None, allow_magic_methods: bool = False) -> None:
        if name is not None and (
            is_private_name(name)
            or id(node) in self._made
            or (id(node) in self._methods and name == getattr(node, "name", None))
        ):
            return
        super().check_name(node, name, allow_magic_methods)

    @contextmanager
    def _scope(self, kind: str, instance: str | None = None) -> Iterator[None]:
        """Inside a class body or a function (a method's `self` named by `instance`)."""
        self._scopes.append(kind)
        self._instances.append(instance)
        try:
            yield
        finally:
            self._scopes.pop()
            self._instances.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        with self._scope("class"):
            return super().visit_ClassDef(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        method = self._scopes[-1:] == ["class"]
        if method and node.name in SPECIAL_METHODS:
            self._methods.add(id(node))
        parameters = [*node.args.posonlyargs, *node.args.args]
        with self._scope("function", parameters[0].arg if method and parameters else None):
            return super().visit_FunctionDef(node)

    def visit_Lambda(self, node: ast.Lambda) -> Any:
        with self._scope("function"):
            return super().visit_Lambda(node)

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        if _is_super_call(node.value) and isinstance(node.ctx, ast.Load):
            return self._super_attribute(node)
        if not is_private_name(node.attr):
            return super().visit_Attribute(node)
        name = node.attr
        node.attr = "private"  # past the compile-time check; the guards decide at run time
        visited = super().visit_Attribute(node)
        if isinstance(visited, ast.Call):  # a read: _getattr_(value, "private")
            visited.args[1] = ast.copy_location(ast.Constant(name), visited.args[1])
        elif isinstance(visited, ast.Attribute):  # a write or delete: _write_(value).private
            visited.attr = name
        return visited

    def _super_attribute(self, node: ast.Attribute) -> Any:
        """`super().name` in a method as `_super_getattr_(__class__, self, "name")`: the
        guard builds the `super` (never handed to tool code) and allows the public
        names, the tool's own private ones and the special methods a tool may define."""
        instance = self._instances[-1] if self._instances else None
        if instance is None:
            self.error(node, "super() is only available as super().name in a method")
            return node
        if node.attr not in SPECIAL_METHODS:
            self.check_name(node, node.attr)
        guard, cell = ast.Name("_super_getattr_", ast.Load()), ast.Name("__class__", ast.Load())
        self._made.update((id(guard), id(cell)))
        arguments = [cell, ast.Name(instance, ast.Load()), ast.Constant(node.attr)]
        call = ast.Call(func=guard, args=arguments, keywords=[])
        return self.visit_Call(ast.fix_missing_locations(ast.copy_location(call, node)))

    def visit_AnnAssign(self, node: ast.AnnAssign) -> object:
        if self._scopes[-1:] == ["class"] and isinstance(node.target, ast.Name):
            return self.node_contents_visit(node)  # the class's annotations, for dataclasses
        if node.value is None:
            return ast.copy_location(ast.Pass(), node)
        assign = ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)
        return self.visit_Assign(assign)

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        """`a.b += c` as `t = a; t.b = _inplacevar_("+=", t.b, c)` (items alike), so
        the read, the write and the in-place operator all go through the guards."""
        target = node.target
        if not isinstance(target, ast.Attribute | ast.Subscript):
            return super().visit_AugAssign(node)
        statements: list[ast.stmt] = []
        holder = self._temporary(statements, target.value)

        def place(context: ast.expr_context) -> ast.expr:
            if isinstance(target, ast.Attribute):
                return ast.Attribute(value=_load(holder), attr=target.attr, ctx=context)
            return ast.Subscript(value=_load(holder), slice=key(), ctx=context)

        if isinstance(target, ast.Subscript):
            index = target.slice
            if isinstance(index, ast.Slice):
                bounds = [
                    None if part is None else self._temporary(statements, part)
                    for part in (index.lower, index.upper, index.step)
                ]

                def key() -> ast.expr:
                    lower, upper, step = (None if b is None else _load(b) for b in bounds)
                    return ast.Slice(lower=lower, upper=upper, step=step)

            else:
                name = self._temporary(statements, index)

                def key() -> ast.expr:
                    return _load(name)

        operator = ast.Name("_inplacevar_", ast.Load())
        self._made.add(id(operator))
        update = ast.Call(
            func=operator,
            args=[ast.Constant(IOPERATOR_TO_STR[type(node.op)]), place(ast.Load()), node.value],
            keywords=[],
        )
        statements.append(ast.Assign(targets=[place(ast.Store())], value=update))
        for statement in statements:
            ast.fix_missing_locations(ast.copy_location(statement, node))
        return [self.visit(statement) for statement in statements]

    def _temporary(self, statements: list[ast.stmt], value: ast.expr) -> str:
        """Evaluate `value` once into a name tool code cannot write (it is no identifier)."""
        self._temporaries += 1
        name = f"aug.{self._temporaries}"
        statements.append(ast.Assign(targets=[ast.Name(name, ast.Store())], value=value))
        return name


def _is_super_call(node: ast.expr) -> bool:
    """`super()` as written in a method (the zero-argument form only)."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "super"
        and not node.args
        and not node.keywords
    )


def _load(name: str) -> ast.Name:
    return ast.Name(name, ast.Load())


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
            # dont_inherit: tool code gets only the future features it asks for itself.
            compiled = compile_restricted_exec(
                source, filename=TOOL_FILENAME, dont_inherit=True, policy=_ToolTransformer
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
        __builtins__=_builtins(facades, guards),
        __name__=TOOL_MODULE,
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


def _builtins(facades: Mapping[str, Facade], guards: RunGuards) -> dict[str, object]:
    table = dict(_BASE_BUILTINS)
    table["__import__"] = make_importer(facades)
    table["getattr"] = guards.getattr
    table["hasattr"] = guards.hasattr
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
