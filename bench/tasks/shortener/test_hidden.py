import pytest
from shortener import URLShortener, decode_base62, encode_base62


def test_encode():
    assert encode_base62(0) == "0"
    assert encode_base62(9) == "9"
    assert encode_base62(10) == "a"
    assert encode_base62(61) == "Z"
    assert encode_base62(62) == "10"
    assert encode_base62(3843) == "ZZ"


def test_encode_negative():
    with pytest.raises(ValueError):
        encode_base62(-1)


def test_decode_and_round_trip():
    assert decode_base62("10") == 62
    assert decode_base62("Z") == 61
    assert all(decode_base62(encode_base62(n)) == n for n in range(0, 5000, 7))


def test_decode_errors():
    with pytest.raises(ValueError):
        decode_base62("")
    with pytest.raises(ValueError):
        decode_base62("ab-c")


def test_shorten_sequential_codes():
    s = URLShortener()
    assert s.shorten("https://a.example") == "1"
    assert s.shorten("http://b.example/x") == "2"
    assert s.expand("2") == "http://b.example/x"


def test_shorten_same_url_same_code():
    s = URLShortener()
    first = s.shorten("https://a.example")
    s.shorten("https://b.example")
    assert s.shorten("https://a.example") == first
    assert len(s) == 2


def test_shorten_rejects_non_http():
    s = URLShortener()
    with pytest.raises(ValueError):
        s.shorten("ftp://x.example")
    assert len(s) == 0


def test_expand_unknown():
    with pytest.raises(KeyError):
        URLShortener().expand("1")


def test_many_urls_use_base62():
    s = URLShortener()
    codes = [s.shorten(f"https://example.com/{i}") for i in range(62)]
    assert codes[9] == "a"
    assert codes[61] == "10"
