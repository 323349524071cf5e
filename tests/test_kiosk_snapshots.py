"""Snapshot tests of the main kiosk screens (pytest-textual-snapshot, Textual pinned). The data
is fixed so the pictures are stable: a fixed clock (SNAPSHOT_NOW, whatever the day of the run) with
its own test PKI issued relative to it, fixed lots, no clock in the header, the cursor blink
frozen."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from balise.adapters.clock import FixedClock
from balise.app.context import open_context
from balise.app.kiosk import build_backend
from balise.sim.pki import TestPKI, build_pki
from balise.sim.softhsm import SoftHSM
from balise.ui.app import BaliseApp
from tests.support.balise_env import BaliseEnv
from tests.support.box import Box, configure_box
from tests.support.clock import SNAPSHOT_NOW
from tests.support.kiosk_support import ScriptedCards, ScriptedReaders, import_lots, real_signer
from tests.support.pki_fixtures import MakeToken

pytestmark = pytest.mark.softhsm
SIZE = (100, 35)


class SnapApp(BaliseApp):
    def on_mount(self) -> None:
        super().on_mount()
        for field in self.query(Input):
            field.cursor_blink = False


@pytest.fixture(scope="module")
def snapshot_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """The certificates the pictures are taken with, valid at SNAPSHOT_NOW on any day."""
    return build_pki(tmp_path_factory.mktemp("snapshot-pki"), now=SNAPSHOT_NOW)


@pytest.fixture
def snap_box(balise_env: BaliseEnv, snapshot_pki: TestPKI) -> Iterator[Box]:
    """A configured box whose clock stands at SNAPSHOT_NOW: the lots and everything shown are
    dated by it, and every certificate is checked at it."""
    ctx = open_context(
        balise_env.home, actor="test", env=balise_env.env, clock=FixedClock(SNAPSHOT_NOW)
    )
    configure_box(ctx, snapshot_pki)
    try:
        yield Box(balise_env, ctx)
    finally:
        ctx.close()


def _app(
    box: Box,
    softhsm: SoftHSM,
    make_token: MakeToken,
    snapshot_pki: TestPKI,
    *,
    card: bool = False,
) -> SnapApp:
    box.ctx.params.set("pkcs11_module", str(softhsm.module))
    import_lots(box, 2, today=SNAPSHOT_NOW.date())
    cards = ScriptedCards()
    if card:
        cards.insert("cps3")
    # Accueil shows the running version: the image's, fixed here (never the package's, which
    # changes with each release).
    release = box.env.home.parent / "os-release"
    release.write_text('IMAGE_ID=balise\nIMAGE_VERSION="1.0.0"\n', encoding="utf-8")
    backend = build_backend(
        box.ctx,
        env=dict(box.env.env, BALISE_OS_RELEASE=str(release)),
        reader_watcher=ScriptedReaders(),
        card_watcher=cards,
        signer_factory=real_signer(softhsm, make_token(issuer=snapshot_pki)),
    )
    return SnapApp(backend)


async def _settle(pilot: Pilot[Any]) -> None:
    await pilot.pause(0.5)
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause(0.1)


def test_snapshot_home(
    snap_compare: Any,
    snap_box: Box,
    softhsm: SoftHSM,
    make_token: MakeToken,
    snapshot_pki: TestPKI,
) -> None:
    app = _app(snap_box, softhsm, make_token, snapshot_pki)
    assert snap_compare(app, terminal_size=SIZE, run_before=_settle)


def test_snapshot_pin(
    snap_compare: Any,
    snap_box: Box,
    softhsm: SoftHSM,
    make_token: MakeToken,
    snapshot_pki: TestPKI,
) -> None:
    app = _app(snap_box, softhsm, make_token, snapshot_pki, card=True)

    async def to_pin(pilot: Pilot[Any]) -> None:
        await pilot.pause(0.3)
        await pilot.press("s")
        await pilot.pause(1.0)
        await pilot.press("1", "2")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=to_pin)


def test_snapshot_lots(
    snap_compare: Any,
    snap_box: Box,
    softhsm: SoftHSM,
    make_token: MakeToken,
    snapshot_pki: TestPKI,
) -> None:
    app = _app(snap_box, softhsm, make_token, snapshot_pki)

    async def to_lots(pilot: Pilot[Any]) -> None:
        await pilot.pause(0.3)
        await pilot.press("l")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=to_lots)


def test_snapshot_technician(
    snap_compare: Any,
    snap_box: Box,
    softhsm: SoftHSM,
    make_token: MakeToken,
    snapshot_pki: TestPKI,
) -> None:
    app = _app(snap_box, softhsm, make_token, snapshot_pki)

    async def to_technician(pilot: Pilot[Any]) -> None:
        await pilot.pause(0.3)
        await app.switch_mode("technician")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=to_technician)
