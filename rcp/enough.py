"""When a streamed reply has written what its caller keeps: ``rcp.llm.Enough`` predicates for code and tests.

The 1.5B writes on past what is used. Asked for one test function of ``to_roman`` it listed 18 asserts until
max_tokens, where ``rcp.assemble.cap_checks`` keeps the first 4; asked for three stated-error checks it wrote 15
``pytest.raises`` blocks until max_tokens (measured, romans.py: 866 tokens for 4 test functions kept as 16 asserts,
then 400 for the error checks, 151 s of a 600 s task before its first draft). Every token is ~0.1 s of cores that
the drafts wait for, so the generation ends at the first line end where the tests hold what will be kept.

Code replies too: the 1.5B explains its module after the code block, 323 characters on average (~80 tokens, up
to 1223) over the 50 code replies of two bench runs on 4 module tasks, and none of them had a second block of code.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

from rcp.assemble import raises_counts
from rcp.errors import ModelOutputError
from rcp.llm import Enough
from rcp.prompts import parse_code_reply


def _tests_so_far(text: str) -> str:
    """The tests a reply holds so far, as the solver will read them (a cut-off last line left out); "" if none."""
    try:
        return parse_code_reply(text, want_tests=True)
    except ModelOutputError:
        return ""


def asserts_written(limit: int) -> Enough:
    """Enough once the tests hold ``limit`` complete asserts (``cap_checks(tests, limit)`` keeps no more)."""

    def enough(text: str) -> bool:
        try:
            tree = ast.parse(_tests_so_far(text))
        except SyntaxError:
            return False
        return sum(isinstance(node, ast.Assert) for node in ast.walk(tree)) >= limit

    return enough


# Checks of one wanted error past its count that end a reply still missing another: the model is listing calls
# (measured on the 1.5B, dateutils.py: 17 of `parse_date`, 2 asked, and none of `add_business_days`, which
# the solver then asks for again; ``rcp.assemble.cap_raises`` keeps the first 2).
LISTING = 3


def raises_written(wanted: Mapping[tuple[str, str], int]) -> Enough:
    """Enough once the tests hold, for each (exception, called name) of ``wanted``, that many ``pytest.raises``
    checks, counted as ``rcp.assemble.raises_counts`` counts them (a block counts once its call is written), or
    ``LISTING`` more than that of one of them."""

    def enough(text: str) -> bool:
        counts = raises_counts(_tests_so_far(text))
        return all(counts[key] >= n for key, n in wanted.items()) or \
            any(counts[key] >= n + LISTING for key, n in wanted.items())

    return enough


def code_written(text: str) -> bool:
    """Enough once a fenced block of code defining something has closed (what follows is prose or usage)."""
    fences = text.count("```")
    if fences < 2 or fences % 2:
        return False
    try:
        parse_code_reply(text)
    except ModelOutputError:
        return False
    return True
