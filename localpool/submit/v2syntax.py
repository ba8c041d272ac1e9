"""The submit language's "new syntax" for ``arguments`` and ``environment``, read and written.

localpool's own reading of the rules in the condor_submit manual (it shares
no code with the product it stands in for, so that a quoting mistake on one
side shows up as a difference):

* the new syntax is the whole value in double quotes; inside them ``""`` is
  one literal double quote. What is between the quotes is the *raw* text,
  which the job ad keeps (``Arguments``, ``Environment``);
* in the raw text, spaces and tabs separate the words (arguments, or
  ``NAME=VALUE`` entries);
* a single-quoted section keeps white space inside a word; within it ``''``
  is one literal single quote. A section may be any part of a word, and an
  empty one (``''``) still makes a word;
* the old syntax (no leading double quote) separates ``environment``
  entries with ``;`` and keeps every other character, spaces included.
"""

from __future__ import annotations

from collections.abc import Iterable

SEPARATORS = " \t"


class V2SyntaxError(ValueError):
    """A value that does not follow the syntax; the message says where."""


def is_new_syntax(value: str) -> bool:
    """Does a submit value use the new syntax (it starts with a double quote)?"""
    return value.lstrip().startswith('"')


def unquote(value: str) -> str:
    """The raw text of a double-quoted submit value (``""`` read as ``"``)."""
    text = value.strip()
    if not text.startswith('"'):
        raise V2SyntaxError("does not start with a double quote")
    parts: list[str] = []
    start = 1
    while True:
        quote = text.find('"', start)
        if quote < 0:
            raise V2SyntaxError("Unterminated double-quote.")
        parts.append(text[start:quote])
        if text[quote + 1 : quote + 2] == '"':  # a doubled quote stands for itself
            parts.append('"')
            start = quote + 2
            continue
        trailing = text[quote + 1 :]
        if trailing.strip():
            raise V2SyntaxError(f"Unexpected characters following double-quote: {text[quote:]}")
        return "".join(parts)


def split_words(raw: str) -> list[str]:
    """The words of raw new-syntax text (a job ad's ``Arguments`` or ``Environment``)."""
    words: list[str] = []
    word: list[str] | None = None  # None: between words
    section = -1  # where the single-quoted section we are in began; -1: outside one
    i = 0
    while i < len(raw):
        char = raw[i]
        if section >= 0:
            if char != "'":
                word.append(char)
            elif raw[i + 1 : i + 2] == "'":
                word.append("'")
                i += 1
            else:
                section = -1
        elif char in SEPARATORS:
            if word is not None:
                words.append("".join(word))
                word = None
        else:
            if word is None:
                word = []
            if char == "'":
                section = i
            else:
                word.append(char)
        i += 1
    if section >= 0:
        raise V2SyntaxError(f"Unbalanced single quote starting here: {raw[section:]}")
    if word is not None:
        words.append("".join(word))
    return words


def join_words(words: Iterable[str]) -> str:
    """Raw text for ``words`` as HTCondor spells it: each white-space character quoted alone.

    (The job ad of a real pool shows ``two' 'words`` for "two words".)
    """
    out = []
    for word in words:
        if word == "":
            out.append("''")
            continue
        spelled = ""
        for char in word:
            if char.isspace():
                spelled += f"'{char}'"
            elif char == "'":
                spelled += "''''"
            else:
                spelled += char
        out.append(spelled)
    return " ".join(out)


def parse_arguments(value: str) -> list[str]:
    """The words of a new-syntax ``arguments`` value."""
    return split_words(unquote(value))


def _entry(entry: str) -> tuple[str, str]:
    name, equals, value = entry.partition("=")
    if not equals:
        raise V2SyntaxError(f"Missing '=' after environment variable '{entry}'.")
    if not name:
        raise V2SyntaxError(f"Missing variable name in '{entry}'.")
    return name, value


def environment_from_raw(raw: str) -> dict[str, str]:
    """Variables from raw new-syntax text (a job ad's ``Environment``); the last one wins."""
    return dict(_entry(word) for word in split_words(raw))


def parse_environment(value: str) -> dict[str, str]:
    """Variables from an ``environment`` value, new syntax or old (``;``-separated)."""
    if is_new_syntax(value):
        return environment_from_raw(unquote(value))
    return dict(_entry(entry) for entry in value.split(";") if entry)
