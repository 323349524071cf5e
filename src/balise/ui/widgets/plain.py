"""Text from outside shown as text, never as Textual markup.

A file name dropped by the practice software, the words of a return mail, a name read from a card
certificate or a parameter typed by a technician may contain ``[`` … ``]``: read as markup, a
name like ``lot[a==].txt`` raises MarkupError (the panel, or the whole kiosk, goes blank) and
``[@click=…]`` becomes an action link. Every kiosk text therefore goes through these: ``Plain``
(a Static that never parses markup), ``cell`` / ``row`` for DataTable cells and ``option_text``
for list prompts (rich ``Text`` objects, shown as they are).
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

__all__ = ["Plain", "cell", "option_text", "row"]


class Plain(Static):
    """A Static whose content, at creation and at every ``update``, is plain text."""

    def __init__(self, content: str = "", **kwargs: object) -> None:
        super().__init__(content, markup=False, **kwargs)  # type: ignore[arg-type]


def cell(value: str) -> Text:
    """A DataTable cell showing ``value`` as it is (a plain ``str`` cell is read as markup)."""
    return Text(value)


def row(*values: str) -> tuple[Text, ...]:
    """A DataTable row of plain cells."""
    return tuple(Text(v) for v in values)


def option_text(value: str) -> Text:
    """An OptionList / SelectionList prompt shown as it is."""
    return Text(value)
