"""Proof that the mail test servers are the real thing: Dovecot serves POP3 only over verified TLS
(off the trusted 127.0.0.1 path), and the aiosmtpd servers take mail only after TLS + AUTH."""

from __future__ import annotations

import contextlib
import poplib
import ssl
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from balise.sim.dovecot import DovecotServer
from balise.sim.netutil import free_tcp_port
from balise.sim.smtpd import Received, SmtpServer
from tests.support.mail_fixtures import (
    POP3_PASSWORD,
    POP3_USER,
    SMTP_PASSWORD,
    SMTP_USER,
    TlsCA,
)

pytestmark = pytest.mark.mail

RAW = (
    b"From: oct@oct.balise.test\r\n"
    b"To: bal1@balise.test\r\n"
    b"Subject: ARL 000123\r\n"
    b"\r\n"
    b"Lot 000123 accepte.\r\n"
)
TIMEOUT = 5.0


def _login(client: poplib.POP3, password: str = POP3_PASSWORD) -> None:
    client.user(POP3_USER)
    client.pass_(password)


def _untrusting_context() -> ssl.SSLContext:
    """A verifying context with the system CAs only: the test CA is not among them."""
    return ssl.create_default_context()


def _message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = SMTP_USER
    message["To"] = "lots@oct.balise.test"
    message["Subject"] = "IR-FSE lot 000123"
    message.set_content("lot\n.\nfin\n")
    return message


# --- POP3: Dovecot ---------------------------------------------------------------------------


def test_pop3s_retr_then_dele_quit_empties_the_mailbox(
    dovecot: DovecotServer, tls_ca: TlsCA
) -> None:
    dovecot.deliver(POP3_USER, RAW)
    assert dovecot.maildir_count(POP3_USER) == 1

    client = poplib.POP3_SSL(
        "127.0.0.2", dovecot.pop3s_port, context=tls_ca.client_context(), timeout=TIMEOUT
    )
    _login(client)
    _, listing, _ = client.uidl()
    assert len(listing) == 1
    _, lines, _ = client.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == RAW
    client.dele(1)
    # DELE only marks: the message is still there until QUIT commits.
    assert dovecot.maildir_count(POP3_USER) == 1
    client.quit()
    assert dovecot.maildir_count(POP3_USER) == 0


def test_pop3_stls_then_login_reads_the_message(dovecot: DovecotServer, tls_ca: TlsCA) -> None:
    dovecot.deliver(POP3_USER, RAW)
    client = poplib.POP3("127.0.0.2", dovecot.pop3_port, timeout=TIMEOUT)
    try:
        client.stls(tls_ca.client_context())
        _login(client)
        count, _size = client.stat()
        assert count == 1
        _, lines, _ = client.retr(1)
        assert b"Subject: ARL 000123" in lines
    finally:
        client.quit()
    # No DELE: the message stays.
    assert dovecot.maildir_count(POP3_USER) == 1


def test_pop3_plaintext_login_and_wrong_password_are_refused(
    dovecot: DovecotServer, tls_ca: TlsCA
) -> None:
    dovecot.deliver(POP3_USER, RAW)
    # 127.0.0.2: Dovecot would treat 127.0.0.1 -> 127.0.0.1 as secure and accept plaintext.
    client = poplib.POP3("127.0.0.2", dovecot.pop3_port, timeout=TIMEOUT)
    try:
        assert "STLS" in client.capa()
        with pytest.raises(poplib.error_proto, match="Plaintext authentication disallowed"):
            _login(client)
    finally:
        client.quit()

    secure = poplib.POP3_SSL(
        "127.0.0.2", dovecot.pop3s_port, context=tls_ca.client_context(), timeout=TIMEOUT
    )
    try:
        with pytest.raises(poplib.error_proto, match="Authentication failed"):
            _login(secure, password="not-the-password")
    finally:
        secure.quit()
    assert dovecot.maildir_count(POP3_USER) == 1


@pytest.mark.parametrize("path", ["pop3s", "stls"])
def test_pop3_refuses_a_certificate_from_an_unknown_ca(dovecot: DovecotServer, path: str) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        if path == "pop3s":
            poplib.POP3_SSL(
                "127.0.0.2", dovecot.pop3s_port, context=_untrusting_context(), timeout=TIMEOUT
            )
        else:
            client = poplib.POP3("127.0.0.2", dovecot.pop3_port, timeout=TIMEOUT)
            try:
                client.stls(_untrusting_context())
            finally:
                # poplib trap: a failed stls() leaves a detached socket; close() then raises EBADF.
                with contextlib.suppress(OSError):
                    client.close()


def test_dovecot_add_user_while_running(dovecot: DovecotServer, tls_ca: TlsCA) -> None:
    dovecot.add_user("bal2", "second-secret")
    dovecot.deliver("bal2", RAW)
    client = poplib.POP3_SSL(
        "127.0.0.1", dovecot.pop3s_port, context=tls_ca.client_context(), timeout=TIMEOUT
    )
    try:
        client.user("bal2")
        client.pass_("second-secret")
        assert client.stat()[0] == 1
    finally:
        client.quit()
    assert (dovecot.maildir_count("bal2"), dovecot.maildir_count(POP3_USER)) == (1, 0)


def test_dovecot_stop_frees_the_ports_and_is_idempotent(tmp_path: Path, tls_ca: TlsCA) -> None:
    ports = (free_tcp_port(("127.0.0.1", "127.0.0.2")), free_tcp_port(("127.0.0.1", "127.0.0.2")))
    server = DovecotServer(
        tmp_path / "d",
        cert_pem=tls_ca.cert_pem,
        key_pem=tls_ca.key_pem,
        users={POP3_USER: POP3_PASSWORD},
        pop3_port=ports[0],
        pop3s_port=ports[1],
    )
    server.stop()  # before start: nothing to do
    try:
        server.start()
        assert server.running
    finally:
        server.stop()
    server.stop()
    assert not server.running
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            poplib.POP3("127.0.0.2", port, timeout=TIMEOUT)


# --- SMTP: aiosmtpd --------------------------------------------------------------------------


async def test_smtp_implicit_tls_with_login_delivers(
    smtp_implicit: SmtpServer, tls_ca: TlsCA
) -> None:
    await aiosmtplib.send(
        _message(),
        hostname="127.0.0.1",
        port=smtp_implicit.port,
        use_tls=True,
        tls_context=tls_ca.client_context(),
        username=SMTP_USER,
        password=SMTP_PASSWORD,
        timeout=TIMEOUT,
    )
    [received] = smtp_implicit.received
    assert received.mail_from == SMTP_USER
    assert received.rcpt_tos == ("lots@oct.balise.test",)
    assert received.authenticated_as == SMTP_USER
    assert b"Subject: IR-FSE lot 000123" in received.data
    assert b"\r\nlot\r\n.\r\nfin\r\n" in received.data  # dot-stuffing undone, line kept
    assert any(c.startswith("AUTH ") for c in smtp_implicit.commands)
    assert smtp_implicit.clear_commands == []


async def test_smtp_starttls_with_login_delivers_and_auth_only_inside_tls(
    smtp_starttls: SmtpServer, tls_ca: TlsCA
) -> None:
    await aiosmtplib.send(
        _message(),
        hostname="127.0.0.1",
        port=smtp_starttls.port,
        start_tls=True,
        tls_context=tls_ca.client_context(),
        username=SMTP_USER,
        password=SMTP_PASSWORD,
        timeout=TIMEOUT,
    )
    [received] = smtp_starttls.received
    assert received.authenticated_as == SMTP_USER
    assert [c.split()[0] for c in smtp_starttls.clear_commands] == ["EHLO", "STARTTLS"]
    assert any(c.startswith("AUTH ") for c in smtp_starttls.commands)


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
async def test_smtp_client_refuses_a_certificate_from_an_unknown_ca(
    mode: str, smtp_implicit: SmtpServer, smtp_starttls: SmtpServer
) -> None:
    server = smtp_implicit if mode == "implicit" else smtp_starttls
    with pytest.raises((ssl.SSLCertVerificationError, aiosmtplib.SMTPConnectError)) as caught:
        await aiosmtplib.send(
            _message(),
            hostname="127.0.0.1",
            port=server.port,
            use_tls=mode == "implicit",
            start_tls=mode == "starttls",
            tls_context=_untrusting_context(),
            username=SMTP_USER,
            password=SMTP_PASSWORD,
            timeout=TIMEOUT,
        )
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert server.received == []
    assert not any(c.startswith("AUTH") for c in server.commands)


async def test_smtp_wrong_password_and_mail_without_auth_are_refused(
    smtp_implicit: SmtpServer, tls_ca: TlsCA
) -> None:
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
        await aiosmtplib.send(
            _message(),
            hostname="127.0.0.1",
            port=smtp_implicit.port,
            use_tls=True,
            tls_context=tls_ca.client_context(),
            username=SMTP_USER,
            password="not-the-password",
            timeout=TIMEOUT,
        )
    assert caught.value.code == 535
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await aiosmtplib.send(
            _message(),
            hostname="127.0.0.1",
            port=smtp_implicit.port,
            use_tls=True,
            tls_context=tls_ca.client_context(),
            timeout=TIMEOUT,
        )
    assert refused.value.code == 530
    assert smtp_implicit.received == []


async def test_client_requiring_starttls_sends_no_auth_to_a_server_hiding_it(
    smtp_hidden_starttls: SmtpServer, tls_ca: TlsCA
) -> None:
    with pytest.raises(aiosmtplib.SMTPException, match="STARTTLS"):
        await aiosmtplib.send(
            _message(),
            hostname="127.0.0.1",
            port=smtp_hidden_starttls.port,
            start_tls=True,
            tls_context=tls_ca.client_context(),
            username=SMTP_USER,
            password=SMTP_PASSWORD,
            timeout=TIMEOUT,
        )
    # The server did hear the client (so the recorder works) but never an AUTH line.
    assert smtp_hidden_starttls.commands[:1] == ["EHLO localhost"]
    assert not any(c.upper().startswith("AUTH") for c in smtp_hidden_starttls.commands)
    assert smtp_hidden_starttls.received == []


async def test_hidden_starttls_server_records_auth_sent_in_clear(
    smtp_hidden_starttls: SmtpServer, tls_ca: TlsCA
) -> None:
    """Control for the test above: a client that does not insist on STARTTLS (aiosmtplib with
    start_tls=False) logs in over plain TCP, and the recorder shows that AUTH line in clear."""
    await aiosmtplib.send(
        _message(),
        hostname="127.0.0.1",
        port=smtp_hidden_starttls.port,
        start_tls=False,
        username=SMTP_USER,
        password=SMTP_PASSWORD,
        timeout=TIMEOUT,
    )
    assert any(c.startswith("AUTH ") for c in smtp_hidden_starttls.clear_commands)
    assert smtp_hidden_starttls.received[0].authenticated_as == SMTP_USER


async def test_smtp_handler_hook_sees_each_message_and_its_failure_is_a_451(
    tls_ca: TlsCA,
) -> None:
    seen: list[Received] = []

    def hook(message: Received) -> None:
        seen.append(message)
        if len(seen) == 2:
            raise RuntimeError("simulated OCT failure")

    server = SmtpServer(
        host="127.0.0.1",
        port=free_tcp_port(),
        cert_pem=tls_ca.cert_pem,
        key_pem=tls_ca.key_pem,
        users={SMTP_USER: SMTP_PASSWORD},
        tls="implicit",
        handler_hook=hook,
    )
    server.start()
    try:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=server.port,
            use_tls=True,
            tls_context=tls_ca.client_context(),
            username=SMTP_USER,
            password=SMTP_PASSWORD,
            timeout=TIMEOUT,
        )
        async with client:
            await client.send_message(_message())
            with pytest.raises(aiosmtplib.SMTPDataError) as caught:
                await client.send_message(_message())
        assert caught.value.code == 451
        assert len(server.wait_received(2)) == 2
        assert seen == server.received
        assert [type(e) for e in server.hook_errors] == [RuntimeError]
    finally:
        server.stop()
