"""Self-updates on the kiosk (issue 14), through Pilot on a real configured box (store, journal,
SoftHSM2 card): Accueil says the running version and how the last update ended (an undone update
as « Mise à jour annulée, version N conservée »), the technician holds or allows a version from
the technician screen, and while the update gate holds no signing starts — before the PIN."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from balise.adapters.locks import take_update_gate
from balise.app.update import update_service
from balise.domain.lotstate import LotState
from balise.ui.app import BaliseApp
from balise.ui.screens.dialogs import PinDialog
from balise.ui.screens.home import HomeScreen
from balise.ui.screens.params_edit import ParamDialog, ParamEditScreen
from balise.ui.screens.sign import SignScreen
from balise.ui.screens.technician import TechnicianScreen
from tests.support.bounded_wait import until
from tests.support.kiosk_support import Kiosk

pytestmark = pytest.mark.softhsm

PASSPHRASE = "phrase de passe du technicien"


def _text(app: BaliseApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


def _running(kiosk: Kiosk, tmp_path: Path, version: str) -> dict[str, str]:
    """The box's os-release says ``version`` (the kiosk reads it as the running version)."""
    release = tmp_path / f"os-release-{version}"
    release.write_text(f'IMAGE_ID=balise\nIMAGE_VERSION="{version}"\n', encoding="utf-8")
    env = dict(kiosk.box.env.env, BALISE_OS_RELEASE=str(release))
    kiosk.backend.env = env
    return env


async def test_home_shows_the_running_version_and_an_undone_update(
    kiosk: Kiosk, tmp_path: Path
) -> None:
    env = _running(kiosk, tmp_path, "2.0")
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        await until(pilot, lambda: "Version 2.0" in _text(app, "#version"))
        assert "aucune mise à jour pour l'instant" in _text(app, "#version")
    # 3.0 was installed, failed, and the box came back to 2.0: its health check resolves it.
    ctx = kiosk.box.ctx
    update_service(ctx, env).record("3.0")
    assert update_service(ctx, env).resolve_pending().alert_id is not None
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        await until(pilot, lambda: "conservée" in _text(app, "#version"))
        line = _text(app, "#version")
        assert "Version 2.0 · Mise à jour annulée, version 2.0 conservée" in line
        assert "échec de 3.0" in line
        assert app.screen.query_one("#version").has_class("attention")
        assert "1 à lire" in _text(app, "#alerts")
    # The next update, 3.1, boots: Accueil says it succeeded, without the attention mark.
    update_service(ctx, env).record("3.1")
    env = _running(kiosk, tmp_path, "3.1")
    assert update_service(ctx, env).resolve_pending().last is not None
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        await until(pilot, lambda: "réussie" in _text(app, "#version"))
        assert "Version 3.1 · mise à jour 3.1 réussie le" in _text(app, "#version")
        assert not app.screen.query_one("#version").has_class("attention")


async def _pick(pilot: Pilot[None], screen: ParamEditScreen, words: str) -> None:
    await until(pilot, lambda: words in screen.list_text)
    index = next(i for i, line in enumerate(screen.list_text.splitlines()) if words in line)
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
    await pilot.press("end", "ctrl+u", *value, "enter")
    return dialog


async def test_technician_holds_or_allows_a_version(kiosk: Kiosk, tmp_path: Path) -> None:
    kiosk.backend.set_passphrase(PASSPHRASE)
    kiosk.backend.technician_left()
    app = kiosk.app()
    async with app.run_test(size=(110, 40)) as pilot:
        await pilot.press("t")
        await until(pilot, lambda: app.screen.query("#passphrase").first(Input).disabled is False)
        await pilot.press(*PASSPHRASE, "enter")
        await until(pilot, lambda: isinstance(app.screen, TechnicianScreen))
        tech = app.screen
        assert isinstance(tech, TechnicianScreen)
        await pilot.press("p")
        await until(pilot, lambda: "M : modifier" in tech.content_text)
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, ParamEditScreen))
        screen = app.screen
        assert isinstance(screen, ParamEditScreen)
        await _pick(pilot, screen, "Paramètres du boîtier")
        await until(pilot, lambda: "(update_hold) : non (par défaut)" in screen.list_text)
        await _edit(pilot, app, screen, "update_hold", "oui")
        await until(pilot, lambda: "(update_hold) : oui" in screen.list_text)
        # A version that is not one: refused in words, the dialog stays.
        dialog = await _edit(pilot, app, screen, "update_allow", "--reboot")
        await until(pilot, lambda: "Refusé" in dialog.error_text)
        assert "version invalide" in dialog.error_text
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)
        await _edit(pilot, app, screen, "update_allow", "2026.11.3")
        await until(pilot, lambda: "(update_allow) : 2026.11.3" in screen.list_text)
    policy = update_service(kiosk.box.ctx).policy()
    assert (policy.hold, policy.allow) == (True, "2026.11.3")
    by = [
        (json.loads(e.details)["name"], json.loads(e.details).get("by"))
        for e in kiosk.box.ctx.journal.entries()
        if e.kind == "param.set"
    ]
    assert ("update_hold", "technicien") in by and ("update_allow", "technicien") in by


async def test_no_signing_starts_while_the_update_gate_holds(kiosk: Kiosk) -> None:
    gate = take_update_gate(kiosk.box.ctx.data_dir / "locks", 5)
    try:
        app = kiosk.app()
        async with app.run_test(size=(100, 35)) as pilot:
            kiosk.cards.insert("cps3")
            await until(pilot, lambda: kiosk.backend.card_status().present)
            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, SignScreen))
            screen = app.screen
            assert isinstance(screen, SignScreen)
            await until(pilot, lambda: screen.phase == "done")
            assert "Mise à jour en cours : la télétransmission reprendra" in screen.body_text
            assert not any(isinstance(s, PinDialog) for s in app.screen_stack)
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, HomeScreen))
    finally:
        os.close(gate)
    assert {lot.state for lot in kiosk.box.ctx.lots.lots()} == {LotState.READY}
    assert not kiosk.backend.update_in_progress()
