"""Run INSIDE a Debian 13 chroot by tests/image/test_relay.py (the box's system: OpenSSL 3.5,
pkcs11-provider 1.0, Python 3.13, the image's own venv): the card's TLS channel for real.

SoftHSM2 holds the CPS-like card (authentication + signature keys, balise.sim.softhsm); nginx
from Debian is the online service (client certificate required, chain and CRLs checked); the
card's module is loaded through OpenSC's pkcs11-spy, whose log goes to a FIFO that a thread
reads and reduces to counts of C_Login and C_SignInit — the log itself (it prints PINs, a test
PIN here) is never written to a file. Prints one JSON object of what it observed."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

SPY = Path("/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so")
PIN = "735921"  # spelled nowhere else: found in a file, it could only be a leak
PORT = 44343


def crl_pem(issuer, revoked, now) -> bytes:  # type: ignore[no-untyped-def]
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(now - timedelta(hours=1))
        .next_update(now + timedelta(days=7))
    )
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(now - timedelta(hours=1))
            .build()
        )
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


class SpyCounter(threading.Thread):
    """Reads pkcs11-spy's log from a FIFO and keeps only the names of the calls."""

    def __init__(self, fifo: Path) -> None:
        super().__init__(daemon=True)
        self.fifo = fifo
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()

    def run(self) -> None:
        with self.fifo.open("rb") as stream:
            for line in stream:
                m = re.match(rb"^\d+: (C_\w+)", line)
                if m:
                    with self.lock:
                        name = m.group(1).decode()
                        self.counts[name] = self.counts.get(name, 0) + 1

    def get(self, name: str) -> int:
        with self.lock:
            return self.counts.get(name, 0)


class MemoryJournal:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, dict[str, object]]] = []

    def append(self, kind: str, subject: str = "", details=None, *, actor=None):  # type: ignore[no-untyped-def]
        self.rows.append((kind, subject, dict(details or {})))


def practice_get(path: Path, target: str, sock: socket.socket | None = None) -> tuple[int, bytes]:
    s = sock or socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if sock is None:
        s.settimeout(10)
        s.connect(str(path))
    s.sendall(f"GET {target} HTTP/1.1\r\nHost: relay\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += s.recv(65536)
    return int(head.split(b" ", 2)[1]), body


def whole_relay(lib, hsm, service, root_pem: str, work: Path) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from balise.adapters.clock import SystemClock
    from balise.adapters.pkcs11 import Pkcs11Signer
    from balise.app.relay import open_card_relay

    run = work / "run"
    run.mkdir(mode=0o700)
    journal = MemoryJournal()
    relay = open_card_relay(
        lib=lib,
        signer=Pkcs11Signer(lib, token_label="CPS-PULLED"),
        pin=bytearray(PIN.encode()),
        services={"visio": service},
        roots_pem=[root_pem],
        crl_file=None,
        journal=journal,  # type: ignore[arg-type]
        clock=SystemClock(),
        idle_seconds=600,
        socket_path=run / "relay.sock",
        allowed_uids={os.getuid()},
        runtime_dir=run,
    )
    res: dict[str, object] = {}
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(run / "relay.sock"))
    answers = [practice_get(run / "relay.sock", f"/visio/app{i}", sock) for i in range(5)]
    res["app.statuses"] = [a[0] for a in answers]
    res["app.who"] = "Dr Jeanne TEST" in answers[0][1].decode()
    res["app.other"] = practice_get(run / "relay.sock", "/other/x", sock)[0]
    state = relay.relay.state()
    res["app.state"] = [state.open, state.practitioner, state.requests, state.handshakes]
    hsm.delete_token("CPS-PULLED")  # the card pulled
    for _ in range(100):
        if not relay.relay.is_open:
            break
        time.sleep(0.1)
    res["app.closed_because"] = relay.relay.state().closed_because
    try:
        res["app.after_pull"] = practice_get(run / "relay.sock", "/visio/after", sock)[0]
    except (ConnectionError, OSError) as exc:
        res["app.after_pull"] = type(exc).__name__
    res["app.socket_left"] = (run / "relay.sock").exists()
    relay.close("stopped")
    res["app.journal_kinds"] = sorted({k for k, _s, _d in journal.rows})
    sock.close()
    return res


def relay_process(service, pki, work: Path) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """python -m balise.app.relay_main as the kiosk starts it: the PIN through a pipe, state in
    a status file, SIGTERM for the practitioner's key; then once more, closed by SIGUSR1 (the
    kiosk's watcher saw the card pulled)."""
    import signal

    from balise.adapters.kek import create_key_file
    from balise.app.context import open_context
    from balise.sim.softhsm import SoftHSM

    own = SoftHSM(work / "hsm-proc")  # the box has one card in its reader: one token here
    own.create_token("CPS-PROC", pki.practitioner, pin=PIN, so_pin="87654321")
    kek = work / "kek"
    create_key_file(kek)
    env = {**os.environ, **own.env(), "BALISE_KEK_FILE": str(kek)}
    env.pop("PKCS11SPY", None)
    env.pop("PKCS11SPY_OUTPUT", None)
    ctx = open_context(work / "data", actor="test", env=env)
    ctx.params.set("pkcs11_module", str(own.module))
    ctx.params.set("ca_bundle", pki.root_pem.read_text())
    ctx.params.set("relay_services", f"visio=https://127.0.0.1:{service.port}/api")
    ctx.close()
    sock_path, status = work / "proc.sock", work / "proc-status.json"

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "balise.app.relay_main",
                "--data-dir",
                str(work / "data"),
                "--socket",
                str(sock_path),
                "--allow-uid",
                str(os.getuid()),
                "--run-dir",
                str(work / "proc-run"),
                "--status",
                str(status),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert proc.stdin is not None
        proc.stdin.write(PIN.encode() + b"\n")
        proc.stdin.close()
        for _ in range(200):
            if sock_path.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        if not sock_path.exists():
            proc.kill()
            proc.wait(20)
            assert proc.stderr is not None
            early = proc.stderr.read().decode(errors="replace")[-3000:]
            raise RuntimeError("relay process did not start: " + early)
        return proc

    proc = start()
    res: dict[str, object] = {}
    res["proc.statuses"] = [practice_get(sock_path, f"/visio/p{i}")[0] for i in range(3)]
    for _ in range(50):
        text = status.read_text() if status.exists() else "{}"
        if json.loads(text).get("requests") == 3:
            break
        time.sleep(0.1)
    shown = json.loads(status.read_text())
    res["proc.status"] = [shown["open"], shown["practitioner"], shown["requests"]]
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    assert proc.stderr is not None
    err = proc.stderr.read()
    res["proc.exit"] = proc.returncode
    res["proc.stderr"] = err.decode(errors="replace")[-500:]
    closed = json.loads(status.read_text())
    res["proc.closed"] = [closed["open"], closed["closed_because"]]
    res["proc.socket_left"] = sock_path.exists()
    ctx = open_context(work / "data", actor="test", env=env)
    from balise.services.relay import JOURNAL_KIND, journaled_requests

    entries = list(ctx.journal.entries())
    kinds = [e.kind for e in entries]
    details = " ".join(e.details for e in entries)
    ctx.close()
    listed = [
        r
        for e in entries
        if e.kind == JOURNAL_KIND
        for r in journaled_requests(json.loads(e.details))
    ]
    res["proc.journal"] = [
        kinds.count("relay_open"),
        [(r["service"], r["method"], r["status"], r["answered_by"]) for r in listed],
        kinds.count("relay_close"),
    ]
    res["proc.pin_in_journal"] = PIN in details
    res["proc.pin_in_files"] = sorted(
        str(p.relative_to(work))
        for p in [status, *(work / "proc-run").iterdir()]
        if PIN.encode() in p.read_bytes()
    )
    # Once more, the card pulled as the kiosk's watcher says it: SIGUSR1, no wait for the relay's
    # own check of the card (the token is still there: only the signal can have closed it).
    status.unlink()
    proc = start()
    res["pulled.status"] = practice_get(sock_path, "/visio/before-pull")[0]
    for _ in range(100):  # its state written: the relay waits on its signals (relay_main.main)
        if status.exists() and json.loads(status.read_text())["open"]:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGUSR1)
    proc.wait(20)
    closed = json.loads(status.read_text())
    res["pulled.closed"] = [proc.returncode, closed["open"], closed["closed_because"]]
    res["pulled.socket_left"] = sock_path.exists()
    return res


def main() -> int:
    from balise.adapters import card_tls
    from balise.adapters.pkcs11 import Pkcs11Signer
    from balise.domain.relay import AllowedService
    from balise.sim.pki import build_pki
    from balise.sim.softhsm import SoftHSM

    work = Path(tempfile.mkdtemp(prefix="relay-"))
    out: dict[str, object] = {}
    pki = build_pki(work / "pki")
    revoked = pki.issue_practitioner("10000000002", "Dr REVOQUE TEST")
    hsm = SoftHSM(work / "hsm")
    os.environ.update(hsm.env())
    good = hsm.create_token("CPS-GOOD", pki.practitioner, pin=PIN, so_pin="87654321")
    bad = hsm.create_token("CPS-REVOKED", revoked, pin=PIN, so_pin="87654321")
    hsm.create_token("CPS-PULLED", pki.practitioner, pin=PIN, so_pin="87654321")

    server = pki.issue_tls_server("service", ["127.0.0.1"])
    (work / "client-cas.pem").write_bytes(pki.chain_pem.read_bytes())
    crls = crl_pem(pki.intermediate, [revoked.authentication.cert], pki.now) + crl_pem(
        pki.root, [], pki.now
    )
    (work / "crls.pem").write_bytes(crls)
    (work / "www").mkdir()
    conf = work / "nginx.conf"
    conf.write_text(
        f"""daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {work}/www;
  keepalive_requests 1000;
  keepalive_timeout 60s;
  server {{
    listen 127.0.0.1:{PORT} ssl;
    ssl_certificate {server.cert_pem};
    ssl_certificate_key {server.key_pem};
    ssl_client_certificate {work}/client-cas.pem;
    ssl_verify_client on;
    ssl_verify_depth 2;
    ssl_crl {work}/crls.pem;
    ssl_session_tickets off;
    ssl_session_cache off;
    location /api/ {{
      default_type text/plain;
      return 200 "who=$ssl_client_s_dn conn=$connection n=$connection_requests\\n";
    }}
  }}
}}
"""
    )
    nginx = subprocess.Popen(["nginx", "-c", str(conf)], stderr=subprocess.DEVNULL)
    for _ in range(100):
        if (work / "nginx.pid").exists():
            break
        time.sleep(0.05)

    fifo = work / "spy.fifo"
    os.mkfifo(fifo, 0o600)
    counter = SpyCounter(fifo)
    counter.start()
    os.environ["PKCS11SPY"] = str(hsm.module)
    os.environ["PKCS11SPY_OUTPUT"] = str(fifo)

    import pkcs11

    lib = pkcs11.lib(str(SPY))
    provider = card_tls.find_provider()
    assert provider is not None
    (work / "provider.cnf").write_text(card_tls.provider_config(provider, SPY))
    card_tls.load_provider(work / "provider.cnf")
    service = AllowedService("visio", "127.0.0.1", PORT, "/api")

    def channel_for(token_label: str, serial: str) -> tuple[object, card_tls.TlsChannel]:
        signer = Pkcs11Signer(lib, token_label=token_label)
        session = signer.login(bytearray(PIN.encode()), allowed_signatures=0)
        auth = card_tls.card_auth_certificate(lib, serial)
        chain = work / f"{token_label}.chain.pem"
        chain.write_text(auth.chain_pem())
        ref = work / f"{token_label}.key.pem"
        ref.write_text(card_tls.key_reference_pem(card_tls.key_uri(serial, auth.key_id)))
        out[f"{token_label}.key_id"] = auth.key_id.hex()
        ctx = card_tls.card_context(roots_pem=[pki.root_pem.read_text()], cert_chain=chain, key=ref)
        return session, card_tls.TlsChannel(ctx, service.host, service.port)

    def get(channel: card_tls.TlsChannel, path: str) -> tuple[int, bytes]:
        head = f"GET /api/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        raw, parsed = channel.exchange(head, b"", "GET")
        return int(parsed.first[1]), raw.split(b"\r\n\r\n", 1)[1]

    try:
        logins0, signs0 = counter.get("C_Login"), counter.get("C_SignInit")
        session, channel = channel_for("CPS-GOOD", good.serial)
        bodies = [get(channel, f"r{i}") for i in range(20)]
        time.sleep(0.3)  # the spy's last lines reach the FIFO
        out["good.statuses"] = sorted({s for s, _ in bodies})
        out["good.first"] = bodies[0][1].decode()
        out["good.last"] = bodies[-1][1].decode()
        out["good.connections"] = len({re.search(rb"conn=(\d+)", b).group(1) for _, b in bodies})  # type: ignore[union-attr]
        out["good.handshakes"] = channel.handshakes
        out["good.logins"] = counter.get("C_Login") - logins0
        out["good.signs"] = counter.get("C_SignInit") - signs0
        # Card logged out (pulled, or closed by the practitioner): the open connection is
        # closed by the relay; a new handshake cannot use the card any more.
        channel.close()
        session.close()  # type: ignore[attr-defined]
        try:
            get(channel, "after-logout")
            out["after_logout"] = "answered"
        except card_tls.ChannelBroken as exc:
            out["after_logout"] = exc.code
        time.sleep(0.3)
        out["after_logout.logins"] = counter.get("C_Login") - logins0

        session, channel = channel_for("CPS-REVOKED", bad.serial)
        try:
            status, body = get(channel, "revoked")
            out["revoked"] = [status, body[:200].decode(errors="replace")]
        except card_tls.ChannelBroken as exc:
            out["revoked"] = exc.code
        channel.close()
        session.close()  # type: ignore[attr-defined]
        # The whole relay as the box runs it (balise.app.relay): the practice software over the
        # unix socket, then the card pulled mid-session (its token deleted by another process).
        out.update(whole_relay(lib, hsm, service, pki.root_pem.read_text(), work))
        out.update(relay_process(service, pki, work))

        # Every file the channel wrote or read (the provider's configuration, the key references,
        # the certificate chains) and the service's log: the PIN is in none of them.
        written = [
            work / "provider.cnf",
            work / "nginx-error.log",
            *work.glob("CPS-*.pem"),
            *(work / "run").iterdir(),
        ]
        out["files_checked"] = len(written)
        out["pin_in_files"] = sorted(
            p.name for p in written if p.is_file() and PIN.encode() in p.read_bytes()
        )
    finally:
        nginx.terminate()
        nginx.wait(10)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
