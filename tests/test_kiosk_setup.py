"""The first-start wizard through Pilot, keyboard only, on a FRESH box (no practitioner): the REAL
SoftHSM2 card stand-in of the test PKI, its CRL fetched from a loopback server, aiosmtpd (implicit
TLS + AUTH) and Dovecot for the practitioner's BAL. Reader and card events are scripted (see
tests/support/kiosk_support.py). A set-up box then signs and sends a lot."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import trustme
from textual.pilot import Pilot
from textual.widgets import Input

from balise.app.context import Context, open_context
from balise.app.kiosk import WiredBackend, build_backend
from balise.domain.errors import ValidationError
from balise.domain.lotstate import LotState
from balise.domain.params import Scope
from balise.services.setup import OrganismPlan, SetupPlan
from balise.sim.dovecot import DovecotServer
from balise.sim.pki import Practitioner, SesamVitalePKI, TestPKI
from balise.sim.smtpd import SmtpServer
from balise.sim.softhsm import SoftHSM
from balise.ui.app import BaliseApp
from balise.ui.screens.dialogs import ConfirmDialog, LotChoiceDialog, PinDialog
from balise.ui.screens.home import HomeScreen
from balise.ui.screens.setup import SetupScreen
from balise.ui.screens.sign import SignScreen
from tests.support.balise_env import BaliseEnv
from tests.support.bounded_wait import until
from tests.support.box import EMITTER, SyncedClock
from tests.support.clock import TEST_NOW, TEST_TODAY
from tests.support.crl_support import CrlServer, make_crl
from tests.support.kiosk_support import ScriptedCards, ScriptedReaders, real_signer
from tests.support.lot_corpus import valid_lot
from tests.support.mail_fixtures import (
    SMTP_PASSWORD,
    SMTP_USER,
    TlsCA,
    running_dovecot,
)
from tests.support.pki_fixtures import TEST_PIN, MakeToken
from tests.support.slapd_support import Slapd

pytestmark = [pytest.mark.softhsm, pytest.mark.mail]


@dataclass
class Fresh:
    ctx: Context
    backend: WiredBackend
    cards: ScriptedCards
    smtp: SmtpServer
    pop3: DovecotServer
    usb: Path  # the USB key's folder, with the organism's certificates

    def app(self) -> BaliseApp:
        return BaliseApp(self.backend)


@pytest.fixture
def bal_dovecot(tmp_path: Path, tls_ca: TlsCA) -> Iterator[DovecotServer]:
    """The practitioner's BAL on Dovecot: user name = the BAL address, the SMTP password."""
    yield from running_dovecot(tmp_path / "dc", tls_ca, {SMTP_USER: SMTP_PASSWORD})


def fresh_box(
    env: BaliseEnv,
    pki: TestPKI,
    softhsm: SoftHSM,
    make_token: MakeToken,
    crl_server: CrlServer,
    tls_ca: TlsCA,
    card: Practitioner | None = None,
    revoked: tuple[Practitioner, ...] = (),
) -> tuple[Context, WiredBackend, ScriptedCards]:
    """What the image and first boot leave: the mode, the PKCS#11 module, the IGC-Santé roots and
    their CRL, the trusted TLS authorities — no practitioner, no organism."""
    ctx = open_context(env.home, actor="kiosk", env=env.env, clock=SyncedClock())
    p = ctx.params
    p.set("mode", "test")
    p.set("pkcs11_module", str(softhsm.module))
    p.set("igc_roots", pki.root.cert_pem.read_text())
    p.set("igc_intermediates", pki.intermediate.cert_pem.read_text())
    p.set("crl_url", crl_server.url("/igc/elementaire.crl"))
    p.set("ca_bundle", tls_ca.ca_pem.read_text())
    crl_server.files["/igc/elementaire.crl"] = make_crl(
        pki.intermediate,
        this_update=TEST_NOW - timedelta(hours=3),
        next_update=TEST_NOW + timedelta(days=7),
        revoked=[c for r in revoked for c in (r.signature.cert, r.authentication.cert)],
    )
    assert [o.kind for o in ctx.crl_service().fetch_all()] == ["stored"]
    cards = ScriptedCards()
    backend = build_backend(
        ctx,
        env=env.env,
        reader_watcher=ScriptedReaders(),
        card_watcher=cards,
        signer_factory=real_signer(softhsm, make_token(card)),
    )
    assert isinstance(backend, WiredBackend)
    return ctx, backend, cards


@pytest.fixture
def fresh(
    balise_env: BaliseEnv,
    pki: TestPKI,
    softhsm: SoftHSM,
    make_token: MakeToken,
    crl_server: CrlServer,
    tls_ca: TlsCA,
    smtp_implicit: SmtpServer,
    bal_dovecot: DovecotServer,
    tmp_path: Path,
) -> Iterator[Fresh]:
    ctx, backend, cards = fresh_box(balise_env, pki, softhsm, make_token, crl_server, tls_ca)
    usb = tmp_path / "usb"
    usb.mkdir()
    (usb / "cpam.pem").write_text(pki.amo.cert_pem.read_text() + pki.amc.cert_pem.read_text())
    try:
        yield Fresh(ctx, backend, cards, smtp_implicit, bal_dovecot, usb)
    finally:
        backend.stop_watches()
        ctx.close()


def home_text(app: BaliseApp) -> str:
    return str(app.screen.query_one("#lots").render())


def wizard(app: BaliseApp) -> SetupScreen:
    screens = [s for s in app.screen_stack if isinstance(s, SetupScreen)]
    assert screens, app.screen_stack
    return screens[0]


async def type_fields(pilot: Pilot[None], screen: SetupScreen, values: dict[str, str]) -> None:
    """Each field of the step in order: what it holds cleared, the value typed, Entrée."""
    await until(pilot, lambda: bool(screen._inputs()) and screen._inputs()[0].has_focus)
    for field in list(screen._inputs()):
        assert field.has_focus, field.name
        await pilot.press("end", "ctrl+u", *values.get(field.name or "", field.value), "enter")
        await pilot.pause(0.05)


async def insert_and_prove(pilot: Pilot[None], app: BaliseApp, cards: ScriptedCards) -> None:
    screen = wizard(app)
    cards.insert("cps3")
    await until(pilot, lambda: "Entrée : taper votre code PIN" in screen.body_text)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, PinDialog))
    await until(pilot, lambda: app.screen.query("#pin").first(Input).has_focus)
    await pilot.press(*TEST_PIN, "enter")
    await until(pilot, lambda: screen.step == "mail")


def mail_values(fresh: Fresh, **changes: str) -> dict[str, str]:
    values = {
        "bal_address": SMTP_USER,
        "bal_password": SMTP_PASSWORD,
        "smtp.host": "127.0.0.1",
        "smtp.port": str(fresh.smtp.port),
        "smtp.tls": "implicit",
        "pop3.host": "127.0.0.1",
        "pop3.port": str(fresh.pop3.pop3s_port),
        "pop3.tls": "implicit",
    }
    values.update(
        {k.replace("smtp_", "smtp.").replace("pop3_", "pop3."): v for k, v in changes.items()}
    )
    return values


async def test_a_fresh_box_is_set_up_with_the_card_then_signs_and_sends(
    fresh: Fresh, pki: TestPKI
) -> None:
    app = fresh.app()
    async with app.run_test(size=(110, 45)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SetupScreen))
        screen = wizard(app)
        await until(pilot, lambda: "Insérez votre carte CPS" in screen.body_text)
        await insert_and_prove(pilot, app, fresh.cards)
        assert "Carte authentifiée" in screen.body_text

        # A consumer webmail server: refused by the hygiene rules, nothing tried.
        await type_fields(pilot, screen, mail_values(fresh, smtp_host="smtp.gmail.com"))
        await until(pilot, lambda: screen.step == "test" and screen.test is not None)
        assert "messagerie grand public refusée" in screen.body_text
        await pilot.press("enter")  # not allowed: nothing happens
        assert screen.step == "test"
        await pilot.press("escape")
        await until(pilot, lambda: screen.step == "mail")

        # A wrong BAL password: said in words; nothing saved.
        await type_fields(pilot, screen, mail_values(fresh, bal_password="pas-le-bon"))
        await until(pilot, lambda: screen.step == "test" and screen.test is not None)
        assert screen.body_text.count("mot de passe (ou identifiant) refusé") == 2
        await pilot.press("escape")
        await until(pilot, lambda: screen.step == "mail")

        # Right at last (the other fields kept what was typed).
        await until(pilot, lambda: bool(screen._inputs()))
        assert screen._inputs()[0].value == SMTP_USER
        await type_fields(pilot, screen, mail_values(fresh))
        await until(pilot, lambda: screen.test is not None and screen.test.ok)
        assert "Connexion réussie" in screen.body_text
        # The typed servers were let out of the box's firewall for the test (not saved yet).
        held = set(fresh.ctx.params.held_egress())
        assert {("127.0.0.1", fresh.smtp.port), ("127.0.0.1", fresh.pop3.pop3s_port)} <= held
        await pilot.press("enter")

        await until(pilot, lambda: screen.step == "emitter")
        await type_fields(pilot, screen, {"emitter_number": "123"})
        await until(pilot, lambda: "14 chiffres" in screen.error_text)
        await type_fields(pilot, screen, {"emitter_number": EMITTER})

        await until(pilot, lambda: screen.step == "organisms" and bool(screen._inputs()))
        await type_fields(
            pilot,
            screen,
            {
                "ident": "cpam422",
                "type": "CP",
                "regime": "01",
                "caisse": "422",
                "centre": "000",
                "address": "01422@422.01.rss.fr",
                "pem_path": str(fresh.usb / "cpam.pem"),
            },
        )
        await until(pilot, lambda: screen.step == "summary")
        assert pki.practitioner.display_name in screen.body_text
        assert SMTP_PASSWORD not in screen.body_text
        assert fresh.ctx.params.ids(Scope.PROFILE) == []  # nothing saved before Entrée
        await pilot.press("enter")
        await until(pilot, lambda: screen.step == "done")
        passphrase = screen.passphrase
        assert len(passphrase) == 29 and passphrase in screen.body_text
        assert "elle ne sera plus jamais affichée" in screen.body_text
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        assert screen.passphrase == ""

        # What was saved: the card's holder as p1's titular, the mailbox, the organism.
        p = fresh.ctx.params
        assert p.get("rpps", profile="p1") == pki.practitioner.rpps
        assert p.get("display_name", profile="p1") == pki.practitioner.display_name
        assert p.value("pop3.password", profile="p1") == SMTP_PASSWORD
        assert p.check_passphrase("recovery_passphrase", passphrase)
        entries = list(fresh.ctx.journal.entries())
        assert all(SMTP_PASSWORD not in e.details and passphrase not in e.details for e in entries)
        by = {json.loads(e.details).get("by") for e in entries if e.kind == "param.set"}
        assert pki.practitioner.rpps in by
        assert "setup.completed" in [e.kind for e in entries]

        # The first lot: imported, signed with the same card, sent to the real SMTP server.
        outcome = fresh.ctx.intake().import_bytes("1.lot", valid_lot(TEST_TODAY), "usb:1.lot")
        assert outcome.accepted and outcome.lot_id is not None, outcome.problems
        await pilot.pause(0.2)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, PinDialog))
        await until(pilot, lambda: app.screen.query("#pin").first(Input).has_focus)
        await pilot.press(*TEST_PIN, "enter")
        await until(pilot, lambda: isinstance(app.screen, LotChoiceDialog))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("enter")
        sign = next(s for s in app.screen_stack if isinstance(s, SignScreen))
        await until(pilot, lambda: sign.phase == "done", timeout=30)
        assert "1 lot(s) envoyé(s)." in sign.body_text
    lot = fresh.ctx.lots.get(outcome.lot_id)
    assert lot is not None and lot.state is LotState.SENT
    assert len(fresh.smtp.wait_received(1)) == 1


async def test_a_pulled_card_keeps_nothing_typed_and_saves_nothing(fresh: Fresh) -> None:
    before = len(list(fresh.ctx.journal.entries()))
    app = fresh.app()
    async with app.run_test(size=(110, 45)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SetupScreen))
        screen = wizard(app)
        await insert_and_prove(pilot, app, fresh.cards)
        await until(pilot, lambda: bool(screen._inputs()) and screen._inputs()[0].has_focus)
        await pilot.press(*SMTP_USER, "enter", *"un-secret-tape")
        fresh.cards.pull()
        await until(pilot, lambda: screen.step == "card")
        assert "Carte retirée : rien n'a été enregistré" in screen.error_text
        assert screen.values == {} and screen._inputs() == []
        # Back in: the card proves itself again and every field starts empty (or its default).
        await insert_and_prove(pilot, app, fresh.cards)
        await until(pilot, lambda: bool(screen._inputs()))
        typed = {f.name: f.value for f in screen._inputs()}
        assert typed["bal_address"] == "" and typed["bal_password"] == ""
    assert fresh.ctx.params.ids(Scope.PROFILE) == []
    kinds = [e.kind for e in fresh.ctx.journal.entries()][before:]
    assert kinds == ["card.proof", "card.proof"]  # proven twice, nothing else written


@pytest.mark.parametrize("what", ["revoked", "expired"])
async def test_a_revoked_or_expired_card_is_refused_before_any_setting_is_shown(
    what: str,
    balise_env: BaliseEnv,
    pki: TestPKI,
    softhsm: SoftHSM,
    make_token: MakeToken,
    crl_server: CrlServer,
    tls_ca: TlsCA,
) -> None:
    if what == "revoked":
        card = pki.issue_practitioner("10009999999", "Dr Carte REVOQUEE")
        words = "a été révoqué le"
    else:
        card = pki.issue_practitioner(
            "10008888888",
            "Dr Carte EXPIREE",
            not_before=TEST_NOW - timedelta(days=900),
            not_after=TEST_NOW - timedelta(days=2),
        )
        words = "a expiré le"
    ctx, backend, cards = fresh_box(
        balise_env,
        pki,
        softhsm,
        make_token,
        crl_server,
        tls_ca,
        card=card,
        revoked=(card,) if what == "revoked" else (),
    )
    try:
        app = BaliseApp(backend)
        async with app.run_test(size=(110, 45)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, SetupScreen))
            screen = wizard(app)
            cards.insert("cps3")
            await until(pilot, lambda: "ne peut pas servir" in screen.body_text)
            assert words in screen.body_text
            await pilot.press("enter")
            await pilot.pause(0.3)
            assert not isinstance(app.screen, PinDialog)
            assert screen.step == "card" and screen._inputs() == []
            # Échap leaves the wizard for Accueil (the technician's T is there); I brings it back.
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, HomeScreen))
            await until(pilot, lambda: "Aucun praticien configuré" in home_text(app))
            await pilot.press("i")
            await until(pilot, lambda: isinstance(app.screen, SetupScreen))
    finally:
        backend.stop_watches()
        ctx.close()


async def test_a_server_certificate_from_another_ca_is_said_so(fresh: Fresh) -> None:
    fresh.ctx.params.set("ca_bundle", trustme.CA().cert_pem.bytes().decode())
    app = fresh.app()
    async with app.run_test(size=(110, 45)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SetupScreen))
        screen = wizard(app)
        await insert_and_prove(pilot, app, fresh.cards)
        await type_fields(pilot, screen, mail_values(fresh))
        await until(pilot, lambda: screen.step == "test" and screen.test is not None)
        assert screen.body_text.count("certificat du serveur non reconnu") == 2
        assert "Échap : corriger les réglages." in screen.body_text
    assert not any(c.upper().startswith("AUTH") for c in fresh.smtp.commands)


def test_the_organisms_certificates_come_from_the_directory_when_there_is_one(
    fresh: Fresh, pki: TestPKI, slapd: Slapd, sesam_vitale: SesamVitalePKI
) -> None:
    cn = "01422@422.01.rss.fr"
    plan = SetupPlan(
        bal_address=SMTP_USER,
        bal_password=SMTP_PASSWORD,
        smtp_host="127.0.0.1",
        smtp_port=str(fresh.smtp.port),
        smtp_tls="implicit",
        pop3_host="127.0.0.1",
        pop3_port=str(fresh.pop3.pop3s_port),
        pop3_tls="implicit",
        emitter_number=EMITTER,
        organisms=(OrganismPlan("cpam422", "CP", "01", "422", "000", cn, ""),),
    )
    backend = fresh.backend
    backend.start_card_watch(lambda _event: None)
    assert backend.card_check().ok
    backend.prove_card(bytearray(TEST_PIN.encode()), "test")
    # No directory: the organism's certificates must come from a USB key.
    with pytest.raises(ValidationError) as refused:
        backend.complete_setup(plan)
    assert "chemin absolu du fichier PEM" in refused.value.fr
    assert fresh.ctx.params.ids(Scope.PROFILE) == []

    params = fresh.ctx.params
    params.set("sesam_vitale_roots", sesam_vitale.ca.cert_pem.read_text())
    params.set("sesam_vitale_directory", slapd.url)
    organism = sesam_vitale.issue_organism(cn)
    slapd.publish(cn, [organism.cert_der.read_bytes()])
    assert backend.complete_setup(plan)  # the recovery passphrase
    assert params.get("recipient_certs", organism="cpam422") is None  # nobody pasted one
    assert fresh.ctx.organism_certs().recipient_pems("cpam422") == [organism.cert_pem.read_text()]


async def test_a_refused_save_says_why_saves_nothing_and_can_be_corrected(fresh: Fresh) -> None:
    organism = {
        "ident": "cpam422",
        "type": "CP",
        "regime": "01",
        "caisse": "422",
        "centre": "000",
        "address": "01422@422.01.rss.fr",
        "pem_path": str(fresh.usb / "absent.pem"),
    }
    app = fresh.app()
    async with app.run_test(size=(110, 45)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SetupScreen))
        screen = wizard(app)
        await insert_and_prove(pilot, app, fresh.cards)
        await type_fields(pilot, screen, mail_values(fresh))
        await until(pilot, lambda: screen.test is not None and screen.test.ok)
        await pilot.press("enter")
        await until(pilot, lambda: screen.step == "emitter")
        await type_fields(pilot, screen, {"emitter_number": EMITTER})
        await until(pilot, lambda: screen.step == "organisms" and bool(screen._inputs()))
        await type_fields(pilot, screen, organism)
        await until(pilot, lambda: screen.step == "summary")
        await pilot.press("enter")
        await until(pilot, lambda: "Rien n'est enregistré" in screen.error_text)
        assert "fichier illisible" in screen.error_text
        assert "Entrée : enregistrer" in screen.body_text  # the summary, again
        assert fresh.ctx.params.ids(Scope.PROFILE) == []
        # Échap back to the organism, the right file, and the save goes through.
        await pilot.press("escape")
        await until(pilot, lambda: screen.step == "organisms" and bool(screen._inputs()))
        await type_fields(pilot, screen, {**organism, "pem_path": str(fresh.usb / "cpam.pem")})
        await until(pilot, lambda: screen.step == "summary")
        await pilot.press("enter")
        await until(pilot, lambda: screen.step == "done")
    assert fresh.ctx.params.ids(Scope.PROFILE) == ["p1"]
