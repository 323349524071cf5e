"""Retours: ARL and NOEMIE received per lot, and payments and rejects per invoice."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Footer, Header, Static

from balise.ui.i18n import euros, lot_date, number, payment_state, pick, stamp, t
from balise.ui.screens.base import KioskScreen
from balise.ui.widgets.lazy_table import LazyTable
from balise.ui.widgets.plain import Plain, row

if TYPE_CHECKING:
    from balise.domain.mailrecords import PaymentRecord, ReturnRecord


def _return_row(r: ReturnRecord) -> tuple[Text, ...]:
    lot = f"{r.lot_number} ({lot_date(r.lot_date)})" if r.lot_number and r.lot_date else "—"
    return row(stamp(r.received, hour=False), r.kind.upper(), lot, pick(r.words_fr, r.words_en))


def _payment_row(p: PaymentRecord) -> tuple[Text, ...]:
    amc = f"{euros(p.amc_paid or 0)} {payment_state(p.amc_state)}" if p.amc_asked else "—"
    return row(
        f"{p.lot_number} ({lot_date(p.lot_date)})",
        str(p.invoice_number),
        f"{euros(p.amo_paid)}/{euros(p.amo_asked)} {payment_state(p.amo_state)}",
        amc,
        ", ".join(p.reasons) or "—",
    )


def _ident(record: ReturnRecord | PaymentRecord) -> int:
    return record.id


class ReturnsScreen(KioskScreen):
    """Both listings are read a page at a time: ten years of NOEMIE hold millions of invoices."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "key.back", id="returns-back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._empty: dict[str, bool] = {}

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="returns-screen"):
            yield Plain(t("returns.title"), classes="title", id="returns-title")
            yield LazyTable(_return_row, _ident, id="returns")
            yield Plain(t("payments.title"), classes="title", id="payments-title")
            yield LazyTable(_payment_row, _ident, id="payments")
            yield Plain("", id="returns-empty")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = t("returns.title")
        returns: LazyTable[ReturnRecord] = self.query_one("#returns", LazyTable)
        for key in ("date", "kind", "lot", "words"):
            returns.add_column(t(f"returns.col.{key}"), key=key)
        payments: LazyTable[PaymentRecord] = self.query_one("#payments", LazyTable)
        for key in ("lot", "invoice", "amo", "amc", "reasons"):
            label = t("returns.col.lot") if key == "lot" else t(f"payments.col.{key}")
            payments.add_column(label, key=key)
        returns.focus()
        returns.show(self.backend.return_rows)
        payments.show(self.backend.payment_rows)

    def on_lazy_table_changed(self, event: LazyTable.Changed) -> None:
        which = "returns" if event.table.id == "returns" else "payments"
        title = t(f"{which}.title")
        if event.total:
            window = t("list.window", first=event.first, last=event.last, total=number(event.total))
            title = f"{title} · {window}"
        self.query_one(f"#{which}-title", Static).update(title)
        self._empty[which] = not event.total
        empty = [t(f"{key}.empty") for key in ("returns", "payments") if self._empty.get(key)]
        self.query_one("#returns-empty", Static).update("\n".join(empty))

    def action_back(self) -> None:
        self.app.pop_screen()
