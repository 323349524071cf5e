"""Publication to the exchange account's retours/ after a purge: only what is new is written (the
payload of each new return, the status file of each lot whose status changed), every file whole
or absent; a purge with nothing new, or a publication replayed after a crash, writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from balise.sim.dovecot import DovecotServer
from tests.support.box import EMITTER, Box
from tests.support.mail_fixtures import TlsCA
from tests.support.purge_support import arl_mail, configure_pop3, fresh_lot, noemie_mail

pytestmark = pytest.mark.mail

LOTS = 12

Seen = dict[str, tuple[int, int]]


def _seen(folder: Path) -> Seen:
    """Every file of ``folder`` with what changes when it is written again (inode and date)."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}


def _purge(box: Box, mailboxes: DovecotServer, mails: list[bytes]) -> None:
    for raw in mails:
        mailboxes.deliver("bal1", raw)
    run = box.env.run("purge", "--once", "--profile", "p1")
    assert run.returncode == 0, run.stdout + run.stderr
    assert mailboxes.maildir_count("bal1") == 0


def test_each_purge_publishes_only_what_is_new_and_a_replay_writes_nothing(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA
) -> None:
    configure_pop3(box.ctx, mailboxes, tls_ca)
    lots = {n: fresh_lot(box.ctx, n) for n in range(1, LOTS + 1)}
    half = LOTS // 2
    retours = box.ctx.exchange(box.env.env).retours / EMITTER

    _purge(box, mailboxes, [arl_mail(n) for n in range(1, half + 1)])
    first = _seen(retours)
    # one payload per return, one status file per lot it touched: O(N) files, all whole
    assert sum(name.endswith(".retour") for name in first) == half
    statuses = sorted(name for name in first if name.endswith(".statut.json"))
    assert len(statuses) == half and len(first) == 2 * half
    assert all(json.loads((retours / n).read_text())["etat"] == "acknowledged" for n in statuses)

    # the other lots' ARLs, and a NOEMIE paying lot 1: their files are new, and lot 1's status
    # is the only file of the first purge written again
    lot1 = box.ctx.lots.get(lots[1])
    assert lot1 is not None
    status1 = f"lot-{lot1.lot_date}-{lot1.lot_number}.statut.json"
    mails = [arl_mail(n) for n in range(half + 1, LOTS + 1)]
    _purge(box, mailboxes, [*mails, noemie_mail(1)])
    second = _seen(retours)
    assert len(set(second) - set(first)) == (LOTS - half) * 2 + 1
    assert {name for name in first if second[name] != first[name]} == {status1}
    assert len(json.loads((retours / status1).read_text())["paiements"]) == 2

    # nothing new in the mailbox: nothing written
    _purge(box, mailboxes, [])
    assert _seen(retours) == second

    # a crash after the files were written and before the batch was recorded as published: the
    # next run publishes again and finds every file already there, whole: it writes none
    with box.ctx.store.write():
        box.ctx.store.conn.execute("UPDATE returns SET published = 0")
    _purge(box, mailboxes, [])
    assert _seen(retours) == second
    assert box.ctx.returns_store.returns(unpublished=True) == []
    assert not [p for p in retours.parent.rglob(".*.tmp")]
