"""rcp.fuzz: seeded calls made from a task's bullet signatures, run as probes (real interpreter, no model)."""

from __future__ import annotations

import ast
from textwrap import dedent as d

from fakes import LocalPytestSandbox

from rcp import fuzz, probe

CACHE_TASK = d("""\
    Write a Python module cache.py with a class `Cache`:

    - `__init__(self, capacity: int)`: at most `capacity` entries.
    - `put(self, key: str, value: int) -> None`: stores it.
    - `get(self, key: str, default=None)`: the value, or `default`.
    - `__len__(self) -> int`: the number of entries.

    Keys such as `"apple"` are strings.
    """)
SPANS_TASK = d("""\
    Write a Python module spans.py with these functions:

    - `merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]`: merged spans.
    - `width(span: tuple[int, int], scale: float = 1.0) -> float`: its width.
    - `label(names: dict[str, int] | None) -> str`: a label.
    """)


def test_one_class_gets_sequences_of_method_calls_on_one_object():
    text = fuzz.calls(CACHE_TASK, "cache", cls="Cache", cases=3, steps=4)
    tree = ast.parse(text)
    assert ast.unparse(tree.body[0]) == "from cache import Cache"
    tests = [f for f in tree.body if isinstance(f, ast.FunctionDef)]
    assert [f.name for f in tests] == ["test_rcp_fuzz_0", "test_rcp_fuzz_1", "test_rcp_fuzz_2"]
    for f in tests:
        first, *calls, last = f.body
        init = first.value
        assert init.func.id == "Cache" and isinstance(ast.literal_eval(init.args[0]), int)
        assert len(calls) == 4 and ast.unparse(last) == "assert len(obj) == None"
        for c in calls:  # a method the task names, on the one object, compared with None (the probe records it)
            call = c.test.left
            assert call.func.value.id == "obj" and call.func.attr in ("put", "get")
            if call.func.attr == "put":
                key, value = (ast.literal_eval(a) for a in call.args)
                assert isinstance(key, str) and isinstance(value, int)
    # Strings come from a small pool that holds the strings the task quotes.
    assert fuzz.quoted_strings(CACHE_TASK) == ["", "a", "ab c", "Hello, world!", *fuzz.TEXTS, "apple"]


def test_functions_get_calls_typed_by_their_annotations_and_the_same_seed_gives_the_same_calls():
    text = fuzz.calls(SPANS_TASK, "spans", cases=5)
    assert text == fuzz.calls(SPANS_TASK, "spans", cases=5) != fuzz.calls(SPANS_TASK, "spans", cases=5, seed=1)
    tree = ast.parse(text)
    assert ast.unparse(tree.body[0]) == "from spans import merge, width, label"
    merge, width, label = (f for f in tree.body if isinstance(f, ast.FunctionDef))
    for stmt in merge.body:
        spans = ast.literal_eval(stmt.test.left.args[0])
        assert isinstance(spans, list) and all(isinstance(s, tuple) and len(s) == 2 for s in spans)
    for stmt in width.body:
        args = [ast.literal_eval(a) for a in stmt.test.left.args]
        assert isinstance(args[0], tuple) and (len(args) == 1 or isinstance(args[1], float))
    for stmt in label.body:
        value = ast.literal_eval(stmt.test.left.args[0])
        assert value is None or isinstance(value, dict)
    assert len(merge.body) == len(width.body) == len(label.body) == 5


def test_no_signatures_no_calls():
    assert fuzz.calls("Write a function that adds two numbers.", "solution") == ""
    assert fuzz.calls("- `Thing`: a class with no methods listed", "m", cls="Thing") == ""


async def test_the_calls_run_as_probes_and_tell_drafts_apart():
    right = "def width(span, scale=1.0):\n    return (span[1] - span[0]) * scale\n"
    wrong = "def width(span, scale=1.0):\n    return abs(span[1] - span[0]) * scale\n"
    task = "Write spans.py:\n\n- `width(span: tuple[int, int], scale: float = 1.0) -> float`: end minus start.\n"
    probes = probe.probes(fuzz.calls(task, "spans"), ["width"])
    assert len(probes.positions) == fuzz.CASES
    seen = await probe.observe(LocalPytestSandbox(), "spans", [right, right, wrong], probes, timeout=60)
    scores = probe.agreement(seen, probes.positions)
    # Random spans include start > end, where the two programs differ: the majority's program scores higher.
    assert scores[0] == scores[1] > scores[2]


async def test_text_calls_tell_word_rules_apart():
    task = 'Write words.py:\n\n- `word_count(text: str) -> int`: words are `re.findall(r"[a-z]+", text.lower())`.\n'
    right = "import re\n\ndef word_count(text):\n    return len(re.findall(r'[a-z]+', text.lower()))\n"
    wrong = "import re\n\ndef word_count(text):\n    return len(re.findall(r'\\b[a-z]+\\b', text.lower()))\n"
    probes = probe.probes(fuzz.calls(task, "words"), ["word_count"])
    seen = await probe.observe(LocalPytestSandbox(), "words", [right, right, wrong], probes, timeout=60)
    scores = probe.agreement(seen, probes.positions)
    # "3rd" and "code2go" hold 1 and 2 words to the task's rule, none to a rule of whole words: the majority wins.
    assert scores[0] == scores[1] > scores[2]


def test_a_class_and_functions_get_the_functions_called_too():
    task = d("""\
        Write a Python module shortener.py with two functions and a class.

        - `encode_base62(n: int) -> str`: `n` in base 62.
        - `decode_base62(s: str) -> int`: the inverse.
        - class `URLShortener` with:
          - `shorten(self, url: str) -> str`: a code.
        """)
    text = fuzz.calls(task, "shortener", cls="URLShortener", cases=3, steps=2)
    tree = ast.parse(text)
    assert ast.unparse(tree.body[0]) == "from shortener import URLShortener, encode_base62, decode_base62"
    tests = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    assert list(tests) == [*(f"test_rcp_fuzz_{k}" for k in range(3)), "test_rcp_fuzz_encode_base62",
                           "test_rcp_fuzz_decode_base62"]
    assert all(ast.unparse(c.test.left.func) == "obj.shorten" for c in tests["test_rcp_fuzz_0"].body[1:])
    for name, kind in (("encode_base62", int), ("decode_base62", str)):
        calls = [c.test.left for c in tests[f"test_rcp_fuzz_{name}"].body]
        assert len(calls) == 3 and all(c.func.id == name and isinstance(ast.literal_eval(c.args[0]), kind)
                                       for c in calls)


async def test_dates_are_given_as_dates_and_their_calls_tell_drafts_apart():
    task = d("""\
        Write dateutils.py:

        - `is_business_day(d: datetime.date) -> bool`: Monday to Friday.
        - `next_day(d: date) -> date`: the day after.
        """)
    text = fuzz.calls(task, "dateutils")
    tree = ast.parse(text)
    assert [ast.unparse(s) for s in tree.body[:2]] == ["import datetime",
                                                      "from dateutils import is_business_day, next_day"]
    namespace = {"datetime": __import__("datetime")}
    for f in (f for f in tree.body if isinstance(f, ast.FunctionDef)):
        for stmt in f.body:
            assert eval(ast.unparse(stmt.test.left.args[0]), namespace) in fuzz.DATES
    assert {ast.unparse(s.test.left.args[0]) for s in tree.body[2].body} & {"datetime.date(2024, 3, 2)",
                                                                          "datetime.date(2024, 3, 3)"}
    right = "def is_business_day(d):\n    return d.weekday() < 5\n\ndef next_day(d):\n    return d\n"
    wrong = "def is_business_day(d):\n    return d.weekday() < 6\n\ndef next_day(d):\n    return d\n"
    probes = probe.probes(text, ["is_business_day", "next_day"])
    seen = await probe.observe(LocalPytestSandbox(), "dateutils", [right, right, wrong], probes, timeout=60)
    scores = probe.agreement(seen, probes.positions)
    assert scores[0] == scores[1] > scores[2]  # a Saturday among the calls: the majority's program scores higher
