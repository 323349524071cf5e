"""The OCT simulator on its own: lot mails sent over implicit TLS with AUTH (stdlib smtplib as an
independent client) are answered into the real Dovecot Maildir with returns the classifier accepts."""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from balise.domain.classify import Classification, UnknownReason, classify_message
from balise.sim.dovecot import DovecotServer
from balise.sim.oct import OctSimulator
from balise.sim.pki import TestPKI
from tests.support.clock import TEST_TODAY
from tests.support.lot_corpus import valid_lot
from tests.support.mail_corpus import BAL_ADDRESS, EMITTER, ORGANISM_ADDRESS, corpus_policy
from tests.support.mail_fixtures import SMTP_PASSWORD, SMTP_USER, TlsCA
from tests.support.oct_sim import make_oct
from tests.support.signed_lot_mail import lot_mail

pytestmark = pytest.mark.mail

TODAY = TEST_TODAY


@dataclass
class Oct:
    sim: OctSimulator
    dovecot: DovecotServer
    tls_ca: TlsCA
    pki: TestPKI

    def send(self, *mails: bytes, to: str = ORGANISM_ADDRESS) -> None:
        """One implicit-TLS session, AUTH, every mail; each must get a 250."""
        with smtplib.SMTP_SSL(
            "127.0.0.1", self.sim.port, context=self.tls_ca.client_context(), timeout=10
        ) as client:
            client.login(SMTP_USER, SMTP_PASSWORD)
            for mail in mails:
                assert client.sendmail(BAL_ADDRESS, [to], mail) == {}

    def inbox(self) -> list[Classification]:
        """Every message in the BAL, oldest first, as the box's classifier sees it."""
        new = self.dovecot.maildir("bal1") / "new"
        files = sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        return [classify_message(p.read_bytes(), corpus_policy()) for p in files]


@pytest.fixture
def oct_sim(
    oct_simulator: OctSimulator, mailboxes: DovecotServer, tls_ca: TlsCA, pki: TestPKI
) -> Oct:
    return Oct(oct_simulator, mailboxes, tls_ca, pki)


def test_valid_lot_gets_arl_plus_then_noemie_paying_every_invoice(oct_sim: Oct) -> None:
    lot = valid_lot(TODAY, lot_number=5)
    oct_sim.send(lot_mail(oct_sim.pki, lot, 5))
    (handled,) = oct_sim.sim.wait_answers(1)
    assert (handled.emitter, handled.lot_number, handled.verdict) == (EMITTER, "005", "arl+")
    arl, noemie = oct_sim.inbox()
    assert arl.kind == "arl" and arl.description == "IRISTEST/ARL/Z"
    assert arl.sender_address == ORGANISM_ADDRESS
    assert arl.parsed is not None and arl.parsed.arl is not None
    assert arl.parsed.arl.positive and arl.parsed.arl.lot_number == 5
    assert arl.parsed.arl.lot_date == TODAY - timedelta(days=1)
    assert arl.parsed.arl.invoices_received == 3
    assert arl.parsed.header is not None and arl.parsed.header.flow_type == "T"
    assert noemie.kind == "noemie" and noemie.description == "IRISTEST/NOEMIE/Z"
    assert noemie.parsed is not None and noemie.parsed.noemie is not None
    (paid_lot,) = noemie.parsed.noemie.lots
    paid = {
        i.invoice_number: (i.amo.asked, i.amo.state.value, i.amo.paid) for i in paid_lot.invoices
    }
    assert sorted(paid) == [100000, 100001, 100002]
    assert all(asked == amount and state == "P" for asked, state, amount in paid.values())
    assert oct_sim.sim.errors == []


def test_bad_signature_duplicate_and_invalid_lot_get_arl_minus_with_a_reason(
    oct_sim: Oct,
) -> None:
    pki = oct_sim.pki
    first = valid_lot(TODAY, lot_number=1)
    mails = [
        lot_mail(pki, first, 1),
        lot_mail(pki, first, 1),  # the same lot again: LOT EN DOUBLE
        lot_mail(pki, valid_lot(TODAY, lot_number=2), 2, tamper=True),
        lot_mail(pki, valid_lot(TODAY, lot_number=3, flow="R"), 3),  # real flow to a test OCT
    ]
    oct_sim.send(*mails)  # every mail 250: a bad lot is answered, never refused
    handled = oct_sim.sim.wait_answers(4)
    assert [(h.lot_number, h.verdict, h.reason) for h in handled] == [
        ("001", "arl+", ""),
        ("001", "arl-", "LOT EN DOUBLE"),
        ("002", "arl-", "SIGNATURE NON VERIFIEE"),
        ("003", "arl-", "LOT INVALIDE"),
    ]
    arls = [c for c in oct_sim.inbox() if c.kind == "arl"]
    assert len(arls) == 4 and len(oct_sim.inbox()) == 5  # one NOEMIE, for the accepted lot
    negative = [
        c.parsed.arl for c in arls if c.parsed and c.parsed.arl and not c.parsed.arl.positive
    ]
    assert [a.words() for a in negative] == [
        "Lot rejeté : LOT EN DOUBLE",
        "Lot rejeté : SIGNATURE NON VERIFIEE",
        "Lot rejeté : LOT INVALIDE",
    ]
    assert oct_sim.sim.errors == []


def test_mail_it_cannot_read_is_accepted_recorded_and_not_answered(oct_sim: Oct) -> None:
    pki = oct_sim.pki
    lot = valid_lot(TODAY, lot_number=4)
    # encrypted for the AMC only: the OCT's AMO key cannot open it
    oct_sim.send(lot_mail(pki, lot, 4, recipient=pki.amc), b"Subject: hello\r\n\r\nno lot here\r\n")
    oct_sim.sim.smtp.wait_received(2)
    assert oct_sim.sim.handled == [] and oct_sim.inbox() == []
    assert len(oct_sim.sim.errors) == 2
    assert "cannot decrypt" in oct_sim.sim.errors[0]
    assert "no smime.p7m part" in oct_sim.sim.errors[1]


def test_spam_and_phishing_dropped_into_the_bal_are_unknown_to_the_box(oct_sim: Oct) -> None:
    oct_sim.sim.drop_spam(BAL_ADDRESS)
    oct_sim.sim.drop_phishing(BAL_ADDRESS)
    reasons = [c.reason for c in oct_sim.inbox()]
    assert reasons == [UnknownReason.SENDER_NOT_ALLOWED, UnknownReason.SENDER_NOT_ALLOWED]


def test_answer_delay_holds_the_returns_back(
    mailboxes: DovecotServer, tls_ca: TlsCA, pki: TestPKI, tmp_path: Path
) -> None:
    sim = make_oct(tmp_path / "oct", mailboxes, tls_ca, pki, send_noemie=False, answer_delay=0.3)
    sim.start()
    try:
        oct = Oct(sim, mailboxes, tls_ca, pki)
        oct.send(lot_mail(pki, valid_lot(TODAY, lot_number=6), 6))
        assert mailboxes.maildir_count("bal1") == 0  # answered later, not during the session
        (handled,) = sim.wait_answers(1)
        assert handled.verdict == "arl+"
        assert [c.kind for c in oct.inbox()] == ["arl"]  # no NOEMIE when send_noemie=False
    finally:
        sim.stop()
