"""A DataTable over a listing too long to load whole (ten years of lots, a million payments).

The table holds a window of at most ``KEEP`` rows, read a page at a time in a thread worker: the
first page at once, the next one when the cursor nears the bottom of the window, the previous one
near its top; Home and End jump to the first and the last rows of the whole listing (keyset pages:
the end is as quick to reach as the start). Rows keep their id as row key, so the screens' Entrée
actions work as on a plain table. ``Changed`` tells the screen how many rows there are in all and
which of them are shown."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Generic, Literal, TypeVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable

from balise.ui.backend import LAST_ID, Rows

T = TypeVar("T")
Where = Literal["first", "last", "below", "above", "again"]
Cells = tuple[Text, ...]

__all__ = ["LazyTable"]


class LazyTable(DataTable[Text], Generic[T]):
    """A row-cursor DataTable fed by a :class:`balise.ui.backend.Rows` listing."""

    PAGE: ClassVar[int] = 50
    KEEP: ClassVar[int] = 150
    MARGIN: ClassVar[int] = 10

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("home,ctrl+home", "first_row", show=False),
        Binding("end,ctrl+end", "last_row", show=False),
    ]

    class Changed(Message):
        """The listing's size or the shown window changed (positions are 1-based)."""

        def __init__(self, table: LazyTable[Any], total: int, first: int, last: int) -> None:
            super().__init__()
            self.table = table
            self.total = total
            self.first = first
            self.last = last

    def __init__(
        self,
        render: Callable[[T], Cells],
        ident: Callable[[T], int],
        **kwargs: Any,
    ) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self._cells = render
        self._ident = ident
        self._factory: Callable[[], Rows[T]] | None = None
        self._source: Rows[T] | None = None
        self._window: list[tuple[int, Cells, T]] = []
        self._start = 0  # position in the whole listing of the window's first row (0-based)
        self._total = 0
        self._more_above = False
        self._more_below = False
        self._loading = False
        self._rebuilding = False
        self._asked = 0  # the latest read asked for: an older one that ends later is dropped

    @property
    def total(self) -> int:
        """How many rows the listing had when last counted."""
        return self._total

    def highlighted(self) -> T | None:
        """The record under the cursor (screens show its details beside the table)."""
        row = self.cursor_row
        return self._window[row][2] if 0 <= row < len(self._window) and self.row_count else None

    @property
    def settled(self) -> bool:
        """A listing is shown and no page is being read."""
        return self._source is not None and not self._loading

    @property
    def window_start(self) -> int:
        """Position in the whole listing of the first row in the table (0-based)."""
        return self._start

    def show(self, source: Callable[[], Rows[T]]) -> None:
        """Show the listing ``source()`` gives (called in the worker: it may open the box) from
        its first row; called again after a change, it counts again."""
        self._factory, self._source = source, None
        self._fetch("first")

    def reload(self) -> None:
        """Read the shown rows again (one was changed or removed), keeping the place."""
        if self._factory is not None:
            self._fetch("again" if self._window else "first")

    def action_first_row(self) -> None:
        if self._factory is None:
            return
        if self._window and not self._more_above:
            self.move_cursor(row=0)  # the first rows are shown already: nothing to read
        else:
            self._fetch("first")

    def action_last_row(self) -> None:
        if self._factory is not None:
            self._fetch("last")

    def watch_cursor_coordinate(self, old: Coordinate, new: Coordinate) -> None:
        super().watch_cursor_coordinate(old, new)
        if self._rebuilding or self._factory is None or self._loading:
            return
        if self._more_below and new.row >= len(self._window) - self.MARGIN:
            self._fetch("below")
        elif self._more_above and new.row < self.MARGIN:
            self._fetch("above")

    # -- loading ------------------------------------------------------------------------------

    def _fetch(self, where: Where) -> None:
        factory, known = self._factory, self._source
        assert factory is not None
        self._loading = True
        self._asked += 1
        asked = self._asked
        after = self._window[-1][0] if self._window else None
        before = self._window[0][0] if self._window else None
        size = max(len(self._window), self.PAGE)
        more_below = self._more_below

        def load() -> None:
            try:
                read(known or factory())
            except Exception:
                self.app.call_from_thread(self._failed, asked)
                raise  # the worker reports it (exit_on_error=False: the kiosk stays up)

        def read(source: Rows[T]) -> None:
            total: int | None = None
            if where == "first":
                total, items = source.count(), source.page(self.PAGE)
            elif where == "last":
                if after is not None and not more_below and not source.page(1, after=after):
                    # The last rows are shown already and none came since: no new page to read.
                    self.app.call_from_thread(self._to_last, asked, source)
                    return
                total, items = source.count(), source.page(self.PAGE, before=LAST_ID)
            elif where == "again":
                total, items = source.count(), source.page(size, after=(before or 1) - 1)
            elif where == "below":
                items = source.page(self.PAGE, after=after)
            else:
                items = source.page(self.PAGE, before=before)
            rows = [(self._ident(item), self._cells(item), item) for item in items]
            self.app.call_from_thread(self._apply, where, rows, total, asked, source)

        self.run_worker(load, thread=True, exclusive=True, group="lazy-page", exit_on_error=False)

    def _failed(self, asked: int) -> None:
        if asked == self._asked:
            self._loading = False  # the next key tries again

    def _to_last(self, asked: int, source: Rows[T]) -> None:
        if asked != self._asked:
            return
        self._source, self._loading = source, False
        self.move_cursor(row=len(self._window) - 1)

    def _apply(
        self,
        where: Where,
        rows: Sequence[tuple[int, Cells, T]],
        total: int | None,
        asked: int,
        source: Rows[T],
    ) -> None:
        if asked != self._asked:
            return  # a later read (End pressed meanwhile, another listing) decides what is shown
        self._source, self._loading = source, False
        if total is not None:
            self._total = total
        full = len(rows) == self.PAGE
        window = list(self._window)
        cursor = self.cursor_row
        if where == "again":
            self._more_below = len(rows) >= max(len(window), self.PAGE)
            window, start = list(rows), self._start
        elif where == "first":
            window, start, cursor = list(rows), 0, 0
            self._more_above, self._more_below = False, full
        elif where == "last":
            window, cursor = list(rows), len(rows) - 1
            start = max(0, self._total - len(rows))
            self._more_above, self._more_below = full, False
        elif where == "below":
            window += rows
            self._more_below = full
            drop = max(0, len(window) - self.KEEP)
            window, start, cursor = window[drop:], self._start + drop, cursor - drop
            self._more_above = self._more_above or drop > 0
        else:
            window = [*rows, *window]
            start = max(0, self._start - len(rows)) if full else 0
            cursor += len(rows)
            self._more_above = full
            drop = max(0, len(window) - self.KEEP)
            window = window[: len(window) - drop]
            self._more_below = self._more_below or drop > 0
        self._total = max(self._total, start + len(window))
        self._start = start
        self._rebuild(window, cursor)
        self.post_message(
            self.Changed(self, self._total, start + 1 if window else 0, start + len(window))
        )

    def _rebuild(self, window: list[tuple[int, Cells, T]], cursor: int) -> None:
        self._rebuilding = True
        try:
            self._window = window
            self.clear()
            for ident, cells, _item in window:
                self.add_row(*cells, key=str(ident))
            self._measure_now()
            if window:
                self.move_cursor(row=max(0, min(cursor, len(window) - 1)), animate=False)
        finally:
            self._rebuilding = False

    def _measure_now(self) -> None:
        """Size the new rows now rather than when the table is next idle (DataTable's own
        ``_on_idle`` step, Textual being pinned): the cursor then scrolls to its row before the
        first paint, so End paints the last rows once instead of the top of the window first."""
        pending = getattr(self, "_new_rows", None)
        if not isinstance(pending, set) or not hasattr(self, "_update_dimensions"):
            return  # another Textual: it measures on idle, at the price of one more paint
        new_rows = set(pending)
        pending.clear()
        self._require_update_dimensions = False
        self._update_dimensions(new_rows)
