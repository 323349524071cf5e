"""The card channel from Accueil (issue 20), keyboard only through Pilot, on a real configured box
with the REAL SoftHSM2 card of the test PKI: E reads the card without PIN, asks the PIN with the
tries left, starts the relay and shows its channel; F closes it.

Two halves, because this Debian 12 host has no pkcs11-provider (the box's Debian 13 has it; the
relay's own channel is tested against a real HTTPS service in tests/test_relay.py and on the box's
system in tests/image/test_relay.py):
- the REAL relay process, started by the kiosk's own launcher: it refuses here with words naming
  pkcs11-provider, and the kiosk shows that refusal in French;
- the wiring once a relay serves: the relay PROCESS is replaced by a stand-in launcher (the seam
  build_backend offers, ``channel_launcher``) whose state the test scripts — what the kiosk must
  do with it (the PIN handed over then wiped, open/for whom/how many shown, F stopping it, a
  pulled card or the idle time shown with why) is asserted, not the relay."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from balise.app.kiosk import WiredBackend, build_backend
from balise.services.relay import ChannelState, CloseReason
from balise.ui.app import BaliseApp
from balise.ui.screens.channel import ChannelScreen
from balise.ui.screens.dialogs import PinDialog
from balise.ui.screens.home import HomeScreen
from tests.support.bounded_wait import until
from tests.support.clock import TEST_NOW
from tests.support.kiosk_support import Kiosk, ScriptedCards, ScriptedReaders, real_signer
from tests.support.pki_fixtures import TEST_PIN

pytestmark = pytest.mark.softhsm


class ScriptedRelay:
    """Stands in for the relay process (see the module's docstring): keeps the PIN it was handed,
    opens at once for Dr Jeanne TEST, its requests and closing scripted by the test."""

    def __init__(self) -> None:
        self.pins: list[bytes] = []
        self.handed: list[bytearray | None] = []
        self.stops = 0
        self.pulled = 0  # how many times the kiosk said the card was pulled
        self.current: ChannelState | None = None

    def __call__(self) -> ScriptedRelay:
        return self

    def start(self, pin: bytearray | None) -> None:
        self.pins.append(bytes(pin or b""))
        self.handed.append(pin)
        self.current = ChannelState(True, "Dr Jeanne TEST", TEST_NOW, 0, 1, None)

    def opened(self, timeout: float) -> str | None:
        return None

    def state(self) -> ChannelState | None:
        return self.current

    def card_pulled(self) -> None:
        self.pulled += 1
        if self.current is not None and self.current.open:
            self.closes("card_pulled")

    def stop(self) -> None:
        self.stops += 1
        if self.current is not None and self.current.open:
            self.current = replace(self.current, open=False, closed_because="practitioner")

    def closes(self, why: CloseReason) -> None:
        assert self.current is not None
        self.current = replace(self.current, open=False, closed_because=why)


def _rewire(kiosk: Kiosk, **kwargs: object) -> None:
    kiosk.backend.stop_watches()
    kiosk.readers, kiosk.cards = ScriptedReaders(), ScriptedCards()
    backend = build_backend(
        kiosk.box.ctx,
        reader_watcher=kiosk.readers,
        card_watcher=kiosk.cards,
        signer_factory=real_signer(kiosk.softhsm, kiosk.token),
        **kwargs,  # type: ignore[arg-type]
    )
    assert isinstance(backend, WiredBackend)
    kiosk.backend = backend


async def _open(pilot: Pilot[None], app: BaliseApp, kiosk: Kiosk) -> ChannelScreen:
    kiosk.cards.insert("cps3")
    await until(pilot, lambda: app.card.present)
    await pilot.press("e")
    await until(pilot, lambda: isinstance(app.screen, PinDialog))
    assert str(app.screen.query_one("#tries").render()) == "Essais restants : 3"
    await until(pilot, lambda: app.screen.query("#pin").first(Input).has_focus)
    await pilot.press(*TEST_PIN, "enter")
    await until(pilot, lambda: isinstance(app.screen, ChannelScreen))
    screen = app.screen
    assert isinstance(screen, ChannelScreen)
    return screen


def _shown(screen: ChannelScreen, which: str = "#channel-state") -> str:
    return str(screen.query_one(which).render())


@pytest.fixture
def relay(kiosk: Kiosk) -> Iterator[ScriptedRelay]:
    stand_in = ScriptedRelay()
    _rewire(kiosk, env=kiosk.box.env.env, channel_launcher=stand_in)
    yield stand_in


async def test_e_opens_the_channel_with_the_pin_typed_here_and_f_closes_it(
    kiosk: Kiosk, relay: ScriptedRelay
) -> None:
    app = kiosk.app()
    async with app.run_test(size=(110, 30)) as pilot:
        screen = await _open(pilot, app, kiosk)
        await until(pilot, lambda: "Canal ouvert pour Dr Jeanne TEST" in _shown(screen))
        assert relay.pins == [TEST_PIN.encode()]
        assert relay.handed[0] == bytearray(len(TEST_PIN))  # the kiosk's buffer wiped
        assert relay.current is not None
        relay.current = replace(relay.current, requests=12)
        await until(pilot, lambda: "12 requête(s)" in _shown(screen))
        await pilot.press("f")
        await until(pilot, lambda: _shown(screen) == "Canal fermé (fermé par le praticien).")
        assert relay.stops >= 1
        # Back to Accueil, E again: no channel open, so the PIN is asked again.
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, PinDialog))


async def test_the_kiosk_says_why_the_channel_closed_by_itself(
    kiosk: Kiosk, relay: ScriptedRelay
) -> None:
    app = kiosk.app()
    async with app.run_test(size=(110, 30)) as pilot:
        screen = await _open(pilot, app, kiosk)
        await until(pilot, lambda: "Canal ouvert" in _shown(screen))
        relay.closes("idle")
        await until(pilot, lambda: _shown(screen) == "Canal fermé (inactivité).")
        relay.closes("card_pulled")
        await until(pilot, lambda: _shown(screen) == "Canal fermé (carte retirée).")


async def test_the_card_pulled_from_the_reader_closes_the_channel_at_once(
    kiosk: Kiosk, relay: ScriptedRelay
) -> None:
    """The kiosk's own card watcher tells the relay (not the relay's check of the card, up to a
    second later): the channel closes, said as the card pulled."""
    app = kiosk.app()
    async with app.run_test(size=(110, 30)) as pilot:
        screen = await _open(pilot, app, kiosk)
        await until(pilot, lambda: "Canal ouvert" in _shown(screen))
        kiosk.cards.pull()
        await until(pilot, lambda: _shown(screen) == "Canal fermé (carte retirée).")
        assert (relay.pulled, relay.stops) == (1, 0)


async def test_an_open_channel_is_shown_again_without_asking_the_pin(
    kiosk: Kiosk, relay: ScriptedRelay
) -> None:
    app = kiosk.app()
    async with app.run_test(size=(110, 30)) as pilot:
        await _open(pilot, app, kiosk)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, ChannelScreen))
        screen = app.screen
        assert isinstance(screen, ChannelScreen)
        await until(pilot, lambda: "Canal ouvert pour Dr Jeanne TEST" in _shown(screen))
        assert len(relay.pins) == 1


async def test_the_real_relay_refuses_here_and_the_kiosk_says_why_in_french(
    kiosk: Kiosk, tmp_path: Path
) -> None:
    """The kiosk's own launcher, the real relay process: Debian 12 has no pkcs11-provider."""
    kiosk.box.ctx.params.set("relay_services", "visio=https://127.0.0.1:9/api")
    env = {
        **kiosk.box.env.env,
        **kiosk.softhsm.env(),
        "BALISE_RELAY_SOCKET": str(tmp_path / "run" / "relay.sock"),
        "BALISE_RELAY_USER": getpass.getuser(),
    }
    (tmp_path / "run").mkdir()
    _rewire(kiosk, env=env)
    app = kiosk.app()
    async with app.run_test(size=(110, 30)) as pilot:
        screen = await _open(pilot, app, kiosk)
        await until(pilot, lambda: screen.refused is not None, timeout=90)
        note = _shown(screen, "#channel-note")
        assert note.startswith("Le canal n'a pas pu être ouvert : ")
        assert "Le paquet pkcs11-provider n'est pas installé" in note
        assert _shown(screen) == "Aucun canal ouvert."
    assert not (tmp_path / "run" / "relay.sock").exists()


async def test_no_card_no_channel_key(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(110, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("e")
        await pilot.pause(0.3)
        assert isinstance(app.screen, HomeScreen)


async def test_signing_closes_the_channel_first_and_says_so(
    kiosk: Kiosk, relay: ScriptedRelay
) -> None:
    """One card, two programs: the kiosk never signs while the relay holds its login."""
    app = kiosk.app()
    async with app.run_test(size=(110, 30)) as pilot:
        screen = await _open(pilot, app, kiosk)
        await until(pilot, lambda: "Canal ouvert" in _shown(screen))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, PinDialog))
        assert relay.stops >= 1
        assert relay.current is not None and not relay.current.open
        shown = [str(n.message) for n in app._notifications]
        assert any("fermé pour signer (E le rouvre)" in m for m in shown), shown
