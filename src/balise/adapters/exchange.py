"""The exchange account's folders (Maildir style): depot/tmp → depot/new in, retours/ out."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path, PurePosixPath

from balise.adapters.durable import fsync_dir
from balise.domain.errors import ValidationError

FOLDERS = ("depot/tmp", "depot/new", "retours", "sauvegardes")


class ExchangeFolders:
    """Files the practice software drops, and what Balise publishes back, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for folder in FOLDERS:
            (root / folder).mkdir(parents=True, exist_ok=True)
        self.new = root / "depot" / "new"
        self.retours = root / "retours"
        self._made: set[Path] = {self.retours}

    def pending(self) -> list[str]:
        """Names in depot/new, oldest first; depot/tmp is never read (files being written)."""
        entries = [e for e in os.scandir(self.new) if e.is_file(follow_symlinks=False)]
        entries.sort(key=lambda e: (e.stat(follow_symlinks=False).st_mtime_ns, e.name))
        return [e.name for e in entries]

    def read(self, name: str, limit: int) -> tuple[bytes, int]:
        """At most ``limit`` bytes of the file, and its real size (never a whole huge file)."""
        path = self._inside(self.new, name)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            return handle.read(limit), size

    def remove(self, name: str) -> None:
        self._inside(self.new, name).unlink(missing_ok=True)

    def publish(self, relpath: str, data: bytes, *, durable: bool = True) -> None:
        """Write under retours/ through a temporary name, then rename (never half a file).

        ``durable``: fsync the file and its folder now; callers publishing many files pass False
        and call :meth:`sync` once before they record the publication.
        """
        target = self._inside(self.retours, relpath)
        if target.parent not in self._made:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(target.parent)
        tmp = target.with_name(f".{target.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
        if durable:
            fsync_dir(target.parent)

    def sync(self) -> None:
        """Make every file published so far durable: one syncfs of the exchange file system."""
        fd = os.open(self.retours, os.O_RDONLY)
        try:
            libc_name = ctypes.util.find_library("c")
            synced = False
            if libc_name is not None:
                synced = ctypes.CDLL(libc_name, use_errno=True).syncfs(fd) == 0
            if not synced:
                os.sync()
        finally:
            os.close(fd)

    @staticmethod
    def _inside(base: Path, relpath: str) -> Path:
        """``base/relpath`` for a plain relative name: no absolute path, no ".." part, no NUL
        (checked on the text, so no file system call per file)."""
        parts = PurePosixPath(relpath).parts
        if (
            not parts
            or relpath.startswith("/")
            or "\0" in relpath
            or any(part in ("..", ".") for part in parts)
        ):
            raise ValidationError(
                f"nom de fichier refusé : {relpath!r}",
                f"file name refused: {relpath!r}",
                code="EXCHANGE_PATH",
            )
        return base.joinpath(*parts)
