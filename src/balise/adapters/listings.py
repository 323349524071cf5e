"""Listings that may hold ten years of a practice (lots, refused files, returns, payments,
alerts): counted, paged by id and streamed, never loaded whole.

Pages are keyset pages (``id > after`` / ``id < before``, on the primary key): the last page of
1.5 million payments comes as fast as the first, which an OFFSET would not give. Streaming reads
batches of the same kind, so no read transaction stays open while a slow reader (a pipe, a
terminal) takes the output. The rows are the stores' own (same columns, same records)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from balise.adapters.lots import _LOT_COLUMNS, _QUARANTINE_COLUMNS, _lot, _quarantine
from balise.adapters.returns_store import (
    _ALERT_COLUMNS,
    _PAYMENT_COLUMNS,
    _RETURN_COLUMNS,
    _alert,
    _payment,
    _return,
)
from balise.adapters.store import Store
from balise.domain.lotrecord import LotRecord, QuarantineRecord
from balise.domain.lotstate import LotState
from balise.domain.mailrecords import AlertRecord, PaymentRecord, ReturnRecord

T = TypeVar("T")

# ``before=LAST``: the last rows of a listing.
LAST = 2**63 - 1
STREAM_BATCH = 500


@dataclass(frozen=True)
class Listing(Generic[T]):
    """One listing of one table, in id order, optionally filtered."""

    conn: sqlite3.Connection
    table: str
    columns: str
    convert: Callable[[tuple[Any, ...]], T]
    where: str = "1 = 1"

    def count(self) -> int:
        row = self.conn.execute(
            f"SELECT count(*) FROM {self.table} WHERE {self.where}"  # noqa: S608 — fixed names
        ).fetchone()
        return int(row[0])

    def page(self, limit: int, *, after: int | None = None, before: int | None = None) -> list[T]:
        """Up to ``limit`` rows in id order: those just after ``after`` (the first rows when
        both are None), or those just before ``before`` (``LAST``: the last rows)."""
        select = f"SELECT {self.columns} FROM {self.table} WHERE {self.where}"  # noqa: S608
        if before is not None:
            rows = self.conn.execute(
                f"SELECT * FROM ({select} AND id < ? ORDER BY id DESC LIMIT ?) ORDER BY id",  # noqa: S608
                (before, limit),
            ).fetchall()
        else:
            rows = self.conn.execute(
                f"{select} AND id > ? ORDER BY id LIMIT ?", (after or 0, limit)
            ).fetchall()
        return [self.convert(r) for r in rows]

    def id_of(self, item: T) -> int:
        return int(getattr(item, "id"))  # noqa: B009 — every record of a listing has its id

    def __iter__(self) -> Iterator[T]:
        """Every row, in id order, a batch at a time."""
        after = 0
        while True:
            batch = self.page(STREAM_BATCH, after=after)
            yield from batch
            if len(batch) < STREAM_BATCH:
                return
            after = self.id_of(batch[-1])


class SqliteListings:
    """The listings of the shared store."""

    def __init__(self, store: Store) -> None:
        self._conn = store.conn

    def lots(self) -> Listing[LotRecord]:
        return Listing(self._conn, "lots", _LOT_COLUMNS, _lot)

    def quarantine(self) -> Listing[QuarantineRecord]:
        return Listing(self._conn, "quarantine_files", _QUARANTINE_COLUMNS, _quarantine)

    def returns(self) -> Listing[ReturnRecord]:
        return Listing(self._conn, "returns", _RETURN_COLUMNS, _return)

    def payments(self) -> Listing[PaymentRecord]:
        return Listing(self._conn, "payments", _PAYMENT_COLUMNS, _payment)

    def alerts(self, *, include_acknowledged: bool = False) -> Listing[AlertRecord]:
        where = "1 = 1" if include_acknowledged else "acknowledged IS NULL"
        return Listing(self._conn, "alerts", _ALERT_COLUMNS, _alert, where)

    def open_alerts_of(self, kinds: frozenset[str]) -> int:
        """How many alerts of these kinds wait to be read (counted by the database)."""
        marks = ", ".join("?" for _ in kinds)
        row = self._conn.execute(
            f"SELECT count(*) FROM alerts WHERE acknowledged IS NULL AND kind IN ({marks})",  # noqa: S608
            tuple(sorted(kinds)),
        ).fetchone()
        return int(row[0])

    def lot_counts(self, profile: str) -> dict[LotState, int]:
        """How many lots of ``profile`` are in each state (counted by the database)."""
        rows = self._conn.execute(
            "SELECT state, count(*) FROM lots WHERE profile = ? GROUP BY state", (profile,)
        )
        return {LotState(state): int(n) for state, n in rows}
