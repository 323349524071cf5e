"""JSON listings written one row at a time: the same text ``json.dumps(doc, indent=1,
ensure_ascii=False)`` gives for the whole document, without ever holding the document (a box
holds ten years of lots, returns and payments)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from balise.domain.journal import JsonValue
from balise.domain.jsontext import dumps_indented

T = TypeVar("T")
Member = tuple[str, Iterable[JsonValue]]


def _write(text: str) -> None:
    sys.stdout.write(text)


def write_array(items: Iterable[JsonValue], depth: int = 0) -> None:
    """A JSON array at nesting ``depth``, element by element."""
    pad = " " * (depth + 1)
    first = True
    for item in items:
        text = dumps_indented(item)  # json.dumps(item, ensure_ascii=False, indent=1), faster
        _write(("[\n" if first else ",\n") + pad + text.replace("\n", "\n" + pad))
        first = False
    _write("[]" if first else "\n" + " " * depth + "]")


def write_document(members: Sequence[Member]) -> None:
    """``{"name": [...], ...}``, each array streamed."""
    _write("{")
    for index, (name, items) in enumerate(members):
        _write(("\n " if index == 0 else ",\n ") + json.dumps(name, ensure_ascii=False) + ": ")
        write_array(items, 1)
    _write("\n}\n" if members else "}\n")


def rows(items: Iterable[T], render: Callable[[T], JsonValue]) -> Iterable[JsonValue]:
    return (render(item) for item in items)
