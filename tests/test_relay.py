"""The card-authenticated relay on the CI host (Debian 12), without the card's TLS provider.

FAKE, said here: Debian 12 has no pkcs11-provider, so in this module the client key of the TLS
channel is the test practitioner's authentication key held in a FILE — it stands in for the card
(the card's own path, SoftHSM2 + pkcs11-provider in a Debian 13 chroot, is
tests/image/test_relay.py) — and the card's login and presence are a small object the test
controls. Everything else is real: a loopback HTTPS service (http.server behind ssl) that
requires a client certificate of the test IGC-Santé chain and checks its CRL, the relay's unix
socket with its peer-credentials check, the practice software's HTTP over that socket."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from textual.app import App

from balise.adapters import card_tls
from balise.adapters.clock import FixedClock
from balise.adapters.crl_store import FileCrlStore
from balise.adapters.relay_server import RelayServer
from balise.app.relay import kept_crls_file, serve_relay
from balise.app.relay_main import (
    RelayLauncher,
    close_on_signals,
    read_pin,
    read_status,
    status_json,
)
from balise.domain.crl import StoredCrl
from balise.domain.errors import ValidationError
from balise.domain.journal import JsonValue, canonical_details
from balise.domain.relay import AllowedService, HttpHead, parse_allow_list
from balise.services.crl import issuer_key
from balise.services.relay import (
    CARD_CHECK_S,
    JOURNAL_KIND,
    REQUEST_FIELDS,
    REQUESTS_PER_ENTRY,
    ChannelState,
    Relay,
    error_answer,
    journaled_requests,
)
from balise.services.settings import relay_settings
from balise.sim.pki import Issued, TestPKI, build_pki
from balise.sim.softhsm import SoftHSM
from balise.ui.screens.channel import ChannelScreen
from tests.support.balise_env import BaliseEnv
from tests.support.clock import TEST_NOW
from tests.support.crl_support import make_crl

SECRET_BODY = b"NIR=1850575123456;MUTUELLE-CONFIDENTIELLE"
MIB = 1024 * 1024
LONG = 3 * MIB
CHUNKED_LONG = 200_000


def _long_body(start: int, end: int) -> bytes:
    """Bytes start..end of a long answer whose every byte says where it is."""
    return bytes((i * 7 + i // 251) % 256 for i in range(start, end))


# --- the online service: loopback HTTPS requiring a client certificate, CRL checked ---------


@dataclass
class Seen:
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)  # (path, CN, body)
    headers: list[list[tuple[str, str]]] = field(default_factory=list)  # each request's, in order
    release: threading.Event = field(default_factory=threading.Event)  # /long's second part
    connections: set[int] = field(default_factory=set)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        peer = self.connection.getpeercert()
        cn = dict(x[0] for x in peer["subject"]).get("commonName", "") if peer else ""
        seen: Seen = self.server.seen  # type: ignore[attr-defined]
        seen.requests.append((self.path, cn, body))
        seen.headers.append(list(self.headers.items()))
        seen.connections.add(id(self.connection))
        if self.path.endswith(("/long", "/cut")):  # 3 MiB in two parts / 1 of 2 MiB, then gone
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"
                % (LONG if self.path.endswith("/long") else 2 * MIB)
            )
            self.wfile.write(_long_body(0, MIB))
            if self.path.endswith("/cut"):
                self.close_connection = True
                return
            seen.release.wait(10)  # until the practice software got the first part
            self.wfile.write(_long_body(MIB, LONG))
            return
        if self.path.endswith(("/chunked", "/chunked-long")):  # its length unknown when it starts
            self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            step = 10_000 if self.path.endswith("-long") else 30
            for start in range(0, CHUNKED_LONG if step == 10_000 else 30, step):
                piece = _long_body(start, start + step)
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\nX-Trailer: fin\r\n\r\n")
            return
        if self.path.endswith("/until-close"):  # no length: the body ends with the connection
            self.wfile.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nfin de flux")
            self.close_connection = True
            return
        if self.path.endswith("/two-lengths"):  # a broken service: its framing is ambiguous
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"
            )
            return
        answer = json.dumps({"path": self.path, "cn": cn, "got": len(body)}).encode()
        self.send_response(200 if not self.path.endswith("/missing") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Service", "visiodroits-test")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = _answer
    do_POST = _answer


@dataclass
class Service:
    port: int
    seen: Seen
    server: http.server.ThreadingHTTPServer


def _serve(pki: TestPKI, cert: Issued, crl_pem: bytes, tmp: Path) -> Iterator[Service]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert_pem, cert.key_pem)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(pki.chain_pem))
    crl_file = tmp / "service-crls.pem"
    crl_file.write_bytes(crl_pem)
    context.load_verify_locations(cafile=str(crl_file))
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    server.seen = Seen()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Service(server.server_address[1], server.seen, server)  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _crls(pki: TestPKI, revoked: list[x509.Certificate]) -> bytes:
    pem = b""
    for issuer, rev in ((pki.intermediate, revoked), (pki.root, [])):
        der = make_crl(
            issuer,
            this_update=TEST_NOW - timedelta(hours=1),
            next_update=TEST_NOW + timedelta(days=7),
            revoked=rev,
        )
        pem += x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)
    return pem


@pytest.fixture(scope="module")
def relay_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return build_pki(tmp_path_factory.mktemp("relay-pki"), now=TEST_NOW)


@pytest.fixture
def service(relay_pki: TestPKI, tmp_path: Path) -> Iterator[Service]:
    cert = relay_pki.issue_tls_server("service-ok", ["127.0.0.1"])
    yield from _serve(relay_pki, cert, _crls(relay_pki, []), tmp_path)


# --- the relay wired as the box wires it, the card's key from a file (the FAKE) -------------


class Journal:
    """The journal port in memory: what the relay writes, as the journal would keep it."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, dict[str, JsonValue]]] = []

    def append(
        self,
        kind: str,
        subject: str = "",
        details: Mapping[str, JsonValue] | None = None,
        *,
        actor: str | None = None,
    ) -> object:
        canonical_details(details)  # the journal's own refusal of secret-looking keys
        self.rows.append((kind, subject, dict(details or {})))
        return None

    def requests(self) -> list[dict[str, JsonValue]]:
        """The requests the entries list (here one entry each: the relay without the box's
        group commit)."""
        return [r for k, _s, d in self.rows if k == JOURNAL_KIND for r in journaled_requests(d)]


class Card:
    """FAKE for the card's login and presence (the card's own path is the image tier's)."""

    def __init__(self) -> None:
        self.present = True
        self.logged_out = False
        self.asked = 0  # how many times the relay asked whether the card is there

    def is_present(self) -> bool:
        self.asked += 1
        return self.present

    def close(self) -> None:
        self.logged_out = True


@dataclass
class Box:
    relay: Relay
    server: RelayServer
    socket_path: Path
    journal: Journal
    card: Card
    channels: list[card_tls.TlsChannel]
    ticks: list[float]


def _box(
    pki: TestPKI,
    tmp: Path,
    port: int,
    *,
    socket_dir: Path | None = None,
    server_crls: bytes | None = None,
) -> Iterator[Box]:
    practitioner = pki.practitioner.authentication
    chain = tmp / "card-chain.pem"
    chain.write_bytes(practitioner.cert_pem.read_bytes() + pki.intermediate.cert_pem.read_bytes())
    crl_file = None
    if server_crls is not None:
        crl_file = tmp / "relay-server-crls.pem"
        crl_file.write_bytes(server_crls)
    context = card_tls.card_context(
        roots_pem=[pki.root_pem.read_text()],
        cert_chain=chain,
        key=practitioner.key_pem,  # FAKE: the card's authentication key, from a file
        crl_file=crl_file,
    )
    services = parse_allow_list([f"visio=https://127.0.0.1:{port}/api"])
    channels: list[card_tls.TlsChannel] = []

    def channel_for(service: AllowedService) -> card_tls.TlsChannel:
        channels.append(card_tls.TlsChannel(context, service.host, service.port, timeout=10))
        return channels[-1]

    journal, card, ticks = Journal(), Card(), [0.0]
    relay = Relay(
        services=services,
        channel_for=channel_for,
        login=card,
        practitioner="Dr Jeanne TEST",
        journal=journal,
        clock=FixedClock(TEST_NOW),
        idle_seconds=600,
        card_present=card.is_present,
        monotonic=lambda: ticks[0],
    )
    path = (socket_dir or tmp) / "relay.sock"

    def journaled_first(
        head: HttpHead, body: bytes, send: Callable[[bytes], object]
    ) -> tuple[bytes, Callable[[], object], bool]:
        """Relay.respond, its journal entry appended before the answer is sent (the tests
        read the journal as soon as they have the answer)."""
        answer, journal_it, keep = relay.respond(head, body, send)
        journal_it()
        return answer, lambda: None, keep

    server = RelayServer(
        path,
        allowed_uids={os.getuid()},
        handler=journaled_first,
        refusal=error_answer,
        streams=True,
    )
    server.start()
    try:
        yield Box(relay, server, path, journal, card, channels, ticks)
    finally:
        server.stop()
        relay.close("stopped")


@pytest.fixture
def box(relay_pki: TestPKI, tmp_path: Path, service: Service) -> Iterator[Box]:
    yield from _box(relay_pki, tmp_path, service.port)


class PracticeSoftware:
    """The practice software's side: plain HTTP/1.1 over the relay's socket, kept alive."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")

    def send(self, method: str, path: str, body: bytes = b"", headers: str = "") -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: relay\r\n{headers}"
        if body or method == "POST":
            head += f"Content-Length: {len(body)}\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + body)
        lines = []
        length = 0
        while True:
            line = self.file.readline(65536)
            assert line, "the relay closed the connection"
            lines.append(line)
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
            if line == b"\r\n":
                break
        return b"".join(lines) + self.file.read(length)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def practice(box: Box) -> Iterator[PracticeSoftware]:
    client = PracticeSoftware(box.socket_path)
    yield client
    client.close()


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _body(answer: bytes) -> bytes:
    return answer.split(b"\r\n\r\n", 1)[1]


# --- the tests -----------------------------------------------------------------------------


def test_requests_reach_the_service_authenticated_on_one_kept_channel(
    box: Box, practice: PracticeSoftware, service: Service
) -> None:
    answers = [practice.send("POST", f"/visio/rights/{i}", b"x" * i) for i in range(1, 6)]
    answers.append(practice.send("GET", "/visio/rights/missing"))
    assert [_status(a) for a in answers] == [200] * 5 + [404]
    first = json.loads(_body(answers[0]))
    assert first == {"path": "/api/rights/1", "cn": "10001234567/Dr Jeanne TEST", "got": 1}
    # The service's answer unchanged: its own headers reach the practice software.
    assert b"X-Service: visiodroits-test\r\n" in answers[0]
    # Six requests, one TLS connection, one handshake (one card operation on the box).
    assert len(service.seen.connections) == 1
    assert [c.handshakes for c in box.channels] == [1]
    state = box.relay.state()
    assert (state.open, state.practitioner, state.requests, state.handshakes) == (
        True,
        "Dr Jeanne TEST",
        6,
        1,
    )


def test_a_service_not_on_the_allow_list_is_refused_and_never_reached(
    box: Box, practice: PracticeSoftware, service: Service
) -> None:
    answer = practice.send("GET", "/elsewhere/steal")
    assert _status(answer) == 403
    assert "liste des services autorisés" in _body(answer).decode()
    answer = practice.send("GET", "/visio/../admin")
    assert _status(answer) == 400
    assert service.seen.requests == []
    assert box.channels == []  # no TLS opened, the card not used
    assert [(r["service"], r["status"]) for r in box.journal.requests()] == [
        ("elsewhere", 403),
        ("visio", 400),
    ]


def test_journal_has_service_size_status_duration_never_a_body(
    box: Box, practice: PracticeSoftware
) -> None:
    practice.send("POST", "/visio/rights?nir=1850575123456", SECRET_BODY, "X-Secret: abc\r\n")
    (row,) = box.journal.requests()
    assert row["service"] == "visio"
    assert (row["method"], row["status"], row["answered_by"]) == ("POST", 200, "service")
    assert row["request_bytes"] == len(SECRET_BODY)
    assert isinstance(row["answer_bytes"], int) and row["answer_bytes"] > 0
    assert isinstance(row["duration_ms"], int)
    text = json.dumps(box.journal.rows)
    for secret in ("NIR=", "1850575123456", "MUTUELLE", "abc", "rights"):
        assert secret not in text


def test_every_request_of_a_session_is_in_the_boxs_journal_once_closed(
    relay_pki: TestPKI, tmp_path: Path, service: Service, balise_env: BaliseEnv
) -> None:
    """The box's own wiring (app.relay.serve_relay) on its real journal (SQLite): the requests
    are listed by one entry per commit window (not an entry and an fsync each), and every one of
    them is there once, in order, chained, once the practitioner closed the channel — service,
    method, sizes, status, duration, never a body."""
    ctx = balise_env.context("relay")
    practitioner = relay_pki.practitioner.authentication
    chain = tmp_path / "card-chain.pem"
    chain.write_bytes(
        practitioner.cert_pem.read_bytes() + relay_pki.intermediate.cert_pem.read_bytes()
    )
    context = card_tls.card_context(
        roots_pem=[relay_pki.root_pem.read_text()],
        cert_chain=chain,
        key=practitioner.key_pem,  # FAKE: the card's authentication key, from a file
    )
    card = Card()
    relay = serve_relay(
        services=parse_allow_list([f"visio=https://127.0.0.1:{service.port}/api"]),
        channel_for=lambda s: card_tls.TlsChannel(context, s.host, s.port, timeout=10),
        login=card,
        practitioner="Dr Jeanne TEST",
        journal=ctx.journal,
        clock=ctx.clock,
        idle_seconds=600,
        card_present=lambda: card.present,
        socket_path=tmp_path / "relay.sock",
        allowed_uids={os.getuid()},
    )
    try:
        client = PracticeSoftware(tmp_path / "relay.sock")
        try:
            statuses = [
                _status(client.send("POST", f"/visio/rights/{i}", SECRET_BODY)) for i in range(40)
            ]
            statuses.append(_status(client.send("GET", "/elsewhere/x")))
        finally:
            client.close()
    finally:
        relay.close("practitioner")
    try:
        assert statuses == [200] * 40 + [403]
        entries = list(ctx.journal.entries())
        assert entries[0].kind == "relay_open" and entries[-1].kind == "relay_close"
        listing = [e for e in entries if e.kind == JOURNAL_KIND]
        assert {(e.actor, e.subject) for e in listing} == {("relay", "Dr Jeanne TEST")}
        details = [json.loads(e.details) for e in listing]
        assert all(d["count"] == len(d["requests"]) <= REQUESTS_PER_ENTRY for d in details)
        assert all(d["fields"] == list(REQUEST_FIELDS) for d in details)
        rows = [r for d in details for r in journaled_requests(d)]
        assert len(rows) == 41  # each request once
        assert {
            (r["service"], r["method"], r["status"], r["request_bytes"], r["answered_by"])
            for r in rows[:40]
        } == {("visio", "POST", 200, len(SECRET_BODY), "service")}
        assert (rows[40]["service"], rows[40]["status"], rows[40]["answered_by"]) == (
            "elsewhere",
            403,
            "relay",
        )
        assert all(isinstance(r["duration_ms"], int) for r in rows)
        answered = [r["answer_bytes"] for r in rows[:40]]
        assert all(isinstance(size, int) and size > 0 for size in answered)
        for d in details:  # in order within each entry, timed from its first request
            after = [r[REQUEST_FIELDS.index("after_ms")] for r in d["requests"]]
            assert after[0] == 0 and after == sorted(after)
        assert json.loads(entries[-1].details)["requests"] == 40
        text = "".join(e.subject + e.details for e in entries)
        for secret in ("NIR=", "1850575123456", "MUTUELLE", "rights"):
            assert secret not in text
        assert ctx.journal.verify(full=True).ok
    finally:
        ctx.close()


def test_an_unregistered_client_is_refused_before_a_byte_is_read(
    relay_pki: TestPKI, tmp_path: Path, service: Service
) -> None:
    """A process of another account (the SSH-forwarded exchange account is the only one
    registered): even with the socket's mode opened to all, the kernel's peer credentials
    refuse it and nothing reaches the service."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as another account")
    with tempfile.TemporaryDirectory(prefix="balise-relay-") as shared:
        Path(shared).chmod(0o755)
        box_gen = _box(relay_pki, tmp_path, service.port, socket_dir=Path(shared))
        box = next(box_gen)
        try:
            box.socket_path.chmod(0o666)
            got = _as_nobody(box.socket_path)
            # Closed unanswered: seen as an empty read, a reset or a broken pipe.
            closed = {b"answer:", b"error:ConnectionResetError", b"error:BrokenPipeError"}
            assert got in closed, got
            assert service.seen.requests == []
            # The registered account still gets through the same socket.
            client = PracticeSoftware(box.socket_path)
            assert _status(client.send("GET", "/visio/x")) == 200
            client.close()
        finally:
            for _ in box_gen:
                pass


def _as_nobody(path: Path) -> bytes:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the other account's process
        os.close(read)
        result = b"?"
        try:
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(str(path))
            s.sendall(b"GET /visio/x HTTP/1.1\r\nHost: r\r\n\r\n")
            result = b"answer:" + s.recv(100)
        except OSError as exc:
            result = f"error:{type(exc).__name__}".encode()
        os.write(write, result)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        got = pipe.read()
    os.waitpid(pid, 0)
    return got


def test_a_service_with_a_wrong_certificate_is_refused(relay_pki: TestPKI, tmp_path: Path) -> None:
    other = build_pki(tmp_path / "other-pki", now=TEST_NOW)
    cert = other.issue_tls_server("impostor", ["127.0.0.1"])
    impostor_gen = _serve(other, cert, _crls(other, []), tmp_path)
    impostor = next(impostor_gen)
    box_gen = _box(relay_pki, tmp_path, impostor.port)
    box = next(box_gen)
    try:
        client = PracticeSoftware(box.socket_path)
        answer = client.send("POST", "/visio/rights", SECRET_BODY)
        client.close()
        assert _status(answer) == 502
        assert "Certificat du service refusé" in _body(answer).decode()
        assert impostor.seen.requests == []  # no request (nor its body) sent to it
        assert box.journal.requests()[-1]["status"] == 502
    finally:
        for gen in (box_gen, impostor_gen):
            for _ in gen:
                pass


def _root_crl(pki: TestPKI, revoked: list[x509.Certificate]) -> bytes:
    der = make_crl(
        pki.root,
        this_update=TEST_NOW - timedelta(hours=1),
        next_update=TEST_NOW + timedelta(days=7),
        revoked=revoked,
    )
    return x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("revoked", [False, True])
def test_the_services_certificate_is_checked_against_its_crl(
    relay_pki: TestPKI, tmp_path: Path, revoked: bool
) -> None:
    cert = relay_pki.issue_tls_server(f"service-rev-{revoked}", ["127.0.0.1"])
    service_gen = _serve(relay_pki, cert, _crls(relay_pki, []), tmp_path)
    svc = next(service_gen)
    crl = _root_crl(relay_pki, [cert.cert] if revoked else [])
    box_gen = _box(relay_pki, tmp_path, svc.port, server_crls=crl)
    box = next(box_gen)
    try:
        client = PracticeSoftware(box.socket_path)
        answer = client.send("POST", "/visio/rights", SECRET_BODY)
        client.close()
        if revoked:
            assert _status(answer) == 502
            assert "certificate revoked" in _body(answer).decode()
            assert svc.seen.requests == []
        else:
            assert _status(answer) == 200
            assert len(svc.seen.requests) == 1
    finally:
        for gen in (box_gen, service_gen):
            for _ in gen:
                pass


def _keep_root_crl(pki: TestPKI, crl_dir: Path, revoked: list[x509.Certificate]) -> None:
    """The root's CRL as ``balise crl fetch`` leaves it in the box's store (<data dir>/crl)."""
    der = x509.load_pem_x509_crl(_root_crl(pki, revoked)).public_bytes(serialization.Encoding.DER)
    key = issuer_key(pki.root.cert)
    FileCrlStore(crl_dir).put(StoredCrl(key, "full", der, "http://crl.test/root.crl", "now"))


@pytest.mark.parametrize("revoked", [False, True])
def test_the_relay_checks_services_against_the_crls_the_box_keeps(
    relay_pki: TestPKI, tmp_path: Path, revoked: bool
) -> None:
    """What the relay process does (app/relay_main): the box's own CRL store feeds the check of
    the services' certificates; a revoked service is refused before the request is sent."""
    cert = relay_pki.issue_tls_server(f"service-kept-{revoked}", ["127.0.0.1"])
    crl_dir, run_dir = tmp_path / "data" / "crl", tmp_path / "run"
    run_dir.mkdir()
    assert kept_crls_file(crl_dir, run_dir) is None  # nothing kept yet: nothing to check with
    _keep_root_crl(relay_pki, crl_dir, [cert.cert] if revoked else [])
    crl_file = kept_crls_file(crl_dir, run_dir)
    assert crl_file is not None and crl_file.stat().st_mode & 0o077 == 0
    service_gen = _serve(relay_pki, cert, _crls(relay_pki, []), tmp_path)
    svc = next(service_gen)
    box_gen = _box(relay_pki, tmp_path, svc.port, server_crls=crl_file.read_bytes())
    box = next(box_gen)
    try:
        client = PracticeSoftware(box.socket_path)
        answer = client.send("POST", "/visio/rights", SECRET_BODY)
        client.close()
        if revoked:
            assert _status(answer) == 502
            assert "certificate revoked" in _body(answer).decode()
            assert svc.seen.requests == []
        else:
            assert _status(answer) == 200
            assert len(svc.seen.requests) == 1
    finally:
        for gen in (box_gen, service_gen):
            for _ in gen:
                pass


def test_a_revoked_practitioner_is_refused_by_the_service(
    relay_pki: TestPKI, tmp_path: Path
) -> None:
    cert = relay_pki.issue_tls_server("service-crl", ["127.0.0.1"])
    crls = _crls(relay_pki, [relay_pki.practitioner.authentication.cert])
    service_gen = _serve(relay_pki, cert, crls, tmp_path)
    svc = next(service_gen)
    box_gen = _box(relay_pki, tmp_path, svc.port)
    box = next(box_gen)
    try:
        client = PracticeSoftware(box.socket_path)
        answer = client.send("GET", "/visio/rights")
        client.close()
        assert _status(answer) == 502
        assert svc.seen.requests == []
    finally:
        for gen in (box_gen, service_gen):
            for _ in gen:
                pass


def test_idle_time_closes_the_channel_and_the_card_login(
    box: Box, practice: PracticeSoftware, service: Service
) -> None:
    assert _status(practice.send("GET", "/visio/a")) == 200
    box.ticks[0] += 599
    box.relay.check()
    assert box.relay.state().open
    box.ticks[0] += 2
    box.relay.check()
    state = box.relay.state()
    assert (state.open, state.closed_because) == (False, "idle")
    assert box.card.logged_out
    assert not box.channels[0].is_open
    answer = practice.send("GET", "/visio/b")
    assert _status(answer) == 503
    assert len(service.seen.requests) == 1


def test_card_pulled_mid_session_closes_everything(
    box: Box, practice: PracticeSoftware, service: Service
) -> None:
    assert _status(practice.send("GET", "/visio/a")) == 200
    box.card.present = False  # FAKE: the card pulled (pcscd's "removed" on the box)
    box.ticks[0] += CARD_CHECK_S  # the request path's last look at the card is this old
    answer = practice.send("GET", "/visio/b")
    assert _status(answer) == 503
    assert "Carte retirée" in _body(answer).decode()
    assert box.card.logged_out
    assert box.relay.state().closed_because == "card_pulled"
    assert len(service.seen.requests) == 1
    assert _status(practice.send("GET", "/visio/c")) == 503  # and it stays closed
    assert len(service.seen.requests) == 1


def test_card_pulled_without_a_request_closes_by_the_watchdog(
    box: Box, practice: PracticeSoftware, service: Service
) -> None:
    assert _status(practice.send("GET", "/visio/a")) == 200
    box.card.present = False
    box.relay.check()  # the relay's watchdog, every second (app.relay.serve_relay)
    state = box.relay.state()
    assert (state.open, state.closed_because) == (False, "card_pulled")
    assert box.card.logged_out
    assert not box.channels[0].is_open
    assert _status(practice.send("GET", "/visio/b")) == 503
    assert len(service.seen.requests) == 1


def test_the_card_is_asked_twice_a_second_at_most_not_once_per_request(
    box: Box, practice: PracticeSoftware, service: Service
) -> None:
    """On the box the question goes to the card through pcscd (milliseconds, more than a
    relayed request): a burst of requests asks it once, the next one after CARD_CHECK_S asks
    again, and the watchdog's own look counts as one."""
    for i in range(20):
        assert _status(practice.send("GET", f"/visio/burst{i}")) == 200
    assert box.card.asked == 1
    box.ticks[0] += CARD_CHECK_S
    assert _status(practice.send("GET", "/visio/later")) == 200
    assert box.card.asked == 2
    box.ticks[0] += CARD_CHECK_S
    box.relay.check()
    assert _status(practice.send("GET", "/visio/after-watchdog")) == 200
    assert box.card.asked == 3
    assert len(service.seen.requests) == 22


def _raw(path: Path, data: bytes) -> bytes:
    """One request sent as bytes on a new connection; the answer read to its end."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(data)
        got = b""
        for _ in range(1000):
            head, sep, rest = got.partition(b"\r\n\r\n")
            if sep:
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                if len(rest) >= length:
                    return got
            data = sock.recv(65536)
            if not data:
                return got
            got += data
    raise AssertionError("no whole answer")


_GET = b"GET /visio/x HTTP/1.1\r\nHost: relay\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status", "words"),
    [
        (_GET + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400, "répété"),
        (_GET + b"content-length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, "répété"),
        (_GET + b"A header without colon\r\n\r\n", 400, "mal formé"),
        (_GET + b"X-Space : before the colon\r\n\r\n", 400, "mal formé"),
        (_GET + b"X-Bare: line\nfeed\r\n\r\n", 400, "mal formé"),
        (_GET + b"X-Nul: a\0b\r\n\r\n", 400, "mal formé"),
        (b"BREW /visio/x HTTP/1.1\r\n\r\n", 400, "Requête HTTP mal formée"),
        (b"GET /visio/x HTTP/2\r\n\r\n", 400, "Requête HTTP mal formée"),
        (_GET + b"".join(b"X-%d: v\r\n" % i for i in range(100)) + b"\r\n", 431, "Trop"),
        (_GET + b"X-Long: " + b"a" * (33 * 1024) + b"\r\n\r\n", 431, "trop longs"),
        (_GET + b"Content-Length: 99999999999\r\n\r\n", 413, "trop long"),
        (_GET + b"Content-Length: -1\r\n\r\n", 413, "mal annoncé"),
        (_GET + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411, "morceaux"),
    ],
)
def test_a_badly_framed_request_is_answered_by_the_relay_and_never_forwarded(
    box: Box, service: Service, request_bytes: bytes, status: int, words: str
) -> None:
    answer = _raw(box.socket_path, request_bytes)
    assert _status(answer) == status, answer[:200]
    assert b"X-Balise-Relay: refused" in answer
    assert words in _body(answer).decode()
    assert service.seen.requests == []
    assert box.channels == []  # no TLS opened: the card not used


def test_an_answer_framed_twice_is_refused_and_the_next_request_goes_on(
    box: Box, practice: PracticeSoftware, service: Service
) -> None:
    """A service's answer with two lengths could be read two ways: the relay passes none of
    it, answers 502 in words, drops that connection and opens a new one for what follows."""
    answer = practice.send("GET", "/visio/two-lengths")
    assert _status(answer) == 502
    assert "Longueur de réponse répétée" in _body(answer).decode()
    assert b"abc" not in answer
    assert _status(practice.send("GET", "/visio/next")) == 200
    assert [c.handshakes for c in box.channels] == [2]
    assert [r["status"] for r in box.journal.requests()] == [502, 200]


def _read_some(sock: socket.socket, at_least: int) -> bytes:
    got = b""
    for _ in range(10_000):
        if len(got) >= at_least:
            break
        data = sock.recv(1 << 20)
        if not data:
            break
        got += data
    return got


def test_a_long_answer_reaches_the_practice_software_as_it_comes(
    box: Box, service: Service
) -> None:
    """3 MiB: the first MiB reaches the practice software while the service still holds the
    rest (it sends it only once the test got the first part: a relay that waited for the
    whole answer would stall here), unchanged, and the connection goes on."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(box.socket_path))
        sock.sendall(b"GET /visio/long HTTP/1.1\r\nHost: relay\r\n\r\n")
        got = _read_some(sock, MIB)
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: %d" % LONG in head
        assert len(body) >= MIB // 2  # what came before the service sent the rest
        service.seen.release.set()
        body += _read_some(sock, LONG - len(body))
        assert len(body) == LONG and body == _long_body(0, LONG)
        sock.sendall(b"GET /visio/after HTTP/1.1\r\nHost: relay\r\n\r\n")
        assert _read_some(sock, 12).startswith(b"HTTP/1.1 200")
    row = box.journal.requests()[0]
    assert (row["status"], row["answer_bytes"], row["answered_by"]) == (
        200,
        len(head) + 4 + LONG,
        "service",
    )
    assert [c.handshakes for c in box.channels] == [1]


def _chunked_answer(sock: socket.socket) -> bytes:
    got = b""
    for _ in range(10_000):
        if got.endswith(b"0\r\nX-Trailer: fin\r\n\r\n"):
            return got
        data = sock.recv(1 << 20)
        assert data, "closed before the last chunk"
        got += data
    raise AssertionError("no last chunk")


def _chunks(start: int, end: int) -> bytes:
    """What the test service sends for /chunked-long between its head and its last chunk."""
    out = b""
    for at in range(start, end, 10_000):
        piece = _long_body(at, at + 10_000)
        out += b"%x;ext=1\r\n%s\r\n" % (len(piece), piece)
    return out


@pytest.mark.parametrize("path", ["/visio/chunked", "/visio/chunked-long"])
def test_an_answer_in_chunks_reaches_the_practice_software_unchanged(
    box: Box, service: Service, path: str
) -> None:
    """Chunks, their extensions and the trailer pass as the service sent them — 30 bytes, or
    200,000 passed on as they come — and the connection goes on."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(box.socket_path))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: relay\r\n\r\n".encode())
        got = _chunked_answer(sock)
        sock.sendall(b"GET /visio/after HTTP/1.1\r\nHost: relay\r\n\r\n")
        assert _read_some(sock, 12).startswith(b"HTTP/1.1 200")
    head, _, body = got.partition(b"\r\n\r\n")
    assert head == b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"
    if path.endswith("-long"):
        assert body == _chunks(0, CHUNKED_LONG) + b"0\r\nX-Trailer: fin\r\n\r\n"
    else:
        piece = _long_body(0, 30)
        assert body == b"1e;ext=1\r\n" + piece + b"\r\n0\r\nX-Trailer: fin\r\n\r\n"
    assert [c.handshakes for c in box.channels] == [1]
    assert box.journal.requests()[0]["answer_bytes"] == len(got)


def test_an_answer_ended_by_the_close_is_passed_on_and_the_next_request_reopens(
    box: Box, practice: PracticeSoftware, service: Service
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(box.socket_path))
        sock.sendall(b"GET /visio/until-close HTTP/1.1\r\nHost: relay\r\n\r\n")
        got = _read_some(sock, 1 << 20)  # the relay passes the close on: the body's end
    assert got == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nfin de flux"
    assert _status(practice.send("GET", "/visio/next")) == 200
    assert [c.handshakes for c in box.channels] == [2]


def test_a_long_answer_cut_by_the_service_closes_the_practice_softwares_connection(
    box: Box, service: Service, practice: PracticeSoftware
) -> None:
    """2 MiB announced, 1 MiB sent, then the service is gone: what came was passed on, too
    late for an error answer, so the practice software's connection is closed — it sees an
    answer shorter than announced, never a silent mix — and the journal says the answer was
    cut. The next connection works, on a new channel."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(box.socket_path))
        sock.sendall(b"GET /visio/cut HTTP/1.1\r\nHost: relay\r\n\r\n")
        got = _read_some(sock, 3 * MIB)  # to the close
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: %d" % (2 * MIB) in head
    assert 0 < len(body) <= MIB and body == _long_body(0, len(body))
    (row,) = box.journal.requests()
    assert (row["status"], row["answered_by"]) == (200, "cut")
    assert isinstance(row["answer_bytes"], int) and 0 < row["answer_bytes"] <= len(got)
    assert _status(practice.send("GET", "/visio/next")) == 200
    assert [c.handshakes for c in box.channels] == [2]


def test_the_request_reaches_the_service_with_its_own_headers_not_the_connections(
    box: Box, practice: PracticeSoftware, service: Service
) -> None:
    """The practice software's headers go through as sent (blanks around the value dropped),
    except those about its connection to the relay; the service gets its own Host."""
    sent = (
        "X-Visio-Case:   12 34  \r\nAccept: application/json\r\nConnection: keep-alive\r\n"
        "Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n"
    )
    assert _status(practice.send("POST", "/visio/rights?x=1", b"abc", sent)) == 200
    (headers,) = service.seen.headers
    assert headers == [
        ("Host", f"127.0.0.1:{service.port}"),
        ("X-Visio-Case", "12 34"),
        ("Accept", "application/json"),
        ("Content-Length", "3"),
    ]
    assert service.seen.requests == [("/api/rights?x=1", "10001234567/Dr Jeanne TEST", b"abc")]
    # A second request on the same connection: the relay's connection went on.
    assert _status(practice.send("GET", "/visio/again", b"", "Connection: close\r\n")) == 200
    assert "Connection" not in dict(service.seen.headers[1])


@pytest.mark.parametrize(
    "entry",
    [
        "visio=http://127.0.0.1/api",  # not TLS
        "visio=https://user:pw@host/api",  # credentials in the URL
        "visio=https://host/api?x=1",  # a query
        "Visio Droits=https://host/api",  # not a name
        "visio",  # no URL
    ],
)
def test_a_badly_written_allow_list_entry_is_refused_with_words(entry: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_allow_list([entry])
    assert caught.value.fr.startswith(("Service en ligne mal écrit", "Adresse du service"))


def test_two_services_under_one_name_are_refused() -> None:
    with pytest.raises(ValidationError, match="deux fois"):
        parse_allow_list(["a=https://h1/x", "a=https://h2/y"])


def test_the_allow_list_is_a_parameter_and_feeds_the_egress_list(balise_env: BaliseEnv) -> None:
    """What the technician sets is what the relay may reach, and what the firewall opens."""
    result = balise_env.run(
        "params",
        "set",
        "relay_services",
        "visio=https://droits.example.fr/api amc=https://tiers.example.org:8443/tp",
    )
    assert result.returncode == 0, result.stderr
    bad = balise_env.run("params", "set", "relay_services", "visio=http://droits.example.fr")
    assert bad.returncode != 0
    assert "https://" in bad.stderr
    listed = balise_env.run("egress", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    relay = {
        (e["purpose"], e["host"], e["port"])
        for e in json.loads(listed.stdout)
        if e["purpose"].startswith("relay:")
    }
    assert relay == {
        ("relay:visio", "droits.example.fr", 443),
        ("relay:amc", "tiers.example.org", 8443),
    }
    ctx = balise_env.context()
    try:
        settings = relay_settings(ctx.params)
    finally:
        ctx.close()
    assert settings.services["amc"].url == "https://tiers.example.org:8443/tp/"
    assert settings.idle_minutes == 15


class _ChannelKiosk(App[None]):
    """The channel's screen alone (its wiring into Accueil is the kiosk's)."""

    def __init__(self, screen: ChannelScreen) -> None:
        super().__init__()
        self._channel_screen = screen

    def on_mount(self) -> None:
        self.push_screen(self._channel_screen)


async def test_the_kiosk_shows_the_channel_and_closes_it_with_one_key(
    box: Box, practice: PracticeSoftware
) -> None:
    for i in range(3):
        assert _status(practice.send("GET", f"/visio/k{i}")) == 200
    app = _ChannelKiosk(ChannelScreen(box.relay.state, lambda: box.relay.close("practitioner")))
    async with app.run_test(size=(100, 20)) as pilot:
        await pilot.pause(0.2)
        shown = str(app.screen.query_one("#channel-state").render())
        assert "Canal ouvert pour Dr Jeanne TEST depuis" in shown
        assert "3 requête(s)" in shown
        await pilot.press("f")
        await pilot.pause(0.2)
        shown = str(app.screen.query_one("#channel-state").render())
        assert shown == "Canal fermé (fermé par le praticien)."
    assert box.card.logged_out
    assert not box.channels[0].is_open
    assert _status(practice.send("GET", "/visio/after")) == 503


def test_the_relay_process_closes_as_the_card_pulled_on_sigusr1() -> None:
    """The relay process's signals (balise.app.relay_main.main waits on them): SIGUSR1, the
    kiosk's word that its watcher saw the card pulled, closes the channel saying so; SIGTERM is
    the practitioner's key. Sent to this process, its own handlers put back afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        for sig, why in ((signal.SIGTERM, "practitioner"), (signal.SIGUSR1, "card_pulled")):
            done = threading.Event()
            because = close_on_signals(done)
            os.kill(os.getpid(), sig)
            assert done.wait(5)
            assert because == [why]
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@pytest.mark.parametrize(
    ("sent", "read"),
    [(b"1234\n", bytearray(b"1234")), (b"\n", None), (b"", None), (b"735921\nextra", b"735921")],
)
def test_the_relay_process_reads_one_pin_line_from_its_pipe(
    sent: bytes, read: bytearray | None
) -> None:
    r, w = os.pipe()
    os.write(w, sent)
    os.close(w)
    try:
        assert read_pin(r) == read
    finally:
        os.close(r)


def test_a_pin_longer_than_any_card_takes_is_refused() -> None:
    r, w = os.pipe()
    os.write(w, b"9" * 100 + b"\n")
    os.close(w)
    try:
        with pytest.raises(ValueError, match="too long"):
            read_pin(r)
    finally:
        os.close(r)


def test_without_pkcs11_provider_the_relay_process_refuses_with_words(
    balise_env: BaliseEnv, relay_pki: TestPKI, tmp_path: Path
) -> None:
    """Debian 12 (this host) has no pkcs11-provider: the kiosk's launcher gets the relay's
    refusal in words, and no state is written (the kiosk shows no open channel)."""
    if card_tls.find_provider() is not None:
        pytest.skip("pkcs11-provider is installed here: the image tier runs the real path")
    hsm = SoftHSM(tmp_path / "hsm")
    hsm.create_token("CPS-HOST", relay_pki.practitioner, pin="735921", so_pin="87654321")
    ctx = balise_env.context()
    try:
        ctx.params.set("pkcs11_module", str(hsm.module))
        ctx.params.set("relay_services", "visio=https://127.0.0.1:9/api")
    finally:
        ctx.close()
    launcher = RelayLauncher(
        data_dir=balise_env.home,
        socket_path=tmp_path / "relay.sock",
        allowed_uids=[os.getuid()],
        run_dir=tmp_path / "relay-run",
        env={**balise_env.env, **hsm.env()},
    )
    pin = bytearray(b"735921")
    launcher.start(pin)
    assert pin == bytearray(6)  # wiped once handed over
    words = launcher.refusal(timeout=60)
    assert words is not None and "pkcs11-provider" in words
    assert launcher.state() is None
    assert not (tmp_path / "relay.sock").exists()


def test_the_state_file_reads_back_and_garbage_is_no_state(tmp_path: Path) -> None:
    state = ChannelState(True, "Dr Jeanne TEST", TEST_NOW, 7, 1, None)
    path = tmp_path / "status.json"
    path.write_text(status_json(state))
    assert read_status(path) == state
    path.write_text('{"open": true}')
    assert read_status(path) is None
    path.write_bytes(b"\xff" * 10_000)
    assert read_status(path) is None


def test_balise_relay_status_says_what_the_kiosk_shows(
    balise_env: BaliseEnv, tmp_path: Path
) -> None:
    """The state file the relay process writes beside its socket, read by the command a
    technician or the practice software's installer runs; an open state no longer rewritten is
    a relay that stopped (its file's time set back: the relay rewrites it every second)."""
    env = {**balise_env.env, "BALISE_RELAY_SOCKET": str(tmp_path / "relay.sock")}

    def status(*extra: str) -> subprocess.CompletedProcess[str]:
        result = balise_env.run("relay", "status", *extra, env=env)
        assert result.returncode == 0, result.stderr
        return result

    assert status().stdout.strip() == "Aucun canal ouvert."
    assert json.loads(status("--json").stdout)["open"] is False
    state_file = tmp_path / "relay-status.json"
    state_file.write_text(status_json(ChannelState(True, "Dr Jeanne TEST", TEST_NOW, 7, 1, None)))
    shown = json.loads(status("--json").stdout)
    assert shown["open"] is True and shown["practitioner"] == "Dr Jeanne TEST"
    assert (shown["requests"], shown["handshakes"], shown["closed_because"]) == (7, 1, None)
    assert "Canal ouvert pour Dr Jeanne TEST" in status().stdout
    assert "7 requête(s)" in status().stdout
    old = state_file.stat().st_mtime - 3600
    os.utime(state_file, (old, old))
    shown = json.loads(status("--json").stdout)
    assert shown["open"] is False and shown["closed_because"] == "stopped"
    assert status().stdout.strip() == "Canal fermé (relais arrêté)."
    state_file.write_text(
        status_json(ChannelState(False, "Dr Jeanne TEST", TEST_NOW, 9, 1, "card_pulled"))
    )
    assert status().stdout.strip() == "Canal fermé (carte retirée)."
