"""JSON text indented like ``json.dumps(value, ensure_ascii=False, indent=n)``, character for
character, at the speed of the C encoder.

With ``indent`` the standard library falls back to its pure-Python encoder (a generator per
nesting level): the lot status files published under retours/ and the rows of the ``--json``
listings spent most of their time there. Here the structure is walked once and every scalar and
key is written by the standard library's own C functions, so the text (escapes, numbers) is
theirs. Anything this walk does not know (a key that is not a string, a float, a type the
standard encoder would reject or convert) is handed to ``json.dumps`` itself."""

from __future__ import annotations

import json
from json.encoder import encode_basestring  # the C function when the accelerator is there
from typing import cast

_SEP = ": "


class _Fallback(Exception):
    """A value the fast walk leaves to json.dumps."""


def dumps_indented(value: object, indent: int = 1) -> str:
    """``json.dumps(value, ensure_ascii=False, indent=indent)``, the same text."""
    out: list[str] = []
    try:
        _emit(value, "\n", " " * indent, out, 0)
    except (_Fallback, RecursionError):
        return json.dumps(value, ensure_ascii=False, indent=indent)
    return "".join(out)


def _scalar(value: object) -> str | None:
    """The text of a plain scalar (exact types: the common case), else None."""
    kind = type(value)
    if kind is str:
        return encode_basestring(cast(str, value))
    if kind is int:
        return int.__repr__(cast(int, value))
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return None


def _emit(value: object, newline: str, step: str, out: list[str], depth: int) -> None:
    text = _scalar(value)
    if text is not None:
        out.append(text)
    elif isinstance(value, str):
        out.append(encode_basestring(value))
    elif isinstance(value, int) and not isinstance(value, bool):
        out.append(int.__repr__(value))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        if depth > 200:
            raise _Fallback  # json.dumps says what it thinks of it
        inner = newline + step
        after = "," + inner
        out.append("{")
        first = True
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Fallback
            out.append(inner if first else after)
            first = False
            out.append(encode_basestring(key))
            out.append(_SEP)
            text = _scalar(item)
            if text is not None:
                out.append(text)
            else:
                _emit(item, inner, step, out, depth + 1)
        out.append(newline + "}")
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[]")
            return
        if depth > 200:
            raise _Fallback
        inner = newline + step
        after = "," + inner
        out.append("[")
        first = True
        for item in value:
            out.append(inner if first else after)
            first = False
            text = _scalar(item)
            if text is not None:
                out.append(text)
            else:
                _emit(item, inner, step, out, depth + 1)
        out.append(newline + "]")
    else:
        raise _Fallback  # floats, and what json.dumps converts or refuses
