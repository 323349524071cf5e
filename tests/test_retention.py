"""Evidence retention: old lots, returns, alerts and a 10,000-entry journal prefix purged; the chain
stays verifiable from the checkpoint anchor, across purges and across a backup and restore."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from balise.adapters.clock import FixedClock
from balise.app.backup import backup_service, retention_service
from balise.app.context import Context, open_context
from balise.domain.lotstate import LotState
from balise.sim.box import configure_box
from balise.sim.pki import TestPKI
from tests.support.balise_env import BaliseEnv
from tests.support.clock import TEST_NOW
from tests.support.mail_corpus import ARL_POS
from tests.support.purge_support import fresh_lot
from tests.support.sauvegarde_support import RECOVERY, record_return

OLD_ENTRIES = 10_000
FOUR_YEARS = timedelta(days=4 * 365)


def _age(ctx: Context, lot_id: int, when: datetime) -> None:
    # Test setup only: lots lived four years ago (their journal lines are recent, which only
    # makes the journal keep them).
    stamp = when.isoformat(timespec="seconds")
    with ctx.store.write():
        ctx.store.conn.execute(
            "UPDATE lots SET received = ?, state_changed = ? WHERE id = ?", (stamp, stamp, lot_id)
        )


def _old_era(balise_env: BaliseEnv, when: datetime) -> list[str]:
    """10,000 journal entries, a damaged return and an acknowledged alert, four years ago."""
    old = open_context(balise_env.home, actor="agent", env=balise_env.env, clock=FixedClock(when))
    try:
        with old.store.write():
            for i in range(OLD_ENTRIES):
                old.journal.append("test.filler", f"n{i}", {"i": i})
        assert record_return(old, balise_env.env, ARL_POS[:-40], "old-damaged") == "damaged"
        tracking = old.tracking(balise_env.env)
        for alert in tracking.alerts():
            tracking.acknowledge(alert.id, "test")
        return [e.hash for e in old.journal.entries()]
    finally:
        old.close()


def test_retention_on_10000_entries_keeps_the_chain_verifiable_and_recent_evidence(
    balise_env: BaliseEnv, pki: TestPKI, other_box: BaliseEnv, tmp_path: Path
) -> None:
    now = TEST_NOW
    old_hashes = _old_era(balise_env, now - FOUR_YEARS)
    ctx = open_context(balise_env.home, actor="test", env=balise_env.env)
    try:
        configure_box(ctx, pki)
        ctx.params.set("recovery_passphrase", RECOVERY)
        moves = ctx.transitions()
        cancelled = fresh_lot(ctx, 30, sent=False)
        moves.move(cancelled, LotState.READY, LotState.CANCELLED)
        acked = fresh_lot(ctx, 31)
        moves.move(acked, LotState.SENT, LotState.ACKNOWLEDGED)
        still_sent = fresh_lot(ctx, 32)
        recent_terminal = fresh_lot(ctx, 33, sent=False)
        moves.move(recent_terminal, LotState.READY, LotState.CANCELLED)
        for lot_id in (cancelled, acked, still_sent):
            _age(ctx, lot_id, now - FOUR_YEARS)
        assert record_return(ctx, balise_env.env, ARL_POS[:-40], "new-damaged") == "damaged"
        before_total = sum(1 for _ in ctx.journal.entries())
    finally:
        ctx.close()

    run = balise_env.run("retention", "run")  # default period: three years
    assert run.returncode == 0, run.stderr
    assert f"{len(old_hashes)} entrée(s) retirée(s)" in run.stdout

    ctx = open_context(balise_env.home, actor="test", env=balise_env.env)
    try:
        report = ctx.journal.verify()
        assert report.ok, report.describe()
        entries = list(ctx.journal.entries())
        assert len(entries) == before_total - len(old_hashes) + 1
        checkpoint = entries[-1]
        assert checkpoint.kind == "journal.checkpoint"
        details = json.loads(checkpoint.details)
        expected = hashlib.sha256("".join(h + "\n" for h in old_hashes).encode()).hexdigest()
        assert details["journal_removed"] == len(old_hashes)
        assert details["removed_sha256"] == expected
        assert details["anchor_hash"] == old_hashes[-1] == entries[0].prev_hash
        assert details["removed"]["lots"] == 2 and details["removed"]["returns"] == 1
        assert details["removed"]["alerts"] == 1
        ids = [r[0] for r in ctx.store.conn.execute("SELECT id FROM lots ORDER BY id")]
        assert ids == sorted([still_sent, recent_terminal])
        # the removed lots took their bytes with them; the kept ones still have theirs
        owners = ctx.store.conn.execute("SELECT DISTINCT lot_id FROM lot_blobs ORDER BY 1")
        assert [r[0] for r in owners] == ids
        assert [r.uidl for r in ctx.tracking().returns()] == ["new-damaged"]

        # the journal is still append-only outside retention, and its anchor does not move
        with pytest.raises(sqlite3.IntegrityError):
            ctx.store.conn.execute("DELETE FROM journal WHERE seq = ?", (entries[0].seq,))
        with pytest.raises(sqlite3.IntegrityError):
            ctx.store.conn.execute("UPDATE journal_anchor SET seq = seq + 1")

        # a second purge later removes nothing new and keeps the chain verifiable
        second = retention_service(ctx).run(TEST_NOW)
        assert second.journal_removed == 0 and sum(second.removed.values()) == 0
        ctx.journal.append("test.after", "x")
        assert ctx.journal.verify().ok
        assert balise_env.run("journal", "verify").returncode == 0

        # the anchor travels in a backup: the restored box verifies the same chain
        archive = backup_service(ctx).backup(tmp_path / "out").path
    finally:
        ctx.close()
    restored = other_box.run("restore", archive, stdin=RECOVERY + "\n")
    assert restored.returncode == 0, restored.stderr
    assert other_box.run("journal", "verify").returncode == 0


def test_a_moved_anchor_is_detected(balise_env: BaliseEnv) -> None:
    now = TEST_NOW
    old = open_context(
        balise_env.home, actor="agent", env=balise_env.env, clock=FixedClock(now - FOUR_YEARS)
    )
    try:
        for i in range(20):
            old.journal.append("test.filler", f"n{i}")
    finally:
        old.close()
    ctx = open_context(balise_env.home, actor="test", env=balise_env.env)
    try:
        ctx.journal.append("test.recent", "x")
        outcome = retention_service(ctx).run(now, older_than_days=365)
        assert outcome.journal_removed == 20 and ctx.journal.verify().ok
        # someone who knows the bypass cuts more and moves the anchor: the checkpoint disagrees
        conn = ctx.store.conn
        first = next(ctx.journal.entries(20))
        with ctx.store.write():
            conn.execute("INSERT INTO journal_retention(id, upto) VALUES (1, ?)", (first.seq,))
            conn.execute("DELETE FROM journal WHERE seq = ?", (first.seq,))
            conn.execute("UPDATE journal_anchor SET seq = ?, hash = ?", (first.seq, first.hash))
            conn.execute("DELETE FROM journal_retention")
        report = ctx.journal.verify()
        assert not report.ok and "point de contrôle" in report.detail
        shown = balise_env.run("journal", "verify")
        assert shown.returncode != 0
    finally:
        ctx.close()


def test_retention_period_below_one_day_refused(balise_env: BaliseEnv) -> None:
    run = balise_env.run("retention", "run", "--older-than-days", "0")
    assert run.returncode == 1 and "RETENTION_DAYS" in run.stderr
