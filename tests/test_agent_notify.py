"""The agent as a `Type=notify` service with a watchdog (issue 16): `balise agent` told where to
speak by NOTIFY_SOCKET — a real unix datagram socket standing for systemd's (the protocol is the
datagrams; PID 1 reads exactly these) — says READY=1 with its status line, pings WATCHDOG=1, keeps
STATUS= (last purge, last send, alerts waiting) and says STOPPING=1; a purge of many messages,
one long step, pings from inside it (against real Dovecot)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from balise.adapters.systemd import Notifier
from balise.app.agent import Agent
from balise.sim.dovecot import DovecotServer
from tests.support.box import Box
from tests.support.mail_fixtures import TlsCA
from tests.support.notify import Manager
from tests.support.purge_support import configure_pop3

pytestmark = pytest.mark.mail

UNKNOWN_MAIL = (
    b"From: promo@example.org\r\nTo: xyz999212@bal.example.net\r\nSubject: Offre %d\r\n"
    b"Message-ID: <promo%d@example.org>\r\n\r\nBonjour\r\n"
)


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Manager]:
    manager = Manager(str(tmp_path / "notify"))
    yield manager
    manager.close()


def test_the_agent_says_ready_pings_the_watchdog_shows_its_status_and_says_stopping(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA, manager: Manager
) -> None:
    path = manager.path
    configure_pop3(box.ctx, mailboxes, tls_ca)
    env = {**box.env.env, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
    done = box.env.run("agent", "--max-cycles", "2", "--interval-scale", "0.01", env=env)
    assert done.returncode == 0, done.stderr

    said = manager.close()
    assert said[0].startswith("READY=1\nSTATUS=aucune relève ; aucun envoi ; "), said
    assert "WATCHDOG=1" in said
    assert said[-1] == "STOPPING=1\nSTATUS=arrêt en cours"
    statuses = [d.removeprefix("STATUS=") for d in said if d.startswith("STATUS=")]
    # After the purge: when, for whom; nothing sent yet; the backup alert (no backup yet) waits.
    assert any(
        s.startswith("dernière relève : ") and "(p1) ; aucun envoi ; 1 alerte(s) en attente" in s
        for s in statuses
    ), statuses
    assert all("\n" not in d.removeprefix("READY=1\n") for d in said if d.startswith("STATUS="))


def test_a_long_purge_pings_the_watchdog_from_inside(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA, manager: Manager
) -> None:
    path = manager.path
    ctx = box.ctx
    configure_pop3(ctx, mailboxes, tls_ca)
    messages = 40
    for n in range(messages):
        mailboxes.deliver("bal1", UNKNOWN_MAIL % (n, n))
    # A 4 µs watchdog: every call may ping (the rate limit is a quarter of the interval).
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4"})
    agent = Agent(ctx, env=box.env.env, interval_scale=0.01, notifier=notifier)
    try:
        report = agent.cycle()
    finally:
        agent.close()
        notifier.close()
    assert report.failed == [] and report.purged == messages
    pings = manager.close().count("WATCHDOG=1")
    # Between steps the cycle pings twice per step (six steps here, a backup chunk or two);
    # one ping per purged message comes from inside the purge.
    assert pings >= messages, pings
