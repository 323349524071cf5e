"""Issue 12, the mail part: a full disk fails closed. The box's data dir sits on a small real file
system (a size-capped tmpfs) that fills up before or during `balise purge --once` (the real CLI
against the real Dovecot): nothing whose outcome could not be committed is deleted from the BAL,
the run stops with DISK_FULL in words, the journal still verifies; once room is back the next run
drains everything, each message processed once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from balise.adapters.kek import create_key_file
from balise.adapters.pop3 import Pop3Mailbox
from balise.app.context import Context, open_context
from balise.domain.lotstate import LotState
from balise.domain.mailtransport import Pop3Settings
from balise.sim.dovecot import DovecotServer
from balise.sim.pki import TestPKI
from balise.sim.returnmail import spam_mail
from tests.support.balise_env import BaliseEnv
from tests.support.box import SyncedClock, configure_box
from tests.support.mail_fixtures import TlsCA
from tests.support.poison_mail import arl_mail
from tests.support.purge_support import MAILBOXES, configure_pop3, fresh_lot
from tests.support.small_fs import SmallFs

pytestmark = pytest.mark.mail

LOTS = (1, 2, 3, 4, 5, 6)
SPAM_BODY = 400_000  # each spam's encrypted copy is kept in quarantine: room taken per message


@dataclass
class SmallBox:
    env: BaliseEnv
    ctx: Context
    fs: SmallFs
    lots: dict[int, int]


@pytest.fixture
def small_box(
    small_fs: Callable[[int], SmallFs],
    tmp_path: Path,
    pki: TestPKI,
    mailboxes: DovecotServer,
    tls_ca: TlsCA,
) -> Iterator[SmallBox]:
    """A configured box whose data dir (database, exchange folders) is on an 8 MiB tmpfs, its
    KEK beside it on the ordinary disk, lots 1-6 sent, the BAL configured."""
    fs = small_fs(8 * 1024)
    kek = tmp_path / "balise.kek"
    create_key_file(kek)
    env = BaliseEnv(fs.root / "data", kek)
    ctx = open_context(env.home, actor="test", env=env.env, clock=SyncedClock())
    try:
        configure_box(ctx, pki)
        configure_pop3(ctx, mailboxes, tls_ca)
        lots = {n: fresh_lot(ctx, n) for n in LOTS}
        ctx.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        yield SmallBox(env, ctx, fs, lots)
    finally:
        ctx.close()


def _mails() -> list[bytes]:
    """Each lot's ARL, a big spam after each."""
    mails: list[bytes] = []
    for number in LOTS:
        mails.append(arl_mail(number))
        spam = spam_mail().replace(b"Subject:", f"Subject: {number}".encode(), 1)
        mails.append(spam + b"\r\n" + b"S" * SPAM_BODY + b"\r\n")
    return mails


def _server_uidls(server: DovecotServer, tls_ca: TlsCA) -> set[str]:
    settings = Pop3Settings(
        "127.0.0.1", server.pop3s_port, "implicit", "bal1", MAILBOXES["bal1"],
        (tls_ca.ca_pem.read_text(),),
    )  # fmt: skip
    session = Pop3Mailbox().open(settings)
    try:
        return set(session.uidl().values())
    finally:
        session.close()  # no QUIT: deletes nothing


def _committed(ctx: Context) -> set[str]:
    rows = ctx.store.conn.execute("SELECT uidl FROM mail_seen WHERE profile = 'p1'")
    return {str(r[0]) for r in rows}


def _states(box: SmallBox) -> dict[int, LotState]:
    return {n: box.ctx.lots.get(i).state for n, i in box.lots.items()}  # type: ignore[union-attr]


def _drains_after_room_is_back(box: SmallBox, server: DovecotServer, all_uidls: set[str]) -> None:
    box.fs.free()
    run = box.env.run("purge", "--once")
    assert run.returncode in (0, 1), run.stdout + run.stderr  # 1: the unknown-mail alert
    assert server.maildir_count("bal1") == 0
    assert _committed(box.ctx) == all_uidls  # each message has its one outcome
    assert _states(box) == dict.fromkeys(LOTS, LotState.ACKNOWLEDGED)
    acks = [
        e
        for e in box.ctx.journal.entries()
        if e.kind == "lot.state" and json.loads(e.details).get("to") == "acknowledged"
    ]
    assert len(acks) == len(LOTS)  # each ARL applied once
    assert len(box.ctx.returns_store.mail_quarantine()) == len(LOTS)
    assert box.env.run("journal", "verify").returncode == 0


def test_disk_full_before_the_run_deletes_nothing_then_the_next_run_drains(
    small_box: SmallBox, mailboxes: DovecotServer, tls_ca: TlsCA
) -> None:
    for raw in _mails():
        mailboxes.deliver("bal1", raw)
    all_uidls = _server_uidls(mailboxes, tls_ca)
    small_box.fs.fill()

    run = small_box.env.run("purge", "--once")

    assert run.returncode == 1, run.stdout + run.stderr
    assert "[DISK_FULL]" in run.stderr and "Disque plein" in run.stderr
    assert "Traceback" not in run.stderr
    assert _server_uidls(mailboxes, tls_ca) == all_uidls  # every message still on the server
    assert _committed(small_box.ctx) == set()  # nothing recorded as done
    assert small_box.ctx.tracking().returns() == []
    verify = small_box.env.run("journal", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    _drains_after_room_is_back(small_box, mailboxes, all_uidls)


def test_disk_filling_up_during_the_run_deletes_only_what_was_committed(
    small_box: SmallBox, mailboxes: DovecotServer, tls_ca: TlsCA
) -> None:
    for raw in _mails():
        mailboxes.deliver("bal1", raw)
    all_uidls = _server_uidls(mailboxes, tls_ca)
    # Room for a few commits, not for the quarantine copies of every spam.
    small_box.fs.fill(leave=3 * SPAM_BODY)

    run = small_box.env.run("purge", "--once")

    assert run.returncode == 1, run.stdout + run.stderr
    assert "[DISK_FULL]" in run.stderr and "Traceback" not in run.stderr
    committed = _committed(small_box.ctx)
    left = _server_uidls(mailboxes, tls_ca)
    assert 0 < len(committed) < len(all_uidls)  # it did fill up mid-way
    # Fail closed: whatever left the server had its outcome committed; the rest is all there.
    assert all_uidls - left <= committed
    assert left == all_uidls - committed
    # The kiosk is told, in words, while there is still room for an alert.
    alerts = small_box.ctx.tracking().alerts()
    assert [a.kind for a in alerts] == ["disk_full"] and "Disque plein" in alerts[0].fr
    verify = small_box.env.run("journal", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    _drains_after_room_is_back(small_box, mailboxes, all_uidls)


def test_full_exchange_disk_keeps_the_returns_recorded_and_publishes_them_later(
    small_fs: Callable[[int], SmallFs],
    tmp_path: Path,
    pki: TestPKI,
    mailboxes: DovecotServer,
    tls_ca: TlsCA,
) -> None:
    # The exchange account's folders on their own small file system, full; the database has
    # room. The returns are recorded and the BAL relieved, retours/ cannot be written: the run
    # says DISK_FULL, raises the disk_full alert, and a later run writes every return file.
    fs = small_fs(1024)
    kek = tmp_path / "balise.kek"
    create_key_file(kek)
    env = BaliseEnv(tmp_path / "data", kek)
    with_exchange = {**env.env, "BALISE_EXCHANGE": str(fs.root / "echange")}
    ctx = open_context(env.home, actor="test", env=with_exchange, clock=SyncedClock())
    try:
        configure_box(ctx, pki)
        configure_pop3(ctx, mailboxes, tls_ca)
        for number in (1, 2):
            fresh_lot(ctx, number)
            mailboxes.deliver("bal1", arl_mail(number))
        fs.fill()

        run = env.run("purge", "--once", env=with_exchange)

        assert run.returncode == 1, run.stdout + run.stderr
        assert "[DISK_FULL]" in run.stderr and "retours/" in run.stderr
        assert mailboxes.maildir_count("bal1") == 0  # their outcomes were committed first
        assert [r.status for r in ctx.tracking().returns()] == ["applied", "applied"]
        assert [a.kind for a in ctx.tracking().alerts()] == ["disk_full"]
        assert not list((fs.root / "echange").rglob("*.retour"))
        fs.free()
        again = env.run("purge", "--once", env=with_exchange)
        assert again.returncode == 0, again.stdout + again.stderr
        assert len(list((fs.root / "echange").rglob("*.retour"))) == 2
        assert ctx.returns_store.returns(unpublished=True) == []
    finally:
        ctx.close()
