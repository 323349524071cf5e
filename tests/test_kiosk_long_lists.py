"""Lots, Retours and Alertes on a box that has lived for years: each screen shows its first page
at once with the count of all, reads the next page as the cursor nears the bottom, and End jumps
to the very last row (Home back to the first) without loading what lies between."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from textual.coordinate import Coordinate
from textual.widgets import Static

from balise.app.kiosk import build_backend
from balise.ui.app import BaliseApp
from balise.ui.screens.alerts import AlertsScreen
from balise.ui.screens.lots import LotDetailScreen, LotsScreen
from balise.ui.screens.returns import ReturnsScreen
from balise.ui.widgets.lazy_table import LazyTable
from tests.support.bounded_wait import until
from tests.support.box import Box
from tests.support.kiosk_support import ScriptedCards, ScriptedReaders
from tests.support.mail_corpus import NOEMIE
from tests.support.many_rows import many_alerts, many_lots, many_payments
from tests.support.purge_support import fresh_lot, sample_lot_sent
from tests.support.sauvegarde_support import record_return

LOTS = 1_000
PAGE = LazyTable.PAGE


def _no_card() -> object:
    raise AssertionError("no card is used here")


@pytest.fixture
def app(box: Box) -> Iterator[BaliseApp]:
    backend = build_backend(
        box.ctx,
        env=box.env.env,
        reader_watcher=ScriptedReaders(),
        card_watcher=ScriptedCards(),
        signer_factory=_no_card,  # type: ignore[arg-type]
    )
    try:
        yield BaliseApp(backend)
    finally:
        backend.stop_watches()


def _text(app: BaliseApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def _first_and_last(table: LazyTable[object]) -> tuple[int, int]:
    first = table.coordinate_to_cell_key(Coordinate(0, 0)).row_key.value
    last = table.coordinate_to_cell_key(Coordinate(table.row_count - 1, 0)).row_key.value
    return int(str(first)), int(str(last))


async def test_lots_screen_pages_a_thousand_lots_and_end_shows_the_last(
    box: Box, app: BaliseApp
) -> None:
    first = fresh_lot(box.ctx, 1, sent=False)
    many_lots(box.ctx, first, LOTS - 1)
    last_id = box.ctx.store.conn.execute("SELECT max(id) FROM lots").fetchone()[0]
    async with app.run_test(size=(110, 35)) as pilot:
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LotsScreen))
        table = app.screen.query_one("#lots", LazyTable)
        await until(pilot, lambda: table.row_count > 0)
        # The first page at once, and the count of all of them.
        assert table.row_count == PAGE
        # Counts grouped by a narrow no-break space (balise.domain.vocabulary).
        assert "1\u202f000 lot(s)" in _text(app, "#lots-count")
        assert f"lignes 1 à {PAGE}" in _text(app, "#lots-count")
        assert _first_and_last(table)[0] == first
        # End: the very last lot, without the 900 between.
        await pilot.press("end")
        await until(pilot, lambda: _first_and_last(table)[1] == last_id)
        assert table.cursor_row == table.row_count - 1 and table.row_count == PAGE
        assert f"lignes {LOTS - PAGE + 1} à {LOTS}" in _text(app, "#lots-count")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, LotDetailScreen))
        assert app.screen.lot_id == last_id  # type: ignore[attr-defined]
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, LotsScreen))
        # Home: back to the first; going down reads the next page as the cursor nears it.
        await pilot.press("home")
        await until(pilot, lambda: _first_and_last(table)[0] == first)
        assert table.cursor_row == 0
        for _ in range(PAGE):
            await pilot.press("down")
            if table.row_count > PAGE:
                break
        await until(pilot, lambda: table.row_count == 2 * PAGE)
        assert table.cursor_row < PAGE  # the next page came before the cursor reached the end
        assert f"lignes 1 à {2 * PAGE}" in _text(app, "#lots-count")


async def test_returns_screen_pages_payments(box: Box, app: BaliseApp) -> None:
    ctx = box.ctx
    sample_lot_sent(ctx)
    assert record_return(ctx, box.env.env, NOEMIE, "noemie-1") == "applied"
    template = ctx.store.conn.execute("SELECT min(id) FROM payments").fetchone()[0]
    many_payments(ctx, template, 5_000)
    total, last_id = ctx.store.conn.execute("SELECT count(*), max(id) FROM payments").fetchone()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ReturnsScreen))
        returns = app.screen.query_one("#returns", LazyTable)
        payments = app.screen.query_one("#payments", LazyTable)
        await until(pilot, lambda: payments.row_count > 0 and returns.row_count == 1)
        assert payments.row_count == PAGE
        title = _text(app, "#payments-title")
        assert f"lignes 1 à {PAGE} sur {total:,}".replace(",", "\u202f") in title
        payments.focus()
        await pilot.press("end")
        await until(pilot, lambda: _first_and_last(payments)[1] == last_id)
        assert f"sur {total:,}".replace(",", "\u202f") in _text(app, "#payments-title")
        assert _text(app, "#returns-empty") == ""


async def test_alerts_screen_keeps_its_place_when_one_is_acknowledged(
    box: Box, app: BaliseApp
) -> None:
    tracking = box.ctx.tracking(box.env.env)
    words = "alerte d'essai, " * 12 + "fin de l'alerte"  # longer than the screen
    template = tracking.alert("test_alert", "lot:1", words, "test alert")
    many_alerts(box.ctx, template, 499)
    last_id = box.ctx.store.conn.execute("SELECT max(id) FROM alerts").fetchone()[0]
    async with app.run_test(size=(110, 35)) as pilot:
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen))
        table = app.screen.query_one("#alerts", LazyTable)
        await until(pilot, lambda: table.row_count == PAGE)
        assert "sur 500" in _text(app, "#alerts-count")
        await pilot.press("end")
        await until(pilot, lambda: _first_and_last(table)[1] == last_id)
        # The table cuts the words to the screen; the chosen alert's are shown whole below it.
        assert _text(app, "#alert-words").replace("\n", " ").endswith("fin de l'alerte")
        await pilot.press("up", "enter")  # acknowledge the last but one
        await until(pilot, lambda: "sur 499" in _text(app, "#alerts-count"))
        assert _first_and_last(table)[1] == last_id  # still at the end of the list
        assert f"lignes {500 - PAGE + 1} à 499" in _text(app, "#alerts-count")
    assert len(tracking.alerts()) == 499
