"""Technician mode edits parameters on the kiosk, keyboard only, through Pilot on a real configured
box: the same validation and mailbox hygiene as `balise params set`, a secret masked and never
shown back, a certificate read from a PEM file, each change journaled "by technicien"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from balise.domain.errors import StateError
from balise.sim.pki import TestPKI
from balise.ui.app import BaliseApp
from balise.ui.screens.params_edit import ParamDialog, ParamEditScreen
from balise.ui.screens.technician import TechnicianScreen
from tests.support.bounded_wait import until
from tests.support.kiosk_support import Kiosk

pytestmark = pytest.mark.softhsm

PASSPHRASE = "phrase de passe du technicien"
NEW_SECRET = "mot-de-passe-smtp-42"


async def _technician(pilot: Pilot[None], app: BaliseApp) -> TechnicianScreen:
    await pilot.press("t")
    await until(pilot, lambda: app.screen.query("#passphrase").first(Input).disabled is False)
    await pilot.press(*PASSPHRASE, "enter")
    await until(pilot, lambda: isinstance(app.screen, TechnicianScreen))
    assert isinstance(app.screen, TechnicianScreen)
    return app.screen


async def _pick(pilot: Pilot[None], screen: ParamEditScreen, words: str) -> None:
    """Move the highlight to the line holding ``words`` with the arrows, then Entrée."""
    await until(pilot, lambda: words in screen.list_text)
    lines = screen.list_text.splitlines()
    index = next(i for i, line in enumerate(lines) if words in line)
    await pilot.press("home", *["down"] * index, "enter")


async def _edit(
    pilot: Pilot[None], app: BaliseApp, screen: ParamEditScreen, name: str, value: str
) -> ParamDialog:
    await _pick(pilot, screen, f"({name})")
    await until(
        pilot,
        lambda: (
            isinstance(app.screen, ParamDialog)
            and app.screen.query("#param-value").first(Input).has_focus
        ),
    )
    dialog = app.screen
    assert isinstance(dialog, ParamDialog)
    masked.append(dialog.query_one("#param-value", Input).password)
    await pilot.press("end", "ctrl+u", *value, "enter")  # the shown value cleared, then typed
    return dialog


masked: list[bool] = []  # whether each field edited was typed masked


def _by_technician(kiosk: Kiosk) -> list[tuple[str, str]]:
    out = []
    for entry in kiosk.box.ctx.journal.entries():
        details = json.loads(entry.details)
        if entry.kind == "param.set" and details.get("by") == "technicien":
            out.append((details["name"], str(details["value"])))
    return out


async def test_technician_edits_parameters_with_the_cli_rules(
    kiosk: Kiosk, pki: TestPKI, tmp_path: Path
) -> None:
    kiosk.backend.set_passphrase(PASSPHRASE)
    kiosk.backend.technician_left()
    with pytest.raises(StateError):  # outside technician mode, nothing can be changed
        kiosk.backend.set_parameter("profile", "p1", "smtp.port", "587")
    locum = pki.issue_practitioner("10007777777", "Dr Rempla CANT")
    pem = tmp_path / "remplacant.pem"
    pem.write_text(locum.signature.cert_pem.read_text())
    app = kiosk.app()
    async with app.run_test(size=(110, 40)) as pilot:
        tech = await _technician(pilot, app)
        await pilot.press("p")
        await until(pilot, lambda: "M : modifier" in tech.content_text)
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, ParamEditScreen))
        screen = app.screen
        assert isinstance(screen, ParamEditScreen)
        await _pick(pilot, screen, "Praticien p1")
        await until(pilot, lambda: "(smtp.password)" in screen.list_text)

        # A consumer webmail BAL: refused in words, nothing saved, the typed text kept.
        dialog = await _edit(pilot, app, screen, "bal_address", "cabinet@gmail.com")
        await until(pilot, lambda: "Refusé" in dialog.error_text)
        assert "grand public" in dialog.error_text
        assert dialog.query_one("#param-value", Input).value == "cabinet@gmail.com"
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)
        assert kiosk.box.ctx.params.get("bal_address", profile="p1") != "cabinet@gmail.com"

        # A port out of range: the schema's words.
        dialog = await _edit(pilot, app, screen, "smtp.port", "99999")
        await until(pilot, lambda: "entre 1 et 65535" in dialog.error_text)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)

        # A good value is saved and shown in the list.
        await _edit(pilot, app, screen, "smtp.port", "587")
        await until(pilot, lambda: app.screen is screen)
        await until(pilot, lambda: "(smtp.port) : 587" in screen.list_text)

        # A secret: typed masked, cleared once read, never shown back.
        masked.clear()
        await _edit(pilot, app, screen, "smtp.password", NEW_SECRET)
        assert masked == [True]
        await until(pilot, lambda: app.screen is screen)
        await until(pilot, lambda: "(smtp.password) : ********" in screen.list_text)
        assert NEW_SECRET not in screen.list_text

        # A locum's certificate from a PEM file on a USB key.
        await _edit(pilot, app, screen, "signers.locums", str(tmp_path / "absent.pem"))
        dialog2 = app.screen
        assert isinstance(dialog2, ParamDialog)
        await until(pilot, lambda: "fichier illisible" in dialog2.error_text)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)
        await _edit(pilot, app, screen, "signers.locums", str(pem))
        await until(pilot, lambda: app.screen is screen)
        await until(pilot, lambda: "(signers.locums) : 1 certificat(s)" in screen.list_text)

        # Back to the scopes, then a new practitioner created from the kiosk.
        await pilot.press("escape")
        await _pick(pilot, screen, "Nouveau praticien")
        await until(pilot, lambda: app.screen.query("#new-id").first(Input).has_focus)
        await pilot.press(*"p2", "enter")
        await until(pilot, lambda: app.screen is screen)
        await until(pilot, lambda: "Praticien p2" in screen.title_text)
        await _edit(pilot, app, screen, "display_name", "Dr Deux")
        await until(pilot, lambda: app.screen is screen)
        await pilot.press("escape", "escape")
        await until(pilot, lambda: app.screen is tech)
        await until(pilot, lambda: "Praticien p2" in tech.content_text)

    params = kiosk.box.ctx.params
    assert params.get("smtp.port", profile="p1") == 587
    assert params.value("smtp.password", profile="p1") == NEW_SECRET
    assert params.get("display_name", profile="p2") == "Dr Deux"
    assert _by_technician(kiosk) == [
        ("smtp.port", "587"),
        ("smtp.password", "(masqué)"),
        ("signers.locums", "1 élément(s)"),
        ("display_name", "Dr Deux"),
    ]
    assert all(NEW_SECRET not in e.details for e in kiosk.box.ctx.journal.entries())
