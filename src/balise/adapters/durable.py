"""Durability on the file system: what a rename needs after the file's own fsync."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from balise.domain.errors import BaliseError, DiskFullError, FileSystemError


def fsync_dir(path: Path) -> None:
    """Flush the directory ``path`` itself, so that a file created or renamed in it survives a
    power cut (the file's own fsync does not cover its directory entry)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})


def os_failure(exc: OSError, what_fr: str, what_en: str) -> BaliseError:
    """The domain's error for an operating system error where the box had to write ``what``
    (French, English): a full disk or quota is DiskFullError, anything else FileSystemError."""
    if no_room(exc):
        return DiskFullError(f"Disque plein : {what_fr}", f"Disk full: {what_en}")
    return FileSystemError(what_fr, what_en, exc)


def no_room(exc: BaseException) -> bool:
    """Whether ``exc`` says the file system (or the user's quota) is full: ENOSPC or EDQUOT from
    the kernel, SQLITE_FULL from SQLite."""
    if isinstance(exc, OSError):
        return exc.errno in _NO_ROOM
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return False
