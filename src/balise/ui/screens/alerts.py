"""Alertes: anomalies, overdue ARL, certificate expiry; Entrée acknowledges the chosen one."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Static

from balise.ui.i18n import pick, t
from balise.ui.screens.base import KioskScreen
from balise.ui.widgets.plain import Plain, row

if TYPE_CHECKING:
    from balise.ports import AlertRecord


class AlertsScreen(KioskScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "acknowledge", "key.ack", priority=True, id="alerts-ack"),
        Binding("escape", "back", "key.back", id="alerts-back"),
    ]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="alerts-screen"):
            yield DataTable[Text](id="alerts", cursor_type="row")
            yield Plain("", id="alerts-empty")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = t("alerts.title")
        table = self.query_one("#alerts", DataTable)
        for key in ("id", "date", "words"):
            table.add_column(t(f"alerts.col.{key}"), key=key)
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def load(self) -> None:
        alerts = self.backend.alerts()
        self.app.call_from_thread(self._show, alerts)

    def _show(self, alerts: list[AlertRecord]) -> None:
        table = self.query_one("#alerts", DataTable)
        table.clear()
        for alert in alerts:
            table.add_row(
                *row(
                    str(alert.id),
                    alert.created[:16].replace("T", " "),
                    pick(alert.fr, alert.en),
                ),
                key=str(alert.id),
            )
        self.query_one("#alerts-empty", Static).update("" if alerts else t("alerts.empty"))
        table.focus()

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
        alerts = self.backend.alerts()
        self.app.call_from_thread(self._show, alerts)

    def action_back(self) -> None:
        self.app.pop_screen()
