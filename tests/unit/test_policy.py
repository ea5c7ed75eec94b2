"""What ordinary tool code can do under the policy: the positive controls."""

from __future__ import annotations

import base64
import hashlib
import hmac
import textwrap

import pytest

from sandbox.facades import ALLOWED_MODULES, build_facades
from sandbox.policy import (
    POLICY,
    HttpCall,
    JsonValue,
    PolicyError,
    PolicyLimits,
    compile_tool,
    run_tool,
)


def run(
    source: str,
    names: dict[str, JsonValue] | None = None,
    *,
    http: HttpCall | None = None,
    limits: PolicyLimits | None = None,
) -> tuple[JsonValue, str]:
    code = compile_tool(textwrap.dedent(source))
    if limits is None:
        return run_tool(code, names or {}, http=http)
    return run_tool(code, names or {}, http=http, limits=limits)


def result_of(source: str, names: dict[str, JsonValue] | None = None) -> JsonValue:
    return run(source, names)[0]


class RecordingBridge:
    """A fake service side of `http`: records each request, answers with `answer`."""

    def __init__(self, answer: dict[str, JsonValue]) -> None:
        self.requests: list[dict[str, JsonValue]] = []
        self.answer = answer

    def __call__(self, request: dict[str, JsonValue]) -> dict[str, JsonValue]:
        self.requests.append(request)
        return self.answer


OK_ANSWER: dict[str, JsonValue] = {
    "ok": True,
    "status_code": 200,
    "headers": {"content-type": "application/json"},
    "body": {"hello": "world"},
}


def test_arithmetic_and_comprehensions() -> None:
    source = """
        squares = [n * n for n in range(6) if n % 2 == 0]
        table = {str(n): n ** 2 for n in range(3)}
        unique = sorted({n % 3 for n in range(10)})
        total = sum(x for x in squares)
        a, (b, c) = 1, (2, 3)
        for i, (k, v) in enumerate(sorted(table.items())):
            total += i
        count = 0
        count += 5
        result = [squares, table, unique, total, a + b + c, divmod(7, 2), count, 7 // 2, 2.5 * 2]
    """
    assert result_of(source) == [
        [0, 4, 16],
        {"0": 0, "1": 1, "2": 4},
        [0, 1, 2],
        23,
        6,
        [3, 1],
        5,
        3,
        5.0,
    ]


def test_a_class_with_init_and_methods() -> None:
    source = """
        class Counter:
            def __init__(self, start):
                self.value = start
                self.history = []

            def add(self, n):
                self.value = self.value + n
                self.history.append(n)
                return self

            def __eq__(self, other):
                return isinstance(other, Counter) and other.value == self.value

        class Doubler(Counter):
            def add(self, n):
                return Counter.add(self, n * 2)

        c = Doubler(1).add(2).add(3)
        c.label = "mine"
        Counter.kind = "class attributes of own classes are writable"
        result = {"value": c.value, "history": c.history, "label": c.label,
                  "eq": Counter(11) == c, "kind": Counter.kind}
    """
    assert result_of(source) == {
        "value": 11,
        "history": [4, 6],
        "label": "mine",
        "eq": True,
        "kind": "class attributes of own classes are writable",
    }


def test_own_exceptions_try_except_finally() -> None:
    source = """
        class Invalid(ValueError):
            pass

        log = []
        try:
            try:
                raise Invalid("bad input")
            finally:
                log.append("finally")
        except ValueError as exc:
            log.append(str(exc))
        try:
            {}["missing"]
        except KeyError as exc:
            log.append(repr(exc.args))
        result = log
    """
    assert result_of(source) == ["finally", "bad input", "('missing',)"]


def test_string_formatting_with_plain_fields() -> None:
    source = """
        name, n = "ada", 3.14159
        rows = {"a": [10, 20]}
        result = [
            f"{name!r:>8}|{n:.2f}",
            "%s has %d items (%.1f%%)" % (name, 2, 50.0),
            "%(who)s" % {"who": name},
            "{} {} {x}".format(1, 2, x=name),
            "{0[a][1]} {1:>4}".format(rows, 7),
            "{who[a]}".format_map({"who": rows}),
            "{0.real}".format(5),
        ]
    """
    assert result_of(source) == [
        "   'ada'|3.14",
        "ada has 2 items (50.0%)",
        "ada",
        "1 2 ada",
        "20    7",
        "[10, 20]",
        "5",
    ]


def test_facades_json_re_datetime() -> None:
    source = """
        import json
        import re
        from datetime import datetime, timedelta, timezone, UTC
        import datetime as dt

        data = json.loads('{"a": [1, 2, {"b": null}]}')
        try:
            json.loads("{")
        except json.JSONDecodeError as exc:
            bad = exc.msg
        pattern = re.compile(r"(?P<word>[a-z]+)-(\\d+)", re.IGNORECASE)
        match = pattern.search("x ABC-42 y")
        start = datetime(2024, 1, 31, 12, 0, tzinfo=timezone.utc)
        result = {
            "json": json.dumps(data, sort_keys=True),
            "bad": bad,
            "re": [match.group("word"), match[2], re.findall(r"\\d", "a1b2"),
                   re.sub(r"\\s+", " ", "a   b"), re.split(",", "x,y")],
            "date": (start + timedelta(days=1)).isoformat(),
            "parsed": dt.datetime.strptime("2024-02-03", "%Y-%m-%d").strftime("%d/%m"),
            "utc": datetime(2024, 1, 1, tzinfo=UTC).timestamp(),
        }
    """
    assert result_of(source) == {
        "json": '{"a": [1, 2, {"b": null}]}',
        "bad": "Expecting property name enclosed in double quotes",
        "re": ["ABC", "42", ["1", "2"], "a b", ["x", "y"]],
        "date": "2024-02-01T12:00:00+00:00",
        "parsed": "03/02",
        "utc": 1704067200.0,
    }


def test_facades_base64_hashlib_hmac_urllib() -> None:
    source = """
        import base64, hashlib, hmac
        import urllib.parse
        from urllib.parse import urlencode, urlparse, parse_qs

        raw = "héllo".encode("utf-8")
        parts = urlparse("https://example.com/a/b?x=1&y=2#frag")
        result = {
            "b64": base64.b64encode(raw).decode(),
            "back": base64.b64decode(base64.urlsafe_b64encode(raw).replace(b"-", b"+")
                                     .replace(b"_", b"/")).decode("utf-8"),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "md5": hashlib.new("md5", raw).hexdigest(),
            "hmac": hmac.new(b"key", raw, hashlib.sha256).hexdigest(),
            "same": hmac.compare_digest("a", "a"),
            "quoted": urllib.parse.quote("a b/c", safe=""),
            "query": urlencode({"q": "x y", "n": 1}),
            "host": parts.netloc,
            "qs": parse_qs(parts.query),
        }
    """
    raw = "héllo".encode()
    assert result_of(source) == {
        "b64": base64.b64encode(raw).decode(),
        "back": "héllo",
        "sha256": hashlib.sha256(raw).hexdigest(),
        "md5": hashlib.md5(raw).hexdigest(),
        "hmac": hmac.new(b"key", raw, hashlib.sha256).hexdigest(),
        "same": True,
        "quoted": "a%20b%2Fc",
        "query": "q=x+y&n=1",
        "host": "example.com",
        "qs": {"x": ["1"], "y": ["2"]},
    }


def test_facades_random_math_and_the_rest() -> None:
    source = """
        import random, math, string, itertools, collections, decimal, statistics, time
        items = list(range(10))
        random.shuffle(items)
        own = random.Random(7)
        words = collections.Counter("abracadabra")
        result = {
            "die": 1 <= random.randint(1, 6) <= 6,
            "pick": random.choice(["x"]),
            "same": sorted(items) == list(range(10)),
            "seeded": own.random() == random.Random(7).random(),
            "sqrt": math.sqrt(16), "pi": round(math.pi, 3),
            "letters": string.ascii_lowercase[:3],
            "pairs": list(itertools.combinations("abc", 2)),
            "top": words.most_common(1),
            "dec": str(decimal.Decimal("1.10") + decimal.Decimal("2.205")),
            "mean": statistics.mean([1, 2, 3, 4]),
            "clock": time.time() > 0 and time.monotonic() >= 0,
        }
    """
    assert result_of(source) == {
        "die": True,
        "pick": "x",
        "same": True,
        "seeded": True,
        "sqrt": 4.0,
        "pi": 3.142,
        "letters": "abc",
        "pairs": [["a", "b"], ["a", "c"], ["b", "c"]],
        "top": [["a", 5]],
        "dec": "3.305",
        "mean": 2.5,
        "clock": True,
    }


def test_names_and_params_are_top_level_variables() -> None:
    names: dict[str, JsonValue] = {
        "city": "Oslo",
        "days": 3,
        "params": {"city": "Oslo", "days": 3},
        "_hidden": "never visible",
    }
    source = """
        result = {"city": city, "days": days * 2, "params": sorted(params)}
    """
    assert result_of(source, names) == {"city": "Oslo", "days": 6, "params": ["city", "days"]}


def test_a_name_starting_with_underscore_is_not_injected() -> None:
    # It could not be read anyway, and it must not replace a guard.
    source = """
        result = "{0.real}".format(4)
    """
    assert result_of(source, {"_getattr_": "x", "_print_": 1, "__builtins__": {}}) == "4"


def test_print_goes_to_stdout_beside_the_result() -> None:
    source = """
        def show(n):
            print("in function", n)

        print("hello", 1, sep="-")
        show(2)
        print("no newline", end="")
        result = "done"
    """
    assert run(source) == ("done", "hello-1\nin function 2\nno newline")


def test_an_authorization_header_built_from_a_secret_reaches_the_bridge() -> None:
    bridge = RecordingBridge(OK_ANSWER)
    source = """
        answer = http.get(
            "https://api.example.com/items",
            params={"limit": 5},
            headers={"Authorization": "Bearer " + api_key},
            timeout=5,
        )
        posted = http.post("https://api.example.com/items", json={"name": "x", "tags": ("a",)})
        result = {"status": answer["status_code"], "body": answer["body"], "again": posted["body"]}
    """
    result, stdout = run(source, {"api_key": "s3cr3t-value"}, http=bridge)
    assert result == {"status": 200, "body": {"hello": "world"}, "again": {"hello": "world"}}
    assert "s3cr3t-value" not in repr(result) + stdout, "only the bridge may see the secret"
    assert bridge.requests == [
        {
            "method": "GET",
            "url": "https://api.example.com/items",
            "headers": {"Authorization": "Bearer s3cr3t-value"},
            "params": {"limit": "5"},
            "timeout": 5.0,
        },
        {
            "method": "POST",
            "url": "https://api.example.com/items",
            "headers": {},
            "params": None,
            "timeout": None,
            "json": {"name": "x", "tags": ["a"]},
        },
    ]


def test_a_refused_request_raises_http_error_in_tool_code() -> None:
    bridge = RecordingBridge({"ok": False, "code": "blocked", "message": "destination refused"})
    source = """
        try:
            http.delete("http://169.254.169.254/")
        except HttpError as exc:
            first = [str(exc), exc.code]
        try:
            http.put("http://x/", data="a")
        except http.HttpError as exc:
            second = str(exc)
        result = [first, second]
    """
    assert run(source, http=bridge)[0] == [
        ["destination refused", "blocked"],
        "destination refused",
    ]


def test_without_a_bridge_http_says_it_is_unavailable() -> None:
    with pytest.raises(PolicyError) as caught:
        run("http.get('https://example.com')")
    assert caught.value.kind == "runtime_error"
    assert caught.value.message == "HttpError: outbound HTTP is not available here (line 1)"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("{'a': [1, 2.5, True, None, 'x']}", {"a": [1, 2.5, True, None, "x"]}),
        ("(1, (2, 3))", [1, [2, 3]]),
        ("'text'", "text"),
        ("-7", -7),
        ("False", False),
        ("None", None),
    ],
)
def test_result_plain_json_types(expression: str, expected: JsonValue) -> None:
    assert result_of(f"result = {expression}") == expected


def test_result_counter_and_defaultdict_become_dicts() -> None:
    source = """
        from collections import Counter, defaultdict
        groups = defaultdict(list)
        groups["a"].append(1)
        result = [Counter("aab"), groups]
    """
    assert result_of(source) == [{"a": 2, "b": 1}, {"a": [1]}]


def test_a_tool_that_never_sets_result_returns_none() -> None:
    assert run("x = 1") == (None, "")


def test_annotated_assignments_are_accepted() -> None:
    source = """
        count: int = 2
        label: str
        result = count
    """
    assert result_of(source) == 2


def test_runtime_error_names_type_message_and_line() -> None:
    source = """
        x = 1

        def explode():
            return int("nope")

        explode()
    """
    with pytest.raises(PolicyError) as caught:
        run(source)
    assert caught.value.kind == "runtime_error"
    assert caught.value.message == (
        "ValueError: invalid literal for int() with base 10: 'nope' (line 5)"
    )
    assert caught.value.line == 5


def test_compile_error_names_the_line() -> None:
    with pytest.raises(PolicyError) as caught:
        compile_tool("x = 1\ny = (\n")
    assert caught.value.kind == "compile_error"
    assert caught.value.message.startswith("line 2: SyntaxError")
    assert caught.value.line == 2


def test_limits_are_configurable() -> None:
    limits = PolicyLimits(max_output_chars=5, max_result_bytes=10, max_result_depth=2)
    assert run("print('1234')\nresult = [[1]]", limits=limits) == ([[1]], "1234\n")
    with pytest.raises(PolicyError, match="nesting deeper than 2"):
        run("result = [[[1]]]", limits=limits)


def test_policy_description_is_the_one_list_of_modules() -> None:
    assert POLICY.modules == ALLOWED_MODULES
    assert set(build_facades()) == {*ALLOWED_MODULES, "urllib"}
    for name in ("json", "math", "re", "datetime", "base64", "hashlib", "hmac", "random"):
        assert name in POLICY.modules
    assert "urllib.parse" in POLICY.modules
