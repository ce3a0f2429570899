"""The LLM seam: an async chat interface with free-text and schema-constrained structured calls.

``LLM`` holds everything the backends share: timing and token accounting per call, and the parsing and
pydantic validation of structured replies (invalid output raises the retryable ``ModelOutputError``).
Backends implement only ``_generate``:

* ``LlamaCppLLM``: llama-cpp-python on a local GGUF. The blocking call runs in a worker thread, so the
  process's event loop keeps serving heartbeats and RPC; one generation at a time per loaded model.
  Structured calls pass the pydantic JSON schema to llama.cpp's grammar-constrained decoding. ``chat_many``
  generates several replies together (``rcp.batched``); other backends answer them one after another.
  ``grammar_schema`` rewrites a pydantic schema into the subset llama-cpp-python's converter handles.
* ``ScriptedLLM``: canned replies for tests and for swarm tests that exercise the protocol, selected by
  ``LLM_BACKEND = "scripted"``. It records every prompt it was asked.

``create_llm(settings)`` builds the backend the settings name. Deliberately left out: prompt wording
(``rcp.prompts``), retries (callers decide), streaming tokens, interrupting a generation that has started.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import random
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

from pydantic import BaseModel, Field, ValidationError

from rcp.errors import ConfigError, InfrastructureError, ModelMissingError, ModelOutputError
from rcp.slots import HostSlots, default_slots, widened_slots

if TYPE_CHECKING:
    from rcp.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class Generation(BaseModel):
    """What a backend returns for one call."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"


class CallStats(BaseModel):
    """One LLM call as recorded for traces and benchmarks."""

    kind: Literal["chat", "structured"]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    temperature: float = 0.0
    ok: bool = True
    finish: str = "stop"  # "length" at max_tokens, "enough" when the caller's predicate ended it, "abandoned"
    together: int = 1  # replies generated in the same decode steps (rcp.batched); seconds are the group's share


class Replied(NamedTuple):
    """One reply of ``LLM.chat_many`` and its call's stats (None when the backend recorded none)."""

    text: str
    stats: CallStats | None


Messages = Sequence[ChatMessage | dict[str, str]]
# Asked about a reply so far each time it completes a line; True ends the generation there (finish "enough").
Enough = Callable[[str], bool]


def _as_messages(messages: Messages) -> list[ChatMessage]:
    return [m if isinstance(m, ChatMessage) else ChatMessage(**m) for m in messages]


def _json_slice(text: str) -> str:
    """The outermost {...} of a reply; models sometimes wrap JSON in prose or code fences."""
    start, end = text.find("{"), text.rfind("}")
    return text[start:end + 1] if 0 <= start < end else text


class LLM(ABC):
    """Async chat model. Subclasses implement ``_generate``; callers use ``chat`` and ``structured``."""

    def __init__(self, name: str, *, max_tokens: int = 1024, temperature: float = 0.2) -> None:
        self.name = name
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.calls: list[CallStats] = []

    @abstractmethod
    async def _generate(self, messages: list[ChatMessage], *, max_tokens: int, temperature: float,
                        json_schema: dict[str, Any] | None, enough: Enough | None = None) -> Generation:
        """Produce one reply. With ``json_schema`` the reply should be JSON of that schema; with ``enough`` it ends
        at the first line end where ``enough(reply so far)`` is true."""

    async def chat(self, messages: Messages, *, max_tokens: int | None = None,
                   temperature: float | None = None, enough: Enough | None = None) -> str:
        """Free-text reply to a chat; ``enough`` ends it early, at a line end, once the caller has what it keeps
        (tokens after that are time other work waits for)."""
        gen = await self._timed("chat", _as_messages(messages), max_tokens, temperature, None, enough)
        return gen.text

    async def chat_many(self, asks: Sequence[tuple[Messages, float | None]], *, max_tokens: int | None = None,
                        enough: Enough | None = None) -> list[Replied]:
        """Replies to several chats, each at its temperature (None: the default). A backend that can generates
        them together (``LlamaCppLLM``: one decode step feeds every reply, see ``rcp.batched``); this default asks
        one after another. Every reply is a call in ``calls``."""
        replies = []
        for messages, temperature in asks:
            text = await self.chat(messages, max_tokens=max_tokens, temperature=temperature, enough=enough)
            replies.append(Replied(text, self.calls[-1] if self.calls else None))
        return replies

    async def structured(self, messages: Messages, schema: type[T], *, max_tokens: int | None = None,
                         temperature: float | None = None) -> T:
        """A validated ``schema`` instance; raises ``ModelOutputError`` (retryable) when the reply does not fit."""
        gen = await self._timed("structured", _as_messages(messages), max_tokens, temperature,
                                schema.model_json_schema(), None)
        hint = " (reply cut off at max_tokens)" if gen.finish_reason == "length" else ""
        try:
            # strict=False accepts raw newlines inside strings: llama.cpp's JSON grammar allows them and small
            # models put code there verbatim. Re-dumping keeps pydantic's JSON-mode validation rules.
            data = json.loads(_json_slice(gen.text), strict=False)
        except json.JSONDecodeError as e:
            self.calls[-1].ok = False
            raise ModelOutputError(f"model reply is not JSON for {schema.__name__}: {e}{hint}", raw=gen.text) from e
        try:
            return schema.model_validate_json(json.dumps(data))
        except ValidationError as e:
            self.calls[-1].ok = False
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "reply"
            raise ModelOutputError(f"model reply is not a valid {schema.__name__}: {where}: {first['msg']}{hint}",
                                   raw=gen.text) from e

    async def _timed(self, kind, messages, max_tokens, temperature, json_schema, enough) -> Generation:
        started = time.perf_counter()
        temperature = self.temperature if temperature is None else temperature
        gen = await self._generate(messages, max_tokens=max_tokens or self.max_tokens, temperature=temperature,
                                   json_schema=json_schema, enough=enough)
        stats = CallStats(kind=kind, prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens,
                          seconds=time.perf_counter() - started, temperature=temperature, finish=gen.finish_reason)
        self.calls.append(stats)
        logger.debug("%s call: %d+%d tokens in %.1f s%s", kind, stats.prompt_tokens, stats.completion_tokens,
                     stats.seconds, "" if stats.finish == "stop" else f" ({stats.finish})")
        return gen

    @property
    def total_tokens(self) -> int:
        return sum(c.prompt_tokens + c.completion_tokens for c in self.calls)

    async def close(self) -> None:  # noqa: B027 - optional hook: backends without resources keep it
        """Release the model. Safe to call twice."""


class ScriptRule(BaseModel):
    """Replies used when ``match`` (a regex) is found in the prompt; consumed in order, the last one repeats."""

    match: str = ""
    replies: list[str | dict[str, Any]] = Field(min_length=1)
    delay: float = Field(default=0.0, ge=0.0, description="seconds to wait before replying, to imitate slow work")


class Script(BaseModel):
    rules: list[ScriptRule] = Field(min_length=1)


class ScriptedLLM(LLM):
    """A fake model for tests: first rule whose ``match`` occurs in the prompt gives the reply.

    The prompt searched is every message's content joined by newlines. Dict replies are sent as JSON.
    Every prompt is kept in ``prompts`` so tests can assert on what was asked.
    """

    def __init__(self, rules: Sequence[ScriptRule | dict[str, Any]] | None = None, *,
                 replies: Sequence[str | dict[str, Any]] | None = None, name: str = "scripted") -> None:
        super().__init__(name)
        parsed = [r if isinstance(r, ScriptRule) else ScriptRule(**r) for r in rules or []]
        if replies:
            parsed.append(ScriptRule(match="", replies=list(replies)))
        if not parsed:
            raise ValueError("ScriptedLLM needs rules or replies")
        self.rules = parsed
        self._used = [0] * len(parsed)
        self.prompts: list[list[ChatMessage]] = []
        self.together: list[int] = []  # the number of asks of each chat_many call

    async def chat_many(self, asks: Sequence[tuple[Messages, float | None]], *, max_tokens: int | None = None,
                        enough: Enough | None = None) -> list[Replied]:
        self.together.append(len(asks))
        return await super().chat_many(asks, max_tokens=max_tokens, enough=enough)

    @classmethod
    def from_file(cls, path: Path) -> ScriptedLLM:
        try:
            script = Script.model_validate_json(Path(path).read_text())
        except (OSError, ValidationError) as e:
            raise ConfigError(f"LLM_SCRIPT {path} is not a readable script: {e}".splitlines()[0]) from e
        return cls(script.rules)

    async def _generate(self, messages, *, max_tokens, temperature, json_schema, enough=None) -> Generation:
        self.prompts.append(messages)
        prompt = "\n".join(m.content for m in messages)
        for i, rule in enumerate(self.rules):
            if re.search(rule.match, prompt):
                reply = rule.replies[min(self._used[i], len(rule.replies) - 1)]
                self._used[i] += 1
                if rule.delay:
                    await asyncio.sleep(rule.delay)
                text = reply if isinstance(reply, str) else json.dumps(reply)
                finish = "stop"
                if enough is not None:  # as a stream would end: at the first line end where it is enough
                    for end in (m.end() for m in re.finditer("\n", text)):
                        if enough(text[:end]):
                            text, finish = text[:end], "enough"
                            break
                return Generation(text=text, prompt_tokens=len(prompt) // 4, completion_tokens=len(text) // 4,
                                  finish_reason=finish)
        raise AssertionError(f"ScriptedLLM has no rule matching prompt: {prompt[-300:]!r}")


# --- llama.cpp backend ----------------------------------------------------------------------------------

# Keys that only document a schema; the grammar converter ignores them, so they are dropped to keep it small.
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "deprecated", "readOnly"})
# Keys whose values are literal JSON, not sub-schemas, and must not be rewritten.
_LITERALS = frozenset({"enum", "const", "required", "pattern", "format", "type"})
# Keys whose values map names to sub-schemas; the names are data (a property may be called "title").
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
# The converter spells out "at most N" as N nested optional groups. llama.cpp's parser accepts N = 1000 but
# rejects N = 2000 ("exceeds sane defaults", measured with 0.3.36), and a rejected grammar segfaults the first
# sampled token. Larger bounds are left to pydantic's validation afterwards (a retryable ModelOutputError).
GRAMMAR_MAX_REPEAT = 512


def grammar_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a pydantic JSON schema into the form llama-cpp-python's json-schema-to-grammar handles.

    * ``$ref``s into ``$defs`` are inlined. The converter resolves refs itself only when the root is not a
      ``$ref`` (a recursive root model fails with KeyError), and a failed conversion makes
      llama-cpp-python silently fall back to "any JSON", which would let a small model answer in any shape.
      Recursive references stay as ``$ref`` with the ``$defs`` they need, under an inlined root.
    * ``allOf`` with a single member (older pydantic's way to annotate a ``$ref``) is merged into its node;
      the converter's ``allOf`` support keeps only properties, dropping e.g. an enum.
    * ``maxLength``/``maxItems`` above ``GRAMMAR_MAX_REPEAT`` are dropped (see there); documentation keys
      go too. ``minimum``/``maximum`` are ignored by the converter and checked by pydantic afterwards.
    """
    defs: dict[str, Any] = schema.get("$defs") or schema.get("definitions") or {}
    recursive: set[str] = set()

    def def_name(ref: str) -> str:
        for prefix in ("#/$defs/", "#/definitions/"):
            if ref.startswith(prefix) and ref[len(prefix):] in defs:
                return ref[len(prefix):]
        raise ValueError(f"unsupported $ref {ref!r}: only local #/$defs/ references can become a grammar")

    def walk(node: Any, stack: frozenset[str]) -> Any:
        if isinstance(node, list):
            return [walk(item, stack) for item in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _ANNOTATIONS or key in ("$defs", "definitions", "$ref", "$schema"):
                continue
            if key in _LITERALS:
                out[key] = value
            elif key in _SCHEMA_MAPS:
                out[key] = {name: walk(sub, stack) for name, sub in value.items()}
            elif key in ("maxLength", "maxItems") and isinstance(value, int) and value > GRAMMAR_MAX_REPEAT:
                continue
            else:
                out[key] = walk(value, stack)
        if "$ref" in node:
            name = def_name(node["$ref"])
            if name in stack:
                recursive.add(name)
                return {"$ref": f"#/$defs/{name}", **out}
            out = {**walk(defs[name], stack | {name}), **out}
        all_of = out.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
            out = {**all_of[0], **{k: v for k, v in out.items() if k != "allOf"}}
        return out

    result = walk(schema, frozenset())
    kept: dict[str, Any] = {}
    while pending := recursive - kept.keys():
        for name in sorted(pending):
            kept[name] = walk(defs[name], frozenset({name}))
    if kept:
        result["$defs"] = kept
    return result


def _fetch_advice(path: Path) -> str:
    """What to do about a missing or damaged model file, for one-line error messages."""
    try:
        from rcp.models import fetch_hint
    except ImportError:  # the model catalogue is optional for this one message
        hint = f"python -m rcp.models fetch {path.stem}"
    else:
        hint = fetch_hint(path)
    # fetch_hint gives a command for catalogue files and a sentence for files it does not know.
    return f"fetch it with: {hint}" if hint.startswith("python ") else hint


def _builds_amx() -> bool:
    """Whether this llama.cpp build repacks weights for Intel AMX.

    Its AMX matmul segfaults on the first decode on this project's Xeon machines (llama.cpp issue #20824,
    reproduced with llama-cpp-python 0.3.36 built with GGML_NATIVE on a CPU with amx_int8).
    """
    import llama_cpp

    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


# Loading temporarily swaps a function in the llama_cpp module (see _load_llama); one load at a time.
_LOAD_LOCK = threading.Lock()


def _load_llama(path: Path, n_threads: int, n_ctx: int, seed: int | None) -> Any:
    """Blocking load of a GGUF file; runs in a worker thread."""
    import llama_cpp
    from llama_cpp import Llama

    from rcp import batched

    lib = llama_cpp.llama_cpp
    no_extra_buffers = _builds_amx()
    with _LOAD_LOCK:
        default_params = lib.llama_model_default_params
        default_context = lib.llama_context_default_params
        # Room for chat_many's sequences (rcp.batched); Llama() exposes no n_seq_max for a generating context.
        lib.llama_context_default_params = batched.context_params(default_context)
        if no_extra_buffers:
            # Llama() exposes no flag for llama_model_params.use_extra_bufts, and AMX's buffer is one of
            # those "extra" buffer types, so the defaults are patched for the duration of this load only.
            def params_without_extra_buffers():
                params = default_params()
                params.use_extra_bufts = False
                return params

            lib.llama_model_default_params = params_without_extra_buffers
        try:
            # verbose=False also silences llama.cpp's load log by pointing fds 1 and 2 at /dev/null for the
            # ~0.3-2 s of the load: lines other threads log in that window are lost.
            return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                         seed=llama_cpp.LLAMA_DEFAULT_SEED if seed is None else seed, verbose=False)
        finally:
            lib.llama_model_default_params = default_params
            lib.llama_context_default_params = default_context


class LlamaCppLLM(LLM):
    """A local GGUF model run by llama-cpp-python. Build it with ``await LlamaCppLLM.create(path, ...)``.

    Generation runs in a worker thread, one at a time (a llama context is not thread-safe). The chat
    template is the one in the GGUF. A cancelled caller returns at once, but the generation it started
    cannot be interrupted: it runs to its end (at most ``max_tokens``) before the next one starts.
    """

    def __init__(self, llama: Any, path: Path, *, max_tokens: int, temperature: float,
                 slots: HostSlots | None = None, n_threads: int = 1, n_threads_max: int = 1,
                 seed: int | None = None) -> None:
        super().__init__(path.stem, max_tokens=max_tokens, temperature=temperature)
        self._slots = slots  # host-wide generation limit shared with the other nodes (rcp.slots)
        self.n_threads = n_threads  # threads per held slot
        self.n_threads_max = max(n_threads, n_threads_max)  # threads when free slots are taken too (widening)
        self.threads_used = n_threads  # of the latest generation
        self.path = path
        self.n_ctx: int = llama.n_ctx()
        self._llama: Any = llama
        self._lock = asyncio.Lock()
        self._grammars: dict[str, dict[str, Any]] = {}  # schema JSON -> checked grammar schema
        self._formatter: Any = None  # the chat template, for chat_many's prompts
        self._rng = random.Random(seed)  # seeds of chat_many's samplers

    @classmethod
    async def create(cls, path: Path | str, *, n_threads: int = 2, n_ctx: int = 4096, max_tokens: int = 1024,
                     temperature: float = 0.2, seed: int | None = None,
                     slots: HostSlots | None = None, n_threads_max: int = 0) -> LlamaCppLLM:
        """Load ``path`` in a worker thread. ``seed`` makes sampling repeatable (llama.cpp treats 0 as random).

        With ``slots``, a generation that finds other host slots free takes them and runs with up to
        ``n_threads_max`` threads (0: every core), ``n_threads`` per slot held.
        """
        path = Path(path)
        if not path.is_file():
            raise ModelMissingError(f"model file {path} not found; {_fetch_advice(path)}")
        started = time.perf_counter()
        try:
            llama = await asyncio.to_thread(_load_llama, path, n_threads, n_ctx, seed)
        except ValueError as e:  # llama-cpp-python's "Failed to load model from file"
            raise InfrastructureError(
                f"cannot load model {path} ({e}): the file is damaged or not a GGUF model; check it with "
                f"`python -m rcp.models verify NAME`, or delete it and {_fetch_advice(path)}") from e
        if "tokenizer.chat_template" not in llama.metadata:
            logger.warning("%s has no chat template; llama-cpp-python falls back to a generic prompt format, "
                           "so replies will be poor", path.name)
        logger.info("loaded %s in %.1f s (%d threads, %d-token context)", path.name, time.perf_counter() - started,
                    n_threads, n_ctx)
        return cls(llama, path, max_tokens=max_tokens, temperature=temperature, slots=slots, n_threads=n_threads,
                   n_threads_max=n_threads_max or os.cpu_count() or 1, seed=seed)

    def _checked_grammar(self, json_schema: dict[str, Any]) -> dict[str, Any]:
        """The grammar schema for ``json_schema``, proven to convert and to parse in llama.cpp; cached."""
        key = json.dumps(json_schema, sort_keys=True)
        if key in self._grammars:
            return self._grammars[key]
        import llama_cpp
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        prepared = grammar_schema(json_schema)
        title = json_schema.get("title", "schema")
        try:
            gbnf = json_schema_to_gbnf(json.dumps(prepared))
        except Exception as e:  # the converter raises bare Exceptions (KeyError, AssertionError, ...)
            raise ValueError(f"{title} cannot be turned into a llama.cpp grammar: {type(e).__name__}: {e}") from e
        # llama-cpp-python hands the grammar to C++ unchecked, and a grammar that fails to parse there makes
        # the first sampled token segfault the whole node; parsing it here once turns that into an error.
        sampler = llama_cpp.llama_sampler_init_grammar(self._llama._model.vocab, gbnf.encode(), b"root")
        if not sampler:
            raise ValueError(f"llama.cpp cannot parse the grammar of {title} (its parse error is on stderr)")
        llama_cpp.llama_sampler_free(sampler)
        self._grammars[key] = prepared
        return prepared

    async def _generate(self, messages, *, max_tokens, temperature, json_schema, enough=None) -> Generation:
        kwargs: dict[str, Any] = {}
        if json_schema is not None:
            if self._llama is None:
                raise RuntimeError(f"{self.name} is closed")
            kwargs["response_format"] = {"type": "json_object", "schema": self._checked_grammar(json_schema)}
        return await self._locked(functools.partial(
            self._complete, self._stream, messages=[m.model_dump() for m in messages], max_tokens=max_tokens,
            temperature=temperature, enough=enough, **kwargs))

    async def chat_many(self, asks: Sequence[tuple[Messages, float | None]], *, max_tokens: int | None = None,
                        enough: Enough | None = None) -> list[Replied]:
        """The replies generated together (``rcp.batched``), in groups of up to ``batched.MAX_SEQUENCES`` whose
        prompts and ``max_tokens`` each fit the context. Each reply is recorded as a call with its group's wall
        time shared out, so the calls' seconds still add up to the time spent."""
        if len(asks) < 2:
            return await super().chat_many(asks, max_tokens=max_tokens, enough=enough)
        max_tokens = max_tokens or self.max_tokens
        chats = [(_as_messages(m), self.temperature if t is None else t) for m, t in asks]
        replies: list[Replied] = []
        for group in await self._locked(functools.partial(self._groups, chats, max_tokens)):
            started = time.perf_counter()
            out = await self._locked(functools.partial(
                self._complete, self._together, prompts=[p for p, _ in group], temperatures=[t for _, t in group],
                max_tokens=max_tokens, enough=enough))
            wall = time.perf_counter() - started
            for (_, temperature), reply in zip(group, out, strict=True):
                stats = CallStats(kind="chat", prompt_tokens=reply.prompt_tokens,
                                  completion_tokens=reply.completion_tokens, seconds=wall / len(out),
                                  temperature=temperature, finish=reply.finish, together=len(out))
                self.calls.append(stats)
                replies.append(Replied(reply.text, stats))
                # As _timed logs a call (bench.swarm reads these lines), with the time the reply was generated in.
                logger.debug("chat call: %d+%d tokens in %.1f s (%d together)%s", stats.prompt_tokens,
                             stats.completion_tokens, wall, len(out),
                             "" if stats.finish == "stop" else f" ({stats.finish})")
        return replies

    def _groups(self, chats: list[tuple[list[ChatMessage], float]], max_tokens: int, *,
                llama: Any, stop: threading.Event) -> list[list[tuple[list[int], float]]]:
        """The chats' prompts as tokens, in groups that ``rcp.batched.generate`` can take."""
        from rcp import batched

        groups: list[list[tuple[list[int], float]]] = []
        for messages, temperature in chats:
            tokens = self._prompt_tokens(llama, messages)
            group = groups[-1] if groups else []
            distinct = {tuple(p) for p, _ in group} | {tuple(tokens)}
            if not group or len(group) >= batched.MAX_SEQUENCES or \
                    not batched.fits([len(p) for p in distinct], len(group) + 1, max_tokens, self.n_ctx):
                if not batched.fits([len(tokens)], 1, 0, self.n_ctx):
                    raise ModelOutputError(f"prompt does not fit the model's context: {len(tokens)} tokens "
                                           f"(N_CTX = {self.n_ctx})")
                groups.append(group := [])
            group.append((tokens, temperature))
        return groups

    def _prompt_tokens(self, llama: Any, messages: list[ChatMessage]) -> list[int]:
        """A chat as the tokens llama-cpp-python's chat completion would decode (the GGUF's chat template)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if self._formatter is None:
            eos, bos = llama.token_eos(), llama.token_bos()
            self._formatter = Jinja2ChatFormatter(
                template=llama.metadata["tokenizer.chat_template"],
                eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
                bos_token=llama._model.token_get_text(bos) if bos != -1 else "")
        result = self._formatter(messages=[m.model_dump() for m in messages])
        return llama.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)

    def _together(self, llama: Any, stop: threading.Event, **kwargs: Any) -> list[Any]:
        from rcp import batched

        return batched.generate(llama, stop=stop, seed=self._rng.randrange(2**31), **kwargs)

    async def _locked(self, call: Callable[..., R]) -> R:
        """``call(llama=..., stop=...)`` in a worker thread, one at a time on this model; a cancelled caller returns
        at once and ``stop`` is set, so the generation ends at its next token."""
        await self._lock.acquire()
        stop = threading.Event()  # set when the caller gives up: the generation ends at its next token
        try:
            llama = self._llama  # read under the lock: close() may have freed it while this call queued
            if llama is None:
                raise RuntimeError(f"{self.name} is closed")
            job = asyncio.get_running_loop().run_in_executor(None, functools.partial(call, llama=llama, stop=stop))
        except BaseException:
            self._lock.release()
            raise
        # The lock is released when the thread is done, not when this coroutine ends: a cancelled caller must
        # not let the next generation start on the same llama context while this one still runs.
        job.add_done_callback(self._generation_done)
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            stop.set()
            raise
        except ValueError as e:
            if "exceed context window" in str(e):
                # The prompt is the caller's doing (e.g. long test output), so it is a retryable failure of
                # this attempt, not of the node.
                raise ModelOutputError(f"prompt does not fit the model's context: {e} (N_CTX = {self.n_ctx})") from e
            raise
        except RuntimeError as e:  # llama_decode failed: memory or a broken model, not the prompt's fault
            raise InfrastructureError(f"llama.cpp failed while generating with {self.name}: {e}") from e

    def _complete(self, run: Callable[..., R], *, llama: Any, stop: threading.Event, **kwargs: Any) -> R:
        """The blocking generation ``run``, in a worker thread, holding a host-wide slot while it runs."""
        if self._slots is None:
            return run(llama, stop, **kwargs)
        extra = widened_slots(self.n_threads, self.n_threads_max) - 1  # slots beyond the first widening may take
        with self._slots.hold(extra=extra, stop=stop) as held:
            if held.waited > 1.0:
                logger.debug("waited %.1f s for a generation slot", held.waited)
            self._use_threads(llama, min(self.n_threads_max, held.slots * self.n_threads))
            return run(llama, stop, **kwargs)

    def _stream(self, llama: Any, stop: threading.Event, *, enough: Enough | None = None,
                **kwargs: Any) -> Generation:
        """Generate token by token, so an abandoned generation (its caller cancelled, e.g. a task out of time)
        ends at once instead of running on to ``max_tokens`` while other work waits for the cores; so does one
        that is ``enough`` at a line end."""
        pieces: list[str] = []
        tokens, finish = 0, "stop"
        chunks = llama.create_chat_completion(stream=True, **kwargs)
        try:
            for chunk in chunks:
                if stop.is_set():
                    finish = "abandoned"
                    break
                choice = chunk["choices"][0]
                if content := choice["delta"].get("content"):
                    pieces.append(content)
                    tokens += 1
                    if enough is not None and "\n" in content and enough("".join(pieces)):
                        finish = "enough"
                        break
                finish = choice.get("finish_reason") or finish
        finally:
            chunks.close()
        # llama-cpp-python reports no usage when streaming; one chunk is one token, and the context then holds
        # the prompt and every generated token but the last (measured against the usage of unstreamed calls).
        return Generation(text="".join(pieces), prompt_tokens=max(0, llama.n_tokens - tokens + 1),
                          completion_tokens=tokens, finish_reason=finish)

    def _use_threads(self, llama: Any, threads: int) -> None:
        """Set the context's generation and prompt threads (cheap: llama.cpp reads them at each decode)."""
        if threads != self.threads_used:
            import llama_cpp

            llama_cpp.llama_set_n_threads(llama._ctx.ctx, threads, threads)
            self.threads_used = threads

    def _generation_done(self, job: asyncio.Future) -> None:
        self._lock.release()
        if not job.cancelled() and job.exception() is not None:
            # Retrieved here so an abandoned (cancelled-caller) failure is logged once, not as "never retrieved".
            logger.debug("generation ended with %r", job.exception())

    async def close(self) -> None:
        """Free the model once any running generation has finished. Safe to call twice."""
        if self._llama is None:
            return
        async with self._lock:
            llama, self._llama = self._llama, None
            if llama is not None:
                llama.close()
                logger.debug("closed %s", self.path.name)


async def create_llm(settings: Settings) -> LLM:
    """The backend ``settings.llm_backend`` names, ready to use; ``await llm.close()`` when done."""
    if settings.llm_backend == "scripted":
        if not settings.llm_script:
            raise ConfigError("LLM_BACKEND = 'scripted' needs LLM_SCRIPT, a JSON file of canned replies")
        return ScriptedLLM.from_file(settings.resolve(settings.llm_script))
    return await LlamaCppLLM.create(settings.model_file, n_threads=settings.n_threads, n_ctx=settings.n_ctx,
                                    max_tokens=settings.max_tokens, temperature=settings.temperature,
                                    slots=host_slots(settings), n_threads_max=settings.n_threads_max)


def slot_count(settings: Settings) -> int:
    """How many generations this host runs at once: ``GENERATION_SLOTS``, or one per ``N_THREADS`` cores when 0."""
    return settings.generation_slots or default_slots(settings.n_threads)


def host_slots(settings: Settings) -> HostSlots:
    """The host-wide generation slots every node of this machine shares (``GENERATION_SLOTS``)."""
    return HostSlots(slot_count(settings))
