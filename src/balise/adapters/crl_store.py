"""The CRLs the box verified, kept as files under ``<data dir>/crl/``: ``<issuer>.<kind>.crl``
(the DER exactly as fetched) and its ``.json`` (where and when it came from). Public material: no
encryption; written through a temporary file, fsync'ed, renamed, directory flushed."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Literal

from balise.adapters.durable import fsync_dir
from balise.domain.crl import StoredCrl

_KEY_RE = re.compile(r"[0-9a-f]{8,64}")
_KINDS: tuple[Literal["full", "delta"], ...] = ("full", "delta")


class FileCrlStore:
    """The CrlStore port on files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _paths(self, issuer_key: str, kind: str) -> tuple[Path, Path]:
        if not _KEY_RE.fullmatch(issuer_key) or kind not in _KINDS:
            raise ValueError("bad CRL key")
        stem = f"{issuer_key}.{kind}"
        return self.directory / f"{stem}.crl", self.directory / f"{stem}.json"

    def get(self, issuer_key: str, kind: Literal["full", "delta"]) -> StoredCrl | None:
        crl_path, meta_path = self._paths(issuer_key, kind)
        try:
            der = crl_path.read_bytes()
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict):
            return None
        return StoredCrl(issuer_key, kind, der, str(meta.get("url", "")), str(meta.get("fetched")))

    def put(self, crl: StoredCrl) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        crl_path, meta_path = self._paths(crl.issuer_key, crl.kind)
        meta = json.dumps({"url": crl.url, "fetched": crl.fetched}).encode("utf-8")
        # The metadata first, then the CRL: a crash between leaves the old CRL with new words at
        # worst, never a CRL without its origin.
        for path, data in ((meta_path, meta), (crl_path, crl.der)):
            tmp = path.with_name(f".{path.name}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        fsync_dir(self.directory)

    def all(self) -> list[StoredCrl]:
        found: list[StoredCrl] = []
        if not self.directory.is_dir():
            return found
        for path in sorted(self.directory.glob("*.crl")):
            key, _, kind = path.stem.partition(".")
            if kind in _KINDS and _KEY_RE.fullmatch(key):
                stored = self.get(key, kind)
                if stored is not None:
                    found.append(stored)
        return found
