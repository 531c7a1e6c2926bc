"""What a message search matches, and the words a message is indexed under (pure, no keys).

A text is normalised (NFKC, then casefolded) and split into words: runs of letters, digits and
``_`` (``\\w``). A query matches a message when **every word of the query begins a word of the
message**, in any order: ``"lun noon"`` finds "Lunch at noon?", ``"unch"`` does not (the search
matches word beginnings, not any substring).

The SQLite store finds candidates with a blind index (:mod:`sotto.store.sqlite.messages`): each
message is listed under keyed tokens of its words' beginnings (:func:`index_terms`), and a query
looks up one token per query word (:func:`query_terms`). The index holds beginnings of
:data:`PREFIX_LENGTHS` characters and each whole word, so a query word of any length has a
listed beginning that every word it begins shares; a query word longer than the longest
listed beginning is looked up by that beginning and then checked. Candidates are always checked
against the decrypted text with :func:`matches`, the one definition of a match, which the
in-memory store applies to every message.
"""

from __future__ import annotations

import re
import unicodedata

PREFIX_LENGTHS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16)
"""Beginnings of a word listed in the index (the whole word is listed too)."""
MAX_QUERY_WORDS = 16
"""Query words looked up in the index; any more are checked on the decrypted text only."""

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The normalised words of ``text``, in order (repeats kept)."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def index_terms(text: str) -> set[str]:
    """What a message of ``text`` is listed under: each word and its :data:`PREFIX_LENGTHS`
    beginnings (shorter than the word)."""
    terms: set[str] = set()
    for word in words(text):
        terms.add(word)
        for n in PREFIX_LENGTHS:
            if n >= len(word):
                break
            terms.add(word[:n])
    return terms


def _lookup(word: str) -> str:
    """The listed beginning shared by every word that ``word`` begins (itself if short)."""
    return word[: max(n for n in PREFIX_LENGTHS if n <= len(word))]


def query_terms(query: str) -> list[str]:
    """The index entries to look up for ``query`` (distinct, longest first: the longer, the fewer
    messages listed). Empty if the query has no words."""
    found = {_lookup(w) for w in words(query)}
    return sorted(found, key=lambda t: (-len(t), t))[:MAX_QUERY_WORDS]


def matches(query: str, text: str) -> bool:
    """Whether every word of ``query`` begins some word of ``text`` (False for a query without
    words)."""
    wanted = set(words(query))
    if not wanted:
        return False
    have = words(text)
    return all(any(w.startswith(q) for w in have) for q in wanted)
