"""A revoked CPS card in the kiosk: the box's own CRL (fetched from a loopback HTTP server and
verified) refuses it in words before any PIN, on a real configured box with a REAL SoftHSM2 card
stand-in for the revoked practitioner (reader and card events scripted, see kiosk_support)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from balise.domain.lotstate import LotState
from balise.sim.pki import TestPKI
from balise.ui.screens.dialogs import PinDialog
from balise.ui.screens.sign import SignScreen
from tests.support.bounded_wait import until
from tests.support.clock import TEST_NOW
from tests.support.crl_support import CrlServer, make_crl
from tests.support.kiosk_support import Kiosk, real_signer
from tests.support.pki_fixtures import MakeToken

pytestmark = pytest.mark.softhsm


async def test_revoked_card_is_refused_in_words_and_never_asks_the_pin(
    kiosk: Kiosk, pki: TestPKI, make_token: MakeToken, crl_server: CrlServer
) -> None:
    url = crl_server.url("/igc/elementaire.crl")
    victim = pki.issue_practitioner("10009999999", "Dr Carte REVOQUEE", crl_urls=[url])
    p = kiosk.box.ctx.params
    p.set("igc_roots", pki.root.cert_pem.read_text())
    p.set("igc_intermediates", pki.intermediate.cert_pem.read_text())
    p.set("signers.titular", victim.signature.cert_pem.read_text(), profile="p1")
    crl_server.files["/igc/elementaire.crl"] = make_crl(
        pki.intermediate,
        this_update=TEST_NOW - timedelta(hours=3),
        next_update=TEST_NOW + timedelta(days=7),
        revoked=[victim.signature.cert],
    )
    assert [o.kind for o in kiosk.box.ctx.crl_service().fetch_all()] == ["stored"]
    kiosk.use_signer(real_signer(kiosk.softhsm, make_token(victim)))

    app = kiosk.app()
    pin_seen: list[bool] = []
    async with app.run_test(size=(100, 35)) as pilot:
        kiosk.cards.insert("cps3")
        await pilot.pause(0.2)
        await pilot.press("s")

        def done() -> bool:
            """The signature flow has ended (whether a PIN prompt showed is noted each time)."""
            pin_seen.append(isinstance(app.screen, PinDialog))
            screens = [s for s in app.screen_stack if isinstance(s, SignScreen)]
            return bool(screens) and screens[0].phase == "done"

        await until(pilot, done, 15, what="the end of the signature flow")
        screen = next(s for s in app.screen_stack if isinstance(s, SignScreen))
        assert not any(pin_seen) and screen.pin is None
        text = screen.body_text
        assert "Dr Carte REVOQUEE" in text
        assert "Signature impossible" in text and "a été révoqué le" in text
        assert "la carte ne doit plus servir" in text
    assert [lot.state for lot in kiosk.box.ctx.lots.lots()] == [LotState.READY] * 3
