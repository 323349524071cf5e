"""Cross-process locks: one exclusive fcntl lock file per job and profile (the purge's mechanism),
released by the kernel even when the holder is killed."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from balise.domain.codes import LotCode
from balise.domain.errors import BaliseError, Busy


@contextmanager
def file_lock(path: Path, busy: Callable[[], BaliseError]) -> Iterator[None]:
    """Hold ``path`` exclusively, or raise ``busy()`` at once if another holder has it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise busy() from exc
        yield
    finally:
        os.close(fd)  # closing drops the lock


def send_lock(lock_dir: Path) -> Callable[[str], AbstractContextManager[None]]:
    """The per-profile send lock: two processes never send one profile's lots at the same time."""

    def hold(profile: str) -> AbstractContextManager[None]:
        return file_lock(
            lock_dir / f"send-{profile}.lock",
            lambda: Busy(
                f"envoi déjà en cours pour le profil {profile} (un autre processus envoie)",
                f"sending already in progress for profile {profile} (another process is sending)",
                code=LotCode.SEND_LOCKED,
            ),
        )

    return hold
