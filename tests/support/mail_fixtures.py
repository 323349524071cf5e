"""Fixtures for the real mail servers: a trustme test CA, a private Dovecot POP3 server and aiosmtpd
SMTP servers (implicit TLS, STARTTLS, and a trap hiding STARTTLS), all on loopback.

Every server is function-scoped, on free ports picked at run time, and stopped at teardown.
Dovecot costs ~1.3 s per test (its master waits a fixed second when stopping); SMTP ~30 ms.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from balise.sim.dovecot import DovecotServer
from balise.sim.netutil import free_tcp_port
from balise.sim.smtpd import SmtpServer, TlsMode

POP3_USER = "bal1"
POP3_PASSWORD = "pop-secret-1"
SMTP_USER = "bal1@oct.balise.test"
SMTP_PASSWORD = "smtp-secret-1"
# Both addresses: Dovecot trusts 127.0.0.1 -> 127.0.0.1 as secure, 127.0.0.2 shows the real policy.
LOOPBACKS = ("127.0.0.1", "127.0.0.2")
SERVER_NAMES = ("localhost", *LOOPBACKS)


@dataclass(frozen=True, slots=True)
class TlsCA:
    """The session's test CA and one server certificate for localhost, 127.0.0.1 and 127.0.0.2."""

    ca: trustme.CA
    ca_pem: Path
    cert_pem: Path
    key_pem: Path

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context trusting only this CA (hostname checked, TLS >= 1.2)."""
        context = ssl.create_default_context(cafile=str(self.ca_pem))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsCA:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA(organization_name="Balise test CA")
    server = ca.issue_cert(*SERVER_NAMES)
    ca_pem = directory / "ca.pem"
    cert_pem = directory / "server.pem"
    key_pem = directory / "server.key"
    ca.cert_pem.write_to_path(str(ca_pem))
    server.cert_chain_pems[0].write_to_path(str(cert_pem))
    server.private_key_pem.write_to_path(str(key_pem))
    return TlsCA(ca=ca, ca_pem=ca_pem, cert_pem=cert_pem, key_pem=key_pem)


def running_dovecot(folder: Path, tls_ca: TlsCA, users: dict[str, str]) -> Iterator[DovecotServer]:
    """A private Dovecot in ``folder`` serving ``users`` (name -> password) over POP3 and POP3S
    on both LOOPBACKS, with the certificate of ``tls_ca``; stopped when the fixture ends."""
    server = DovecotServer(
        folder,
        cert_pem=tls_ca.cert_pem,
        key_pem=tls_ca.key_pem,
        users=users,
        pop3_port=free_tcp_port(LOOPBACKS),
        pop3s_port=free_tcp_port(LOOPBACKS),
        listen=LOOPBACKS,
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def dovecot(tmp_path: Path, tls_ca: TlsCA) -> Iterator[DovecotServer]:
    """A running private Dovecot with mailbox POP3_USER / POP3_PASSWORD, on both LOOPBACKS."""
    yield from running_dovecot(tmp_path / "dovecot", tls_ca, {POP3_USER: POP3_PASSWORD})


def _smtp_server(tls_ca: TlsCA, tls: TlsMode) -> Iterator[SmtpServer]:
    server = SmtpServer(
        host="127.0.0.1",
        port=free_tcp_port(),
        cert_pem=tls_ca.cert_pem,
        key_pem=tls_ca.key_pem,
        users={SMTP_USER: SMTP_PASSWORD},
        tls=tls,
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_implicit(tls_ca: TlsCA) -> Iterator[SmtpServer]:
    """SMTP with TLS from the first byte (port 465 style) and AUTH; user SMTP_USER."""
    yield from _smtp_server(tls_ca, "implicit")


@pytest.fixture
def smtp_starttls(tls_ca: TlsCA) -> Iterator[SmtpServer]:
    """SMTP requiring STARTTLS before anything else, AUTH only after it; user SMTP_USER."""
    yield from _smtp_server(tls_ca, "starttls")


@pytest.fixture
def smtp_hidden_starttls(tls_ca: TlsCA) -> Iterator[SmtpServer]:
    """Trap server: no STARTTLS offered, AUTH offered in clear. A safe client must not log in."""
    yield from _smtp_server(tls_ca, "hidden-starttls")
