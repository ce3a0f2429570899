"""Deterministic code integration with ``ast``: merge parts into one module, check signatures, fix test imports.

The solver writes a module from parts that different nodes wrote separately. Putting them together is not a job
for the model: here imports are merged, identical duplicates dropped, a contract's owner wins a name clash, and
any other clash is resolved by renaming the later definition inside its own part (by tokens, so comments and
formatting survive). ``check_signature`` is how a parent enforces a child's contract: same name, same kind,
same parameter names in the same order.

Deliberately left out: anything that needs running the code (the sandbox does that), reordering definitions
by dependency (parts keep the plan's order), and languages other than Python.
"""

from __future__ import annotations

import ast
import builtins
import copy
import io
import keyword
import re
import sys
import textwrap
import tokenize
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
_ALLOWED_TEST_MODULES = {"pytest", "__future__"}


class AssemblyError(ValueError):
    """A part or signature is not valid Python; the message names it."""


@dataclass
class Piece:
    """One part's code and who wrote it (a contract name, "parent", "fix"...)."""

    owner: str
    code: str


@dataclass
class Assembly:
    code: str
    notes: list[str] = field(default_factory=list)  # what was dropped or renamed, for the trace
    origin: dict[str, str] = field(default_factory=dict)  # top-level name in the result -> owner it came from


# --- parsing helpers --------------------------------------------------------------------------------------


def parse(code: str, what: str = "code") -> ast.Module:
    try:
        return ast.parse(code)
    except SyntaxError as e:
        raise AssemblyError(f"{what} is not valid Python: line {e.lineno}: {e.msg}") from e


def is_identifier(name: str) -> bool:
    return bool(IDENT_RE.match(name)) and not keyword.iskeyword(name)


def _bound_names(stmt: ast.stmt) -> list[str]:
    """Top-level names a definition-like statement binds (empty for other statements)."""
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [stmt.name]
    if isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
        return [t.id for t in stmt.targets]  # type: ignore[union-attr]
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return [stmt.target.id]
    return []


def defined_names(code: str) -> set[str]:
    """Names defined at module level by def/class/simple assignment."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {name for stmt in tree.body for name in _bound_names(stmt)}


def _is_main_guard(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Compare)
            and isinstance(stmt.test.left, ast.Name) and stmt.test.left.id == "__name__")


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _segment(lines: list[str], stmt: ast.stmt) -> str:
    """Full source lines of a statement, with its decorators and the comment lines right above it."""
    start = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])]) - 1
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    return "".join(lines[start:stmt.end_lineno]).rstrip() + "\n"


def rename(code: str, old: str, new: str) -> str:
    """Rename every use of the name ``old`` (not attributes, not keyword arguments) by tokens.

    Tokens instead of ``ast.unparse`` so the part's comments and layout survive.
    """
    toks = list(tokenize.generate_tokens(io.StringIO(code).readline))
    hits: list[tuple[int, int]] = []
    depth = 0
    significant = [t for t in toks if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT,
                                                      tokenize.INDENT, tokenize.DEDENT)]
    for i, tok in enumerate(significant):
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
        if tok.type != tokenize.NAME or tok.string != old:
            continue
        prev = significant[i - 1].string if i else ""
        nxt = significant[i + 1].string if i + 1 < len(significant) else ""
        if prev == "." or (depth > 0 and nxt == "=" and prev in ("(", ",")):
            continue  # obj.old or f(old=...): a different name that happens to be spelled the same
        hits.append(tok.start)
    lines = code.splitlines(keepends=True)
    for row, col in sorted(hits, reverse=True):
        line = lines[row - 1]
        lines[row - 1] = line[:col] + new + line[col + len(old):]
    return "".join(lines)


# --- imports ------------------------------------------------------------------------------------------------


class _Imports:
    """Merged imports: ``from m import a, b`` lines merged per module, plain imports deduplicated."""

    def __init__(self, own_module: str | None) -> None:
        self.own = own_module
        self.future: dict[str, None] = {}
        self.plain: dict[str, None] = {}
        self.froms: dict[tuple[int, str], dict[str, None]] = {}

    def add(self, stmt: ast.Import | ast.ImportFrom) -> None:
        if isinstance(stmt, ast.Import):
            for a in stmt.names:
                if a.name != self.own:
                    self.plain[f"import {a.name}" + (f" as {a.asname}" if a.asname else "")] = None
            return
        mod = stmt.module or ""
        if stmt.level == 0 and mod == self.own:
            return  # a part importing the module it is part of: a circular import once assembled
        names = [a.name + (f" as {a.asname}" if a.asname else "") for a in stmt.names]
        if mod == "__future__":
            self.future.update(dict.fromkeys(names))
        else:
            self.froms.setdefault((stmt.level, mod), {}).update(dict.fromkeys(names))

    def render(self) -> list[str]:
        out = []
        if self.future:
            out.append(f"from __future__ import {', '.join(self.future)}")
        out.extend(self.plain)
        for (level, mod), names in self.froms.items():
            star = "*" in names
            out.append(f"from {'.' * level}{mod} import {'*' if star else ', '.join(names)}")
        return out


# --- assembly -----------------------------------------------------------------------------------------------


def assemble(pieces: Sequence[Piece], *, module: str | None = None, keep: Mapping[str, str] | None = None,
             rename_all: bool = False) -> Assembly:
    """Merge ``pieces`` into one module.

    * imports are merged and moved to the top; a piece importing ``module`` itself is dropped;
    * a name defined identically twice is kept once;
    * a name in ``keep`` (name -> owner) keeps the owner's definition and drops the others;
    * any other clash keeps the first definition and renames the later one to ``<name>_<owner>`` inside its own
      piece (with ``rename_all`` every clash is renamed, which is what test files need: both tests must run);
    * ``if __name__ == "__main__":`` blocks are dropped; other statements are kept once, in piece order.
    """
    keep = dict(keep or {})
    trees = [parse(p.code, f"part {p.owner}") for p in pieces]
    notes: list[str] = []

    # Decide, before emitting any text, which definition of each clashing name survives.
    dumps: dict[str, dict[int, str]] = {}  # name -> piece index -> ast dump of its (last) definition
    for i, tree in enumerate(trees):
        for stmt in tree.body:
            for name in _bound_names(stmt):
                dumps.setdefault(name, {})[i] = ast.dump(stmt)
    taken: set[str] = set(dumps)
    renames: list[dict[str, str]] = [{} for _ in pieces]
    dropped: list[set[str]] = [set() for _ in pieces]
    for name, by_piece in dumps.items():
        idxs = list(by_piece)
        if len(idxs) < 2:
            continue
        owner = None if rename_all else keep.get(name)
        winner = next((i for i in idxs if pieces[i].owner == owner), idxs[0])
        for i in idxs:
            if i == winner:
                continue
            if by_piece[i] == by_piece[winner]:
                dropped[i].add(name)  # the same definition twice: keep one, nothing to report
            elif owner is not None and pieces[winner].owner == owner:
                dropped[i].add(name)
                notes.append(f"dropped {pieces[i].owner}'s {name} (owned by {owner})")
            else:
                new = _fresh(f"{name}_{pieces[i].owner}", taken)
                taken.add(new)
                renames[i][name] = new
                notes.append(f"renamed {pieces[i].owner}'s {name} to {new} (clashes with {pieces[winner].owner}'s)")

    imports = _Imports(module)
    docstring = ""
    body: list[str] = []
    seen_other: set[str] = set()
    origin: dict[str, str] = {}
    for i, piece in enumerate(pieces):
        code = piece.code
        for old, new in renames[i].items():
            code = rename(code, old, new)
        tree = parse(code, f"part {piece.owner}")
        lines = code.splitlines(keepends=True)
        for j, stmt in enumerate(tree.body):
            if j == 0 and _is_docstring(stmt):
                docstring = docstring or _segment(lines, stmt)
                continue
            if isinstance(stmt, ast.Import | ast.ImportFrom):
                imports.add(stmt)
                continue
            if _is_main_guard(stmt):
                continue
            names = _bound_names(stmt)
            if names:
                if all(n in dropped[i] for n in names):
                    continue
                for n in names:
                    origin[n] = piece.owner
                body.append(_segment(lines, stmt))
                continue
            dump = ast.dump(stmt)
            if dump not in seen_other:
                seen_other.add(dump)
                body.append(_segment(lines, stmt))
    head = [docstring.rstrip()] if docstring else []
    head += imports.render()
    text = "\n".join(head)
    if text:
        text += "\n\n\n"
    text += "\n\n\n".join(b.rstrip() for b in body)
    return Assembly(code=text.rstrip() + "\n", notes=notes, origin=origin)


def _fresh(base: str, taken: set[str]) -> str:
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def merge_tests(pieces: Sequence[Piece], module: str) -> Assembly:
    """One test file from several: imports merged, identical helpers kept once, clashing tests renamed."""
    fixed = [Piece(p.owner, normalize_tests(p.code, module)) for p in pieces if p.code.strip()]
    return assemble(fixed, module=None, rename_all=True)


BUILTIN_NAMES = frozenset(name for name in vars(builtins) if not name.startswith("_"))
BUILTIN_EXCEPTIONS = frozenset(name for name, value in vars(builtins).items()
                               if isinstance(value, type) and issubclass(value, BaseException))


def clean_module(code: str, module: str, keep: Collection[str] = ()) -> str:
    """A generated module without what does not belong in it: self-imports, main blocks, test functions,
    classes that shadow a built-in exception (unless named in ``keep``: the task asked for that name), and
    example usage after the last definition (see ``_example_usage``); a method's ``self.f`` where ``f`` is only a
    module function becomes ``f`` (see ``_module_functions_via_self``); a standard module used and never imported
    is imported."""
    code = _module_functions_via_self(code)
    tree = parse(code)
    lines = code.splitlines(keepends=True)
    drop: list[ast.stmt] = _example_usage(tree)
    for stmt in tree.body:
        if _is_main_guard(stmt):
            drop.append(stmt)
        elif isinstance(stmt, ast.FunctionDef) and stmt.name.startswith("test_"):
            drop.append(stmt)
        elif isinstance(stmt, ast.ImportFrom) and stmt.level == 0 and stmt.module == module:
            drop.append(stmt)
        elif isinstance(stmt, ast.Import) and any(a.name == module for a in stmt.names):
            drop.append(stmt)
        elif isinstance(stmt, ast.ClassDef) and stmt.name in BUILTIN_EXCEPTIONS and stmt.name not in keep:
            # Measured on the 1.5B (bank.py, twice): `class ValueError(Exception): pass` in the module, so its
            # "ValueError" was not the one the task's users catch. The built-in is always what was meant.
            drop.append(stmt)
    for stmt in sorted(drop, key=lambda s: s.lineno, reverse=True):
        start = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])]) - 1
        del lines[start:stmt.end_lineno]
    if missing := _unimported_modules(tree):
        # After the docstring and ``from __future__`` imports, which lead the module and are never dropped.
        at = next((i for i, s in enumerate(tree.body)
                   if not (_is_docstring(s) or isinstance(s, ast.ImportFrom) and s.module == "__future__")),
                  len(tree.body))
        after = max((s.end_lineno or s.lineno for s in tree.body[:at]), default=0)
        lines[after:after] = [f"import {name}\n" for name in missing]
    return re.sub(r"\n{3,}\n", "\n\n\n", "".join(lines)).strip() + "\n"


def _module_functions_via_self(code: str) -> str:
    """``code`` with ``self.f`` in a method rewritten to ``f`` where ``f`` is a module-level function and the class
    has no ``f`` of its own. Measured on the 1.5B (shortener.py, bench run at 91d95f5): the kept module defined
    ``encode_base62`` at module level, as the task asks, and called it as ``self.encode_base62(...)`` in
    ``URLShortener.shorten``, so every call raised AttributeError and 3 of 9 hidden tests failed on it alone.
    Only classes without bases (or with ``object``) and without ``__getattr__`` are touched: anything else could
    provide ``f`` at run time."""
    tree = parse(code)
    functions = {s.name for s in tree.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)}
    spans: list[ast.Attribute] = []
    for cls in tree.body:
        if not isinstance(cls, ast.ClassDef) or cls.keywords or any(
                not (isinstance(b, ast.Name) and b.id == "object") for b in cls.bases):
            continue
        own = {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
        own |= {n.id for s in cls.body if isinstance(s, ast.Assign | ast.AnnAssign | ast.AugAssign)
                for n in ast.walk(s) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        own |= {n.attr for n in ast.walk(cls) if isinstance(n, ast.Attribute) and not isinstance(n.ctx, ast.Load)}
        if "__getattr__" in own or "__getattribute__" in own:
            continue
        for method in cls.body:
            if not isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef) or not method.args.args or any(
                    isinstance(dec, ast.Name) and dec.id == "staticmethod" for dec in method.decorator_list):
                continue
            me = method.args.args[0].arg
            spans += [n for n in ast.walk(method) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load)
                      and isinstance(n.value, ast.Name) and n.value.id == me
                      and n.attr in functions - own and n.lineno == n.end_lineno]
    if not spans:
        return code
    lines = code.splitlines(keepends=True)
    for n in sorted(spans, key=lambda n: (n.lineno, n.col_offset), reverse=True):
        raw = lines[n.lineno - 1].encode()  # ast offsets count UTF-8 bytes
        lines[n.lineno - 1] = (raw[:n.col_offset] + n.attr.encode() + raw[n.end_col_offset:]).decode()
    return "".join(lines)


def hoist_methods(code: str, functions: Collection[str]) -> str:
    """``code`` with a module-level copy of each of ``functions`` (names the task gives as functions of the module)
    that it defines only as a method of one class, appended at the end: the method's parameters without
    ``self`` (or ``cls``; a ``staticmethod`` keeps them all), and its calls ``self.g(...)`` of another such
    function made ``g(...)``. A method that uses ``self`` otherwise, or has another decorator, is left as it is.
    The class keeps its method. Measured on the 1.5B (shortener.py, bench at 1f7a25d): 7 of the 9 programs of the
    task defined ``encode_base62`` and ``decode_base62`` as methods of ``URLShortener`` though the task asks for
    "two functions and a class", so ``from shortener import encode_base62`` failed and each passed 0 of 9 hidden
    tests; retries told of the ImportError repeated the code."""
    tree = parse(code)
    top = {s.name for s in tree.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
    methods: dict[str, list[ast.FunctionDef | ast.AsyncFunctionDef]] = {}
    for cls in tree.body:
        if isinstance(cls, ast.ClassDef):
            for m in cls.body:
                if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef):
                    methods.setdefault(m.name, []).append(m)
    wanted = {n for n in functions if n not in top and len(methods.get(n, [])) == 1}
    known = top | wanted
    added = []
    for name in sorted(wanted, key=lambda n: methods[n][0].lineno):
        fn = copy.deepcopy(methods[name][0])
        decorators = {d.id for d in fn.decorator_list if isinstance(d, ast.Name)}
        if len(decorators) != len(fn.decorator_list) or not decorators <= {"staticmethod", "classmethod"}:
            continue
        fn.decorator_list = []
        if "staticmethod" not in decorators:
            if not fn.args.args:
                continue
            me = fn.args.args.pop(0).arg
            fn = _SelfCalls(me, known).visit(fn)
            if any(isinstance(n, ast.Name) and n.id == me for n in ast.walk(fn)):
                continue
        added.append(ast.unparse(ast.fix_missing_locations(fn)))
    if not added:
        return code
    return code.rstrip() + "\n\n\n" + "\n\n\n".join(added) + "\n"


class _SelfCalls(ast.NodeTransformer):
    """``me.g`` (a load) made ``g`` for each ``g`` of ``known``: a method's call of a module function via self."""

    def __init__(self, me: str, known: Collection[str]) -> None:
        self.me, self.known = me, known

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        if (isinstance(node.value, ast.Name) and node.value.id == self.me and node.attr in self.known
                and isinstance(node.ctx, ast.Load)):
            return ast.copy_location(ast.Name(id=node.attr, ctx=ast.Load()), node)
        return node


def _unimported_modules(tree: ast.Module) -> list[str]:
    """Standard-library modules a module uses as ``name.attr`` without ever binding ``name``. Measured on the 1.5B
    (dateutils.py, bench run at 91d95f5): every draft wrote ``from datetime import date`` and copied the task's
    signatures ``def parse_date(s: str) -> datetime.date``, so the module raised NameError on import and passed 0
    of 9 hidden tests."""
    bound: set[str] = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            bound.update(node.names)
    used = [n.value.id for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)]
    return sorted({name for name in used if name in sys.stdlib_module_names and name not in bound})


def _example_usage(tree: ast.Module) -> list[ast.stmt]:
    """The statements after a module's last function or class that call what it defines (or what such a statement
    bound) and bind nothing a definition reads: the "# Example usage" a model appends. Measured on the 1.5B
    (shortener.py, bench): the module ended with ``shortener = URLShortener()`` and
    ``print(shortener.expand("12345"))``, which raised KeyError on import, so every test, and every hidden test,
    failed at collection. A statement that binds a name a definition reads (a default instance) is kept, and so is
    one without a call (an alias, a constant)."""
    kinds = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    defs = [i for i, stmt in enumerate(tree.body) if isinstance(stmt, kinds)]
    if not defs:
        return []
    example = {tree.body[i].name for i in defs}  # what the module defines, then what example usage binds
    used_by_defs = set().union(*(_globals_read(tree.body[i]) for i in defs))
    out = []
    for stmt in tree.body[defs[-1] + 1:]:
        if _is_main_guard(stmt) or isinstance(stmt, ast.Import | ast.ImportFrom) or _is_docstring(stmt):
            continue
        names = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)}
        bound = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        calls = any(isinstance(n, ast.Call) for n in ast.walk(stmt))  # an alias (`decode = decode_base62`) stays
        if calls and names & example and not bound & used_by_defs:
            out.append(stmt)
            example |= bound
    return out


def _globals_read(node: ast.AST) -> set[str]:
    """Names a definition may read from the module: those it loads that no function of it binds locally."""
    loads = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    local: set[str] = set()
    declared: set[str] = set()
    for fn in ast.walk(node):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            local |= {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}
            local |= {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        elif isinstance(fn, ast.Global | ast.Nonlocal):
            declared |= set(fn.names)
    return (loads - local) | declared


# --- tests --------------------------------------------------------------------------------------------------


def normalize_tests(tests: str, module: str, names: Sequence[str] = (), methods: Collection[str] = ()) -> str:
    """Make a test file import from ``module``, whatever module name the model imagined.

    ``from solution import f`` becomes ``from <module> import f`` and ``import solution`` becomes
    ``import <module> as solution`` (any module that is neither stdlib nor pytest is taken to mean ours, because
    the sandbox has nothing else installed). Built-ins and ``methods`` (names the task gives as methods only) are
    never imported from the module. Names in ``names`` used but never bound get ``from <module> import``, and
    ``pytest`` gets imported when used.
    """
    tree = parse(tests, "tests")
    lines = tests.splitlines(keepends=True)
    for stmt in sorted(tree.body, key=lambda s: s.lineno, reverse=True):
        new: str | None = None
        if isinstance(stmt, ast.ImportFrom) and stmt.level == 0 and (
                stmt.module == module or not _is_known_module(stmt.module or "")):
            # A built-in imported from the module (measured on the 1.5B: `from bank import Bank, ValueError`)
            # makes every correct module fail at collection, and steers the model to define its own ValueError.
            # So does a method imported as if it were a function (measured on the 1.5B, shortener.py: `from
            # shortener import URLShortener, shorten, expand`; every draft failed every run at collection).
            keep = [a for a in stmt.names
                    if (a.name not in BUILTIN_NAMES and a.name not in methods) or a.name in names]
            if stmt.module != module or len(keep) < len(stmt.names):
                new = ast.unparse(ast.ImportFrom(module=module, names=keep, level=0)) if keep else ""
        elif isinstance(stmt, ast.Import) and any(not _is_known_module(a.name) and a.name != module
                                                  for a in stmt.names):
            parts = []
            for a in stmt.names:
                if _is_known_module(a.name) or a.name == module:
                    parts.append(a.name + (f" as {a.asname}" if a.asname else ""))
                else:
                    parts.append(f"{module} as {a.asname or a.name.split('.')[0]}")
            new = "import " + ", ".join(parts)
        if new is not None:
            lines[stmt.lineno - 1:stmt.end_lineno] = [new + "\n"] if new else []
    text = _wrap_loose_asserts("".join(lines), names[0] if names else "case")
    tree = parse(text, "tests")
    bound = _names_bound_anywhere(tree)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    missing = [n for n in names if n in used and n not in bound]
    head = []
    if "pytest" in used and "pytest" not in bound:
        head.append("import pytest\n")
    # `math.pi` with no `import math` (seen on the 1.5B) fails every run with NameError whatever the code does.
    modules = sorted({n.value.id for n in ast.walk(tree)
                      if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id not in bound
                      and n.value.id != "pytest" and _is_known_module(n.value.id)})
    head += [f"import {m}\n" for m in modules]
    if missing:
        head.append(f"from {module} import {', '.join(missing)}\n")
    if head:
        text = "".join(head) + ("\n" if not text.startswith("\n") else "") + text
    return text.strip() + "\n"


def repair_tests(tests: str) -> str:
    """A plan's short test lines made runnable where the 1.5B broke them inside a JSON string.

    Measured on the 1.5B: in one bench run every plan of romans.py and intervals.py, and calc.py's first, was
    rejected for test code that did not parse. The asserts were run together on one line (``assert f(1) == 'I'
    assert f(2) == 'II'``), escaped twice (a literal backslash-n), or cut off mid-call where the string reached its
    length bound. Each statement is put on its own line, and statements that still do not parse are dropped; what
    is left is checked as usual. A check that a call equals an exception's name (``assert f(0) == 'ValueError'``, a
    habit of the same model) becomes the ``pytest.raises`` check it means. Code that parses keeps its lines, and
    code of which nothing parses is returned as it is.
    """
    if not _parses(tests):
        fixed = tests.replace("\\n", "\n").replace("\\t", "    ").replace('\\"', '"')
        fixed = re.sub(r"(?<=[^\s;])[ \t]*;?[ \t]+(?=assert\b)", "\n", fixed)  # one statement per line
        kept = _parsing_lines(fixed.splitlines())
        if not kept.strip():
            return tests  # nothing to save: the parse error is what the model is told
        tests = kept
    return _raises_from_values(tests)


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
        return True
    except SyntaxError:
        return False


def _parsing_lines(lines: list[str]) -> str:
    """The lines that parse, in order, broken statements dropped (a block's opener waits for its body)."""
    kept: list[str] = []
    pending: list[str] = []
    for line in [*lines, ""]:
        pending.append(line)
        while pending:
            if _parses("\n".join(kept + pending)):
                kept += pending
                pending = []
            elif pending[0].rstrip().endswith(":") and (len(pending) == 1 or pending[-1][:1].isspace()):
                break
            else:
                pending.pop(0)
    return "\n".join(kept).strip() + "\n"


def _raises_from_values(tests: str) -> str:
    """Top-level ``assert CALL == 'SomeError'`` (or ``== SomeError``, a built-in exception) as
    ``with pytest.raises(SomeError): CALL``."""
    try:
        tree = ast.parse(tests)
    except SyntaxError:
        return tests
    lines = tests.splitlines(keepends=True)
    for stmt in reversed(tree.body):
        if not (isinstance(stmt, ast.Assert) and isinstance(cmp := stmt.test, ast.Compare) and len(cmp.ops) == 1
                and isinstance(cmp.ops[0], ast.Eq) and isinstance(cmp.left, ast.Call)):
            continue
        right = cmp.comparators[0]
        exc = right.value if isinstance(right, ast.Constant) else right.id if isinstance(right, ast.Name) else None
        if exc in BUILTIN_EXCEPTIONS and lines[stmt.lineno - 1].strip() == ast.get_source_segment(tests, stmt):
            lines[stmt.lineno - 1] = (f"with pytest.raises({exc}):\n    {ast.unparse(cmp.left)}\n")
    return "".join(lines)


def _wrap_loose_asserts(tests: str, base: str) -> str:
    """Module-level asserts (a common small-model habit) wrapped into test functions; imports deduplicated.

    pytest would run loose asserts at collection, where the first failure hides every other check. Each run of
    setup statements and the asserts after it becomes one ``test_<base>_<n>`` function.
    """
    tree = parse(tests, "tests")
    loose = [s for s in tree.body if not isinstance(s, ast.Import | ast.ImportFrom | ast.FunctionDef
                                                   | ast.AsyncFunctionDef | ast.ClassDef) and not _is_main_guard(s)
             and not _is_docstring(s)]
    if not any(_is_check(s) for s in loose):
        return tests
    lines = tests.splitlines(keepends=True)
    imports = _Imports(None)
    defs: list[str] = []
    groups: list[list[str]] = [[]]
    taken = {s.name for s in tree.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
    for i, stmt in enumerate(tree.body):
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            imports.add(stmt)
        elif stmt in loose:
            groups[-1].append(_segment(lines, stmt))
            nxt = tree.body[i + 1] if i + 1 < len(tree.body) else None
            # A bare check gets a test of its own, so one wrong expectation does not hide the others; checks
            # after setup statements stay with that setup.
            alone = len(groups[-1]) == 1 and _is_check(stmt)
            if _is_check(stmt) and (alone or nxt is None or not _is_check(nxt)):
                groups.append([])
        elif not _is_main_guard(stmt):
            defs.append(_segment(lines, stmt))
    out = ["\n".join(imports.render())] + [d.rstrip() for d in defs]
    for n, group in enumerate([g for g in groups if re.search(r"\bassert\b|\bpytest\.raises\(", "".join(g))],
                              start=1):
        name = _fresh(f"test_{base}_{n}", taken)
        taken.add(name)
        body = "".join("    " + ln if ln.strip() else ln for seg in group for ln in seg.splitlines(keepends=True))
        out.append(f"def {name}():\n{body.rstrip()}")
    return "\n\n\n".join(o for o in out if o) + "\n"


@dataclass
class FailedAssert:
    """One assert of a test file that failed: where, its source, and pytest's explanation."""

    line: int
    source: str
    message: str
    crashed: bool = False  # the code raised inside the check's call (another value or exception was not returned)


_ASSERT_FRAME = re.compile(r"^(test_\w+)\.py:(\d+): in \S+\n[ \t]+(assert\b.*|with pytest\.raises\(.*)\n"
                           r"((?:E .*\n?)+)", re.M)


def failed_asserts(output: str, test_file: str, tests: str = "") -> list[FailedAssert]:
    """The checks of ``test_file`` that pytest (``--tb=short``) reports as failing, with their messages: asserts,
    ``with pytest.raises(...)`` blocks that did not raise (their source is the whole block when ``tests``, the
    file's text, is given, so that a reader sees the call that was expected to raise), and, last and marked
    ``crashed``, checks whose call raised inside the code (see ``_crashes``)."""
    stem = test_file.removesuffix(".py")
    blocks = {n.lineno: n for n in ast.walk(_parse_or_empty(tests)) if _is_raises_block(n)} if tests else {}
    out = []
    for m in _ASSERT_FRAME.finditer(output):
        first = m.group(4).splitlines()[0][1:].strip()
        source = m.group(3).strip()
        wanted = ("Failed: DID NOT RAISE",) if source.startswith("with ") else ("assert", "AssertionError")
        if m.group(1) != stem or not first.startswith(wanted):
            continue  # an exception raised by the code: see _crashes
        message = " ".join(ln[1:].strip() for ln in m.group(4).splitlines()[:3])
        message = re.sub(r" at 0x[0-9a-fA-F]+", "", message)  # object addresses differ on every run
        line = int(m.group(2))
        if line in blocks:
            block = blocks[line]
            source = _check_text(tests, block) or source
        out.append(FailedAssert(line, source, message))
    return out + _crashes(output, stem, tests)


_SECTION = re.compile(r"^_{3,} \S.* _{3,}$|^=+ short test summary", re.M)
_FRAME = re.compile(r"^([\w./-]+?)\.py:(\d+): in \S+\n[ \t]+(.*)$", re.M)


def _crashes(output: str, stem: str, tests: str) -> list[FailedAssert]:
    """Checks of ``stem``.py whose call raised inside the code under test (the next frame is not the test file's):
    asserts, and ``pytest.raises`` blocks that got another exception (both found only when ``tests`` is given),
    with the message "the call raised <exception>". Measured on the 1.5B (matrix.py): a generated
    ``assert multiply([[1, 2], [3, 4]], [[1, 2], [3]]) == ...`` feeds a ragged matrix the task never defines, and
    every draft's IndexError on it kept a right module from passing."""
    checks = [n for n in ast.walk(_parse_or_empty(tests)) if isinstance(n, ast.Assert) or _is_raises_block(n)]
    out = []
    for section in _SECTION.split(output)[1:]:
        frames = list(_FRAME.finditer(section))
        error = re.search(r"^E +(\S.*)$", section, re.M)
        if len(frames) < 2 or error is None or frames[0].group(1) != stem or frames[1].group(1) == stem:
            continue
        line, source = int(frames[0].group(2)), frames[0].group(3).strip()
        # pytest names the line of the call: it may be inside an assert spanning several lines, or in the body of
        # a `with pytest.raises(E):` that got another exception.
        inside = [c for c in checks if c.lineno <= line <= (c.end_lineno or c.lineno)]
        if inside:
            node = max(inside, key=lambda c: c.lineno)
            line = node.lineno
            source = _check_text(tests, node) or source
        if not source.startswith(("assert", "with pytest.raises(")):
            continue  # a crash in a test's setup line is not a check with an expected value
        out.append(FailedAssert(line, source, f"the call raised {error.group(1).strip()}", crashed=True))
    return out


def _parse_or_empty(text: str) -> ast.Module:
    try:
        return ast.parse(text)
    except SyntaxError:
        return ast.Module(body=[], type_ignores=[])


def is_raises_call(node: ast.AST) -> bool:
    """``pytest.raises(...)``, as a context manager or called with the function (``raises(E, f, x)``)."""
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "raises"


def _is_check(node: ast.AST) -> bool:
    """An assert or a ``with pytest.raises(...)`` block."""
    return isinstance(node, ast.Assert) or _is_raises_block(node)


def _is_raises_block(node: ast.AST) -> bool:
    """``with pytest.raises(...):`` (the check is that its body raises)."""
    return isinstance(node, ast.With) and any(is_raises_call(i.context_expr) for i in node.items)


def drop_asserts(tests: str, lines: set[int]) -> str:
    """``tests`` without the checks starting on ``lines`` (asserts, ``with pytest.raises`` blocks); a test left
    with no check is dropped."""
    tree = parse(tests, "tests")
    text = tests.splitlines(keepends=True)
    cut: list[tuple[int, int]] = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        checks = [n for n in ast.walk(stmt) if isinstance(n, ast.Assert) or _is_raises_block(n)]
        hit = [a for a in checks if a.lineno in lines]
        if not hit:
            continue
        spans = [(a.lineno, a.end_lineno or a.lineno) for a in hit]
        # Checks outside the cut ones: the remaining asserts, and pytest.raises in any form (``raises(E, f, x)``).
        kept = [n for n in ast.walk(stmt) if (isinstance(n, ast.Assert) or is_raises_call(n))
                and not any(a <= n.lineno <= b for a, b in spans)]
        if not kept:
            start = min([stmt.lineno] + [d.lineno for d in stmt.decorator_list])
            cut.append((start, stmt.end_lineno or stmt.lineno))
        else:
            cut += [span for span in spans if not any(a < span[0] and span[1] <= b for a, b in spans)]
    for start, end in sorted(cut, reverse=True):
        indent = re.match(r"[ \t]*", text[start - 1]).group(0)
        # ``pass`` keeps a block that held only this assert valid Python; the ones a block does not need go below.
        text[start - 1:end] = [f"{indent}pass\n"] if indent else []
    return re.sub(r"\n{4,}", "\n\n\n", _without_spare_pass("".join(text)))


def _without_spare_pass(code: str) -> str:
    """``code`` without the ``pass`` lines of blocks that hold other statements too (one kept in a block of only
    ``pass``)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    spare: set[int] = set()
    for node in ast.walk(tree):
        for attr in ("body", "orelse", "finalbody"):
            block = getattr(node, attr, None)
            if not isinstance(block, list) or not block or not isinstance(block[0], ast.stmt):
                continue
            passes = [s for s in block if isinstance(s, ast.Pass)]
            keep = 1 if len(passes) == len(block) else 0
            spare |= {s.lineno for s in passes[keep:]}
    lines = code.splitlines(keepends=True)
    return "".join(line for n, line in enumerate(lines, 1) if not (n in spare and line.strip() == "pass"))


def signature_header(signature: str) -> str:
    """A signature without bodies: ``def f(a, b):``, or a class line with its method lines."""
    node = parse_signature(signature)

    def headers(d: Definition, indent: str) -> list[str]:
        if isinstance(d, ast.ClassDef):
            bases = ", ".join(ast.unparse(b) for b in d.bases)
            out = [f"{indent}class {d.name}" + (f"({bases})" if bases else "") + ":"]
            for m in d.body:
                if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef):
                    out += headers(m, indent + "    ")
            return out
        stub = type(d)(name=d.name, args=d.args, body=[ast.Expr(ast.Constant(...))], decorator_list=[],
                       returns=d.returns, type_comment=None, lineno=1, col_offset=0)
        return [indent + ast.unparse(stub).splitlines()[0]]

    return "\n".join(headers(node, ""))


def _is_known_module(name: str) -> bool:
    top = name.split(".")[0]
    return top in sys.stdlib_module_names or top in _ALLOWED_TEST_MODULES


def _names_bound_anywhere(tree: ast.Module) -> set[str]:
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return bound


def passed_a_check(tests: str, failed: Collection[int]) -> bool:
    """Whether a program whose failing checks start on the lines ``failed`` passed some check of ``tests``: pytest
    stops a test function at its first failing check, so every check before a failing one in its function held.
    (A function with no failing check passed as a whole, which pytest counts.)"""
    for fn in _parse_or_empty(tests).body:
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        lines = sorted(n.lineno for n in ast.walk(fn) if _is_check(n))
        if next((i for i, line in enumerate(lines) if line in failed), 0) > 0:
            return True
    return False


def count_checks(tests: str) -> int:
    """Assertions in a test file (``assert`` statements and ``pytest.raises`` blocks)."""
    try:
        tree = ast.parse(tests)
    except SyntaxError:
        return 0
    n = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            n += 1
        elif is_raises_call(node):
            n += 1
    return n


def raises_checks(tests: str) -> set[tuple[str, str]]:
    """(exception, called name) for every ``pytest.raises`` check of a test file: ``with pytest.raises(E):``
    around ``f(...)`` or ``obj.f(...)``, or ``pytest.raises(E, f, ...)``; a tuple of exceptions gives each."""
    return set(raises_counts(tests))


def raises_counts(tests: str) -> Counter[tuple[str, str]]:
    """How many ``pytest.raises`` checks a test file has of each (exception, called name) (see raises_checks)."""
    out: Counter[tuple[str, str]] = Counter()
    for node in ast.walk(_parse_or_empty(tests)):
        out.update(_raised(node))
    return out


def _raised(node: ast.AST) -> set[tuple[str, str]]:
    """(exception, called name) of ``node`` if it is a ``pytest.raises`` check (see raises_checks), else none."""
    calls: list[ast.AST] = []
    if isinstance(node, ast.With) and _is_raises_block(node):
        calls = [c.func for stmt in node.body for c in ast.walk(stmt) if isinstance(c, ast.Call)]
        raises = [i.context_expr for i in node.items if is_raises_call(i.context_expr)]
    elif isinstance(node, ast.Call) and is_raises_call(node) and len(node.args) > 1:
        calls, raises = [node.args[1]], [node]
    else:
        return set()
    called = {c.id if isinstance(c, ast.Name) else c.attr for c in calls if isinstance(c, ast.Name | ast.Attribute)}
    out = set()
    for r in raises:
        if not isinstance(r, ast.Call) or not r.args:
            continue
        first = r.args[0]
        for e in first.elts if isinstance(first, ast.Tuple) else [first]:
            name = e.id if isinstance(e, ast.Name) else e.attr if isinstance(e, ast.Attribute) else None
            if name:
                out |= {(name, c) for c in called}
    return out


def cap_raises(tests: str, wanted: Mapping[tuple[str, str], int]) -> str:
    """``tests`` keeping, of the ``pytest.raises`` blocks of each (exception, called name) of ``wanted``, the first
    that many; a block of no wanted pair is kept. A test left with no check is dropped (``drop_asserts``).

    Measured on the 1.5B (dateutils.py, bench at 1f7a25d): asked for 2 cases of `parse_date` raising ValueError, it
    wrote 17, walking back a day each time from "2023-02-30" to "2023-02-14"; the 15 valid dates were checks of a
    stated error, which no vote drops, so every right `parse_date` failed them, the vote ranked programs by how many
    of them they met, and a retry made `parse_date` reject valid dates."""
    seen: Counter[tuple[str, str]] = Counter()
    drop = set()
    blocks = [n for n in ast.walk(_parse_or_empty(tests)) if _is_raises_block(n)]
    for node in sorted(blocks, key=lambda n: n.lineno):
        pairs = _raised(node) & wanted.keys()
        if pairs and all(seen[p] >= wanted[p] for p in pairs):
            drop.add(node.lineno)
        seen.update(pairs)
    return drop_asserts(tests, drop) if drop else tests


def test_names(tests: str) -> list[str]:
    """Names of the top-level test functions and test classes of a test file."""
    try:
        tree = ast.parse(tests)
    except SyntaxError:
        return []
    return [s.name for s in tree.body if _is_test(s)]


def _is_test(stmt: ast.stmt) -> bool:
    """A top-level statement pytest collects: a test function or test class."""
    return isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) \
        and stmt.name.lower().startswith("test")


test_names.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, despite its name


def one_failing_function(code: str, tests: str, failing: Collection[str]) -> tuple[str, str] | None:
    """(name, the failing tests' source) when the tests named in ``failing`` call exactly one top-level function
    of ``code`` (by its bare name) and no class of it, and ``code`` defines more than that function: the one
    function to ask the model to fix, leaving the rest of the module as it is. None otherwise (nothing failed by
    name, a failing test is not in ``tests``, or the failures call several of the module's definitions)."""
    try:
        tree, test_tree = parse(code), parse(tests, "tests")
    except AssemblyError:
        return None
    kinds = ast.FunctionDef | ast.AsyncFunctionDef
    functions = {s.name for s in tree.body if isinstance(s, kinds)}
    classes = {s.name for s in tree.body if isinstance(s, ast.ClassDef)}
    by_name = {s.name: s for s in test_tree.body if isinstance(s, kinds) and _is_test(s)}
    if not failing or len(functions | classes) < 2 or any(n not in by_name for n in failing):
        return None
    called = {c.func.id for n in failing for c in ast.walk(by_name[n])
              if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
    hit = called & functions
    if len(hit) != 1 or called & classes:
        return None
    lines = tests.splitlines(keepends=True)
    return hit.pop(), "\n\n".join(_segment(lines, by_name[n]).rstrip() for n in sorted(failing,
                                                                                    key=lambda n: by_name[n].lineno))


def setup_example(tests: str, cls: str, max_lines: int = 16) -> str:
    """The source of the test function of ``tests`` that builds a ``cls`` and calls the most distinct methods
    (the earliest on a tie; one without ``pytest.raises`` first), at most ``max_lines`` long: how the tests set up
    the object a check of an error needs. '' when no test function builds one."""
    tree = _parse_or_empty(tests)
    lines = tests.splitlines(keepends=True)
    best: tuple[tuple[bool, int], str] | None = None
    for stmt in tree.body:
        if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) or not _is_test(stmt):
            continue
        calls = [c.func for c in ast.walk(stmt) if isinstance(c, ast.Call)]
        if not any(isinstance(f, ast.Name) and f.id == cls for f in calls):
            continue
        source = _segment(lines, stmt).rstrip()
        if len(source.splitlines()) > max_lines:
            continue
        rank = (not any(_is_raises_block(n) for n in ast.walk(stmt)),
                len({f.attr for f in calls if isinstance(f, ast.Attribute)}))
        if best is None or rank > best[0]:
            best = rank, source
    return best[1] if best else ""


def references(tests: str, name: str) -> bool:
    """Whether the test code uses ``name`` (as a name or as ``module.name``)."""
    tree = parse(tests, "tests")
    return any((isinstance(n, ast.Name) and n.id == name) or (isinstance(n, ast.Attribute) and n.attr == name)
               for n in ast.walk(tree))


def split_tests(tests: str, names: set[str]) -> tuple[str, str]:
    """``tests`` split in two: (the tests that use none of ``names``, the tests that use one of them).

    Imports go to both halves, but the first imports none of ``names``. Raises ``AssemblyError`` when a helper
    outside the test functions uses one of ``names`` (the halves could not stand alone).
    """
    tree = parse(tests, "tests")
    lines = tests.splitlines(keepends=True)
    alone: list[str] = []
    using: list[str] = []
    for stmt in tree.body:
        text = _segment(lines, stmt)
        if isinstance(stmt, ast.ImportFrom | ast.Import):
            using.append(text)
            kept = [a for a in stmt.names if (a.asname or a.name) not in names]
            if kept == stmt.names:
                alone.append(text)
            elif kept:
                stmt = copy.copy(stmt)
                stmt.names = kept
                alone.append(ast.unparse(stmt) + "\n")
            continue
        uses = sorted(n for n in names if references(text, n))
        if _is_test(stmt):
            (using if uses else alone).append(text)
        elif uses:
            raise AssemblyError(f"line {stmt.lineno} uses {', '.join(uses)} outside a test function")
        else:
            alone.append(text)
            using.append(text)
    return _test_file(alone), _test_file(using)


def _test_file(parts: list[str]) -> str:
    """Top-level segments of a test file joined again ("" when no test function is among them)."""
    return "\n\n".join(p.rstrip() for p in parts) + "\n" if test_names("".join(parts)) else ""


def raises_only(tests: str) -> str:
    """The tests of ``tests`` whose only checks are ``pytest.raises`` blocks, with the file's imports and helpers
    ("" when there are none, or the file does not parse). They expect no computed value, only an error."""
    tree = _parse_or_empty(tests)
    lines = tests.splitlines(keepends=True)
    kept: list[str] = []
    for stmt in tree.body:
        if _is_test(stmt):
            nodes = list(ast.walk(stmt))
            if not any(_is_raises_block(n) for n in nodes) or any(isinstance(n, ast.Assert) for n in nodes):
                continue
        kept.append(_segment(lines, stmt))
    return _test_file(kept)


# --- signatures ---------------------------------------------------------------------------------------------


def parse_signature(signature: str) -> Definition:
    """The def/class a contract's signature describes. Tolerates a missing ``:`` and missing bodies."""
    lines = [ln.rstrip() for ln in signature.strip("\n").splitlines() if ln.strip()]
    if not lines:
        raise AssemblyError("empty signature")
    indent0 = len(lines[0]) - len(lines[0].lstrip())
    lines = [ln[indent0:] if not indent0 or ln[:indent0].isspace() else ln.lstrip() for ln in lines]
    error = "?"
    for variant in range(3):
        add_colons = variant > 0
        fixed: list[str] = []
        for i, ln in enumerate(lines):
            if variant == 2:
                # "def f(n): return True when n is even" - prose where the body goes: keep the header only.
                m = re.match(r"(\s*(?:async\s+)?def\s+\w+\s*\(.*\)\s*(?:->\s*[^:]+?)?\s*):", ln) \
                    or re.match(r"(\s*class\s+\w+\s*(?:\(.*\))?\s*):", ln)
                if m:
                    ln = m.group(1)
            head = ln.lstrip()
            if add_colons and re.match(r"(async\s+def|def|class)\s", head):
                code_part = ln.split("#")[0].rstrip()
                has_colon = (":" in code_part if head.startswith("class")
                             else re.search(r"\)\s*(->[^:]*)?:", code_part) is not None)
                if not has_colon:
                    ln = code_part + ":"
            if ln.split("#")[0].rstrip().endswith(":"):
                ind = len(ln) - len(ln.lstrip())
                nxt = lines[i + 1] if i + 1 < len(lines) else ""
                if not nxt or len(nxt) - len(nxt.lstrip()) <= ind:
                    ln += " ..."
            fixed.append(ln)
        try:
            tree = ast.parse("\n".join(fixed))
            break
        except SyntaxError as e:
            error = e.msg
    else:
        raise AssemblyError(f"signature {signature.strip()[:120]!r} does not parse: {error}")
    defs = [s for s in tree.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
    if len(defs) != 1:
        raise AssemblyError(f"signature {signature.strip()[:120]!r} must be exactly one def or class")
    return defs[0]


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = fn.args
    out = [p.arg for p in a.posonlyargs + a.args]
    if a.vararg:
        out.append("*" + a.vararg.arg)
    elif a.kwonlyargs:
        out.append("*")
    out += [p.arg for p in a.kwonlyargs]
    if a.kwarg:
        out.append("**" + a.kwarg.arg)
    return out


def _find(body: Sequence[ast.stmt], name: str) -> Definition | None:
    found = None
    for s in body:  # the last definition wins at run time, so the last one is what gets checked
        if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and s.name == name:
            found = s
    return found


def _compare(want: Definition, got: Definition, where: str) -> str | None:
    if isinstance(want, ast.ClassDef) != isinstance(got, ast.ClassDef):
        return f"{where} is a {_kind(got)} but the contract says {_kind(want)}"
    if isinstance(want, ast.ClassDef):
        assert isinstance(got, ast.ClassDef)
        for m in want.body:
            if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef):
                have = _find(got.body, m.name)
                if have is None:
                    return f"{where} has no method {m.name}"
                problem = _compare(m, have, f"{where}.{m.name}")
                if problem:
                    return problem
        return None
    assert not isinstance(got, ast.ClassDef)
    if isinstance(want, ast.AsyncFunctionDef) != isinstance(got, ast.AsyncFunctionDef):
        return f"{where} is {_kind(got)} but the contract says {_kind(want)}"
    pw, pg = _params(want), _params(got)
    if pw != pg:
        return f"{where} has parameters ({', '.join(pg)}) but the contract says ({', '.join(pw)})"
    return None


def _kind(d: Definition) -> str:
    return {"ClassDef": "class", "FunctionDef": "function", "AsyncFunctionDef": "async function"}[type(d).__name__]


def check_signature(code: str, signature: str) -> str | None:
    """None when ``code`` defines what ``signature`` describes (name, kind, parameter names), else the problem."""
    want = parse_signature(signature)
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        return f"the code is not valid Python: line {e.lineno}: {e.msg}"
    got = _find(tree.body, want.name)
    if got is None:
        return f"{want.name} is not defined at module level"
    return _compare(want, got, want.name)


def signature_line(signature: str) -> str:
    """The first header line of a signature, for short listings (``def add(a, b)``)."""
    first = signature.strip().splitlines()[0].strip() if signature.strip() else ""
    return first.rstrip(":").rstrip()


def cap_checks(tests: str, limit: int) -> str:
    """Keep the first ``limit`` asserts of generated tests; later ones are dropped, and so is a test left empty.

    Why: at low temperature a small model can list asserts until max_tokens (seen with the 0.5B: 90 asserts on
    ``is_prime``, several with wrong expected values); every extra assert is another chance of a wrong
    expectation, and a huge test listing in the next prompt makes the model echo it instead of writing code.
    """
    tree = ast.parse(tests)
    asserts = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Assert)), key=lambda n: n.lineno)
    if len(asserts) <= limit:
        return tests
    drop = {(n.lineno, n.end_lineno) for n in asserts[limit:]}
    lines = tests.splitlines(keepends=True)
    cut: list[tuple[int, int]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            dropped = [s for s in node.body if isinstance(s, ast.Assert) and (s.lineno, s.end_lineno) in drop]
            if dropped and len(dropped) == len(node.body):
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                cut.append((start, node.end_lineno))
                continue
        for s in ast.walk(node):
            if isinstance(s, ast.Assert) and (s.lineno, s.end_lineno) in drop:
                cut.append((s.lineno, s.end_lineno))
    for start, end in sorted(set(cut), reverse=True):
        del lines[start - 1:end]
    text = "".join(lines)
    try:
        ast.parse(text)
    except SyntaxError:  # e.g. a nested block emptied; keep the tests whole rather than break them
        return tests
    return text


_BACKTICKED = re.compile(r"`([^`\n]*)`")
_FENCED = re.compile(r"```[\w+-]*\n(.*?)```", re.DOTALL)
_EXAMPLE_LINE = re.compile(r"^[ \t]*(?:>>>[ \t]*)?([A-Za-z_]\w*\([^\n]*\))[ \t]*(?:==|➞|=>|=|->)[ \t]*"
                           r"(\S[^\n]*?)[ \t]*$", re.MULTILINE)


def fenced_listings(text: str) -> list[str]:
    """The contents of the closed ```` ``` ```` listings in a task text (a stub or docstring the user pasted)."""
    return _FENCED.findall(text)


_DOCTEST = re.compile(r"^[ \t]*>>>[ \t]*(\S[^\n]*)\n[ \t]*(?!>>>)(\S[^\n]*)$", re.MULTILINE)


def task_examples(text: str, module: str, only: str | None = None) -> str:
    """A test file of the examples a task states, else "": ``name(literals) == literal`` in backticks, a value a
    one-parameter function's bullet gives "for" a literal input (``_value_examples``), and the inputs a bullet says
    are errors (see ``_error_examples``).

    The user wrote these, so they are the one kind of expected value rcp can trust (a review never drops them).
    Only calls of a plain name with literal arguments compared to a literal qualify; ``only`` keeps the examples of
    that one function.
    """
    asserts: list[str] = []
    names: list[str] = []
    # ``>>> f(1)`` then ``2`` on the next line, as in a docstring a user pastes (HumanEval's prompts).
    doctests = [f"{call} == {want}" for call, want in _DOCTEST.findall(text)]
    # ``f(1) ➞ 2``, ``f(1) => 2``, ``f(1) = 2`` or ``f(1) == 2`` on a line of a fenced listing.
    for block in fenced_listings(text):
        doctests += [f"{call} == {want}" for call, want in _EXAMPLE_LINE.findall(block)]
    doctests += _value_examples(text)
    for span in _BACKTICKED.findall(text) + doctests:
        if len(span) > 400:
            continue
        try:
            expr = ast.parse(span.strip(), mode="eval").body
        except SyntaxError:
            continue
        if not (isinstance(expr, ast.Compare) and len(expr.ops) == 1 and isinstance(expr.ops[0], ast.Eq)):
            continue
        call, want = expr.left, expr.comparators[0]
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)) or (only and call.func.id != only):
            continue
        if not all(is_literal(node) for node in [*call.args, *(k.value for k in call.keywords), want]):
            continue
        line = f"assert {ast.unparse(expr)}"
        if line not in asserts:
            asserts.append(line)
            names.append(call.func.id)
    errors = [e for e in _error_examples(text) if not only or e[1] == only]
    if not asserts and not errors:
        return ""
    body = [f"    {a}" for a in asserts]
    body += [f"    with pytest.raises({exc}):\n        {call}" for exc, _, call in errors]
    names += [name for _, name, _ in errors]
    head = "import pytest\n" if errors else ""
    return (f"{head}from {module} import {', '.join(dict.fromkeys(names))}\n\n\n"
            f"def test_examples_from_the_task():\n" + "\n".join(body) + "\n")


def is_literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


_BULLET = re.compile(r"\s*[-*]\s+`(?:def\s+)?([A-Za-z_]\w*)\s*\(([^`]*?)\)[^`]*`(.*)$")


def clauses(text: str) -> list[str]:
    """The sentences and ``;``-clauses of a text, split only outside backticks and never after "e.g." or "i.e."."""
    parts, current = [], ""
    for i, segment in enumerate(re.split(r"(`[^`]*`)", text)):
        if i % 2:
            current += segment
            continue
        pieces = re.split(r"(?<!e\.g\.)(?<!i\.e\.)(?:(?<=\.)|(?<=;))\s+", segment)
        current += pieces[0]
        for piece in pieces[1:]:
            parts.append(current)
            current = piece
    parts.append(current)
    return [p.strip().rstrip(";").strip() for p in parts if re.search(r"\w", p)]


def task_bullets(text: str) -> list[tuple[str, list[str], str]]:
    """(name, parameters, description) of each bullet of a task that starts with a signature in backticks, as
    ``- `to_roman(n: int) -> str`: the canonical numeral ...`` (``self`` is a parameter of a method)."""
    out = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if (m := _BULLET.match(line)) is None:
            continue
        description = [m[3]]
        for more in lines[i + 1:]:  # a continuation line is indented and starts no bullet of its own
            if not more.startswith((" ", "\t")) or re.match(r"\s*[-*]\s", more) or not more.strip():
                break
            description.append(more.strip())
        out.append((m[1], [p.strip() for p in _split_top(m[2]) if p.strip()], " ".join(description).lstrip(": ")))
    return out


def _split_top(params: str) -> list[str]:
    """A parameter list split at its top-level commas (``a: dict[str, int], b`` is two)."""
    out, depth, current = [], 0, ""
    for ch in params:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            out.append(current)
            current = ""
        else:
            current += ch
    return [*out, current]


_VALUE_FOR = re.compile(r"`([^`\n]+)`\s+for\s+`([^`\n]+)`")


def _value_examples(text: str) -> list[str]:
    """``name(x) == y`` for each "`y` for `x`" in the bullet of a one-parameter function (``merge(intervals)``:
    "... `[]` for `[]`"); ``task_examples`` keeps those whose ``x`` and ``y`` are literals."""
    out = []
    for name, params, description in task_bullets(text):
        if len(params) == 1 and params[0].split(":")[0].strip() not in ("self", "cls") \
                and not params[0].startswith("*"):
            out += [f"{name}({arg}) == {want}" for want, arg in _VALUE_FOR.findall(description)]
    return out


def _error_examples(text: str) -> list[tuple[str, str, str]]:
    """(exception, name, call source) for each input a bullet of a one-parameter function says is an error, as
    ``- `from_roman(s: str) -> int`: ... Raises `ValueError` for anything that is not a canonical numeral, e.g.
    `""`, `"IIII"`.`` (the exception named before "e.g."/"such as" in the same clause, literal inputs only).
    Methods are left out: their call needs an object in a state the task does not give."""
    out = []
    for name, params, description in task_bullets(text):
        if len(params) != 1 or params[0].split(":")[0].strip() in ("self", "cls") or params[0].startswith("*"):
            continue
        for clause in clauses(description):
            m = re.search(r"\b(?:e\.g\.|such as)", clause)
            if m is None:
                continue
            raised = [e for e in re.findall(r"`([A-Z]\w*)`", clause[:m.start()])
                      if e in BUILTIN_EXCEPTIONS or e.endswith(("Error", "Exception"))]
            if len(set(raised)) != 1:
                continue
            for span in _BACKTICKED.findall(clause[m.end():]):
                try:
                    node = ast.parse(span.strip(), mode="eval").body
                except SyntaxError:
                    continue
                if is_literal(node):
                    out.append((raised[0], name, f"{name}({ast.unparse(node)})"))
    return out


def _expectation(check: ast.AST) -> tuple[str, tuple[object, ...]] | None:
    """What a check expects of one call of a plain name with literal arguments: ``(call source, ("value", v))`` for
    ``assert call == v`` (either side) with a literal ``v``, ``(call source, ("raise",))`` for a ``with
    pytest.raises`` block whose body is that call; None for any other check."""
    def plain(node: ast.AST) -> bool:
        return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and all(is_literal(a) for a in [*node.args, *(k.value for k in node.keywords)]))

    if isinstance(check, ast.Assert):
        test = check.test
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
            return None
        for call, want in ((test.left, test.comparators[0]), (test.comparators[0], test.left)):
            if plain(call) and is_literal(want):
                return ast.unparse(call), ("value", ast.literal_eval(want))
        return None
    if _is_raises_block(check) and len(check.body) == 1 and isinstance(check.body[0], ast.Expr) \
            and plain(check.body[0].value):
        return ast.unparse(check.body[0].value), ("raise",)
    return None


def against_examples(tests: str, examples: str) -> list[tuple[int, str]]:
    """The checks of ``tests`` (their first line and source) that make a call an example of ``examples`` makes, with
    the same arguments, and expect what the example rules out: another value, an error where it gives a value, a
    value where it raises. No program passes both, and the examples are the user's. (Two different exceptions are
    left alone: one may be a subclass of the other.)"""
    stated: dict[str, tuple[object, ...]] = {}
    for node in ast.walk(_parse_or_empty(examples)):
        if _is_check(node) and (found := _expectation(node)) is not None:
            stated.setdefault(*found)
    out = []
    for node in ast.walk(_parse_or_empty(tests)):
        if not _is_check(node) or (found := _expectation(node)) is None or found[0] not in stated:
            continue
        want, example = found[1], stated[found[0]]
        if want[0] != example[0] or (want[0] == "value" and want[1] != example[1]):
            out.append((node.lineno, _check_text(tests, node)))
    return sorted(out)


def assert_sources(tests: str) -> set[str]:
    """The source lines of the asserts in ``tests``, as pytest shows a failing one, and the source of each
    ``with pytest.raises`` block, as ``failed_asserts`` gives it."""
    blocks = {_check_text(tests, n) for n in ast.walk(_parse_or_empty(tests)) if _is_raises_block(n)}
    return {ln.strip() for ln in tests.splitlines() if ln.strip().startswith("assert ")} | blocks - {""}


def _check_text(tests: str, node: ast.AST) -> str:
    """The source of ``node`` in ``tests``, dedented and stripped ("" when it has none)."""
    return textwrap.dedent(ast.get_source_segment(tests, node, padded=True) or "").strip()


def check_sources(tests: str) -> dict[int, str]:
    """The checks of ``tests`` by their first line, each source as ``failed_asserts`` gives it: an assert's first
    line, a ``with pytest.raises`` block whole (the call it expects to raise is in its body)."""
    lines = tests.splitlines()
    found = {}
    for n in ast.walk(_parse_or_empty(tests)):
        if isinstance(n, ast.Assert):
            found[n.lineno] = lines[n.lineno - 1].strip()
        elif _is_raises_block(n):
            found[n.lineno] = _check_text(tests, n)
    return found


def code_key(code: str) -> str:
    """What two listings share when they are the same program: the syntax tree without docstrings, so comments,
    layout and docstring wording do not count (text with blank space collapsed, for code that does not parse)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return " ".join(code.split())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and _is_docstring(body[0]):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)
