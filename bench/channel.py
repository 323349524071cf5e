"""Card channel benchmark (issue 20), all figures from one run:

200 requests of the practice software through the relay (plain HTTP over its unix socket, the
relay's TLS channel to a loopback HTTPS service that requires a client certificate of the test
IGC-Santé chain), against the same 200 requests sent directly on one reused client TLS connection
holding the practitioner's key in a file.

Three processes, as on the box: the service, the relay (its own process, as
``balise.app.relay_main`` runs it, wired by the same ``balise.app.relay.serve_relay`` with the
box's REAL journal: SQLite, every request journaled, one entry listing the requests of each
commit window), and this one, the practice software, which sends one relayed request then one
direct request, in turn, so that the machine's other load weighs on both alike.

- card operations used: the relay's full handshakes (each one signature by the card; target 1
  for the whole run); with ``--card``, the relay's key is the SoftHSM2 card's through
  pkcs11-provider (Debian 13, the box) and C_Login / C_SignInit are counted by pkcs11-spy;
  without it (Debian 12: no provider) the relay's key is the same file, said in the output;
- each card operation held to 250 ms (a CPS card's RSA-2048 signature): added once per handshake;
- the relay's cost per request against the direct connection, channel opening excluded (both
  open theirs on the first request): target <= 1.3x. The mean decides; the median is shown too.
- ``--commit-every-request``: each request an entry of its own, committed alone (one fsync per
  request), to show what the group commit saves;
- ``--profile FILE``: the relay process runs under cProfile, its statistics written to FILE;
- ``--without-journal``: a diagnostic, never the box: the relay journals nothing, to show what
  its journal entries cost (the box journals every request);
- ``--floor``: a third path, interleaved with the two others: a process that only copies bytes
  between the same unix socket and the same TLS connection — what any relay in its own process
  costs at least on this machine (its extra hop: two more wake-ups per request); and, when
  Debian's ``socat`` is installed (apt install socat: never a dependency of the box), a fourth:
  the same copy by socat, compiled C — the floor of a relay whose byte path is not Python.

Usage: .venv/bin/python bench/channel.py [--requests 200] [--card] [--commit-every-request]
       [--floor] [--profile FILE] [--without-journal]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import select
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from balise.adapters import card_tls

CARD_SECONDS = 0.25
PIN = "735921"
SPY = Path("/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so")
TOKEN = "CPS-BENCH"


# --- the online service (its own process) --------------------------------------------------


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


def _service_main(conf: dict[str, str]) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(conf["cert"], conf["key"])
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=conf["chain"])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # until the bench closes our stdin
    server.shutdown()


# --- the relay (its own process) -------------------------------------------------------------


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


def _card_context(conf: dict[str, str]) -> tuple[ssl.SSLContext, Any, _SpyCounter]:
    """The card's path (Debian 13): the SoftHSM2 token behind pkcs11-spy, logged in once, its
    authentication key used by OpenSSL through pkcs11-provider."""
    import pkcs11

    from balise.adapters.pkcs11 import Pkcs11Signer

    base = Path(conf["dir"])
    fifo = base / "spy.fifo"
    os.mkfifo(fifo, 0o600)
    spy = _SpyCounter(fifo)
    spy.start()
    os.environ["PKCS11SPY"] = conf["module"]
    os.environ["PKCS11SPY_OUTPUT"] = str(fifo)
    lib = pkcs11.lib(str(SPY))
    provider = card_tls.find_provider()
    if provider is None:
        raise SystemExit("pkcs11-provider absent: --card runs on Debian 13 (the box)")
    (base / "p11.cnf").write_text(card_tls.provider_config(provider, SPY))
    card_tls.load_provider(base / "p11.cnf")
    login = Pkcs11Signer(lib, token_label=TOKEN).login(
        bytearray(PIN.encode()), allowed_signatures=0
    )
    auth = card_tls.card_auth_certificate(lib, conf["serial"])
    chain, ref = base / "card-chain.pem", base / "card-key.pem"
    chain.write_text(auth.chain_pem())
    ref.write_text(card_tls.key_reference_pem(card_tls.key_uri(conf["serial"], auth.key_id)))
    context = card_tls.card_context(
        roots_pem=[Path(conf["root"]).read_text()], cert_chain=chain, key=ref
    )
    return context, login, spy


def _relay_main(conf: dict[str, str]) -> None:
    from balise.adapters.clock import SystemClock
    from balise.adapters.journal import SqliteJournal
    from balise.adapters.store import Store
    from balise.app.relay import serve_relay
    from balise.domain.relay import AllowedService
    from balise.services.relay import JOURNAL_KIND, CardLogin, journaled_requests

    spy: _SpyCounter | None = None
    login: CardLogin
    if conf.get("serial"):
        context, login, spy = _card_context(conf)
    else:
        context = card_tls.card_context(
            roots_pem=[Path(conf["root"]).read_text()],
            cert_chain=Path(conf["chain"]),
            key=Path(conf["key"]),
        )
        login = _Login()
    data = Path(conf["data"])
    data.mkdir()
    store = Store(data)
    clock = SystemClock()
    journal = SqliteJournal(store, clock, "relay")
    channels: list[card_tls.TlsChannel] = []

    def channel_for(s: AllowedService) -> card_tls.TlsChannel:
        channels.append(card_tls.TlsChannel(context, s.host, s.port, connect=_card_speed_connect))
        return channels[-1]

    class _NoJournal:  # --without-journal: a diagnostic, never the box (every request journaled)
        def append(self, *args: object, **kwargs: object) -> None:
            pass

    class _EveryRequest:  # --commit-every-request: the journal's own append, one commit each
        append = journal.append

    profile = None
    if conf.get("profile"):
        import cProfile

        profile = cProfile.Profile()
        threading.setprofile(lambda *_: profile.enable())  # the relay's own threads too
        profile.enable()
    card = serve_relay(
        services={"visio": AllowedService("visio", "127.0.0.1", int(conf["port"]), "/api")},
        channel_for=channel_for,
        login=login,
        practitioner="Dr Jeanne TEST",
        journal=_NoJournal()
        if conf.get("nojournal")
        else _EveryRequest()
        if conf.get("every")
        else journal,
        clock=clock,
        idle_seconds=600,
        card_present=lambda: True,
        socket_path=Path(conf["socket"]),
        allowed_uids={os.getuid()},
    )
    print("ready", flush=True)
    cpu = time.process_time()
    sys.stdin.read()  # until the bench closes our stdin: the practitioner closes the channel
    cpu = time.process_time() - cpu
    card.close("practitioner")
    if profile is not None:
        threading.setprofile(None)
        profile.disable()
        profile.dump_stats(conf["profile"])
    if spy is not None:
        time.sleep(0.3)  # the spy's last lines reach the FIFO
    entries = list(journal.entries())
    kinds = [e.kind for e in entries]
    listings = [json.loads(e.details) for e in entries if e.kind == JOURNAL_KIND]
    print(
        json.dumps(
            {
                "handshakes": sum(c.handshakes for c in channels),
                "journaled": sum(len(journaled_requests(d)) for d in listings),
                "listings": len(listings),
                "entries": len(kinds),
                "chain_ok": journal.verify().ok,
                "spy": None if spy is None else spy.counts,
                "cpu_s": cpu,
            }
        ),
        flush=True,
    )
    store.close()


# --- the floor: a process that only copies bytes (--floor) -------------------------------------


def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            select.select([], [sock], [], 30)


def _pump_main(conf: dict[str, str]) -> None:
    """What any relay in its own process costs at least: the same unix socket in, the same TLS
    connection out (same key, same card time), and nothing but bytes copied both ways — no
    parsing, no allow-list, no journal. One thread, non-blocking sockets: an SSL connection is
    never used by two threads at once, and a TLS record that is not data (a session ticket)
    never blocks the copy."""
    context = card_tls.card_context(
        roots_pem=[Path(conf["root"]).read_text()],
        cert_chain=Path(conf["chain"]),
        key=Path(conf["key"]),
    )
    door = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    door.bind(conf["pump"])
    door.listen(1)
    print("ready", flush=True)
    conn, _ = door.accept()
    raw = _card_speed_connect(("127.0.0.1", int(conf["port"])), 30)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    upstream = context.wrap_socket(raw, server_hostname="127.0.0.1")
    conn.setblocking(False)
    upstream.setblocking(False)
    cpu = time.process_time()
    while True:
        ready = [upstream] if upstream.pending() else select.select([conn, upstream], [], [])[0]
        try:
            if conn in ready:
                data = conn.recv(65536)
                if not data:
                    break
                _send_all(upstream, data)
            if upstream in ready:
                data = upstream.recv(65536)
                if not data:
                    break
                _send_all(conn, data)
        except (ssl.SSLWantReadError, BlockingIOError):
            continue
    print(json.dumps({"cpu_s": time.process_time() - cpu}), flush=True)


def _socat(conf: dict[str, str], base: Path) -> subprocess.Popen[bytes] | None:
    """socat listening on its own unix socket, copying to a TLS connection to the service with
    the same key and chain (verified against the same root), or None when not installed. One
    connection, no fork: it ends with its client."""
    program = shutil.which("socat")
    if program is None:
        return None
    key_and_chain = base / "socat-client.pem"
    key_and_chain.write_bytes(Path(conf["key"]).read_bytes() + Path(conf["chain"]).read_bytes())
    key_and_chain.chmod(0o600)
    conf["socat"] = str(base / "socat.sock")
    proc = subprocess.Popen(
        [
            program,
            f"UNIX-LISTEN:{conf['socat']}",
            f"OPENSSL:127.0.0.1:{conf['port']},cert={key_and_chain},cafile={conf['root']},"
            "verify=1,nodelay,commonname=127.0.0.1",
        ],
        stdin=subprocess.DEVNULL,
    )
    for _ in range(200):  # bounded: 10 s
        if Path(conf["socat"]).is_socket():
            return proc
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("socat did not start")


# --- the practice software (this process) ----------------------------------------------------


class _Client:
    """Requests on one kept connection, each read to its end; the same client code for the relay
    (unix socket) and for the direct connection (TLS), so only the path differs."""

    def __init__(self, sock: socket.socket, target: str, body: bytes) -> None:
        self.sock, self.stream = sock, sock.makefile("rb")
        head = f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
        self.request = head.encode() + body

    def one(self) -> float:
        start = time.perf_counter()
        self.sock.sendall(self.request)
        length = 0
        while (line := self.stream.readline(65536)) != b"\r\n":
            if not line:
                raise ConnectionError("closed")
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        self.stream.read(length)
        return time.perf_counter() - start

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


def _child(role: str, conf: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--role", role, json.dumps(conf)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"a bench process ended early (exit {proc.wait()})")
    return line.strip()


def _end(proc: subprocess.Popen[str]) -> str:
    out, _ = proc.communicate(timeout=60)
    return out


def main(
    n: int, card: bool, every: bool, profile: str | None, floor: bool, nojournal: bool = False
) -> None:
    from balise.sim.pki import build_pki

    with tempfile.TemporaryDirectory(prefix="balise-bench-") as tmp:
        base = Path(tmp)
        pki = build_pki(base / "pki")
        server_cert = pki.issue_tls_server("bench-service", ["127.0.0.1"])
        service = _child(
            "service",
            {
                "cert": str(server_cert.cert_pem),
                "key": str(server_cert.key_pem),
                "chain": str(pki.chain_pem),
            },
        )
        port = int(_line(service))
        chain = base / "chain.pem"
        chain.write_bytes(
            pki.practitioner.authentication.cert_pem.read_bytes()
            + pki.intermediate.cert_pem.read_bytes()
        )
        conf = {
            "root": str(pki.root_pem),
            "chain": str(chain),
            "key": str(pki.practitioner.authentication.key_pem),
            "port": str(port),
            "socket": str(base / "relay.sock"),
            "data": str(base / "data"),
            "dir": tmp,
            "every": "1" if every else "",
            "nojournal": "1" if nojournal else "",
            "profile": profile or "",
            "pump": str(base / "pump.sock"),
        }
        if card:
            from balise.sim.softhsm import SoftHSM

            hsm = SoftHSM(base / "hsm")
            os.environ.update(hsm.env())
            token = hsm.create_token(TOKEN, pki.practitioner, pin=PIN, so_pin="87654321")
            conf.update(serial=token.serial, module=str(hsm.module))
        relay = _child("relay", conf)
        try:
            if _line(relay) != "ready":
                raise SystemExit("the relay did not start")
            body = b'{"nir": "1850575123456", "date": "2026-12-05"}' * 4
            unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            unix.settimeout(30)
            unix.connect(conf["socket"])
            relayed_client = _Client(unix, "/visio/droits", body)
            context = card_tls.card_context(
                roots_pem=[pki.root_pem.read_text()],
                cert_chain=pki.practitioner.authentication.cert_pem,
                key=pki.practitioner.authentication.key_pem,
            )
            pumped: list[float] = []
            pumped_cpu = 0.0
            pump_client = None
            socat = _socat(conf, base) if floor else None
            socat_client = None
            socated: list[float] = []
            if socat is not None:
                to_socat = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                to_socat.settimeout(30)
                to_socat.connect(conf["socat"])
                socat_client = _Client(to_socat, "/api/droits", body)
                socated.append(socat_client.one())
            if floor:
                pump = _child("pump", conf)
                if _line(pump) != "ready":
                    raise SystemExit("the byte pump did not start")
                to_pump = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                to_pump.settimeout(30)
                to_pump.connect(conf["pump"])
                pump_client = _Client(to_pump, "/api/droits", body)
                pumped.append(pump_client.one())
            relayed, direct = [relayed_client.one()], []
            start = time.perf_counter()
            raw = _card_speed_connect(("127.0.0.1", port), 30)  # the same card time
            direct_client = _Client(
                context.wrap_socket(raw, server_hostname="127.0.0.1"), "/api/droits", body
            )
            opening = time.perf_counter() - start
            direct.append(direct_client.one() + opening)
            for _ in range(n - 1):
                relayed.append(relayed_client.one())
                direct.append(direct_client.one())
                if pump_client is not None:
                    pumped.append(pump_client.one())
                if socat_client is not None:
                    socated.append(socat_client.one())
            relayed_client.close()
            direct_client.close()
            if socat_client is not None and socat is not None:
                socat_client.close()
                socat.wait(30)
            if pump_client is not None:
                pump_client.close()
                pumped_cpu = json.loads(_end(pump).strip().splitlines()[-1])["cpu_s"]
        finally:
            said = _end(relay)  # the relay's figures, once the practitioner closed it
            _end(service)
        result = json.loads(said.strip().splitlines()[-1])
    _report(n, card, every, relayed, direct, result, nojournal)
    if pumped:
        print(
            _floor_line(
                "floor, a process copying bytes only (no parsing, no journal)", pumped, direct
            )
            + f"; its CPU {pumped_cpu / n * 1e6:.0f} us a request"
        )
    if socated:
        print(_floor_line("floor in C, socat copying bytes only", socated, direct))
    elif floor:
        print("floor in C: socat is not installed here (apt install socat), not measured")


def _floor_line(what: str, times: list[float], direct: list[float]) -> str:
    """A floor's mean per request (the first, the opening, left out) and its ratios to direct."""
    mean, median = statistics.fmean(times[1:]), statistics.median(times[1:])
    return (
        f"{what}: {mean * 1000:.3f} ms: {mean / statistics.fmean(direct[1:]):.2f}x; median "
        f"{median / statistics.median(direct[1:]):.2f}x"
    )


def _report(
    n: int,
    card: bool,
    every: bool,
    relayed: list[float],
    direct: list[float],
    result: Any,
    nojournal: bool,
) -> None:
    what = (
        "SoftHSM2 card through pkcs11-provider (pkcs11-spy counting)"
        if card
        else "key in a FILE standing in for the card (no pkcs11-provider)"
    )
    spy = result["spy"]
    print(f"relay's key: {what}")
    print(
        f"card operations for {n} requests: {result['handshakes']} handshake(s) (target 1)"
        + (f"; pkcs11-spy: C_Login {spy['C_Login']}, C_SignInit {spy['C_SignInit']}" if spy else "")
    )
    if nojournal:
        print("journal: NONE (--without-journal, a diagnostic: the box journals every request)")
    else:
        print(
            f"journal (SQLite, {'one commit per request' if every else 'group commit'}): "
            f"{result['journaled']} requests of {n} listed by {result['listings']} entries, chain "
            + ("verified" if result["chain_ok"] else "BROKEN")
        )
    print(
        f"first request (channel opening, card held to {CARD_SECONDS * 1000:.0f} ms): "
        f"relay {relayed[0] * 1000:.1f} ms, direct {direct[0] * 1000:.1f} ms"
    )
    mean_r, mean_d = statistics.fmean(relayed[1:]), statistics.fmean(direct[1:])
    med_r, med_d = statistics.median(relayed[1:]), statistics.median(direct[1:])
    print(
        f"per request after it: relay {mean_r * 1000:.3f} ms, direct (reused TLS, key in a file) "
        f"{mean_d * 1000:.3f} ms: {mean_r / mean_d:.2f}x (target <= 1.3x); medians "
        f"{med_r * 1000:.3f} / {med_d * 1000:.3f} ms: {med_r / med_d:.2f}x"
    )
    print(
        f"relay process CPU (all its threads, the journal's included): "
        f"{result['cpu_s'] / n * 1e6:.0f} us a request"
    )
    print(
        f"whole run: relay {sum(relayed) * 1000:.1f} ms (its card time included), direct "
        f"{(sum(direct) - CARD_SECONDS) * 1000:.1f} ms (key in a file, no card time)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--card", action="store_true")
    parser.add_argument("--commit-every-request", action="store_true")
    parser.add_argument("--profile", metavar="FILE")
    parser.add_argument("--floor", action="store_true")
    parser.add_argument("--without-journal", action="store_true")
    parser.add_argument("--role", choices=["service", "relay", "pump"], help=argparse.SUPPRESS)
    parser.add_argument("conf", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "service":
        _service_main(json.loads(args.conf))
    elif args.role == "relay":
        _relay_main(json.loads(args.conf))
    elif args.role == "pump":
        _pump_main(json.loads(args.conf))
    else:
        main(
            max(2, args.requests),
            args.card,
            args.commit_every_request,
            args.profile,
            args.floor,
            args.without_journal,
        )
