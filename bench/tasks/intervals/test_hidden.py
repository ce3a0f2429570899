from intervals import gaps, merge, overlaps, total_length


def test_merge_unsorted_and_overlapping():
    assert merge([(5, 8), (1, 3), (2, 4)]) == [(1, 4), (5, 8)]


def test_merge_touching_and_nested():
    assert merge([(1, 2), (2, 3)]) == [(1, 3)]
    assert merge([(1, 10), (2, 3), (4, 5)]) == [(1, 10)]


def test_merge_empty_and_point():
    assert merge([]) == []
    assert merge([(3, 3)]) == [(3, 3)]


def test_overlaps():
    assert overlaps((1, 5), (4, 9))
    assert overlaps((1, 2), (2, 3))
    assert not overlaps((1, 2), (3, 4))
    assert overlaps((1, 10), (3, 4))


def test_total_length():
    assert total_length([(1, 3), (2, 5), (10, 11)]) == 5
    assert total_length([]) == 0
    assert total_length([(4, 4)]) == 0
    assert total_length([(0, 10)]) == 10
    assert total_length([(1, 2), (5, 9)]) == 5


def test_gaps_basic():
    assert gaps([(2, 4), (6, 7)], 0, 10) == [(0, 2), (4, 6), (7, 10)]


def test_gaps_fully_covered():
    assert gaps([(0, 10)], 2, 8) == []


def test_gaps_nothing_covered():
    assert gaps([], 0, 5) == [(0, 5)]
    assert gaps([(20, 30)], 0, 5) == [(0, 5)]


def test_gaps_intervals_crossing_bounds():
    assert gaps([(-5, 2), (8, 15)], 0, 10) == [(2, 8)]
