"""Cross-process locks: one exclusive fcntl lock file per job and profile (the purge's mechanism),
released by the kernel even when the holder is killed."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from balise.adapters.durable import os_failure
from balise.domain.codes import LotCode
from balise.domain.errors import BaliseError, Busy


def open_lock(path: Path) -> int:
    """The lock file ``path`` opened (its folder made): a descriptor to flock, or the domain's
    error when the disk refuses it (full, read-only, a file where the folder should be)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise os_failure(
            exc, f"verrou {path} impossible à créer", f"lock {path} cannot be created"
        ) from exc


@contextmanager
def file_lock(
    path: Path, busy: Callable[[], BaliseError], *, shared: bool = False
) -> Iterator[None]:
    """Hold ``path`` exclusively (or ``shared`` with other shared holders), or raise ``busy()``
    at once if a holder it cannot share with has it."""
    fd = open_lock(path)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise busy() from exc
        yield
    finally:
        os.close(fd)  # closing drops the lock


# The update gate (issue 14): every signing or sending batch holds this file SHARED while it runs;
# `balise update gate` takes it EXCLUSIVE once none runs, and holds it until the box restarts.
UPDATE_GATE_LOCK = "update-gate.lock"
GATE_POLL_S = 0.1  # how often the gate looks again while a batch runs


@contextmanager
def batch_guard(lock_dir: Path) -> Iterator[None]:
    """Held by a signing or sending batch while it runs; raises UPDATE_IN_PROGRESS at once
    (nothing started) while the update gate holds."""
    from balise.domain.update import update_in_progress

    with file_lock(lock_dir / UPDATE_GATE_LOCK, update_in_progress, shared=True):
        yield


def update_gate_held(lock_dir: Path) -> bool:
    """Whether the update gate holds now (the kiosk says so before asking for a PIN)."""
    try:
        with batch_guard(lock_dir):
            return False
    except BaliseError:
        return True


def take_update_gate(lock_dir: Path, timeout_s: float) -> int:
    """Wait (at most ``timeout_s``) until no batch runs, then hold the gate: the descriptor
    returned keeps it until it is closed or the process ends. UPDATE_GATE_TIMEOUT when a batch
    still runs at the deadline."""
    from balise.domain.update import gate_timeout

    fd = open_lock(lock_dir / UPDATE_GATE_LOCK)
    deadline = time.monotonic() + max(timeout_s, 0.0)
    for _ in range(int(max(timeout_s, 0.0) / GATE_POLL_S) + 2):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
            time.sleep(min(GATE_POLL_S, max(deadline - time.monotonic(), 0.0)))
    os.close(fd)
    raise gate_timeout(timeout_s)


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
