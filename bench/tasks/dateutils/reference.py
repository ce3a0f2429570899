import datetime
import re


def parse_date(s):
    if not isinstance(s, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        raise ValueError(f"not a YYYY-MM-DD date: {s!r}")
    y, m, d = map(int, s.split("-"))
    return datetime.date(y, m, d)


def is_business_day(d):
    return d.weekday() < 5


def business_days_between(start, end):
    count = 0
    d = start
    while d < end:
        if is_business_day(d):
            count += 1
        d += datetime.timedelta(days=1)
    return count


def add_business_days(d, n):
    if n < 0:
        raise ValueError("n must be >= 0")
    while n > 0:
        d += datetime.timedelta(days=1)
        if is_business_day(d):
            n -= 1
    return d
