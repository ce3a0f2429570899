import re
from collections import Counter


def _words(text):
    return re.findall(r"[a-z]+", text.lower())


def word_count(text):
    return len(_words(text))


def top_words(text, n):
    if n <= 0:
        return []
    counts = Counter(_words(text))
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def sentence_count(text):
    return sum(1 for piece in re.split(r"[.!?]+", text) if re.search(r"[A-Za-z]", piece))


def average_word_length(text):
    words = _words(text)
    if not words:
        return 0.0
    return round(sum(len(w) for w in words) / len(words), 2)
