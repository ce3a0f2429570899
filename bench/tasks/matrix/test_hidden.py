import pytest
from matrix import determinant, identity, multiply, transpose


def test_identity():
    assert identity(1) == [[1]]
    assert identity(3) == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    with pytest.raises(ValueError):
        identity(0)


def test_transpose():
    assert transpose([[1, 2, 3], [4, 5, 6]]) == [[1, 4], [2, 5], [3, 6]]
    assert transpose([[7]]) == [[7]]
    assert transpose([]) == []


def test_transpose_does_not_modify():
    m = [[1, 2], [3, 4]]
    transpose(m)
    assert m == [[1, 2], [3, 4]]


def test_multiply():
    assert multiply([[1, 2], [3, 4]], [[5, 6], [7, 8]]) == [[19, 22], [43, 50]]


def test_multiply_non_square():
    assert multiply([[1, 2, 3]], [[1], [2], [3]]) == [[14]]
    assert multiply([[1], [2]], [[3, 4]]) == [[3, 4], [6, 8]]


def test_multiply_identity():
    m = [[2, -1], [0, 5]]
    assert multiply(m, identity(2)) == m


def test_multiply_shape_error():
    with pytest.raises(ValueError):
        multiply([[1, 2]], [[1, 2]])


def test_determinant():
    assert determinant([[1, 2], [3, 4]]) == -2
    assert determinant([[5]]) == 5
    assert determinant([[2, 0, 1], [1, 3, 2], [1, 1, 1]]) == 0
    assert determinant([[6, 1, 1], [4, -2, 5], [2, 8, 7]]) == -306


def test_determinant_float():
    assert determinant([[0.5, 1.0], [2.0, 3.0]]) == pytest.approx(-0.5)


def test_determinant_errors():
    with pytest.raises(ValueError):
        determinant([])
    with pytest.raises(ValueError):
        determinant([[1, 2, 3], [4, 5, 6]])
