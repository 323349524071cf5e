"""Lots and refused files in SQLite; every state change is a compare-and-set in a transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from balise.adapters.durable import no_room
from balise.adapters.store import Store
from balise.domain.codes import LotCode
from balise.domain.errors import DiskFullError, StateError
from balise.domain.lotrecord import LotRecord, QuarantineProblem, QuarantineRecord
from balise.domain.lotstate import LotState, UnknownLot

_LOT_COLUMNS = (
    "id, profile, emitter, lot_number, lot_date, addressee, organism, flow, application, "
    "invoices, total, sha256, size, state, received, source, state_changed, signer, "
    "compostage, message_id, reasons"
)
# Columns a state change may also set (never the lot's identity or its bytes).
_SETTABLE = frozenset(
    {
        "signer",
        "signed_at",
        "signed_cms",
        "envelope",
        "compostage",
        "message_id",
        "subject",
        "sent_at",
        "attempts",
        "next_attempt",
        "reasons",
    }
)
# The lot's bytes a state change may set and blob() reads, each a row of lot_blobs (migration
# 0012_lot_blobs), never in the lot's row: a state change rewrites a few hundred bytes, not the
# lot's 40-100 KB. (Its frozen mail, the fourth kind, is the outbox's.)
_BLOBS = frozenset({"content", "signed_cms", "envelope"})
_QUARANTINE_COLUMNS = "id, received, source, name, sha256, size, problems, content_dropped"


def _lot(row: sqlite3.Row | tuple[Any, ...]) -> LotRecord:
    return LotRecord(
        id=int(row[0]),
        profile=row[1],
        emitter=row[2],
        lot_number=row[3],
        lot_date=row[4],
        addressee=row[5],
        organism=row[6],
        flow=row[7],
        application=row[8],
        invoices=int(row[9]),
        total=int(row[10]),
        sha256=row[11],
        size=int(row[12]),
        state=LotState(row[13]),
        received=row[14],
        source=row[15],
        state_changed=row[16],
        signer=row[17],
        compostage=row[18],
        message_id=row[19],
        reasons=tuple(json.loads(row[20] or "[]")),
    )


def _quarantine(row: tuple[Any, ...]) -> QuarantineRecord:
    problems = tuple(
        QuarantineProblem(p["code"], p["record"], p["fr"], p["en"]) for p in json.loads(row[6])
    )
    return QuarantineRecord(
        int(row[0]), row[1], row[2], row[3], row[4], int(row[5]), problems, row[7]
    )


def _disk_full() -> DiskFullError:
    return DiskFullError(
        "Disque plein : la base de données de la boîte ne peut plus rien enregistrer",
        "Disk full: the box's database cannot record anything more",
    )


class SqliteLotStore:
    """The LotStore port on the shared store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._conn = store.conn

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; a full disk rolls it back whole and says so (DISK_FULL)."""
        try:
            with self._store.write():
                yield
        except sqlite3.Error as exc:
            if no_room(exc):
                raise _disk_full() from exc
            raise

    def accepted_keys(self) -> frozenset[tuple[str, str, str]]:
        rows = self._conn.execute("SELECT emitter, lot_number, lot_date FROM lots")
        return frozenset((str(a), str(b), str(c)) for a, b, c in rows)

    def accepted_hashes(self) -> frozenset[str]:
        return frozenset(str(r[0]) for r in self._conn.execute("SELECT sha256 FROM lots"))

    def find_by_hash(self, sha256: str) -> LotRecord | None:
        row = self._conn.execute(
            f"SELECT {_LOT_COLUMNS} FROM lots WHERE sha256 = ?",  # noqa: S608
            (sha256,),
        ).fetchone()
        return None if row is None else _lot(row)

    def find_by_key(self, emitter: str, lot_number: str, lot_date: str) -> LotRecord | None:
        row = self._conn.execute(
            f"SELECT {_LOT_COLUMNS} FROM lots "  # noqa: S608
            "WHERE emitter = ? AND lot_number = ? AND lot_date = ?",
            (emitter, lot_number, lot_date),
        ).fetchone()
        return None if row is None else _lot(row)

    def find_quarantine(self, sha256: str, name: str) -> QuarantineRecord | None:
        row = self._conn.execute(
            f"SELECT {_QUARANTINE_COLUMNS} FROM quarantine_files "  # noqa: S608
            "WHERE sha256 = ? AND name = ?",
            (sha256, name),
        ).fetchone()
        return None if row is None else _quarantine(row)

    def add_lot(self, record: LotRecord, content: bytes) -> int:
        with self._store.write():
            cur = self._conn.execute(
                "INSERT INTO lots(profile, emitter, lot_number, lot_date, addressee, organism, "
                "flow, application, invoices, total, sha256, size, state, received, "
                "source, state_changed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.profile,
                    record.emitter,
                    record.lot_number,
                    record.lot_date,
                    record.addressee,
                    record.organism,
                    record.flow,
                    record.application,
                    record.invoices,
                    record.total,
                    record.sha256,
                    record.size,
                    record.state.value,
                    record.received,
                    record.source,
                    record.state_changed,
                ),
            )
            assert cur.lastrowid is not None
            self._conn.execute(
                "INSERT INTO lot_blobs(lot_id, kind, data) VALUES (?, 'content', ?)",
                (cur.lastrowid, content),
            )
        return cur.lastrowid

    def add_quarantine(self, record: QuarantineRecord, content: bytes | None) -> int:
        problems = json.dumps(
            [{"code": p.code, "record": p.record, "fr": p.fr, "en": p.en} for p in record.problems],
            ensure_ascii=False,
        )
        dropped = None if content is not None else (record.content_dropped or "non gardé")
        with self._store.write():
            cur = self._conn.execute(
                "INSERT INTO quarantine_files(received, source, name, sha256, size, content, "
                "problems, content_dropped) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.received,
                    record.source,
                    record.name,
                    record.sha256,
                    record.size,
                    b"" if content is None else content,
                    problems,
                    dropped,
                ),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def quarantine_content_size(self) -> int:
        row = self._conn.execute("SELECT total(length(content)) FROM quarantine_files").fetchone()
        return int(row[0])

    def get(self, lot_id: int) -> LotRecord | None:
        row = self._conn.execute(
            f"SELECT {_LOT_COLUMNS} FROM lots WHERE id = ?",  # noqa: S608
            (lot_id,),
        ).fetchone()
        return None if row is None else _lot(row)

    def content(self, lot_id: int) -> bytes:
        data = self.blob(lot_id, "content")
        if data is None:
            raise UnknownLot(lot_id)
        return data

    def blob(self, lot_id: int, name: str) -> bytes | None:
        if name not in _BLOBS:
            raise ValueError(name)
        row = self._conn.execute(
            "SELECT data FROM lot_blobs WHERE lot_id = ? AND kind = ?", (lot_id, name)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def lots(
        self, states: frozenset[LotState] | None = None, profile: str | None = None
    ) -> list[LotRecord]:
        sql = f"SELECT {_LOT_COLUMNS} FROM lots WHERE 1 = 1"  # noqa: S608
        args: list[str] = []
        if states is not None:
            sql += f" AND state IN ({', '.join('?' for _ in states)})"
            args += sorted(s.value for s in states)
        if profile is not None:
            sql += " AND profile = ?"
            args.append(profile)
        return [_lot(r) for r in self._conn.execute(sql + " ORDER BY id", args)]

    def quarantined(self) -> list[QuarantineRecord]:
        rows = self._conn.execute(
            f"SELECT {_QUARANTINE_COLUMNS} FROM quarantine_files ORDER BY id"  # noqa: S608
        )
        return [_quarantine(r) for r in rows]

    def set_state(
        self, lot_id: int, expected: LotState, target: LotState, when: str, **fields: object
    ) -> None:
        unknown = set(fields) - _SETTABLE
        if unknown:
            raise ValueError(f"not settable: {sorted(unknown)}")
        values: list[object] = []
        assignments = ["state = ?", "state_changed = ?"]
        values += [target.value, when]
        blobs: list[tuple[str, object]] = []
        for name, value in fields.items():
            if name in _BLOBS:
                blobs.append((name, value))
                continue
            assignments.append(f"{name} = ?")
            values.append(json.dumps(value, ensure_ascii=False) if name == "reasons" else value)
        # One UPDATE (a refused one changed nothing), and the bytes it brings in the same
        # transaction, once it is known to have been accepted.
        with self._store.write() if blobs else self._store.write_one():
            cur = self._conn.execute(
                f"UPDATE lots SET {', '.join(assignments)} WHERE id = ? AND state = ?",  # noqa: S608
                (*values, lot_id, expected.value),
            )
            if cur.rowcount != 1:
                current = self.get(lot_id)
                raise StateError(
                    f"lot {lot_id} : état attendu « {expected} », trouvé "
                    f"« {current.state if current else 'absent'} »",
                    f"lot {lot_id}: expected state '{expected}', found "
                    f"'{current.state if current else 'missing'}'",
                    code=LotCode.LOT_STATE_CHANGED,
                )
            for name, value in blobs:
                if value is None:
                    self._conn.execute(
                        "DELETE FROM lot_blobs WHERE lot_id = ? AND kind = ?", (lot_id, name)
                    )
                else:
                    self._conn.execute(
                        "INSERT INTO lot_blobs(lot_id, kind, data) VALUES (?, ?, ?) "
                        "ON CONFLICT(lot_id, kind) DO UPDATE SET data = excluded.data",
                        (lot_id, name, value),
                    )
