"""Typed records for tasks: what travels between parent and child nodes and out to the user.

Every record here is a pydantic v2 model with bounded fields and a protocol ``version``; unknown fields
are ignored so older and newer peers can coexist. They are the same records whether they stream over
libp2p to a peer, into ``trace.json``, to a terminal, or (later) to a browser.

* ``Contract``: a part agreed between parent and child: name, kind, exact signature, behaviour, tests.
* ``TaskSpec``: one task or subtask with its mission context (root task, ancestor goals, sibling
  signatures) and its budgets.
* ``ProgressEvent``: one step of work (decision, attempt, test run, delegation, result...).
* ``TraceNode`` / ``TaskResult``: what a (sub)task returns: code, the tests it passed, the subtree's trace.

Deliberately left out: swarm membership records (``rcp.membership``) and RPC envelopes (``rcp.rpc``).
"""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1
IDENT = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
MAX_TEXT = 64 * 1024  # one goal, signature block or test file; bigger is a malformed request
MAX_CODE = 256 * 1024


def new_task_id() -> str:
    return uuid.uuid4().hex[:12]


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Contract(Record):
    """What a parent asks of a child. The parent re-runs ``tests`` on what comes back and checks ``signature``."""

    name: str = Field(pattern=IDENT)
    kind: Literal["function", "class"]
    signature: str = Field(min_length=1, max_length=4096)  # e.g. "def is_prime(n: int) -> bool:"
    behaviour: str = Field(min_length=1, max_length=MAX_TEXT)
    tests: str = Field(default="", max_length=MAX_TEXT)  # pytest code importing the part from the module


class TaskSpec(Record):
    """A task or subtask. The root task has ``parent_id`` None, depth 0 and no contract."""

    version: int = PROTOCOL_VERSION
    task_id: str = Field(default_factory=new_task_id, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    parent_id: str | None = None
    goal: str = Field(min_length=1, max_length=MAX_TEXT)
    root_task: str = Field(min_length=1, max_length=MAX_TEXT)  # the mission, carried to every leaf
    ancestors: list[str] = Field(default_factory=list, max_length=16)  # goals from the root down to the parent
    siblings: list[str] = Field(default_factory=list, max_length=32)  # signatures of the sibling parts
    contract: Contract | None = None
    language: Literal["python"] = "python"
    module: str = Field(default="solution", pattern=IDENT)  # the file the code goes in: <module>.py
    depth: int = Field(default=0, ge=0, le=16)
    timeout_s: float = Field(default=900.0, gt=0, le=604800)
    llm_calls: int = Field(default=60, ge=1, le=100000)  # LLM-call budget for this whole subtree


class EventKind(StrEnum):
    ACCEPTED = "accepted"  # a node took the task
    DECIDED = "decided"  # direct or decompose, with the reason
    PLANNED = "planned"  # a decomposition was validated; message lists the parts
    DELEGATED = "delegated"  # a part was sent to a peer
    FALLBACK = "fallback"  # a peer failed; the part goes elsewhere or is solved locally
    TESTS = "tests"  # a leaf's tests: being written by the model, then how many checks they have
    ATTEMPT = "attempt"  # code generated for an attempt
    TESTED = "tested"  # a sandbox run finished
    INTEGRATING = "integrating"
    REJECTED = "rejected"  # a child's result failed contract enforcement
    RESULT = "result"  # the task finished (solved or not)
    ERROR = "error"  # infrastructure trouble worth showing


class ProgressEvent(Record):
    version: int = PROTOCOL_VERSION
    task_id: str
    parent_id: str | None = None
    depth: int = 0
    node: str = ""  # short peer id of the node doing the work
    kind: EventKind
    message: str = Field(default="", max_length=4096)
    attempt: int | None = None
    tests_passed: int | None = None
    tests_failed: int | None = None
    elapsed_s: float = 0.0
    at: float = Field(default_factory=time.time)


class TestRun(Record):
    """A sandbox test run as kept in traces (output trimmed)."""

    passed: int = 0
    failed: int = 0
    exit_code: int | None = None
    timed_out: bool = False
    seconds: float = 0.0
    output_tail: str = Field(default="", max_length=8192)


class TraceNode(Record):
    task_id: str
    goal: str = Field(max_length=MAX_TEXT)
    node: str = ""
    depth: int = 0
    decision: Literal["direct", "decompose"] | None = None
    reason: str = ""
    attempts: int = 0
    solved: bool = False
    tests: list[TestRun] = Field(default_factory=list)
    llm_calls: int = 0
    tokens: int = 0
    seconds: float = 0.0
    notes: list[str] = Field(default_factory=list)
    children: list[TraceNode] = Field(default_factory=list)


class TaskResult(Record):
    version: int = PROTOCOL_VERSION
    task_id: str
    solved: bool  # True only if ``code`` passed ``tests`` in the sandbox
    verdict: str = Field(max_length=4096)  # one line for the user
    module: str = Field(default="solution", pattern=IDENT)
    code: str = Field(default="", max_length=MAX_CODE)
    tests: str = Field(default="", max_length=MAX_CODE)
    trace: TraceNode

    @property
    def files(self) -> dict[str, str]:
        return {f"{self.module}.py": self.code, f"test_{self.module}.py": self.tests}
