"""The technician gate's failure counter in its own one-row table (migration 0005)."""

from __future__ import annotations

from datetime import datetime

from balise.adapters.store import Store
from balise.domain.technician import GateRecord


class SqliteGateStore:
    """``ports.GateStore`` on the box's database."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def load(self) -> GateRecord:
        row = self._store.conn.execute(
            "SELECT failures, last_failure, locked_until FROM technician_gate WHERE id = 1"
        ).fetchone()
        if row is None:
            return GateRecord()
        return GateRecord(
            int(row[0]),
            datetime.fromisoformat(row[1]) if row[1] else None,
            datetime.fromisoformat(row[2]) if row[2] else None,
        )

    def save(self, record: GateRecord) -> None:
        with self._store.write():
            self._store.conn.execute(
                "INSERT INTO technician_gate(id, failures, last_failure, locked_until) "
                "VALUES (1, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET failures = excluded.failures, "
                "last_failure = excluded.last_failure, locked_until = excluded.locked_until",
                (
                    record.failures,
                    record.last_failure.isoformat() if record.last_failure else None,
                    record.locked_until.isoformat() if record.locked_until else None,
                ),
            )
