"""Read-only module facades for tool code, the guarded `__import__`, and the `http` helper.

A real stdlib module handed to tool code is an escape (`datetime.sys.modules['os']`),
so tools get `Facade` objects that expose chosen functions and constants only. The
table `_MODULES` is the one list of what may be imported: the import guard, its error
message and `ALLOWED_MODULES` all read it.
"""

from __future__ import annotations
import __future__

import base64
import collections
import dataclasses
import datetime
import decimal
import hashlib
import hmac
import importlib
import itertools
import json
import math
import random
import re
import statistics
import string
import sys
import time
import typing
import urllib.parse
from collections.abc import Callable, Mapping
from types import MappingProxyType, ModuleType
from typing import Any, Final, TypeAlias

from sandbox.guards import JsonValue, NotPlainJson, plain_json

__all__ = ["ALLOWED_MODULES", "Facade", "HttpCall", "HttpError", "HttpHelper", "build_facades"]

HttpCall: TypeAlias = Callable[[dict[str, JsonValue]], dict[str, JsonValue]]


class Facade:
    """A read-only stand-in for a module: only the members it was given, nothing behind them.

    It has no `__name__`, on purpose: `from x import y` falls back to
    `sys.modules[x.__name__ + '.y']` when `y` is missing, which would hand out real modules.
    """

    __slots__ = ("_label", "_members")
    _label: str
    _members: Mapping[str, object]

    def __init__(self, label: str, members: Mapping[str, object]) -> None:
        object.__setattr__(self, "_label", label)
        object.__setattr__(self, "_members", members)

    def __getattr__(self, attr: str) -> object:
        try:
            return self._members[attr]
        except KeyError:
            available = ", ".join(sorted(self._members))
            raise AttributeError(
                f"module {self._label!r} has no attribute {attr!r} in tools "
                f"(available: {available})"
            ) from None

    def __setattr__(self, attr: str, value: object) -> None:
        raise AttributeError(f"module {self._label!r} is read-only in tools")

    def __delattr__(self, attr: str) -> None:
        raise AttributeError(f"module {self._label!r} is read-only in tools")

    def __repr__(self) -> str:
        return f"<module {self._label!r} (tool facade)>"


def _pick(module: ModuleType, *names: str) -> Mapping[str, object]:
    return MappingProxyType({name: getattr(module, name) for name in names})


def _public_math() -> Mapping[str, object]:
    return MappingProxyType(
        {
            name: value
            for name, value in vars(math).items()
            if not name.startswith("_") and (callable(value) or isinstance(value, float))
        }
    )


def _regex_flags(flags: int) -> int:
    # re.DEBUG prints the compiled pattern to the process's real stdout.
    if flags & re.DEBUG:
        raise ValueError("re.DEBUG is not available in tools")
    return flags


def _re_compile(pattern: str | bytes, flags: int = 0) -> re.Pattern[str] | re.Pattern[bytes]:
    return re.compile(pattern, _regex_flags(flags))


def _re_searcher(name: str) -> Callable[..., object]:
    method = getattr(re.Pattern, name)

    def call(pattern: str | bytes, text: str | bytes, flags: int = 0) -> object:
        return method(_re_compile(pattern, flags), text)

    call.__name__ = call.__qualname__ = name
    return call


def _re_sub(
    pattern: str | bytes, repl: object, text: object, count: int = 0, flags: int = 0
) -> object:
    compiled: Any = _re_compile(pattern, flags)
    return compiled.sub(repl, text, count)


def _re_subn(
    pattern: str | bytes, repl: object, text: object, count: int = 0, flags: int = 0
) -> object:
    compiled: Any = _re_compile(pattern, flags)
    return compiled.subn(repl, text, count)


def _re_split(pattern: str | bytes, text: object, maxsplit: int = 0, flags: int = 0) -> object:
    compiled: Any = _re_compile(pattern, flags)
    return compiled.split(text, maxsplit)


_RE_FLAGS = ("A", "ASCII", "I", "IGNORECASE", "M", "MULTILINE", "NOFLAG", "S", "DOTALL", "U")
_RE: Final = MappingProxyType(
    {
        **{name: getattr(re, name) for name in (*_RE_FLAGS, "UNICODE", "X", "VERBOSE")},
        **{name: _re_searcher(name) for name in ("match", "search", "fullmatch", "findall")},
        "finditer": _re_searcher("finditer"),
        "compile": _re_compile,
        "sub": _re_sub,
        "subn": _re_subn,
        "split": _re_split,
        "escape": re.escape,
        "error": re.error,
        "Pattern": re.Pattern,
        "Match": re.Match,
    }
)

_STATIC: Final[dict[str, Mapping[str, object]]] = {
    "json": _pick(json, "dumps", "loads", "JSONDecodeError"),
    "math": _public_math(),
    "re": _RE,
    "datetime": MappingProxyType(
        {
            **_pick(datetime, "date", "datetime", "time", "timedelta", "timezone"),
            **_pick(datetime, "MINYEAR", "MAXYEAR"),
            "UTC": datetime.UTC,
        }
    ),
    "base64": _pick(
        base64,
        *("b64encode", "b64decode", "urlsafe_b64encode", "urlsafe_b64decode"),
        *("standard_b64encode", "standard_b64decode", "b32encode", "b32decode"),
        *("b16encode", "b16decode", "b85encode", "b85decode", "a85encode", "a85decode"),
        *("encodebytes", "decodebytes"),
    ),
    "hashlib": MappingProxyType(
        {
            **_pick(
                hashlib,
                *("md5", "sha1", "sha224", "sha256", "sha384", "sha512", "blake2b"),
                *("blake2s", "sha3_224", "sha3_256", "sha3_384", "sha3_512", "new"),
                "pbkdf2_hmac",
            ),
            # the module's own is a mutable set
            "algorithms_guaranteed": frozenset(hashlib.algorithms_guaranteed),
        }
    ),
    "hmac": _pick(hmac, "new", "compare_digest", "digest"),
    "urllib.parse": _pick(
        urllib.parse,
        *("quote", "quote_plus", "quote_from_bytes", "unquote", "unquote_plus"),
        *("unquote_to_bytes", "urlencode", "urlparse", "urlunparse", "urlsplit"),
        *("urlunsplit", "urljoin", "urldefrag", "parse_qs", "parse_qsl"),
    ),
    "string": _pick(
        string,
        *("ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits"),
        *("octdigits", "punctuation", "printable", "whitespace", "capwords"),
    ),
    "itertools": _pick(
        itertools,
        *("accumulate", "chain", "combinations", "combinations_with_replacement", "compress"),
        *("count", "cycle", "dropwhile", "filterfalse", "groupby", "islice", "pairwise"),
        *("permutations", "product", "repeat", "starmap", "takewhile", "tee", "zip_longest"),
    ),
    # namedtuple builds its class with exec, from names it checks are identifiers.
    "collections": _pick(
        collections, "Counter", "defaultdict", "OrderedDict", "deque", "ChainMap", "namedtuple"
    ),
    # dataclass builds methods with exec from the class's field names (identifiers);
    # make_dataclass, which takes a namespace and bases from its caller, is left out.
    "dataclasses": _pick(
        dataclasses,
        *("dataclass", "field", "fields", "asdict", "astuple", "replace", "is_dataclass"),
        "FrozenInstanceError",
    ),
    # Names for annotations; nothing that evaluates strings (get_type_hints) or makes
    # classes (NamedTuple, TypedDict, Protocol, Generic).
    "typing": _pick(
        typing,
        *("Any", "Callable", "Dict", "FrozenSet", "Generator", "Iterable", "Iterator"),
        *("List", "Literal", "Mapping", "Optional", "Sequence", "Set", "Tuple", "Union"),
        "cast",
    ),
    "decimal": _pick(
        decimal,
        *("Decimal", "InvalidOperation", "DivisionByZero", "ROUND_HALF_UP", "ROUND_HALF_EVEN"),
        *("ROUND_HALF_DOWN", "ROUND_UP", "ROUND_DOWN", "ROUND_CEILING", "ROUND_FLOOR"),
        "ROUND_05UP",
    ),
    "statistics": _pick(
        statistics,
        *("mean", "fmean", "geometric_mean", "harmonic_mean", "median", "median_low"),
        *("median_high", "median_grouped", "mode", "multimode", "quantiles", "stdev"),
        *("pstdev", "variance", "pvariance", "NormalDist", "StatisticsError"),
    ),
    "time": _pick(
        time,
        *("time", "time_ns", "monotonic", "perf_counter", "sleep", "gmtime", "localtime"),
        *("strftime", "mktime"),
    ),
}

_RANDOM_METHODS = (
    *("random", "randint", "randrange", "choice", "choices", "shuffle", "sample", "uniform"),
    *("gauss", "normalvariate", "lognormvariate", "expovariate", "betavariate"),
    *("gammavariate", "triangular", "vonmisesvariate", "paretovariate", "weibullvariate"),
    *("getrandbits", "randbytes", "seed"),
)

_ORDER = (
    *("json", "math", "re", "datetime", "base64", "hashlib", "hmac", "random", "urllib.parse"),
    *("string", "itertools", "collections", "dataclasses", "decimal", "statistics", "time"),
    "typing",
)
ALLOWED_MODULES: Final[tuple[str, ...]] = _ORDER
_PARENTS: Final = {"urllib": ("urllib.parse",)}


def build_facades() -> dict[str, Facade]:
    """Fresh facades for one run, keyed by importable name (`urllib` holds `parse`).

    `random` wraps a new `random.Random()` seeded from the OS, never the module's
    shared instance, so seeding or drawing in one run is invisible to any other.
    """
    rng = random.Random()  # noqa: S311 - not for secrets; tools wanting secrets use hashlib
    members = {name: getattr(rng, name) for name in _RANDOM_METHODS}
    members["Random"] = random.Random
    facades = {name: Facade(name, table) for name, table in _STATIC.items()}
    facades["random"] = Facade("random", MappingProxyType(members))
    for parent, children in _PARENTS.items():
        facades[parent] = Facade(
            parent,
            MappingProxyType({child.rpartition(".")[2]: facades[child] for child in children}),
        )
    assert set(facades) == set(ALLOWED_MODULES) | set(_PARENTS)
    return facades


_FUTURE: Final = Facade("__future__", _pick(__future__, "annotations"))


def make_importer(facades: Mapping[str, Facade]) -> Callable[..., Facade]:
    """The `__import__` for one run: facades for allowed names, `ImportError` for the rest."""

    def guarded_import(
        name: str,
        globals: object = None,
        locals: object = None,
        fromlist: tuple[str, ...] | None = (),
        level: int = 0,
    ) -> Facade:
        if level != 0:
            raise ImportError("relative imports are not available in tools")
        if name == "__future__":
            return _FUTURE  # `from __future__ import annotations`, as the compiler read it
        if name not in facades and name.startswith("_") and name in sys.modules:
            # C code (datetime.strptime -> _strptime) imports through the current frame's
            # __import__ and then reads sys.modules itself; tool source cannot name such
            # a module (RestrictedPython refuses it), and `from _x import y` gets nothing.
            return Facade(name, MappingProxyType({}))
        if name not in facades:
            raise ImportError(
                f"import of {name!r} is not allowed; available modules: "
                + ", ".join(ALLOWED_MODULES)
            )
        if fromlist:
            return facades[name]
        return facades[name.partition(".")[0]]

    return guarded_import


def _warm_up() -> None:
    # Imported lazily by the stdlib on first use; load them now (in the zygote) so a
    # child with file access denied can still call datetime.strptime / time.strftime
    # and Counter.most_common (heapq).
    importlib.import_module("_strptime")
    importlib.import_module("heapq")
    time.strftime("%Y")


_warm_up()


class HttpError(Exception):
    """Raised in tool code when an `http` call could not be made or was refused."""

    def __init__(self, message: str, code: str = "http_error") -> None:
        super().__init__(message)
        self.code = code


def _text_pairs(value: object, what: str, *, lines: bool = False) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"http {what}= must be a dict of strings")
    pairs: dict[str, str] = {}
    for key, item in value.items():
        if type(key) is not str or type(item) not in (str, int, float):
            raise TypeError(f"http {what}= must map strings to strings or numbers")
        text = str(item)
        if not lines and ("\r" in text or "\n" in text or "\r" in key or "\n" in key):
            raise ValueError(f"http {what}= must not contain line breaks")
        pairs[key] = text
    return pairs


class HttpHelper:
    """The `http` object tool code calls; requests go to the service through `call`."""

    __slots__ = ("_call",)
    HttpError = HttpError

    def __init__(self, call: HttpCall | None) -> None:
        self._call = call

    def request(
        self,
        method: str,
        url: str,
        *,
        params: object = None,
        headers: object = None,
        json: object = None,
        data: object = None,
        timeout: object = None,
    ) -> dict[str, JsonValue]:
        """Send one request; the answer is `{"status_code", "headers", "body"}`."""
        if self._call is None:
            raise HttpError("outbound HTTP is not available here", "unavailable")
        if type(method) is not str or type(url) is not str:
            raise TypeError("http method and url must be strings")
        if timeout is not None and (type(timeout) not in (int, float) or not timeout > 0):  # type: ignore[operator]
            raise TypeError("http timeout= must be a positive number of seconds")
        request: dict[str, JsonValue] = {
            "method": method.upper(),
            "url": url,
            "headers": _text_pairs(headers, "headers") or {},  # type: ignore[dict-item]
            "params": _text_pairs(params, "params"),  # type: ignore[dict-item]
            "timeout": None if timeout is None else float(timeout),  # type: ignore[arg-type]
        }
        if json is not None:
            try:
                request["json"] = plain_json(json, root="json", max_depth=64)
            except NotPlainJson as exc:
                raise TypeError(f"http json= must be plain JSON: {exc}") from None
        if isinstance(data, dict):
            request["form"] = _text_pairs(data, "data", lines=True)  # type: ignore[assignment]
        elif data is not None:
            if isinstance(data, bytes):
                data = data.decode("utf-8")
            if type(data) is not str:
                raise TypeError("http data= must be a string or a dict of form fields")
            request["data"] = data
        return _answer(self._call(request))

    def get(self, url: str, **options: object) -> dict[str, JsonValue]:
        """GET `url`."""
        return self.request("GET", url, **options)

    def post(self, url: str, **options: object) -> dict[str, JsonValue]:
        """POST to `url`."""
        return self.request("POST", url, **options)

    def put(self, url: str, **options: object) -> dict[str, JsonValue]:
        """PUT to `url`."""
        return self.request("PUT", url, **options)

    def patch(self, url: str, **options: object) -> dict[str, JsonValue]:
        """PATCH `url`."""
        return self.request("PATCH", url, **options)

    def delete(self, url: str, **options: object) -> dict[str, JsonValue]:
        """DELETE `url`."""
        return self.request("DELETE", url, **options)

    def __repr__(self) -> str:
        return "<http helper>"


def _answer(answer: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    if answer.get("ok") is not True:
        message = str(answer.get("message") or "HTTP request failed")
        raise HttpError(message, str(answer.get("code") or "http_error"))
    fresh = plain_json(
        {key: answer.get(key) for key in ("status_code", "headers", "body")},
        root="answer",
        max_depth=66,
    )
    assert isinstance(fresh, dict)
    return fresh
