"""The kiosk's long tables on their own: a page read late never overwrites what a later key asked
for (End pressed while the next page is still being read shows the last rows, not a mix)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.coordinate import Coordinate

from balise.ui.widgets.lazy_table import LazyTable
from tests.support.bounded_wait import until

ROWS = 1_000


class SlowRows:
    """Ids 1..ROWS; a read of the next page waits until the test lets it go."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.next_page_asked = threading.Event()

    def count(self) -> int:
        return ROWS

    def page(self, limit: int, *, after: int | None = None, before: int | None = None) -> list[int]:
        if before is not None:
            top = min(before, ROWS + 1)
            return list(range(max(1, top - limit), top))
        start = (after or 0) + 1
        if after:
            self.next_page_asked.set()
            self.release.wait(10)
        return list(range(start, min(ROWS, start + limit - 1) + 1))


class TableApp(App[None]):
    def __init__(self, rows: SlowRows) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        yield LazyTable(lambda n: (Text(str(n)),), lambda n: n, id="table")

    def on_mount(self) -> None:
        table: LazyTable[int] = self.query_one(LazyTable)
        table.add_column("n", key="n")
        table.focus()
        table.show(lambda: self.rows)


def _keys(table: LazyTable[Any]) -> Sequence[int]:
    return [
        int(str(table.coordinate_to_cell_key(Coordinate(i, 0)).row_key.value))
        for i in range(table.row_count)
    ]


async def test_end_pressed_while_the_next_page_is_read_shows_the_last_rows() -> None:
    rows = SlowRows()
    app = TableApp(rows)
    async with app.run_test(size=(40, 20)) as pilot:
        table: LazyTable[int] = app.query_one(LazyTable)
        await until(pilot, lambda: table.settled and table.row_count == LazyTable.PAGE)
        table.move_cursor(row=LazyTable.PAGE - 1)  # near the bottom: the next page is asked
        await until(pilot, rows.next_page_asked.is_set)
        await pilot.press("end")
        await until(pilot, lambda: table.settled and _keys(table)[-1] == ROWS)
        rows.release.set()  # the late page arrives now
        await pilot.pause(0.3)
        keys = _keys(table)
        assert keys == list(range(ROWS - LazyTable.PAGE + 1, ROWS + 1))
        assert table.cursor_row == len(keys) - 1
