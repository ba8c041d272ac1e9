"""Job and machine ads as plain Python data, and HTCondor's ways of printing them.

Ads are dicts of attribute -> value, where a value is an int, float, bool,
str, None (undefined) or :class:`Expr` (an unevaluated ClassAd expression).
That keeps the queue a JSON file, while ``classad2`` does the parsing and
evaluation whenever an expression is involved.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from json.encoder import encode_basestring as _json_string  # C speed-up
from typing import Any

import classad2


class Expr(str):
    """The text of a ClassAd expression that is not a literal."""

    __slots__ = ()


Ad = dict[str, Any]


def literal(value: Any) -> str:
    """ClassAd text of one value."""
    if isinstance(value, Expr):
        return str(value)
    if value is None:
        return "undefined"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return classad2.quote(value)
    if isinstance(value, list | tuple):
        return "{ " + ", ".join(literal(v) for v in value) + " }"
    raise TypeError(f"no ClassAd form for {value!r}")


def from_classad_value(value: Any) -> Any:
    """A value read from ``classad2`` turned into our plain form."""
    if isinstance(value, classad2.ExprTree):
        return Expr(str(value))
    if isinstance(value, classad2.Value):
        return None if value == classad2.Value.Undefined else Expr("error")
    if isinstance(value, list):
        return [from_classad_value(v) for v in value]
    if isinstance(value, classad2.ClassAd):
        return Expr(str(value).strip())
    return value


def _parse_as(name: str, text: str) -> Any:
    """``text`` as the value of ``name`` in a ClassAd that must hold nothing else."""
    try:
        ad = classad2.ClassAd(f"[{name} = {text}; {name}_end = 1]")
    except Exception:
        raise ValueError(f"not a ClassAd expression: {text!r}") from None
    if set(ad.keys()) != {name, f"{name}_end"}:
        raise ValueError(f"not a single ClassAd expression: {text!r}")
    return ad[name]


def parse_value(text: str) -> Any:
    """A ClassAd expression's text as a value: literals become Python values."""
    parsed = _parse_as("v", text)
    if ";" in text:
        # "1; v = 2" assigns v again and would pass as one expression; under
        # another name the extra assignment shows
        _parse_as("w", text)
    value = from_classad_value(parsed)
    # an expression keeps the text as written (classad2 would respell =!= as isnt)
    return Expr(text.strip()) if isinstance(value, Expr) else value


def to_classad(ad: Mapping[str, Any]) -> classad2.ClassAd:
    """A ``classad2.ClassAd`` for evaluating expressions over this ad."""
    return classad2.ClassAd("[" + "; ".join(f"{k} = {literal(v)}" for k, v in ad.items()) + "]")


def evaluate(expr: str, my: Mapping[str, Any], target: Mapping[str, Any] | None = None) -> Any:
    """Evaluate an expression with MY = ``my`` and TARGET = ``target``."""
    tree = classad2.ExprTree(expr)
    result = tree.eval(to_classad(my), to_classad(target) if target is not None else None)
    return from_classad_value(result)


def is_true(value: Any) -> bool:
    """HTCondor's reading of a policy expression's result: only true (or non-zero) is true."""
    return value is True or (
        isinstance(value, int | float) and not isinstance(value, bool) and value != 0
    )


def sorted_items(ad: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Attributes in the order condor_q prints them (case-insensitive)."""
    return sorted(ad.items(), key=lambda kv: kv[0].lower())


def _json_value(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _json_string(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value)
    if kind is Expr:
        return f'"\\/Expr({_json_string(value)[1:-1]})\\/"'
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_json_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def format_json(ads: Iterable[Mapping[str, Any]], attributes: Iterable[str] = ()) -> str:
    """``-json`` output; no ads at all prints nothing (as condor_q does)."""
    wanted = {a.lower() for a in attributes}
    blocks = []
    for ad in ads:
        items = [(k, v) for k, v in sorted_items(ad) if not wanted or k.lower() in wanted]
        body = ",\n".join(f'  "{k}": {_json_value(v)}' for k, v in items)
        blocks.append("{\n" + body + "\n}")
    if not blocks:
        return ""
    return "[\n" + "\n,\n".join(blocks) + "\n]\n"


def format_long(ads: Iterable[Mapping[str, Any]], attributes: Iterable[str] = ()) -> str:
    """``-l`` output: ``Attr = value`` lines, a blank line after each ad."""
    wanted = {a.lower() for a in attributes}
    out = []
    for ad in ads:
        for key, value in sorted_items(ad):
            if not wanted or key.lower() in wanted:
                out.append(f"{key} = {literal(value)}")
        out.append("")
    return "\n".join(out) + ("\n" if out else "")


def format_autoformat(ads: Iterable[Mapping[str, Any]], attributes: list[str]) -> str:
    """``-af A B``: values separated by spaces, strings bare, one ad a line."""
    lines = []
    for ad in ads:
        lower = {k.lower(): v for k, v in ad.items()}
        values = []
        for attr in attributes:
            value = lower.get(attr.lower())
            if attr.lower() not in lower:
                try:
                    value = evaluate(attr, ad)
                except Exception:
                    value = None
            values.append(
                "undefined"
                if value is None
                else value
                if isinstance(value, str) and not isinstance(value, Expr)
                else literal(value)
            )
        lines.append(" ".join(values))
    return "".join(line + "\n" for line in lines)


_PRINTF_RE = re.compile(r"%[-+ 0#]*\d*(?:\.\d+)?([sdifgevV])")


def format_printf(ads: Iterable[Mapping[str, Any]], pairs: list[tuple[str, str]]) -> str:
    """``-format FMT EXPR`` pairs: printf-style, C escapes in FMT; nothing for undefined."""
    out = []
    for ad in ads:
        for fmt, attr in pairs:
            lower = {k.lower(): v for k, v in ad.items()}
            if attr.lower() in lower:
                value = lower[attr.lower()]
            else:
                try:
                    value = evaluate(attr, ad)
                except Exception:
                    value = None
            if value is None:
                continue
            text = fmt.encode("latin-1", "backslashreplace").decode("unicode_escape")
            match = _PRINTF_RE.search(text)
            if match:
                kind = match.group(1)
                if kind in "sV" and isinstance(value, str) and not isinstance(value, Expr):
                    shown = value
                elif kind in "di" and isinstance(value, int | float | bool):
                    shown = str(int(value))
                elif kind in "fge" and isinstance(value, int | float):
                    shown = match.group(0) % float(value)
                else:
                    shown = literal(value) if kind in "vV" or not isinstance(value, str) else value
                text = text[: match.start()] + shown + text[match.end() :]
            out.append(text)
    return "".join(out)
