"""The technician's passphrase in the kiosk tests: the value the tests set, and typing it on the
kiosk's passphrase screen as a technician would (once the field takes keys)."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import Input

from balise.ui.app import BaliseApp
from balise.ui.screens.passphrase import PassphraseScreen
from tests.support.bounded_wait import until

PASSPHRASE = "une phrase de passe solide"


async def type_passphrase(pilot: Pilot[None], app: BaliseApp, text: str) -> PassphraseScreen:
    """Type ``text`` and Entrée on the passphrase screen shown now; return that screen."""
    screen = app.screen
    assert isinstance(screen, PassphraseScreen)
    field = screen.query_one("#passphrase", Input)
    await until(pilot, lambda: not field.disabled)
    await pilot.press(*text)
    await pilot.press("enter")
    return screen
