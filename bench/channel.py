"""Card channel benchmark (issue 20), all figures from one run:

200 requests of the practice software through the relay (plain HTTP over its unix socket, the
relay's TLS channel to a loopback HTTPS service that requires a client certificate of the test
IGC-Santé chain), against the same 200 requests sent directly on one reused client TLS connection
holding the practitioner's key in a file.

- card operations used: the relay's full handshakes (each one signature by the card; target 1
  for the whole run); with ``--card``, the relay's key is the SoftHSM2 card's through
  pkcs11-provider (Debian 13, the box) and C_Login / C_SignInit are counted by pkcs11-spy;
  without it (Debian 12: no provider) the relay's key is the same file, said in the output;
- each card operation held to 250 ms (a CPS card's RSA-2048 signature): added once per handshake;
- the relay's cost per request against the direct connection, channel opening excluded (both
  open theirs on the first request): target <= 1.3x.

Usage: .venv/bin/python bench/channel.py [--requests 200] [--card]
"""

from __future__ import annotations

import argparse
import http.server
import os
import re
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path

from balise.adapters import card_tls
from balise.adapters.clock import SystemClock
from balise.adapters.relay_server import RelayServer
from balise.domain.relay import AllowedService
from balise.services.relay import CardLogin, Relay, error_answer
from balise.sim.pki import TestPKI, build_pki

CARD_SECONDS = 0.25
PIN = "735921"
SPY = Path("/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = b'{"droits": "ouverts", "recu": %d}' % len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def _service(pki: TestPKI) -> tuple[http.server.ThreadingHTTPServer, int]:
    cert = pki.issue_tls_server("bench-service", ["127.0.0.1"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert_pem, cert.key_pem)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(pki.chain_pem))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


class _Journal:
    def __init__(self) -> None:
        self.count = 0

    def append(self, kind: str, subject: str = "", details: object = None, **_: object) -> None:
        self.count += 1


class _Login:
    def close(self) -> None:
        pass


class _SpyCounter(threading.Thread):
    """pkcs11-spy's log from a FIFO reduced to call names (the log prints PINs: never kept)."""

    def __init__(self, fifo: Path) -> None:
        super().__init__(daemon=True)
        self.fifo, self.counts = fifo, {"C_Login": 0, "C_SignInit": 0}

    def run(self) -> None:
        with self.fifo.open("rb") as stream:
            for line in stream:
                m = re.match(rb"^\d+: (C_Login|C_SignInit)\b", line)
                if m:
                    self.counts[m.group(1).decode()] += 1


def _card_speed_connect(addr: tuple[str, int], timeout: float) -> socket.socket:
    # One card operation per new connection (its handshake): held to a card's time.
    time.sleep(CARD_SECONDS)
    return socket.create_connection(addr, timeout=timeout)


def _timed_requests(sock: socket.socket, target: str, n: int, body: bytes) -> list[float]:
    """``n`` requests on one kept connection, each read to its end; the same client code for
    the relay (unix socket) and for the direct connection (TLS), so only the path differs."""
    stream = sock.makefile("rb")
    head = f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
    times = []
    for _ in range(n):
        start = time.perf_counter()
        sock.sendall(head.encode() + body)
        length = 0
        while (line := stream.readline(65536)) != b"\r\n":
            if not line:
                raise ConnectionError("closed")
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        stream.read(length)
        times.append(time.perf_counter() - start)
    stream.close()
    sock.close()
    return times


def _practice_requests(path: Path, n: int, body: bytes) -> list[float]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(path))
    return _timed_requests(sock, "/visio/droits", n, body)


def _direct_requests(pki: TestPKI, port: int, n: int, body: bytes) -> list[float]:
    context = card_tls.card_context(
        roots_pem=[pki.root_pem.read_text()],
        cert_chain=pki.practitioner.authentication.cert_pem,
        key=pki.practitioner.authentication.key_pem,
    )
    start = time.perf_counter()
    raw = _card_speed_connect(("127.0.0.1", port), 30)  # the same card time for its handshake
    sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
    opening = time.perf_counter() - start
    times = _timed_requests(sock, "/api/droits", n, body)
    times[0] += opening
    return times


def main(n: int, card: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="balise-bench-") as tmp:
        base = Path(tmp)
        pki = build_pki(base / "pki")
        server, port = _service(pki)
        service = AllowedService("visio", "127.0.0.1", port, "/api")
        body = b'{"nir": "1850575123456", "date": "2026-12-05"}' * 4
        spy: _SpyCounter | None = None
        login: CardLogin
        if card:
            context, login, spy, what = _card_context(pki, base)
        else:
            chain = base / "chain.pem"
            chain.write_bytes(
                pki.practitioner.authentication.cert_pem.read_bytes()
                + pki.intermediate.cert_pem.read_bytes()
            )
            context = card_tls.card_context(
                roots_pem=[pki.root_pem.read_text()],
                cert_chain=chain,
                key=pki.practitioner.authentication.key_pem,
            )
            login = _Login()
            what = "key in a FILE standing in for the card (no pkcs11-provider)"
        channels: list[card_tls.TlsChannel] = []

        def channel_for(s: AllowedService) -> card_tls.TlsChannel:
            channels.append(
                card_tls.TlsChannel(context, s.host, s.port, connect=_card_speed_connect)
            )
            return channels[-1]

        relay = Relay(
            services={"visio": service},
            channel_for=channel_for,
            login=login,
            practitioner="Dr Jeanne TEST",
            journal=_Journal(),  # type: ignore[arg-type]
            clock=SystemClock(),
            idle_seconds=600,
            card_present=lambda: True,
        )
        sock_path = base / "relay.sock"
        door = RelayServer(
            sock_path, allowed_uids={os.getuid()}, handler=relay.handle, refusal=error_answer
        )
        door.start()
        try:
            relayed = _practice_requests(sock_path, n, body)
            direct = _direct_requests(pki, port, n, body)
        finally:
            door.stop()
            relay.close("stopped")
            server.shutdown()
        if spy is not None:
            time.sleep(0.3)  # the spy's last lines reach the FIFO
        relay_rest = sum(relayed[1:]) / (n - 1)
        direct_rest = sum(direct[1:]) / (n - 1)
        print(f"relay's key: {what}")
        print(
            f"card operations for {n} requests: {sum(c.handshakes for c in channels)} handshake(s)"
            " (target 1)"
            + (
                f"; pkcs11-spy: C_Login {spy.counts['C_Login']}, "
                f"C_SignInit {spy.counts['C_SignInit']}"
                if spy is not None
                else ""
            )
        )
        print(
            f"first request (channel opening, card held to {CARD_SECONDS * 1000:.0f} ms): "
            f"relay {relayed[0] * 1000:.1f} ms, direct {direct[0] * 1000:.1f} ms"
        )
        print(
            f"per request after it: relay {relay_rest * 1000:.3f} ms, direct (reused TLS, key in "
            f"a file) {direct_rest * 1000:.3f} ms: {relay_rest / direct_rest:.2f}x (target <= 1.3x)"
        )
        print(
            f"whole run: relay {sum(relayed) * 1000:.1f} ms (its card time included), direct "
            f"{(sum(direct) - CARD_SECONDS) * 1000:.1f} ms (key in a file, no card time)"
        )


def _card_context(pki: TestPKI, base: Path) -> tuple[ssl.SSLContext, CardLogin, _SpyCounter, str]:
    """The card's path (Debian 13): a SoftHSM2 token behind pkcs11-spy, logged in once, its
    authentication key used by OpenSSL through pkcs11-provider."""
    import pkcs11

    from balise.adapters.pkcs11 import Pkcs11Signer
    from balise.sim.softhsm import SoftHSM

    hsm = SoftHSM(base / "hsm")
    os.environ.update(hsm.env())
    token = hsm.create_token("CPS-BENCH", pki.practitioner, pin=PIN, so_pin="87654321")
    fifo = base / "spy.fifo"
    os.mkfifo(fifo, 0o600)
    spy = _SpyCounter(fifo)
    spy.start()
    os.environ["PKCS11SPY"] = str(hsm.module)
    os.environ["PKCS11SPY_OUTPUT"] = str(fifo)
    lib = pkcs11.lib(str(SPY))
    provider = card_tls.find_provider()
    if provider is None:
        raise SystemExit("pkcs11-provider absent: --card runs on Debian 13 (the box)")
    (base / "p11.cnf").write_text(card_tls.provider_config(provider, SPY))
    card_tls.load_provider(base / "p11.cnf")
    login = Pkcs11Signer(lib, token_label="CPS-BENCH").login(
        bytearray(PIN.encode()), allowed_signatures=0
    )
    auth = card_tls.card_auth_certificate(lib, token.serial)
    chain, ref = base / "card-chain.pem", base / "card-key.pem"
    chain.write_text(auth.chain_pem())
    ref.write_text(card_tls.key_reference_pem(card_tls.key_uri(token.serial, auth.key_id)))
    context = card_tls.card_context(roots_pem=[pki.root_pem.read_text()], cert_chain=chain, key=ref)
    return context, login, spy, "SoftHSM2 card through pkcs11-provider (pkcs11-spy counting)"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--card", action="store_true")
    args = parser.parse_args()
    main(max(2, args.requests), args.card)
