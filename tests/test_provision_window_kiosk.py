"""The provisioning window from the kiosk, through Pilot on a real configured box: only behind
the technician gate; the request the root helper takes, the journal entries, the LAN address,
the host key fingerprint and the time left shown, the early close.

The root helper itself (sshd, nftables, the deadline) needs root: tests/image/
test_provision_window.py runs it for real. Here the test plays its part by taking the request
from the spool and writing the state file in the helper's format, which that image-tier test
checks against the real helper."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from balise.app.kiosk import build_backend
from balise.domain.errors import StateError
from balise.ui.app import BaliseApp
from balise.ui.screens.dialogs import ConfirmDialog
from balise.ui.screens.home import HomeScreen
from balise.ui.screens.passphrase import PassphraseScreen
from balise.ui.screens.technician import TechnicianScreen
from tests.support.bounded_wait import until
from tests.support.kiosk_support import Kiosk, ScriptedCards, ScriptedReaders
from tests.support.passphrase import PASSPHRASE, type_passphrase

pytestmark = pytest.mark.softhsm
FINGERPRINT = "SHA256:q4Jm0yq1sGgYhK0u8b5bq3cS1m2a9kQz0dWc3tPpx7E"


class Spool:
    """The run directory of the root helper, as its tmpfiles entry makes it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("spool/tmp", "spool/new"):
            (root / sub).mkdir(parents=True, mode=0o700)
        self.request = root / "spool" / "new" / "window"

    def take(self) -> str:
        """What the helper does first: read the request and empty spool/new."""
        word = self.request.read_text(encoding="ascii").strip()
        self.request.unlink()
        return word

    def state(self, **state: object) -> None:
        tmp = self.root / "state.json.tmp"
        tmp.write_text(json.dumps(state), encoding="utf-8")
        tmp.replace(self.root / "state.json")


def _backend(kiosk: Kiosk, run_dir: Path):  # type: ignore[no-untyped-def]
    return build_backend(
        kiosk.box.ctx,
        env={**kiosk.box.env.env, "BALISE_PROVISIONING_DIR": str(run_dir)},
        reader_watcher=ScriptedReaders(),
        card_watcher=ScriptedCards(),
    )


def _technician(app: BaliseApp) -> TechnicianScreen:
    screen = app.screen
    assert isinstance(screen, TechnicianScreen)
    return screen


def _kinds(kiosk: Kiosk) -> list[str]:
    return [e.kind for e in kiosk.box.ctx.journal.entries() if e.kind.startswith("provision.")]


async def test_window_opened_shown_counted_down_and_closed(kiosk: Kiosk, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "run")
    backend = _backend(kiosk, spool.root)
    backend.set_passphrase(PASSPHRASE)
    backend.technician_left()  # as after the first start: the gate must be passed again
    app = BaliseApp(backend)
    async with app.run_test(size=(120, 40)) as pilot:
        # Accueil: the key does nothing.
        await pilot.press("o")
        await pilot.pause(0.2)
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, PassphraseScreen))
        await type_passphrase(pilot, app, PASSPHRASE)
        await until(pilot, lambda: isinstance(app.screen, TechnicianScreen), timeout=10)
        tech = _technician(app)
        shown = [b.binding.description for b in tech.active_bindings.values()]
        assert "Fenêtre de provisionnement (30 min)" in shown
        assert "Fermer la fenêtre" not in shown  # only in the window's view

        # Asked first; Échap: nothing requested, nothing journaled.
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert "30 minutes" in str(app.screen.query_one("#question").render())
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is tech)
        await until(pilot, lambda: "Fenêtre de provisionnement fermée." in tech.content_text)
        assert not spool.request.exists()
        assert _kinds(kiosk) == []

        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("enter")
        await until(pilot, spool.request.exists)
        assert spool.request.read_text(encoding="ascii") == "open\n"
        assert list((spool.root / "spool" / "tmp").iterdir()) == []  # renamed, nothing left
        await until(pilot, lambda: "Ouverture de la fenêtre" in tech.content_text)
        assert _kinds(kiosk) == ["provision.window.open"]

        # The root helper takes it and opens: address, fingerprint, time left.
        assert spool.take() == "open"
        now = time.time()
        spool.state(
            state="open", opened=now, deadline=now + 4, port=2222, interface="eth0",
            addresses=["192.168.1.20"], key_type="ssh-ed25519", fingerprint=FINGERPRINT,
        )  # fmt: skip
        await until(pilot, lambda: "OUVERTE — reste 00:0" in tech.content_text)
        text = tech.content_text
        assert "192.168.1.20 — port SSH 2222" in text
        assert FINGERPRINT in text
        assert "ssh-keyscan -p 2222 -t ed25519 192.168.1.20" in text.replace("\n", " ")
        first = tech.content_text.split("reste ")[1][:5]
        await until(pilot, lambda: tech.content_text.split("reste ")[-1][:5] < first, timeout=5)
        # Past the deadline the kiosk says so, even before the helper writes "closed".
        await until(pilot, lambda: "le délai est écoulé" in tech.content_text, timeout=8)

        # Opened again, then closed early by F.
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("enter")
        await until(pilot, spool.request.exists)
        assert spool.take() == "open"
        now = time.time()
        spool.state(state="open", opened=now, deadline=now + 1800, port=2222,
                    addresses=["192.168.1.20"], fingerprint=FINGERPRINT)  # fmt: skip
        await until(pilot, lambda: "reste 29:" in tech.content_text or "30:00" in tech.content_text)
        shown = [b.binding.description for b in tech.active_bindings.values()]
        assert "Fermer la fenêtre" in shown
        # Back on Accueil (the idle timeout does the same), everyone sees the window is open.
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        home = app.screen
        await until(
            pilot,
            lambda: (
                "fermeture dans 30 min au plus tard" in str(home.query_one("#warnings").render())
            ),
        )
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, PassphraseScreen))
        await type_passphrase(pilot, app, PASSPHRASE)
        await until(pilot, lambda: isinstance(app.screen, TechnicianScreen), timeout=10)
        tech = _technician(app)
        await pilot.press("o")  # open already: shown, not asked again
        await until(pilot, lambda: "reste 29:" in tech.content_text)
        assert not isinstance(app.screen, ConfirmDialog)
        await pilot.press("f")
        await until(pilot, spool.request.exists)
        assert spool.request.read_text(encoding="ascii") == "close\n"
        await until(pilot, lambda: "Fermeture de la fenêtre" in tech.content_text)
        assert spool.take() == "close"
        spool.state(state="closed", closed=time.time(), reason="kiosk")
        await until(pilot, lambda: "Fenêtre de provisionnement fermée." in tech.content_text)
        assert _kinds(kiosk) == [
            "provision.window.open",
            "provision.window.open",
            "provision.window.close",
        ]

        # Leaving technician mode closes the gate again; Accueil says nothing more.
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        home = app.screen
        # (it said so while the window was open: this is the refreshed Accueil)
        await until(
            pilot, lambda: "provisionnement" not in str(home.query_one("#warnings").render())
        )
        await until(pilot, lambda: "technician.logout" in [e.kind for e in kiosk.box.ctx.journal.entries()])  # fmt: skip
    with pytest.raises(StateError) as refused:
        backend.open_provisioning_window()
    assert refused.value.code == "TECH_REQUIRED"
    assert not spool.request.exists()


async def test_without_the_gate_nothing_is_requested(kiosk: Kiosk, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "run")
    backend = _backend(kiosk, spool.root)
    backend.set_passphrase(PASSPHRASE)
    backend.technician_left()
    for call in (backend.open_provisioning_window, backend.close_provisioning_window):
        with pytest.raises(StateError):
            call()
    assert backend.passphrase_attempt("pas la bonne phrase").verdict == "wrong"
    with pytest.raises(StateError):
        backend.open_provisioning_window()
    assert not spool.request.exists()
    assert _kinds(kiosk) == []
    # The state can be read by anyone (nothing in it is secret): closed.
    assert backend.provisioning_window().phase == "closed"


async def test_helper_errors_and_silence_are_said(kiosk: Kiosk, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "run")
    backend = _backend(kiosk, spool.root)
    backend.set_passphrase(PASSPHRASE)  # enters technician mode
    app = BaliseApp(backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.switch_mode("technician")
        tech = _technician(app)
        spool.state(state="error", error="no-address", when=time.time())
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await until(pilot, lambda: "pas d'adresse sur le réseau du cabinet" in tech.content_text)
        await pilot.press("enter")
        await until(pilot, spool.request.exists)
        # Nobody takes the request (helper not running): said after a while, not forever
        # "opening".
        old = time.time() - 60
        os.utime(spool.request, (old, old))
        await until(pilot, lambda: "ne répond pas" in tech.content_text)


async def test_not_installed_is_said_in_words(kiosk: Kiosk, tmp_path: Path) -> None:
    backend = _backend(kiosk, tmp_path / "absent")
    backend.set_passphrase(PASSPHRASE)
    with pytest.raises(StateError) as refused:
        backend.open_provisioning_window()
    assert refused.value.code == "PROVISION_UNAVAILABLE"
    assert "n'est pas installée" in refused.value.fr
    assert _kinds(kiosk) == []
