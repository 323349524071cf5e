"""Lots, Retours, Alertes and technician mode through Pilot, on a real configured box; the
technician gate's delays and lock-out on the real store (a clock the test moves forward)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from balise.app.kiosk import build_backend
from balise.sim.dovecot import DovecotServer
from balise.sim.pki import TestPKI
from balise.ui import i18n
from balise.ui.app import BaliseApp
from balise.ui.screens.alerts import AlertsScreen
from balise.ui.screens.dialogs import ConfirmDialog
from balise.ui.screens.home import HomeScreen
from balise.ui.screens.lots import LotDetailScreen, LotsScreen
from balise.ui.screens.passphrase import PassphraseScreen
from balise.ui.screens.returns import ReturnsScreen
from balise.ui.screens.technician import TechnicianScreen
from tests.support.bounded_wait import until
from tests.support.kiosk_support import Kiosk, ScriptedCards, ScriptedReaders, SteppingClock
from tests.support.mail_corpus import ARL_POS_EML, NOEMIE_EML
from tests.support.mail_fixtures import TlsCA
from tests.support.passphrase import PASSPHRASE, type_passphrase
from tests.support.purge_support import configure_pop3, sample_lot_sent

pytestmark = pytest.mark.softhsm


def _text(app: BaliseApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def test_lots_screen_lists_lots_detail_and_refused_files(kiosk: Kiosk) -> None:
    kiosk.box.ctx.intake().import_bytes("abime.lot", b"pas un lot", "t:bad")
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LotsScreen))
        table = app.screen.query_one("#lots", DataTable)
        await until(pilot, lambda: table.row_count == 3)
        assert str(table.get_row_at(0)[1]) == "prêt à signer"
        refused = _text(app, "#quarantine")
        assert "Fichiers refusés (non transmis) : 1" in refused and "abime.lot" in refused
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, LotDetailScreen))
        await until(pilot, lambda: "État : prêt à signer" in _text(app, "#detail"))
        await pilot.press("escape", "escape")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))


async def test_alerts_screen_acknowledges(kiosk: Kiosk) -> None:
    tracking = kiosk.box.ctx.tracking()
    tracking.alert("overdue", "lot:1", "Lot 001 sans ARL depuis 3 jours", "Lot 001 without ARL")
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen))
        table = app.screen.query_one("#alerts", DataTable)
        await until(pilot, lambda: table.row_count == 1)
        assert "sans ARL" in str(table.get_row_at(0)[2])
        await pilot.press("enter")
        await until(pilot, lambda: table.row_count == 0)
        assert "Aucune alerte" in _text(app, "#alerts-empty")
    assert kiosk.box.ctx.tracking().alerts() == []
    acked = [e for e in kiosk.box.ctx.journal.entries() if "ack" in e.kind]
    assert acked


async def test_returns_screen_shows_empty_state_in_words(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ReturnsScreen))
        await until(pilot, lambda: "Aucun retour reçu." in _text(app, "#returns-empty"))


async def test_first_start_creates_the_passphrase_then_technician_mode(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(100, 35)) as pilot:
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, PassphraseScreen))
        await until(pilot, lambda: "Aucune phrase de passe" in _text(app, "#passphrase-help"))
        await type_passphrase(pilot, app, PASSPHRASE)
        await until(pilot, lambda: "seconde fois" in _text(app, "#passphrase-message"))
        await type_passphrase(pilot, app, PASSPHRASE)
        await until(pilot, lambda: isinstance(app.screen, TechnicianScreen), timeout=10)
        assert kiosk.backend.has_passphrase()
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, PassphraseScreen))
        await type_passphrase(pilot, app, PASSPHRASE)
        await until(pilot, lambda: isinstance(app.screen, TechnicianScreen), timeout=10)
        assert app.current_mode == "technician"
        tech = app.screen
        assert isinstance(tech, TechnicianScreen)
        await pilot.press("j")
        await until(pilot, lambda: "Tête (à recopier)" in tech.content_text)
        head = kiosk.box.ctx.journal.verify().head_hash
        assert head[:16] in tech.content_text.replace("\n", "")
        await pilot.press("d")
        await until(pilot, lambda: "protection faible" in tech.content_text)
        await pilot.press("p")
        await until(pilot, lambda: "Praticien p1" in tech.content_text)
        await pilot.press("l")
        table = tech.query_one("#tech-lots", DataTable)
        await until(pilot, lambda: table.row_count == 3)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("escape")  # no: nothing happens
        await until(pilot, lambda: app.screen is tech)
        assert kiosk.box.ctx.lots.get(kiosk.lot_ids[0]).state.value == "ready"  # type: ignore[union-attr]
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("enter")
        await until(
            pilot,
            lambda: kiosk.box.ctx.lots.get(kiosk.lot_ids[0]).state.value == "cancelled",  # type: ignore[union-attr]
        )
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        assert app.current_mode == "operate"
    kinds = [e.kind for e in kiosk.box.ctx.journal.entries()]
    assert "technician.passphrase_set" in kinds and "technician.logout" in kinds


def _says(screen: PassphraseScreen, words: str) -> Callable[[], bool]:
    return lambda: words in screen.message_text


async def test_technician_passphrase_brute_force_grows_delays_and_locks(kiosk: Kiosk) -> None:
    clock = SteppingClock()
    kiosk.box.ctx.clock = clock
    backend = build_backend(
        kiosk.box.ctx,
        env=kiosk.box.env.env,
        reader_watcher=ScriptedReaders(),
        card_watcher=ScriptedCards(),
    )
    backend.set_passphrase(PASSPHRASE)
    app = BaliseApp(backend)
    async with app.run_test(size=(100, 35)) as pilot:
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, PassphraseScreen))
        screen = app.screen
        assert isinstance(screen, PassphraseScreen)
        field = screen.query_one("#passphrase", Input)
        for n, delay in enumerate((1, 2, 4, 8), start=1):
            await type_passphrase(pilot, app, f"mauvaise phrase {n}")
            await until(pilot, _says(screen, f"({n} échec(s))"))
            assert f"Prochain essai dans {delay} s" in screen.message_text
            assert field.disabled  # the screen waits out the delay
            assert backend.passphrase_attempt(PASSPHRASE).verdict == "wait"  # even the right one
            clock.advance(delay)
            await until(pilot, lambda: not field.disabled, timeout=delay + 3)
        await type_passphrase(pilot, app, "mauvaise phrase 5")
        await until(pilot, lambda: "bloqué jusqu'à" in screen.message_text)
        assert field.disabled
    # A restart does not reset the lock-out: the count is in the store.
    again = build_backend(
        kiosk.box.ctx,
        env=kiosk.box.env.env,
        reader_watcher=ScriptedReaders(),
        card_watcher=ScriptedCards(),
    )
    assert again.passphrase_attempt(PASSPHRASE).verdict == "locked"
    clock.advance(15 * 60)
    assert again.passphrase_attempt(PASSPHRASE).verdict == "ok"
    entries = [e for e in kiosk.box.ctx.journal.entries() if e.kind == "technician.login"]
    results = [json.loads(e.details)["result"] for e in entries]
    assert "wait" in results  # the right passphrase during a delay is not even checked
    assert [r for r in results if r != "wait"] == ["wrong"] * 4 + ["locked", "locked", "ok"]
    assert all(PASSPHRASE not in e.details and "mauvaise" not in e.details for e in entries)


async def test_english_is_complete_and_selectable(kiosk: Kiosk) -> None:
    app = kiosk.app(lang="en")
    try:
        async with app.run_test(size=(100, 35)) as pilot:
            await pilot.pause(0.3)
            assert "3 ready to sign" in _text(app, "#lots")
            shown = [active.binding.description for active in app.screen.active_bindings.values()]
            assert "Sign" in shown and "Signer" not in shown
    finally:
        i18n.set_language("fr")


def test_catalogue_languages_have_the_same_keys() -> None:
    assert set(i18n.FR) == set(i18n.EN)
    assert all(i18n.FR[k] and i18n.EN[k] for k in i18n.FR)


def test_screens_hold_no_literal_french_words() -> None:
    """Heuristic: a string literal with French accented letters or common French words in a
    screen module means a word outside the catalogue."""
    ui = Path(i18n.__file__).parent
    accent = re.compile(r"""(["'])[^"'\n]*[éèêàùçôî][^"'\n]*\1""")
    words = re.compile(r"""(["'])[^"'\n]*\b(le|la|les|du|des|une|votre|carte|lot)\b [^"'\n]*\1""")
    offenders = []
    for path in [*ui.glob("screens/*.py"), ui / "app.py", *ui.glob("widgets/*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("#") or '"""' in stripped:
                continue
            if accent.search(line) or words.search(line):
                offenders.append(f"{path.name}:{number}: {stripped}")
    assert not offenders, offenders


@pytest.mark.mail
async def test_returns_screen_shows_arl_and_payments(
    kiosk: Kiosk, mailboxes: DovecotServer, tls_ca: TlsCA
) -> None:
    ctx = kiosk.box.ctx
    configure_pop3(ctx, mailboxes, tls_ca)
    sample_lot_sent(ctx)  # lot 007 of the golden samples, sent
    for raw in (ARL_POS_EML, NOEMIE_EML):
        mailboxes.deliver("bal1", raw)
    purge = ctx.purge(env=kiosk.box.env.env)
    try:
        assert purge.run_once("p1").returns == 2
    finally:
        purge.close()
    app = kiosk.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ReturnsScreen))
        returns = app.screen.query_one("#returns", DataTable)
        payments = app.screen.query_one("#payments", DataTable)
        await until(pilot, lambda: returns.row_count == 2)
        rows = " ".join(str(c) for i in range(returns.row_count) for c in returns.get_row_at(i))
        assert "007" in rows
        await until(pilot, lambda: payments.row_count == 3)
        states = " ".join(str(c) for i in range(payments.row_count) for c in payments.get_row_at(i))
        assert "payé" in states and "rejeté" in states and "différé" in states


async def test_technician_sees_each_organism_certificate_and_the_revocation_lists(
    kiosk: Kiosk, pki: TestPKI
) -> None:
    params = kiosk.box.ctx.params
    params.set("igc_roots", pki.root.cert_pem.read_text())
    params.set("igc_intermediates", pki.intermediate.cert_pem.read_text())
    app = kiosk.app()
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("t")
        await type_passphrase(pilot, app, PASSPHRASE)
        await type_passphrase(pilot, app, PASSPHRASE)
        await until(pilot, lambda: isinstance(app.screen, TechnicianScreen), timeout=10)
        tech = app.screen
        assert isinstance(tech, TechnicianScreen)
        await pilot.press("c")
        await until(pilot, lambda: "Organisme cpam422" in tech.content_text)
        text = tech.content_text
        assert "chiffre vers la saisie" in text  # the box's certificate was pasted by hand
        assert "saisi · chiffrement · jusqu'au" in text
        assert "chiffre vers aucun certificat" in text  # the AMC has none: said, not hidden
        # no CRL fetched yet for the IGC-Santé authorities: said for each of them
        assert text.count(": aucune liste de révocation") >= 1
