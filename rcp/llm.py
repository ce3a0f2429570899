"""The LLM seam: an async chat interface with free-text and schema-constrained structured calls.

``LLM`` holds everything the backends share: timing and token accounting per call, and the parsing and
pydantic validation of structured replies (invalid output raises the retryable ``ModelOutputError``).
Backends implement only ``_generate``:

* ``LlamaCppLLM``: llama-cpp-python on a local GGUF. The blocking call runs in a worker thread, so the
  process's event loop keeps serving heartbeats and RPC; one generation at a time per loaded model.
  Structured calls pass the pydantic JSON schema to llama.cpp's grammar-constrained decoding.
* ``ScriptedLLM``: canned replies for tests and for swarm tests that exercise the protocol, selected by
  ``LLM_BACKEND = "scripted"``. It records every prompt it was asked.

Deliberately left out: prompt wording (``rcp.prompts``), retries (callers decide), streaming tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from rcp.errors import ConfigError, ModelOutputError

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)


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
    ok: bool = True


Messages = Sequence[ChatMessage | dict[str, str]]


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
                        json_schema: dict[str, Any] | None) -> Generation:
        """Produce one reply. With ``json_schema`` the reply should be JSON of that schema."""

    async def chat(self, messages: Messages, *, max_tokens: int | None = None,
                   temperature: float | None = None) -> str:
        """Free-text reply to a chat."""
        gen = await self._timed("chat", _as_messages(messages), max_tokens, temperature, None)
        return gen.text

    async def structured(self, messages: Messages, schema: type[T], *, max_tokens: int | None = None,
                         temperature: float | None = None) -> T:
        """A validated ``schema`` instance; raises ``ModelOutputError`` (retryable) when the reply does not fit."""
        gen = await self._timed("structured", _as_messages(messages), max_tokens, temperature,
                                schema.model_json_schema())
        try:
            return schema.model_validate_json(_json_slice(gen.text))
        except ValidationError as e:
            self.calls[-1].ok = False
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "reply"
            hint = " (reply cut off at max_tokens)" if gen.finish_reason == "length" else ""
            raise ModelOutputError(f"model reply is not a valid {schema.__name__}: {where}: {first['msg']}{hint}",
                                   raw=gen.text) from e

    async def _timed(self, kind, messages, max_tokens, temperature, json_schema) -> Generation:
        started = time.perf_counter()
        gen = await self._generate(messages, max_tokens=max_tokens or self.max_tokens,
                                   temperature=self.temperature if temperature is None else temperature,
                                   json_schema=json_schema)
        stats = CallStats(kind=kind, prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens,
                          seconds=time.perf_counter() - started)
        self.calls.append(stats)
        logger.debug("%s call: %d+%d tokens in %.1f s", kind, stats.prompt_tokens, stats.completion_tokens,
                     stats.seconds)
        return gen

    @property
    def total_tokens(self) -> int:
        return sum(c.prompt_tokens + c.completion_tokens for c in self.calls)

    async def close(self) -> None:
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

    @classmethod
    def from_file(cls, path: Path) -> ScriptedLLM:
        try:
            script = Script.model_validate_json(Path(path).read_text())
        except (OSError, ValidationError) as e:
            raise ConfigError(f"LLM_SCRIPT {path} is not a readable script: {e}".splitlines()[0]) from e
        return cls(script.rules)

    async def _generate(self, messages, *, max_tokens, temperature, json_schema) -> Generation:
        self.prompts.append(messages)
        prompt = "\n".join(m.content for m in messages)
        for i, rule in enumerate(self.rules):
            if re.search(rule.match, prompt):
                reply = rule.replies[min(self._used[i], len(rule.replies) - 1)]
                self._used[i] += 1
                if rule.delay:
                    await asyncio.sleep(rule.delay)
                text = reply if isinstance(reply, str) else json.dumps(reply)
                return Generation(text=text, prompt_tokens=len(prompt) // 4, completion_tokens=len(text) // 4)
        raise AssertionError(f"ScriptedLLM has no rule matching prompt: {prompt[-300:]!r}")
