"""Retours: ARL and NOEMIE received per lot, and payments and rejects per invoice."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Static

from balise.ui.i18n import euros, lot_date, pick, t
from balise.ui.screens.base import KioskScreen
from balise.ui.widgets.plain import Plain, row

if TYPE_CHECKING:
    from balise.ports import PaymentRecord, ReturnRecord


def _state(code: str | None) -> str:
    return t(f"payment.state.{code}") if code in ("P", "R", "D") else (code or "—")


class ReturnsScreen(KioskScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "key.back", id="returns-back"),
    ]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="returns-screen"):
            yield Plain(t("returns.title"), classes="title")
            yield DataTable[Text](id="returns", cursor_type="row")
            yield Plain(t("payments.title"), classes="title")
            yield DataTable[Text](id="payments", cursor_type="row")
            yield Plain("", id="returns-empty")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = t("returns.title")
        returns = self.query_one("#returns", DataTable)
        for key in ("date", "kind", "lot", "words"):
            returns.add_column(t(f"returns.col.{key}"), key=key)
        payments = self.query_one("#payments", DataTable)
        for key in ("lot", "invoice", "amo", "amc", "reasons"):
            label = t("returns.col.lot") if key == "lot" else t(f"payments.col.{key}")
            payments.add_column(label, key=key)
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def load(self) -> None:
        returns = self.backend.returns()
        payments = self.backend.payments()
        self.app.call_from_thread(self._show, returns, payments)

    def _show(self, returns: list[ReturnRecord], payments: list[PaymentRecord]) -> None:
        table = self.query_one("#returns", DataTable)
        for r in returns:
            lot = f"{r.lot_number} ({lot_date(r.lot_date)})" if r.lot_number and r.lot_date else "—"
            table.add_row(*row(r.received[:10], r.kind.upper(), lot, pick(r.words_fr, r.words_en)))
        pay = self.query_one("#payments", DataTable)
        for p in payments:
            amc = f"{euros(p.amc_paid or 0)} {_state(p.amc_state)}" if p.amc_asked else "—"
            pay.add_row(
                *row(
                    f"{p.lot_number} ({lot_date(p.lot_date)})",
                    str(p.invoice_number),
                    f"{euros(p.amo_paid)}/{euros(p.amo_asked)} {_state(p.amo_state)}",
                    amc,
                    ", ".join(p.reasons) or "—",
                )
            )
        empty = []
        if not returns:
            empty.append(t("returns.empty"))
        if not payments:
            empty.append(t("payments.empty"))
        self.query_one("#returns-empty", Static).update("\n".join(empty))
        table.focus()

    def action_back(self) -> None:
        self.app.pop_screen()
