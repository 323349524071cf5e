"""`balise agent` against real Dovecot and aiosmtpd: one cycle takes a dropped lot, retries nothing
that is not due and empties the mailbox; SIGTERM ends a long run cleanly; the send and purge locks
hold across real processes, so a lot is never sent twice."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path

import pytest

from balise.adapters.locks import send_lock
from balise.adapters.outbox import SqliteOutbox
from balise.app.agent import STATUS_FILE, read_status
from balise.domain.lotstate import LotState
from balise.sim.dovecot import DovecotServer
from balise.sim.netutil import free_tcp_port
from balise.sim.pki import TestPKI
from balise.sim.smtpd import Received, SmtpServer
from tests.support.balise_env import BALISE
from tests.support.bounded_wait import wait_until
from tests.support.box import Box
from tests.support.clock import TEST_TODAY
from tests.support.lot_corpus import valid_lot
from tests.support.mail_fixtures import SMTP_PASSWORD, SMTP_USER, TlsCA
from tests.support.purge_support import configure_pop3
from tests.support.signed_lots import configure_smtp, sign_lots

pytestmark = pytest.mark.mail

UNKNOWN_MAIL = (
    b"From: promo@example.org\r\nTo: xyz999212@bal.example.net\r\nSubject: Offre\r\n"
    b"Message-ID: <promo1@example.org>\r\n\r\nBonjour\r\n"
)


def drop(box: Box, name: str, data: bytes) -> Path:
    """Deposit a lot the way the practice software does: depot/tmp, then rename into depot/new."""
    root = box.env.home / "echange" / "depot"
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    (root / "new").mkdir(parents=True, exist_ok=True)
    (root / "tmp" / name).write_bytes(data)
    (root / "tmp" / name).rename(root / "new" / name)
    return root / "new" / name


def states(box: Box) -> dict[int, LotState]:
    return {lot.id: lot.state for lot in box.ctx.lots.lots()}


def message_ids(server: SmtpServer) -> list[str]:
    return [str(message_from_bytes(r.data)["Message-ID"]) for r in server.received]


@pytest.fixture
def popen_reaper() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; killed at teardown if still running."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def start(box: Box, procs: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [BALISE, *args],
        env=box.env.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs.append(proc)
    return proc


@pytest.fixture
def slow_smtp(tls_ca: TlsCA) -> Iterator[SmtpServer]:
    """Implicit-TLS SMTP taking 0.6 s per message: a sending session lasts long enough for a
    second process to arrive while it runs."""

    def slow(_message: Received) -> None:
        time.sleep(0.6)

    server = SmtpServer(
        host="127.0.0.1",
        port=free_tcp_port(),
        cert_pem=tls_ca.cert_pem,
        key_pem=tls_ca.key_pem,
        users={SMTP_USER: SMTP_PASSWORD},
        tls="implicit",
        handler_hook=slow,
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


def journal_kinds(box: Box) -> list[str]:
    return [e.kind for e in box.ctx.journal.entries()]


def test_one_cycle_takes_the_depot_retries_nothing_not_due_and_purges(
    box: Box, pki: TestPKI, dovecot: DovecotServer, smtp_implicit: SmtpServer, tls_ca: TlsCA
) -> None:
    ctx = box.ctx
    configure_pop3(ctx, dovecot, tls_ca)
    # A signed lot whose first try failed (nothing listening): back to "signed", retried later.
    [waiting] = sign_lots(ctx, pki, [1])
    configure_smtp(ctx, None, tls_ca, tls="implicit", port=free_tcp_port())
    assert box.env.run("send").returncode == 1
    delivery = SqliteOutbox(ctx.store).delivery(waiting)
    assert delivery is not None and delivery.next_attempt is not None
    assert datetime.fromisoformat(delivery.next_attempt) > datetime.now(UTC)
    configure_smtp(ctx, smtp_implicit, tls_ca)
    dropped = drop(box, "lot50.lot", valid_lot(TEST_TODAY, lot_number=50))
    dovecot.deliver("bal1", UNKNOWN_MAIL)
    assert dovecot.maildir_count("bal1") == 1

    done = box.env.run("agent", "--once")

    assert done.returncode == 0, done.stdout + done.stderr
    assert not dropped.exists()
    new = [lot for lot in ctx.lots.lots() if lot.lot_number == "050"]
    assert len(new) == 1 and new[0].state is LotState.READY
    assert states(box)[waiting] is LotState.SIGNED  # not due: not retried early
    assert smtp_implicit.received == [] and smtp_implicit.commands == []
    assert dovecot.maildir_count("bal1") == 0
    status = read_status(box.env.home)
    assert status is not None and status["state"] == "arrêté" and status["cycles"] == 1
    p1 = status["profiles"]["p1"]
    assert p1["last_purge"] is not None and p1["next_purge"] > p1["last_purge"]
    assert p1["network"] == "ok" and "1 supprimé(s)" in p1["purge_fr"]
    assert "agent.started" in journal_kinds(box) and "agent.stopped" in journal_kinds(box)


def test_a_failing_step_is_journaled_alerted_and_the_loop_goes_on(box: Box, tls_ca: TlsCA) -> None:
    ctx = box.ctx
    # A mailbox on a port where nothing listens: the network is "down" for POP3.
    ctx.params.set("ca_bundle", tls_ca.ca_pem.read_text())
    ctx.params.set("pop3.host", "127.0.0.1", profile="p1")
    ctx.params.set("pop3.port", str(free_tcp_port()), profile="p1")
    ctx.params.set("pop3.user", "bal1", profile="p1")
    ctx.params.set("pop3.password", "pop-secret-1", profile="p1")
    ctx.params.set("pop3.interval", "30", profile="p1")
    drop(box, "lot51.lot", valid_lot(TEST_TODAY, lot_number=51))

    done = box.env.run("agent", "--max-cycles", "3", "--interval-scale", "0.01")

    assert done.returncode == 0, done.stderr
    # The agent speaks through logging: stderr lines with their code outside systemd.
    assert "purge:p1" in done.stderr and "échec" in done.stderr
    assert "balise-agent: avertissement :" in done.stderr and "[POP3_" in done.stderr
    assert [lot.state for lot in ctx.lots.lots() if lot.lot_number == "051"] == [LotState.READY]
    failures = [e for e in ctx.journal.entries() if e.kind == "agent.step_failed"]
    assert failures and all(e.subject == "agent:purge:p1" for e in failures)
    status = read_status(box.env.home)
    assert status is not None and status["cycles"] == 3
    assert status["profiles"]["p1"]["network_fr"] == "en attente de réseau"
    assert status["failing_steps"]["purge:p1"]["failures"] >= 1


def test_sigterm_during_a_long_run_exits_cleanly(
    box: Box,
    dovecot: DovecotServer,
    tls_ca: TlsCA,
    popen_reaper: list[subprocess.Popen[str]],
) -> None:
    configure_pop3(box.ctx, dovecot, tls_ca)
    box.ctx.params.set("pop3.interval", "30", profile="p1")  # × 0.01: a purge every 0.3 s
    proc = start(box, popen_reaper, "agent", "--interval-scale", "0.01")
    wait_until(lambda: (read_status(box.env.home) or {}).get("cycles", 0) >= 2)
    dovecot.deliver("bal1", UNKNOWN_MAIL)  # the running loop purges it on its own
    wait_until(lambda: dovecot.maildir_count("bal1") == 0)

    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)

    assert proc.returncode == 0, err
    assert time.monotonic() - began < 10
    assert "arrêté" in err
    status = json.loads((box.env.home / STATUS_FILE).read_text(encoding="utf-8"))
    assert status["state"] == "arrêté"
    assert journal_kinds(box)[-1] == "agent.stopped"


def test_the_purge_lock_holds_across_processes(
    box: Box, dovecot: DovecotServer, tls_ca: TlsCA
) -> None:
    configure_pop3(box.ctx, dovecot, tls_ca)
    dovecot.deliver("bal1", UNKNOWN_MAIL)
    with box.ctx.returns_store.lock("p1"):
        purge = box.env.run("purge", "--profile", "p1")
        agent = box.env.run("agent", "--once")
        assert dovecot.maildir_count("bal1") == 1
    assert purge.returncode == 1 and "[PURGE_LOCKED]" in purge.stderr
    assert agent.returncode == 0 and "déjà en cours" in agent.stderr
    assert box.env.run("agent", "--once").returncode == 0
    assert dovecot.maildir_count("bal1") == 0


def test_two_processes_sending_never_send_a_lot_twice(
    box: Box,
    pki: TestPKI,
    slow_smtp: SmtpServer,
    tls_ca: TlsCA,
    popen_reaper: list[subprocess.Popen[str]],
) -> None:
    ctx = box.ctx
    ctx.params.set("code6", "123456", profile="p1")
    first = sign_lots(ctx, pki, range(1, 7))
    configure_smtp(ctx, slow_smtp, tls_ca)

    # The lock held by another process (this one): `balise send` says so and sends nothing.
    with send_lock(box.env.home / "locks")("p1"):
        held = box.env.run("send", "--profile", "p1")
    assert held.returncode == 1 and "envoi déjà en cours" in held.stderr
    assert slow_smtp.received == [] and all(states(box)[i] is LotState.SIGNED for i in first)

    # A sender in its session; an agent cycle arriving meanwhile skips sending.
    sender = start(box, popen_reaper, "send")
    wait_until(lambda: len(slow_smtp.received) >= 1)
    agent = box.env.run("agent", "--once")
    _out, err = sender.communicate(timeout=60)
    assert sender.returncode == 0, err
    assert "envoi déjà en cours" in agent.stderr, agent.stderr

    # Two processes started together on fresh lots.
    second = sign_lots(ctx, pki, range(7, 13))
    racers = [start(box, popen_reaper, "send"), start(box, popen_reaper, "agent", "--once")]
    for racer in racers:
        racer.communicate(timeout=60)
        assert racer.returncode in (0, 1)

    ids = message_ids(slow_smtp)
    assert len(ids) == len(first) + len(second) == len(set(ids))
    assert all(states(box)[i] is LotState.SENT for i in first + second)
    subjects = [str(message_from_bytes(r.data)["Subject"]) for r in slow_smtp.received]
    assert all(s.startswith("IR123456/") for s in subjects)  # the profile's code6


def test_the_daily_backup_goes_to_the_exchange_share_only(box: Box, tmp_path: Path) -> None:
    box.ctx.params.set("recovery_passphrase", "phrase de secours du cabinet 42")
    # A directory where the agent once looked for a USB key: the key is the plug-triggered
    # unit's business now (balise-usb-backup@.service), the agent never writes there.
    stray = tmp_path / "usb-sauvegarde"
    stray.mkdir()
    env = {**box.env.env, "BALISE_BACKUP_USB": str(stray)}

    first = subprocess.run(
        [BALISE, "agent", "--once"], env=env, capture_output=True, text=True, timeout=120
    )
    again = subprocess.run(
        [BALISE, "agent", "--once"], env=env, capture_output=True, text=True, timeout=120
    )

    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    share = box.env.home / "echange" / "sauvegardes"
    [archive] = share.glob("balise-*.sauvegarde")  # one: the second run found it a day young
    assert archive.read_bytes()[:8] == b"BALSAV\x00\x01"
    assert list(stray.iterdir()) == []
    created = [e for e in box.ctx.journal.entries() if e.kind == "backup.created"]
    assert [json.loads(e.details)["dest"] for e in created] == [str(share)]
