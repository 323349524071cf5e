"""Accueil and the kiosk-wide keys, on a real configured box (store, journal, SoftHSM2 card)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from balise.services.certwatch import expiring
from balise.sim.pki import TestPKI
from balise.ui.app import BaliseApp
from balise.ui.screens.home import HomeScreen
from tests.support.clock import TEST_NOW
from tests.support.kiosk_support import Kiosk

pytestmark = pytest.mark.softhsm


def _text(app: BaliseApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def test_home_shows_reader_card_counts_and_alerts(kiosk: Kiosk) -> None:
    kiosk.box.ctx.tracking().alert("anomaly", "test", "Courrier inconnu supprimé", "Unknown mail")
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        await pilot.pause(0.3)
        assert isinstance(app.screen, HomeScreen)
        assert "Lecteur CCID de test" in _text(app, "#reader")
        assert "aucune carte" in _text(app, "#card")
        assert "3 prêt(s) à signer" in _text(app, "#lots")
        assert "1 à lire" in _text(app, "#alerts")
        assert "jamais" in _text(app, "#purge")
        kiosk.cards.insert("cps3")
        await pilot.pause(0.3)
        assert "CPS3" in _text(app, "#card")
        kiosk.readers.unplug()
        await pilot.pause(0.3)
        assert "aucun lecteur" in _text(app, "#reader")


async def test_home_refreshes_by_itself_and_shows_the_backup_age(
    kiosk: Kiosk, monkeypatch: pytest.MonkeyPatch
) -> None:
    import balise.ui.screens.home as home

    monkeypatch.setattr(home, "REFRESH_S", 0.2)  # the screen's own timer; the agent works behind
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        await pilot.pause(0.3)
        assert "aucune sauvegarde réussie" in _text(app, "#backup")
        assert "aucune" in _text(app, "#alerts")
        # The agent raises an alert while nobody touches the keyboard: it shows on its own.
        kiosk.box.ctx.tracking().alert("anomaly", "test", "Courrier inconnu", "Unknown mail")
        await pilot.pause(0.8)
        assert "1 à lire" in _text(app, "#alerts")


async def test_cps4_on_an_opensc_box_is_not_supported_here(kiosk: Kiosk) -> None:
    # The module is only named here, never loaded: the refusal comes before any PIN.
    kiosk.box.ctx.params.set("pkcs11_module", "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so")
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        await pilot.pause(0.3)
        kiosk.cards.insert("cps4")
        await pilot.pause(0.3)
        assert "CPS4 non prise en charge ici (module OpenSC)" in _text(app, "#card")


async def test_home_says_which_alerts_are_about_certificates(kiosk: Kiosk, pki: TestPKI) -> None:
    # An organism's encryption certificate ends in five days: the daily check raises its alert,
    # and Accueil says it apart from the other alerts.
    soon = pki.issue_organism("TEST CPAM BIENTOT", not_after=TEST_NOW + timedelta(days=5))
    ctx = kiosk.box.ctx
    ctx.params.set("recipient_certs", soon.cert_pem.read_text(), organism="cpam422")
    ctx.tracking().alert("anomaly", "test", "Courrier inconnu supprimé", "Unknown mail")
    raised = ctx.tracking().check_certificates(expiring(ctx.params, ctx.clock.now()))
    assert raised
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        await pilot.pause(0.3)
        words = _text(app, "#alerts")
        assert f"{1 + len(raised)} à lire" in words
        assert f"dont {len(raised)} sur les certificats" in words
