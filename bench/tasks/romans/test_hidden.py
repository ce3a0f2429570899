import pytest
from romans import add_roman, from_roman, is_roman, to_roman


def test_to_roman_values():
    assert to_roman(1) == "I"
    assert to_roman(4) == "IV"
    assert to_roman(1994) == "MCMXCIV"
    assert to_roman(3999) == "MMMCMXCIX"


def test_to_roman_out_of_range():
    for bad in (0, -1, 4000):
        with pytest.raises(ValueError):
            to_roman(bad)


def test_from_roman_values():
    assert from_roman("XLII") == 42
    assert from_roman("MMXXIV") == 2024


def test_round_trip():
    assert all(from_roman(to_roman(n)) == n for n in range(1, 4000))


def test_from_roman_rejects_non_canonical():
    for bad in ("", "IIII", "IC", "VX", "mcm", "ABC", "IIX"):
        with pytest.raises(ValueError):
            from_roman(bad)


def test_is_roman():
    assert is_roman("MCMXCIV")
    assert not is_roman("IIII")
    assert not is_roman("")


def test_add_roman():
    assert add_roman("XIV", "XXVIII") == "XLII"
    assert add_roman("MM", "MCMXCIX") == "MMMCMXCIX"


def test_add_roman_errors():
    with pytest.raises(ValueError):
        add_roman("MM", "MM")
    with pytest.raises(ValueError):
        add_roman("IIII", "I")
