"""Behaviour probes (rcp.probe): the rewrite of tests into probes, and observing real drafts run by a real interpreter
(locally and in the Docker sandbox)."""

from __future__ import annotations

import pytest
from fakes import LocalPytestSandbox

from rcp import probe
from rcp.assemble import AssemblyError

TESTS = '''
import pytest
from mm import f, g

def test_f():
    assert f(2) == 4
    assert 9 == f(3)
    with pytest.raises(ValueError):
        f(-1)

def test_g():
    xs = g([3, 1])
    assert xs == [1, 3]
    assert 3 in g([3])
    assert g([0.1, 0.2])[0] == pytest.approx(0.1)
'''
RIGHT = ("def f(x):\n    if x < 0:\n        raise ValueError(x)\n    return x * x\n\n\n"
         "def g(xs):\n    return sorted(xs)\n")
# Squares as x + x: right on 2, wrong on 3, and no error on -1.
WRONG_F = "def f(x):\n    return x + x\n\n\ndef g(xs):\n    return sorted(xs)\n"
LOOPS = "def f(x):\n    while True:\n        pass\n\n\ndef g(xs):\n    return list(sorted(xs))\n"
BROKEN = "def f(x:\n"


def test_probes_record_what_each_check_looks_at_and_which_names_it_uses():
    p = probe.probes(TESTS, ["f", "g"])
    # Literal sides and pytest.approx are expectations, not observations; a membership check is observed whole.
    assert "_rcp_observe(lambda: f(2))" in p.source
    assert "_rcp_observe(lambda: f(3))" in p.source
    assert "_rcp_observe(lambda: xs)" in p.source
    assert "_rcp_observe(lambda: 3 in g([3]))" in p.source
    assert "_rcp_observe(lambda: g([0.1, 0.2])[0])" in p.source
    assert "with _rcp_raises():" in p.source and "pytest.raises" not in p.source
    assert [(q.test, q.index, sorted(q.names)) for q in p.positions] == [
        ("test_f", 0, ["f"]), ("test_f", 1, ["f"]), ("test_f", 2, ["f"]),
        ("test_g", 0, []), ("test_g", 1, ["g"]), ("test_g", 2, ["g"])]
    assert p.functions == 2


def test_probes_skip_fixture_tests_and_refuse_files_without_plain_tests():
    p = probe.probes("def test_a(tmp_path):\n    assert 1\n\ndef test_b():\n    assert 2 == 2\n")
    # The runner calls probe functions without arguments; a check of two literals observes nothing.
    assert p.functions == 1 and p.source == "def test_b():\n    pass\n" and p.positions == []
    with pytest.raises(AssemblyError):
        probe.probes("def test_a(tmp_path):\n    assert 1\n")
    with pytest.raises(AssemblyError):
        probe.probes("def test_a(:\n")


async def _observed(drafts: list[str]) -> tuple[probe.Probes, list[probe.Observed]]:
    p = probe.probes(TESTS, ["f", "g"])
    return p, await probe.observe(LocalPytestSandbox(), "mm", drafts, p, timeout=60)


async def test_observe_records_values_raised_errors_loops_and_broken_imports_per_draft():
    p, obs = await _observed([RIGHT, WRONG_F, LOOPS, BROKEN])
    right, wrong, loops, broken = obs
    assert right.observations == {"test_f": ["4", "9", "raise:ValueError"],
                                  "test_g": ["[1, 3]", "True", "0.1"]}
    assert wrong.observations["test_f"] == ["4", "6", "no-raise"]
    # A loop ends its own probe function only; the draft's other probes are still observed.
    assert loops.observations == {"test_f": ["timeout"], "test_g": ["[1, 3]", "True", "0.1"]}
    assert broken.observations == {} and broken.error == "import:SyntaxError"
    assert [right.at(q) for q in p.positions] == ["4", "9", "raise:ValueError", "[1, 3]", "True", "0.1"]
    assert loops.at(p.positions[1]) is None


async def test_check_probes_tell_whether_each_check_holds_though_an_earlier_check_fails():
    # WRONG_F fails `9 == f(3)` (line 7): in pytest that ends test_f, so its raises check (line 8) is never reached.
    p, checks = probe.check_probes(TESTS, {7, 8, 12, 99}, ["f", "g"])
    assert sorted(checks) == [7, 8]  # line 12 is the setup `xs = g(...)`, line 99 nothing: no checks
    assert checks[8].holds == {"raise:ValueError"} and checks[7].holds == {"True"}
    obs = await probe.observe(LocalPytestSandbox(), "mm", [RIGHT, WRONG_F, LOOPS], p, timeout=60)
    holds = {line: [o.at(c.pos) in c.holds for o in obs] for line, c in checks.items()}
    assert holds == {7: [True, False, False], 8: [True, False, False]}
    # What each program gives where the check looks: f(3) for the assert, the error for the raises block.
    assert {line: [[o.at(q) for q in c.values] for o in obs] for line, c in checks.items()} == {
        7: [["9"], ["6"], [None]], 8: [["raise:ValueError"], ["no-raise"], [None]]}
    assert probe.check_probes(TESTS, {12}) == (probe.Probes("", [], 0), {})


STACK = ("class Stack:\n    def __init__(self):\n        self.xs = [1, 2, 3]\n\n    def pop(self):\n"
         "        return self.xs.pop()\n")


async def test_programs_failing_a_check_alike_agree_against_it_and_a_check_is_not_run_twice():
    tests = ("from mm import Stack, f\n\ndef test_pop():\n    s = Stack()\n    assert s.pop() == 3\n"
             "    assert s.pop() == 5\n\ndef test_f():\n    assert f(3) == 10\n")
    p, checks = probe.check_probes(tests, {5, 6, 9}, ["Stack", "pop", "f"])
    squares = [STACK + RIGHT, STACK + RIGHT.replace("x * x", "x ** 2"), STACK + WRONG_F, STACK + LOOPS]
    obs = await probe.observe(LocalPytestSandbox(), "mm", squares, p, timeout=60)
    # The pop that holds is seen holding: its values are taken in a run of their own, not before the check.
    assert [o.at(checks[5].pos) for o in obs] == ["True"] * 4
    assert [o.at(checks[6].values[0]) for o in obs] == ["2"] * 4
    # f(3) == 10: two squaring drafts agree on 9; the doubling one gives 6; a loop is no vote.
    assert probe.agreed_against(obs, checks[9]) == 2 and probe.agreed_against(obs[2:], checks[9]) == 1
    assert probe.agreed_against(obs, checks[6]) == 4  # all give 2 where the test expects 5
    assert probe.agreed_against(obs, checks[5]) == 0  # it holds
    crashing = STACK + "def f(x):\n    raise TypeError(x)\n"
    obs = await probe.observe(LocalPytestSandbox(), "mm", [crashing, crashing], p, timeout=60)
    assert probe.agreed_against(obs, checks[9]) == 0 and probe.agreed_against(obs, checks[9], {"TypeError"}) == 2


async def test_agreement_scores_the_majority_behaviour_highest_overall_and_per_name():
    p, obs = await _observed([RIGHT, WRONG_F, RIGHT.replace("sorted(xs)", "list(sorted(xs))"), LOOPS, BROKEN])
    scores = probe.agreement(obs, p.positions)
    # f(2): three drafts agree; f(3) and f(-1): two; g's 3 positions: four drafts. The broken draft agrees with
    # nobody, and the looping one observed nothing of f (a timeout is no vote).
    assert scores == [3 + 2 + 2 + 3 * 4, 3 + 1 + 1 + 3 * 4, 3 + 2 + 2 + 3 * 4, 0 + 3 * 4, 0]
    assert probe.agreement(obs, p.positions, names=frozenset({"f"})) == [3 + 2 + 2, 3 + 1 + 1, 3 + 2 + 2, 0, 0]
    # Only the first two vote: the third scores by agreeing with them, and adds nothing to the first's score.
    assert probe.agreement(obs, p.positions, voters=2, names=frozenset({"f"}))[:3] == [2 + 1 + 1, 2 + 1 + 1,
                                                                                        2 + 1 + 1]
    # A retry answering where no voter does (the voters loop and break) counts its own answer once a position.
    assert probe.agreement([obs[3], obs[4], obs[0]], p.positions, voters=2, names=frozenset({"f"})) == [0, 0, 3]


async def test_crashes_the_task_never_states_are_no_votes():
    p, obs = await _observed([RIGHT, WRONG_F, WRONG_F])
    f = frozenset({"f"})
    # Stated: f(-1) raising ValueError is a vote like a value, so the two wrong drafts outvote it...
    assert probe.agreement(obs, p.positions, names=f, errors={"ValueError"}) == [3 + 1 + 1, 3 + 2 + 2, 3 + 2 + 2]
    # ...and when the task never states ValueError, raising it is no vote at all.
    assert probe.agreement(obs, p.positions, names=f, errors=set()) == [3 + 1 + 0, 3 + 2 + 2, 3 + 2 + 2]
    assert probe.votes("raise:KeyError", {"KeyError"}) and not probe.votes("crash:TypeError", {"KeyError"})
    assert not probe.votes("timeout", None) and not probe.votes(None, None) and probe.votes("no-raise", set())


async def test_observed_values_are_normalised_so_equal_behaviour_compares_equal():
    tests = ("from mm import h\n\ndef test_h():\n    assert h(1) == 0\n    assert h(2) == 0\n    assert h(3) == 0\n"
             "    assert h(4) == 0\n")
    a = ("class Box:\n    pass\n\n\ndef h(n):\n    return [0.1 + 0.2, {'b': 1, 'a': 2}, {3, 1, 2}, Box()][n - 1]\n")
    b = ("class Box:\n    pass\n\n\ndef h(n):\n    return [0.3, {'a': 2, 'b': 1}, {1, 2, 3}, Box()][n - 1]\n")
    p = probe.probes(tests, ["h"])
    obs = await probe.observe(LocalPytestSandbox(), "mm", [a, b], p, timeout=60)
    assert obs[0].observations == obs[1].observations
    assert obs[0].observations["test_h"] == ["0.3", "{'a': 2, 'b': 1}", "{1, 2, 3}", "<Box>"]


@pytest.mark.docker
async def test_observe_runs_every_draft_in_one_real_sandbox_run(sandbox_image):
    from rcp.sandbox import DockerSandbox

    sandbox = await DockerSandbox.create(sandbox_image)
    try:
        p = probe.probes(TESTS, ["f", "g"])
        obs = await probe.observe(sandbox, "mm", [RIGHT, WRONG_F, LOOPS, BROKEN], p, timeout=60)
    finally:
        await sandbox.close()
    assert [o.observations.get("test_f") for o in obs] == [["4", "9", "raise:ValueError"], ["4", "6", "no-raise"],
                                                          ["timeout"], None]
    assert obs[3].error == "import:SyntaxError"
