"""Hostile tool code against the policy layer (SECURITY.md §1).

Each case states how it must end: refused when compiled, refused at run time with a
message naming what is not allowed, or a named limit. After every case a normal tool
must still run unchanged (the autouse fixture). Attacks on time, memory and long C
calls belong to the process layer and are not run here.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import textwrap
import types
from collections.abc import AsyncIterator, Iterator

import pytest

from sandbox.facades import Facade, HttpHelper, build_facades
from sandbox.guards import FORBIDDEN_TYPES, guarded_getattr, guarded_getitem
from sandbox.policy import POLICY, JsonValue, PolicyError, compile_tool, run_tool

CONTROL = """
import json, random
class Box:
    def __init__(self, v):
        self.v = v
print("control", len("abc"))
result = {
    "json": json.dumps({"a": 1}),
    "box": Box(2).v,
    "draw": random.random(),
    "fmt": "{0}-{1}".format(1, "x"),
    "len": len([1, 2]),
}
"""


def run(source: str, names: dict[str, JsonValue] | None = None) -> tuple[JsonValue, str]:
    return run_tool(compile_tool(textwrap.dedent(source)), names or {}, http=None)


def refused(source: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        run(source)
    error = caught.value
    assert "sandbox" not in error.message
    assert "Traceback" not in error.message
    return error


@pytest.fixture(autouse=True)
def a_normal_run_follows() -> Iterator[None]:
    yield
    result, stdout = run(CONTROL)
    assert stdout == "control 3\n"
    assert isinstance(result, dict)
    draw = result.pop("draw")
    assert result == {"json": '{"a": 1}', "box": 2, "fmt": "1-x", "len": 2}
    assert draw != random.Random(1).random()


COMPILE_REFUSED = {
    # frame, generator and coroutine walks
    "gi_frame": ("g = (x for x in [])\nf = g.gi_frame", '"gi_frame" is a restricted name'),
    "gi_code": ("g = (x for x in [])\nc = g.gi_code", '"gi_code" is a restricted name'),
    "f_back": ("f = None\nf.f_back", '"f_back" is a restricted name'),
    "f_globals": ("f = None\nf.f_globals", '"f_globals" is a restricted name'),
    "tb_frame": (
        "try:\n    1/0\nexcept Exception as e:\n    t = e.__traceback__.tb_frame",
        '"__traceback__" is an invalid attribute name',
    ),
    "async_def": ("async def f():\n    pass", "AsyncFunctionDef statements are not allowed"),
    "cr_frame": ("c = None\nc.cr_frame", '"cr_frame" is a restricted name'),
    "ag_frame": ("a = None\na.ag_frame", '"ag_frame" is a restricted name'),
    "fstring_walk": ("g = (x for x in [])\ns = f'{g.gi_frame}'", '"gi_frame" is a restricted'),
    # module graph through facades
    "hashlib_builtins": ("import hashlib\nhashlib.__builtins__", '"__builtins__" is an invalid'),
    "math_loader": ("import math\nmath.__loader__", '"__loader__" is an invalid'),
    "func_globals": ("import json\njson.dumps.__globals__", '"__globals__" is an invalid'),
    "bound_self": ("import random\nrandom.random.__self__", '"__self__" is an invalid'),
    "star_import": ("from json import *", '"*" imports are not allowed'),
    # guard-name shadowing
    "assign_guard": ("_getattr_ = lambda o, n: 1", '"_getattr_" is an invalid variable name'),
    "def_guard": ("def _print_(g):\n    pass", '"_print_" is an invalid variable name'),
    "param_guard": ("def f(_getattr_):\n    pass", '"_getattr_" is an invalid'),
    "posonly_guard": ("def f(_getattr_, /):\n    pass", '"_getattr_" is an invalid'),
    "kwonly_guard": ("def f(*, _write_=None):\n    pass", '"_write_" is an invalid'),
    "vararg_guard": ("def f(*_getiter_):\n    pass", '"_getiter_" is an invalid'),
    "kwarg_guard": ("def f(**_apply_):\n    pass", '"_apply_" is an invalid'),
    "lambda_guard": ("f = lambda _getattr_: 0", '"_getattr_" is an invalid'),
    "for_guard": ("for _getitem_ in []:\n    pass", '"_getitem_" is an invalid'),
    "with_guard": ("with x as _write_:\n    pass", '"_write_" is an invalid'),
    "except_guard": (
        "try:\n    pass\nexcept Exception as _getattr_:\n    pass",
        '"_getattr_" is an invalid',
    ),
    "import_as_guard": ("import json as _getattr_", '"_getattr_" is an invalid'),
    "from_as_guard": ("from json import dumps as _print_", '"_print_" is an invalid'),
    "class_guard": ("class _getattr_:\n    pass", '"_getattr_" is an invalid'),
    "walrus_guard": ("(_getattr_ := 1)", '"_getattr_" is an invalid'),
    "del_guard": ("del _getattr_", '"_getattr_" is an invalid'),
    "global_guard": ("global _write_\n_write_ = 1", '"_write_" is an invalid'),
    "metaclass_name": ("__metaclass__ = None", '"__metaclass__" is an invalid'),
    "aug_generator_walk": ("g = (x for x in [1])\na = [g]\na[0].gi_frame += 1", '"gi_frame" is a'),
    "print_collector": ("_print = None", '"_print" is an invalid variable name'),
    "aug_guard_attribute": ("x = []\nx._getattr_ += 1", '"_getattr_" is an invalid attribute'),
    "aug_dunder_attribute": ("x = []\nx.__class__ += 1", '"__class__" is an invalid attribute'),
    "mangled_attribute": ("class A:\n    def f(self):\n        return self.__x", '"__x"'),
    "attribute_hook": (
        "class A:\n    def __getattribute__(self, name):\n        return 1",
        '"__getattribute__" is an invalid variable name',
    ),
    "setattr_hook": (
        "class A:\n    def __setattr__(self, name, value):\n        pass",
        '"__setattr__" is an invalid variable name',
    ),
    "new_hook": ("class A:\n    def __new__(cls):\n        pass", '"__new__" is an invalid'),
    "del_hook": ("class A:\n    def __del__(self):\n        pass", '"__del__" is an invalid'),
    "special_outside_a_class": ("def __add__(a, b):\n    pass", '"__add__" is an invalid'),
    "special_method_guard_param": (
        "class A:\n    def __add__(self, _getattr_):\n        pass",
        '"_getattr_" is an invalid',
    ),
    "metaclass_kw": ("class A(metaclass=len):\n    pass", '"metaclass" is not allowed'),
    # builtins tampering
    "builtins_item": ("__builtins__['len'] = None", '"__builtins__" is an invalid'),
    "rebind_print": ("print = None", '"print" is a reserved name'),
    "def_print": ("def print():\n    pass", '"print" is a reserved name'),
    "breakpoint": ("breakpoint()", '"breakpoint" is a reserved name'),
    "import_builtins": ("import builtins", '"builtins" is a reserved name'),
    # classic escapes
    "subclasses": ("object.__subclasses__()", '"__subclasses__" is an invalid'),
    "class_bases": ("().__class__.__bases__[0].__subclasses__()", '"__class__" is an invalid'),
    "dunder_import": ("__import__('os')", '"__import__" is an invalid'),
    "eval": ("eval('1')", "Eval calls are not allowed"),
    "exec": ("exec('x = 1')", "Exec calls are not allowed"),
    "try_star": ("try:\n    pass\nexcept* Exception:\n    pass", "TryStar statements"),
    "lambda_default": ("f = lambda x=__builtins__: x", '"__builtins__" is an invalid'),
    "lambda_code": ("(lambda: 0).__code__", '"__code__" is an invalid'),
    "nonlocal": ("def f():\n    x = 1\n    def g():\n        nonlocal x", "Nonlocal"),
    "super_outside_a_method": ("super().x", "super() is only available as super().name"),
    "super_in_a_plain_function": ("def f(a):\n    return super().x", "super() is only available"),
    "super_hook": (
        "class A:\n    def f(self):\n        return super().__getattribute__('x')",
        '"__getattribute__" is an invalid',
    ),
    "super_subclass_hook": (
        "class A:\n    def f(self):\n        return super().__init_subclass__",
        '"__init_subclass__" is an invalid',
    ),
    "class_cell": ("class A:\n    def f(self):\n        return __class__", '"__class__" is an'),
    "super_guard_by_name": ("_super_getattr_(1, 2, 'x')", '"_super_getattr_" is an invalid'),
    "match": ("match 1:\n    case _getattr_:\n        pass", "Match statements"),
}


@pytest.mark.parametrize(("source", "expected"), COMPILE_REFUSED.values(), ids=COMPILE_REFUSED)
def test_refused_when_compiled(source: str, expected: str) -> None:
    with pytest.raises(PolicyError) as caught:
        compile_tool(source)
    assert caught.value.kind == "compile_error"
    assert expected in caught.value.message
    assert caught.value.message.startswith("line ")


GENERATOR = "g = (x for x in [1])\n"
RUNTIME_REFUSED = {
    # frame and generator walks that get past the compiler
    "getattr_gi_frame": (GENERATOR + "getattr(g, 'gi_frame')", "'gi_frame' is not allowed"),
    "getattr_gi_code": (GENERATOR + "getattr(g, 'gi_code')", "'gi_code' is not allowed"),
    "getattr_yieldfrom": (GENERATOR + "getattr(g, 'gi_yieldfrom')", "'gi_yieldfrom' is not"),
    "generator_target": (GENERATOR + "g.send(None)", "'send' of a 'generator' object"),
    "hasattr_frame": (GENERATOR + "assert hasattr(g, 'gi_frame')", "AssertionError"),
    "traceback_getattr": (
        "try:\n    1/0\nexcept Exception as e:\n    getattr(e, '__traceback__')",
        "'__traceback__' is not allowed: names starting with '_' are private",
    ),
    "async_genexp": ("g = (x async for x in [])", "TypeError: 'async for' requires"),
    # format strings walking attributes
    "format_mro": ("'{0.__class__.__mro__}'.format(1)", "'__class__' is not allowed"),
    "format_auto_attr": (GENERATOR + "'{.gi_frame}'.format(g)", "needs a name or number"),
    "format_gi_frame": (GENERATOR + "'{0.gi_frame}'.format(g)", "'gi_frame' is not allowed"),
    "format_index_walk": (GENERATOR + "'{0[0].gi_code}'.format([g])", "'gi_code' is not"),
    "kept_generator": (
        "class A:\n    def __init__(self):\n        self.g = (x for x in [])\n"
        "getattr(A().g, 'gi_frame')",
        "'gi_frame' is not allowed",
    ),
    "format_nested_spec": ("'{0:{1.__class__}}'.format(1, 2)", "'__class__' is not allowed"),
    "format_map": (GENERATOR + "'{g.gi_frame}'.format_map({'g': g})", "'gi_frame' is not"),
    "format_unbound": ("str.format('{0.__class__}', 1)", "str.format is only available"),
    "format_getattr": ("getattr('{0.__class__}', 'format')(1)", "'__class__' is not allowed"),
    "formatter": ("import string\nstring.Formatter", "no attribute 'Formatter'"),
    # module graph through facades
    "json_codecs": ("import json\njson.codecs", "module 'json' has no attribute 'codecs'"),
    "json_decoder": ("import json\njson.decoder", "has no attribute 'decoder'"),
    "datetime_sys": ("import datetime\ndatetime.sys", "has no attribute 'sys'"),
    "getattr_globals": ("import json\ngetattr(json.dumps, '__globals__')", "'__globals__'"),
    "getattr_builtins": ("import hashlib\ngetattr(hashlib, '__builtins__')", "'__builtins__'"),
    "getattr_self": ("import random\ngetattr(random.random, '__self__')", "'__self__' is not"),
    "import_submodule": ("import json.decoder", "import of 'json.decoder' is not allowed"),
    "from_submodule": ("from json import decoder", "cannot import name 'decoder'"),
    "from_private_module": ("from _strptime import locale", "cannot import name 'locale'"),
    "urllib_request": ("from urllib import request", "cannot import name 'request'"),
    "mro": ("class A:\n    pass\nA.mro()", "'mro' is not allowed"),
    # private names: a library's stay refused; only the tool's own objects have them
    "re_compiler": ("import re\nre._compiler", "'_compiler' is not allowed: names starting"),
    "from_private": ("from json import _default_encoder", "cannot import name"),
    "library_private": (
        "import random\nrandom.Random()._randbelow(3)",
        "'_randbelow' is not allowed: names starting with '_' are private",
    ),
    "inherited_private": (
        "import random\nclass R(random.Random):\n    pass\nR()._randbelow(3)",
        "has no attribute '_randbelow'",
    ),
    "getattr_library_private": (
        "import random\ngetattr(random.Random(), '_randbelow')",
        "'_randbelow' is not allowed",
    ),
    "private_class_attribute_of_a_library_base": (
        "import random\nclass R(random.Random):\n    pass\nR._randbelow",
        "the type 'R' has no attribute '_randbelow'",
    ),
    "super_private_of_a_library_base": (
        "import random\nclass R(random.Random):\n    def f(self):\n"
        "        return super()._randbelow(3)\nR().f()",
        "super() has no attribute '_randbelow' of the tool's own",
    ),
    # augmented assignment goes through the same guards as the plain one
    "aug_facade": ("import math\nmath.pi += 1", "cannot change a 'Facade'"),
    "aug_type": (
        "import datetime\ndatetime.timedelta.max += datetime.timedelta(0)",
        "cannot change the type 'timedelta'",
    ),
    "aug_library_item": (
        "import hashlib\nhashlib.algorithms_guaranteed[0] += 'x'",
        "'frozenset' object is not subscriptable",
    ),
    # what the new modules could reach
    "namedtuple_field_injection": (
        "from collections import namedtuple\nnamedtuple('P', ['x', 'y): import os #'])",
        "ValueError: Type names and field names must be valid identifiers",
    ),
    "dataclass_on_a_builtin": (
        "from dataclasses import dataclass\ndataclass(int)",
        "TypeError",
    ),
    "make_dataclass": ("from dataclasses import make_dataclass", "cannot import name"),
    "type_hints": ("from typing import get_type_hints", "cannot import name"),
    "future_feature": ("from __future__ import barry_as_FLUFL", "cannot import name"),
    # builtins that are not there
    "type": ("type(1)", "NameError: name 'type' is not defined"),
    "object": ("object", "NameError: name 'object' is not defined"),
    "getattr_class": ("getattr(1, '__class__')", "'__class__' is not allowed"),
    "vars": ("vars()", "name 'vars' is not defined"),
    "globals": ("globals()", "name 'globals' is not defined"),
    "locals": ("locals()", "name 'locals' is not defined"),
    "dir": ("dir()", "name 'dir' is not defined"),
    "id": ("id(1)", "name 'id' is not defined"),
    "open": ("open('/etc/passwd')", "name 'open' is not defined"),
    "compile": ("compile('1', 'x', 'eval')", "name 'compile' is not defined"),
    "eval_alias": ("e = eval", "name 'eval' is not defined"),
    "input": ("input()", "name 'input' is not defined"),
    "memoryview": ("memoryview(b'')", "name 'memoryview' is not defined"),
    "setattr": ("import json\nsetattr(json, 'dumps', 1)", "name 'setattr' is not defined"),
    "super": ("super()", "name 'super' is not defined"),
    "exit": ("exit()", "name 'exit' is not defined"),
    # imports
    "import_os": ("import os", "import of 'os' is not allowed; available modules: json, math"),
    "from_os": ("from os import path", "import of 'os' is not allowed"),
    "import_sys": ("import sys", "import of 'sys' is not allowed"),
    "import_subprocess": ("import subprocess", "import of 'subprocess' is not allowed"),
    # escaping exceptions
    "system_exit": ("raise SystemExit(3)", "SystemExit: 3 (line 1)"),
    "keyboard_interrupt": ("raise KeyboardInterrupt", "KeyboardInterrupt (line 1)"),
    "generator_exit": ("raise GeneratorExit('bye')", "GeneratorExit: bye (line 1)"),
    "stop_iteration": ("raise StopIteration", "StopIteration (line 1)"),
    "base_exception": ("raise BaseException('x')", "BaseException: x (line 1)"),
    "recursion": ("def f():\n    return f()\nf()", "RecursionError: maximum recursion depth"),
    # writes to shared objects
    "facade_write": ("import json\njson.dumps = lambda *a: 'x'", "cannot change a 'Facade'"),
    "facade_delete": ("import json\ndel json.dumps", "cannot change a 'Facade'"),
    "function_write": ("import json\njson.dumps.x = 1", "cannot change a 'function'"),
    "type_write": (
        "import collections\ncollections.Counter.most_common = None",
        "cannot change the type 'Counter'",
    ),
    "builtin_type_write": ("dict.get = None", "cannot change the type 'dict'"),
    "exception_class_write": ("HttpError.code = 'x'", "cannot change the type 'HttpError'"),
    "helper_write": ("http.get = None", "cannot change a 'HttpHelper'"),
    "enum_write": ("import re\nre.I.x = 1", "cannot change a 'RegexFlag'"),
    "shared_set": ("import hashlib\nhashlib.algorithms_guaranteed.add('x')", "'frozenset'"),
    "print_file": ("class F:\n    def write(self, s):\n        pass\nprint(1, file=F())", "file="),
    "re_debug": ("import re\nre.compile('a', 128)", "re.DEBUG is not available"),
}


@pytest.mark.parametrize(("source", "expected"), RUNTIME_REFUSED.values(), ids=RUNTIME_REFUSED)
def test_refused_at_run_time(source: str, expected: str) -> None:
    error = refused(source)
    assert error.kind == "runtime_error"
    assert expected in error.message
    assert error.line is not None


def test_guards_hold_after_names_try_to_replace_them() -> None:
    names: dict[str, JsonValue] = {"_getattr_": None, "_write_": None, "__builtins__": None}
    with pytest.raises(PolicyError, match="'__class__' is not allowed"):
        run("getattr(1, '__class__')", names)


def test_a_caught_refusal_leaks_nothing() -> None:
    source = """
        import json
        out = []
        for attempt in ("__globals__", "__self__", "__class__", "mro", "gi_frame"):
            try:
                out.append(getattr(json.dumps, attempt))
            except AttributeError as exc:
                out.append(str(exc)[:12])
        try:
            json.nope
        except AttributeError as exc:
            out.append(repr(exc.obj))
        result = out
    """
    assert run(source)[0] == ["attribute '_"] * 3 + ["attribute 'm", "attribute 'g"] + [
        "<module 'json' (tool facade)>"
    ]


# Shared state: poisoning attempts that work inside one run must not reach the next.


def test_reseeding_random_affects_only_that_run() -> None:
    shared_before = random.getstate()
    run("import random\nrandom.seed(1)\nresult = random.random()")
    draws = run("import random\nresult = [random.random() for _ in range(3)]")[0]
    seeded = random.Random(1)
    assert draws != [seeded.random() for _ in range(3)]
    assert random.getstate() == shared_before


def test_shadowing_builtins_affects_only_that_run() -> None:
    run("len = lambda x: 0\nHttpError = None\nhttp = None\nresult = len('abc')")
    assert run("result = [len('abc'), issubclass(HttpError, Exception)]")[0] == [3, True]
    assert run("result = http is not None")[0] is True


def test_facades_are_fresh_per_run() -> None:
    first, second = build_facades(), build_facades()
    assert first["json"] is not second["json"]
    assert first["random"].random is not second["random"].random
    with pytest.raises(AttributeError, match="read-only"):
        first["json"].dumps = None


def test_mutating_a_returned_object_does_not_reach_the_next_run() -> None:
    source = """
        import string, re, datetime
        letters = string.ascii_letters
        flags = re.I | re.M
        result = [letters[:2], int(flags), datetime.MINYEAR]
    """
    assert run("import json\ntry:\n    json.dumps = None\nexcept TypeError:\n    pass")[0] is None
    assert run(source)[0] == ["ab", 10, 1]


# Limits and invalid results.


def test_an_output_flood_ends_as_output_limit() -> None:
    error = refused("for i in range(10 ** 9):\n    print('x' * 1000)")
    assert error.kind == "output_limit"
    assert "printed output exceeds 65536 characters" in error.message


def test_catching_the_output_limit_does_not_escape_it() -> None:
    source = """
        try:
            print("x" * 100000)
        except Exception:
            pass
        try:
            print("more")
        except BaseException:
            pass
        result = "fine"
    """
    assert refused(source).kind == "output_limit"


def test_a_10_mb_result_ends_as_output_limit() -> None:
    error = refused("result = 'x' * 10_000_000")
    assert error.kind == "output_limit"
    assert "result is larger than 1048576 bytes" in error.message


def test_many_small_values_past_the_size_end_as_output_limit() -> None:
    assert refused("result = list(range(400_000))").kind == "output_limit"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("result = {1, 2}", "a 'set' is not plain JSON at result"),
        ("result = {'x': [1, 2, {3}]}", "a 'set' is not plain JSON at result.x[2]"),
        ("result = {'a b': len}", "at result['a b']"),
        ("result = lambda: 1", "a 'function' is not plain JSON"),
        ("class A:\n    pass\nresult = [A()]", "'A' is not plain JSON at result[0]"),
        ("result = float('nan')", "nan is not a JSON number"),
        ("result = [float('inf')]", "inf is not a JSON number at result[0]"),
        ("result = b'bytes'", "a 'bytes' is not plain JSON"),
        ("result = {1: 2}", "dict key 1 is not a string"),
        ("a = []\na.append(a)\nresult = a", "nesting deeper than 64 levels"),
        ("result = 10 ** 5000", "Exceeds the limit"),
        ("result = http", "'HttpHelper' is not plain JSON"),
        ("import json\nresult = json", "'Facade' is not plain JSON"),
    ],
)
def test_a_non_json_result_is_invalid(source: str, expected: str) -> None:
    error = refused(source)
    assert error.kind == "invalid_result"
    assert error.message.startswith("result must be plain JSON: ")
    assert expected in error.message


# Compile-time bombs: a compile_error, never a crash of the caller.


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("(" * 100_000, "too many nested parentheses"),
        ("x = 1" + "+1" * 100_000, "nested too deeply or is too complex"),
        ("x = " + "-" * 100_000 + "1", "nested too deeply or is too complex"),
        ("x = a" + ".b" * 50_000, "nested too deeply or is too complex"),
        ("x = 1\n" * 60_000, "the limit is 262144 bytes"),
        ("x = 1\0", "null"),
        ("".join(" " * i + "if 1:\n" for i in range(150)), "too many levels of indentation"),
        ("x = '" + "a" * 300_000 + "'", "the limit is 262144 bytes"),
    ],
    ids=["parens", "sum", "unary", "attributes", "size", "null", "indent", "constant"],
)
def test_compile_bombs_are_compile_errors(source: str, expected: str) -> None:
    with pytest.raises(PolicyError) as caught:
        compile_tool(source)
    assert caught.value.kind == "compile_error"
    assert expected in caught.value.message
    assert len(caught.value.message) < 1_500


# The guards themselves, on objects tool code cannot normally make.


async def _coroutine() -> None:
    pass


async def _async_generator() -> AsyncIterator[int]:
    yield 1


def _internals() -> dict[str, object]:
    try:
        raise ValueError("x")
    except ValueError as exc:
        trace = exc.__traceback__

    def outer() -> object:
        value = 1

        def inner() -> int:
            return value

        return inner.__closure__[0] if inner.__closure__ else None

    return {
        "frame": sys._getframe(),
        "code": _internals.__code__,
        "traceback": trace,
        "module": json,
        "generator": (n for n in range(1)),
        "coroutine": _coroutine(),
        "async_generator": _async_generator(),
        "cell": outer(),
    }


def test_internals_are_refused_as_targets_and_values() -> None:
    internals = _internals()
    try:
        assert {type(obj) for obj in internals.values()} <= set(FORBIDDEN_TYPES)
        for name, obj in internals.items():
            with pytest.raises(AttributeError, match="is not allowed in tools"):
                guarded_getattr(obj, "anything")
            with pytest.raises(TypeError, match="is not allowed in tools"):
                guarded_getitem(obj, 0)
            if name == "generator":  # tool code makes these itself; only their insides are shut
                assert guarded_getitem([obj], 0) is obj
                continue
            with pytest.raises(AttributeError, match="which tools may not use"):
                guarded_getattr(types.SimpleNamespace(x=obj), "x")
            with pytest.raises(TypeError, match="which tools may not use"):
                guarded_getitem({"k": obj}, "k")
        error = AttributeError("x", name="x", obj=json)
        with pytest.raises(AttributeError, match="would give a module"):
            guarded_getattr(error, "obj")
        for value in (type, object, super):
            with pytest.raises(AttributeError, match="which tools may not use"):
                guarded_getattr(types.SimpleNamespace(x=value), "x")
    finally:
        coroutine = internals["coroutine"]
        assert isinstance(coroutine, types.CoroutineType)
        coroutine.close()
        asyncio.run(_close(internals["async_generator"]))


async def _close(generator: object) -> None:
    assert isinstance(generator, types.AsyncGeneratorType)
    await generator.aclose()


def test_builtins_hold_no_escape_hatch() -> None:
    forbidden = {"type", "object", "super", "id", "vars", "dir", "globals", "locals"}
    forbidden |= {"setattr", "delattr", "open", "eval", "exec", "compile", "input"}
    forbidden |= {"breakpoint", "help", "memoryview", "exit", "quit", "print"}
    assert not forbidden & set(POLICY.builtins)
    assert {"len", "sorted", "isinstance", "getattr", "HttpError"} <= set(POLICY.builtins)


def _reachable() -> Iterator[tuple[str, object]]:
    roots: dict[str, object] = {f"{k}": v for k, v in build_facades().items()}
    roots["http"] = HttpHelper(None)
    frontier = list(roots.items())
    seen: set[int] = set()
    for _ in range(3):
        following: list[tuple[str, object]] = []
        for path, obj in frontier:
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            yield path, obj
            attrs = list(obj._members) if isinstance(obj, Facade) else dir(obj)
            for attr in attrs:
                if attr.startswith("_") or attr == "mro":
                    continue
                try:
                    following.append((f"{path}.{attr}", getattr(obj, attr)))
                except Exception:
                    continue
        frontier = following


def test_no_module_or_shared_container_is_reachable_from_the_facades() -> None:
    # Without calling anything, three attribute steps from any facade or `http` reach
    # no module, frame or code object, and no mutable container another call could share.
    for path, obj in _reachable():
        assert not isinstance(obj, FORBIDDEN_TYPES), path
        assert type(obj) not in (dict, list, set, bytearray), path
