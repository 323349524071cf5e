"""The journal's group commit (the card relay's request log): entries appended by a busy writer
are committed together, in order, on the same hash chain as every other append, and none is
lost by a flush or a clean close — even with other writers appending in between."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from balise.adapters.journal import GroupCommitJournal, PendingEntry, SqliteJournal
from balise.domain.errors import DiskFullError, ValidationError
from balise.domain.journal import JournalEntry
from tests.support.balise_env import BaliseEnv

AN_HOUR = 3600.0  # no commit on the interval during a test: only flush() and close() commit


def _kinds(journal: SqliteJournal, since: int = 0) -> list[str]:
    return [e.subject for e in journal.entries(since)]


def test_entries_wait_for_their_commit_then_all_land_in_order_on_one_chain(
    balise_env: BaliseEnv,
) -> None:
    ctx, other = balise_env.context("relay"), balise_env.context("kiosk")
    try:
        log = GroupCommitJournal(ctx.journal, ctx.clock, interval=AN_HOUR)
        for i in range(5):
            log.append("relay_request", f"r{i}", {"status": 200, "i": i})
        other.journal.append("kiosk.event", "k0")  # another process appends meanwhile
        assert _kinds(ctx.journal) == ["k0"]  # queued, not committed yet
        log.flush()
        for i in range(5, 8):
            log.append("relay_request", f"r{i}", {"status": 200, "i": i})
        other.journal.append("kiosk.event", "k1")
        log.close()
        assert _kinds(ctx.journal) == ["k0", "r0", "r1", "r2", "r3", "r4", "k1", "r5", "r6", "r7"]
        entries = list(ctx.journal.entries())
        assert [e.actor for e in entries[1:6]] == ["relay"] * 5
        assert entries[2].details == '{"i":1,"status":200}'
        assert ctx.journal.verify(full=True).ok
    finally:
        other.close()
        ctx.close()


def test_many_threads_appending_lose_nothing_and_keep_the_chain(balise_env: BaliseEnv) -> None:
    ctx = balise_env.context("relay")
    try:
        log = GroupCommitJournal(ctx.journal, ctx.clock, interval=0.01)

        def requests(who: int) -> None:
            for i in range(50):
                log.append("relay_request", f"{who}-{i}", {"status": 200})

        threads = [threading.Thread(target=requests, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        log.close()
        subjects = _kinds(ctx.journal)
        assert sorted(subjects) == sorted(f"{w}-{i}" for w in range(4) for i in range(50))
        for w in range(4):  # each writer's entries in the order it appended them
            mine = [s for s in subjects if s.startswith(f"{w}-")]
            assert mine == [f"{w}-{i}" for i in range(50)]
        assert ctx.journal.verify(full=True).ok
    finally:
        ctx.close()


def test_a_secret_looking_key_is_refused_to_the_caller_and_never_queued(
    balise_env: BaliseEnv,
) -> None:
    ctx = balise_env.context("relay")
    try:
        log = GroupCommitJournal(ctx.journal, ctx.clock, interval=AN_HOUR)
        with pytest.raises(ValidationError):
            log.append("relay_request", "x", {"pin": "1234"})
        log.append("relay_request", "ok", {"status": 200})
        log.close()
        assert _kinds(ctx.journal) == ["ok"]
        assert "1234" not in "".join(e.details for e in ctx.journal.entries())
    finally:
        ctx.close()


def test_an_append_after_close_is_committed_at_once(balise_env: BaliseEnv) -> None:
    ctx = balise_env.context("relay")
    try:
        log = GroupCommitJournal(ctx.journal, ctx.clock, interval=AN_HOUR)
        log.append("relay_request", "before")
        log.close()
        log.append("relay_request", "straggler")  # a request answered while the relay stopped
        assert _kinds(ctx.journal) == ["before", "straggler"]
    finally:
        ctx.close()


class _FailsOnce(SqliteJournal):
    """FAKE for a full disk during one commit (the store's own full-disk path is tested in
    tests/test_store*.py): the first group commit fails as the store says it, then the disk has
    room again."""

    failed = False

    def append_many(self, pending: Sequence[PendingEntry]) -> list[JournalEntry]:
        if not self.failed:
            self.failed = True
            raise DiskFullError("Disque plein", "Disk full")
        return super().append_many(pending)


def test_a_failed_commit_keeps_its_entries_for_the_next_one(balise_env: BaliseEnv) -> None:
    ctx = balise_env.context("relay")
    try:
        errors: list[BaseException] = []
        journal = _FailsOnce(ctx.store, ctx.clock, "relay")
        log = GroupCommitJournal(journal, ctx.clock, interval=AN_HOUR, on_error=errors.append)
        log.append("relay_request", "r0")
        with pytest.raises(DiskFullError):
            log.flush()
        assert [type(e) for e in errors] == [DiskFullError]
        log.append("relay_request", "r1")
        log.close()
        assert _kinds(ctx.journal) == ["r0", "r1"]
        assert ctx.journal.verify(full=True).ok
    finally:
        ctx.close()
