"""Lots: the list by state, a lot's detail with its history and returns, refused files in words."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Static

from balise.domain.lotrecord import LotRecord, QuarantineRecord
from balise.ui.backend import LAST_ID, LotDetail
from balise.ui.i18n import euros, lot_date, lot_state, number, payment_state, pick, stamp, t
from balise.ui.screens.base import KioskScreen
from balise.ui.widgets.lazy_table import LazyTable
from balise.ui.widgets.plain import Plain, row


def lot_columns(table: DataTable[Text]) -> None:
    for key in ("id", "state", "profile", "lot", "date", "invoices", "total", "organism"):
        table.add_column(t(f"lots.col.{key}"), key=key)


def lot_row(lot: LotRecord) -> tuple[Text, ...]:
    return row(
        str(lot.id),
        lot_state(lot.state),
        lot.profile,
        lot.lot_number,
        lot_date(lot.lot_date),
        str(lot.invoices),
        euros(lot.total),
        lot.organism,
    )


def lot_table(table_id: str) -> LazyTable[LotRecord]:
    """The lots, a page at a time (a box holds ten years of them)."""
    return LazyTable(lot_row, _lot_id, id=table_id, zebra_stripes=True)


def _lot_id(lot: LotRecord) -> int:
    return lot.id


REFUSED_SHOWN = 20


class LotsScreen(KioskScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "detail", "key.detail", priority=True, id="lots-detail"),
        Binding("escape", "back", "key.back", id="lots-back"),
    ]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="lots-screen"):
            yield Plain("", id="lots-count")
            yield lot_table("lots")
            yield Plain("", id="quarantine")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = t("lots.title")
        table: LazyTable[LotRecord] = self.query_one("#lots", LazyTable)
        lot_columns(table)
        table.focus()
        table.show(self.backend.lot_rows)
        self.load_refused()

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def load_refused(self) -> None:
        rows = self.backend.refused_rows()
        count = rows.count()
        refused = list(rows.page(REFUSED_SHOWN, before=LAST_ID)) if count else []
        self.app.call_from_thread(self._show_refused, count, refused)

    def _show_refused(self, count: int, refused: list[QuarantineRecord]) -> None:
        lines = [t("lots.quarantine", n=number(count))] if count else []
        for record in reversed(refused):  # the latest first
            reasons = "; ".join(pick(p.fr, p.en) for p in record.problems)
            lines.append(
                t(
                    "lots.refused",
                    name=record.name,
                    date=stamp(record.received, hour=False),
                    reasons=reasons,
                )
            )
        self.query_one("#quarantine", Static).update("\n".join(lines))

    def on_lazy_table_changed(self, event: LazyTable.Changed) -> None:
        words = (
            t("lots.count", total=number(event.total), first=event.first, last=event.last)
            if event.total
            else t("lots.empty")
        )
        self.query_one("#lots-count", Static).update(words)

    def action_detail(self) -> None:
        table = self.query_one("#lots", DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            if key is not None:
                self.app.push_screen(LotDetailScreen(int(key)))

    def action_back(self) -> None:
        self.app.pop_screen()


class LotDetailScreen(KioskScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "key.back", id="lot-back"),
    ]

    def __init__(self, lot_id: int) -> None:
        super().__init__()
        self.lot_id = lot_id

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with VerticalScroll(id="lot-detail"):
            yield Plain(t("home.loading"), id="detail")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = t("lot.title", id=self.lot_id)
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def load(self) -> None:
        detail = self.backend.lot_detail(self.lot_id)
        self.app.call_from_thread(self._show, detail)

    def _show(self, d: LotDetail) -> None:
        lot = d.lot
        lines = [
            t("lot.title", id=lot.id),
            t(
                "lot.line",
                number=lot.lot_number,
                date=lot_date(lot.lot_date),
                invoices=lot.invoices,
                total=euros(lot.total),
                organism=lot.organism,
            ),
            t("lot.state", state=lot_state(lot.state)),
        ]
        if lot.signer:
            lines.append(t("lot.signer", signer=lot.signer))
        lines += ["", t("lot.history")]
        lines += [f"{stamp(when)} : {lot_state(a)} → {lot_state(b)}" for when, a, b in d.history]
        if d.returns:
            lines += ["", t("lot.returns"), *(pick(r.words_fr, r.words_en) for r in d.returns)]
        if d.payments:
            lines += ["", t("lot.payments")]
            lines += [
                f"{p.invoice_number} : AMO {euros(p.amo_paid)}/{euros(p.amo_asked)} "
                f"{payment_state(p.amo_state)}"
                for p in d.payments
            ]
        self.query_one("#detail", Static).update("\n".join(lines))

    def action_back(self) -> None:
        self.app.pop_screen()
