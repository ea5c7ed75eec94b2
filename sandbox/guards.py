"""The guard functions RestrictedPython's rewritten code calls, and the policy's errors.

RestrictedPython turns `a.b` into `_getattr_(a, "b")`, `a[b]` into `_getitem_(a, b)`,
`a.b = c` / `a[b] = c` into `_write_(a).b = c`, `print` into a collector and so on.
What those functions allow IS the policy; this module supplies them.

    PolicyError          a tool run that must end with a typed failure
    NotPlainJson         a value that is not plain JSON (result, http json=)
"""

from __future__ import annotations

import importlib
import math
import operator
import string
import types
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, TypeAlias, cast

from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence
from RestrictedPython.PrintCollector import PrintCollector
from RestrictedPython.transformer import INSPECT_ATTRIBUTES

__all__ = [
    "FORBIDDEN_TYPES",
    "FORBIDDEN_VALUE_TYPES",
    "SPECIAL_METHODS",
    "JsonValue",
    "NotPlainJson",
    "OutputBuffer",
    "PolicyError",
    "PolicyErrorKind",
    "RunGuards",
    "guarded_getattr",
    "guarded_getitem",
    "is_private_name",
    "plain_json",
]

JsonValue: TypeAlias = dict[str, "JsonValue"] | list["JsonValue"] | str | int | float | bool | None
PolicyErrorKind: TypeAlias = Literal[
    "compile_error", "runtime_error", "output_limit", "invalid_result"
]


class PolicyError(Exception):
    """A tool run that ends with a typed failure (`kind`), a message for the model and a line."""

    def __init__(self, kind: PolicyErrorKind, message: str, line: int | None = None) -> None:
        super().__init__(kind, message, line)
        self.kind: PolicyErrorKind = kind
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


# Objects that lead from tool code to interpreter internals: never an attribute target,
# never an attribute or item value handed to tool code. Generators are the exception to
# the second rule: tool code makes them itself and keeps them in lists and attributes,
# and refusing every attribute OF a generator already closes gi_frame/gi_code.
FORBIDDEN_TYPES: tuple[type, ...] = (
    types.ModuleType,
    types.FrameType,
    types.CodeType,
    types.TracebackType,
    types.GeneratorType,
    types.CoroutineType,
    types.AsyncGeneratorType,
    types.CellType,
)
FORBIDDEN_VALUE_TYPES: tuple[type, ...] = tuple(
    kind for kind in FORBIDDEN_TYPES if kind is not types.GeneratorType
)
_FORBIDDEN_VALUES: tuple[object, ...] = (type, object, super)
# `mro` is the one non-underscore walk up a class hierarchy (to `object`).
_FORBIDDEN_NAMES = INSPECT_ATTRIBUTES | {"mro"}
_FORMAT_METHODS = frozenset({"format", "format_map"})
# Special methods a tool's own classes may define and reach through `super()`: `__init__`
# and the comparisons (RestrictedPython's own list), the value, number and container
# protocols and `__post_init__`. Not the attribute hooks (`__getattr__`, `__setattr__`...),
# descriptors, `__new__`, `__del__`, pickling or class-creation hooks.
SPECIAL_METHODS: frozenset[str] = frozenset(
    {
        *("__init__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"),
        *("__repr__", "__str__", "__format__", "__hash__", "__bool__", "__len__"),
        *("__iter__", "__next__", "__reversed__", "__contains__", "__missing__"),
        *("__getitem__", "__setitem__", "__delitem__", "__call__", "__enter__", "__exit__"),
        *("__neg__", "__pos__", "__abs__", "__invert__", "__round__", "__int__", "__float__"),
        *("__index__", "__post_init__"),
        *(
            f"__{prefix}{name}__"
            for name in (
                *("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul"),
                *("and", "or", "xor", "lshift", "rshift"),
            )
            for prefix in ("", "r", "i")
        ),
    }
)
_MISSING = object()


def _describe(obj: object) -> str:
    if isinstance(obj, types.ModuleType):
        return "a module"
    if isinstance(obj, type):
        return f"the type {obj.__name__!r}"
    return f"a {type(obj).__name__!r} object"


def _check_value(value: object, what: str, error: type[Exception] = AttributeError) -> object:
    if isinstance(value, FORBIDDEN_VALUE_TYPES) or any(value is v for v in _FORBIDDEN_VALUES):
        raise error(f"{what} would give {_describe(value)}, which tools may not use")
    return value


def guarded_getattr(obj: object, name: object, default: object = _MISSING) -> object:
    """`obj.name` for tool code: no private names, no interpreter internals, safe `str.format`."""
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    if name.startswith("_"):
        raise AttributeError(
            f"attribute {name!r} is not allowed: names starting with '_' are private"
        )
    if name in _FORBIDDEN_NAMES:
        raise AttributeError(f"attribute {name!r} is not allowed in tools")
    if isinstance(obj, FORBIDDEN_TYPES):
        # AttributeError, not TypeError: hasattr() treats a refused attribute as absent
        raise AttributeError(f"attribute {name!r} of {_describe(obj)} is not allowed in tools")  # noqa: TRY004
    if name in _FORMAT_METHODS:
        if isinstance(obj, str):
            return _bound_format(obj, name)
        if isinstance(obj, type) and issubclass(obj, str):
            raise AttributeError(
                f"str.{name} is only available on a string: use 'text'.{name}(...)"
            )
    value = getattr(obj, name) if default is _MISSING else getattr(obj, name, default)
    return _check_value(value, f"attribute {name!r}")


def guarded_hasattr(obj: object, name: object) -> bool:
    """`hasattr` through the attribute guard (a refused attribute does not exist)."""
    try:
        guarded_getattr(obj, name)
    except AttributeError:
        return False
    return True


def guarded_getitem(obj: object, key: object) -> object:
    """`obj[key]` for tool code; refuses internals as container or item."""
    if isinstance(obj, FORBIDDEN_TYPES):
        raise TypeError(f"indexing {_describe(obj)} is not allowed in tools")
    value = cast(Any, obj)[key]
    return _check_value(value, "item", TypeError)


# str.format walks attributes and items named in the template ("{0.__class__}"):
# the walk goes through the same guards as tool code.
_field_name_split = cast(
    Callable[[str], tuple[object, Iterator[tuple[bool, object]]]],
    importlib.import_module("_string").formatter_field_name_split,
)


class _GuardedFormatter(string.Formatter):
    def get_field(self, field_name: str, args: object, kwargs: object) -> tuple[object, object]:
        first, rest = _field_name_split(field_name)
        if first == "":
            # string.Formatter cannot number "{.attr}" / "{[key]}" automatically.
            raise ValueError("a format field with an attribute or index needs a name or number")
        obj = self.get_value(first, args, kwargs)  # type: ignore[arg-type]
        for is_attr, key in rest:
            obj = guarded_getattr(obj, key) if is_attr else guarded_getitem(obj, key)
        return obj, first


_FORMATTER = _GuardedFormatter()


def _bound_format(template: str, name: str) -> Callable[..., str]:
    if name == "format":

        def format(*args: object, **kwargs: object) -> str:
            return _FORMATTER.vformat(template, args, kwargs)

        return format

    def format_map(mapping: Mapping[str, object]) -> str:
        return _FORMATTER.vformat(template, (), mapping)

    return format_map


_INPLACE: dict[str, Callable[[object, object], object]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
    "@=": operator.imatmul,
}

# Containers tool code creates for itself; shared objects (facades, functions, types,
# stdlib instances) are never writable, so one call cannot change what another sees.
_WRITABLE_TYPES = frozenset({dict, list, set, bytearray, Counter, OrderedDict, defaultdict, deque})


class OutputBuffer:
    """Everything a run prints, capped; once over the cap the run ends as `output_limit`."""

    def __init__(self, limit: int) -> None:
        self._parts: list[str] = []
        self._size = 0
        self._limit = limit
        self.exceeded = False

    def write(self, text: str) -> None:
        if self.exceeded or self._size + len(text) > self._limit:
            self._parts.append(text[: max(0, self._limit - self._size)])
            self._size = self._limit
            self.exceeded = True
            raise PolicyError("output_limit", f"printed output exceeds {self._limit} characters")
        self._parts.append(text)
        self._size += len(text)

    def text(self) -> str:
        return "".join(self._parts)


class _Collector(PrintCollector):
    """RestrictedPython's print target, writing into the run's one capped buffer."""

    def __init__(self, buffer: OutputBuffer) -> None:
        self._buffer = buffer

    def write(self, text: str) -> None:
        self._buffer.write(str(text))

    def flush(self) -> None:
        pass

    def __call__(self) -> str:
        return self._buffer.text()

    def _call_print(self, *objects: object, **kwargs: object) -> None:
        if kwargs.get("file") is not None:
            raise TypeError("print(file=...) is not available in tools")
        kwargs["file"] = self
        print(*objects, **kwargs)  # type: ignore[call-overload]


class RunGuards:
    """The guard names for one run; `owned` holds the classes the tool itself defined."""

    def __init__(self, max_output_chars: int) -> None:
        self.owned: set[type] = set()
        self.output = OutputBuffer(max_output_chars)

    def names(self) -> dict[str, object]:
        """The `_..._` globals RestrictedPython's rewritten code expects."""
        return {
            "_getattr_": self.getattr,
            "_getitem_": guarded_getitem,
            "_getiter_": iter,
            "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
            "_unpack_sequence_": guarded_unpack_sequence,
            "_write_": self.write,
            "_inplacevar_": _inplacevar,
            "_super_getattr_": self.super_getattr,
            "_apply_": _apply,
            "_print_": self.printer,
            "__metaclass__": self.define_class,
        }

    def getattr(self, obj: object, name: object, default: object = _MISSING) -> object:
        """`guarded_getattr`, plus the tool's own private attributes (`self._items`).

        A name with one leading underscore is read only where the tool put it: in the
        instance's own `__dict__` or in the body of a class the tool defined; a
        library class's private members stay refused, and a missing one is absent."""
        if type(name) is str and is_private_name(name) and self._is_owned(obj):
            if self._defines(obj, name):
                return _check_value(getattr(obj, name), f"attribute {name!r}")
            if default is not _MISSING:
                return default
            raise AttributeError(f"{_describe(obj)} has no attribute {name!r}")
        return guarded_getattr(obj, name, default)

    def super_getattr(self, cls: type, instance: object, name: str) -> object:
        """`super().name` in a method of the tool's own class `cls`: public names as
        `getattr` allows them, the tool's own private ones, and the special methods a
        tool may define (`super().__init__(...)`)."""
        if cls not in self.owned:
            raise TypeError("super() is only available in the tool's own classes")
        if name.startswith("__") and name not in SPECIAL_METHODS:
            raise AttributeError(f"super().{name} is not allowed in tools")
        if is_private_name(name) and not self._defines(instance, name):
            raise AttributeError(f"super() has no attribute {name!r} of the tool's own")
        proxy = super(cls, cast(Any, instance))
        value = guarded_getattr(proxy, name) if name[0].isalpha() else getattr(proxy, name)
        return _check_value(value, f"attribute {name!r}")

    def hasattr(self, obj: object, name: object) -> bool:
        """`hasattr` through `getattr` (a refused attribute does not exist)."""
        try:
            self.getattr(obj, name)
        except AttributeError:
            return False
        return True

    def _is_owned(self, obj: object) -> bool:
        return type(obj) in self.owned or (isinstance(obj, type) and obj in self.owned)

    def _defines(self, obj: object, name: str) -> bool:
        cls = obj if isinstance(obj, type) else type(obj)
        if not isinstance(obj, type):
            own = getattr(obj, "__dict__", None)
            if isinstance(own, dict) and name in own:
                return True
        return any(name in vars(klass) for klass in cls.__mro__ if klass in self.owned)

    def write(self, obj: object) -> object:
        kind = type(obj)
        if kind in _WRITABLE_TYPES or kind in self.owned:
            return obj
        if isinstance(obj, type) and obj in self.owned:
            return obj
        raise TypeError(
            f"cannot change {_describe(obj)}: tools may only change dicts, lists, sets "
            "and objects of classes they define"
        )

    def printer(self, _getattr: object = None) -> _Collector:
        return _Collector(self.output)

    def define_class(
        self, name: str, bases: tuple[type, ...], namespace: dict[str, object], **kwargs: object
    ) -> type:
        if kwargs:
            raise TypeError("class keyword arguments are not supported in tools")
        cls = type(name, bases, namespace)
        self.owned.add(cls)
        return cls


def is_private_name(name: str) -> bool:
    """A name with one leading underscore (`_cache`, `_helper`), as people write them.

    Not a dunder or a mangled `__x`, and not the names RestrictedPython's rewritten code
    relies on: its guards all end with `_` (`_getattr_`, `_write_`...), its print
    collector is `_print`."""
    return (
        name.startswith("_")
        and not name.startswith("__")
        and not name.endswith("_")
        and name != "_print"
    )


def _inplacevar(op: str, target: object, value: object) -> object:
    return _INPLACE[op](target, value)


def _apply(function: Callable[..., object], *args: object, **kwargs: object) -> object:
    return function(*args, **kwargs)


class NotPlainJson(ValueError):
    """A value that is not plain JSON; the message names the path."""


_DICT_TYPES = frozenset({dict, Counter, OrderedDict, defaultdict})


def plain_json(
    value: object, *, root: str, max_depth: int, max_chars: int | None = None
) -> JsonValue:
    """A fresh plain-JSON copy of `value` (tuples become lists) or `NotPlainJson`.

    `max_chars` bounds the characters of strings met on the way (a cheap early size cap);
    exceeding it raises `OverflowError`.
    """
    budget = [max_chars if max_chars is not None else -1]
    path: list[str] = []

    def fail(reason: str) -> NotPlainJson:
        return NotPlainJson(f"{reason} at {root}{''.join(path)}")

    def walk(item: object, depth: int) -> JsonValue:
        kind = type(item)
        if item is None or kind is bool or kind is int:
            return cast(JsonValue, item)
        if kind is str:
            if budget[0] >= 0:
                budget[0] -= len(cast(str, item))
                if budget[0] < 0:
                    raise OverflowError
            return cast(str, item)
        if kind is float:
            if not math.isfinite(cast(float, item)):
                raise fail(f"{item!r} is not a JSON number")
            return cast(float, item)
        if depth >= max_depth:
            raise fail(f"nesting deeper than {max_depth} levels")
        if kind in _DICT_TYPES:
            out: dict[str, JsonValue] = {}
            for key, child in dict.items(cast(dict[object, object], item)):
                if type(key) is not str:
                    raise fail(f"dict key {key!r} is not a string")
                path.append(f".{key}" if key.isidentifier() else f"[{key!r}]")
                out[key] = walk(child, depth + 1)
                path.pop()
            return out
        if kind is list or kind is tuple:
            items: list[JsonValue] = []
            for index, child in enumerate(cast(list[object], item)):
                path.append(f"[{index}]")
                items.append(walk(child, depth + 1))
                path.pop()
            return items
        raise fail(f"a {kind.__name__!r} is not plain JSON")

    return walk(value, 0)
