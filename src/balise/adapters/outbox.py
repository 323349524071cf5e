"""The Outbox port on the shared store: frozen lot mails, the compostage counter and the last
sending outcome per mailbox, written inside the caller's lot transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping

from balise.adapters.store import Store
from balise.domain.lotmail import Delivery, next_counter

_STATUS_KEY = "transmission.status."


class SqliteOutbox:
    """Counters in the ``counters`` table, mails in ``lot_blobs`` (migration 0012_lot_blobs)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._conn = store.conn

    def take_counter(self, name: str) -> int:
        # Read and advance inside one write transaction (a savepoint when nested in the lot's):
        # two processes never get the same value, and a rollback gives the value back.
        with self._store.write():
            row = self._conn.execute(
                "SELECT value FROM counters WHERE name = ?", (name,)
            ).fetchone()
            current = 0 if row is None else int(row[0])
            self._conn.execute(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (name, next_counter(current)),
            )
        return current

    def store_mail(self, lot_id: int, mail: bytes) -> None:
        try:
            with self._store.write():
                self._conn.execute(
                    "INSERT INTO lot_blobs(lot_id, kind, data) VALUES (?, 'mail', ?)",
                    (lot_id, mail),
                )
        except sqlite3.IntegrityError as exc:
            # A frozen mail is never replaced: a resend must carry the same bytes.
            raise ValueError(f"lot {lot_id}: mail already frozen or lot missing") from exc

    def delivery(self, lot_id: int) -> Delivery | None:
        row = self._conn.execute(
            "SELECT b.data, l.attempts, l.next_attempt, l.sent_at FROM lots l "
            "LEFT JOIN lot_blobs b ON b.lot_id = l.id AND b.kind = 'mail' WHERE l.id = ?",
            (lot_id,),
        ).fetchone()
        if row is None:
            return None
        return Delivery(
            lot_id=lot_id,
            mail=None if row[0] is None else bytes(row[0]),
            attempts=int(row[1]),
            next_attempt=row[2],
            sent_at=row[3],
        )

    def set_status(self, profile: str, status: Mapping[str, str] | None) -> None:
        with self._store.write():
            if status is None:
                self._conn.execute("DELETE FROM meta WHERE key = ?", (_STATUS_KEY + profile,))
            else:
                self._conn.execute(
                    "INSERT INTO meta(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (_STATUS_KEY + profile, json.dumps(dict(status), ensure_ascii=False)),
                )

    def status(self, profile: str) -> dict[str, str] | None:
        raw = self._store.meta_get(_STATUS_KEY + profile)
        if raw is None:
            return None
        value = json.loads(raw)
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else None
