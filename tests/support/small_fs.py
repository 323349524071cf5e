"""A small real file system that fills up: a size-capped tmpfs mounted for one test.

The fail-closed tests (a full disk during purge, intake, send and backup) need ENOSPC from the
kernel, not from a mock: ``small_fs(size_kib)`` mounts a tmpfs of that size (root only: CI and the
developers' machines run as root; elsewhere the test is skipped, said in the reason), and
``fill(path)`` then takes every byte left, so the next write fails with ENOSPC. ``free(path)``
gives the room back.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_FILLER = ".remplissage"


@dataclass
class SmallFs:
    """A mounted tmpfs of ``size_kib``; ``fill()`` leaves no byte free, ``free()`` undoes it."""

    root: Path
    size_kib: int

    def fill(self, leave: int = 0) -> None:
        """Write a filler until the file system is full (``leave`` bytes left free at most)."""
        filler = self.root / _FILLER
        chunk = b"\0" * 65536
        with open(filler, "ab") as out:
            while True:
                room = self.available()
                if room <= leave:
                    break
                size = min(len(chunk), max(1, room - leave))
                try:
                    out.write(chunk[:size])
                    out.flush()
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        # tmpfs counts in pages: the last partial write above may have failed silently in the
        # buffer; make sure one more byte really fails.
        with contextlib.suppress(OSError), open(filler, "ab") as out:
            out.write(b"\0" * 4096)
            out.flush()

    def free(self) -> None:
        (self.root / _FILLER).unlink(missing_ok=True)

    def available(self) -> int:
        stat = os.statvfs(self.root)
        return stat.f_bavail * stat.f_frsize


def _mount(target: Path, size_kib: int) -> None:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(target)],
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[[int], SmallFs]]:
    """Factory: ``small_fs(size_kib)`` mounts a fresh tmpfs of that size under ``tmp_path`` and
    returns it; every mount is undone after the test."""
    if os.geteuid() != 0:
        pytest.skip("a size-capped tmpfs needs root (CI runs as root)")
    mounted: list[Path] = []

    def make(size_kib: int) -> SmallFs:
        target = tmp_path / f"petit-disque-{len(mounted)}"
        target.mkdir()
        _mount(target, size_kib)
        mounted.append(target)
        return SmallFs(target, size_kib)

    try:
        yield make
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "-l", str(target)], check=False, timeout=30)
