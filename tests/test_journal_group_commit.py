"""The journal's group commit (the card relay's request log): entries appended by a busy writer
are committed together, in order, on the same hash chain as every other append, and none is
lost by a flush or a clean close — even with other writers appending in between. Rows (the
relay's requests) queued between two commits become ONE entry listing them, split past its
bound, in their place among the other entries."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import pytest

from balise.adapters.journal import GroupCommitJournal, PendingEntry, SqliteJournal
from balise.domain.errors import DiskFullError, ValidationError
from balise.domain.journal import JournalEntry
from balise.services.relay import (
    JOURNAL_KIND,
    REQUEST_FIELDS,
    RequestRow,
    journaled_requests,
    requests_details,
)
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


def _request(i: int, status: int = 200) -> RequestRow:
    """Request ``i`` as the relay notes it: started at i seconds, 3 ms long."""
    return ("visio", "POST", status, 100 + i, 200 + i, float(i), i + 0.003, "service")


def _listed(journal: SqliteJournal) -> list[tuple[str, list[int]]]:
    """Each entry's subject, and for a request listing the request sizes it lists."""
    return [
        (
            e.subject,
            [int(str(r["request_bytes"])) - 100 for r in journaled_requests(json.loads(e.details))],
        )
        for e in journal.entries()
    ]


def test_rows_of_one_window_are_one_entry_split_past_its_bound_in_place_among_appends(
    balise_env: BaliseEnv,
) -> None:
    ctx = balise_env.context("relay")
    try:
        log = GroupCommitJournal(ctx.journal, ctx.clock, interval=AN_HOUR)
        request = log.rows(JOURNAL_KIND, requests_details, subject="Dr J", actor="relay", most=4)
        log.append("relay_open", "open")
        for i in range(6):
            request(_request(i))
        log.append("relay_note", "between")
        request(_request(6))
        log.flush()  # the window ends: the next request starts a new entry
        request(_request(7, status=502))
        log.close()
        assert _listed(ctx.journal) == [
            ("open", []),
            ("Dr J", [0, 1, 2, 3]),
            ("Dr J", [4, 5]),
            ("between", []),
            ("Dr J", [6]),
            ("Dr J", [7]),
        ]
        entries = list(ctx.journal.entries())
        assert {e.actor for e in entries if e.kind == JOURNAL_KIND} == {"relay"}
        (last,) = journaled_requests(json.loads(entries[-1].details))
        assert last == dict(
            zip(REQUEST_FIELDS, ["visio", "POST", 502, 107, 207, 3, 0, "service"], strict=True)
        )
        second = json.loads(entries[2].details)
        assert second["count"] == 2
        assert [r["after_ms"] for r in journaled_requests(second)] == [0, 1000]
        assert ctx.journal.verify(full=True).ok
    finally:
        ctx.close()


def test_rows_from_many_threads_are_each_listed_once(balise_env: BaliseEnv) -> None:
    ctx = balise_env.context("relay")
    try:
        log = GroupCommitJournal(ctx.journal, ctx.clock, interval=0.01)
        request = log.rows(JOURNAL_KIND, requests_details, most=256)

        def requests(who: int) -> None:
            for i in range(300):
                request(_request(who * 1000 + i))

        threads = [threading.Thread(target=requests, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        log.close()
        listed = [n for _s, sizes in _listed(ctx.journal) for n in sizes]
        assert sorted(listed) == sorted(w * 1000 + i for w in range(3) for i in range(300))
        for w in range(3):  # each thread's requests in the order it made them
            mine = [n for n in listed if n // 1000 == w]
            assert mine == [w * 1000 + i for i in range(300)]
        assert all(len(sizes) <= 256 for _s, sizes in _listed(ctx.journal))
        assert ctx.journal.verify(full=True).ok
    finally:
        ctx.close()


def test_rows_after_close_are_committed_at_once(balise_env: BaliseEnv) -> None:
    ctx = balise_env.context("relay")
    try:
        log = GroupCommitJournal(ctx.journal, ctx.clock, interval=AN_HOUR)
        request = log.rows(JOURNAL_KIND, requests_details)
        request(_request(0))
        log.close()
        request(_request(1))  # a request answered while the relay stopped
        request(_request(2))
        assert [sizes for _s, sizes in _listed(ctx.journal)] == [[0], [1], [2]]
    finally:
        ctx.close()


def test_a_failed_commit_keeps_its_rows_for_the_next_one(balise_env: BaliseEnv) -> None:
    ctx = balise_env.context("relay")
    try:
        journal = _FailsOnce(ctx.store, ctx.clock, "relay")
        log = GroupCommitJournal(journal, ctx.clock, interval=AN_HOUR, on_error=lambda _e: None)
        request = log.rows(JOURNAL_KIND, requests_details)
        request(_request(0))
        request(_request(1))
        with pytest.raises(DiskFullError):
            log.flush()
        request(_request(2))
        log.close()
        assert [n for _s, sizes in _listed(ctx.journal) for n in sizes] == [0, 1, 2]
        assert ctx.journal.verify(full=True).ok
    finally:
        ctx.close()


def test_rows_rendered_with_a_secret_looking_field_never_reach_the_journal(
    balise_env: BaliseEnv,
) -> None:
    """The rows' details are checked as every entry's are: a render naming a secret-looking
    field (a bug) leaves an entry saying how many rows are missing and why, never the secret,
    and the entries after it are committed as usual."""
    ctx = balise_env.context("relay")
    try:
        log = GroupCommitJournal(ctx.journal, ctx.clock, interval=AN_HOUR)
        request = log.rows("x", lambda rows: {"password": [str(r) for r in rows]})
        request("hunter2")
        request("hunter3")
        log.append("relay_close", "after")
        log.close()
        entries = list(ctx.journal.entries())
        assert [(e.kind, e.details) for e in entries] == [
            ("x", '{"count":2,"unrendered":"ValidationError"}'),
            ("relay_close", "{}"),
        ]
        assert ctx.journal.verify(full=True).ok
    finally:
        ctx.close()
