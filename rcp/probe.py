"""Behaviour probes: what several drafts of the same module do on the same inputs, so that drafts can vote.

Small models miscompute expected values more often than they miswrite simple code, so a generated test's
*expected* value is weak evidence; its *inputs* are good ones (they are the cases the task describes). A probe
file is a test file rewritten so that every check records what it looked at instead of comparing it:

* ``assert a == b`` records each side that is not a literal (``a``; both when neither is a literal);
  any other ``assert e`` records ``e``;
* a ``with pytest.raises(E):`` block records the name of the exception its body raised, or that none was;
* an expression statement (``inv.add("a", 1)``) records nothing but runs; a statement that raises ends its test
  function with a ``crash:`` observation.

Each recorded value is normalised (floats to 9 significant digits, sets and dicts sorted, default ``repr``s
without addresses) and an exception while computing it is itself the observation (``raise:KeyError``). Run over
every draft, a probe file gives each draft a vector of observations; ``agreement`` scores each draft by how many
observations other drafts share with it, which is how CodeT/MBR-exec-style selection picks the majority
behaviour without trusting any expected value. A probe position also names the task's functions and methods its
expression uses (``Position.names``), so votes can be counted per function.

One sandbox run observes all drafts: each draft is imported in its own child interpreter (a draft that loops,
exits or corrupts its interpreter spoils only its own observations), every probe function under an alarm.

Deliberately left out: choosing what to do with the scores (``rcp.solver``), and generating inputs other than
the tests' own: ``rcp.fuzz`` writes those as one more test file in this format.
"""

from __future__ import annotations

import ast
import json
import secrets
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from rcp.assemble import AssemblyError, is_literal, is_raises_call, parse
from rcp.sandbox import Sandbox

PROBE_FILE = "_rcp_probes.py"
RUNNER_FILE = "_rcp_probe_runner.py"
RESULT_FILE = "_rcp_observations.json"
PER_FUNCTION_S = 2  # alarm per probe function; the tests' calls are tiny, a loop is cut here
MAX_REPR = 300  # longer observations are compared by their head and length

_RUNNER = r'''
import importlib, json, os, signal, subprocess, sys, time

def norm(v, depth=0):
    if depth > 20:
        return "..."
    if isinstance(v, bool) or v is None or isinstance(v, int | str | bytes):
        return repr(v)
    if isinstance(v, float):
        return repr(float(f"{v:.9g}"))
    if isinstance(v, list | tuple):
        items = ", ".join(norm(x, depth + 1) for x in v)
        return f"[{items}]" if isinstance(v, list) else f"({items})"
    if isinstance(v, set | frozenset):
        return "{" + ", ".join(sorted(norm(x, depth + 1) for x in v)) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join(sorted(f"{norm(k, depth + 1)}: {norm(x, depth + 1)}" for k, x in v.items())) + "}"
    if type(v).__repr__ is object.__repr__:
        return "<" + type(v).__name__ + ">"
    try:
        text = repr(v)
    except Exception as e:
        return "repr-raise:" + type(e).__name__
    return text

def clipped(text):
    return text if len(text) <= MAX_REPR else f"{text[:MAX_REPR]}...({len(text)})"

class Raises:
    def __init__(self, record):
        self.record = record
    def __enter__(self):
        return self
    def __exit__(self, kind, value, tb):
        if kind is None:
            self.record("no-raise")
            return False
        if not issubclass(kind, Exception):
            return False
        self.record("raise:" + kind.__name__)
        return True

def child(workdir, marker):
    sys.path.insert(0, workdir)
    obs = {}
    class ProbeTimeout(BaseException):  # not an Exception: neither the code nor a raises block may swallow it
        pass
    def timeout(signum, frame):
        raise ProbeTimeout()
    signal.signal(signal.SIGALRM, timeout)
    current = []
    def record(value):
        current.append(clipped(value))
    def observe(thunk):
        try:
            record(norm(thunk()))
        except Exception as e:
            record("raise:" + type(e).__name__)
    import builtins
    builtins._rcp_observe = observe
    builtins._rcp_raises = lambda: Raises(record)
    try:
        probes = importlib.import_module(PROBE_MODULE)
    except BaseException as e:
        print(marker + json.dumps({"error": "import:" + type(e).__name__}), flush=True)
        return
    for name in [n for n in vars(probes) if n.startswith("test")]:
        fn = getattr(probes, name)
        if not callable(fn):
            continue
        current.clear()
        signal.alarm(PER_FUNCTION_S)
        try:
            fn()
        except ProbeTimeout:
            current.append("timeout")
        except BaseException as e:
            current.append("crash:" + type(e).__name__)
        finally:
            signal.alarm(0)
        obs[name] = list(current)
    print(marker + json.dumps({"observations": obs}), flush=True)

def main():
    marker, drafts = sys.argv[2], int(sys.argv[3])
    results = []
    for i in range(drafts):
        workdir = os.path.abspath(f"_d{i}")
        try:
            out = subprocess.run([sys.executable, "-I", os.path.abspath(__file__), "child", marker, workdir],
                                 cwd=workdir, capture_output=True, text=True, timeout=BUDGET_S)
            lines = [ln[len(marker):] for ln in out.stdout.splitlines() if ln.startswith(marker)]
            results.append(json.loads(lines[-1]) if lines else {"error": f"exit:{out.returncode}"})
        except subprocess.TimeoutExpired:
            results.append({"error": "timeout"})
    with open(RESULT_FILE, "w") as f:
        json.dump(results, f)

if sys.argv[1] == "child":
    child(sys.argv[3], sys.argv[2])
else:
    main()
'''


def _runner(n_functions: int) -> str:
    """The runner program: its constants, then the code above."""
    return (f"PROBE_MODULE = {PROBE_FILE[:-3]!r}\nPER_FUNCTION_S = {PER_FUNCTION_S}\nMAX_REPR = {MAX_REPR}\n"
            f"BUDGET_S = {PER_FUNCTION_S * max(1, n_functions) + 5}\nRESULT_FILE = {RESULT_FILE!r}\n" + _RUNNER)


@dataclass(frozen=True)
class Position:
    """One recorded observation of a probe function: its test, its index there, and the names it uses."""

    test: str
    index: int
    names: frozenset[str]
    source: str = ""  # what is observed: an expression, or a ``with pytest.raises`` block


@dataclass
class Probes:
    """A test file rewritten into probes, and where each observation comes from."""

    source: str
    positions: list[Position]
    functions: int
    tests: dict[str, str] = field(default_factory=dict)  # each probed test function's own source, as written


def _approx(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "approx"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "pytest")


def _used(node: ast.AST, names: frozenset[str]) -> frozenset[str]:
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id in names:
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute) and sub.attr in names:
            found.add(sub.attr)
    return frozenset(found)


def _observe(expr: ast.expr) -> ast.stmt:
    thunk = ast.Lambda(args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
                       body=expr)
    return ast.Expr(ast.Call(func=ast.Name("_rcp_observe", ast.Load()), args=[thunk], keywords=[]))


def _is_raises(item: ast.withitem) -> bool:
    return is_raises_call(item.context_expr)


class _Rewrite:
    """Rewrites one test function's body, numbering the observations it will record."""

    def __init__(self, test: str, names: frozenset[str]) -> None:
        self.test = test
        self.names = names
        self.positions: list[Position] = []

    def _position(self, node: ast.AST) -> None:
        self.positions.append(Position(self.test, len(self.positions), _used(node, self.names), ast.unparse(node)))

    def body(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in stmts:
            out.extend(self.stmt(stmt))
        return out or [ast.Pass()]

    def stmt(self, stmt: ast.stmt) -> list[ast.stmt]:
        if isinstance(stmt, ast.Assert):
            test = stmt.test
            if isinstance(test, ast.Compare) and len(test.ops) == 1:
                sides = [s for s in (test.left, test.comparators[0]) if not is_literal(s) and not _approx(s)]
                if isinstance(test.ops[0], ast.In | ast.NotIn):
                    sides = [test]  # membership: the truth is the observation, the container may be unordered
            else:
                sides = [test]
            for side in sides:
                self._position(side)
            return [_observe(side) for side in sides]
        if isinstance(stmt, ast.With) and any(_is_raises(i) for i in stmt.items):
            self._position(stmt)
            items = [i for i in stmt.items if not _is_raises(i)]
            items.insert(0, ast.withitem(ast.Call(ast.Name("_rcp_raises", ast.Load()), [], [])))
            return [ast.With(items=items, body=self.body(stmt.body))]
        if isinstance(stmt, ast.For | ast.While):
            stmt.body = self.body(stmt.body)
            return [stmt]
        if isinstance(stmt, ast.If):
            stmt.body, stmt.orelse = self.body(stmt.body), self.body(stmt.orelse) if stmt.orelse else []
            return [stmt]
        return [stmt]


def probes(tests: str, names: Sequence[str] = ()) -> Probes:
    """The probe file of ``tests`` (see the module docstring); ``names`` are the task's functions, classes and
    methods, recorded per position. Raises ``AssemblyError`` when the tests do not parse."""
    tree = parse(tests, "tests")
    known = frozenset(names)
    positions: list[Position] = []
    functions = 0
    body: list[ast.stmt] = []
    sources: dict[str, str] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name.startswith("test"):
            if stmt.args.args or stmt.args.posonlyargs or stmt.args.kwonlyargs or stmt.decorator_list:
                continue  # fixtures and parametrization are pytest's; a probe runs plain functions
            sources[stmt.name] = ast.unparse(stmt)
            rewrite = _Rewrite(stmt.name, known)
            stmt.body = rewrite.body(stmt.body)
            positions += rewrite.positions
            functions += 1
        body.append(stmt)
    if not functions:
        raise AssemblyError("the tests have no plain test function to probe with")
    tree.body = body
    return Probes(ast.unparse(ast.fix_missing_locations(tree)) + "\n", positions, functions, sources)


@dataclass(frozen=True)
class Check:
    """One check probed alone (``check_probes``): where it records whether it holds, the observations that mean
    it does, and where it records the values it compares (an assert's non-literal sides; a raises block's error)."""

    pos: Position
    holds: frozenset[str]
    values: tuple[Position, ...] = ()


def check_probes(tests: str, lines: Collection[int], names: Sequence[str] = ()) -> tuple[Probes, dict[int, Check]]:
    """Probes that tell whether each check at ``lines`` (a statement of a test function's own body: an assert or a
    ``with pytest.raises`` block) holds for a program, each in a test function of its own: the statements before
    it, then the check. Returns the probes and, per line, the ``Check``: it holds on ``'True'`` for an assert,
    ``'raise:E'`` for a raises block of ``E``. Another function records the values an assert compares, as ``probes``
    does, so programs failing it can be seen to agree on another value. A line that is no such check is left out.
    Other drafts' pytest runs cannot tell this: a test function stops at its first failing check."""
    tree = parse(tests, "tests")
    head = [stmt for stmt in tree.body if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef)]
    body: list[ast.stmt] = list(head)
    wanted: dict[str, tuple[int, frozenset[str], int | None]] = {}  # function -> (line, holds, values compared)
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef) or not fn.name.startswith("test") or fn.decorator_list or \
                fn.args.args or fn.args.posonlyargs or fn.args.kwonlyargs:
            continue
        for i, stmt in enumerate(fn.body):
            if stmt.lineno not in lines:
                continue
            if isinstance(stmt, ast.Assert):
                check: ast.stmt = ast.Assert(test=ast.Compare(ast.Call(ast.Name("bool", ast.Load()), [stmt.test], []),
                                                              [ast.Is()], [ast.Constant(True)]))
                holds = frozenset({"True"})
                values = len(_Rewrite("", frozenset()).stmt(stmt))  # one observation per side compared
                # Its values in a function of their own: a check run twice (`stack.pop() == 3`) would change them.
                body.append(ast.FunctionDef(name=f"test_rcp_values_{stmt.lineno}", args=fn.args,
                                            body=[*fn.body[:i], stmt], decorator_list=[], returns=None,
                                            type_params=[]))
            elif isinstance(stmt, ast.With) and len(stmt.items) == 1 and _is_raises(stmt.items[0]):
                call = stmt.items[0].context_expr
                assert isinstance(call, ast.Call)
                kinds = call.args[0].elts if call.args and isinstance(call.args[0], ast.Tuple) else call.args[:1]
                holds = frozenset(f"raise:{ast.unparse(k).rpartition('.')[2]}" for k in kinds)
                check, values = stmt, None  # the error it records is its value
            else:
                continue
            name = f"test_rcp_check_{stmt.lineno}"
            wanted[name] = (stmt.lineno, holds, values)
            body.append(ast.FunctionDef(name=name, args=fn.args, body=[*fn.body[:i], check], decorator_list=[],
                                        returns=None, type_params=[]))
    tree.body = body
    if not wanted:
        return Probes("", [], 0), {}
    probe = probes(ast.unparse(ast.fix_missing_locations(tree)) + "\n", names)
    last = {pos.test: pos for pos in probe.positions}  # a check's own observation is its function's last
    found: dict[int, Check] = {}
    for test, pos in last.items():
        if test in wanted:
            line, holds, n = wanted[test]
            compared = [q for q in probe.positions if q.test == f"test_rcp_values_{line}"]
            values = [pos] if n is None else compared[len(compared) - n:]
            found[line] = Check(pos, holds, tuple(values))
    return probe, found


def agreed_against(observed: Sequence[Observed], check: Check, errors: Collection[str] = ()) -> int:
    """The most programs of ``observed`` that fail ``check`` with one same value there, each a vote (``votes``: an
    error only of a kind in ``errors``, those the task states). Two drafts written apart that agree on another value
    than a test expects are evidence the test is wrong; a shared crash is none (drafts sharing a bug are no
    majority)."""
    alike: Counter[tuple[str | None, ...]] = Counter()
    for o in observed:
        values = tuple(o.at(p) for p in check.values)
        if o.at(check.pos) not in check.holds and values and all(votes(v, errors) for v in values):
            alike[values] += 1
    return max(alike.values(), default=0)


Observations = dict[str, list[str]]  # test function -> what it recorded, in order


@dataclass
class Observed:
    """One draft's observations, or why it has none (``error``: its import failed, it timed out...)."""

    observations: Observations
    error: str = ""

    def at(self, pos: Position) -> str | None:
        seen = self.observations.get(pos.test)
        return seen[pos.index] if seen is not None and pos.index < len(seen) else None


async def observe(sandbox: Sandbox, module: str, drafts: Sequence[str], probe: Probes, *,
                  timeout: float) -> list[Observed]:
    """Run ``probe`` over every draft (the code of ``<module>.py``) in one sandbox run."""
    files: dict[str, str] = {RUNNER_FILE: _runner(probe.functions)}
    for i, code in enumerate(drafts):
        files[f"_d{i}/{module}.py"] = code
        files[f"_d{i}/{PROBE_FILE}"] = probe.source
    marker = f"@rcp-probe-{secrets.token_hex(8)}@"
    report = await sandbox.run(files, ["python3", RUNNER_FILE, "main", marker, str(len(drafts))], timeout=timeout,
                               collect=[RESULT_FILE])
    try:
        found = json.loads(report.files[RESULT_FILE])
        if not isinstance(found, list) or len(found) != len(drafts):
            raise ValueError("not one result per draft")
    except (KeyError, ValueError) as e:
        why = "timed out" if report.timed_out else f"exit {report.exit_code}, {e!r}"
        return [Observed({}, f"probe run {why}") for _ in drafts]
    return [Observed(r.get("observations", {}), r.get("error", "")) for r in found]


def is_error(value: str | None) -> bool:
    """Whether an observation is an exception: ``raise:E`` where a value was computed, ``crash:E`` where a statement
    ended its test function."""
    return value is not None and value.startswith(("raise:", "crash:"))


def is_value(value: str | None) -> bool:
    """Whether an observation is a value the code computed (not an exception, a timeout or nothing)."""
    return value is not None and value != "timeout" and not is_error(value)


def votes(value: str | None, errors: Collection[str] | None) -> bool:
    """Whether an observation is a vote: a value, or an error of a kind the task states (``errors``; any kind when
    None). A crash the task never asks for, or a timeout, agrees with nothing: drafts sharing a bug are no
    majority (measured on the 1.5B, intervals.py: 5 of 8 drafts' ``merge`` raised TypeError on tuples)."""
    if value is None or value == "timeout":
        return False
    kind = value.partition(":")[2] if is_error(value) else ""
    return not kind or errors is None or kind in errors


def agreement(observed: Sequence[Observed], positions: Sequence[Position], *, voters: int | None = None,
              names: frozenset[str] | None = None, errors: Collection[str] | None = None) -> list[int]:
    """Each program's score: over ``positions`` (those using one of ``names`` when given), how many voters recorded
    the same observation there, itself included if it is one, and at least 1 for an answer of its own. The voters
    are the first ``voters`` programs (all when None): independent drafts vote, while retries of one draft, steered
    by the same failures, are scored without voting. An observation that is no vote (``votes``) scores nothing,
    and nothing votes for it.

    So a retry answering where no draft does scores as a lone draft would: measured on the 1.5B (intervals.py),
    every draft's ``merge`` raised TypeError and a retry passed 4 of 5 test functions, but scoring its lone
    answers 0 kept a crashing draft. A retry still never outscores an answer two drafts agree on."""
    voting = len(observed) if voters is None else voters
    scores = [0] * len(observed)
    for pos in positions:
        if names is not None and not pos.names & names:
            continue
        seen = [v if votes(v, errors) else None for v in (o.at(pos) for o in observed)]
        counts = Counter(v for v in seen[:voting] if v is not None)
        for i, v in enumerate(seen):
            if v is not None:
                scores[i] += max(counts[v], 1)
    return scores
