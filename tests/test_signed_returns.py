"""Signed returns (PROFILE.md §3.1): for an organism configured with a return-signing certificate,
a return changes a lot only when it carries a valid CMS signature by that certificate. Real
Dovecot, the real purge with its classifier worker process; returns signed with the organism's
key from the test PKI (as the OCT simulator does when configured)."""

from __future__ import annotations

import json
import smtplib
from pathlib import Path

import pytest

from balise.domain.classify import classify_message
from balise.domain.lotstate import LotState
from balise.domain.signed_return import return_stream, signed_content
from balise.sim.dovecot import DovecotServer
from balise.sim.oct import OrganismKey
from balise.sim.pki import Issued, TestPKI
from balise.sim.returnmail import return_mail, sign_return
from tests.support.box import Box
from tests.support.clock import TEST_TODAY
from tests.support.lot_corpus import valid_lot
from tests.support.mail_corpus import (
    ARL_POS,
    ARL_POS_EML,
    BAL_ADDRESS,
    ORGANISM_ADDRESS,
    corpus_policy,
)
from tests.support.mail_fixtures import SMTP_PASSWORD, SMTP_USER, TlsCA
from tests.support.oct_sim import make_oct
from tests.support.purge_support import configure_pop3, fresh_lot, sample_lot_sent
from tests.support.signed_lot_mail import lot_mail

ORGANISM = "01422@422.01.rss.fr"


@pytest.fixture(scope="module")
def cpam_signer(pki: TestPKI) -> Issued:
    return pki.issue_return_signer("TEST CPAM 01422 SIGNATURE DES RETOURS")


@pytest.fixture(scope="module")
def other_signer(pki: TestPKI) -> Issued:
    return pki.issue_return_signer("TEST AUTRE ORGANISME SIGNATURE")


def arl_mail(payload: bytes, message_id: str) -> bytes:
    return return_mail(payload, "IRISTEST/ARL/Z", sender=ORGANISM, message_id=message_id)


def purge(box: Box) -> None:
    service = box.ctx.purge(env=box.env.env)
    try:
        report = service.run_once("p1")
    finally:
        service.close()
    assert report.deleted == report.total, report


def test_signed_payload_is_read_through_but_proves_nothing_yet(
    pki: TestPKI, cpam_signer: Issued
) -> None:
    signed = sign_return(ARL_POS, cpam_signer.key_pem, cpam_signer.cert_pem)
    assert signed_content(signed) == ARL_POS and return_stream(ARL_POS) == (ARL_POS, False)
    c = classify_message(arl_mail(signed, "<s@422.01.rss.fr>"), corpus_policy())
    assert c.kind == "arl" and c.payload == signed  # the classifier keeps the signature
    broken = classify_message(arl_mail(signed[:-7], "<b@422.01.rss.fr>"), corpus_policy())
    assert broken.kind == "unknown"


def test_forged_unsigned_arl_is_never_applied_a_signed_one_is(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA, cpam_signer: Issued, other_signer: Issued
) -> None:
    ctx = box.ctx
    configure_pop3(ctx, mailboxes, tls_ca)
    ctx.params.set("return_signing_cert", cpam_signer.cert_pem.read_text(), organism="cpam422")
    lot = sample_lot_sent(ctx)

    # A spoofed *.rss.fr sender: the golden ARL+ as anyone can post it, unsigned; then the
    # same ARL signed by another organism's key.
    mailboxes.deliver("bal1", ARL_POS_EML)
    forged = sign_return(ARL_POS, other_signer.key_pem, other_signer.cert_pem)
    mailboxes.deliver("bal1", arl_mail(forged, "<forged@422.01.rss.fr>"))
    purge(box)
    assert ctx.lots.get(lot).state is LotState.SENT  # type: ignore[union-attr]
    stored = ctx.tracking().returns()
    assert [(r.kind, r.status, r.lot_id) for r in stored] == [("damaged", "damaged", None)] * 2
    assert {r.detail["signature"] for r in stored} == {"RETURN_UNSIGNED", "RETURN_BAD_SIGNATURE"}
    alerts = [a for a in ctx.tracking().alerts() if a.kind == "return_unsigned"]
    assert len(alerts) == 2
    assert all("non appliqué" in a.fr and "cpam422" in a.fr for a in alerts)
    retours = ctx.exchange(box.env.env).retours / "00000012345678"
    assert not retours.exists() or not list(retours.glob("arl-*"))  # nothing handed over

    # The organism's own signature: applied, and retours/ gets the entity stream itself.
    signed = sign_return(ARL_POS, cpam_signer.key_pem, cpam_signer.cert_pem)
    mailboxes.deliver("bal1", arl_mail(signed, "<genuine@422.01.rss.fr>"))
    purge(box)
    assert ctx.lots.get(lot).state is LotState.ACKNOWLEDGED  # type: ignore[union-attr]
    applied = [r for r in ctx.tracking().returns() if r.status == "applied"]
    assert len(applied) == 1 and applied[0].detail["signature"] == "vérifiée"
    published = list(retours.glob("arl-*"))
    assert len(published) == 1 and published[0].read_bytes() == ARL_POS
    status = json.loads(next(retours.glob("lot-*.statut.json")).read_text())
    assert status["etat"] == "acknowledged"


def test_without_a_return_signing_certificate_unsigned_returns_apply_as_before(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA
) -> None:
    configure_pop3(box.ctx, mailboxes, tls_ca)
    lot = sample_lot_sent(box.ctx)
    mailboxes.deliver("bal1", ARL_POS_EML)
    purge(box)
    assert box.ctx.lots.get(lot).state is LotState.ACKNOWLEDGED  # type: ignore[union-attr]


def test_oct_simulator_signs_when_configured_and_the_box_applies_it(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA, pki: TestPKI, cpam_signer: Issued,
    tmp_path: Path,
) -> None:  # fmt: skip
    sim = make_oct(
        tmp_path / "oct", mailboxes, tls_ca, pki, send_noemie=False,
        return_signers=[OrganismKey(ORGANISM_ADDRESS, cpam_signer.key_pem, cpam_signer.cert_pem)],
    )  # fmt: skip
    sim.start()
    try:
        with smtplib.SMTP_SSL(
            "127.0.0.1", sim.port, context=tls_ca.client_context(), timeout=10
        ) as client:
            client.login(SMTP_USER, SMTP_PASSWORD)
            client.sendmail(
                BAL_ADDRESS,
                [ORGANISM_ADDRESS],
                lot_mail(pki, valid_lot(TEST_TODAY, lot_number=5), 5),
            )
        assert [h.verdict for h in sim.wait_answers(1)] == ["arl+"]
    finally:
        sim.stop()
    ctx = box.ctx
    configure_pop3(ctx, mailboxes, tls_ca)
    ctx.params.set("return_signing_cert", cpam_signer.cert_pem.read_text(), organism="cpam422")
    lot = fresh_lot(ctx, 5)
    purge(box)
    assert ctx.lots.get(lot).state is LotState.ACKNOWLEDGED  # type: ignore[union-attr]
    (arl,) = ctx.tracking().returns()
    assert arl.detail["signature"] == "vérifiée"
