"""Self-updates, the app's I/O: the running version (the image's os-release, else the installed
package's) and the pending attempt and last update, kept in the database's meta table on the
data partition (they outlive the switch to the other system slot)."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from balise.adapters.store import Store
from balise.domain.errors import ValidationError
from balise.domain.update import VERSION_MAX, LastUpdate, PendingUpdate, parse_version

# systemd's order: /etc/os-release, else /usr/lib/os-release (os-release(5)).
OS_RELEASE_PATHS = (Path("/etc/os-release"), Path("/usr/lib/os-release"))
# Tests and the image tier name another file (one path) in this variable.
OS_RELEASE_ENV = "BALISE_OS_RELEASE"
OS_RELEASE_MAX = 64 * 1024  # an os-release file is a few hundred bytes: read no more than this

PENDING_KEY = "update.pending"
LAST_KEY = "update.last"


def os_release_paths(env: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    environ = os.environ if env is None else env
    given = environ.get(OS_RELEASE_ENV)
    return (Path(given),) if given else OS_RELEASE_PATHS


def image_version(paths: Sequence[Path]) -> str | None:
    """IMAGE_VERSION of the first os-release file that exists, if it is a valid version."""
    for path in paths:
        try:
            with path.open("rb") as f:
                data = f.read(OS_RELEASE_MAX)
        except FileNotFoundError:
            continue
        except OSError:
            return None
        for line in data.decode("utf-8", errors="replace").splitlines():
            key, sep, raw = line.strip().partition("=")
            if not sep or key != "IMAGE_VERSION":
                continue
            try:
                words = shlex.split(raw)
                return parse_version(words[0]) if len(words) == 1 else None
            except (ValueError, ValidationError):
                return None
        return None
    return None


def running_version(env: Mapping[str, str] | None = None) -> str:
    """The version this box runs: the image's IMAGE_VERSION, else (dev, demo, CI host) the
    installed package's version."""
    found = image_version(os_release_paths(env))
    if found is not None:
        return found
    import balise

    # A PEP 440 local version (0.1.0+g1234) in the form a box's versions have (0.1.0-g1234).
    package = re.sub(r"[^0-9A-Za-z.~^-]", "-", str(balise.__version__))[:VERSION_MAX]
    try:
        return parse_version(package)
    except ValidationError:
        return "0"


class StoreUpdateState:
    """The pending attempt and the last update, as JSON in the meta table."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._store.write():
            yield

    def _read(self, key: str) -> dict[str, Any] | None:
        raw = self._store.meta_get(key)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def pending(self) -> PendingUpdate | None:
        value = self._read(PENDING_KEY)
        if value is None or value.get("version") is None:
            return None
        try:
            return PendingUpdate(
                str(value["version"]),
                str(value["previous"]),
                datetime.fromisoformat(str(value["recorded"])),
            )
        except (KeyError, ValueError):
            return None

    def set_pending(self, pending: PendingUpdate | None) -> None:
        document: dict[str, Any] = {"version": None}
        if pending is not None:
            document = {
                "version": pending.version,
                "previous": pending.previous,
                "recorded": pending.recorded.isoformat(),
            }
        self._store.meta_set(PENDING_KEY, json.dumps(document))

    def last(self) -> LastUpdate | None:
        value = self._read(LAST_KEY)
        if value is None:
            return None
        try:
            outcome = value["outcome"]
            if outcome not in ("success", "rolled_back"):
                return None
            return LastUpdate(
                str(value["version"]),
                str(value["running"]),
                datetime.fromisoformat(str(value["when"])),
                outcome,
            )
        except (KeyError, ValueError):
            return None

    def set_last(self, last: LastUpdate) -> None:
        document = {
            "version": last.version,
            "running": last.running,
            "when": last.when.isoformat(),
            "outcome": last.outcome,
        }
        self._store.meta_set(LAST_KEY, json.dumps(document))
