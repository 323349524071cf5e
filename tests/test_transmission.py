"""Transmission against real aiosmtpd servers and openssl: one TLS session per mailbox, AUTH only
inside TLS, failures back to "signed" with backoff, byte-identical retries and crash resends."""

from __future__ import annotations

import email
import email.policy
import os
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from balise.adapters.clock import FixedClock
from balise.adapters.outbox import SqliteOutbox
from balise.adapters.smtp import SmtpSender
from balise.app.context import Context, open_context
from balise.domain.lotstate import LotState
from balise.sim.netutil import free_tcp_port
from balise.sim.smtpd import SmtpServer
from tests.support.box import BAL, EMITTER
from tests.support.clock import TEST_NOW
from tests.support.mail_fixtures import SMTP_PASSWORD, SMTP_USER, TlsCA
from tests.support.signed_lots import SendingBox, configure_smtp, sign_lots
from tests.support.transmission import HOST, HookedSender, frozen_mail, service

pytestmark = pytest.mark.mail

AMO_ADDRESS = "01422@422.01.rss.fr"


class SimulatedCrash(BaseException):
    """The process dies right after the server's 250, before the local commit."""


class CrashAfter250(HookedSender):
    """A MailSender whose process "dies" after the first 250: on_accepted never commits."""

    def accepted(self, index: int, on_accepted: Callable[[int], None]) -> None:
        raise SimulatedCrash


def state(ctx: Context, lot_id: int) -> LotState:
    lot = ctx.lots.get(lot_id)
    assert lot is not None
    return lot.state


def ehlo_count(server: SmtpServer) -> int:
    return sum(1 for c in server.commands if c.upper().startswith(("EHLO", "HELO")))


def auth_lines(server: SmtpServer) -> list[str]:
    return [c for c in server.commands if c.upper().startswith("AUTH")]


@pytest.fixture
def tls11_port(tls_ca: TlsCA) -> Iterator[int]:
    """A real TLS 1.1-only server: ``openssl s_server`` (OpenSSL 3 offers TLS 1.1 only at
    security level 0; the aiosmtpd simulator cannot even complete its own readiness handshake)."""
    port = free_tcp_port()
    proc = subprocess.Popen(
        [
            "openssl", "s_server", "-quiet",
            "-accept", f"127.0.0.1:{port}",
            "-cert", str(tls_ca.cert_pem), "-key", str(tls_ca.key_pem),
            "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def speaks_tls11(port: int) -> str | None:
    """The version a TLS 1.1 client gets from the server (proves the server is what we say)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("DEFAULT@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        return tls.version()


def openssl_decrypt(part: bytes, pki_dir: Path, tmp_path: Path, pki: object) -> bytes:
    p7m = tmp_path / "part.p7m"
    p7m.write_bytes(part)
    done = subprocess.run(
        [
            "openssl",
            "cms",
            "-decrypt",
            "-inform",
            "DER",
            "-in",
            str(p7m),
            "-inkey",
            str(pki.amo.key_pem),  # type: ignore[attr-defined]
            "-recip",
            str(pki.amo.cert_pem),  # type: ignore[attr-defined]
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_signed_lots_leave_in_one_session_as_profile_mails(
    sending_box: SendingBox, smtp_implicit: SmtpServer, tls_ca: TlsCA, tmp_path: Path
) -> None:
    ctx = sending_box.ctx
    configure_smtp(ctx, smtp_implicit, tls_ca)
    ids = sign_lots(ctx, sending_box.pki, [1, 2, 3])
    outcome = await service(ctx).send_pending("p1")
    assert outcome.sent == tuple(ids) and not outcome.waiting
    assert [state(ctx, i) for i in ids] == [LotState.SENT] * 3
    received = smtp_implicit.wait_received(3)
    assert ehlo_count(smtp_implicit) == 1, "one session for the mailbox"
    assert len(auth_lines(smtp_implicit)) == 1
    assert not smtp_implicit.clear_commands
    for lot_id, message in zip(ids, received, strict=True):
        lot = ctx.lots.get(lot_id)
        assert lot is not None and lot.compostage is not None
        assert message.mail_from == BAL and message.rcpt_tos == (AMO_ADDRESS,)
        assert message.authenticated_as == SMTP_USER
        assert message.data == frozen_mail(ctx, lot_id)
        msg = email.message_from_bytes(message.data, policy=email.policy.default)
        assert msg["From"] == BAL and msg["To"] == AMO_ADDRESS
        assert msg["Subject"] == f"IR100500/{EMITTER}/{lot.compostage}/00003"
        assert msg["Message-ID"] == f"<{lot.compostage}.{lot.lot_number}.{EMITTER}@{HOST}>"
        assert msg["X-Balise-Profile"] == "0"
        assert len(lot.compostage) == 19
        sent_at = datetime.strptime(lot.compostage[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        assert abs(datetime.now(UTC) - sent_at) < timedelta(minutes=5)
    counters = [int(ctx.lots.get(i).compostage[14:]) for i in ids]  # type: ignore[union-attr,index]
    assert counters == [counters[0], counters[0] + 1, counters[0] + 2]
    # The independent peer opens what the AMO receives.
    part = next(
        email.message_from_bytes(received[0].data, policy=email.policy.default).iter_parts()
    )
    assert part.get_content_type() == "application/pkcs7-mime"
    p7m = part.get_payload(decode=True)
    assert isinstance(p7m, bytes)
    entity = openssl_decrypt(p7m, Path(), tmp_path, sending_box.pki)
    assert b"Content-Type: application/EDI-consent" in entity
    assert b"Content-Description: IRISTEST/B2/Z" in entity
    assert service(ctx).status("p1").state == "idle"


async def test_starttls_session_logs_in_only_after_tls(
    sending_box: SendingBox, smtp_starttls: SmtpServer, tls_ca: TlsCA
) -> None:
    ctx = sending_box.ctx
    configure_smtp(ctx, smtp_starttls, tls_ca)
    ids = sign_lots(ctx, sending_box.pki, [1, 2])
    outcome = await service(ctx).send_pending("p1")
    assert outcome.sent == tuple(ids)
    smtp_starttls.wait_received(2)
    assert [c.split()[0].upper() for c in smtp_starttls.clear_commands] == ["EHLO", "STARTTLS"]
    assert sum(1 for c in smtp_starttls.commands if c.upper() == "STARTTLS") == 1
    assert len(auth_lines(smtp_starttls)) == 1


async def test_hidden_starttls_is_refused_without_auth(
    sending_box: SendingBox, smtp_hidden_starttls: SmtpServer, tls_ca: TlsCA
) -> None:
    ctx = sending_box.ctx
    configure_smtp(ctx, smtp_hidden_starttls, tls_ca, tls="starttls")
    [lot_id] = sign_lots(ctx, sending_box.pki, [1])
    before = datetime.now(UTC).replace(microsecond=0)
    outcome = await service(ctx).send_pending("p1")
    assert outcome.error_code == "SMTP_NO_STARTTLS"
    assert "STARTTLS" in (outcome.error_fr or "") and "aucun identifiant" in (
        outcome.error_fr or ""
    )
    assert not auth_lines(smtp_hidden_starttls), smtp_hidden_starttls.commands
    assert not any(SMTP_PASSWORD in c for c in smtp_hidden_starttls.commands)
    assert not smtp_hidden_starttls.received
    assert state(ctx, lot_id) is LotState.SIGNED
    delivery = SqliteOutbox(ctx.store).delivery(lot_id)
    assert delivery is not None and delivery.attempts == 1 and delivery.next_attempt
    assert datetime.fromisoformat(delivery.next_attempt) >= before + timedelta(minutes=1)


async def test_untrusted_certificate_is_refused_in_words(
    sending_box: SendingBox, smtp_implicit: SmtpServer
) -> None:
    ctx = sending_box.ctx
    configure_smtp(ctx, smtp_implicit, None)  # no test CA: the system's CAs do not know it
    [lot_id] = sign_lots(ctx, sending_box.pki, [1])
    outcome = await service(ctx).send_pending("p1")
    assert outcome.error_code == "SMTP_CERT"
    assert "certificat du serveur non vérifié" in (outcome.error_fr or "")
    assert not smtp_implicit.commands and not smtp_implicit.received
    assert state(ctx, lot_id) is LotState.SIGNED
    assert "certificat du serveur non vérifié" in service(ctx).status("p1").fr


async def test_tls_1_1_server_is_refused(
    sending_box: SendingBox, tls11_port: int, tls_ca: TlsCA
) -> None:
    assert speaks_tls11(tls11_port) == "TLSv1.1"
    ctx = sending_box.ctx
    configure_smtp(ctx, None, tls_ca, tls="implicit", port=tls11_port)
    [lot_id] = sign_lots(ctx, sending_box.pki, [1])
    outcome = await service(ctx).send_pending("p1")
    assert outcome.error_code == "SMTP_TLS_VERSION", outcome.error_en
    assert "TLS trop ancien" in (outcome.error_fr or "")
    assert state(ctx, lot_id) is LotState.SIGNED


async def test_wrong_password_says_credentials_and_never_shows_the_password(
    sending_box: SendingBox, smtp_implicit: SmtpServer, tls_ca: TlsCA
) -> None:
    ctx = sending_box.ctx
    wrong = "WRONG-sentinel-9f3c1"
    configure_smtp(ctx, smtp_implicit, tls_ca, password=wrong)
    [lot_id] = sign_lots(ctx, sending_box.pki, [1])
    outcome = await service(ctx).send_pending("p1")
    assert outcome.error_code == "SMTP_AUTH"
    assert "identifiants refusés" in (outcome.error_fr or "")
    assert state(ctx, lot_id) is LotState.SIGNED
    for entry in ctx.journal.entries():
        assert wrong not in str(entry.details)
    assert wrong not in repr(service(ctx).smtp_settings("p1"))
    assert wrong not in (outcome.error_fr or "") + (outcome.error_en or "")


async def test_offline_then_retry_sends_the_same_bytes(
    sending_box: SendingBox, tls_ca: TlsCA
) -> None:
    ctx = sending_box.ctx
    port = free_tcp_port()  # nothing listens there yet
    configure_smtp(ctx, None, tls_ca, tls="implicit", port=port)
    [lot_id] = sign_lots(ctx, sending_box.pki, [1])
    clock = FixedClock(TEST_NOW)
    svc = service(ctx, clock)
    outcome = await svc.send_pending("p1")
    assert outcome.error_code == "SMTP_NETWORK" and outcome.waiting == (lot_id,)
    assert state(ctx, lot_id) is LotState.SIGNED
    delivery = SqliteOutbox(ctx.store).delivery(lot_id)
    assert delivery is not None and delivery.attempts == 1
    assert delivery.next_attempt == (clock.when + timedelta(minutes=1)).isoformat(
        timespec="seconds"
    )
    status = svc.status("p1")
    assert status.state == "waiting" and "en attente de réseau" in status.fr
    assert status.next_attempt == clock.when.replace(microsecond=0) + timedelta(minutes=1)
    first_mail = frozen_mail(ctx, lot_id)
    first_id = ctx.lots.get(lot_id).message_id  # type: ignore[union-attr]

    server = SmtpServer(
        host="127.0.0.1",
        port=port,
        cert_pem=tls_ca.cert_pem,
        key_pem=tls_ca.key_pem,
        users={SMTP_USER: SMTP_PASSWORD},
        tls="implicit",
    )
    server.start()
    try:
        clock.when += timedelta(seconds=30)  # not due yet: nothing goes out
        assert (await svc.send_pending("p1")).sent == ()
        assert not server.commands
        clock.when += timedelta(minutes=1)
        outcome = await svc.send_pending("p1")
        assert outcome.sent == (lot_id,)
        [message] = server.wait_received(1)
    finally:
        server.stop()
    assert message.data == first_mail
    assert ctx.lots.get(lot_id).message_id == first_id  # type: ignore[union-attr]
    assert svc.status("p1").state == "idle"


async def test_crash_after_250_resends_once_the_identical_mail(
    sending_box: SendingBox, smtp_implicit: SmtpServer, tls_ca: TlsCA, pki: object
) -> None:
    ctx = sending_box.ctx
    configure_smtp(ctx, smtp_implicit, tls_ca)
    [lot_id] = sign_lots(ctx, sending_box.pki, [1])
    crashing = service(ctx, sender=CrashAfter250(SmtpSender(local_hostname=HOST, timeout=5)))
    with pytest.raises(SimulatedCrash):
        await crashing.send_pending("p1")
    assert state(ctx, lot_id) is LotState.SENDING, "the 250 was not committed"
    smtp_implicit.wait_received(1)
    ctx.close()
    # "Restart": a new process context on the same data dir.
    env = sending_box.env
    restarted = open_context(env.home, actor="test", env=env.env)
    try:
        sending_box.ctx = restarted
        outcome = await service(restarted).send_pending("p1")
        assert outcome.sent == (lot_id,)
        first, second = smtp_implicit.wait_received(2)
        assert first.data == second.data == frozen_mail(restarted, lot_id)
        ids = {email.message_from_bytes(m.data)["Message-ID"] for m in (first, second)}
        assert len(ids) == 1
        assert (await service(restarted).send_pending("p1")).sent == ()
        assert len(smtp_implicit.received) == 2, "resent at most once"
        assert state(restarted, lot_id) is LotState.SENT
    finally:
        restarted.close()
        sending_box.ctx = restarted


def test_counter_wraps_and_persists_across_processes(sending_box: SendingBox) -> None:
    ctx = sending_box.ctx
    outbox = SqliteOutbox(ctx.store)
    with ctx.store.write():
        ctx.store.conn.execute("INSERT INTO counters(name, value) VALUES ('compostage', 99998)")
    assert outbox.take_counter("compostage") == 99998
    code = (
        "import sys; from pathlib import Path; from balise.app.context import open_context;"
        "from balise.adapters.outbox import SqliteOutbox;"
        "c = open_context(Path(sys.argv[1]), actor='t');"
        "print(SqliteOutbox(c.store).take_counter('compostage')); c.close()"
    )
    env = {**os.environ, **sending_box.env.env}
    values = [
        subprocess.run(
            [sys.executable, "-c", code, str(sending_box.env.home)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=True,
        ).stdout.strip()
        for _ in range(2)
    ]
    assert values == ["99999", "0"]
    assert outbox.take_counter("compostage") == 1


async def test_prepared_lots_carry_the_wrapped_counter(
    sending_box: SendingBox, smtp_implicit: SmtpServer, tls_ca: TlsCA
) -> None:
    ctx = sending_box.ctx
    configure_smtp(ctx, smtp_implicit, tls_ca)
    with ctx.store.write():
        ctx.store.conn.execute("INSERT INTO counters(name, value) VALUES ('compostage', 99999)")
    ids = sign_lots(ctx, sending_box.pki, [1, 2])
    svc = service(ctx)
    for lot_id in ids:
        svc.prepare(lot_id)
    suffixes = [ctx.lots.get(i).compostage[14:] for i in ids]  # type: ignore[union-attr,index]
    assert suffixes == ["99999", "00000"]
    assert (await svc.send_pending("p1")).sent == tuple(ids)


async def test_cli_send_and_resend_of_an_overdue_lot(
    sending_box: SendingBox, smtp_implicit: SmtpServer, tls_ca: TlsCA
) -> None:
    ctx = sending_box.ctx
    configure_smtp(ctx, smtp_implicit, tls_ca)
    [old] = sign_lots(ctx, sending_box.pki, [1])
    # Lot "old" was sent five days ago (ARL overdue after 3 days by default).
    past = FixedClock(TEST_NOW - timedelta(days=5))
    assert (await service(ctx, past).send_pending("p1")).sent == (old,)
    [fresh] = sign_lots(ctx, sending_box.pki, [2])
    ctx.close()
    env = sending_box.env
    # asyncio.run() in the command: the TLS socket must be closed before its loop ends.
    done = env.run("send", "--profile", "p1", env=dict(env.env, PYTHONWARNINGS="always"))
    assert done.returncode == 0, done.stderr
    assert "ResourceWarning" not in done.stderr
    assert "1 lot(s) envoyé(s)" in done.stdout
    assert len(smtp_implicit.wait_received(2)) == 2
    refused = env.run("lots", "resend", str(fresh))
    assert refused.returncode == 1 and "pas encore en retard" in refused.stderr
    done = env.run("lots", "resend", str(old))
    assert done.returncode == 0, done.stderr
    assert "renvoi demandé" in done.stdout
    received = smtp_implicit.wait_received(3)
    assert received[2].data == received[0].data
    again = open_context(env.home, actor="test", env=env.env)
    try:
        sending_box.ctx = again
        assert state(again, old) is LotState.SENT
        history = [str(e.details) for e in again.journal.entries() if e.subject == f"lot:{old}"]
        assert any("renvoi explicite" in d for d in history)
    finally:
        again.close()
    assert env.run("send").stdout.strip() == "p1 : rien à envoyer"


async def test_one_refused_message_does_not_stop_the_session(
    sending_box: SendingBox, tls_ca: TlsCA
) -> None:
    seen: list[int] = []

    def refuse_second(_message: object) -> None:
        seen.append(1)
        if len(seen) == 2:
            raise RuntimeError("organism mailbox full")

    server = SmtpServer(
        host="127.0.0.1",
        port=free_tcp_port(),
        cert_pem=tls_ca.cert_pem,
        key_pem=tls_ca.key_pem,
        users={SMTP_USER: SMTP_PASSWORD},
        tls="implicit",
        handler_hook=refuse_second,
    )
    server.start()
    try:
        ctx = sending_box.ctx
        configure_smtp(ctx, server, tls_ca)
        ids = sign_lots(ctx, sending_box.pki, [1, 2, 3])
        outcome = await service(ctx).send_pending("p1")
    finally:
        server.stop()
    assert outcome.sent == (ids[0], ids[2]) and outcome.waiting == (ids[1],)
    assert outcome.error_code == "SMTP_REFUSED" and "451" in (outcome.error_fr or "")
    assert ehlo_count(server) == 1
    assert [state(ctx, i) for i in ids] == [LotState.SENT, LotState.SIGNED, LotState.SENT]
