"""Alertes: anomalies, overdue ARL, certificate expiry; Entrée acknowledges the chosen one."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Static

from balise.ui.i18n import number, pick, stamp, t
from balise.ui.screens.base import KioskScreen
from balise.ui.widgets.lazy_table import LazyTable
from balise.ui.widgets.plain import Plain, row

if TYPE_CHECKING:
    from balise.domain.mailrecords import AlertRecord


# The words column is cut to the screen (painting rows of 200-character alerts made End three
# times slower than on an empty box); the chosen alert's words are shown whole below the table.
WORDS_WIDTH = 64


def _alert_row(alert: AlertRecord) -> tuple[Text, ...]:
    words = Text(pick(alert.fr, alert.en), no_wrap=True, overflow="ellipsis")
    return (*row(str(alert.id), stamp(alert.created)), words)


def _alert_id(alert: AlertRecord) -> int:
    return alert.id


class AlertsScreen(KioskScreen):
    # Fixed heights: the lines above and below the table change at every move of the cursor,
    # and must not make the table's size (and paint) change with them.
    DEFAULT_CSS = """
    #alerts-count { height: 1; }
    #alert-words { height: 3; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "acknowledge", "key.ack", priority=True, id="alerts-ack"),
        Binding("escape", "back", "key.back", id="alerts-back"),
    ]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="alerts-screen"):
            yield Plain("", id="alerts-count")
            yield LazyTable(_alert_row, _alert_id, id="alerts")
            yield Plain("", id="alert-words")
            yield Plain("", id="alerts-empty")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = t("alerts.title")
        table: LazyTable[AlertRecord] = self.query_one("#alerts", LazyTable)
        for key in ("id", "date"):
            table.add_column(t(f"alerts.col.{key}"), key=key)
        table.add_column(t("alerts.col.words"), key="words", width=WORDS_WIDTH)
        table.focus()
        table.show(self.backend.alert_rows)

    def on_lazy_table_changed(self, event: LazyTable.Changed) -> None:
        count = (
            t("list.window", first=event.first, last=event.last, total=number(event.total))
            if event.total
            else ""
        )
        self.query_one("#alerts-count", Static).update(count)
        self.query_one("#alerts-empty", Static).update("" if event.total else t("alerts.empty"))
        if not event.total:
            self.query_one("#alert-words", Static).update("")

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        table: LazyTable[AlertRecord] = self.query_one("#alerts", LazyTable)
        alert = table.highlighted()
        self.query_one("#alert-words", Static).update(
            "" if alert is None else pick(alert.fr, alert.en)
        )

    def action_acknowledge(self) -> None:
        table = self.query_one("#alerts", DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            if key is not None:
                self._acknowledge(int(key))

    @work(thread=True, exclusive=True, exit_on_error=False, group="ack")
    def _acknowledge(self, alert_id: int) -> None:
        if self.backend.acknowledge_alert(alert_id):
            self.app.call_from_thread(self.notify, t("alerts.acked", id=alert_id), timeout=3)
        table: LazyTable[AlertRecord] = self.query_one("#alerts", LazyTable)
        self.app.call_from_thread(table.reload)

    def action_back(self) -> None:
        self.app.pop_screen()
