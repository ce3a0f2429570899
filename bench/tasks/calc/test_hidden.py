import pytest
from calc import eval_rpn, evaluate, to_rpn, tokenize


def test_tokenize():
    assert tokenize("12+(3*4)") == ["12", "+", "(", "3", "*", "4", ")"]
    assert tokenize(" 7 -  20 / 5 ") == ["7", "-", "20", "/", "5"]
    assert tokenize("") == []


def test_tokenize_rejects():
    with pytest.raises(ValueError):
        tokenize("2 ^ 3")


def test_to_rpn_precedence():
    assert to_rpn(["1", "+", "2", "*", "3"]) == ["1", "2", "3", "*", "+"]
    assert to_rpn(tokenize("(1+2)*3")) == ["1", "2", "+", "3", "*"]


def test_to_rpn_left_associative():
    assert to_rpn(tokenize("8-3-2")) == ["8", "3", "-", "2", "-"]
    assert to_rpn(tokenize("8/4*2")) == ["8", "4", "/", "2", "*"]


def test_to_rpn_mismatched():
    with pytest.raises(ValueError):
        to_rpn(tokenize("(1+2"))
    with pytest.raises(ValueError):
        to_rpn(tokenize("1+2)"))


def test_eval_rpn():
    assert eval_rpn(["2", "3", "4", "*", "+"]) == 14.0
    assert isinstance(eval_rpn(["2", "3", "+"]), float)
    assert eval_rpn(["7", "2", "/"]) == 3.5


def test_eval_rpn_errors():
    with pytest.raises(ZeroDivisionError):
        eval_rpn(["1", "0", "/"])
    with pytest.raises(ValueError):
        eval_rpn(["1", "+"])
    with pytest.raises(ValueError):
        eval_rpn(["1", "2"])


def test_evaluate():
    assert evaluate("2 + 3 * 4") == 14.0
    assert evaluate("(2 + 3) * 4") == 20.0
    assert evaluate("10 - 4 - 3") == 3.0
    assert evaluate("((7))") == 7.0
    assert evaluate("1 / 4 + 100 / (2 * 25)") == 2.25
