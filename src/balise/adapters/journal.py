"""The journal on SQLite: appends re-read the head inside BEGIN IMMEDIATE, so the chain never forks."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

from balise.adapters.store import Store
from balise.domain.journal import (
    GENESIS_HASH,
    ChainReport,
    JournalEntry,
    JsonValue,
    canonical_details,
    entry_hash,
    verify_chain,
)
from balise.ports import Clock

_COLUMNS = "seq, time, kind, actor, subject, details, prev_hash, hash"


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
        who = actor or self._actor
        with self._store.write():
            row = self._store.conn.execute(
                "SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, prev = (1, GENESIS_HASH) if row is None else (int(row[0]) + 1, str(row[1]))
            when = self._clock.now().isoformat(timespec="microseconds")
            digest = entry_hash(prev, seq, when, kind, who, subject, text)
            self._store.conn.execute(
                f"INSERT INTO journal({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                (seq, when, kind, who, subject, text, prev, digest),
            )
        return JournalEntry(seq, when, kind, who, subject, text, prev, digest)

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

    def verify(self) -> ChainReport:
        seq, digest = self.anchor()
        report = verify_chain(self.entries(seq), anchor_hash=digest, anchor_seq=seq)
        if report.ok and seq and not self._checkpoint_names(seq, digest):
            # The anchor table is not itself chained: a retention checkpoint entry inside the
            # chain must name it, or someone moved the starting point.
            return ChainReport(
                False,
                report.count,
                digest,
                seq + 1,
                "missing",
                "ancre de rétention sans point de contrôle dans le journal",
            )
        return report

    def _checkpoint_names(self, seq: int, digest: str) -> bool:
        row = self._store.conn.execute(
            "SELECT details FROM journal WHERE kind = 'journal.checkpoint' "
            "ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return False
        details = json.loads(str(row[0]))
        return bool(details.get("anchor_seq") == seq and details.get("anchor_hash") == digest)
