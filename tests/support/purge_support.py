"""Purge and tracking test support: sent lots, mailbox settings pointing at a private Dovecot with
several mailboxes, and a trap POP3 server that hides STLS (records every command it gets)."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

import pytest

from balise.adapters.outbox import SqliteOutbox
from balise.app.context import Context
from balise.domain.lotstate import LotState
from balise.domain.returns import InvoicePayment, NoemieLot, PaymentState, Share
from balise.sim.dovecot import DovecotServer
from balise.sim.netutil import free_tcp_port
from balise.sim.returnfile import build_arl, build_noemie
from balise.sim.returnmail import return_mail
from tests.support.box import EMITTER
from tests.support.clock import TEST_NOW, TEST_TODAY
from tests.support.lot_corpus import SAMPLES, valid_lot
from tests.support.mail_corpus import ORGANISM_NUMBER
from tests.support.mail_fixtures import LOOPBACKS, TlsCA

MAILBOXES = {"bal1": "pop-secret-1", "bal2": "pop-secret-2"}
EMITTER_2 = "00000087654321"
SENTINEL_PASSWORD = "pop-secret-1"


def make_signed(ctx: Context, lot_id: int, *, signed_cms: bytes, envelope: bytes) -> None:
    """READY → SIGNED through LotTransitions, with these bytes as its signature and envelope."""
    ctx.transitions().move(
        lot_id,
        LotState.READY,
        LotState.SIGNED,
        signer="test",
        signed_at=(TEST_NOW - timedelta(minutes=2)).isoformat(),
        signed_cms=signed_cms,
        envelope=envelope,
    )


def make_sent(
    ctx: Context,
    lot_id: int,
    *,
    signed_cms: bytes = b"dummy-cms",
    envelope: bytes = b"dummy-envelope",
    mail: bytes | None = None,
) -> None:
    """READY → SIGNED → SENDING → SENT through LotTransitions, with dummy signature bytes unless
    given (and the lot's frozen mail when given, as the sending service stores it)."""
    moves = ctx.transitions()
    make_signed(ctx, lot_id, signed_cms=signed_cms, envelope=envelope)
    if mail is not None:
        SqliteOutbox(ctx.store).store_mail(lot_id, mail)
    moves.move(
        lot_id,
        LotState.SIGNED,
        LotState.SENDING,
        compostage="000000001",
        message_id=f"<lot{lot_id}@balise.test>",
        subject="IRIS",
    )
    moves.move(
        lot_id,
        LotState.SENDING,
        LotState.SENT,
        sent_at=(TEST_NOW - timedelta(minutes=1)).isoformat(),
    )


def import_lot(ctx: Context, data: bytes, name: str) -> int:
    outcome = ctx.intake().import_bytes(name, data, f"test:{name}")
    assert outcome.accepted and outcome.lot_id is not None, outcome.problems
    return outcome.lot_id


def sample_lot_sent(ctx: Context) -> int:
    """The golden samples' lot 007 of 22/11/2026 (valid.lot), made SENT."""
    lot_id = import_lot(ctx, (SAMPLES / "valid.lot").read_bytes(), "valid.lot")
    make_sent(ctx, lot_id)
    return lot_id


def fresh_lot(ctx: Context, number: int, *, emitter: str | None = None, sent: bool = True) -> int:
    """A lot dated yesterday (accepted by today's intake), optionally made SENT."""
    kwargs = {} if emitter is None else {"emitter": emitter}
    data = valid_lot(TEST_TODAY, lot_number=number, **kwargs)  # type: ignore[arg-type]
    lot_id = import_lot(ctx, data, f"lot{number}-{emitter or 'p1'}.lot")
    if sent:
        make_sent(ctx, lot_id)
    return lot_id


def yesterday() -> date:
    return TEST_TODAY - timedelta(days=1)


def arl_mail(number: int) -> bytes:
    """The ARL+ of lot ``number`` (sent yesterday), in its mail as the organism sends it."""
    payload = build_arl(
        "CP", ORGANISM_NUMBER, EMITTER, number, yesterday(), True, 3, yesterday(), flow_type="T"
    )
    return return_mail(payload, "IRISTEST/ARL/Z", message_id=f"<arl{number}@422.01.rss.fr>")


def noemie_mail(number: int) -> bytes:
    """The NOEMIE of lot ``number`` paying its two invoices, in its mail as the organism sends it."""
    invoices = tuple(
        InvoicePayment(invoice, number, yesterday(), "F", Share(asked, PaymentState.PAID, asked))
        for invoice, asked in ((100000, 4000), (100001, 3000))
    )
    payload = build_noemie(
        "CP",
        ORGANISM_NUMBER,
        EMITTER,
        TEST_TODAY,
        (NoemieLot(number, yesterday(), invoices),),
        transfer_reference=f"VIR {number:06d}",
        flow_type="T",
    )
    return return_mail(payload, "IRISTEST/NOEMIE/Z", message_id=f"<noe{number}@422.01.rss.fr>")


def configure_pop3(
    ctx: Context,
    server: DovecotServer,
    tls_ca: TlsCA,
    *,
    profile: str = "p1",
    user: str = "bal1",
    tls: str = "implicit",
    host: str = "127.0.0.1",
) -> None:
    p = ctx.params
    p.set("ca_bundle", tls_ca.ca_pem.read_text())
    p.set("pop3.host", host, profile=profile)
    p.set(
        "pop3.port",
        str(server.pop3s_port if tls == "implicit" else server.pop3_port),
        profile=profile,
    )
    p.set("pop3.tls", tls, profile=profile)
    p.set("pop3.user", user, profile=profile)
    p.set("pop3.password", MAILBOXES[user], profile=profile)


def configure_second_practitioner(ctx: Context, pki: object) -> None:
    p = ctx.params
    p.set("display_name", "Dr Second", profile="p2")
    p.set("emitter_number", EMITTER_2, profile="p2")
    p.set("bal_address", "abc123456@bal.example.net", profile="p2")


@pytest.fixture(scope="module")
def pop3_server(tmp_path_factory: pytest.TempPathFactory, tls_ca: TlsCA) -> Iterator[DovecotServer]:
    """One private Dovecot per test module with mailboxes bal1 and bal2 (emptied per test by
    :func:`mailboxes`)."""
    directory = tmp_path_factory.mktemp("dove")
    server = DovecotServer(
        directory / "d",
        cert_pem=tls_ca.cert_pem,
        key_pem=tls_ca.key_pem,
        users=MAILBOXES,
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
def mailboxes(pop3_server: DovecotServer) -> DovecotServer:
    """The module's Dovecot with every mailbox empty."""
    for user in MAILBOXES:
        maildir = pop3_server.maildir(user)
        for sub in ("new", "cur"):
            for entry in (maildir / sub).iterdir():
                entry.unlink()
        for extra in maildir.glob("dovecot*"):
            if extra.is_dir():
                shutil.rmtree(extra)
            else:
                extra.unlink()
    return pop3_server


@dataclass
class TrapPop3:
    """A POP3 server that never offers STLS and accepts USER/PASS in clear (a downgrade trap)."""

    port: int
    commands: list[bytes] = field(default_factory=list)


@pytest.fixture
def pop3_no_stls() -> Iterator[TrapPop3]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.2)
    trap = TrapPop3(listener.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                conn.sendall(b"+OK trap ready\r\n")
                reader = conn.makefile("rb")
                for _ in range(20):
                    try:
                        line = reader.readline(1024)
                    except OSError:
                        break
                    if not line:
                        break
                    trap.commands.append(line.strip())
                    if line.upper().startswith(b"CAPA"):
                        conn.sendall(b"+OK\r\nUSER\r\nUIDL\r\n.\r\n")
                    elif line.upper().startswith(b"QUIT"):
                        conn.sendall(b"+OK bye\r\n")
                        break
                    else:
                        conn.sendall(b"+OK\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield trap
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
