"""Sending cost: 50 signed lots through ONE Balise SMTP session against msmtp run once per lot,
same aiosmtpd server (implicit TLS + AUTH on loopback), same frozen mails. Target ratio ≤ 0.15.

Balise's time includes everything ``send_pending`` does: freezing each lot's mail (compostage
counter, journal, durable commit) and the durable commit after each 250. msmtp (Debian package
``msmtp``, installed with apt-get when missing) gets each mail already built.
Usage: .venv/bin/python bench/send.py [N]
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trustme

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.support

from balise.adapters.kek import create_key_file
from balise.adapters.outbox import SqliteOutbox
from balise.app.context import open_context
from balise.domain.lotmail import mail_envelope_addresses
from balise.sim.netutil import free_tcp_port
from balise.sim.pki import build_pki
from balise.sim.smtpd import SmtpServer
from tests.support.box import configure_box
from tests.support.mail_fixtures import SMTP_PASSWORD, SMTP_USER
from tests.support.signed_lots import configure_smtp, sign_lots


def ensure_msmtp() -> str:
    found = shutil.which("msmtp")
    if found:
        return found
    print("msmtp absent : apt-get install -y msmtp")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-q", "msmtp"], check=True, env=env, timeout=600)
    found = shutil.which("msmtp")
    if not found:
        raise SystemExit("msmtp still missing after apt-get install")
    return found


class _Tls:
    def __init__(self, directory: Path) -> None:
        ca = trustme.CA(organization_name="Balise bench CA")
        server = ca.issue_cert("localhost", "127.0.0.1")
        self.ca_pem = directory / "ca.pem"
        self.cert_pem = directory / "server.pem"
        self.key_pem = directory / "server.key"
        ca.cert_pem.write_to_path(str(self.ca_pem))
        server.cert_chain_pems[0].write_to_path(str(self.cert_pem))
        server.private_key_pem.write_to_path(str(self.key_pem))


def main(n: int) -> None:
    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's per-session chatter
    msmtp = ensure_msmtp()
    with tempfile.TemporaryDirectory(prefix="balise-bench-") as tmp:
        base = Path(tmp)
        tls = _Tls(base)
        pki = build_pki(base / "pki")
        server = SmtpServer(
            host="127.0.0.1",
            port=free_tcp_port(),
            cert_pem=tls.cert_pem,
            key_pem=tls.key_pem,
            users={SMTP_USER: SMTP_PASSWORD},
            tls="implicit",
        )
        kek = base / "kek"
        create_key_file(kek)
        ctx = open_context(base / "data", actor="bench", env={"BALISE_KEK_FILE": str(kek)})
        server.start()
        try:
            configure_box(ctx, pki)
            configure_smtp(ctx, server, tls)  # type: ignore[arg-type]
            ids = sign_lots(ctx, pki, range(1, n + 1))
            service = ctx.transmission(timeout=30)

            start = time.perf_counter()
            outcome = asyncio.run(service.send_pending("p1"))
            balise_s = time.perf_counter() - start
            assert len(outcome.sent) == n, outcome
            server.wait_received(n)

            outbox = SqliteOutbox(ctx.store)
            mails = [outbox.delivery(i).mail for i in ids]  # type: ignore[union-attr]
            password_file = base / "smtp-password"
            password_file.write_text(SMTP_PASSWORD)
            start = time.perf_counter()
            for mail in mails:
                assert mail is not None
                mail_from, rcpt = mail_envelope_addresses(mail)
                subprocess.run(
                    [
                        msmtp,
                        "--host=127.0.0.1",
                        f"--port={server.port}",
                        "--tls=on",
                        "--tls-starttls=off",
                        f"--tls-trust-file={tls.ca_pem}",
                        "--domain=bench.balise.test",  # no DNS lookup for the EHLO name
                        "--auth=on",
                        f"--user={SMTP_USER}",
                        f"--passwordeval=cat {password_file}",
                        f"--from={mail_from}",
                        "--",
                        rcpt,
                    ],
                    input=mail,
                    check=True,
                    timeout=30,
                )
            msmtp_s = time.perf_counter() - start
            received = server.wait_received(2 * n)
            assert received[n].data.replace(b"\r\n", b"\n") == mails[0].replace(b"\r\n", b"\n")  # type: ignore[union-attr]
        finally:
            server.stop()
            ctx.close()
    ratio = balise_s / msmtp_s
    print(f"{n} lots, Balise (1 session, freeze + durable commits): {balise_s * 1000:8.1f} ms")
    print(f"{n} lots, msmtp (1 process per lot):                    {msmtp_s * 1000:8.1f} ms")
    print(
        f"ratio Balise / msmtp: {ratio:.3f} (objectif ≤ 0.15) {'OK' if ratio <= 0.15 else 'HORS OBJECTIF'}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
