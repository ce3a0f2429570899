"""Results: per-arm summaries, merging partial runs, the markdown table and the PNG plots.

A results file holds raw rows (one per task and arm, with its timeline) and summaries derived from them, so
``merge`` can combine files from separate runs (say the single arm on Monday, the swarm on Tuesday) and derive
every summary and efficiency figure again from the merged rows. Later files win: a task of an arm present in two
files keeps the later row; peak, sandbox, RPC and swarm figures keep the latest non-empty value; scale rows are
merged by node count. The keys are documented in ``bench/README.md``.
"""

from __future__ import annotations

import copy
import json
import statistics
from pathlib import Path

from bench.efficiency import arm_efficiency
from bench.scale import growth

SCHEMA = 1
ARMS = ["single", "node", "swarm"]
SUITES = ["composite", "humaneval"]


def empty() -> dict:
    return {"schema": SCHEMA, "runs": [], "quality": {s: {"arms": {}} for s in SUITES},
            "efficiency": {"peak": None, "sandbox": None, "rpc": None, "swarm": None, "arms": {}},
            "scale": None}


def summarize_arm(rows: list[dict], meta: dict) -> dict:
    n = len(rows)
    solved = sum(bool(r["solved"]) for r in rows)

    def med(key: str) -> float | None:
        vals = [r[key] for r in rows if r.get(key) is not None]
        return round(statistics.median(vals), 1) if vals else None

    claimed = [r for r in rows if r.get("rcp_solved") is not None]
    return {**meta, "tasks": n, "solved": solved, "solved_rate": round(solved / n, 3) if n else None,
            "tests_passed": sum(r["passed"] for r in rows), "tests_total": sum(r["total"] for r in rows),
            "errors": sum(bool(r.get("error")) for r in rows),
            "tokens_total": sum(r.get("tokens") or 0 for r in rows),
            "completion_tokens_total": sum(r.get("completion_tokens") or 0 for r in rows),
            "llm_calls_total": sum(r.get("llm_calls") or 0 for r in rows),
            "seconds_total": round(sum(r["seconds"] for r in rows), 1),
            "tokens_median": med("tokens"), "seconds_median": med("seconds"),
            "rcp_claimed_solved": sum(bool(r["rcp_solved"]) for r in claimed) if claimed else None,
            "rcp_claims_refuted": sum(bool(r["rcp_solved"]) and not r["solved"] for r in claimed) if claimed else None,
            "rows": rows}


def refresh(results: dict) -> dict:
    """Summaries and derived efficiency figures from the rows (after a task, a merge, or at the end)."""
    peak = (results["efficiency"].get("peak") or {}).get("tokens_per_s")
    per_arm_rows: dict[str, list[dict]] = {}
    for suite in SUITES:
        arms = results["quality"][suite]["arms"]
        # Arms are compared on the tasks every one of them ran (a partial run of one arm must not flatter it).
        task_sets = [{r["task"] for r in data["rows"]} for data in arms.values()]
        common = set.intersection(*task_sets) if task_sets else set()
        for arm, data in arms.items():
            meta = {k: v for k, v in data.items() if k in ("model", "settings", "started")}
            rows = data["rows"]
            arms[arm] = summarize_arm([r for r in rows if r["task"] in common], meta)
            arms[arm]["rows"] = rows
            arms[arm]["not_in_every_arm"] = sorted({r["task"] for r in rows} - common)
            if suite == "humaneval":
                arms[arm]["pass_at_1"] = arms[arm]["solved_rate"]
            per_arm_rows.setdefault(arm, []).extend(data["rows"])
    effs = {}
    for arm in ARMS:
        if arm in per_arm_rows:
            eff = arm_efficiency(per_arm_rows[arm], peak)
            if eff is not None:
                effs[arm] = eff
    results["efficiency"]["arms"] = effs
    if results.get("scale") and results["scale"].get("runs"):
        results["scale"]["growth"] = growth([r for r in results["scale"]["runs"] if "error" not in r])
    return results


def merge(docs: list[dict]) -> dict:
    out = empty()
    for doc in docs:
        out["runs"] += doc.get("runs", [])
        for suite in SUITES:
            for arm, data in (doc.get("quality", {}).get(suite, {}).get("arms") or {}).items():
                target = out["quality"][suite]["arms"].setdefault(arm, {"rows": []})
                by_task = {r["task"]: r for r in target["rows"]}
                for r in data.get("rows", []):
                    by_task[r["task"]] = r
                target["rows"] = list(by_task.values())
                target.update({k: v for k, v in data.items() if k in ("model", "settings", "started")})
        for key in ("peak", "sandbox", "rpc", "swarm"):
            if (doc.get("efficiency") or {}).get(key):
                out["efficiency"][key] = doc["efficiency"][key]
        if doc.get("scale") and doc["scale"].get("runs"):
            if out["scale"] is None:
                out["scale"] = copy.deepcopy(doc["scale"])
            else:
                by_n = {r["nodes"]: r for r in out["scale"]["runs"]}
                by_n.update({r["nodes"]: r for r in doc["scale"]["runs"]})
                out["scale"]["runs"] = [by_n[n] for n in sorted(by_n)]
    return refresh(out)


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


# --- markdown ---------------------------------------------------------------------------------------------------


def _fmt(v, unit: str = "", digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}{unit}"
    return f"{v}{unit}"


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.0f} %"


def markdown(results: dict) -> str:
    lines = ["# rcp benchmark", ""]
    for run in results.get("runs", []):
        if "regraded" in run:  # no model ran: the kept code was graded again with today's hidden tests
            lines.append(f"- regrade {run.get('started', '?')}: `{run.get('command', '')}` · "
                         f"{run['regraded']} result(s) changed grade")
            continue
        lines.append(f"- run {run.get('started', '?')}: `{run.get('command', '')}` · model {run.get('model', '?')} · "
                     f"load {run.get('load_avg_1min', '?')}")
    lines += ["", "## Quality", "", "Counts and medians are over the tasks every arm of a suite ran; the per-task "
              "table lists all.", "",
              "| suite | arm | solved | hidden tests passed | median tokens/task | median s/task | rcp claimed "
              "(refuted) |", "|---|---|---|---|---|---|---|"]
    for suite in SUITES:
        for arm in ARMS:
            a = results["quality"][suite]["arms"].get(arm)
            if not a:
                continue
            solved = f"{a['solved']}/{a['tasks']} ({_pct(a['solved_rate'])})"
            claimed = "–" if a["rcp_claimed_solved"] is None else \
                f"{a['rcp_claimed_solved']} ({a['rcp_claims_refuted']})"
            lines.append(f"| {suite} | {arm} | {solved} | {a['tests_passed']}/{a['tests_total']} | "
                         f"{_fmt(a['tokens_median'], digits=0)} | {_fmt(a['seconds_median'])} | {claimed} |")
    comp = results["quality"]["composite"]["arms"]
    if comp:
        arms = [a for a in ARMS if a in comp]
        tasks = list(dict.fromkeys(r["task"] for a in arms for r in comp[a]["rows"]))
        lines += ["", "Composite tasks (hidden tests passed · tokens · seconds):", "",
                  "| task | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
        for t in tasks:
            cells = []
            for a in arms:
                r = next((r for r in comp[a]["rows"] if r["task"] == t), None)
                cells.append("–" if r is None else f"{'✓' if r['solved'] else '✗'} {r['passed']}/{r['total']} · "
                             f"{r.get('tokens') or 0} · {r['seconds']:.0f} s")
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
    eff = results["efficiency"]
    lines += ["", "## Efficiency", ""]
    if eff.get("peak"):
        p = eff["peak"]
        lines.append(f"- peak: {p['tokens_per_s']} generated tokens/s ({p['model']}, one process, "
                     f"{p['n_threads']} threads, load {p.get('load_avg_1min')})")
    if eff.get("arms"):
        lines += ["", "| arm | generated tokens/s | utilisation | generating | in sandbox | overhead | calls |",
                  "|---|---|---|---|---|---|---|"]
        for arm in ARMS:
            e = eff["arms"].get(arm)
            if e:
                lines.append(f"| {arm} | {_fmt(e['tokens_per_s'], digits=2)} | {_pct(e['utilisation'])} | "
                             f"{_pct(e['generation_share'])} | {_pct(e['sandbox_share'])} | "
                             f"{_pct(e['overhead_share'])} | {e['generation_calls']} |")
        lines.append("")
    if eff.get("sandbox"):
        s = eff["sandbox"]
        lines.append(f"- sandbox run of print(1): median {s['median_s']} s, p95 {s['p95_s']} s ({s['runs']} runs)")
    if eff.get("rpc"):
        r = eff["rpc"]
        lines.append(f"- info RPC round trip ({r.get('nodes')} nodes, model loaded): median {r['info_median_ms']} ms, "
                     f"p95 {r['info_p95_ms']} ms; discovery {r.get('discovery_s')} s")
    if eff.get("swarm"):
        s = eff["swarm"]
        lines.append(f"- swarm of {s['nodes']} nodes: ready in {s['ready_s']} s; memory "
                     f"{s['memory_mib_per_node']:.0f} MiB/node, {s['memory_mib_total']:.0f} MiB total at ready, peak "
                     f"{s.get('peak_memory_mib_total') or 0:.0f} MiB total")
    sc = results.get("scale")
    if sc and sc.get("runs"):
        lines += ["", "## Scale (scripted LLM)", "",
                  "| nodes | ready s | MiB/node | MiB total | delegation median/p95 ms | task s | "
                  "info RPC median ms | shutdown s |", "|---|---|---|---|---|---|---|---|"]
        for r in sc["runs"]:
            if "error" in r:
                lines.append(f"| {r['nodes']} | error: {r['error'][:80]} |||||||")
                continue
            lines.append(f"| {r['nodes']} | {r['ready_s']} | {_fmt(r.get('memory_mib_per_node'), digits=0)} | "
                         f"{_fmt(r.get('memory_mib_total'), digits=0)} | {_fmt(r.get('delegation_median_ms'))}/"
                         f"{_fmt(r.get('delegation_p95_ms'))} | {r.get('task_median_s')} | "
                         f"{r.get('info_median_ms')} | {r.get('shutdown_s')} |")
        if sc.get("growth"):
            lines.append("")
            lines.append("Growth per added node: " + "; ".join(
                f"{k} {v['per_node']:+}" for k, v in sc["growth"].items()))
    return "\n".join(lines) + "\n"


# --- plots ------------------------------------------------------------------------------------------------------


def plots(results: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        written.append(out_dir / name)
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)

    q = results["quality"]
    bars = []  # (label, arm, value)
    for arm in ARMS:
        c = q["composite"]["arms"].get(arm)
        h = q["humaneval"]["arms"].get(arm)
        if c:
            bars.append(("composite solved", arm, c["solved_rate"] or 0))
            share = c["tests_passed"] / c["tests_total"] if c["tests_total"] else 0
            bars.append(("composite hidden tests", arm, share))
        if h:
            bars.append(("HumanEval pass@1", arm, h["solved_rate"] or 0))
    if bars:
        groups = list(dict.fromkeys(b[0] for b in bars))
        arms = [a for a in ARMS if any(b[1] == a for b in bars)]
        fig, ax = plt.subplots(figsize=(8, 4))
        width = 0.8 / len(arms)
        for i, arm in enumerate(arms):
            xs = [g + i * width for g in range(len(groups))]
            vals = [next((b[2] for b in bars if b[0] == grp and b[1] == arm), 0) for grp in groups]
            ax.bar(xs, [100 * v for v in vals], width, label=arm)
        ax.set_xticks([g + width * (len(arms) - 1) / 2 for g in range(len(groups))], groups)
        ax.set_ylabel("%")
        ax.set_ylim(0, 100)
        ax.set_title("Quality per arm")
        ax.legend()
        save(fig, "quality.png")
    eff = results["efficiency"]
    if eff.get("arms"):
        fig, ax = plt.subplots(figsize=(8, 4))
        for arm, e in eff["arms"].items():
            if e.get("series"):
                ax.plot([p[0] for p in e["series"]], [p[1] for p in e["series"]],
                        label=f"{arm} (mean {e['tokens_per_s']})")
        if eff.get("peak"):
            ax.axhline(eff["peak"]["tokens_per_s"], color="k", linestyle="--",
                       label=f"peak: one process, {eff['peak']['n_threads']} threads")
        ax.set_xlabel("seconds of task time (gaps between tasks removed)")
        ax.set_ylabel("generated tokens/s")
        ax.set_title("Generation throughput over time")
        ax.legend()
        save(fig, "utilisation.png")
    sc = results.get("scale")
    runs = [r for r in (sc or {}).get("runs", []) if "error" not in r]
    if runs:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
        n = [r["nodes"] for r in runs]
        axes[0].plot(n, [r["ready_s"] for r in runs], "o-")
        axes[0].set_title("boot to ready (s)")
        axes[1].plot(n, [r.get("memory_mib_total") or r["memory_mib_total_ready"] for r in runs], "o-", label="total")
        axes[1].plot(n, [r.get("memory_mib_per_node") or r["memory_mib_per_node_ready"] for r in runs], "o-",
                     label="per node")
        axes[1].set_title("memory (MiB, PSS)")
        axes[1].legend()
        d = [(r["nodes"], r["delegation_median_ms"]) for r in runs if r.get("delegation_median_ms") is not None]
        if d:
            axes[2].plot([x for x, _ in d], [y for _, y in d], "o-", label="delegation median")
        axes[2].plot(n, [r.get("info_median_ms") for r in runs], "o-", label="info RPC median")
        axes[2].set_title("latency (ms)")
        axes[2].legend()
        for ax in axes:
            ax.set_xlabel("nodes")
        fig.suptitle("Scale with the scripted LLM")
        save(fig, "scale.png")
    return written
