"""Self-service with the card, on the kiosk's backend over a real configured box, the REAL SoftHSM2
card stand-ins, aiosmtpd (implicit TLS + AUTH) and Dovecot: a practitioner proven by their own CPS
changes their BAL password (tested on both servers before it is saved), adds and removes a locum
whose card then signs for their profile, and can never touch another practitioner's profile."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from balise.domain.errors import StateError
from balise.sim.dovecot import DovecotServer
from balise.sim.pki import TestPKI
from balise.sim.smtpd import SmtpServer
from tests.support.kiosk_support import Kiosk, real_signer
from tests.support.mail_fixtures import (
    POP3_USER,
    SMTP_PASSWORD,
    SMTP_USER,
    TlsCA,
    running_dovecot,
)
from tests.support.pki_fixtures import TEST_PIN, MakeToken

pytestmark = [pytest.mark.softhsm, pytest.mark.mail]


def _mailbox(kiosk: Kiosk, smtp: SmtpServer, dovecot: DovecotServer, tls_ca: TlsCA) -> None:
    """p1's BAL on the test servers, with its OLD password (both servers accept the new one)."""
    p = kiosk.box.ctx.params
    p.set("ca_bundle", tls_ca.ca_pem.read_text())
    for name, value in (
        ("smtp.host", "127.0.0.1"),
        ("smtp.port", str(smtp.port)),
        ("smtp.user", SMTP_USER),
        ("smtp.password", "ancien-mot-de-passe"),
        ("pop3.host", "127.0.0.1"),
        ("pop3.port", str(dovecot.pop3s_port)),
        ("pop3.user", POP3_USER),
        ("pop3.password", "ancien-mot-de-passe"),
    ):
        p.set(name, value, profile="p1")


def _prove(kiosk: Kiosk) -> None:
    kiosk.backend.start_card_watch(lambda _event: None)
    assert kiosk.backend.card_check().ok
    kiosk.backend.prove_card(bytearray(TEST_PIN.encode()), "self-service")


@pytest.fixture
def one_password_dovecot(tmp_path: Path, tls_ca: TlsCA) -> Iterator[DovecotServer]:
    """Dovecot whose mailbox has the SMTP server's password: one BAL password, as a mail host
    gives (the shared fixture's two servers have two)."""
    yield from running_dovecot(tmp_path / "dc1", tls_ca, {POP3_USER: SMTP_PASSWORD})


def test_the_new_bal_password_is_saved_only_once_it_works(
    kiosk: Kiosk,
    smtp_implicit: SmtpServer,
    one_password_dovecot: DovecotServer,
    dovecot: DovecotServer,
    tls_ca: TlsCA,
) -> None:
    _mailbox(kiosk, smtp_implicit, one_password_dovecot, tls_ca)
    backend = kiosk.backend
    with pytest.raises(StateError):  # not before the card has proven who holds it
        backend.change_bal_password(SMTP_PASSWORD)
    _prove(kiosk)
    params = kiosk.box.ctx.params
    wrong = backend.change_bal_password("pas-le-bon")
    assert not wrong.ok
    assert all("mot de passe (ou identifiant) refusé" in line for line in wrong.lines_fr)
    assert params.value("smtp.password", profile="p1") == "ancien-mot-de-passe"
    # A POP3 server that refuses it (another mailbox's password): nothing saved either.
    params.set("pop3.port", str(dovecot.pop3s_port), profile="p1")
    half = backend.change_bal_password(SMTP_PASSWORD)
    assert not half.ok and [r.startswith("SMTP") for r in half.lines_fr] == [True, False]
    assert params.value("smtp.password", profile="p1") == "ancien-mot-de-passe"
    params.set("pop3.port", str(one_password_dovecot.pop3s_port), profile="p1")
    good = backend.change_bal_password(SMTP_PASSWORD)
    assert good.ok, good.lines_fr
    assert params.value("smtp.password", profile="p1") == SMTP_PASSWORD
    assert params.value("pop3.password", profile="p1") == SMTP_PASSWORD
    entries = [
        json.loads(e.details) for e in kiosk.box.ctx.journal.entries() if e.kind == "param.set"
    ]
    saved = [e for e in entries if e.get("by") == "10001234567"]
    assert [e["name"] for e in saved] == ["smtp.password", "pop3.password"]
    assert all(e["value"] == "(masqué)" for e in saved)


def test_self_service_touches_only_the_cards_own_profile(
    kiosk: Kiosk, pki: TestPKI, make_token: MakeToken, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ctx = kiosk.box.ctx
    other = pki.issue_practitioner("10005555555", "Dr Autre PRATICIEN")
    locum = pki.issue_practitioner("10006666666", "Dr Rempla CANT")
    ctx.params.set("display_name", other.display_name, profile="p2")
    ctx.params.set("signers.titular", other.signature.cert_pem.read_text(), profile="p2")
    folder = tmp_path_factory.mktemp("usb")
    (folder / "rempla.pem").write_text(locum.signature.cert_pem.read_text())

    # The titular of p1 adds a locum: it lands in p1, journaled with the titular's RPPS.
    _prove(kiosk)
    kiosk.backend.add_locum(str(folder / "rempla.pem"))
    assert [holder for _, holder in kiosk.backend.locums()] == ["10006666666/Dr Rempla CANT"]
    assert ctx.params.get("signers.locums", profile="p2") == []
    by = [json.loads(e.details).get("by") for e in ctx.journal.entries() if e.kind == "param.set"]
    assert by[-1] == pki.practitioner.rpps

    # The locum's card now signs for p1 — and changes nothing: it is nobody's titular.
    kiosk.use_signer(real_signer(kiosk.softhsm, make_token(locum)))
    kiosk.backend.start_card_watch(lambda _event: None)
    assert kiosk.backend.card_check().profiles == (("p1", "remplaçant"),)
    report = kiosk.backend.examine_card()
    assert report.can_prompt, report.refusal_fr
    result = kiosk.backend.sign(
        bytearray(TEST_PIN.encode()), "p1", kiosk.lot_ids[:1], lambda _e: None, threading.Event()
    )
    assert result.signed == tuple(kiosk.lot_ids[:1])
    lot = ctx.lots.get(kiosk.lot_ids[0])
    assert lot is not None and "Rempla" in (lot.signer or "")
    _prove(kiosk)
    with pytest.raises(StateError) as refused:
        kiosk.backend.remove_locum("00")
    assert refused.value.code == "NOT_TITULAR"

    # The other practitioner sees and changes only p2, never p1.
    kiosk.use_signer(real_signer(kiosk.softhsm, make_token(other)))
    _prove(kiosk)
    profile, lines = kiosk.backend.my_parameters()
    assert profile == "p2"
    assert "xyz999212@bal.example.net" not in [line.shown for line in lines]
    assert kiosk.backend.locums() == []
    kiosk.backend.add_locum(str(folder / "rempla.pem"))
    assert len(ctx.params.get("signers.locums", profile="p1")) == 1  # type: ignore[arg-type]

    # Back to p1's titular: the locum removed.
    kiosk.use_signer(real_signer(kiosk.softhsm, kiosk.token))
    _prove(kiosk)
    ((fingerprint, _holder),) = kiosk.backend.locums()
    kiosk.backend.remove_locum(fingerprint)
    assert kiosk.backend.locums() == []
    assert len(ctx.params.get("signers.locums", profile="p2")) == 1  # type: ignore[arg-type]
