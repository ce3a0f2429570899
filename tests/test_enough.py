"""rcp.enough: when a streamed test reply holds what the solver keeps of it."""

from rcp.enough import asserts_written, code_written, raises_written

HEAD = "Here are the tests:\n```python\nfrom m import f\n\ndef test_f():\n"


def test_asserts_written_counts_complete_asserts_of_the_tests_so_far():
    enough = asserts_written(2)
    assert not enough(HEAD)
    assert not enough(HEAD + "    assert f(1) == 1\n")
    assert not enough(HEAD + "    assert f(1) == 1\n    assert f(2) == [\n")  # an assert cut mid-way is not one
    assert enough(HEAD + "    assert f(1) == 1\n    assert f(2) == [\n        2]\n")
    assert enough(HEAD + "    assert f(1) == 1\n    assert f(2) == 2\n```\n")


def test_asserts_written_ignores_code_that_is_not_tests():
    enough = asserts_written(1)
    assert not enough("```python\ndef f(x):\n    assert x > 0\n    return x\n")  # no test function: not tests
    assert not enough("I would assert that f works.\n")


def test_raises_written_wants_every_named_check_with_its_call():
    enough = raises_written({("ValueError", "f"): 2, ("KeyError", "g"): 1})
    one = "    with pytest.raises(ValueError):\n        f(0)\n"
    g = "    with pytest.raises(KeyError):\n        obj.g('x')\n"
    head = "```python\nimport pytest\nfrom m import f, g\n\ndef test_f():\n"
    assert not enough(head + one + one + "    with pytest.raises(KeyError):\n")  # the block's call not written yet
    assert not enough(head + one + g)  # one of two ValueError checks
    assert not enough(head + one + "    with pytest.raises(TypeError):\n        f(0)\n" + g)  # another exception
    assert enough(head + one + g + one)
    assert not enough(head + one * 4)
    assert enough(head + one * 5)  # 3 more than wanted of one: a listing, the rest is asked for again


def test_code_written_once_a_block_defining_something_has_closed():
    code = "Here it is:\n```python\ndef f(x):\n    return x\n"
    assert not code_written(code)  # still open
    assert code_written(code + "```\n")
    assert not code_written("```bash\npip install m\n```\n")  # not Python
    assert not code_written("```python\nprint(1)\n```\n")  # defines nothing: more may come
    assert not code_written("```python\nfrom m import f\n\ndef test_f():\n    assert f(1) == 1\n```\n")  # tests
