"""Snapshot tests of the main kiosk screens (pytest-textual-snapshot, Textual pinned). The data
is fixed so the pictures are stable: a fixed clock, fixed lots, no clock in the header, the
cursor blink frozen."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from balise.adapters.clock import FixedClock
from balise.kiosk_wiring import build_backend
from balise.sim.softhsm import SoftHSM
from balise.ui.app import BaliseApp
from tests.support.box import Box
from tests.support.kiosk_support import ScriptedCards, ScriptedReaders, import_lots, real_signer
from tests.support.pki_fixtures import MakeToken

pytestmark = pytest.mark.softhsm
SIZE = (100, 35)


class SnapApp(BaliseApp):
    def on_mount(self) -> None:
        super().on_mount()
        for field in self.query(Input):
            field.cursor_blink = False


def _app(box: Box, softhsm: SoftHSM, make_token: MakeToken, *, card: bool = False) -> SnapApp:
    box.ctx.params.set("pkcs11_module", str(softhsm.module))
    when = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    box.ctx.clock = FixedClock(when)  # the lots and everything shown are dated by it
    import_lots(box, 2, today=when.date())
    cards = ScriptedCards()
    if card:
        cards.insert("cps3")
    backend = build_backend(
        box.ctx,
        env=box.env.env,
        reader_watcher=ScriptedReaders(),
        card_watcher=cards,
        signer_factory=real_signer(softhsm, make_token()),
    )
    return SnapApp(backend)


async def _settle(pilot: Pilot[Any]) -> None:
    await pilot.pause(0.5)
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause(0.1)


def test_snapshot_home(
    snap_compare: Any, box: Box, softhsm: SoftHSM, make_token: MakeToken
) -> None:
    app = _app(box, softhsm, make_token)
    assert snap_compare(app, terminal_size=SIZE, run_before=_settle)


def test_snapshot_pin(snap_compare: Any, box: Box, softhsm: SoftHSM, make_token: MakeToken) -> None:
    app = _app(box, softhsm, make_token, card=True)

    async def to_pin(pilot: Pilot[Any]) -> None:
        await pilot.pause(0.3)
        await pilot.press("s")
        await pilot.pause(1.0)
        await pilot.press("1", "2")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=to_pin)


def test_snapshot_lots(
    snap_compare: Any, box: Box, softhsm: SoftHSM, make_token: MakeToken
) -> None:
    app = _app(box, softhsm, make_token)

    async def to_lots(pilot: Pilot[Any]) -> None:
        await pilot.pause(0.3)
        await pilot.press("l")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=to_lots)


def test_snapshot_technician(
    snap_compare: Any, box: Box, softhsm: SoftHSM, make_token: MakeToken
) -> None:
    app = _app(box, softhsm, make_token)

    async def to_technician(pilot: Pilot[Any]) -> None:
        await pilot.pause(0.3)
        await app.switch_mode("technician")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=to_technician)
