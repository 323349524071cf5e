"""Returns, payments, unknown mail, purge dedup rows and alerts in SQLite; blobs AES-256-GCM encrypted.

The blob key is a random 256-bit key kept in the parameter vault (so it is wrapped by the KEK and
survives a data-key rotation, which re-encrypts vault entries but not these blobs).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from balise.adapters.locks import open_lock
from balise.adapters.store import Store
from balise.domain.codes import ReturnsCode, StoreCode
from balise.domain.errors import Busy, IntegrityError
from balise.domain.journal import JsonValue
from balise.domain.mailrecords import AlertRecord, MailQuarantineRecord, PaymentRecord, ReturnRecord
from balise.ports import Vault

# Not a parameter of the schema: ParameterService.rows() skips it, so it is never listed.
BLOB_KEY_NAME = "returns.blob_key"
_AAD_PREFIX = b"balise-blob-v1\0"


class BlobCipher:
    """AES-256-GCM for stored mail blobs, each bound to its table, column and row identity."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault
        self._cipher: AESGCM | None = None

    def __repr__(self) -> str:
        return "BlobCipher()"

    def _aesgcm(self) -> AESGCM:
        if self._cipher is None:
            stored = self._vault.get("", BLOB_KEY_NAME)
            if stored is None:
                with self._vault.transaction():
                    stored = self._vault.get("", BLOB_KEY_NAME)  # another process may have won
                    if stored is None:
                        stored = AESGCM.generate_key(bit_length=256).hex()
                        self._vault.put("", BLOB_KEY_NAME, stored)
            self._cipher = AESGCM(bytes.fromhex(str(stored)))
        return self._cipher

    def seal(self, data: bytes, *identity: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aesgcm().encrypt(nonce, data, _aad(identity))

    def open(self, blob: bytes, *identity: str) -> bytes:
        try:
            return self._aesgcm().decrypt(blob[:12], blob[12:], _aad(identity))
        except (InvalidTag, ValueError) as exc:
            raise IntegrityError(
                "donnée chiffrée illisible (authentification échouée)",
                "encrypted data unreadable (authentication failed)",
                code=StoreCode.BLOB_CORRUPT,
            ) from exc


def _aad(identity: tuple[str, ...]) -> bytes:
    return _AAD_PREFIX + "\0".join(identity).encode("utf-8")


_RETURN_COLUMNS = (
    "id, profile, uidl, sha256, kind, status, emitter, organism_number, lot_number, lot_date, "
    "lot_id, positive, words_fr, words_en, detail, received, size, published"
)
_PAYMENT_COLUMNS = (
    "id, return_id, profile, emitter, lot_number, lot_date, lot_id, invoice_number, "
    "invoice_type, amo_asked, amo_state, amo_paid, amc_asked, amc_state, amc_paid, reasons, "
    "accounting_date, transfer_reference"
)
_MQ_COLUMNS = (
    "id, profile, uidl, sha256, digest_scope, size, reason_code, reason_fr, reason_en, received, "
    "copy_size, copy_enc IS NOT NULL, copy_dropped, alerted"
)
_ALERT_COLUMNS = "id, kind, subject, fr, en, details, created, acknowledged, acknowledged_by"


def _return(row: tuple[Any, ...]) -> ReturnRecord:
    return ReturnRecord(
        id=int(row[0]),
        profile=row[1],
        uidl=row[2],
        sha256=row[3],
        kind=row[4],
        status=row[5],
        emitter=row[6],
        organism_number=row[7],
        lot_number=row[8],
        lot_date=row[9],
        lot_id=None if row[10] is None else int(row[10]),
        positive=None if row[11] is None else bool(row[11]),
        words_fr=row[12],
        words_en=row[13],
        detail=json.loads(row[14]),
        received=row[15],
        size=int(row[16]),
        published=bool(row[17]),
    )


def _payment(row: tuple[Any, ...]) -> PaymentRecord:
    return PaymentRecord(
        id=int(row[0]),
        return_id=int(row[1]),
        profile=row[2],
        emitter=row[3],
        lot_number=row[4],
        lot_date=row[5],
        lot_id=None if row[6] is None else int(row[6]),
        invoice_number=int(row[7]),
        invoice_type=row[8],
        amo_asked=int(row[9]),
        amo_state=row[10],
        amo_paid=int(row[11]),
        amc_asked=row[12],
        amc_state=row[13],
        amc_paid=row[14],
        reasons=tuple(json.loads(row[15])),
        accounting_date=row[16],
        transfer_reference=row[17],
    )


_INSERT_PAYMENT = (
    f"INSERT INTO payments({_PAYMENT_COLUMNS.removeprefix('id, ')}) "  # noqa: S608
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _payment_row(record: PaymentRecord) -> tuple[Any, ...]:
    return (
        record.return_id,
        record.profile,
        record.emitter,
        record.lot_number,
        record.lot_date,
        record.lot_id,
        record.invoice_number,
        record.invoice_type,
        record.amo_asked,
        record.amo_state,
        record.amo_paid,
        record.amc_asked,
        record.amc_state,
        record.amc_paid,
        json.dumps(list(record.reasons), ensure_ascii=False),
        record.accounting_date,
        record.transfer_reference,
    )


def _mq(row: tuple[Any, ...]) -> MailQuarantineRecord:
    return MailQuarantineRecord(
        id=int(row[0]),
        profile=row[1],
        uidl=row[2],
        sha256=row[3],
        digest_scope=row[4],
        size=int(row[5]),
        reason_code=row[6],
        reason_fr=row[7],
        reason_en=row[8],
        received=row[9],
        copy_size=int(row[10]),
        has_copy=bool(row[11]),
        copy_dropped=row[12],
        alerted=bool(row[13]),
    )


def _alert(row: tuple[Any, ...]) -> AlertRecord:
    return AlertRecord(
        id=int(row[0]),
        kind=row[1],
        subject=row[2],
        fr=row[3],
        en=row[4],
        details=json.loads(row[5]),
        created=row[6],
        acknowledged=row[7],
        acknowledged_by=row[8],
    )


class SqliteReturnsStore:
    """The ReturnsStore port on the shared store."""

    def __init__(self, store: Store, vault: Vault, lock_dir: Path) -> None:
        self._store = store
        self._conn: sqlite3.Connection = store.conn
        self._cipher = BlobCipher(vault)
        self._lock_dir = lock_dir

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._store.write():
            yield

    @contextmanager
    def _one_statement(self) -> Iterator[None]:
        """A write of ONE statement: its own transaction, or none inside the caller's (see
        :meth:`Store.write_one`)."""
        with self._store.write_one():
            yield

    @contextmanager
    def lock(self, profile: str) -> Iterator[None]:
        """An exclusive fcntl lock per mailbox: released by the kernel even on SIGKILL."""
        fd = open_lock(self._lock_dir / f"purge-{profile}.lock")
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise Busy(
                    f"une relève de la BAL du profil {profile} est déjà en cours",
                    f"a purge of profile {profile}'s mailbox is already running",
                    code=ReturnsCode.PURGE_LOCKED,
                ) from exc
            yield
        finally:
            os.close(fd)  # closing drops the lock

    # -- dedup --------------------------------------------------------------------------------

    def seen(self, profile: str, uidls: Collection[str]) -> dict[str, list[tuple[str, str]]]:
        out: dict[str, list[tuple[str, str]]] = {}
        rows = self._conn.execute(
            "SELECT uidl, sha256, outcome FROM mail_seen WHERE profile = ? "
            "AND uidl IN (SELECT value FROM json_each(?))",
            (profile, json.dumps(sorted(set(uidls)))),
        )
        for uidl, sha, outcome in rows:
            out.setdefault(str(uidl), []).append((str(sha), str(outcome)))
        return out

    def mark_seen(
        self, profile: str, seen: Sequence[tuple[str, str, str, int | None]], run_id: str
    ) -> None:
        with self._one_statement():
            self._conn.executemany(
                "INSERT INTO mail_seen(profile, uidl, sha256, outcome, ref_id, processed, run_id) "
                "VALUES (?, ?, ?, ?, ?, datetime('now'), ?)",
                [(profile, uidl, sha, outcome, ref, run_id) for uidl, sha, outcome, ref in seen],
            )

    # -- returns and payments -----------------------------------------------------------------

    def add_return(
        self,
        *,
        profile: str,
        uidl: str,
        sha256: str,
        kind: str,
        status: str,
        header: Mapping[str, str | None],
        lot_id: int | None,
        positive: bool | None,
        words: tuple[str, str],
        detail: Mapping[str, JsonValue],
        size: int,
        raw: bytes,
        payload: bytes | None,
        when: str,
    ) -> int:
        ident = (profile, uidl, sha256)
        with self._one_statement():
            cur = self._conn.execute(
                "INSERT INTO returns(profile, uidl, sha256, kind, status, emitter, organism_type, "
                "organism_number, lot_number, lot_date, lot_id, positive, words_fr, words_en, "
                "detail, received, size, raw_enc, payload_enc) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    profile,
                    uidl,
                    sha256,
                    kind,
                    status,
                    header.get("emitter"),
                    header.get("organism_type"),
                    header.get("organism_number"),
                    header.get("lot_number"),
                    header.get("lot_date"),
                    lot_id,
                    None if positive is None else int(positive),
                    words[0],
                    words[1],
                    json.dumps(detail, ensure_ascii=False),
                    when,
                    size,
                    self._cipher.seal(raw, "returns.raw", *ident),
                    None
                    if payload is None
                    else self._cipher.seal(payload, "returns.payload", *ident),
                ),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def add_payment(self, record: PaymentRecord) -> int:
        with self._one_statement():
            cur = self._conn.execute(_INSERT_PAYMENT, _payment_row(record))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def add_payments(self, records: Sequence[PaymentRecord]) -> None:
        with self._one_statement():
            self._conn.executemany(_INSERT_PAYMENT, [_payment_row(r) for r in records])

    def returns(
        self, profile: str | None = None, *, unpublished: bool = False, limit: int | None = None
    ) -> list[ReturnRecord]:
        sql = f"SELECT {_RETURN_COLUMNS} FROM returns WHERE 1 = 1"  # noqa: S608
        args: list[str | int] = []
        if profile is not None:
            sql += " AND profile = ?"
            args.append(profile)
        if unpublished:
            # The partial index returns_unpublished: years of published returns are not read.
            sql += " AND published = 0"
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_return(r) for r in self._conn.execute(sql, args)]

    def payment_lot_ids(self, return_id: int) -> set[int]:
        rows = self._conn.execute(
            "SELECT DISTINCT lot_id FROM payments WHERE return_id = ? AND lot_id IS NOT NULL",
            (return_id,),
        )
        return {int(r[0]) for r in rows}

    def returns_for_lot(self, lot_id: int) -> list[ReturnRecord]:
        rows = self._conn.execute(
            f"SELECT {_RETURN_COLUMNS} FROM returns WHERE lot_id = ? ORDER BY id",  # noqa: S608
            (lot_id,),
        )
        return [_return(r) for r in rows]

    def payments(self, lot_id: int | None = None) -> list[PaymentRecord]:
        sql = f"SELECT {_PAYMENT_COLUMNS} FROM payments"  # noqa: S608
        args: tuple[int, ...] = ()
        if lot_id is not None:
            sql += " WHERE lot_id = ?"
            args = (lot_id,)
        return [_payment(r) for r in self._conn.execute(sql + " ORDER BY id", args)]

    def payload(self, return_id: int) -> bytes | None:
        row = self._conn.execute(
            "SELECT profile, uidl, sha256, payload_enc FROM returns WHERE id = ?", (return_id,)
        ).fetchone()
        if row is None or row[3] is None:
            return None
        return self._cipher.open(bytes(row[3]), "returns.payload", row[0], row[1], row[2])

    def mark_published(self, return_ids: Sequence[int]) -> None:
        with self._one_statement():
            self._conn.executemany(
                "UPDATE returns SET published = 1 WHERE id = ?", [(i,) for i in return_ids]
            )

    # -- unknown mail -------------------------------------------------------------------------

    def add_unknown(
        self,
        *,
        profile: str,
        uidl: str,
        sha256: str,
        digest_scope: str,
        size: int,
        reason: tuple[str, str, str],
        meta: Mapping[str, str | None],
        copy: bytes | None,
        when: str,
    ) -> int:
        ident = (profile, uidl, sha256)
        meta_enc = self._cipher.seal(
            json.dumps(dict(meta), ensure_ascii=True).encode("ascii"), "mq.meta", *ident
        )
        copy_enc = None if copy is None else self._cipher.seal(copy, "mq.copy", *ident)
        with self._one_statement():
            cur = self._conn.execute(
                "INSERT INTO mail_quarantine(profile, uidl, sha256, digest_scope, size, "
                "reason_code, reason_fr, reason_en, received, meta_enc, copy_enc, copy_size, "
                "copy_dropped) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    profile,
                    uidl,
                    sha256,
                    digest_scope,
                    size,
                    *reason,
                    when,
                    meta_enc,
                    copy_enc,
                    0 if copy is None else len(copy),
                    when if copy is None else None,
                ),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def mail_quarantine(self, *, unalerted: bool = False) -> list[MailQuarantineRecord]:
        sql = f"SELECT {_MQ_COLUMNS} FROM mail_quarantine"  # noqa: S608
        if unalerted:
            sql += " WHERE alerted = 0"
        return [_mq(r) for r in self._conn.execute(sql + " ORDER BY id")]

    def _mq_blob(self, record_id: int, column: str, scope: str) -> bytes | None:
        row = self._conn.execute(
            f"SELECT profile, uidl, sha256, {column} FROM mail_quarantine WHERE id = ?",  # noqa: S608
            (record_id,),
        ).fetchone()
        if row is None or row[3] is None:
            return None
        return self._cipher.open(bytes(row[3]), scope, row[0], row[1], row[2])

    def quarantine_meta(self, record_id: int) -> dict[str, str | None]:
        data = self._mq_blob(record_id, "meta_enc", "mq.meta")
        if data is None:
            return {}
        value = json.loads(data)
        return {str(k): None if v is None else str(v) for k, v in value.items()}

    def quarantine_copy(self, record_id: int) -> bytes | None:
        return self._mq_blob(record_id, "copy_enc", "mq.copy")

    def mark_alerted(self, ids: list[int]) -> None:
        with self._store.write():
            self._conn.executemany(
                "UPDATE mail_quarantine SET alerted = 1 WHERE id = ?", [(i,) for i in ids]
            )

    def enforce_quarantine(self, retention_days: int, quota_bytes: int, now: datetime) -> int:
        """Drop copies past retention, then the oldest until under quota; metadata is kept."""
        when = now.isoformat(timespec="seconds")
        cutoff = (now - timedelta(days=retention_days)).isoformat(timespec="seconds")
        dropped = 0
        with self._store.write():
            cur = self._conn.execute(
                "UPDATE mail_quarantine SET copy_enc = NULL, copy_dropped = ? "
                "WHERE copy_enc IS NOT NULL AND (received <= ? OR ? = 0)",
                (when, cutoff, retention_days),
            )
            dropped += cur.rowcount
            rows = self._conn.execute(
                "SELECT id, copy_size FROM mail_quarantine WHERE copy_enc IS NOT NULL "
                "ORDER BY received DESC, id DESC"
            ).fetchall()
            total = 0
            for record_id, size in rows:
                total += int(size)
                if total > quota_bytes:
                    self._conn.execute(
                        "UPDATE mail_quarantine SET copy_enc = NULL, copy_dropped = ? WHERE id = ?",
                        (when, record_id),
                    )
                    dropped += 1
        return dropped

    # -- alerts -------------------------------------------------------------------------------

    def add_alert(
        self,
        kind: str,
        subject: str,
        words: tuple[str, str],
        details: Mapping[str, JsonValue],
        when: str,
    ) -> int:
        with self._one_statement():
            cur = self._conn.execute(
                "INSERT INTO alerts(kind, subject, fr, en, details, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (kind, subject, words[0], words[1], json.dumps(details, ensure_ascii=False), when),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def open_alert(self, kind: str, subject: str) -> AlertRecord | None:
        row = self._conn.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE kind = ? AND subject = ? "  # noqa: S608
            "AND acknowledged IS NULL ORDER BY id DESC LIMIT 1",
            (kind, subject),
        ).fetchone()
        return None if row is None else _alert(row)

    def alerts(self, *, include_acknowledged: bool = False) -> list[AlertRecord]:
        sql = f"SELECT {_ALERT_COLUMNS} FROM alerts"  # noqa: S608
        if not include_acknowledged:
            sql += " WHERE acknowledged IS NULL"
        return [_alert(r) for r in self._conn.execute(sql + " ORDER BY id")]

    def acknowledge(self, alert_id: int, actor: str, when: str) -> bool:
        with self._store.write():
            cur = self._conn.execute(
                "UPDATE alerts SET acknowledged = ?, acknowledged_by = ? "
                "WHERE id = ? AND acknowledged IS NULL",
                (when, actor, alert_id),
            )
        return cur.rowcount == 1
