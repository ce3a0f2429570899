ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def encode_base62(n):
    if n < 0:
        raise ValueError("negative")
    if n == 0:
        return "0"
    out = []
    while n:
        n, r = divmod(n, 62)
        out.append(ALPHABET[r])
    return "".join(reversed(out))


def decode_base62(s):
    if not s:
        raise ValueError("empty")
    n = 0
    for ch in s:
        i = ALPHABET.find(ch)
        if i < 0:
            raise ValueError(f"bad character {ch!r}")
        n = n * 62 + i
    return n


class URLShortener:
    def __init__(self):
        self._by_url = {}
        self._by_code = {}

    def shorten(self, url):
        if not url.startswith(("http://", "https://")):
            raise ValueError("not an http(s) URL")
        if url not in self._by_url:
            code = encode_base62(len(self._by_url) + 1)
            self._by_url[url] = code
            self._by_code[code] = url
        return self._by_url[url]

    def expand(self, code):
        return self._by_code[code]

    def __len__(self):
        return len(self._by_url)
