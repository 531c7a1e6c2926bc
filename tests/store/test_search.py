"""What a search matches and what a message is listed under (sotto.store.search)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sotto.store.search import PREFIX_LENGTHS, index_terms, matches, query_terms, words


def test_words_are_normalised_and_split_on_non_word_characters() -> None:
    assert words("Lunch at NOON? café-au-lait, ﬁne") == ["lunch", "at", "noon", "café", "au", "lait", "fine"]
    assert words("STRASSE Straße") == ["strasse", "strasse"]
    assert words("  ...  ") == []


def test_every_query_word_must_begin_a_word_of_the_text_in_any_order() -> None:
    assert matches("lun", "Lunch at noon?")
    assert matches("noon lunch", "Lunch at noon?")
    assert matches("LUNCH", "lunch")
    assert not matches("unch", "Lunch at noon?")  # inside a word: not a match
    assert not matches("lunch dinner", "Lunch at noon?")
    assert not matches("", "anything")
    assert not matches("?!", "anything?!")
    assert not matches("lunch", "")


def test_a_text_is_listed_under_its_words_and_their_beginnings() -> None:
    assert index_terms("Hi hello") == {"h", "hi", "he", "hel", "hell", "hello"}
    long = "abcdefghijklmnopqrstuvwxyz"
    listed = index_terms(long)
    assert long in listed and {long[:n] for n in PREFIX_LENGTHS} <= listed
    assert len(listed) == len(PREFIX_LENGTHS) + 1


@given(st.text(max_size=40), st.text(max_size=12))
def test_whatever_matches_is_listed_under_every_looked_up_term(text: str, query: str) -> None:
    if matches(query, text):
        assert set(query_terms(query)) <= index_terms(text)


@given(st.text(alphabet="abcé ÅK-1_", max_size=30))
def test_each_word_beginning_of_a_text_matches_it(text: str) -> None:
    for word in words(text):
        for n in range(1, len(word) + 1):
            assert matches(word[:n], text)
