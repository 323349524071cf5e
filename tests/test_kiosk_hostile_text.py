"""Outside text is shown as text on every kiosk screen, never read as Textual markup.

A file name from the practice software, the words of an alert or of a return, a parameter typed
by a technician and a name read from a card certificate all reach the screen. Read as markup,
``lot[a==].lot`` raised MarkupError (the refused-files panel went blank, a Static at mount
stopped the kiosk) and ``[@click=…]`` became an action link. Each screen here must show the
hostile string literally, and the kiosk must keep running.
"""

from __future__ import annotations

import html
import re

import pytest
from textual.widgets import DataTable
from textual.widgets._toast import Toast

from balise.sim.pki import TestPKI
from balise.ui.app import BaliseApp
from balise.ui.screens.alerts import AlertsScreen
from balise.ui.screens.dialogs import LotChoiceDialog, PinDialog
from balise.ui.screens.home import HomeScreen
from balise.ui.screens.lots import LotsScreen
from balise.ui.screens.returns import ReturnsScreen
from balise.ui.screens.technician import TechnicianScreen
from tests.support.bounded_wait import until
from tests.support.kiosk_support import Kiosk, real_signer
from tests.support.passphrase import PASSPHRASE, type_passphrase
from tests.support.pki_fixtures import TEST_PIN, MakeToken

pytestmark = pytest.mark.softhsm

# Every kind of trouble at once: an invalid markup value, an action link, a closing tag, a style.
HOSTILE = "x[a==][@click=app.quit]y[/][b]z"
# A file name cannot hold "/" (intake shows it as "?"): the same without the closing tag.
HOSTILE_NAME = "lotx[a==][@click=app.quit]y[b]z.lot"
SIZE = (140, 40)


def screen_text(app: BaliseApp) -> str:
    """What a person sees on the screen right now (the SVG screenshot, tags removed)."""
    svg = app.export_screenshot()
    text = html.unescape(re.sub(r"<[^>]+>", "", svg))
    return text.replace("\xa0", " ")


def toast_words(app: BaliseApp) -> list[str]:
    """The words each notification waiting on screen shows (a Toast renders its notification;
    the toasts are drawn on their own layer, outside the screenshot)."""
    return [str(Toast(note).render()) for note in list(app._notifications)]


async def test_refused_file_name_and_alert_words_are_shown_as_text(kiosk: Kiosk) -> None:
    ctx = kiosk.box.ctx
    ctx.intake().import_bytes(HOSTILE_NAME, b"pas un lot", "t:hostile")
    ctx.tracking().alert("overdue", "lot:1", f"Alerte {HOSTILE}", f"Alert {HOSTILE}")
    app = kiosk.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LotsScreen))
        await until(pilot, lambda: HOSTILE_NAME in screen_text(app))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen))
        table = app.screen.query_one("#alerts", DataTable)
        await until(pilot, lambda: table.row_count == 1)
        await until(pilot, lambda: f"Alerte {HOSTILE}" in screen_text(app))
        app.notify(f"Erreur : {HOSTILE}")  # a toast carries outside words too
        await until(pilot, lambda: f"Erreur : {HOSTILE}" in toast_words(app))
        assert app.is_running  # [@click=app.quit] was never a link


async def test_return_words_are_shown_as_text(kiosk: Kiosk) -> None:
    repo = kiosk.box.ctx.returns_store
    with repo.transaction():
        repo.add_return(
            profile="p1",
            uidl="hostile-1",
            sha256="ab" * 32,
            kind="arl",
            status="unmatched",
            header={"emitter": "00000012345678"},
            lot_id=None,
            positive=True,
            words=(f"Retour {HOSTILE}", f"Return {HOSTILE}"),
            detail={},
            size=10,
            raw=b"raw",
            payload=b"payload",
            when=kiosk.box.ctx.clock.now().isoformat(timespec="seconds"),
        )
    app = kiosk.app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ReturnsScreen))
        await until(pilot, lambda: f"Retour {HOSTILE}" in screen_text(app))


async def test_practitioner_name_on_accueil_and_technician_screens_is_text(kiosk: Kiosk) -> None:
    kiosk.box.ctx.params.set("display_name", f"Dr {HOSTILE}", profile="p1")
    app = kiosk.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: f"Dr {HOSTILE}" in screen_text(app))  # Accueil, per profile
        await pilot.press("t")
        await type_passphrase(pilot, app, PASSPHRASE)
        await type_passphrase(pilot, app, PASSPHRASE)
        await until(pilot, lambda: isinstance(app.screen, TechnicianScreen), timeout=10)
        await pilot.press("p")
        await until(pilot, lambda: f"Dr {HOSTILE}" in screen_text(app))


async def test_name_read_from_the_card_is_shown_as_text(
    kiosk: Kiosk, pki: TestPKI, make_token: MakeToken
) -> None:
    # A card whose certificate names its holder with markup: the kiosk shows it as it is.
    holder = pki.issue_practitioner("10009876543", f"Dr {HOSTILE}")
    kiosk.box.ctx.params.set("signers.titular", holder.signature.cert_pem.read_text(), profile="p1")
    kiosk.use_signer(real_signer(kiosk.softhsm, make_token(holder)))
    app = kiosk.app()
    async with app.run_test(size=SIZE) as pilot:
        kiosk.cards.insert("cps3")
        await pilot.pause(0.2)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, PinDialog))
        await pilot.press(*TEST_PIN)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, LotChoiceDialog))
        await until(pilot, lambda: f"Dr {HOSTILE}" in screen_text(app))
        assert app.is_running
