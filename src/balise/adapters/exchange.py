"""The exchange account's folders (Maildir style): depot/tmp → depot/new in, retours/ out."""

from __future__ import annotations

import os
from pathlib import Path

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

    def publish(self, relpath: str, data: bytes) -> None:
        """Write under retours/ through a temporary name, fsync, then rename (never half a file)."""
        target = self._inside(self.retours, relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @staticmethod
    def _inside(base: Path, relpath: str) -> Path:
        candidate = (base / relpath).resolve()
        if base.resolve() not in candidate.parents:
            raise ValidationError(
                f"nom de fichier refusé : {relpath!r}",
                f"file name refused: {relpath!r}",
                code="EXCHANGE_PATH",
            )
        return candidate
