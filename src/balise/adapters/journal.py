"""The journal on SQLite: appends re-read the head inside BEGIN IMMEDIATE, so the chain never forks.

Verification streams the rows (constant memory) and remembers the head it reached in
``journal_verified``: the incremental check (the default of ``balise journal verify``, the doctor)
then hashes only the entries after it, once it has proved that the remembered head is still the
row stored at that number. The full check re-hashes the whole chain from its anchor."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from balise.adapters.store import Store
from balise.domain.errors import BaliseError
from balise.domain.journal import (
    GENESIS_HASH,
    ChainReport,
    JournalEntry,
    JsonValue,
    canonical_details,
    entry_hash,
    verify_rows,
)
from balise.ports import Clock

Row = TypeVar("Row")
_COLUMNS = "seq, time, kind, actor, subject, details, prev_hash, hash"
_INSERT = f"INSERT INTO journal({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """An entry timed and checked (``details`` canonical) waiting for its commit."""

    time: datetime
    kind: str
    actor: str | None
    subject: str
    details: str


def _row(e: JournalEntry) -> tuple[object, ...]:
    return (e.seq, e.time, e.kind, e.actor, e.subject, e.details, e.prev_hash, e.hash)


@dataclass(frozen=True, slots=True)
class VerifiedHead:
    """Where the last successful verification stopped, and when (ISO times, UTC)."""

    seq: int
    hash: str
    verified: str
    full_verified: str | None


class SqliteJournal:
    """Append-only journal; ``actor`` names the process (kiosk, agent, cli) unless given."""

    def __init__(self, store: Store, clock: Clock, actor: str) -> None:
        self._store = store
        self._clock = clock
        self._actor = actor

    def append(
        self,
        kind: str,
        subject: str = "",
        details: Mapping[str, JsonValue] | None = None,
        *,
        actor: str | None = None,
    ) -> JournalEntry:
        text = canonical_details(details)
        # The head re-read and the one INSERT under the write lock (BEGIN IMMEDIATE, or the
        # caller's transaction: no savepoint, the INSERT alone is atomic).
        with self._store.write_one():
            seq, prev = self._head()
            entry = self._chained(
                seq + 1, prev, PendingEntry(self._clock.now(), kind, actor, subject, text)
            )
            self._store.conn.execute(_INSERT, _row(entry))
        return entry

    def _head(self) -> tuple[int, str]:
        """The last entry's number and hash (0 and the genesis hash for an empty journal)."""
        row = self._store.conn.execute(
            "SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))

    def _chained(self, seq: int, prev: str, p: PendingEntry) -> JournalEntry:
        """Entry number ``seq`` of ``p``, chained to the entry whose hash is ``prev``."""
        who = p.actor or self._actor
        when = p.time.isoformat(timespec="microseconds")
        digest = entry_hash(prev, seq, when, p.kind, who, p.subject, p.details)
        return JournalEntry(seq, when, p.kind, who, p.subject, p.details, prev, digest)

    def append_many(self, pending: Sequence[PendingEntry]) -> list[JournalEntry]:
        """Entries timed by their callers, appended in ONE write transaction (one commit, one
        fsync): the head re-read under BEGIN IMMEDIATE as for :meth:`append`, then each entry
        chained to the one before it, in order."""
        if not pending:
            return []
        out: list[JournalEntry] = []
        with self._store.write():
            seq, prev = self._head()
            for p in pending:
                seq += 1
                out.append(self._chained(seq, prev, p))
                prev = out[-1].hash
            self._store.conn.executemany(_INSERT, [_row(e) for e in out])
        return out

    def entries(self, since_seq: int = 0) -> Iterator[JournalEntry]:
        cursor = self._store.conn.execute(
            f"SELECT {_COLUMNS} FROM journal WHERE seq > ? ORDER BY seq",  # noqa: S608
            (since_seq,),
        )
        for row in cursor:
            yield JournalEntry(
                int(row[0]),
                str(row[1]),
                str(row[2]),
                str(row[3]),
                str(row[4]),
                str(row[5]),
                str(row[6]),
                str(row[7]),
            )

    def about(self, subject: str) -> Iterator[JournalEntry]:
        """The entries about ``subject`` (``lot:12``...), oldest first, filtered by SQLite."""
        cursor = self._store.conn.execute(
            f"SELECT {_COLUMNS} FROM journal WHERE subject = ? ORDER BY seq",  # noqa: S608
            (subject,),
        )
        for row in cursor:
            seq, *text = row
            yield JournalEntry(int(seq), *(str(v) for v in text))

    def last_time(self, kind: str) -> str | None:
        """When the last entry of ``kind`` was appended (ISO 8601), None when there is none."""
        row = self._store.conn.execute(
            "SELECT time FROM journal WHERE kind = ? ORDER BY seq DESC LIMIT 1", (kind,)
        ).fetchone()
        return None if row is None else str(row[0])

    def head(self) -> JournalEntry | None:
        row = self._store.conn.execute("SELECT max(seq) FROM journal").fetchone()
        if row is None or row[0] is None:
            return None
        return next(self.entries(int(row[0]) - 1), None)

    def anchor(self) -> tuple[int, str]:
        """Where the chain starts: genesis, or the last entry removed by retention."""
        row = self._store.conn.execute(
            "SELECT seq, hash FROM journal_anchor WHERE id = 1"
        ).fetchone()
        return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))

    def verified_head(self) -> VerifiedHead | None:
        """The head the last successful verification reached, if any."""
        row = self._store.conn.execute(
            "SELECT seq, hash, verified, full_verified FROM journal_verified WHERE id = 1"
        ).fetchone()
        if row is None:
            return None
        return VerifiedHead(int(row[0]), str(row[1]), str(row[2]), row[3])

    def verify(self, *, full: bool = True) -> ChainReport:
        """Verify the chain: all of it from its anchor (``full``), or only the entries after the
        head verified last time (the incremental check, which trusts what was verified before).

        Either way the remembered head must still be the entry stored at its number: a journal
        rewritten or cut short below it is reported even when its own hashes agree. A
        successful check remembers the head it reached."""
        anchor_seq, anchor_hash = self.anchor()
        mark = self.verified_head()
        if mark is not None and mark.seq <= anchor_seq:
            mark = None  # retention removed the entries it named: the chain starts at the anchor
        stale = None if mark is None else self._stale(mark)
        if full or mark is None or stale is not None:
            report, head_seq = self._verify_from(anchor_seq, anchor_hash, anchor_seq)
            if report.ok and stale is not None:
                report = replace(stale, count=report.count)
        else:
            report, head_seq = self._verify_from(mark.seq, mark.hash, anchor_seq)
            if report.ok:
                report = replace(
                    report,
                    count=head_seq - anchor_seq,
                    checked=report.count,
                    since_seq=mark.seq,
                )
        if report.ok and anchor_seq and not self._checkpoint_names(anchor_seq, anchor_hash):
            # The anchor table is not itself chained: a retention checkpoint entry inside the
            # chain must name it, or someone moved the starting point.
            return ChainReport(
                False,
                report.count,
                anchor_hash,
                anchor_seq + 1,
                "missing",
                "ancre de rétention sans point de contrôle dans le journal",
            )
        if report.ok and head_seq > anchor_seq:
            self._remember(head_seq, report.head_hash, full=report.since_seq is None)
        return report

    def _verify_from(
        self, start_seq: int, start_hash: str, anchor_seq: int
    ) -> tuple[ChainReport, int]:
        conn = self._store.conn

        def owner_seq(digest: str) -> int | None:
            row = conn.execute(
                "SELECT seq FROM journal WHERE hash = ? AND seq > ?", (digest, anchor_seq)
            ).fetchone()
            return None if row is None else int(row[0])

        cursor = conn.execute(
            f"SELECT {_COLUMNS} FROM journal WHERE seq > ? ORDER BY seq",  # noqa: S608
            (start_seq,),
        )
        try:
            report = verify_rows(
                cursor, anchor_hash=start_hash, anchor_seq=start_seq, owner_seq=owner_seq
            )
        finally:
            cursor.close()
        return report, start_seq + report.count

    def _stale(self, mark: VerifiedHead) -> ChainReport | None:
        """Why the remembered head no longer holds, or None when the entry stored at its number
        is still the one verified (same hash, and its content still gives that hash)."""
        conn = self._store.conn
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM journal WHERE seq = ?",  # noqa: S608
            (mark.seq,),
        ).fetchone()
        day = mark.verified[:10]
        if row is None:
            last = conn.execute("SELECT max(seq) FROM journal").fetchone()
            first = (int(last[0]) if last and last[0] is not None else 0) + 1
            gone = f"{first}" + (f"–{mark.seq}" if mark.seq > first else "")
            return ChainReport(
                False,
                0,
                mark.hash,
                first,
                "missing",
                f"absentes : {gone}, vérifiées le {day}",
            )
        seq, *text = row
        stored = JournalEntry(int(seq), *(str(v) for v in text))
        try:
            recomputed = entry_hash(
                stored.prev_hash,
                stored.seq,
                stored.time,
                stored.kind,
                stored.actor,
                stored.subject,
                stored.details,
            )
        except UnicodeEncodeError:
            recomputed = ""
        if stored.hash != mark.hash or recomputed != stored.hash:
            return ChainReport(
                False,
                0,
                mark.hash,
                mark.seq,
                "edited",
                f"ne correspond plus à l'entrée vérifiée le {day} : journal réécrit",
            )
        return None

    def _remember(self, seq: int, digest: str, *, full: bool) -> None:
        now = self._clock.now().isoformat(timespec="seconds")
        try:
            with self._store.write():
                self._store.conn.execute(
                    "INSERT INTO journal_verified(id, seq, hash, verified, full_verified) "
                    "VALUES (1, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, "
                    "hash = excluded.hash, verified = excluded.verified, full_verified = "
                    "coalesce(excluded.full_verified, journal_verified.full_verified) "
                    "WHERE excluded.seq >= journal_verified.seq",
                    (seq, digest, now, now if full else None),
                )
        except (BaliseError, sqlite3.Error):
            pass  # a check that cannot write (full disk, read-only copy) still said what it saw

    def _checkpoint_names(self, seq: int, digest: str) -> bool:
        row = self._store.conn.execute(
            "SELECT details FROM journal WHERE kind = 'journal.checkpoint' "
            "ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return False
        details = json.loads(str(row[0]))
        return bool(details.get("anchor_seq") == seq and details.get("anchor_hash") == digest)


@dataclass(frozen=True, slots=True)
class _RowKind:
    """How the rows given to one :meth:`GroupCommitJournal.rows` become entries."""

    kind: str
    subject: str
    actor: str | None
    render: Callable[[Sequence[Any]], Mapping[str, JsonValue]]
    most: int


@dataclass(slots=True)
class _Rows:
    """Rows of one kind waiting for their commit: one entry, timed by its first row."""

    of: _RowKind
    time: datetime
    rows: list[Any]


class GroupCommitJournal:
    """Appends of a busy writer (the card relay) committed together.

    :meth:`append` checks and times the entry at once (a secret-looking key is refused to its
    caller, as by :meth:`SqliteJournal.append`) and queues it; one writer thread commits what is
    queued in one transaction (:meth:`SqliteJournal.append_many`: the same chain, the head
    re-read under the write lock, so other processes' appends interleave safely) at most every
    ``interval`` seconds, and at once on :meth:`flush` and :meth:`close`, which return when
    everything appended before them is committed. What a power cut can lose: the entries of the
    last ``interval`` (never more), never the chain. A commit that fails (full disk) keeps its
    entries queued for the next attempt and is reported through ``on_error``; :meth:`flush` and
    :meth:`close` raise it.

    :meth:`rows` is for what happens too often for an entry each (the relay's requests): the
    caller's cost is appending a tuple; the rows queued together become ONE entry per commit
    (at most ``most`` rows each, more split in order), rendered by the writer thread, in their
    place among the other appends."""

    def __init__(
        self,
        journal: SqliteJournal,
        clock: Clock,
        *,
        interval: float = 0.1,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._journal = journal
        self._clock = clock
        self._interval = interval
        self._on_error = on_error
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._queue: list[PendingEntry | _Rows] = []
        self._appended = 0  # items (entries, row groups) queued since the start
        self._written = 0  # items committed since the start
        self._urgent = 0  # flush() calls waiting
        self._closing = False
        self._failure: BaseException | None = None
        self._failures = 0  # commits failed since the start
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._thread.start()

    def append(
        self,
        kind: str,
        subject: str = "",
        details: Mapping[str, JsonValue] | None = None,
        *,
        actor: str | None = None,
    ) -> None:
        entry = PendingEntry(self._clock.now(), kind, actor, subject, canonical_details(details))
        self._queued(entry)

    def rows(
        self,
        kind: str,
        render: Callable[[Sequence[Row]], Mapping[str, JsonValue]],
        *,
        subject: str = "",
        actor: str | None = None,
        most: int = 256,
    ) -> Callable[[Row], None]:
        """A function that queues one row (kept as it is until the commit); the rows
        queued one after another, up to ``most``, become one entry of ``kind`` whose details are
        ``render(rows)`` (checked as :meth:`append` checks them), timed by its first row."""
        if most < 1:
            raise ValueError("most must be at least 1")
        of = _RowKind(kind, subject, actor, render, most)

        def add(row: Row) -> None:
            with self._lock:  # the condition's lock, taken without its Python-level __enter__
                queue = self._queue
                last = queue[-1] if queue else None
                if (
                    type(last) is _Rows
                    and last.of is of
                    and len(last.rows) < most
                    and not self._closing
                ):
                    last.rows.append(row)
                else:
                    self._queued(_Rows(of, self._clock.now(), [row]))

        return add

    def _queued(self, item: PendingEntry | _Rows) -> None:
        with self._cond:  # reentrant: add() holds it already
            if self._closing:  # a straggler after close(): committed alone, at once
                self._journal.append_many([_pending(item)])
                return
            self._queue.append(item)
            self._appended += 1
            if len(self._queue) == 1:
                self._cond.notify_all()

    def flush(self) -> None:
        """Commit everything appended so far, now; raises the commit's error when it failed."""
        with self._cond:
            target, failures = self._appended, self._failures
            self._urgent += 1
            self._cond.notify_all()
            try:
                while self._written < target and self._failures == failures:
                    if not self._thread.is_alive():
                        raise RuntimeError("journal writer stopped")
                    self._cond.wait(1.0)
            finally:
                self._urgent -= 1
            if self._written < target and self._failure is not None:
                raise self._failure

    def close(self) -> None:
        """Commit what is left and stop the writer (idempotent)."""
        if self._closing and not self._thread.is_alive():
            return
        try:
            self.flush()
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._thread.join(10)

    def _run(self) -> None:
        last = time.monotonic()  # the first entries wait their interval too
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                while not self._urgent and not self._closing:
                    wait = last + self._interval - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                batch, self._queue = self._queue, []
            try:
                self._journal.append_many([_pending(item) for item in batch])
            except BaseException as exc:  # noqa: BLE001 - kept, reported, raised by flush()
                with self._cond:
                    self._queue[:0] = batch
                    self._failure = exc
                    self._failures += 1
                    self._cond.notify_all()
                    closing = self._closing
                if self._on_error is not None:
                    self._on_error(exc)
                if closing:
                    return
            else:
                with self._cond:
                    self._written += len(batch)
                    self._failure = None
                    self._cond.notify_all()
            last = time.monotonic()


def _pending(item: PendingEntry | _Rows) -> PendingEntry:
    """The entry to commit for a queued item (a group of rows rendered now, checked). Rows whose
    details cannot be rendered or are refused (a secret-looking field: a bug of the render) are
    never journaled, and never block the entries after them either: their entry says how many
    rows it stood for and why they are missing."""
    if isinstance(item, PendingEntry):
        return item
    of = item.of
    try:
        details = canonical_details(of.render(item.rows))
    except Exception as exc:  # noqa: BLE001 - said in the journal instead of the rows
        details = canonical_details({"count": len(item.rows), "unrendered": type(exc).__name__})
    return PendingEntry(item.time, of.kind, of.actor, of.subject, details)
