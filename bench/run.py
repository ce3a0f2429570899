"""`make bench` / `python -m bench`: quality, efficiency and scale of rcp in one run, or any part of them.

Sections (``--only``):

* ``quality``: composite tasks (``bench/tasks``) and HumanEval, each given to the arms (``--arms``) single, node
  and swarm on the same GGUF and settings, every final code graded by hidden tests in the Docker sandbox;
* ``efficiency``: peak tokens/s of one llama-cpp process on all cores, sandbox latency, and, from the quality
  arms' timelines, tokens/s, utilisation and overhead share; with the swarm arm also its boot time, memory and
  ``info`` RPC round trip (measured on the live swarm with the model loaded);
* ``scale``: scripted-LLM swarms of ``--scale-nodes`` sizes (``bench.scale``).

Output in ``--out`` (default ``bench/results``): ``<timestamp>.json`` (rewritten after every task, so a long run
that dies keeps what it measured), then ``latest.json``, ``latest.md`` and ``plots/*.png``. ``--merge FILE ...``
combines partial runs into one report instead of measuring. ``--quick`` is what `make bench` runs: 1 composite
task, 2 HumanEval problems, a 3-node swarm, scale 1/3/6, 150 s per task (about 15-25 min on 2 cores with the
1.5B model); explicit flags override it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import shlex
import signal
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import humaneval, report
from bench import tasks as composite
from rcp.settings import PROJECT_ROOT, Settings, add_settings_arguments, load_settings

logger = logging.getLogger("bench")

SECTIONS = ["quality", "efficiency", "scale"]
# ~15-25 min on 2 cores with the 1.5B: one composite task, two HumanEval problems, every arm, a 3-node swarm.
QUICK = {"tasks": 1, "humaneval_limit": 2, "humaneval_step": 80, "nodes": 3, "scale_nodes": "1,3,6",
         "task_timeout": 150.0}
DEFAULTS = {"tasks": None, "humaneval_limit": None, "humaneval_step": 4, "nodes": None,
            "scale_nodes": "1,3,6,12,24", "task_timeout": None}
# Settings the bench passes on to every arm. llm_backend/llm_script let the swarm arm run on the scripted fake,
# which checks the harness's plumbing without a model (the quality numbers are then meaningless).
TUNABLE = ["n_threads", "generation_slots", "n_threads_max", "max_tokens", "temperature", "max_retries", "drafts",
           "max_depth", "max_subtasks", "max_llm_calls", "sandbox_image", "llm_backend", "llm_script"]


def _csv(value: str, allowed: list[str] | None = None) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if allowed is not None and v not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"{', '.join(bad)} not in {', '.join(allowed)}")
    return items


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", type=lambda v: _csv(v, SECTIONS), default=SECTIONS, help="sections, comma-separated "
                   "(default quality,efficiency,scale)")
    p.add_argument("--arms", type=lambda v: _csv(v, report.ARMS), default=report.ARMS,
                   help="quality arms (default single,node,swarm)")
    p.add_argument("--suites", type=lambda v: _csv(v, report.SUITES), default=report.SUITES,
                   help="quality suites (default composite,humaneval)")
    p.add_argument("--quick", action="store_true", help="the short default of `make bench` (see above)")
    p.add_argument("--tasks", type=int, help="first N composite tasks (default all 10)")
    p.add_argument("--task", action="append", type=_csv, help="composite task(s) by name, comma-separated")
    p.add_argument("--humaneval-limit", type=int, help="at most N HumanEval problems (default all selected)")
    p.add_argument("--humaneval-step", type=int, help="every K-th HumanEval problem (default 4: 41 problems)")
    p.add_argument("--humaneval-start", type=int, default=0, help="first HumanEval problem index (default 0)")
    p.add_argument("--model", help="GGUF file for every arm (default MODEL_PATH)")
    p.add_argument("--nodes", type=int, help="swarm size for the swarm arm (default NUM_NODES)")
    p.add_argument("--task-timeout", type=float, help="seconds per task for node and swarm (default TASK_TIMEOUT)")
    p.add_argument("--peak-threads", type=int, help="threads for the peak measurement (default: every core)")
    p.add_argument("--seed", type=int, default=1, help="sampling seed of the in-process model (default 1)")
    p.add_argument("--scale-nodes", help="swarm sizes for the scale section (default 1,3,6,12,24)")
    p.add_argument("--scale-tasks", type=int, default=3, help="scripted tasks per scale size (default 3)")
    p.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results", help="results directory")
    p.add_argument("--traces", type=Path, help="write rcp's whole result of each task (code, tests, the trace of "
                   "every node's attempts) and its progress events to TRACES/<suite>-<task>-<arm>.json, and the "
                   "swarm's node logs (the tests and every program each task wrote) to TRACES/node-logs/")
    p.add_argument("--merge", nargs="+", type=Path, metavar="FILE", help="merge result files into one report "
                   "(no measuring)")
    p.add_argument("--regrade", type=Path, metavar="FILE", help="grade the code kept in a result file again with "
                   "today's hidden tests, into a new report (no model runs; after a hidden test was made stricter)")
    add_settings_arguments(p, TUNABLE)
    return p


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


class Run:
    """One measuring run: the settings, the results document and where it is written."""

    def __init__(self, args: argparse.Namespace, settings: Settings) -> None:
        self.args = args
        self.settings = settings
        self.results = report.empty()
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.path = args.out / f"{stamp}.json"
        self.results["runs"].append({
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": "python -m bench " + shlex.join(sys.argv[1:]), "model": settings.model_file.name,
            "cpus": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2), "settings": self.arm_settings()})

    def arm_settings(self) -> dict:
        s = self.settings
        return {"model": s.model_file.name, "llm_backend": s.llm_backend, "n_threads": s.n_threads,
                "generation_slots": s.generation_slots, "n_threads_max": s.n_threads_max,
                "n_ctx": s.n_ctx, "max_tokens": s.max_tokens, "temperature": s.temperature,
                "max_retries": s.max_retries, "drafts": s.drafts, "max_depth": s.max_depth,
                "max_subtasks": s.max_subtasks, "max_llm_calls": s.max_llm_calls,
                "task_timeout": self.args.task_timeout, "seed": self.args.seed}

    def save(self) -> None:
        self.args.out.mkdir(parents=True, exist_ok=True)
        report.refresh(self.results)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=1) + "\n")
        tmp.replace(self.path)

    def arm(self, suite: str, arm: str) -> dict:
        arms = self.results["quality"][suite]["arms"]
        if arm not in arms:
            arms[arm] = {"model": self.settings.model_file.name, "settings": self.arm_settings(),
                         "started": datetime.datetime.now().isoformat(timespec="seconds"), "rows": []}
        return arms[arm]


def _row(name: str, run, grade) -> dict:
    from dataclasses import asdict

    row = _set_grade({"task": name}, grade)
    row.update(asdict(run))  # the final code too: a result can be audited without running anything again
    del row["result_json"], row["events"]  # tens of kB per task: --traces writes them to a file of their own
    row["code_lines"] = len(run.code.splitlines())
    return row


def _set_grade(row: dict, grade) -> dict:
    """A result row's hidden-test fields from ``grade`` (a run's row, or a row graded again by ``--regrade``)."""
    row.update(solved=grade.solved, passed=grade.passed, failed=grade.failed, total=grade.total)
    row.pop("grade_output", None)
    if not grade.solved:
        row["grade_output"] = grade.output_tail[-300:]
    return row


def _keep_trace(folder: Path | None, stem: str, run, grade) -> None:
    """With ``--traces``: rcp's result of one task, its hidden-test grade and its progress events, as one JSON
    file."""
    if folder is None or not run.result_json:
        return
    folder.mkdir(parents=True, exist_ok=True)
    graded = json.dumps({"solved": grade.solved, "passed": grade.passed, "failed": grade.failed,
                         "output_tail": grade.output_tail[-3000:]})
    events = ",\n".join(e.model_dump_json() for e in run.events)
    (folder / f"{stem}.json").write_text(f'{{"grade": {graded},\n"result": {run.result_json},\n'
                                         f'"events": [{events}]}}\n')


async def quality(r: Run) -> None:
    from bench.arms import SwarmArm, TimedLlamaCppLLM, run_node, run_single
    from bench.grading import grade_composite, grade_humaneval
    from rcp.llm import host_slots  # also fails early with the usual message if llama-cpp is missing
    from rcp.sandbox import DockerSandbox, SandboxLimits

    args, s = r.args, r.settings
    items: list[tuple[str, str, object]] = []
    if "composite" in args.suites:
        names = [n for group in args.task or [] for n in group]
        items += [("composite", t.name, t) for t in composite.select(args.tasks, names or None)]
    if "humaneval" in args.suites:
        items += [("humaneval", p.task_id, p) for p in humaneval.select(args.humaneval_limit, args.humaneval_step,
                                                                        args.humaneval_start)]
    sandbox = await DockerSandbox.create(s.sandbox_image, SandboxLimits.from_settings(s))
    try:
        async def grade(suite: str, item, code: str):
            if suite == "composite":
                return await grade_composite(sandbox, item, code)
            return await grade_humaneval(sandbox, item, code)

        local = [a for a in ("single", "node") if a in args.arms]
        if local:
            llm = await TimedLlamaCppLLM.create(s.model_file, n_threads=s.n_threads, n_ctx=s.n_ctx,
                                                max_tokens=s.max_tokens, temperature=s.temperature, seed=args.seed,
                                                slots=host_slots(s), n_threads_max=s.n_threads_max)
            try:
                for arm in local:
                    for suite, name, item in items:
                        if arm == "single":
                            run = await run_single(llm, item.text)
                        else:
                            run = await run_node(llm, sandbox, s, item.text, args.task_timeout)
                        g = await grade(suite, item, run.code)
                        _keep_trace(args.traces, f"{suite}-{name}-{arm}", run, g)
                        r.arm(suite, arm)["rows"].append(_row(name, run, g))
                        _log(arm, suite, name, run, g)
                        r.save()
            finally:
                await llm.close()
        if "swarm" in args.arms:
            swarm = await SwarmArm.open(s)
            try:
                r.results["efficiency"]["swarm"] = swarm.info()
                sb = r.results["efficiency"].get("sandbox") or {}
                swarm.container_s = max(0.0, sb.get("median_s", 0.3) - sb.get("command_median_s", 0.05))
                for suite, name, item in items:
                    run = await swarm.run(item.text, args.task_timeout)
                    g = await grade(suite, item, run.code)
                    _keep_trace(args.traces, f"{suite}-{name}-swarm", run, g)
                    if args.traces is not None:
                        swarm.keep_logs(args.traces / "node-logs")
                    r.arm(suite, "swarm")["rows"].append(_row(name, run, g))
                    _log("swarm", suite, name, run, g)
                    r.results["efficiency"]["swarm"] = swarm.info()
                    r.save()
                if "efficiency" in args.only:
                    r.results["efficiency"]["rpc"] = await _rpc(swarm.swarm)
            finally:
                info = swarm.info()
                info["shutdown_s"] = round(await swarm.close(), 2)
                r.results["efficiency"]["swarm"] = info
                r.save()
    finally:
        await sandbox.close()


async def regrade(doc: dict, sandbox) -> int:
    """Grade every composite row's kept code again with the current hidden tests (in place); the number changed.
    A row of a task no longer in ``bench/tasks`` keeps its grade, with a warning.

    Only grades move: tokens, seconds and the code are what the run measured. The run list records the regrade.
    """
    from bench.grading import grade_composite

    changed = 0
    known = set(composite.all_names())
    for arm, data in (doc.get("quality", {}).get("composite", {}).get("arms") or {}).items():
        for row in data.get("rows", []):
            if row["task"] not in known:
                logger.warning("[%s] %s: no such composite task in bench/tasks any more; its grade is kept as it "
                               "was (%d/%d)", arm, row["task"], row["passed"], row["total"])
                continue
            g = await grade_composite(sandbox, composite.load(row["task"]), row.get("code", ""))
            before = (row["passed"], row["total"])
            _set_grade(row, g)
            if before != (g.passed, g.total):
                changed += 1
                logger.info("[%s] %s: %d/%d -> %d/%d hidden tests", arm, row["task"], *before, g.passed, g.total)
    doc["runs"].append({"started": datetime.datetime.now().isoformat(timespec="seconds"),
                        "command": "python -m bench " + shlex.join(sys.argv[1:]), "regraded": changed})
    return changed


async def _regrade_in_docker(doc: dict, settings: Settings) -> int:
    from rcp.sandbox import DockerSandbox, SandboxLimits

    sandbox = await DockerSandbox.create(settings.sandbox_image, SandboxLimits.from_settings(settings))
    try:
        return await regrade(doc, sandbox)
    finally:
        await sandbox.close()


async def _rpc(swarm) -> dict:
    from bench import rpc_latency

    out = await rpc_latency.measure_rpc(swarm.run_dir, swarm.settings.num_nodes, 200, 20)
    return {"nodes": swarm.settings.num_nodes, "llm_backend": swarm.settings.llm_backend, **out}


def _log(arm: str, suite: str, name: str, run, g) -> None:
    logger.info("[%s] %s %s: %s %d/%d hidden tests, %d LLM calls, %s tokens, %.0f s%s", arm, suite, name,
                "SOLVED" if g.solved else "not solved", g.passed, g.total, run.llm_calls, run.tokens, run.seconds,
                f" ({run.error})" if run.error else "")


def efficiency(r: Run) -> None:
    from bench import sandbox_latency
    from bench.efficiency import measure_peak_sync

    logger.info("measuring sandbox latency (20 runs)")
    r.results["efficiency"]["sandbox"] = asyncio.run(sandbox_latency.measure(20, 1))
    threads = r.args.peak_threads or os.cpu_count() or 1
    logger.info("measuring peak tokens/s of %s on %d threads", r.settings.model_file.name, threads)
    r.results["efficiency"]["peak"] = measure_peak_sync(r.settings.model_file, n_threads=threads)
    logger.info("peak: %s tokens/s", r.results["efficiency"]["peak"]["tokens_per_s"])
    r.save()


def swarm_only(r: Run) -> None:
    """Efficiency without the quality section: boot the real-model swarm for boot time, memory and RPC."""
    from bench.arms import SwarmArm

    async def go() -> None:
        swarm = await SwarmArm.open(r.settings)
        try:
            r.results["efficiency"]["rpc"] = await _rpc(swarm.swarm)
        finally:
            info = swarm.info()
            info["shutdown_s"] = round(await swarm.close(), 2)
            r.results["efficiency"]["swarm"] = info

    asyncio.run(go())
    r.save()


def write_outputs(results: dict, out: Path, path: Path | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report.refresh(results)
    text = json.dumps(results, indent=1) + "\n"
    if path is not None:
        path.write_text(text)
    (out / "latest.json").write_text(text)
    (out / "latest.md").write_text(report.markdown(results))
    for png in report.plots(results, out / "plots"):
        logger.info("wrote %s", png)
    logger.info("wrote %s", out / "latest.md")


def _stop_like_ctrl_c() -> None:
    """SIGTERM, and SIGINT even when started in the background (where it arrives ignored), stop the bench as
    Ctrl-C does: asyncio cancels the running arm, whose cleanup stops its swarm and removes its containers."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))


def main(argv: list[str] | None = None) -> int:
    args = resolve(build_parser().parse_args(argv))
    _stop_like_ctrl_c()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    for name in ("hivemind", "rcp"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.regrade:
        doc = report.load(args.regrade)
        changed = asyncio.run(_regrade_in_docker(doc, load_settings({})))
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        write_outputs(doc, args.out, args.out / f"regraded-{stamp}.json")
        print(report.markdown(doc))
        print(f"bench: {changed} composite result(s) changed grade", file=sys.stderr)
        return 0
    if args.merge:
        docs = [report.load(p) for p in args.merge]
        merged = report.merge(docs)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        write_outputs(merged, args.out, args.out / f"merged-{stamp}.json")
        print(report.markdown(merged))
        return 0
    overrides = {k: getattr(args, k) for k in TUNABLE if getattr(args, k) is not None}
    if args.model:
        overrides["model_path"] = str(Path(args.model).resolve())
    if args.nodes:
        overrides["num_nodes"] = args.nodes
    settings = load_settings(overrides)
    if args.task_timeout is None:
        args.task_timeout = settings.task_timeout
    r = Run(args, settings)
    logger.info("bench: sections %s, arms %s, model %s, results in %s", ",".join(args.only), ",".join(args.arms),
                settings.model_file.name, r.path)
    try:
        return _measure(r)
    except KeyboardInterrupt:
        print(f"bench: stopped; the tasks finished so far are in {r.path} (merge it with --merge)", file=sys.stderr)
        return 130


def _measure(r: Run) -> int:
    args, settings = r.args, r.settings
    started = time.monotonic()
    if "efficiency" in args.only:
        efficiency(r)
    if "quality" in args.only:
        asyncio.run(quality(r))
    elif "efficiency" in args.only and "swarm" in args.arms:
        swarm_only(r)
    if "scale" in args.only:
        from bench import scale

        sizes = [int(n) for n in _csv(args.scale_nodes)]
        logger.info("scale: scripted swarms of %s nodes", sizes)
        r.results["scale"] = scale.run(settings, sizes, args.scale_tasks)
        r.save()
    r.results["runs"][-1]["seconds"] = round(time.monotonic() - started, 1)
    write_outputs(r.results, args.out, r.path)
    print(report.markdown(r.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
