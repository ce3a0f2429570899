from textstats import average_word_length, sentence_count, top_words, word_count


def test_word_count_basic():
    assert word_count("Hello, world!") == 2
    assert word_count("") == 0


def test_word_count_splits_on_non_letters():
    assert word_count("don't stop-me now 42times") == 6


def test_top_words_order_and_ties():
    text = "b a c b a b d"
    assert top_words(text, 2) == [("b", 3), ("a", 2)]
    assert top_words(text, 4) == [("b", 3), ("a", 2), ("c", 1), ("d", 1)]


def test_top_words_case_insensitive():
    assert top_words("The the THE cat", 1) == [("the", 3)]


def test_top_words_edges():
    assert top_words("one two", 5) == [("one", 1), ("two", 1)]
    assert top_words("one two", 0) == []
    assert top_words("", 3) == []


def test_sentence_count():
    assert sentence_count("Hi there. How are you? Fine!") == 3
    assert sentence_count("Wait... what?!") == 2


def test_sentence_count_no_letters():
    assert sentence_count("") == 0
    assert sentence_count("... 123 !") == 0
    assert sentence_count("no end mark") == 1


def test_average_word_length():
    assert average_word_length("ab abcd") == 3.0
    assert average_word_length("a bb ccc") == 2.0
    assert average_word_length("I am here") == 2.33


def test_average_word_length_empty():
    assert average_word_length("!!! 42") == 0.0
