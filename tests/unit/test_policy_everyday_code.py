"""Code as models and people write it runs under the policy (the escapes stay refused in
`test_policy_attacks.py`); the battery runs in a real sandbox process too."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator

import pytest

from sandbox import JsonValue, SandboxLimits, SandboxPool, SandboxRun
from sandbox.policy import PolicyError, compile_tool, run_tool

EVERYDAY: dict[str, tuple[str, JsonValue]] = {
    "augmented_attribute": (
        """
        class Counter:
            def __init__(self):
                self.n = 0
                self.seen = []

            def add(self, value):
                self.n += 1
                self.seen += [value]
                return self

        counter = Counter().add("a").add("b")
        result = [counter.n, counter.seen]
        """,
        [2, ["a", "b"]],
    ),
    "augmented_items": (
        """
        from collections import defaultdict
        totals = {"a": 0}
        for key, value in [("a", 2), ("a", 3)]:
            totals[key] += value
        counts = defaultdict(int)
        for word in "to be or not to be".split():
            counts[word] += 1
        grid = [[0, 0], [0, 0]]
        grid[1][0] += 7
        items = [1, 2, 3]
        items[0:1] += [9]
        items[-1] *= 10
        result = [totals, dict(counts), grid, items]
        """,
        [{"a": 5}, {"to": 2, "be": 2, "or": 1, "not": 1}, [[0, 0], [7, 0]], [1, 9, 2, 30]],
    ),
    "augmented_target_evaluated_once": (
        """
        class Box:
            def __init__(self):
                self.n = 0
        box = Box()
        picks = []
        def pick():
            picks.append(1)
            return box
        pick().n += 5
        keys = []
        def key():
            keys.append(1)
            return "k"
        table = {"k": 1}
        table[key()] += 1
        result = [box.n, len(picks), table["k"], len(keys)]
        """,
        [5, 1, 2, 1],
    ),
    "augmented_in_place_keeps_aliases": (
        """
        class Bag:
            def __init__(self):
                self.items = []
        bag = Bag()
        alias = bag.items
        bag.items += ["x"]
        result = alias
        """,
        ["x"],
    ),
    "class_with_private_state_and_properties": (
        """
        class Account:
            rate = 0.5

            def __init__(self, owner):
                self._owner = owner
                self._balance = 0

            @property
            def balance(self):
                return self._balance

            def deposit(self, amount):
                self._check(amount)
                self._balance += amount

            def _check(self, amount):
                if amount <= 0:
                    raise ValueError("amount must be positive")

            @classmethod
            def opened_for(cls, owner):
                cls.rate += 0.25
                return cls(owner)

            def __repr__(self):
                return f"Account({self._owner!r}, {self._balance})"

        account = Account.opened_for("ana")
        account.deposit(10)
        try:
            account.deposit(-1)
        except ValueError as exc:
            refused = str(exc)
        result = [
            account.balance, repr(account), refused, Account.rate,
            hasattr(account, "_cache"), getattr(account, "_cache", "none"),
        ]
        """,
        [10, "Account('ana', 10)", "amount must be positive", 0.75, False, "none"],
    ),
    "inheritance_with_super": (
        """
        class Shape:
            def __init__(self, name):
                self.name = name
                self._sides = 0

            def describe(self):
                return f"{self.name} with {self._sides} sides"

            def _unit(self):
                return "cm"

        class Square(Shape):
            def __init__(self, side):
                super().__init__("square")
                self._sides = 4
                self.side = side

            def describe(self):
                return super().describe() + f", {self.side} {super()._unit()} each"

            def __eq__(self, other):
                return super().__eq__(other)

        square = Square(3)
        result = [square.describe(), isinstance(square, Shape), square == square]
        """,
        ["square with 4 sides, 3 cm each", True, True],
    ),
    "special_methods": (
        """
        class Vector:
            def __init__(self, x, y):
                self.x, self.y = x, y
            def __add__(self, other):
                return Vector(self.x + other.x, self.y + other.y)
            def __mul__(self, k):
                return Vector(self.x * k, self.y * k)
            def __eq__(self, other):
                return (self.x, self.y) == (other.x, other.y)
            def __hash__(self):
                return hash((self.x, self.y))
            def __len__(self):
                return 2
            def __iter__(self):
                return iter([self.x, self.y])
            def __getitem__(self, i):
                return [self.x, self.y][i]
            def __str__(self):
                return f"<{self.x}, {self.y}>"
        v = Vector(1, 2) + Vector(3, 4) * 2
        result = [str(v), list(v), v[1], len(v), v == Vector(7, 10), len({v, Vector(7, 10)})]
        """,
        ["<7, 10>", [7, 10], 10, 2, True, 1],
    ),
    "dataclasses": (
        """
        from dataclasses import FrozenInstanceError, asdict, dataclass, field, replace

        @dataclass
        class Item:
            name: str
            price: float
            tags: list[str] = field(default_factory=list)

            def __post_init__(self):
                self.name = self.name.strip()

        @dataclass(frozen=True, order=True)
        class Point:
            x: int
            y: int = 0

        items = [Item(" b ", 2.5), Item("a", 1.0, ["sale"])]
        items.sort(key=lambda item: item.price)
        items[0].price += 1
        points = sorted([Point(2, 1), Point(1, 5), Point(1, 2)])
        try:
            points[0].x = 9
        except FrozenInstanceError:
            frozen = "refused"
        result = [
            [asdict(item) for item in items],
            [[p.x, p.y] for p in points],
            replace(points[0], y=3).y,
            frozen,
        ]
        """,
        [
            [
                {"name": "a", "price": 2.0, "tags": ["sale"]},
                {"name": "b", "price": 2.5, "tags": []},
            ],
            [[1, 2], [1, 5], [2, 1]],
            3,
            "refused",
        ],
    ),
    "postponed_annotations_and_typing": (
        """
        from __future__ import annotations
        from dataclasses import dataclass
        from typing import Dict, List, Optional

        @dataclass
        class Node:
            name: str
            children: List[Node]
            parent: Optional[Node] = None

        def index(nodes: List[Node]) -> Dict[str, int]:
            return {node.name: len(node.children) for node in nodes}

        root = Node("root", [Node("leaf", [])])
        result = index([root, *root.children])
        """,
        {"root": 1, "leaf": 0},
    ),
    "collections": (
        """
        from collections import Counter, OrderedDict, deque, namedtuple, ChainMap
        Pair = namedtuple("Pair", "key value")
        pairs = [Pair("a", 1), Pair(key="b", value=2)]
        window = deque([1, 2, 3], maxlen=3)
        window.append(4)
        window.rotate(1)
        order = OrderedDict(a=1, b=2)
        order.move_to_end("a")
        merged = ChainMap({"x": 1}, {"x": 2, "y": 3})
        result = [
            Counter("mississippi").most_common(2),
            [pair.value for pair in pairs],
            list(window),
            list(order),
            [merged["x"], merged["y"]],
        ]
        """,
        [[["i", 4], ["s", 4]], [1, 2], [4, 2, 3], ["b", "a"], [1, 3]],
    ),
    "format_specs": (
        """
        from datetime import date
        price, count, share, label = 1234.5678, 1234567, 0.256, "ab"
        day = date(2026, 12, 2)
        result = [
            f"{price:>10.2f}|{count:,}|{share:.1%}|{label!r:^8}|{day:%Y-%m-%d}",
            f"{count:_x}|{price:e}|{7:03d}|{'left':<6}|",
            "{:>6}|{name:*^7}".format("r", name="mid"),
        ]
        """,
        [
            "   1234.57|1,234,567|25.6%|  'ab'  |2026-12-02",
            "12_d687|1.234568e+03|007|left  |",
            "     r|**mid**",
        ],
    ),
    "generators": (
        """
        def squares(n):
            for i in range(n):
                yield i * i

        def chained(*groups):
            for group in groups:
                yield from group

        def running_total(values):
            total = 0
            for value in values:
                total += value
                yield total

        gen = squares(4)
        first = next(gen)
        result = [first, list(gen), list(chained([1], (2, 3))), list(running_total([1, 2, 3])),
                  sum(x for x in range(5) if x % 2)]
        """,
        [0, [1, 4, 9], [1, 2, 3], [1, 3, 6], 4],
    ),
    "sorting_with_keys": (
        """
        rows = [
            {"name": "bo", "score": 7, "age": 30},
            {"name": "al", "score": 9, "age": 25},
            {"name": "cy", "score": 7, "age": 22},
        ]
        by_score = sorted(rows, key=lambda r: (-r["score"], r["name"]))
        rows.sort(key=lambda r: r["age"], reverse=True)
        words = sorted(["Banana", "apple", "cherry"], key=str.lower)
        result = [[r["name"] for r in by_score], [r["name"] for r in rows], words,
                  max(rows, key=lambda r: r["score"])["name"]]
        """,
        [["al", "bo", "cy"], ["bo", "al", "cy"], ["apple", "Banana", "cherry"], "al"],
    ),
    "decimal": (
        """
        from decimal import Decimal, ROUND_HALF_UP
        lines = [Decimal("19.99"), Decimal("5.005"), Decimal("0.10")]
        subtotal = sum(lines, Decimal("0"))
        tax = (subtotal * Decimal("0.21")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        result = [str(subtotal), str(tax), str(subtotal + tax)]
        """,
        ["25.095", "5.27", "30.365"],
    ),
    "statistics": (
        """
        import statistics
        data = [2, 4, 4, 4, 5, 5, 7, 9]
        result = [
            statistics.mean(data), statistics.median(data), statistics.mode(data),
            statistics.pstdev(data), round(statistics.stdev(data), 4),
            statistics.quantiles(data, n=4),
        ]
        """,
        [5, 4.5, 4, 2.0, 2.1381, [4.0, 4.5, 6.5]],
    ),
}


def run(source: str) -> JsonValue:
    return run_tool(compile_tool(textwrap.dedent(source)), {}, http=None)[0]


@pytest.mark.parametrize(("source", "expected"), EVERYDAY.values(), ids=EVERYDAY)
def test_everyday_code_runs(source: str, expected: JsonValue) -> None:
    assert run(source) == expected


def test_an_augmented_assignment_names_what_it_cannot_change() -> None:
    with pytest.raises(PolicyError) as caught:
        run("import math\nmath.pi += 1")
    assert caught.value.kind == "runtime_error"
    assert "cannot change a 'Facade'" in caught.value.message
    assert caught.value.line == 2


def test_private_names_are_the_tools_own() -> None:
    source = """
        _cache = {}
        def _remember(key, value):
            _cache[key] = value
            return value
        _remember("a", 1)
        result = _cache
    """
    assert run(source) == {"a": 1}


@pytest.fixture
async def pool() -> AsyncIterator[SandboxPool]:
    async with SandboxPool(SandboxLimits(cpu_seconds=20, memory_mb=256), max_concurrency=2) as pool:
        yield pool


@pytest.mark.anyio
async def test_the_battery_runs_in_a_sandbox_process(pool: SandboxPool) -> None:
    for source, expected in EVERYDAY.values():
        outcome = await pool.run(textwrap.dedent(source), {}, timeout=20)
        assert outcome == SandboxRun(expected, "")
