"""Schema migrations made safe for self-updates (issue 14).

- Before any migration of an existing database, a consistent copy of it (SQLite's backup API,
  read while this process holds the write lock: exactly the state the migrations start from) is
  written beside it, named after the schema it had: ``balise.db.schema-<name>``, where a
  schema's name is the highest of its migrations' names (:func:`schema_name`) — not the last
  one that ran: a box made new and a box migrated at its updates ran the same migrations in
  different orders, and the version that comes back must find the copy all the same.
- The migrations then run in ONE transaction: one that fails leaves the database as it was, and
  the store does not open (``DB_MIGRATION``): `balise update health` fails, the boot falls back
  to the previous system slot, which finds its own schema.
- An OLDER version opening a database a newer version migrated (its last migration unknown here:
  the box came back to its previous slot) restores the copy that matches its own schema — the
  newer database is kept beside it, never deleted — and says so (the caller journals it and
  raises an alert), instead of running on a schema it does not know.

Processes opening the store at once (kiosk, agent, a command) take these steps one at a time
(an fcntl lock beside the database).

On a ten-year database the copy and the migrations are long (minutes on an SD card): ``busy``,
given by the caller, is called every fraction of a second while they go on or while another
process does them — the agent tells systemd its start goes on (EXTEND_TIMEOUT_USEC), so that its
start timeout never kills a migration half-way, which would only start again from the copy."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from balise.domain.errors import BaliseError, IntegrityError
from balise.domain.update import UpdateCode

if TYPE_CHECKING:
    from balise.adapters.store import Store

COPY_PREFIX = "schema-"  # balise.db.schema-<name>: the copy taken before migrating from <name>
NEWER_PREFIX = "newer-schema-"  # balise.db.newer-schema-<name>.<time>: kept when restoring
LOCK_SUFFIX = ".schema.lock"
# The versions before schema_name looked for their copy under the last migration THEY had
# registered, which was always this one (registered by the journal's module, imported after the
# store's): the copy is also linked under this name for them (a rollback to such a version).
LEGACY_NAME = "0008_journal_verified_head"
# Another process copying and migrating a large database (minutes, tens of them for a large one
# on an SD card): waited for as long as its files change (the copy, the write-ahead log, the
# database) — given up after LOCK_SILENCE_S without a change, or LOCK_WAIT_MAX_S in all.
LOCK_SILENCE_S = 300.0
LOCK_WAIT_MAX_S = 7200.0
LOCK_POLL_S = 0.1
# Every start takes the lock for a few milliseconds (nothing to migrate): only a wait longer than
# this is the other process preparing the database, and said through ``busy``.
_BUSY_AFTER_S = 1.0
_COPY_STEP_PAGES = 1024  # the copy in steps of 4 MiB: ``busy`` called between them
_MIGRATION_TICK = 200_000  # SQLite instructions between two calls of ``busy`` while migrating
Busy = Callable[[], object]  # must not raise


def _idle() -> None:
    pass


@dataclass(frozen=True, slots=True)
class RestoredCopy:
    """An older version found a newer schema and put back the copy of its own."""

    schema: str  # the schema restored (this version's last migration)
    newer_schema: str  # the last migration of the database found
    copy: Path  # the copy restored
    newer_kept: Path  # where the newer database was kept


def known_names(schema: Migrations) -> list[str]:
    """This version's migrations, in order."""
    return [m.name for m in schema.pending(Database(memory=True))]


def schema_name(names: Collection[str]) -> str:
    """The name of the schema made by the migrations ``names`` (whatever the order they ran in):
    the highest name — numbered, so a later version's is always higher."""
    return max(names)


def copy_path(db_path: Path, schema_name: str) -> Path:
    return db_path.with_name(f"{db_path.name}.{COPY_PREFIX}{schema_name}")


def migration_failed(target: str, copy: Path | None, exc: BaseException) -> IntegrityError:
    kept = f" (copie d'avant : {copy.name})" if copy is not None else ""
    kept_en = f" (copy from before: {copy.name})" if copy is not None else ""
    return IntegrityError(
        f"la mise à jour du schéma de la base (jusqu'à {target}) a échoué ({type(exc).__name__}) :"
        f" la base est restée telle qu'elle était{kept}",
        f"the database schema update (up to {target}) failed ({type(exc).__name__}): the "
        f"database was left as it was{kept_en}",
        code=UpdateCode.DB_MIGRATION,
    )


def migrate_safely(
    store: Store, schema: Migrations, busy: Busy | None = None
) -> RestoredCopy | None:
    """Apply ``schema``'s pending migrations to ``store`` as the module says; the restore made,
    if any. ``busy``: called now and then while this takes long (see the module)."""
    busy = busy or _idle
    with _one_at_a_time(store.path, busy):
        names = known_names(schema)
        applied = [m.name for m in schema.applied(store.db)]
        unknown = [n for n in applied if n not in set(names)]
        restored = (
            _restore(store, schema_name(names), schema_name(unknown), busy)
            if unknown and names
            else None
        )
        copy: Path | None = None
        kept: set[Path] = set()
        with store.write():
            pending = schema.pending(store.db)
            applied = [m.name for m in schema.applied(store.db)]
            if pending and applied:  # an existing database (a new one has nothing to keep)
                copy = _copy(store.path, copy_path(store.path, schema_name(applied)), busy)
                kept = {copy, *_legacy_link(store.path, copy, applied)}
            if pending:
                store.conn.set_progress_handler(_ticking(busy), _MIGRATION_TICK)
            try:
                schema.apply(store.db)
            except BaliseError:
                raise
            except sqlite3.Error as exc:
                from balise.adapters.store import store_error

                if store_error(exc) is not None:
                    raise  # a full disk, a lock held, a failing disk: said as such by the store
                raise migration_failed(pending[-1].name, copy, exc) from exc
            except Exception as exc:
                raise migration_failed(pending[-1].name, copy, exc) from exc
            finally:
                store.conn.set_progress_handler(None, 0)
        if copy is not None:
            for old in store.path.parent.glob(f"{store.path.name}.{COPY_PREFIX}*"):
                if old not in kept and not old.name.endswith(".tmp"):
                    old.unlink(missing_ok=True)  # only the copy of the last update is useful
        return restored


@contextmanager
def _one_at_a_time(db_path: Path, busy: Busy) -> Iterator[None]:
    """Held while a process checks, copies and migrates (bounded wait for another one)."""
    try:
        fd = os.open(db_path.with_name(db_path.name + LOCK_SUFFIX), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield  # a read-only data dir: nothing can be migrated nor restored there anyway
        return
    try:
        start = time.monotonic()
        deadline = start + LOCK_SILENCE_S
        seen = _progress(db_path)
        for _ in range(int(LOCK_WAIT_MAX_S / LOCK_POLL_S) + 2):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if (now := time.monotonic()) >= deadline or now - start >= LOCK_WAIT_MAX_S:
                    raise _waited_too_long() from None
                if now - start >= _BUSY_AFTER_S:
                    busy()  # another process copies or migrates: this one's start goes on too
                time.sleep(LOCK_POLL_S)
                if (now_seen := _progress(db_path)) != seen:
                    seen, deadline = now_seen, time.monotonic() + LOCK_SILENCE_S
        else:
            raise _waited_too_long()
        yield
    finally:
        os.close(fd)


def _waited_too_long() -> IntegrityError:
    return IntegrityError(
        "un autre processus prépare la base depuis trop longtemps",
        "another process has been preparing the database for too long",
        code=UpdateCode.DB_MIGRATION,
    )


def _progress(db_path: Path) -> frozenset[tuple[str, int, int]]:
    """What the process preparing the database changes as it goes: the database's own files
    and the copies being written beside it (name, size, modification time of each)."""
    seen: set[tuple[str, int, int]] = set()
    try:
        with os.scandir(db_path.parent) as entries:
            for entry in entries:
                if entry.name.startswith(db_path.name) and not entry.name.endswith(LOCK_SUFFIX):
                    with contextlib.suppress(OSError):
                        info = entry.stat(follow_symlinks=False)
                        seen.add((entry.name, info.st_size, info.st_mtime_ns))
    except OSError:
        pass
    return frozenset(seen)


def _ticking(busy: Busy) -> Callable[[], int]:
    """SQLite's progress handler calling ``busy`` (0: the statement goes on)."""

    def tick() -> int:
        busy()
        return 0

    return tick


def _steps(busy: Busy) -> Callable[[int, int, int], None]:
    """The backup API's progress callback calling ``busy`` between its steps."""

    def step(_status: int, _remaining: int, _total: int) -> None:
        busy()

    return step


def _backup(source: Path, target: Path, busy: Busy) -> None:
    """A consistent copy of the database ``source`` into ``target`` (written aside, synced, then
    renamed into place: never a half copy under the final name)."""
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    src = sqlite3.connect(str(source), timeout=30)
    try:
        dst = sqlite3.connect(str(tmp))
        try:
            src.backup(dst, pages=_COPY_STEP_PAGES, progress=_steps(busy))
        finally:
            dst.close()
    finally:
        src.close()
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _copy(db_path: Path, target: Path, busy: Busy) -> Path:
    """The copy before migrating (the caller holds the write lock: the state read is the one the
    migrations start from). Nothing is migrated without it."""
    try:
        _backup(db_path, target, busy)
    except (OSError, sqlite3.Error) as exc:
        target.with_name(target.name + ".tmp").unlink(missing_ok=True)
        raise IntegrityError(
            f"copie de la base avant la mise à jour de son schéma impossible ({type(exc).__name__})"
            " : rien n'est changé",
            f"cannot copy the database before updating its schema ({type(exc).__name__}): "
            "nothing was changed",
            code=UpdateCode.DB_MIGRATION,
        ) from exc
    return target


def _legacy_link(db_path: Path, copy: Path, applied: Collection[str]) -> list[Path]:
    """The copy also under LEGACY_NAME when the version it was taken from may look for it there
    (one that had that migration, before schema_name): a hard link, no second copy. A link the
    file system refuses is done without: the migration goes on (only a rollback to such an old
    version would miss it), and an older link of that name goes with the other old copies."""
    if LEGACY_NAME not in applied:
        return []
    alias = copy_path(db_path, LEGACY_NAME)
    if alias == copy:
        return []
    tmp = alias.with_name(alias.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(copy, tmp)
        os.replace(tmp, alias)
    except OSError:
        tmp.unlink(missing_ok=True)
        return []
    return [alias]


def _restore(store: Store, ours: str, newest: str, busy: Busy) -> RestoredCopy | None:
    """Put back the copy of schema ``ours`` (the newer database kept aside first); None when no
    such copy exists (the database is then opened as it is, as before)."""
    copy = copy_path(store.path, ours)
    if not copy.is_file():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = store.path.with_name(f"{store.path.name}.{NEWER_PREFIX}{newest}.{stamp}")
    _backup(store.path, kept, busy)
    src = sqlite3.connect(str(copy))
    try:
        src.backup(store.conn)  # page by page into the live database, under SQLite's own locks
    finally:
        src.close()
    return RestoredCopy(ours, newest, copy, kept)
