"""Backups and evidence retention on the SQLite store: online-backup snapshots sealed into archives,
restore onto a fresh box (vault re-wrapped under its KEK), extraction without a box (a plain
database for a technician), and the journal-checkpointing purge."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from balise.adapters.archive import (
    DEFAULT_CHUNK,
    MAGIC,
    ArchiveKeys,
    Header,
    MasterKey,
    authenticate_header,
    check_key,
    derive_master,
    master_from_phc,
    new_nonce,
    open_archive,
    payload_blocks,
    read_header,
    write_archive,
)
from balise.adapters.clock import FixedClock
from balise.adapters.durable import fsync_dir, no_room
from balise.adapters.journal import SqliteJournal
from balise.adapters.kek import Kek
from balise.adapters.store import DB_NAME, Store
from balise.domain.backup import BackupOutcome, PruneOutcome, RestoredFacts, RetentionOutcome
from balise.domain.codes import BackupCode, GeneralCode
from balise.domain.errors import (
    BaliseError,
    ConfigError,
    DiskFullError,
    IntegrityError,
    StateError,
    os_error_words,
)
from balise.domain.journal import GENESIS_HASH
from balise.domain.lotstate import TERMINAL
from balise.ports import Vault

SUFFIX = ".sauvegarde"
PARTIAL_PREFIX = ".partiel-"
LAST_OK_META = "backup.last_ok"
ARCHIVE_FINGERPRINT = "archive"
SNAPSHOT_TRIES = 5
SNAPSHOT_BUSY_S = 10.0
# Tables whose rows are the practice's data: a box holding any of them is not "fresh".
DATA_TABLES = ("lots", "returns", "payments", "quarantine_files", "mail_quarantine", "alerts")


def counts(conn: sqlite3.Connection) -> dict[str, Any]:
    """What a snapshot holds, for the manifest and the restore report."""
    out: dict[str, Any] = {
        table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
        for table in (*DATA_TABLES, "journal", "vault")
    }
    out["lots_by_state"] = {
        str(state): int(n)
        for state, n in conn.execute("SELECT state, count(*) FROM lots GROUP BY state ORDER BY 1")
    }
    return out


def _anchor(conn: sqlite3.Connection) -> tuple[int, str]:
    row = conn.execute("SELECT seq, hash FROM journal_anchor WHERE id = 1").fetchone()
    return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))


def _head(conn: sqlite3.Connection) -> tuple[int, str]:
    row = conn.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
    return _anchor(conn) if row is None else (int(row[0]), str(row[1]))


def box_id(store: Store) -> str:
    """This box's identity for archive names and manifests (created on first use)."""
    value = store.meta_get("box_id")
    if value is None:
        with store.write():
            value = store.meta_get("box_id")
            if value is None:
                value = uuid.uuid4().hex[:12]
                store.meta_set("box_id", value)
    return value


@dataclass
class SqliteBackupArchiver:
    """Makes, lists and prunes archives of one box's store (the BackupArchiver port)."""

    store: Store
    vault: Vault
    kek: Kek
    data_dir: Path

    def master_key(self) -> MasterKey:
        encoded = self.vault.get("", "recovery_passphrase")
        if not isinstance(encoded, str):
            raise ConfigError(
                "aucune phrase de passe de secours : `balise params set recovery_passphrase "
                "--secret` (technicien, à la mise en service)",
                "no recovery passphrase: `balise params set recovery_passphrase --secret` "
                "(technician, at provisioning)",
                code=BackupCode.BACKUP_NO_PASSPHRASE,
            )
        return master_from_phc(encoded)

    def box_id(self) -> str:
        return box_id(self.store)

    def create(
        self,
        dest_dir: Path,
        when: datetime,
        *,
        chunk_size: int = DEFAULT_CHUNK,
        on_chunk: Callable[[int], None] | None = None,
    ) -> BackupOutcome:
        """Snapshot, seal and publish one archive in ``dest_dir`` (write, fsync, then rename)."""
        master = self.master_key()
        ident = self.box_id()
        dest_dir.mkdir(parents=True, exist_ok=True)
        self._clean_partials(dest_dir)
        stamp = when.strftime("%Y%m%dT%H%M%S%fZ")
        name = f"balise-{ident}-{stamp}{SUFFIX}"
        nonce = new_nonce()
        keys = ArchiveKeys.derive(master, nonce)
        work = Path(tempfile.mkdtemp(prefix=".sauvegarde-", dir=self.data_dir))
        partial = dest_dir / f"{PARTIAL_PREFIX}{name}"
        try:
            snap = work / DB_NAME
            try:
                facts = self._snapshot(snap, keys)
            except sqlite3.Error as exc:
                if no_room(exc):
                    raise DiskFullError(
                        f"Disque plein : pas de place dans {self.data_dir} pour préparer la "
                        "sauvegarde",
                        f"Disk full: no room in {self.data_dir} to prepare the backup",
                    ) from exc
                raise
            manifest = {
                "box_id": ident,
                "created": when.isoformat(timespec="seconds"),
                "journal_head_seq": facts["head_seq"],
                "journal_head_hash": facts["head_hash"],
                "journal_anchor_seq": facts["anchor_seq"],
                "counts": facts["counts"],
                "payload_sha256": facts["sha256"],
                "payload_size": facts["size"],
            }
            with snap.open("rb") as source, partial.open("xb") as out:
                size = write_archive(
                    out,
                    source,
                    master,
                    nonce,
                    manifest,
                    chunk_size=chunk_size,
                    on_chunk=on_chunk,
                )
                out.flush()
                os.fsync(out.fileno())
            final = dest_dir / name
            os.replace(partial, final)
            fsync_dir(dest_dir)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return BackupOutcome(str(final), size, manifest)

    def _snapshot(self, path: Path, keys: ArchiveKeys) -> dict[str, Any]:
        # VACUUM INTO: one consistent read snapshot even while the agent writes, written compact
        # (no free page, no stale bytes in the pages' slack) in one pass. From a read-only
        # connection of its own, without sync: this scratch copy is never forced to disk (the
        # archive made from it is), which would cost seconds on an SD card.
        # A WAL reader meets SQLITE_BUSY at once, without its busy handler, while another
        # connection recovers the WAL (the agent opening the store at boot while the USB key's
        # backup starts): a few spaced tries, then a failure in words the agent retries later.
        for attempt in range(SNAPSHOT_TRIES):
            source = sqlite3.connect(
                f"file:{self.store.path}?mode=ro",
                uri=True,
                isolation_level=None,
                timeout=SNAPSHOT_BUSY_S,
            )
            try:
                source.execute("PRAGMA synchronous=OFF")
                source.execute("VACUUM INTO ?", (str(path),))
                break
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
                path.unlink(missing_ok=True)
                if attempt == SNAPSHOT_TRIES - 1:
                    raise StateError(
                        "base de données occupée : sauvegarde remise à plus tard",
                        "database busy: backup postponed",
                        code=BackupCode.BACKUP_BUSY,
                    ) from exc
                time.sleep(0.5 * (attempt + 1))
            finally:
                source.close()
        dest = sqlite3.connect(str(path), isolation_level=None)
        try:
            dest.execute("PRAGMA synchronous=OFF")
            dest.execute("PRAGMA journal_mode=DELETE")
            dest.execute("PRAGMA secure_delete=ON")
            dest.execute("BEGIN")
            for key_id, wrapped in dest.execute("SELECT id, wrapped FROM vault_keys").fetchall():
                # The data key travels wrapped by the archive's key; the KEK never leaves the box.
                dek = aes_key_unwrap(self.kek.key, bytes(wrapped))
                dest.execute(
                    "UPDATE vault_keys SET wrapped = ?, kek_fingerprint = ? WHERE id = ?",
                    (aes_key_wrap(keys.vault_wrap, dek), ARCHIVE_FINGERPRINT, key_id),
                )
            # Copies of unknown mail are a short-lived diagnostic aid, not evidence: only their
            # metadata travels (no hostile bytes spread onto USB keys).
            dest.execute(
                "UPDATE mail_quarantine SET copy_enc = NULL, copy_dropped = 'sauvegarde' "
                "WHERE copy_enc IS NOT NULL"
            )
            # Refused lot files likewise: outsider-supplied bytes, not evidence. Their name,
            # size, SHA-256 and reasons travel; their bytes stay on the box (within its quota).
            dest.execute(
                "UPDATE quarantine_files SET content = x'', "
                "content_dropped = coalesce(content_dropped, 'sauvegarde') "
                "WHERE length(content) > 0"
            )
            dest.execute("COMMIT")
            # What those updates freed is zeros (secure_delete), which compress to nearly
            # nothing; a snapshot mostly made of them is compacted all the same.
            free = int(dest.execute("PRAGMA freelist_count").fetchone()[0])
            if free * 8 > int(dest.execute("PRAGMA page_count").fetchone()[0]):
                dest.execute("VACUUM")
            head_seq, head_hash = _head(dest)
            anchor_seq, _ = _anchor(dest)
            facts: dict[str, Any] = {
                "head_seq": head_seq,
                "head_hash": head_hash,
                "anchor_seq": anchor_seq,
                "counts": counts(dest),
            }
        finally:
            dest.close()
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        facts["sha256"] = digest.hexdigest()
        facts["size"] = path.stat().st_size
        return facts

    def _clean_partials(self, dest_dir: Path) -> None:
        # A partial file is what a crash (power cut, SIGKILL) left behind: never an archive.
        for stale in dest_dir.glob(f"{PARTIAL_PREFIX}*{SUFFIX}"):
            stale.unlink(missing_ok=True)
        for stale in self.data_dir.glob(".sauvegarde-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def archives(self, dest_dir: Path) -> list[Path]:
        """This box's archives in ``dest_dir``, oldest first by their manifest's date (names,
        which anyone can choose, prove nothing)."""
        return [a.path for a in sorted(self._proved(dest_dir), key=lambda a: (a.created, a.path))]

    def prune(
        self, dest_dir: Path, keep: int, *, newest: str, now: datetime, quota_bytes: int
    ) -> PruneOutcome:
        """Keep the archive just written (``newest``) and then this box's newest proved archives
        while there are fewer than ``keep`` and their sizes fit ``quota_bytes``; remove the
        older proved ones. Archives dated after ``now`` are neither counted nor removed; copies
        of a kept archive (same archive nonce) are removed; anything not proved is left alone."""
        just_written = Path(newest)
        total = just_written.stat().st_size
        over_quota = total > quota_bytes
        kept_ids: set[bytes] = set()
        kept, full = 1, False
        removed: list[str] = []
        future: list[str] = []
        found = [a for a in self._proved(dest_dir) if a.path != just_written]
        for archive in sorted(found, key=lambda a: (a.created, a.path), reverse=True):
            if archive.created > now:
                future.append(archive.path.name)
                continue
            if archive.nonce in kept_ids:
                removed += self._remove(archive.path)  # a copy of one kept
                continue
            if not full and kept < keep and total + archive.size <= quota_bytes:
                kept_ids.add(archive.nonce)
                kept += 1
                total += archive.size
                continue
            # The oldest go first: once one is not kept, none older is.
            over_quota = over_quota or (not full and kept < keep)
            full = True
            removed += self._remove(archive.path)
        if removed:
            fsync_dir(dest_dir)
        return PruneOutcome(tuple(removed), tuple(sorted(future)), over_quota, kept)

    def _proved(self, dest_dir: Path) -> Iterator[ProvedArchive]:
        if not dest_dir.is_dir():
            return
        master = self.master_key()
        ident = self.box_id()
        with os.scandir(dest_dir) as entries:
            names = sorted(
                e.name
                for e in entries
                if e.name.endswith(SUFFIX) and not e.name.startswith(PARTIAL_PREFIX)
            )
        for name in names:
            archive = prove_archive(dest_dir / name, master, ident)
            if archive is not None:
                yield archive

    @staticmethod
    def _remove(path: Path) -> list[str]:
        try:
            path.unlink()
        except FileNotFoundError:
            return []
        except OSError:
            return []  # a key gone read-only: kept, never reported as removed
        return [path.name]

    def last_ok(self, dest_dir: Path | None = None) -> dict[str, Any] | None:
        key = LAST_OK_META if dest_dir is None else f"{LAST_OK_META}:{dest_dir}"
        raw = self.store.meta_get(key)
        return None if raw is None else dict(json.loads(raw))

    def record_ok(self, info: dict[str, Any]) -> None:
        text = json.dumps(info, sort_keys=True)
        with self.store.write():
            self.store.meta_set(LAST_OK_META, text)
            self.store.meta_set(f"{LAST_OK_META}:{info['dest']}", text)


# -- reading archives -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProvedArchive:
    """An archive whose header, manifest included, authenticated under this box's key."""

    path: Path
    created: datetime
    nonce: bytes
    size: int


def prove_archive(path: Path, master: MasterKey, ident: str) -> ProvedArchive | None:
    """``path`` as an archive of the box ``ident`` made under ``master``, or None when nothing
    proves it is one: not a regular file (a link is never followed), another format, a damaged
    or altered header, another box's identity or key, a manifest without a dated creation. Reads
    the header and the first chunk only."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        try:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                return None
            header = read_header(handle)
            if header.manifest.get("box_id") != ident:
                return None
            keys = check_key(header, master)
            authenticate_header(handle, header, keys)
        except (BaliseError, OSError):
            return None
    raw = header.manifest.get("created")
    try:
        created = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    if created is None or created.tzinfo is None:
        return None
    return ProvedArchive(path, created, header.nonce, info.st_size)


@dataclass(frozen=True, slots=True)
class VerifiedArchive:
    """An archive whose every chunk authenticated under the given key."""

    header: Header
    keys: ArchiveKeys


def unlock(path: Path, master: MasterKey) -> VerifiedArchive:
    """Check the header, the key, every chunk and the database they hold against the manifest
    (decompressed on the fly, in constant memory); nothing is written anywhere."""
    handle, header = open_archive(path)
    with handle:
        keys = check_key(header, master)
        _check_payload(header, payload_blocks(handle, header, keys))
    return VerifiedArchive(header, keys)


def _check_payload(header: Header, blocks: Iterator[bytes], sink: BinaryIO | None = None) -> None:
    """Hash (and write to ``sink``) the archived database; BACKUP_DAMAGED unless it is the one
    the manifest names (SHA-256 and size)."""
    digest = hashlib.sha256()
    size = 0
    for block in blocks:
        digest.update(block)
        size += len(block)
        if sink is not None:
            sink.write(block)
    manifest = header.manifest
    if digest.hexdigest() != manifest.get("payload_sha256") or size != manifest.get("payload_size"):
        raise IntegrityError(
            "archive incohérente : le contenu ne correspond pas au manifeste",
            "archive inconsistent: the content does not match the manifest",
            code=BackupCode.BACKUP_DAMAGED,
        )


def _holds_data(db_path: Path) -> bool:
    if not db_path.exists():
        return False
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return any(
            conn.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()  # noqa: S608
            for t in DATA_TABLES
            if t in tables
        )
    finally:
        conn.close()


def check_target(data_dir: Path, *, force: bool) -> None:
    """Refuse to restore over a box that holds data, unless forced."""
    if not force and _holds_data(data_dir / DB_NAME):
        raise StateError(
            "cette boîte contient déjà des données (lots, retours ou alertes) : restauration "
            "refusée (--force pour remplacer ; l'ancienne base est gardée à côté)",
            "this box already holds data (lots, returns or alerts): restore refused "
            "(--force to replace; the old database is kept aside)",
            code=BackupCode.RESTORE_NOT_EMPTY,
        )


def install(
    path: Path, verified: VerifiedArchive, data_dir: Path, kek: Kek, when: datetime
) -> RestoredFacts:
    """Decrypt into a private work dir, check the chain and the vault, re-wrap, then move in."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".restauration-", dir=data_dir))
    try:
        snap = work / DB_NAME
        handle, header = open_archive(path)
        with handle, snap.open("xb") as out:
            if header.digest != verified.header.digest:
                raise IntegrityError(
                    "l'archive a changé pendant la restauration",
                    "the archive changed during the restore",
                    code=BackupCode.BACKUP_DAMAGED,
                )
            _check_payload(header, payload_blocks(handle, header, verified.keys), out)
            out.flush()
            os.fsync(out.fileno())
        head_seq, head_hash, facts = _check_and_rewrap(snap, header, verified.keys, kek, when)
        replaced, aside = _move_in(snap, data_dir, when)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return RestoredFacts(head_seq, head_hash, facts, replaced, aside)


class ArchiveFile:
    """``ports.LockedArchive`` on one archive file, to be restored into ``data_dir`` under this
    box's KEK: the header read at once (a damaged one refuses before any passphrase)."""

    def __init__(self, path: Path, data_dir: Path | None, kek: Kek | None) -> None:
        self._path = path
        self._data_dir = data_dir
        self._kek = kek
        handle, self._header = open_archive(path)
        handle.close()
        self.verified: VerifiedArchive | None = None

    @property
    def name(self) -> str:
        return self._path.name

    @property
    def manifest(self) -> dict[str, Any]:
        return self._header.manifest

    @property
    def wrapping_key_id(self) -> str:
        return "" if self._kek is None else self._kek.fingerprint

    def check_target(self, *, force: bool) -> None:
        assert self._data_dir is not None  # only a restore asks, with its folder
        check_target(self._data_dir, force=force)

    def unlock(self, passphrase: str) -> None:
        master = derive_master(passphrase, self._header.kdf)
        self.verified = unlock(self._path, master)

    def install(self, when: datetime) -> RestoredFacts:
        if self.verified is None or self._data_dir is None or self._kek is None:
            raise StateError(
                "archive pas encore vérifiée", "archive not verified yet", code=GeneralCode.INTERNAL
            )
        return install(self._path, self.verified, self._data_dir, self._kek, when)


def _check_and_rewrap(
    snap: Path, header: Header, keys: ArchiveKeys, kek: Kek, when: datetime
) -> tuple[int, str, dict[str, Any]]:
    # The snapshot opened as the box opens its store (migrations of an older archive applied
    # here, before anything is moved in), and its journal checked by the box's own full check:
    # streamed from the anchor with the "reordered" diagnosis, the anchor named by a retention
    # checkpoint, and the verified head the archive carries still the entry stored at its
    # number (a journal rewritten below it is refused even when its own hashes agree). The
    # check then remembers the head it reached: the restored box's daily check starts there.
    store = Store(snap.parent)
    try:
        journal = SqliteJournal(store, FixedClock(when), "restore")
        report = journal.verify(full=True)
        head_seq, head_hash = _head(store.conn)
        if not report.ok or head_hash != header.manifest.get("journal_head_hash"):
            why = report.describe() if not report.ok else "tête différente du manifeste"
            raise IntegrityError(
                f"journal de l'archive rompu : {why}",
                f"journal in the archive broken at entry {report.broken_seq}",
                code=BackupCode.RESTORE_CHAIN,
            )
        with store.write():
            conn = store.conn
            for key_id, wrapped in conn.execute("SELECT id, wrapped FROM vault_keys").fetchall():
                try:
                    dek = aes_key_unwrap(keys.vault_wrap, bytes(wrapped))
                except InvalidUnwrap as exc:
                    raise IntegrityError(
                        "clé du coffre de l'archive illisible",
                        "vault key in the archive unreadable",
                        code=BackupCode.RESTORE_VAULT,
                    ) from exc
                conn.execute(
                    "UPDATE vault_keys SET wrapped = ?, kek_fingerprint = ? WHERE id = ?",
                    (aes_key_wrap(kek.key, dek), kek.fingerprint, key_id),
                )
        facts = counts(store.conn)
    finally:
        store.close()  # the last connection: its WAL is folded into the file and removed
    return head_seq, head_hash, facts


def _move_in(snap: Path, data_dir: Path, when: datetime) -> tuple[str | None, str | None]:
    target = data_dir / DB_NAME
    replaced: str | None = None
    aside: str | None = None
    if target.exists():
        old = sqlite3.connect(str(target), isolation_level=None)
        try:
            # Fold the old WAL into its file: a stale -wal next to the new file would be replayed
            # onto it by SQLite.
            old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            head = old.execute("SELECT hash FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
            replaced = None if head is None else str(head[0])
        finally:
            old.close()
        aside_path = data_dir / f"{DB_NAME}.avant-restauration-{when.strftime('%Y%m%dT%H%M%S')}"
        os.replace(target, aside_path)
        aside = aside_path.name
    for extra in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            (data_dir / f"{DB_NAME}{extra}").unlink()
    os.replace(snap, target)
    fsync_dir(data_dir)
    return replaced, aside


# -- extraction without a box -----------------------------------------------------------------

EXTRACT_DB = DB_NAME
EXTRACT_HEADER = "entete.json"
# Room asked beyond the database on the technician's disk (the header file, directory entries);
# a write that still finds the disk full fails the same way, and removes what it wrote.
EXTRACT_MARGIN = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ExtractedFacts:
    """What ``balise backup extract`` wrote."""

    database: Path
    header_file: Path
    size: int
    manifest: dict[str, Any]


def prepare_extract_dir(dest: Path) -> bool:
    """Make sure ``dest`` can receive an extraction: created (0700) when absent, else an empty
    folder that is not a link. Returns whether it was created (to remove it on failure)."""
    try:
        info = os.lstat(dest)
    except FileNotFoundError:
        try:
            dest.mkdir(mode=0o700, parents=True)
        except OSError as exc:
            raise ConfigError(
                f"impossible de créer le dossier {dest} ({os_error_words(exc)[0]})",
                f"cannot create the folder {dest} ({os_error_words(exc)[1]})",
                code=BackupCode.EXTRACT_TARGET,
            ) from exc
        return True
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise StateError(
            f"{dest} n'est pas un dossier (un lien symbolique n'est jamais suivi)",
            f"{dest} is not a folder (a symbolic link is never followed)",
            code=BackupCode.EXTRACT_TARGET,
        )
    with os.scandir(dest) as entries:
        if next(entries, None) is not None:
            raise StateError(
                f"le dossier {dest} n'est pas vide : extraction refusée (choisissez un dossier "
                "vide ou absent)",
                f"the folder {dest} is not empty: extraction refused (choose an empty or "
                "missing folder)",
                code=BackupCode.EXTRACT_NOT_EMPTY,
            )
    return False


def extract(path: Path, header: Header, keys: ArchiveKeys, dest: Path) -> ExtractedFacts:
    """Write the archived database and the archive's header into the empty folder ``dest``,
    streamed (decrypted, decompressed and hashed block by block, in constant memory), checked
    against the manifest before it takes its name. The names written are this function's own,
    never read from the archive, and are created inside ``dest``'s opened descriptor without
    following links: nothing lands outside ``dest``. On any failure what was written is removed.

    The database is the one the box archived: the vault's values stay encrypted under the
    vault's data key, itself wrapped under the archive's vault-wrap key (see
    docs/backup-format.md); nothing secret is written in clear."""
    size = header.manifest.get("payload_size")
    try:
        dir_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:  # replaced by a link or removed since it was checked
        raise StateError(
            f"{dest} n'est plus un dossier ({os_error_words(exc)[0]})",
            f"{dest} is no longer a folder ({os_error_words(exc)[1]})",
            code=BackupCode.EXTRACT_TARGET,
        ) from exc
    written: list[str] = []
    partial = f"{PARTIAL_PREFIX}{EXTRACT_DB}"
    try:
        room = os.statvfs(dir_fd)
        if isinstance(size, int) and room.f_bavail * room.f_frsize < size + EXTRACT_MARGIN:
            raise DiskFullError(
                f"Disque plein : {dest} n'a pas la place de la base ({size // (1024 * 1024)} Mio)",
                f"Disk full: {dest} has no room for the database ({size // (1024 * 1024)} MiB)",
            )
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        handle, again = open_archive(path)
        with handle:
            if again.digest != header.digest:
                raise IntegrityError(
                    "l'archive a changé pendant l'extraction",
                    "the archive changed during the extraction",
                    code=BackupCode.BACKUP_DAMAGED,
                )
            raw_header = _raw_header(handle, header)
            out_fd = os.open(partial, flags, 0o600, dir_fd=dir_fd)
            written.append(partial)
            with os.fdopen(out_fd, "wb") as out:
                _check_payload(again, payload_blocks(handle, again, keys), out)
                out.flush()
                os.fsync(out.fileno())
        os.rename(partial, EXTRACT_DB, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        written = [EXTRACT_DB]
        text = json.dumps(json.loads(raw_header), ensure_ascii=False, indent=1, sort_keys=True)
        head_fd = os.open(EXTRACT_HEADER, flags, 0o600, dir_fd=dir_fd)
        written.append(EXTRACT_HEADER)
        with os.fdopen(head_fd, "w", encoding="utf-8") as out:
            out.write(text + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.fsync(dir_fd)
    except BaseException as exc:
        for name in written:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dir_fd)
        if isinstance(exc, OSError) and no_room(exc):
            raise DiskFullError(
                f"Disque plein : {dest} n'a plus de place, extraction abandonnée",
                f"Disk full: no room left in {dest}, extraction abandoned",
            ) from exc
        raise
    finally:
        os.close(dir_fd)
    return ExtractedFacts(
        dest / EXTRACT_DB, dest / EXTRACT_HEADER, int(size or 0), dict(header.manifest)
    )


def _raw_header(handle: BinaryIO, header: Header) -> bytes:
    """The header's JSON exactly as the archive holds it (checked against its SHA-256 again)."""
    handle.seek(len(MAGIC))
    raw_len = handle.read(4)
    body = handle.read(int.from_bytes(raw_len, "big"))
    if hashlib.sha256(MAGIC + raw_len + body).digest() != header.digest:
        raise IntegrityError(
            "l'archive a changé pendant l'extraction",
            "the archive changed during the extraction",
            code=BackupCode.BACKUP_DAMAGED,
        )
    return body


# -- retention --------------------------------------------------------------------------------


@dataclass
class SqliteRetention:
    """Removes evidence older than the cutoff and checkpoints the journal, in ONE transaction."""

    store: Store
    journal: SqliteJournal

    def purge(self, cutoff: str, now: str) -> RetentionOutcome:
        conn = self.store.conn
        terminal = tuple(str(s) for s in TERMINAL)
        marks = ",".join("?" * len(terminal))
        with self.store.write():
            # Lots: terminal, untouched since the cutoff, and with no newer return about them.
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS _old_lots(id INTEGER PRIMARY KEY)")
            conn.execute("DELETE FROM _old_lots")
            conn.execute(
                f"INSERT INTO _old_lots SELECT id FROM lots WHERE state IN ({marks}) "  # noqa: S608
                "AND state_changed < ? AND received < ? AND NOT EXISTS (SELECT 1 FROM returns r "
                "WHERE r.lot_id = lots.id AND r.received >= ?)",
                (*terminal, cutoff, cutoff, cutoff),
            )
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS _old_returns(id INTEGER PRIMARY KEY)")
            conn.execute("DELETE FROM _old_returns")
            conn.execute(
                "INSERT INTO _old_returns SELECT id FROM returns WHERE received < ? "
                "OR lot_id IN (SELECT id FROM _old_lots)",
                (cutoff,),
            )
            removed: dict[str, int] = {}
            removed["payments"] = conn.execute(
                "DELETE FROM payments WHERE return_id IN (SELECT id FROM _old_returns) "
                "OR lot_id IN (SELECT id FROM _old_lots)"
            ).rowcount
            removed["returns"] = conn.execute(
                "DELETE FROM returns WHERE id IN (SELECT id FROM _old_returns)"
            ).rowcount
            removed["lots"] = conn.execute(
                "DELETE FROM lots WHERE id IN (SELECT id FROM _old_lots)"
            ).rowcount
            removed["quarantine_files"] = conn.execute(
                "DELETE FROM quarantine_files WHERE received < ?", (cutoff,)
            ).rowcount
            removed["mail_quarantine"] = conn.execute(
                "DELETE FROM mail_quarantine WHERE received < ?", (cutoff,)
            ).rowcount
            removed["mail_seen"] = conn.execute(
                "DELETE FROM mail_seen WHERE processed < ?", (cutoff,)
            ).rowcount
            removed["alerts"] = conn.execute(
                "DELETE FROM alerts WHERE acknowledged IS NOT NULL AND created < ?", (cutoff,)
            ).rowcount
            conn.execute("DROP TABLE _old_lots")
            conn.execute("DROP TABLE _old_returns")
            details: dict[str, Any] = {"cutoff": cutoff, "removed": removed}
            details.update(self._cut_journal(cutoff))
            entry = self.journal.append("journal.checkpoint", "retention", details)
        return RetentionOutcome(
            cutoff=cutoff,
            removed=removed,
            journal_removed=int(details["journal_removed"]),
            removed_sha256=str(details["removed_sha256"]),
            checkpoint_seq=entry.seq,
            when=now,
        )

    def _cut_journal(self, cutoff: str) -> dict[str, Any]:
        conn = self.store.conn
        anchor_seq, anchor_hash = _anchor(conn)
        # Only the oldest contiguous run of entries older than the cutoff goes (the chain must
        # stay one piece), and never the head: the next entry must link to something stored.
        head_seq, _ = _head(conn)
        row = conn.execute(
            "SELECT min(seq) FROM journal WHERE time >= ? AND seq > ?", (cutoff, anchor_seq)
        ).fetchone()
        first_kept = int(row[0]) if row is not None and row[0] is not None else head_seq
        upto = max(anchor_seq, min(first_kept, head_seq) - 1)
        digest = hashlib.sha256()
        count = 0
        last_hash = anchor_hash
        for (value,) in conn.execute(
            "SELECT hash FROM journal WHERE seq > ? AND seq <= ? ORDER BY seq", (anchor_seq, upto)
        ):
            digest.update(str(value).encode("ascii") + b"\n")
            last_hash = str(value)
            count += 1
        if count:
            conn.execute("INSERT INTO journal_retention(id, upto) VALUES (1, ?)", (upto,))
            conn.execute("DELETE FROM journal WHERE seq <= ?", (upto,))
            conn.execute(
                "INSERT INTO journal_anchor(id, seq, hash, removed) VALUES (1, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
                "removed = journal_anchor.removed + excluded.removed",
                (upto, last_hash, count),
            )
            conn.execute("DELETE FROM journal_retention")
        seq, digest_hex = (upto, last_hash) if count else (anchor_seq, anchor_hash)
        return {
            "journal_removed": count,
            "journal_removed_from": anchor_seq + 1 if count else None,
            "journal_removed_to": upto if count else None,
            "removed_sha256": digest.hexdigest() if count else "",
            "previous_anchor_hash": anchor_hash,
            "anchor_seq": seq,
            "anchor_hash": digest_hex,
        }


# -- wrong-passphrase throttle ----------------------------------------------------------------

THROTTLE_FILE = "restauration-echecs.json"
MAX_DELAY_S = 60.0


def delay_for(failures: int) -> float:
    """1, 2, 4 … seconds after the 1st, 2nd, 3rd … failure, capped."""
    return 0.0 if failures <= 0 else min(2.0 ** (failures - 1), MAX_DELAY_S)


@dataclass
class PassphraseThrottle:
    """Growing delays for wrong recovery passphrases, durable in a small file (a fresh box has
    no store yet); a process killed during its penalty still owes it at the next start."""

    directory: Path | None
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    failures: int = 0
    last: float = 0.0

    def __post_init__(self) -> None:
        path = self._path()
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text())
                self.failures, self.last = int(data["failures"]), float(data["last"])
            except (ValueError, KeyError, TypeError):
                self.failures, self.last = 8, self.clock()  # a damaged counter counts as many

    def _path(self) -> Path | None:
        return None if self.directory is None else self.directory / THROTTLE_FILE

    def wait(self) -> None:
        remaining = self.last + delay_for(self.failures) - self.clock()
        if remaining > 0:
            self.sleep(min(remaining, MAX_DELAY_S))

    def fail(self) -> None:
        self.failures += 1
        self.last = self.clock()
        path = self._path()
        if path is not None:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"failures": self.failures, "last": self.last}))
            os.replace(tmp, path)
        self.sleep(delay_for(self.failures))

    def reset(self) -> None:
        self.failures = 0
        path = self._path()
        if path is not None:
            path.unlink(missing_ok=True)
