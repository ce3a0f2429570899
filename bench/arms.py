"""The three arms every quality task is given to, on the same GGUF and settings.

* ``single``: one plain llama-cpp chat call with the task text as the only user message (the model's own chat
  template adds its default system prompt), code extracted as a user would copy it (``bench.grading``).
* ``node``: rcp's ``Solver`` in this process with the real model and the Docker sandbox: decide, tests, retries,
  decomposition as needed, all parts solved here (no peers).
* ``swarm``: the task submitted through ``rcp.client`` to a `network.py` swarm booted for the run.

Each arm returns an ``ArmRun``: the final code, tokens, LLM calls, seconds, rcp's own verdict (node and swarm)
and a timeline (wall-clock generation and sandbox intervals) for the efficiency figures. Where the numbers
come from: single and node use ``TimedLlamaCppLLM`` (each generation timed inside llama.cpp, after the model
lock and the host slot) and ``TimedSandbox`` (each run end to end, container start included). The swarm's
generations come from its nodes' DEBUG call lines (``bench.swarm``), its sandbox runs from the TESTED events
matched with the trace's test runs (command time plus the container start measured in the same run).

Deliberately left out: grading (``bench.grading``) and aggregation (``bench.report``).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.grading import extract_code
from bench.swarm import BenchSwarm, Generation
from rcp.client import Connection, root_spec, submit
from rcp.llm import LLM, ChatMessage, LlamaCppLLM
from rcp.llm import Generation as LLMGeneration
from rcp.records import EventKind, ProgressEvent, TaskResult, TraceNode
from rcp.sandbox import Sandbox, SandboxReport
from rcp.settings import Settings
from rcp.solver import Solver, subtree_calls, subtree_tokens

logger = logging.getLogger("bench.arms")

RESULT_GRACE = 30.0  # seconds past a task's own timeout before the harness stops waiting for its result


@dataclass
class ArmRun:
    code: str = ""
    seconds: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens: int = 0  # prompt + completion
    llm_calls: int = 0
    rcp_solved: bool | None = None  # what rcp itself claimed (None for the single arm)
    verdict: str = ""
    error: str = ""
    start: float = 0.0  # epoch seconds
    end: float = 0.0
    generations: list[list[float]] = field(default_factory=list)  # [start, end, completion_tokens]
    sandbox: list[list[float]] = field(default_factory=list)  # [start, end]
    extra: dict[str, Any] = field(default_factory=dict)
    result_json: str = ""  # rcp's whole TaskResult (tests and trace too), for --traces; not kept in the results
    events: list[ProgressEvent] = field(default_factory=list)  # the task's progress, for --traces; not kept either


class TimedLlamaCppLLM(LlamaCppLLM):
    """``LlamaCppLLM`` that records every generation's interval inside llama.cpp in ``generations``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.generations: list[Generation] = []

    def _stream(self, llama: Any, stop: threading.Event, **kwargs: Any) -> LLMGeneration:
        start = time.time()
        gen = super()._stream(llama, stop, **kwargs)
        self.generations.append(Generation("local", start, time.time(), gen.prompt_tokens, gen.completion_tokens))
        return gen

    def _together(self, llama: Any, stop: threading.Event, **kwargs: Any) -> list[Any]:
        """Replies written together (``chat_many``): each over the group's whole interval."""
        start = time.time()
        replies = super()._together(llama, stop, **kwargs)
        end = time.time()
        self.generations += [Generation("local", start, end, r.prompt_tokens, r.completion_tokens) for r in replies]
        return replies


@dataclass
class TimedSandbox(Sandbox):
    """Any sandbox, with the wall-clock interval of every run kept in ``intervals``."""

    inner: Sandbox
    intervals: list[list[float]] = field(default_factory=list)

    async def run(self, files: Mapping[str, str], cmd: Sequence[str] | None = None, *, timeout: float | None = None,
                  collect: Sequence[str] = ()) -> SandboxReport:
        start = time.time()
        try:
            return await self.inner.run(files, cmd, timeout=timeout, collect=collect)
        finally:
            self.intervals.append([start, time.time()])


def _window(gens: list[Generation], start: float, end: float) -> list[Generation]:
    return [g for g in gens if start - 0.5 <= g.end <= end + 0.5]


def _fill_tokens(run: ArmRun, gens: list[Generation]) -> None:
    run.generations = [[round(g.start, 3), round(g.end, 3), g.completion_tokens] for g in gens]
    run.prompt_tokens = sum(g.prompt_tokens for g in gens)
    run.completion_tokens = sum(g.completion_tokens for g in gens)


def _local_tokens(run: ArmRun, llm: LLM, calls_before: int, gens_before: int) -> None:
    """Tokens of the calls since the marks; the timeline too when the model records one (``TimedLlamaCppLLM``)."""
    calls = llm.calls[calls_before:]
    _fill_tokens(run, getattr(llm, "generations", [])[gens_before:])
    run.prompt_tokens = sum(c.prompt_tokens for c in calls)
    run.completion_tokens = sum(c.completion_tokens for c in calls)


def _marks(llm: LLM) -> tuple[int, int]:
    return len(llm.calls), len(getattr(llm, "generations", []))


async def run_single(llm: LLM, text: str) -> ArmRun:
    run = ArmRun(start=time.time())
    marks = _marks(llm)
    try:
        reply = await llm.chat([ChatMessage(role="user", content=text)])
        run.code = extract_code(reply)
        run.extra["reply_chars"] = len(reply)
    except Exception as e:  # a prompt over the context is this task's failure, not the run's
        run.error = f"{type(e).__name__}: {e}"[:500]
    run.end = time.time()
    run.seconds = round(run.end - run.start, 3)
    _local_tokens(run, llm, *marks)
    run.tokens = (run.prompt_tokens or 0) + (run.completion_tokens or 0)
    run.llm_calls = len(llm.calls) - marks[0]
    return run


def _from_result(run: ArmRun, result: TaskResult) -> None:
    run.code = result.code
    run.result_json = result.model_dump_json(indent=1)
    run.rcp_solved = result.solved
    run.verdict = result.verdict
    run.tokens = subtree_tokens(result.trace)
    run.llm_calls = subtree_calls(result.trace)
    run.extra.update(decision=result.trace.decision, nodes=sorted(_nodes(result.trace)),
                     depth=_depth(result.trace), parts=len(result.trace.children))


def _nodes(trace: TraceNode) -> set[str]:
    return {trace.node} | {n for c in trace.children for n in _nodes(c)}


def _depth(trace: TraceNode) -> int:
    return max((1 + _depth(c) for c in trace.children), default=0)


async def run_node(llm: LLM, sandbox: Sandbox, settings: Settings, text: str, timeout: float) -> ArmRun:
    timed = TimedSandbox(sandbox)
    solver = Solver(llm, timed, settings, node="bench")
    run = ArmRun(start=time.time())
    marks = _marks(llm)
    try:
        async with asyncio.timeout(timeout + RESULT_GRACE):
            result = await solver.solve(root_spec(text, settings, timeout), run.events.append)
        _from_result(run, result)
    except Exception as e:  # infrastructure trouble ends this task; the next one may still run
        run.error = f"{type(e).__name__}: {e}"[:500]
        logger.warning("node arm failed: %s", run.error)
    run.end = time.time()
    run.seconds = round(run.end - run.start, 3)
    _local_tokens(run, llm, *marks)
    run.sandbox = [[round(a, 3), round(b, 3)] for a, b in timed.intervals]
    return run


def sandbox_intervals(events: list[ProgressEvent], trace: TraceNode, container_s: float) -> list[list[float]]:
    """Sandbox runs of a swarm task: each TESTED event (its time is the run's end) with the trace's run time.

    ``TestRun.seconds`` is the command's own time inside the container, so ``container_s`` (the median
    container start and teardown measured in the same benchmark) is added in front.
    """
    runs: dict[str, list[float]] = {}

    def walk(node: TraceNode) -> None:
        runs.setdefault(node.task_id, []).extend(t.seconds for t in node.tests)
        for child in node.children:
            walk(child)

    walk(trace)
    out = []
    seen: dict[str, int] = {}
    for ev in events:
        if ev.kind != EventKind.TESTED or ": not run," in ev.message:
            continue
        i = seen.get(ev.task_id, 0)
        seen[ev.task_id] = i + 1
        seconds = runs.get(ev.task_id, [])[i] if i < len(runs.get(ev.task_id, [])) else 0.0
        out.append([round(ev.at - seconds - container_s, 3), round(ev.at, 3)])
    return out


class SwarmArm:
    """A swarm booted for the benchmark; ``run`` submits one task through ``rcp.client``."""

    def __init__(self, swarm: BenchSwarm, conn: Connection, tmp: tempfile.TemporaryDirectory) -> None:
        self.swarm = swarm
        self.conn = conn
        self._tmp = tmp
        self.container_s = 0.0  # set by the caller from the sandbox latency measurement

    @classmethod
    async def open(cls, settings: Settings) -> SwarmArm:
        tmp = tempfile.TemporaryDirectory(prefix="rcp-bench-swarm-")
        # DEBUG makes every node log each LLM call's tokens and duration: the swarm's generation timeline.
        settings = settings.model_copy(update={"run_dir": str(Path(tmp.name)), "log_level": "DEBUG"})
        swarm = await asyncio.to_thread(BenchSwarm.boot, settings)
        try:
            conn = await Connection.open(settings)
        except BaseException:
            swarm.stop()
            tmp.cleanup()
            raise
        swarm.start_sampling()
        return cls(swarm, conn, tmp)

    async def run(self, text: str, timeout: float) -> ArmRun:
        run = ArmRun(start=time.time())
        events = run.events
        try:
            async with asyncio.timeout(timeout + RESULT_GRACE):
                sub = await submit(self.conn, root_spec(text, self.swarm.settings, timeout),
                                   on_event=events.append)
            _from_result(run, sub.result)
            run.sandbox = sandbox_intervals(sub.events, sub.result.trace, self.container_s)
            run.extra["entry_node"] = sub.entry[-8:]
        except Exception as e:
            run.error = f"{type(e).__name__}: {e}"[:500]
            logger.warning("swarm arm failed: %s", run.error)
        run.end = time.time()
        run.seconds = round(run.end - run.start, 3)
        await asyncio.sleep(0.2)  # the last call lines reach the node logs
        gens = _window(self.swarm.generations(), run.start, run.end)
        if gens:
            _fill_tokens(run, gens)
        run.extra["events"] = len(events)
        return run

    def info(self) -> dict:
        s = self.swarm
        return {"nodes": s.settings.num_nodes, "ready_s": s.ready_s, "boot_wall_s": round(s.boot_s, 2),
                "memory_mib_per_node": s.memory_mib_per_node, "memory_mib_total": s.memory_mib_total,
                "peak_memory_mib_total": round(s.peak_memory_mib_total, 1)}

    def keep_logs(self, folder: Path) -> None:
        """Copies the nodes' logs (DEBUG: every LLM call, the tests and every program each task wrote) to
        ``folder``, over any earlier copy: the run's own folder is removed on ``close``."""
        folder.mkdir(parents=True, exist_ok=True)
        for path in sorted((self.swarm.run_dir / "logs").glob("node-*.log")):
            shutil.copyfile(path, folder / path.name)

    async def close(self) -> float:
        try:
            await self.conn.close()
        finally:
            seconds = await asyncio.to_thread(self.swarm.stop)
            self._tmp.cleanup()
        return seconds
