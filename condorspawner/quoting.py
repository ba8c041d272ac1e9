"""HTCondor's quoting rules for the submit language, both ways.

Every user value enters a submit description through one of the ``submit_*``
functions here; each returns a :class:`Quoted` string, the only kind of text
the templates may print. The ``split_*``/``parse_*`` functions read the same
syntax back: tests use them to check round trips. (localpool reads the syntax
with code of its own, ``localpool/submit/v2syntax.py``; tests hold both to HTCondor.)

Rules (condor_submit manual, "arguments" and "environment"):

* macro expansion: every ``$`` is written ``$(DOLLAR)``. HTCondor re-reads
  the text after that substitution, so a literal ``$(DOLLAR)`` cannot be
  carried this way and is refused; ``$$`` is refused everywhere, because
  HTCondor substitutes ``$$(...)`` from the machine ad at match time;
* ClassAd strings: :func:`classad2.quote`, with ``$`` as the octal escape
  ``\044`` so that macro expansion never sees it;
* arguments and environment ("new syntax"): the whole value in double
  quotes, ``""`` for a literal double quote, words split on white space, a
  word's white space and single quotes inside a single-quoted section, where
  ``''`` is a literal single quote.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import classad2

from condorspawner.jobad import config_string

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_V2_SPACE = " \t\n\r\v\f"


class QuotingError(ValueError):
    """A value that cannot be written safely in a submit description.

    The message says what is wrong ("contains a NUL character"); callers
    prefix the field and value."""


class Quoted(str):
    """Text that went through a quoting function and may enter a submit description."""

    __slots__ = ()


_DOLLAR_MACRO_RE = re.compile(r"\$\(dollar\)", re.IGNORECASE)


def _escape_macros(text: str) -> str:
    """``$`` as ``$(DOLLAR)``; callers have refused a literal ``$(DOLLAR)`` with check_text."""
    return text.replace("$", "$(DOLLAR)")


def check_text(value: str, *, classad_string: bool = False) -> str:
    """Refuse what the quoting rules cannot carry.

    Everywhere: NUL and ``$$``. Outside ClassAd strings also control
    characters (newline, tab, ...) and a literal ``$(DOLLAR)``.
    """
    if not isinstance(value, str):
        raise QuotingError(f"expected text, got {type(value).__name__}")
    if "\x00" in value:
        raise QuotingError("contains a NUL character")
    if "$$" in value:
        raise QuotingError("contains '$$', which HTCondor substitutes at match time")
    if not classad_string:
        if _CONTROL_RE.search(value):
            raise QuotingError("contains a control character (newline, tab, ...)")
        if _DOLLAR_MACRO_RE.search(value):
            raise QuotingError("contains '$(DOLLAR)', which HTCondor would expand to '$'")
    return value


def submit_classad_string(value: str) -> Quoted:
    """A ClassAd string literal for ``MY.Attr = ...`` (any text but NUL and ``$$``)."""
    check_text(value, classad_string=True)
    return Quoted(config_string(value))


def submit_classad_expr(value: str) -> Quoted:
    """A ClassAd expression given by a user (``--requirements``), parsed before use."""
    check_text(value)
    if not value.strip():
        raise QuotingError("is empty")
    # The ClassAd parser stops at the end of the first complete ad and ignores
    # the rest, so parse inside a sentinel ad and insist on exactly its two
    # attributes: text closing the parenthesis or the ad is refused.
    try:
        ad = classad2.ClassAd(f"[expression = ({value}); condorspawner_end = 1]")
    except Exception:
        ad = None
    if ad is None or set(ad.keys()) != {"expression", "condorspawner_end"}:
        raise QuotingError("is not a single ClassAd expression")
    return Quoted(_escape_macros(value))  # condor_submit puts its own parentheses around it


def submit_path(value: str, *, in_list: bool = False) -> Quoted:
    """A file path for ``executable``, ``container_image`` or a file list."""
    check_text(value)
    if not value or value != value.strip():
        raise QuotingError("is empty or has white space at either end")
    if value.endswith("\\"):
        raise QuotingError("ends with a backslash (a line continuation in submit files)")
    if '"' in value:
        raise QuotingError("contains a double quote")
    if in_list and "," in value:
        raise QuotingError("contains a comma, which separates HTCondor file lists")
    return Quoted(_escape_macros(value))


def submit_path_list(values: Iterable[str]) -> Quoted:
    """A comma-separated file list (``transfer_input_files``)."""
    return Quoted(",".join(submit_path(v, in_list=True) for v in values))


def _v2_word(word: str) -> str:
    if word and not any(c in word for c in _V2_SPACE + "'"):
        return word
    return "'" + word.replace("'", "''") + "'"


def join_v2(words: Iterable[str]) -> str:
    """HTCondor's raw "V2" form of a word list, as stored in the job ad."""
    return " ".join(_v2_word(w) for w in words)


def submit_arguments(args: Iterable[str]) -> Quoted:
    """The value of ``arguments`` for this exact argument list."""
    words = [check_text(a) for a in args]
    return Quoted(_escape_macros('"' + join_v2(words).replace('"', '""') + '"'))


def check_env_name(name: str) -> str:
    """An environment variable name HTCondor and every shell accept."""
    if not isinstance(name, str) or not _ENV_NAME_RE.match(name):
        raise QuotingError(
            "is not a valid environment variable name (letters, digits and _, "
            "not starting with a digit)"
        )
    return name


def submit_environment(env: Mapping[str, str]) -> Quoted:
    """The value of ``environment`` for exactly these variables."""
    words = []
    for name, value in env.items():
        check_env_name(name)
        check_text(value)
        words.append(f"{name}=" + (_v2_word(value) if value else ""))
    return Quoted(_escape_macros('"' + " ".join(words).replace('"', '""') + '"'))


# --- reading the syntax back -------------------------------------------------


def split_v2(raw: str) -> list[str]:
    """Words of a raw V2 string (the job ad's ``Arguments``/``Environment`` text)."""
    words: list[str] = []
    current: list[str] | None = None
    in_single = False
    i = 0
    while i < len(raw):
        c = raw[i]
        if in_single:
            if c == "'":
                if raw.startswith("''", i):
                    current.append("'")
                    i += 2
                    continue
                in_single = False
            else:
                current.append(c)
        elif c == "'":
            in_single = True
            current = current if current is not None else []
        elif c in _V2_SPACE:
            if current is not None:
                words.append("".join(current))
                current = None
        else:
            current = current if current is not None else []
            current.append(c)
        i += 1
    if in_single:
        raise QuotingError("unterminated single quote")
    if current is not None:
        words.append("".join(current))
    return words


def unquote_submit_value(value: str) -> str:
    """The raw V2 text inside a submit file's double-quoted value (``""`` is ``"``)."""
    value = value.strip()
    if len(value) < 2 or not (value.startswith('"') and value.endswith('"')):
        raise QuotingError("is not surrounded by double quotes")
    inner = value[1:-1]
    if re.search(r'(?<!")"(?!")', inner.replace('""', "")):
        raise QuotingError("has an unpaired double quote")
    return inner.replace('""', '"')


def parse_submit_arguments(value: str) -> list[str]:
    """Arguments from a submit file's ``arguments`` value (new or old syntax)."""
    if value.strip().startswith('"'):
        return split_v2(unquote_submit_value(value))
    return value.split()


def parse_v2_environment(raw: str) -> dict[str, str]:
    """Variables from a raw V2 environment string (the job ad's ``Environment``)."""
    env = {}
    for word in split_v2(raw):
        name, sep, val = word.partition("=")
        if not sep:
            raise QuotingError(f"environment entry {word!r} has no '='")
        env[name] = val
    return env


def parse_submit_environment(value: str) -> dict[str, str]:
    """Variables from a submit file's ``environment`` value (new or old ``;`` syntax)."""
    if value.strip().startswith('"'):
        return parse_v2_environment(unquote_submit_value(value))
    env = {}
    for entry in filter(None, (e.strip() for e in value.split(";"))):
        name, _, val = entry.partition("=")
        env[name] = val
    return env
