"""Composition of the backup, restore and retention pieces for the CLI and the agent (the only
place, with app.context, that knows both these services and their SQLite adapters)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from balise.adapters.archive import ArchiveKeys, Header, check_key, derive_master, open_archive
from balise.adapters.backup_db import (
    ArchiveFile,
    ExtractedFacts,
    PassphraseThrottle,
    SqliteBackupArchiver,
    SqliteRetention,
    VerifiedArchive,
    extract,
    prepare_extract_dir,
    unlock,
)
from balise.adapters.clock import SystemClock
from balise.adapters.kek import load_kek
from balise.app.context import Context, open_context
from balise.domain.errors import ConfigError
from balise.ports import Clock, Journal
from balise.services import restore
from balise.services.backup import BackupService
from balise.services.restore import RestoreReport
from balise.services.retention import RetentionService


def backup_service(ctx: Context) -> BackupService:
    """``BackupService`` on this context's store; the agent calls ``run_daily(dests, keep)``."""
    archiver = SqliteBackupArchiver(ctx.store, ctx.vault, ctx.kek, ctx.data_dir)
    return BackupService(archiver, ctx.journal, ctx.clock, ctx.params, ctx.returns_store)


def retention_service(ctx: Context) -> RetentionService:
    """``RetentionService`` on this context's store; the agent calls ``run(clock.now())``."""
    return RetentionService(SqliteRetention(ctx.store, ctx.journal), ctx.params)


def default_destinations(ctx: Context) -> list[Path]:
    """The agent's daily round: the exchange account's ``sauvegardes/`` folder. The backup USB
    key (label BALISE-SAUV) gets its archive when plugged in, from its own unit
    (``balise-usb-backup@.service`` runs ``balise backup --to`` on it), never from the agent."""
    return [ctx.exchange().root / "sauvegardes"]


def _throttle(directory: Path | None, sleep: Callable[[float], None]) -> PassphraseThrottle:
    return PassphraseThrottle(directory, sleep, time.time)


def unlock_with_passphrase(
    archive: Path,
    ask: Callable[[], str],
    *,
    throttle_dir: Path | None,
    attempts: int = 1,
    sleep: Callable[[float], None] = time.sleep,
) -> VerifiedArchive:
    """Verify the whole archive under a passphrase asked up to ``attempts`` times, with growing
    delays after each wrong one (durable in ``throttle_dir``). Writes nothing else."""
    locked = ArchiveFile(archive, None, None)
    restore.unlock_with_passphrase(locked, ask, _throttle(throttle_dir, sleep), attempts)
    assert locked.verified is not None  # unlock_with_passphrase raised otherwise
    return locked.verified


def verify_with_box_key(archive: Path, ctx: Context) -> VerifiedArchive | None:
    """Verify with this box's stored recovery key when it made the archive (no passphrase)."""
    archiver = SqliteBackupArchiver(ctx.store, ctx.vault, ctx.kek, ctx.data_dir)
    try:
        master = archiver.master_key()
    except ConfigError:
        return None
    handle, header = open_archive(archive)
    handle.close()
    if header.kdf != master.kdf:
        return None
    return unlock(archive, master)


def restore_archive(
    archive: Path,
    data_dir: Path,
    ask: Callable[[], str],
    *,
    force: bool = False,
    env: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    attempts: int = 1,
    sleep: Callable[[float], None] = time.sleep,
) -> RestoreReport:
    """``services.restore.restore`` of ``archive`` into ``data_dir`` under this box's KEK."""
    kek = load_kek(env)
    locked = ArchiveFile(archive, data_dir, kek)

    @contextlib.contextmanager
    def restored_journal(the_clock: Clock) -> Iterator[Journal]:
        ctx = open_context(data_dir, actor="cli", env=env, clock=the_clock, create=False)
        try:
            yield ctx.journal
        finally:
            ctx.close()

    return restore.restore(
        locked,
        ask,
        _throttle(data_dir, sleep),
        attempts=attempts,
        force=force,
        clock=clock or SystemClock(),
        restored_journal=restored_journal,
    )


def extract_archive(
    archive: Path,
    dest: Path,
    ask: Callable[[], str],
    *,
    attempts: int = 1,
    sleep: Callable[[float], None] = time.sleep,
) -> ExtractedFacts:
    """Open an archive without a box (no KEK, no data folder): the passphrase asked up to
    ``attempts`` times (growing delays, not durable: there is no box to keep them), then the
    database and the archive's header written into ``dest`` (absent or empty), streamed and
    checked against the manifest. A folder this call created is removed again on failure."""
    handle, header = open_archive(archive)
    handle.close()
    created = prepare_extract_dir(dest)
    try:
        keys = _keys_with_passphrase(header, ask, attempts, sleep)
        return extract(archive, header, keys, dest)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                dest.rmdir()
        raise


def _keys_with_passphrase(
    header: Header, ask: Callable[[], str], attempts: int, sleep: Callable[[float], None]
) -> ArchiveKeys:
    def check(phrase: str) -> ArchiveKeys:
        return check_key(header, derive_master(phrase, header.kdf))

    return restore.ask_passphrase(check, ask, _throttle(None, sleep), attempts)
