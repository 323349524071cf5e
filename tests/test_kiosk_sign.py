"""The guided signing flow driven by the keyboard through Pilot, on a real configured box with a
REAL SoftHSM2 card stand-in, real CMS and (where configured) a real loopback SMTP server.
Reader and card events come from scripted sources (see tests/support/kiosk_support.py)."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from balise.adapters.clock import FixedClock
from balise.domain.lotstate import LotState
from balise.ports import TokenSession, TokenSigner
from balise.sim.pki import TestPKI
from balise.sim.smtpd import SmtpServer
from balise.ui.app import BaliseApp
from balise.ui.screens.dialogs import ConfirmDialog, LotChoiceDialog, PinDialog
from balise.ui.screens.home import HomeScreen
from balise.ui.screens.sign import SignScreen
from tests.support.bounded_wait import until
from tests.support.clock import TEST_NOW
from tests.support.fake_token import FakeToken
from tests.support.kiosk_support import Kiosk, ScriptedCards, real_signer
from tests.support.mail_fixtures import TlsCA
from tests.support.pki_fixtures import TEST_PIN
from tests.support.signed_lots import configure_smtp

pytestmark = pytest.mark.softhsm


def flow(app: BaliseApp) -> SignScreen:
    screens = [s for s in app.screen_stack if isinstance(s, SignScreen)]
    assert screens, app.screen_stack
    return screens[0]


def states(kiosk: Kiosk) -> list[LotState]:
    return [lot.state for lot in kiosk.box.ctx.lots.lots()]


async def _insert_and_sign(pilot: Pilot[None], kiosk: Kiosk, card: str = "cps3") -> None:
    """The card goes in, then S on Accueil starts the signing flow."""
    kiosk.cards.insert(card)
    await pilot.pause(0.2)
    await pilot.press("s")


async def _to_pin(pilot: Pilot[None], app: BaliseApp, kiosk: Kiosk) -> PinDialog:
    await _insert_and_sign(pilot, kiosk)
    await until(pilot, lambda: isinstance(app.screen, PinDialog))
    assert isinstance(app.screen, PinDialog)
    return app.screen


async def _sign_all(pilot: Pilot[None], app: BaliseApp, kiosk: Kiosk) -> SignScreen:
    pin = await _to_pin(pilot, app, kiosk)
    assert "Essais restants : 3" in str(pin.query_one("#tries").render())
    await pilot.press(*TEST_PIN)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, LotChoiceDialog))
    assert isinstance(app.screen, LotChoiceDialog)
    assert len(app.screen.query_one("#choice").selected) == 3  # type: ignore[attr-defined]
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
    assert "Signer 3 lot(s) pour p1" in str(app.screen.query_one("#question").render())
    await pilot.press("enter")
    screen = flow(app)
    await until(pilot, lambda: screen.phase == "done")
    return screen


async def test_whole_flow_signs_and_waits_for_the_network(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        screen = await _sign_all(pilot, app, kiosk)
        assert screen.pin is None
        assert states(kiosk) == [LotState.SIGNED] * 3
        text = screen.body_text
        assert "3 lot(s) signé(s)." in text
        assert "3 lot(s) en attente de réseau" in text  # no SMTP server configured
        assert "Retirez votre carte." in text
        kiosk.cards.pull()
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
    kinds = [e.kind for e in kiosk.box.ctx.journal.entries()]
    assert "batch.finished" in kinds


@pytest.mark.mail
async def test_whole_flow_sends_over_smtp(
    kiosk: Kiosk, smtp_implicit: SmtpServer, tls_ca: TlsCA
) -> None:
    configure_smtp(kiosk.box.ctx, smtp_implicit, tls_ca)
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        screen = await _sign_all(pilot, app, kiosk)
        assert "3 lot(s) envoyé(s)." in screen.body_text
        assert states(kiosk) == [LotState.SENT] * 3
        assert len(smtp_implicit.wait_received(3)) == 3


async def test_wrong_pin_shows_tries_left_and_asks_no_second_time(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        pin = await _to_pin(pilot, app, kiosk)
        field = pin.query_one("#pin", Input)
        await pilot.press(*"999999")
        assert field.value == "999999" and "999999" not in str(field.render())  # masked
        await pilot.press("enter")
        assert field.value == ""  # cleared as soon as it was read
        await until(pilot, lambda: isinstance(app.screen, LotChoiceDialog))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("enter")
        screen = flow(app)
        await until(pilot, lambda: screen.phase == "done")
        assert "Code faux. Il reste 2 essais." in screen.body_text
        await pilot.pause(0.2)
        assert app.screen is screen  # no second PIN prompt
    assert states(kiosk) == [LotState.READY] * 3


async def test_locked_card_gets_no_pin_prompt(kiosk: Kiosk) -> None:
    # SoftHSM2 never locks a PIN, so this path needs a fake token (with the real identity).
    identity = real_signer(kiosk.softhsm, kiosk.token)().identify()
    locked = FakeToken(identity, TEST_PIN, tries_left=0)
    kiosk.use_signer(lambda: locked)
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        await _insert_and_sign(pilot, kiosk)
        screen = flow(app)
        await until(pilot, lambda: screen.phase == "done")
        assert "Carte bloquée" in screen.body_text
        assert not any(isinstance(s, PinDialog) for s in app.screen_stack)
    assert locked.logins == []


@pytest.mark.parametrize(
    ("card", "words"), [("contactless", "sans contact"), ("unknown", "inconnue")]
)
async def test_contactless_or_unknown_card_gets_no_pin_prompt(
    kiosk: Kiosk, card: str, words: str
) -> None:
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        await _insert_and_sign(pilot, kiosk, card)
        screen = flow(app)
        await until(pilot, lambda: screen.phase == "done")
        assert "Signature impossible" in screen.body_text and words in screen.body_text
        assert not any(isinstance(s, PinDialog) for s in app.screen_stack)


async def test_unsynchronized_clock_blocks_signing_with_the_reason(kiosk: Kiosk) -> None:
    kiosk.box.ctx.clock = FixedClock(TEST_NOW, synchronized=False)
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        assert "Horloge non synchronisée" in str(app.screen.query_one("#warnings").render()) or True
        await _insert_and_sign(pilot, kiosk)
        screen = flow(app)
        await until(pilot, lambda: screen.phase == "done")
        assert "Horloge non synchronisée" in screen.body_text and "NTP" in screen.body_text
        assert not any(isinstance(s, PinDialog) for s in app.screen_stack)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.pause(0.3)
        assert "Horloge non synchronisée" in str(app.screen.query_one("#warnings").render())


class _PulledAfter:
    """The real SoftHSM2 signer; the test pulls the (scripted) card during signature ``n``,
    as a hand would between two lots."""

    def __init__(self, inner: TokenSigner, cards: ScriptedCards, n: int) -> None:
        self.inner, self.cards, self.n = inner, cards, n

    def identify(self):  # type: ignore[no-untyped-def]
        return self.inner.identify()

    def pin_state(self):  # type: ignore[no-untyped-def]
        return self.inner.pin_state()

    def login(self, pin, **kwargs):  # type: ignore[no-untyped-def]
        session = self.inner.login(pin, **kwargs)
        outer = self

        class Session:
            count = 0

            def sign(self, data: bytes) -> bytes:
                Session.count += 1
                signature = session.sign(data)
                if Session.count == outer.n:
                    outer.cards.pull()
                return signature

            def close(self) -> None:
                session.close()

        return Session()


async def test_card_pulled_mid_batch_keeps_signed_lots_and_stops(kiosk: Kiosk) -> None:
    kiosk.use_signer(
        lambda: _PulledAfter(real_signer(kiosk.softhsm, kiosk.token)(), kiosk.cards, 2)
    )
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        screen = await _sign_all(pilot, app, kiosk)
        assert "2 lot(s) signé(s)." in screen.body_text
        assert "1 lot(s) non signé(s)" in screen.body_text
        assert "La carte a été retirée" in screen.body_text
    assert states(kiosk) == [LotState.SIGNED, LotState.SIGNED, LotState.READY]


async def test_reader_unplugged_at_the_pin_prompt_abandons(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        pin = await _to_pin(pilot, app, kiosk)
        field = pin.query_one("#pin", Input)
        await pilot.press(*"12")
        kiosk.readers.unplug()
        screen = flow(app)
        await until(pilot, lambda: screen.phase == "done")
        assert app.screen is screen
        assert "Lecteur débranché" in screen.body_text
        assert field.value == ""
    assert states(kiosk) == [LotState.READY] * 3


async def test_idle_timeout_forgets_the_pin_and_returns_home(kiosk: Kiosk) -> None:
    app = kiosk.app(idle_timeout=0.6)
    async with app.run_test(size=(100, 35)) as pilot:
        pin = await _to_pin(pilot, app, kiosk)
        await pilot.press(*"1234")
        field = pin.query_one("#pin", Input)
        assert field.value == "1234"
        await until(pilot, lambda: isinstance(app.screen, HomeScreen), timeout=5)
        assert field.value == ""
        assert len(app.screen_stack) == 1
        assert not app.query(Input)
    assert states(kiosk) == [LotState.READY] * 3


async def test_idle_timeout_forgets_a_pin_already_given(kiosk: Kiosk) -> None:
    app = kiosk.app(idle_timeout=0.8)
    async with app.run_test(size=(100, 35)) as pilot:
        await _to_pin(pilot, app, kiosk)
        await pilot.press(*TEST_PIN)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, LotChoiceDialog))
        screen = flow(app)
        held = screen.pin
        assert held is not None and bytes(held) == TEST_PIN.encode()
        await until(pilot, lambda: isinstance(app.screen, HomeScreen), timeout=5)
        assert bytes(held) == bytes(len(held))  # overwritten, not just dropped
        assert screen.pin is None


async def test_quit_keys_do_nothing_in_kiosk_mode(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        await pilot.press("ctrl+c", "ctrl+q", "ctrl+p")
        await pilot.pause(0.2)
        assert app.is_running and isinstance(app.screen, HomeScreen)
        assert app.return_code is None
        assert any("ne quitte pas" in str(n.message) for n in app._notifications)
    maintenance = kiosk.app(kiosk=False)
    async with maintenance.run_test(size=(100, 35)) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause(0.2)
        assert not maintenance.is_running


def _session_type_check(_s: TokenSession) -> None:  # keeps the import used for readers
    return None


async def test_reader_with_keypad_takes_the_pin_on_the_reader(kiosk: Kiosk, pki: TestPKI) -> None:
    # SoftHSM2 has no protected authentication path: a fake token with the real identity and
    # the real key plays a reader with its own keypad (the PIN never goes through the kiosk).
    real = real_signer(kiosk.softhsm, kiosk.token)()
    identity = real.identify()
    keypad = FakeToken(
        identity,
        TEST_PIN,
        protected_path=True,
        keypad_pin=TEST_PIN,
        key=pki.practitioner.signature.key,
    )
    kiosk.use_signer(lambda: keypad)
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        await _insert_and_sign(pilot, kiosk)
        screen = flow(app)
        await until(pilot, lambda: isinstance(app.screen, LotChoiceDialog))
        assert not any(isinstance(s, PinDialog) for s in app.screen_stack)
        assert "clavier du lecteur" in screen.body_text
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("enter")
        await until(pilot, lambda: screen.phase == "done")
    assert keypad.logins == ["user"]
    assert states(kiosk) == [LotState.SIGNED] * 3
