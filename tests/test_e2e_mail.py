"""End to end through the real components: lots signed on a SoftHSM2 token through the PKCS#11
adapter, sent by the TransmissionService over implicit TLS with AUTH to the OCT simulator, answered
into Dovecot, and purged over POP3S: acknowledged and paid, rejected with words, duplicates, spam."""

from __future__ import annotations

import pkcs11
import pytest

from balise.adapters.outbox import SqliteOutbox
from balise.adapters.pkcs11 import Pkcs11Signer
from balise.adapters.smtp import SmtpSender
from balise.cms import build_entity, build_enveloped_data, gzip_payload
from balise.domain.lotmail import mail_envelope_addresses
from balise.domain.lotstate import LotState
from balise.services.purge import PurgeReport
from balise.services.signing import examine_card, sign_with_card
from balise.sim.dovecot import DovecotServer
from balise.sim.oct import OctSimulator
from balise.sim.pki import TestPKI
from balise.sim.softhsm import SoftHSM, TokenInfo
from tests.support.box import BAL, Box
from tests.support.lot_corpus import valid_lot
from tests.support.mail_fixtures import SMTP_PASSWORD, SMTP_USER, TlsCA
from tests.support.oct_sim import flip_signature_bit
from tests.support.pki_fixtures import TEST_PIN
from tests.support.purge_support import configure_pop3
from tests.support.signed_lots import configure_smtp

pytestmark = [pytest.mark.mail, pytest.mark.softhsm]


def wire(box: Box, oct: OctSimulator, dovecot: DovecotServer, tls_ca: TlsCA) -> None:
    """Profile p1 sends to the simulator (implicit TLS, AUTH) and purges bal1 over POP3S; both
    trust only the test TLS CA (the ``ca_bundle`` parameter)."""
    configure_smtp(box.ctx, None, tls_ca, tls="implicit", port=oct.port)
    configure_pop3(box.ctx, dovecot, tls_ca)


def import_and_sign(box: Box, token: tuple[SoftHSM, TokenInfo], numbers: list[int]) -> list[int]:
    """Lots through intake, then one confirmed batch signed by the token (the kiosk's path)."""
    ctx = box.ctx
    ids = []
    for n in numbers:
        data = valid_lot(ctx.clock.now().date(), lot_number=n)
        outcome = ctx.intake().import_bytes(f"{n}.lot", data, f"e2e:{n}")
        assert outcome.accepted and outcome.lot_id is not None, outcome.problems
        ids.append(outcome.lot_id)
    softhsm, info = token
    signer = Pkcs11Signer(pkcs11.lib(str(softhsm.module)), token_label=info.label)
    service = ctx.signing()
    report = examine_card(service, signer, ctx.cert_checker())
    assert report.can_prompt, report.refusal_fr
    result = sign_with_card(
        service, signer, bytearray(TEST_PIN.encode()), report.identity, "p1", ids
    )
    assert result.signed == tuple(ids), result.stopped_fr
    return ids


async def send(box: Box) -> tuple[int, ...]:
    # Awaited on the test's own loop, as in test_transmission: with asyncio.run() the loop closed
    # before aiosmtplib's TLS transport finished closing, leaving a socket for a random later GC.
    outcome = await box.ctx.transmission(timeout=10).send_pending("p1")
    assert outcome.error_code is None, outcome.error_fr
    return outcome.sent


def purge(box: Box) -> PurgeReport:
    service = box.ctx.purge(env=box.env.env)
    try:
        return service.run_once("p1")
    finally:
        service.close()


def state(box: Box, lot_id: int) -> LotState:
    lot = box.ctx.lots.get(lot_id)
    assert lot is not None
    return lot.state


async def test_signed_lots_are_acknowledged_and_paid_and_spam_is_purged_with_an_alert(
    box: Box,
    token: tuple[SoftHSM, TokenInfo],
    oct_simulator: OctSimulator,
    mailboxes: DovecotServer,
    tls_ca: TlsCA,
) -> None:
    wire(box, oct_simulator, mailboxes, tls_ca)
    ids = import_and_sign(box, token, [1, 2])
    assert await send(box) == tuple(ids)
    assert [h.verdict for h in oct_simulator.wait_answers(2)] == ["arl+", "arl+"]
    assert oct_simulator.smtp.clear_commands == []  # AUTH and all inside TLS
    oct_simulator.drop_spam(BAL)
    oct_simulator.drop_phishing(BAL)

    report = purge(box)

    assert (report.total, report.returns, report.unknown, report.deleted) == (6, 4, 2, 6)
    assert mailboxes.maildir_count("bal1") == 0
    assert [state(box, i) for i in ids] == [LotState.ACKNOWLEDGED, LotState.ACKNOWLEDGED]
    tracking = box.ctx.tracking()
    for lot_id in ids:
        content = box.ctx.lots.content(lot_id)
        paid = tracking.payments(lot_id)
        assert len(paid) == 3
        assert all(p.amo_state == "P" and p.amo_paid == p.amo_asked > 0 for p in paid)
        # the lot-end record (6) carries the lot total: the NOEMIE paid exactly that
        lot_end = next(
            content[i : i + 128] for i in range(0, len(content), 128) if content[i : i + 1] == b"6"
        )
        assert sum(p.amo_paid for p in paid) == int(lot_end[9:19])
    (alert,) = tracking.alerts()
    assert alert.kind == "mail_unknown" and alert.id == report.alert_id
    listed = alert.details["messages"]
    assert isinstance(listed, list) and len(listed) == 2
    assert {m["reason"] for m in listed if isinstance(m, dict)} == {"SENDER_NOT_ALLOWED"}
    assert oct_simulator.errors == []


async def test_tampered_signature_is_rejected_with_the_reason_in_words(
    box: Box,
    token: tuple[SoftHSM, TokenInfo],
    oct_simulator: OctSimulator,
    mailboxes: DovecotServer,
    tls_ca: TlsCA,
    pki: TestPKI,
) -> None:
    wire(box, oct_simulator, mailboxes, tls_ca)
    (lot_id,) = import_and_sign(box, token, [3])
    lot = box.ctx.lots.get(lot_id)
    signed = box.ctx.lots.blob(lot_id, "signed_cms")
    assert lot is not None and signed is not None
    # Damage the stored signature, then envelope it again the way the signing service does: the
    # OCT can open the mail, but the signature no longer verifies.
    bad = flip_signature_bit(signed)
    entity = build_entity(
        gzip_payload(bad), emitter=lot.emitter, lot_number=lot.lot_number, test_flow=True
    )
    envelope = build_enveloped_data(
        entity, [pki.amo.cert_der.read_bytes(), pki.amc.cert_der.read_bytes()]
    )
    with box.ctx.store.conn:
        box.ctx.store.conn.executemany(
            "UPDATE lot_blobs SET data = ? WHERE lot_id = ? AND kind = ?",
            ((bad, lot_id, "signed_cms"), (envelope, lot_id, "envelope")),
        )
    assert await send(box) == (lot_id,)
    (handled,) = oct_simulator.wait_answers(1)
    assert (handled.verdict, handled.reason) == ("arl-", "SIGNATURE NON VERIFIEE")

    report = purge(box)

    assert (report.total, report.returns, report.unknown) == (1, 1, 0)  # no NOEMIE for a reject
    assert state(box, lot_id) is LotState.REJECTED
    shown = box.env.run("lots", "show", str(lot_id))
    assert shown.returncode == 0, shown.stderr
    assert "SIGNATURE NON VERIFIEE" in shown.stdout
    assert box.ctx.tracking().payments(lot_id) == []


async def test_resent_duplicate_gets_arl_minus_and_the_first_ack_stands(
    box: Box,
    token: tuple[SoftHSM, TokenInfo],
    oct_simulator: OctSimulator,
    mailboxes: DovecotServer,
    tls_ca: TlsCA,
) -> None:
    wire(box, oct_simulator, mailboxes, tls_ca)
    (lot_id,) = import_and_sign(box, token, [4])
    assert await send(box) == (lot_id,)
    oct_simulator.wait_answers(1)
    assert purge(box).returns == 2
    assert state(box, lot_id) is LotState.ACKNOWLEDGED

    # The same frozen mail goes out again (a restored backup, a second box): same bytes, same
    # Message-ID, through the box's own SMTP client and TLS settings.
    delivery = SqliteOutbox(box.ctx.store).delivery(lot_id)
    assert delivery is not None and delivery.mail is not None
    sender, recipient = mail_envelope_addresses(delivery.mail)
    accepted: list[int] = []
    await SmtpSender(local_hostname="box.balise.test", timeout=10).send_batch(
        "127.0.0.1",
        oct_simulator.port,
        "implicit",
        SMTP_USER,
        SMTP_PASSWORD,
        [tls_ca.ca_pem.read_text()],
        [(sender, recipient, delivery.mail)],
        accepted.append,
    )
    assert accepted == [0]
    handled = oct_simulator.wait_answers(2)
    assert (handled[1].verdict, handled[1].reason) == ("arl-", "LOT EN DOUBLE")
    assert handled[1].message_id == handled[0].message_id

    report = purge(box)

    assert (report.total, report.returns) == (1, 1)
    assert state(box, lot_id) is LotState.ACKNOWLEDGED  # never overwritten
    assert [a.kind for a in box.ctx.tracking().alerts()] == ["return_conflict"]
    assert len(box.ctx.tracking().payments(lot_id)) == 3
    statuses = [r.status for r in box.ctx.tracking().returns()]
    assert statuses.count("conflict") == 1
