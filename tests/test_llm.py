"""The LLM seam: the scripted fake, structured-reply validation, backend selection, and the real llama.cpp backend.

Tests marked ``model`` load the real Qwen2.5-Coder-0.5B GGUF (``make test-model`` fetches it); they use a
2048-token context, one thread and short replies so the whole set stays around a minute on two cores. One
thread, because llama.cpp's threads spin at barriers: next to another busy process, 2 threads made the 0.5B
model 5x slower than 1 (measured for ``rcp.slots``), and tests often share the machine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from enum import StrEnum
from typing import Literal

import pytest
import pytest_asyncio
from pydantic import BaseModel, Field

from rcp.errors import ConfigError, InfrastructureError, ModelMissingError, ModelOutputError
from rcp.llm import (
    GRAMMAR_MAX_REPEAT,
    LLM,
    ChatMessage,
    Generation,
    LlamaCppLLM,
    ScriptedLLM,
    create_llm,
    grammar_schema,
)
from rcp.settings import PROJECT_ROOT, load_settings
from rcp.slots import HostSlots

TEST_MODEL = PROJECT_ROOT / "models" / "qwen2.5-coder-0.5b-instruct.gguf"


# --- schemas used below ---------------------------------------------------------------------------------------


class Decision(BaseModel):
    reason: str = Field(max_length=200)
    action: Literal["direct", "decompose"]


class Part(BaseModel):
    name: str = Field(pattern=r"^[a-z_][a-z0-9_]*$", max_length=40)
    signature: str = Field(max_length=120)
    behaviour: str = Field(max_length=160)


class Plan(BaseModel):
    parts: list[Part] = Field(min_length=2, max_length=4)


class Function(BaseModel):
    function_name: str = Field(pattern=r"^[a-z_][a-z0-9_]*$", max_length=40)
    code: str = Field(max_length=600)


class Review(BaseModel):
    passed: bool
    score: int = Field(ge=0, le=10)
    issues: list[str] = Field(max_length=3)


class Language(StrEnum):
    python = "python"
    rust = "rust"
    go = "go"


class Pick(BaseModel):
    language: Language
    note: str | None = Field(default=None, max_length=80)


class Tree(BaseModel):
    name: str
    children: list[Tree] = Field(default_factory=list, max_length=3)


class Documented(BaseModel):
    """Field names that are also JSON-schema keywords must survive the rewrite."""

    title: str
    description: str = Field(description="described")
    default: int = 0


class LongCode(BaseModel):
    code: str = Field(max_length=20000)
    lines: list[str] = Field(max_length=5000)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# --- ScriptedLLM ----------------------------------------------------------------------------------------------


async def test_scripted_first_matching_rule_answers_and_last_reply_repeats():
    llm = ScriptedLLM([{"match": r"\[rcp:decide\]", "replies": ["d1", "d2"]},
                       {"match": "plan", "replies": ["p1"]},
                       {"match": "", "replies": ["anything"]}])
    assert await llm.chat(user("[rcp:decide] plan this")) == "d1", "rules are tried in order; the first match wins"
    assert await llm.chat(user("[rcp:decide] again")) == "d2"
    assert await llm.chat(user("[rcp:decide] and again")) == "d2", "the last reply of a rule repeats"
    assert await llm.chat(user("a plan")) == "p1"
    assert await llm.chat(user("a plan")) == "p1"
    assert await llm.chat(user("something else")) == "anything"


async def test_scripted_records_prompts_and_stats():
    llm = ScriptedLLM(replies=["ok"])
    msgs = [ChatMessage(role="system", content="be brief"), {"role": "user", "content": "hello there"}]
    await llm.chat(msgs)
    await llm.chat(user("second"))
    assert [[m.content for m in p] for p in llm.prompts] == [["be brief", "hello there"], ["second"]]
    assert all(isinstance(m, ChatMessage) for p in llm.prompts for m in p)
    assert [c.kind for c in llm.calls] == ["chat", "chat"]
    assert llm.calls[0].prompt_tokens == len("be brief\nhello there") // 4
    assert llm.total_tokens == sum(c.prompt_tokens + c.completion_tokens for c in llm.calls) > 0


async def test_chat_many_asks_one_after_another_by_default_each_reply_with_its_calls_stats():
    llm = ScriptedLLM([{"match": "a", "replies": ["A"]}, {"match": "b", "replies": ["B"]}])
    replies = await llm.chat_many([(user("a"), None), (user("b"), 0.9)])
    assert [r.text for r in replies] == ["A", "B"] and llm.together == [2]
    assert [r.stats for r in replies] == llm.calls and [c.temperature for c in llm.calls] == [llm.temperature, 0.9]


async def test_scripted_dict_replies_are_sent_as_json():
    llm = ScriptedLLM(replies=[{"reason": "one function", "action": "direct"}])
    assert json.loads(await llm.chat(user("x"))) == {"reason": "one function", "action": "direct"}
    decision = await llm.structured(user("x"), Decision)
    assert decision == Decision(reason="one function", action="direct")


async def test_scripted_without_matching_rule_fails_loudly():
    llm = ScriptedLLM([{"match": "^only this$", "replies": ["x"]}])
    with pytest.raises(AssertionError, match="no rule matching prompt"):
        await llm.chat(user("something else"))
    with pytest.raises(ValueError):
        ScriptedLLM()


async def test_scripted_delay_is_awaited_not_blocking():
    llm = ScriptedLLM([{"match": "", "replies": ["slow"], "delay": 0.2}])
    started = time.perf_counter()
    replies = await asyncio.gather(*(llm.chat(user(str(i))) for i in range(3)))
    assert replies == ["slow"] * 3
    assert 0.2 <= time.perf_counter() - started < 0.5, "three delayed replies overlap (0.6 s if they queued)"


async def test_scripted_reply_ends_at_the_first_line_end_where_it_is_enough():
    llm = ScriptedLLM(replies=["one\ntwo\nthree\nfour\n"])
    seen: list[str] = []

    def enough(so_far: str) -> bool:
        seen.append(so_far)
        return so_far.count("\n") == 2

    assert await llm.chat(user("count"), enough=enough) == "one\ntwo\n"
    assert seen == ["one\n", "one\ntwo\n"] and llm.calls[-1].finish == "enough"
    assert await llm.chat(user("count"), enough=lambda so_far: False) == "one\ntwo\nthree\nfour\n"


def test_scripted_from_file(tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": [{"match": "decide", "replies": [{"reason": "r", "action": "direct"}]},
                                            {"replies": ["fallback"]}]}))
    llm = ScriptedLLM.from_file(script)
    assert [r.match for r in llm.rules] == ["decide", ""]
    bad = tmp_path / "bad.json"
    bad.write_text('{"rules": []}')
    for path in (bad, tmp_path / "missing.json"):
        with pytest.raises(ConfigError) as err:
            ScriptedLLM.from_file(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


# --- structured replies -------------------------------------------------------------------------------------


async def test_structured_accepts_json_wrapped_in_prose_and_raw_newlines():
    reply = '{"function_name": "add", "code": "def add(a, b):\n    return a + b"}'
    llm = ScriptedLLM(replies=[f"Sure! ```json\n{reply}\n```"])
    reply = await llm.structured(user("write add"), Function)
    assert reply.code == "def add(a, b):\n    return a + b", "a raw newline inside a JSON string is kept"
    assert llm.calls[-1].kind == "structured" and llm.calls[-1].ok


@pytest.mark.parametrize("reply, where", [
    ("I think we should decompose.", "not JSON"),
    ('{"reason": "because", "action": "direct"', "not JSON"),
    ('{"reason": "because", "action": "maybe"}', "action"),
    ('{"action": "direct"}', "reason"),
    ('{"reason": "' + "x" * 201 + '", "action": "direct"}', "reason"),
    ('{"parts": []}', "reason"),
])
async def test_structured_rejects_bad_replies_as_retryable_model_errors(reply, where):
    llm = ScriptedLLM(replies=[reply])
    with pytest.raises(ModelOutputError) as err:
        await llm.structured(user("decide"), Decision)
    assert where in str(err.value) and "Decision" in str(err.value)
    assert err.value.raw == reply, "the raw reply travels with the error so a retry can show it"
    assert llm.calls[-1].ok is False
    assert "\n" not in str(err.value)


async def test_structured_names_a_wrong_shape_inside_a_list():
    llm = ScriptedLLM(replies=[{"parts": [{"name": "a", "signature": "def a():", "behaviour": "x"},
                                          {"name": "Not Valid", "signature": "def b():", "behaviour": "y"}]}])
    with pytest.raises(ModelOutputError, match=r"parts\.1\.name"):
        await llm.structured(user("plan"), Plan)


class _CutOff(LLM):
    """A backend whose reply hit max_tokens, as llama.cpp reports it."""

    async def _generate(self, messages, *, max_tokens, temperature, json_schema, enough=None) -> Generation:
        return Generation(text='{"reason": "because it is', completion_tokens=max_tokens, finish_reason="length")


async def test_structured_says_when_the_reply_was_cut_off():
    with pytest.raises(ModelOutputError, match="cut off at max_tokens"):
        await _CutOff("cut").structured(user("decide"), Decision, max_tokens=16)


# --- grammar schemas ----------------------------------------------------------------------------------------


def _refs(node) -> list[str]:
    text = json.dumps(node)
    return re.findall(r'"\$ref": "([^"]+)"', text)


@pytest.mark.parametrize("schema", [Decision, Plan, Function, Review, Pick, Tree, Documented, LongCode])
def test_grammar_schema_converts_every_construct(schema):
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    prepared = grammar_schema(schema.model_json_schema())
    gbnf = json_schema_to_gbnf(json.dumps(prepared))
    assert "root ::=" in gbnf
    for name in schema.model_fields:
        assert f'\\"{name}\\"' in gbnf, f"property {name} must be in the grammar"


def test_grammar_schema_inlines_refs_enums_and_keeps_keyword_named_properties():
    plan = grammar_schema(Plan.model_json_schema())
    assert _refs(plan) == [] and "$defs" not in plan
    assert plan["properties"]["parts"]["items"]["properties"]["name"]["pattern"] == r"^[a-z_][a-z0-9_]*$"
    assert plan["properties"]["parts"]["minItems"] == 2 and plan["properties"]["parts"]["maxItems"] == 4
    pick = grammar_schema(Pick.model_json_schema())
    assert pick["properties"]["language"]["enum"] == ["python", "rust", "go"]
    documented = grammar_schema(Documented.model_json_schema())
    assert set(documented["properties"]) == {"title", "description", "default"}
    assert "description" not in documented["properties"]["description"], "annotations are dropped, names kept"


def test_grammar_schema_keeps_recursion_under_an_inlined_root():
    schema = Tree.model_json_schema()
    assert "$ref" in schema, "pydantic makes a recursive model's root a $ref, which the converter cannot resolve"
    tree = grammar_schema(schema)
    assert "$ref" not in tree and tree["properties"]["children"]["items"] == {"$ref": "#/$defs/Tree"}
    assert tree["$defs"]["Tree"]["properties"]["name"] == {"type": "string"}


def test_grammar_schema_drops_bounds_too_large_for_llama_cpp():
    long = grammar_schema(LongCode.model_json_schema())
    assert "maxLength" not in long["properties"]["code"] and "maxItems" not in long["properties"]["lines"]
    decision = grammar_schema(Decision.model_json_schema())
    assert decision["properties"]["reason"]["maxLength"] == 200 <= GRAMMAR_MAX_REPEAT


def test_grammar_schema_rejects_remote_refs():
    with pytest.raises(ValueError, match="unsupported \\$ref"):
        grammar_schema({"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}})


# --- backend selection and loading errors ---------------------------------------------------------------------


async def test_create_llm_scripted_backend(tmp_path):
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"rules": [{"replies": ["hi"]}]}))
    llm = await create_llm(load_settings({"llm_backend": "scripted", "llm_script": str(script)}, environ={}))
    assert isinstance(llm, ScriptedLLM) and await llm.chat(user("x")) == "hi"
    await llm.close()


async def test_create_llm_scripted_without_script_is_a_config_error():
    with pytest.raises(ConfigError, match="LLM_SCRIPT"):
        await create_llm(load_settings({"llm_backend": "scripted", "llm_script": ""}, environ={}))


async def test_missing_model_names_the_fetch_command(tmp_path):
    settings = load_settings({"llm_backend": "llama", "model_path": str(tmp_path / TEST_MODEL.name)}, environ={})
    with pytest.raises(ModelMissingError) as err:
        await create_llm(settings)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / TEST_MODEL.name) in message
    assert "python -m rcp.models fetch qwen2.5-coder-0.5b-instruct" in message


async def test_unknown_missing_model_says_what_to_do(tmp_path):
    with pytest.raises(ModelMissingError, match="rcp.models list"):
        await LlamaCppLLM.create(tmp_path / "my-own.gguf")


@pytest.mark.parametrize("content", [b"", b"GGUF" + bytes(range(256)) * 8])
async def test_unloadable_model_file_says_to_refetch(tmp_path, content):
    path = tmp_path / TEST_MODEL.name
    path.write_bytes(content)
    with pytest.raises(InfrastructureError) as err:
        await LlamaCppLLM.create(path, n_ctx=512)
    message = str(err.value)
    assert not isinstance(err.value, ModelMissingError) and "\n" not in message
    assert "python -m rcp.models verify" in message and "python -m rcp.models fetch" in message


# --- the real model -------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def small_model():
    if not TEST_MODEL.is_file():
        pytest.skip(f"{TEST_MODEL.name} not present; fetch it with: python -m rcp.models fetch {TEST_MODEL.stem}")
    llm = await LlamaCppLLM.create(TEST_MODEL, n_threads=1, n_ctx=2048, max_tokens=64, temperature=0.0, seed=7)
    yield llm
    await llm.close()


SYSTEM = "You are a senior Python engineer. Reply in JSON only."

STRUCTURED_CASES = [
    (Decision, "Task: write `def is_even(n: int) -> bool`. Should it be written directly or decomposed into "
               "several functions? Give a one-sentence reason and the action.", 80),
    (Plan, "Split this task into 2 to 4 functions, each with a snake_case name, a def signature and a short "
           "behaviour: a command-line tool that reads a CSV file, computes the mean of each numeric column and "
           "prints a table.", 400),
    (Function, "Write the Python function `add(a, b)` that returns the sum of two numbers. Give its name and its "
               "code.", 120),
    (Review, "Review this code: `def div(a, b): return a / b`. Did it pass review, what score from 0 to 10, and "
             "up to 3 issues?", 120),
    (Pick, "Which programming language is pandas written for? Choose one; add a short note.", 60),
]


@pytest.mark.model
@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("schema, prompt, max_tokens", STRUCTURED_CASES, ids=[c[0].__name__ for c in STRUCTURED_CASES])
async def test_real_model_structured_replies_fit_their_schema(small_model, schema, prompt, max_tokens):
    before = len(small_model.calls)
    reply = await small_model.structured([{"role": "system", "content": SYSTEM}, *user(prompt)], schema,
                                         max_tokens=max_tokens)
    assert isinstance(reply, schema)
    stats = small_model.calls[before]
    assert stats.kind == "structured" and stats.ok
    assert stats.prompt_tokens > 20 and 0 < stats.completion_tokens <= max_tokens and stats.seconds > 0
    if isinstance(reply, Plan):
        assert 2 <= len(reply.parts) <= 4 and len({p.name for p in reply.parts}) == len(reply.parts)


@pytest.mark.model
@pytest.mark.asyncio(loop_scope="module")
async def test_real_model_chat_returns_text_and_records_stats(small_model):
    text = await small_model.chat(user("Write a one-line Python expression that reverses the string s."),
                                  max_tokens=32)
    assert isinstance(text, str) and text.strip()
    stats = small_model.calls[-1]
    assert stats.kind == "chat" and stats.prompt_tokens > 10 and 0 < stats.completion_tokens <= 32
    assert stats.seconds > 0


@pytest.mark.model
@pytest.mark.asyncio(loop_scope="module")
async def test_real_model_writes_several_replies_together(small_model, caplog):
    """chat_many (rcp.batched): a prompt shared by three replies is decoded once; distinct prompts in one group
    are each answered; the context is left as an ordinary call needs it."""
    ask = user("Write a Python function that returns the square of x.")
    greedy = await small_model.chat(ask)
    before = len(small_model.calls)
    with caplog.at_level(logging.DEBUG, logger="rcp.llm"):
        replies = await small_model.chat_many([(ask, 0.0), (ask, 1.0), (ask, 1.0)], max_tokens=48)
    stats = small_model.calls[before:]
    assert [r.stats for r in replies] == stats and [s.together for s in stats] == [3, 3, 3]
    # Each reply logged as a call (what bench.swarm reads), over the group's whole time.
    logged = [m for r in caplog.records if (m := re.match(r"chat call: (\d+)\+(\d+) tokens in ([\d.]+) s \(3 together",
                                                          r.getMessage()))]
    assert [(int(m[1]), int(m[2])) for m in logged] == [(s.prompt_tokens, s.completion_tokens) for s in stats]
    assert all(abs(float(m[3]) - 3 * stats[0].seconds) <= 0.051 for m in logged)
    assert all(r.text.strip() for r in replies) and all(0 < s.completion_tokens <= 48 for s in stats)
    assert stats[0].prompt_tokens > 10 and stats[1].prompt_tokens == stats[2].prompt_tokens == 0
    assert await small_model.chat(ask) == greedy, "after chat_many an ordinary call reads its prompt again"
    fruits = await small_model.chat_many([(user("Reply with the single word: apple"), 0.0),
                                          (user("Reply with the single word: banana"), 0.0)], max_tokens=8)
    assert "apple" in fruits[0].text.lower() and "banana" in fruits[1].text.lower()
    lines = await small_model.chat_many([(ask, 0.0), (ask, 1.0)], enough=lambda text: True)
    assert all(r.stats.finish == "enough" and "\n" in r.text and "\n" not in r.text.rstrip() for r in lines)
    # Groups of at most batched.MAX_SEQUENCES replies whose prompt and max_tokens each fit the context (2048).
    before = len(small_model.calls)
    await small_model.chat_many([(user("Say hi."), 0.0)] * 5, max_tokens=600)
    assert [s.together for s in small_model.calls[before:]] == [3, 3, 3, 2, 2]


@pytest.mark.model
@pytest.mark.asyncio(loop_scope="module")
async def test_real_model_replies_together_end_where_a_long_prompt_leaves_no_room(small_model):
    """A prompt that leaves fewer cells than max_tokens: each reply ends there ("length"), as one chat call's would,
    instead of llama_decode failing on a full context (2048 cells here)."""
    ask = user("Ignore these words: " + "apple " * 1800 + "\nNow count from 1 to 500, one number per line.")
    replies = await small_model.chat_many([(ask, 0.0), (ask, 0.0)], max_tokens=600)
    assert [r.stats.together for r in replies] == [1, 1]  # prompt + 600 tokens fit once, not twice
    room = [2048 - r.stats.prompt_tokens for r in replies]
    assert all(0 < r <= 300 for r in room) and [r.stats.finish for r in replies] == ["length", "length"]
    assert [r.stats.completion_tokens for r in replies] == room


@pytest.mark.model
@pytest.mark.asyncio(loop_scope="module")
async def test_real_model_keeps_the_event_loop_responsive(small_model):
    """Heartbeats and RPC share the loop with generation, so the loop must tick while the model works."""
    ticks: list[float] = []

    async def ticker():
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.02)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    await small_model.chat(user("Count from 1 to 30, separated by spaces."), max_tokens=48)
    ended = time.perf_counter()
    task.cancel()
    during = [t for t in ticks if started <= t <= ended]
    gaps = [b - a for a, b in zip(during, during[1:], strict=False)]
    assert ended - started > 0.5, "the generation must be long enough to say something"
    assert len(during) >= (ended - started) / 0.02 * 0.5, f"only {len(during)} ticks in {ended - started:.1f} s"
    assert max(gaps) < 0.25, f"the loop stalled for {max(gaps):.2f} s"


@pytest.mark.model
@pytest.mark.asyncio(loop_scope="module")
async def test_real_model_serialises_concurrent_and_cancelled_calls(small_model):
    """Overlapping calls share one llama context: they must queue, even when a caller gives up."""
    slow = asyncio.create_task(small_model.chat(user("List ten fruits."), max_tokens=40))
    await asyncio.sleep(0.3)
    started = time.perf_counter()
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert time.perf_counter() - started < 0.2, "a cancelled caller returns at once"
    first, second = await asyncio.gather(small_model.chat(user("Say yes."), max_tokens=4),
                                         small_model.chat(user("Say no."), max_tokens=4))
    assert first.strip() and second.strip()


@pytest.mark.model
@pytest.mark.asyncio(loop_scope="module")
async def test_real_model_abandoned_generation_stops_at_once(small_model):
    """A caller that gives up (a task out of time) frees the model within a token, not after max_tokens."""
    long = asyncio.create_task(small_model.chat(user("List one hundred fruits, one per line."), max_tokens=600))
    await asyncio.sleep(1.0)  # generating by now
    long.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long
    started = time.perf_counter()
    assert (await small_model.chat(user("Say yes."), max_tokens=4)).strip()
    waited = time.perf_counter() - started
    # 600 tokens of the 0.5B on one thread take ~30 s here; the next call must not wait for them.
    assert waited < 5, f"the next call waited {waited:.1f} s for an abandoned generation"
    stats = small_model.calls[-1]
    assert 0 < stats.completion_tokens <= 4 and stats.prompt_tokens > 10


@pytest.mark.model
@pytest.mark.asyncio(loop_scope="module")
async def test_real_model_reply_ends_where_the_caller_has_enough(small_model):
    """``enough`` is asked at each line end of the stream, and the generation ends at the first yes."""
    text = await small_model.chat(user("List twenty fruits, one per line."), max_tokens=200,
                                  enough=lambda so_far: so_far.count("\n") >= 3)
    stats = small_model.calls[-1]
    # The token ending the third line may hold two line ends.
    assert stats.finish == "enough" and 3 <= text.count("\n") <= 4, text
    # Twenty fruits are 60+ tokens; three lines of them a dozen or so.
    assert 0 < stats.completion_tokens <= 40, (stats.completion_tokens, text)


@pytest.mark.model
@pytest.mark.asyncio(loop_scope="module")
async def test_real_model_prompt_too_long_is_a_model_output_error(small_model):
    with pytest.raises(ModelOutputError, match="context"):
        await small_model.chat(user("word " * 2500), max_tokens=8)


@pytest.mark.model
@pytest.mark.asyncio(loop_scope="module")
async def test_real_model_checks_grammars_before_sampling(small_model):
    for schema in (Tree, LongCode, Documented):
        small_model._checked_grammar(schema.model_json_schema())

    class Unparseable(BaseModel):
        word: str = Field(pattern=r"^[a-z]{1,3000}$")

    # The converter accepts this pattern, llama.cpp's parser does not; unchecked, sampling would segfault.
    with pytest.raises(ValueError, match="cannot parse the grammar"):
        await small_model.structured(user("a word"), Unparseable)


@pytest.mark.model
async def test_create_llm_loads_the_llama_backend_and_closes_twice():
    if not TEST_MODEL.is_file():
        pytest.skip(f"{TEST_MODEL.name} not present")
    settings = load_settings({"llm_backend": "llama", "model_path": str(TEST_MODEL), "n_ctx": 2048, "n_threads": 1,
                              "max_tokens": 16, "temperature": 0.0}, environ={})
    llm = await create_llm(settings)
    assert isinstance(llm, LlamaCppLLM) and llm.n_ctx == 2048 and llm.max_tokens == 16
    assert (await llm.chat(user("Say hello."))).strip()
    await llm.close()
    await llm.close()
    with pytest.raises(RuntimeError, match="closed"):
        await llm.chat(user("again"))



@pytest.mark.model
async def test_real_model_widens_to_free_slots_and_narrows_when_they_are_taken(tmp_path):
    """A lone generation runs with the threads of every free slot; with another slot held it keeps one thread."""
    if not TEST_MODEL.is_file():
        pytest.skip(f"{TEST_MODEL.name} not present")
    import llama_cpp

    slots = HostSlots(2, tmp_path)
    llm = await LlamaCppLLM.create(TEST_MODEL, n_threads=1, n_ctx=1024, max_tokens=8, temperature=0.0, seed=7,
                                   slots=slots, n_threads_max=2)
    try:
        assert (await llm.chat(user("Say hello."))).strip()
        assert llm.threads_used == 2 and llama_cpp.llama_n_threads(llm._llama._ctx.ctx) == 2
        with slots.hold(timeout=1):  # another node generating: one slot left
            assert (await llm.chat(user("Say hello again."))).strip()
            assert llm.threads_used == 1 and llama_cpp.llama_n_threads(llm._llama._ctx.ctx) == 1
    finally:
        await llm.close()
