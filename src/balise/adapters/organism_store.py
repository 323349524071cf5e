"""What the box fetched and validated for each organism, one JSON file per organism under
``<data dir>/organismes/`` (public certificates and dates: no secret), replaced atomically and
durably."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from balise.adapters.durable import fsync_dir

_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


class FileOrganismCertStore:
    """The OrganismCertStore port on files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, organism: str) -> Path:
        if not _ID_RE.fullmatch(organism):
            raise ValueError("bad organism id")
        return self.directory / f"{organism}.json"

    def load(self, organism: str) -> dict[str, Any] | None:
        try:
            value = json.loads(self._path(organism).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def save(self, organism: str, record: Mapping[str, Any]) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._path(organism)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(dict(record), out, ensure_ascii=False, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        fsync_dir(self.directory)
