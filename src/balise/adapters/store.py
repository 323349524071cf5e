"""The durable store: one SQLite database (WAL, synchronous=FULL) through sqlite-utils, schema by migrations."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from balise.adapters.durable import no_room
from balise.domain.codes import GeneralCode, StoreCode
from balise.domain.errors import (
    BaliseError,
    ConfigError,
    DatabaseCorrupt,
    DatabaseIoError,
    DatabaseLocked,
    DatabaseReadOnly,
    DiskFullError,
    IntegrityError,
    StoreError,
)

if TYPE_CHECKING:
    from balise.adapters.schema_copies import RestoredCopy

DB_NAME = "balise.db"
BUSY_TIMEOUT_MS = 30_000

migrations = Migrations("balise")


@migrations(name="0001_journal_vault_meta")
def _m0001(db: Database) -> None:
    db.execute(
        """CREATE TABLE journal (
            seq INTEGER PRIMARY KEY,
            time TEXT NOT NULL,
            kind TEXT NOT NULL,
            actor TEXT NOT NULL,
            subject TEXT NOT NULL,
            details TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE
        )"""
    )
    db.execute(
        """CREATE TRIGGER journal_no_update BEFORE UPDATE ON journal
           BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END"""
    )
    db.execute(
        """CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal
           BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END"""
    )
    db.execute(
        """CREATE TABLE vault_keys (
            id INTEGER PRIMARY KEY,
            wrapped BLOB NOT NULL,
            kek_fingerprint TEXT NOT NULL,
            created TEXT NOT NULL,
            active INTEGER NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE vault (
            scope_id TEXT NOT NULL,
            name TEXT NOT NULL,
            key_id INTEGER NOT NULL REFERENCES vault_keys(id),
            nonce BLOB NOT NULL,
            ciphertext BLOB NOT NULL,
            updated TEXT NOT NULL,
            PRIMARY KEY (scope_id, name)
        )"""
    )
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


# The write-ahead log is kept at most this large between writes: a large transaction (a
# migration, a restore, a first retention) grows it to its own size, and SQLite would otherwise
# keep that file at its largest for as long as a process holds the database open (the agent:
# months) — on a migrated ten-year database, a gigabyte of the data partition for nothing.
WAL_KEPT_BYTES = 64 * 1024 * 1024
REQUIRED_PRAGMAS = {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1}


def connect(path: Path) -> sqlite3.Connection:
    """Open a connection with the durability pragmas set, and check that they took effect."""
    conn = sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute(f"PRAGMA journal_size_limit={WAL_KEPT_BYTES}")
        actual = read_pragmas(conn)
    except sqlite3.Error:
        conn.close()
        raise
    if actual != REQUIRED_PRAGMAS:
        conn.close()
        raise IntegrityError(
            f"la base {path} refuse les réglages de durabilité : {actual}",
            f"database {path} refuses the durability settings: {actual}",
            code=StoreCode.DB_PRAGMAS,
        )
    return conn


def read_pragmas(conn: sqlite3.Connection) -> dict[str, Any]:
    return {
        "journal_mode": str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower(),
        "synchronous": int(conn.execute("PRAGMA synchronous").fetchone()[0]),
        "foreign_keys": int(conn.execute("PRAGMA foreign_keys").fetchone()[0]),
    }


# SQLite's primary result codes a person can meet, and the domain's error for each: decided on the
# code (the low byte of an extended one), never on SQLite's English message.
_KINDS: dict[int, type[StoreError]] = {
    sqlite3.SQLITE_BUSY: DatabaseLocked,
    sqlite3.SQLITE_LOCKED: DatabaseLocked,
    sqlite3.SQLITE_READONLY: DatabaseReadOnly,
    sqlite3.SQLITE_PERM: DatabaseReadOnly,
    sqlite3.SQLITE_IOERR: DatabaseIoError,
    sqlite3.SQLITE_CORRUPT: DatabaseCorrupt,
    sqlite3.SQLITE_NOTADB: DatabaseCorrupt,
    sqlite3.SQLITE_CANTOPEN: StoreError,
}


def store_error(exc: sqlite3.Error) -> BaliseError | None:
    """The domain's error for a SQLite failure a person can meet (a full disk, the lock held by
    another process, a read-only or failing disk, a damaged file), None for the others — a
    constraint or a misuse is a bug, raised as itself."""
    if no_room(exc):
        return DiskFullError(
            "Disque plein : la base de données de la boîte ne peut plus rien enregistrer",
            "Disk full: the box's database cannot record anything more",
        )
    kind = _KINDS.get((getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF)
    return kind() if kind is not None else None


def _nearly_full(directory: Path) -> bool:
    """Less room than SQLite needs to open a database (its shared-memory file takes 32 KiB)."""
    try:
        return shutil.disk_usage(directory).free < 64 * 1024
    except OSError:
        return False


class Store:
    """The typed entry point to the database; every write goes through ``write()``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        schema: Migrations | None = None,
        busy: Callable[[], object] | None = None,
    ) -> None:
        """Open (or create) the box's database and bring its schema to this version's
        (``schema``: the migrations, this module's unless a test gives its own). ``busy`` is
        called now and then while that takes long (a copy and migrations after an update, or
        another process doing them: balise.adapters.schema_copies); it must not raise."""
        if not data_dir.is_dir():
            raise ConfigError(
                f"dossier de données absent : {data_dir}",
                f"data directory missing: {data_dir}",
                code=GeneralCode.DATA_DIR,
            )
        self.path = data_dir / DB_NAME
        self._savepoints = 0  # nested write() blocks open
        try:
            self.conn = connect(self.path)
        except sqlite3.Error as exc:
            # With no other connection open, SQLite must create its -wal and -shm files: on a full
            # disk that fails as an I/O error, not SQLITE_FULL. Say what it is.
            if no_room(exc) or _nearly_full(data_dir):
                raise DiskFullError(
                    "Disque plein : la base de données de la boîte ne peut pas s'ouvrir",
                    "Disk full: the box's database cannot be opened",
                ) from exc
            translated = store_error(exc)
            if translated is None:
                raise
            if type(translated) is StoreError and not os.access(data_dir, os.W_OK):
                # SQLite only says it cannot open the file: on a read-only disk or folder it
                # cannot create the files its write-ahead log needs. Say what it is.
                translated = DatabaseReadOnly()
            raise translated from exc
        self.db = Database(self.conn, execute_plugins=False)
        # A copy before migrating, one transaction for the migrations, and the copy restored
        # when an older version meets a newer schema (balise.adapters.schema_copies).
        from balise.adapters.schema_copies import migrate_safely

        try:
            self.restored: RestoredCopy | None = migrate_safely(
                self, migrations if schema is None else schema, busy
            )
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def write(self) -> Iterator[Database]:
        """A write transaction taken with BEGIN IMMEDIATE (nested calls become savepoints).

        A failed COMMIT is rolled back too (SQLite may leave it open after SQLITE_FULL, and the
        connection would then hold the write lock). A full disk raises DiskFullError: nothing of
        the transaction was kept; another process holding the lock past the busy timeout, a
        read-only or failing disk or a damaged file raise the StoreError that says so."""
        if self.conn.in_transaction:
            # A savepoint named after its depth, not a random name: the same few statements
            # each time, prepared once (a purge opens several per message).
            self._savepoints += 1
            name = f"balise_{self._savepoints}"
            self.conn.execute(f"SAVEPOINT {name}")
            try:
                yield self.db
            except BaseException:
                # A RAISE(ROLLBACK) trigger may have ended the whole transaction already.
                if self.conn.in_transaction:
                    self.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                    self.conn.execute(f"RELEASE SAVEPOINT {name}")
                raise
            else:
                self.conn.execute(f"RELEASE SAVEPOINT {name}")
            finally:
                self._savepoints -= 1
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            translated = store_error(exc)
            if translated is None:
                raise
            raise translated from exc

    @contextmanager
    def write_one(self) -> Iterator[Database]:
        """A block that writes with ONE statement (it may read before it): inside an open
        transaction no savepoint, which would add two statements and nothing else — SQLite makes
        one statement atomic, and a failure still rolls the caller back; alone, its own write
        transaction (:meth:`write`)."""
        if self.conn.in_transaction:
            yield self.db
            return
        with self.write() as db:
            yield db

    def pragmas(self) -> dict[str, Any]:
        return read_pragmas(self.conn)

    def applied_migrations(self) -> list[str]:
        return [m.name for m in migrations.applied(self.db)]

    def meta_get(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def meta_set(self, key: str, value: str) -> None:
        with self.write():
            self.conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


@migrations(name="0002_lots_quarantine")
def _m0002(db: Database) -> None:
    db.execute(
        """CREATE TABLE lots (
            id INTEGER PRIMARY KEY,
            profile TEXT NOT NULL,
            emitter TEXT NOT NULL,
            lot_number TEXT NOT NULL,
            lot_date TEXT NOT NULL,
            addressee TEXT NOT NULL,
            organism TEXT NOT NULL,
            flow TEXT NOT NULL,
            application TEXT NOT NULL,
            invoices INTEGER NOT NULL,
            total INTEGER NOT NULL,
            sha256 TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            content BLOB NOT NULL,
            state TEXT NOT NULL,
            received TEXT NOT NULL,
            source TEXT NOT NULL,
            state_changed TEXT NOT NULL,
            signer TEXT,
            signed_at TEXT,
            signed_cms BLOB,
            envelope BLOB,
            compostage TEXT,
            message_id TEXT UNIQUE,
            subject TEXT,
            sent_at TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt TEXT,
            reasons TEXT NOT NULL DEFAULT '[]',
            UNIQUE (emitter, lot_number, lot_date)
        )"""
    )
    db.execute("CREATE INDEX lots_state ON lots(state, profile)")
    db.execute(
        """CREATE TABLE quarantine_files (
            id INTEGER PRIMARY KEY,
            received TEXT NOT NULL,
            source TEXT NOT NULL,
            name TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            content BLOB NOT NULL,
            problems TEXT NOT NULL,
            UNIQUE (sha256, name)
        )"""
    )


@migrations(name="0003_transmission")
def _m0003(db: Database) -> None:
    # The lot mail frozen at enveloping (resent byte for byte), and the box's named counters
    # (the compostage counter), both written in the same transaction as the lot's state change.
    db.execute("ALTER TABLE lots ADD COLUMN mail BLOB")
    db.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")


@migrations(name="0004_returns_purge")
def _m0004(db: Database) -> None:
    # Dedup of the purge loop: one row per message outcome, committed before its DELE.
    db.execute(
        """CREATE TABLE mail_seen (
            profile TEXT NOT NULL,
            uidl TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            outcome TEXT NOT NULL,
            ref_id INTEGER,
            processed TEXT NOT NULL,
            run_id TEXT NOT NULL,
            PRIMARY KEY (profile, uidl, sha256)
        )"""
    )
    db.execute(
        """CREATE TABLE returns (
            id INTEGER PRIMARY KEY,
            profile TEXT NOT NULL,
            uidl TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            emitter TEXT,
            organism_type TEXT,
            organism_number TEXT,
            lot_number TEXT,
            lot_date TEXT,
            lot_id INTEGER REFERENCES lots(id),
            positive INTEGER,
            words_fr TEXT NOT NULL,
            words_en TEXT NOT NULL,
            detail TEXT NOT NULL,
            received TEXT NOT NULL,
            size INTEGER NOT NULL,
            raw_enc BLOB NOT NULL,
            payload_enc BLOB,
            published INTEGER NOT NULL DEFAULT 0
        )"""
    )
    db.execute("CREATE INDEX returns_lot ON returns(lot_id)")
    db.execute(
        """CREATE TABLE payments (
            id INTEGER PRIMARY KEY,
            return_id INTEGER NOT NULL REFERENCES returns(id),
            profile TEXT NOT NULL,
            emitter TEXT NOT NULL,
            lot_number TEXT NOT NULL,
            lot_date TEXT NOT NULL,
            lot_id INTEGER REFERENCES lots(id),
            invoice_number INTEGER NOT NULL,
            invoice_type TEXT NOT NULL,
            amo_asked INTEGER NOT NULL,
            amo_state TEXT NOT NULL,
            amo_paid INTEGER NOT NULL,
            amc_asked INTEGER,
            amc_state TEXT,
            amc_paid INTEGER,
            reasons TEXT NOT NULL,
            accounting_date TEXT,
            transfer_reference TEXT
        )"""
    )
    db.execute("CREATE INDEX payments_lot ON payments(lot_id)")
    # Unknown mail: only non-identifying facts in clear; From/Subject/Message-ID and the copy are
    # encrypted (nothing of an unknown message is ever written in clear).
    db.execute(
        """CREATE TABLE mail_quarantine (
            id INTEGER PRIMARY KEY,
            profile TEXT NOT NULL,
            uidl TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            digest_scope TEXT NOT NULL,
            size INTEGER NOT NULL,
            reason_code TEXT NOT NULL,
            reason_fr TEXT NOT NULL,
            reason_en TEXT NOT NULL,
            received TEXT NOT NULL,
            meta_enc BLOB NOT NULL,
            copy_enc BLOB,
            copy_size INTEGER NOT NULL DEFAULT 0,
            copy_dropped TEXT,
            alerted INTEGER NOT NULL DEFAULT 0
        )"""
    )
    db.execute(
        """CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            fr TEXT NOT NULL,
            en TEXT NOT NULL,
            details TEXT NOT NULL,
            created TEXT NOT NULL,
            acknowledged TEXT,
            acknowledged_by TEXT
        )"""
    )
    db.execute("CREATE INDEX alerts_open ON alerts(acknowledged, kind, subject)")


@migrations(name="0005_technician_gate")
def _m0005(db: Database) -> None:
    # One row: the technician passphrase failures survive a restart of the kiosk.
    db.execute(
        """CREATE TABLE technician_gate (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            failures INTEGER NOT NULL,
            last_failure TEXT,
            locked_until TEXT
        )"""
    )


@migrations(name="0006_backup_retention")
def _m0006(db: Database) -> None:
    # Journal retention: the append-only triggers stay, but DELETE is let through for the
    # entries up to the bound written in journal_retention — a row only the retention code
    # writes and removes inside its one transaction. The last removed entry becomes the anchor
    # the chain is verified from.
    db.execute(
        """CREATE TABLE journal_retention (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            upto INTEGER NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE journal_anchor (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            seq INTEGER NOT NULL,
            hash TEXT NOT NULL,
            removed INTEGER NOT NULL
        )"""
    )
    db.execute("DROP TRIGGER journal_no_delete")
    db.execute(
        """CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal
           WHEN OLD.seq > coalesce((SELECT upto FROM journal_retention WHERE id = 1), 0)
           BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END"""
    )
    for event in ("INSERT", "UPDATE", "DELETE"):
        db.execute(
            f"""CREATE TRIGGER journal_anchor_guard_{event.lower()} BEFORE {event}
               ON journal_anchor WHEN NOT EXISTS (SELECT 1 FROM journal_retention)
               BEGIN SELECT RAISE(ABORT, 'journal anchor moves only during retention'); END"""  # noqa: S608 — event from a fixed tuple
        )


@migrations(name="0007_refused_content")
def _m0007(db: Database) -> None:
    # A refused file's bytes are kept only under the lot size cap and within the refused files'
    # quota, and never travel in a backup: beyond, the row keeps its name, size, SHA-256 and
    # reasons, its content is emptied and content_dropped says why.
    db.execute("ALTER TABLE quarantine_files ADD COLUMN content_dropped TEXT")


@migrations(name="0008_returns_unpublished")
def _m0008(db: Database) -> None:
    # Every purge and agent cycle asks which returns are not yet in retours/: after years, an
    # index of those few only, instead of a scan of every return ever received.
    db.execute("CREATE INDEX returns_unpublished ON returns(id) WHERE published = 0")


@migrations(name="0008_journal_verified_head")
def _m0008_journal_verified_head(db: Database) -> None:
    # Registered here with the others (it was once in the journal's module, and so came last or
    # not at all depending on what a process had imported: the list of migrations must not
    # depend on that).
    # The head reached by the last successful verification (one row), so that the daily check
    # hashes only what is new. It is not part of the chain: the incremental check trusts the
    # entries up to it; `balise journal verify --full` trusts nothing. (journal.hash needs no new
    # index: its UNIQUE constraint has one, which the "reordered" diagnosis looks up.)
    db.execute(
        """CREATE TABLE journal_verified (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            seq INTEGER NOT NULL,
            hash TEXT NOT NULL,
            verified TEXT NOT NULL,
            full_verified TEXT
        )"""
    )


@migrations(name="0009_server_certificates")
def _m0009(db: Database) -> None:
    # The certificate each practitioner's mail servers (SMTP, POP3) last presented in a verified
    # TLS handshake, and when: the expiry watch warns before it ends. One row per profile and
    # service, replaced when the server presents another certificate.
    db.execute(
        """CREATE TABLE server_certs (
            profile TEXT NOT NULL,
            service TEXT NOT NULL CHECK (service IN ('smtp', 'pop3')),
            host TEXT NOT NULL,
            port INTEGER NOT NULL,
            subject TEXT NOT NULL,
            not_after TEXT NOT NULL,
            der BLOB NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            PRIMARY KEY (profile, service)
        )"""
    )


@migrations(name="0010_payments_by_return")
def _m0010(db: Database) -> None:
    # Retention deletes old returns, and each delete makes SQLite look for the payments that
    # still point at it (the foreign key): without this index, a scan of every payment per return
    # — the first retention of a ten-year box took most of an hour (bench/scale.py).
    db.execute("CREATE INDEX payments_return ON payments(return_id)")


@migrations(name="0011_journal_by_subject")
def _m0011(db: Database) -> None:
    # A lot's history (`balise lots show`, the kiosk's lot detail) is the journal's entries about
    # it: without this index, a scan of the whole journal — on a ten-year box (600,000 entries
    # kept) about a second for every lot shown (bench/scale.py).
    db.execute("CREATE INDEX journal_subject ON journal(subject, seq)")


@migrations(name="0012_lot_blobs")
def _m0012(db: Database) -> None:
    # A lot's bytes (the lot file, its signed CMS, its envelope, its frozen mail: 40-100 KB a
    # real lot) leave the lots row for a table of their own, each written once. SQLite rewrites a
    # whole row, every overflow page of it, at each UPDATE, and reads through those pages to
    # reach any column stored after them: every state change of a lot (a purge of 1,000 returns
    # changes about 600) wrote the lot's bytes again into the write-ahead log — 24-60 MB a purge,
    # ten years of wear on a Pi's SD card — and every lookup read them. The lots row is now a few
    # hundred bytes; a lot's bytes are read only where they are needed (signing, sending).
    db.execute(
        """CREATE TABLE lot_blobs (
            lot_id INTEGER NOT NULL REFERENCES lots(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('content', 'signed_cms', 'envelope', 'mail')),
            data BLOB NOT NULL,
            PRIMARY KEY (lot_id, kind)
        )"""
    )
    kinds = ("content", "signed_cms", "envelope", "mail")  # the lots columns of 0002 and 0003
    for kind in kinds:
        db.execute(
            f"INSERT INTO lot_blobs(lot_id, kind, data) SELECT id, ?, {kind} FROM lots "  # noqa: S608
            f"WHERE {kind} IS NOT NULL ORDER BY id",
            (kind,),
        )
    for kind in kinds:
        db.execute(f"ALTER TABLE lots DROP COLUMN {kind}")
