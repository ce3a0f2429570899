import datetime

import pytest
from dateutils import add_business_days, business_days_between, is_business_day, parse_date

D = datetime.date


def test_parse_date():
    assert parse_date("2024-02-29") == D(2024, 2, 29)
    assert isinstance(parse_date("2023-01-05"), datetime.date)


def test_parse_date_errors():
    for bad in ("2023-02-30", "2023-1-05", "05/01/2023", "", "2023-01-05x"):
        with pytest.raises(ValueError):
            parse_date(bad)


def test_is_business_day():
    assert is_business_day(D(2024, 3, 8))  # Friday
    assert not is_business_day(D(2024, 3, 9))  # Saturday
    assert not is_business_day(D(2024, 3, 10))  # Sunday


def test_business_days_between_week():
    assert business_days_between(D(2024, 3, 4), D(2024, 3, 11)) == 5


def test_business_days_between_edges():
    assert business_days_between(D(2024, 3, 4), D(2024, 3, 4)) == 0
    assert business_days_between(D(2024, 3, 11), D(2024, 3, 4)) == 0
    assert business_days_between(D(2024, 3, 9), D(2024, 3, 11)) == 0
    assert business_days_between(D(2024, 3, 8), D(2024, 3, 12)) == 2


def test_business_days_between_long():
    assert business_days_between(D(2024, 1, 1), D(2025, 1, 1)) == 262


def test_add_business_days():
    assert add_business_days(D(2024, 3, 7), 1) == D(2024, 3, 8)
    assert add_business_days(D(2024, 3, 8), 1) == D(2024, 3, 11)
    assert add_business_days(D(2024, 3, 4), 10) == D(2024, 3, 18)


def test_add_business_days_from_weekend_and_zero():
    assert add_business_days(D(2024, 3, 9), 1) == D(2024, 3, 11)
    assert add_business_days(D(2024, 3, 9), 0) == D(2024, 3, 9)


def test_add_business_days_negative():
    with pytest.raises(ValueError):
        add_business_days(D(2024, 3, 4), -1)
