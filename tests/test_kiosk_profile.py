"""Self-service with the card on the kiosk (V on Accueil), keyboard only through Pilot, on a real
configured box with the REAL SoftHSM2 card stand-ins of the test PKI: the titular adds and removes
a locum; another practitioner's card sees and changes only its own profile; pulling the card ends
it (reader and card events scripted, see tests/support/kiosk_support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from balise.sim.pki import TestPKI
from balise.ui.app import BaliseApp
from balise.ui.screens.dialogs import ChoiceDialog, PinDialog
from balise.ui.screens.home import HomeScreen
from balise.ui.screens.profile import ProfileScreen, TextDialog
from tests.support.bounded_wait import until
from tests.support.kiosk_support import Kiosk, real_signer
from tests.support.pki_fixtures import TEST_PIN, MakeToken

pytestmark = pytest.mark.softhsm


async def open_profile(pilot: Pilot[None], app: BaliseApp, kiosk: Kiosk) -> ProfileScreen:
    kiosk.cards.insert("cps3")
    await until(pilot, lambda: app.card.present)
    await pilot.press("v")
    await until(pilot, lambda: isinstance(app.screen, ProfileScreen))
    screen = app.screen
    assert isinstance(screen, ProfileScreen)
    await until(pilot, lambda: "Entrée : taper votre code PIN" in screen.body_text)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, PinDialog))
    await until(pilot, lambda: app.screen.query("#pin").first(Input).has_focus)
    await pilot.press(*TEST_PIN, "enter")
    await until(pilot, lambda: screen.phase == "mine")
    return screen


async def type_text(pilot: Pilot[None], app: BaliseApp, key: str, text: str) -> None:
    await pilot.press(key)
    await until(pilot, lambda: isinstance(app.screen, TextDialog))
    await until(pilot, lambda: app.screen.query("#text").first(Input).has_focus)
    await pilot.press(*text, "enter")


async def test_the_titular_manages_locums_and_another_card_sees_only_its_own(
    kiosk: Kiosk, pki: TestPKI, make_token: MakeToken, tmp_path: Path
) -> None:
    params = kiosk.box.ctx.params
    other = pki.issue_practitioner("10005555555", "Dr Autre PRATICIEN")
    params.set("display_name", other.display_name, profile="p2")
    params.set("bal_address", "cab0077@bal.example.net", profile="p2")
    params.set("signers.titular", other.signature.cert_pem.read_text(), profile="p2")
    locum = pki.issue_practitioner("10006666666", "Dr Rempla CANT")
    (tmp_path / "rempla.pem").write_text(locum.signature.cert_pem.read_text())

    app = kiosk.app()
    async with app.run_test(size=(110, 40)) as pilot:
        screen = await open_profile(pilot, app, kiosk)
        assert "profil p1" in screen.body_text and "xyz999212@bal.example.net" in screen.body_text
        assert "cab0077" not in screen.body_text
        await type_text(pilot, app, "a", str(tmp_path / "absent.pem"))
        await until(pilot, lambda: "fichier illisible" in screen.message_text)
        await type_text(pilot, app, "a", str(tmp_path / "rempla.pem"))
        await until(pilot, lambda: "Dr Rempla CANT" in screen.body_text)
        assert len(params.get("signers.locums", profile="p1")) == 1  # type: ignore[arg-type]
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ChoiceDialog))
        await pilot.press("enter")
        await until(pilot, lambda: "Remplaçant retiré." in screen.message_text)
        assert params.get("signers.locums", profile="p1") == []
        # The card pulled: back to Accueil, nothing proven any more.
        kiosk.cards.pull()
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))

    kiosk.use_signer(real_signer(kiosk.softhsm, make_token(other)))
    app = kiosk.app()
    async with app.run_test(size=(110, 40)) as pilot:
        screen = await open_profile(pilot, app, kiosk)
        assert "profil p2" in screen.body_text and "cab0077@bal.example.net" in screen.body_text
        assert "xyz999212" not in screen.body_text
        await type_text(pilot, app, "a", str(tmp_path / "rempla.pem"))
        await until(pilot, lambda: "Remplaçant ajouté." in screen.message_text)
    assert len(params.get("signers.locums", profile="p2")) == 1  # type: ignore[arg-type]
    assert params.get("signers.locums", profile="p1") == []
