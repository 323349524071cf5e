"""The kiosk's side of the provisioning window: a request dropped in the root helper's spool
(written in ``spool/tmp``, renamed into ``spool/new``, Maildir style) and the state the helper
writes (``state.json``). The helper is ansible/roles/provisioning/files/balise-provisioning-window."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from balise.domain.codes import SetupCode
from balise.domain.errors import StateError, os_error_words
from balise.domain.provisioning import WindowState

DEFAULT_DIR = Path("/run/balise-provisioning")
REQUEST = "window"
MAX_STATE = 64 * 1024


def _when(value: object) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(float(value), UTC)
    return None


class SpoolWindow:
    """Implements :class:`balise.ports.ProvisioningWindow` on the helper's run directory."""

    def __init__(self, run_dir: Path = DEFAULT_DIR) -> None:
        self.run_dir = run_dir
        self.tmp = run_dir / "spool" / "tmp"
        self.new = run_dir / "spool" / "new"

    def request(self, what: Literal["open", "close"]) -> None:
        if not (self.tmp.is_dir() and self.new.is_dir()):
            raise StateError(
                "La fenêtre de provisionnement n'est pas installée sur ce boîtier.",
                "The provisioning window is not installed on this box.",
                code=SetupCode.PROVISION_UNAVAILABLE,
            )
        tmp = self.tmp / f"{REQUEST}.{os.getpid()}.{time.monotonic_ns()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(f"{what}\n")
            # The last request wins: a rename replaces one the helper has not taken yet.
            tmp.replace(self.new / REQUEST)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StateError(
                f"Demande de fenêtre de provisionnement non transmise : {os_error_words(exc)[0]}",
                f"Provisioning window request not passed on: {os_error_words(exc)[1]}",
                code=SetupCode.PROVISION_REQUEST,
            ) from exc

    def _pending(self) -> tuple[Literal["open", "close"] | None, datetime | None]:
        try:
            fd = os.open(self.new / REQUEST, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None, None
        with os.fdopen(fd, "rb") as handle:
            since = _when(os.fstat(handle.fileno()).st_mtime)
            word = handle.read(16).decode("ascii", "replace").strip()
        if word == "open":
            return "open", since
        if word == "close":
            return "close", since
        return None, None

    def _state(self) -> dict[str, Any]:
        try:
            with (self.run_dir / "state.json").open("rb") as handle:
                loaded = json.loads(handle.read(MAX_STATE))
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def read(self) -> WindowState:
        raw = self._state()
        pending, since = self._pending()
        found = raw.get("state")
        state: Literal["closed", "open", "error"] = (
            "open" if found == "open" else "error" if found == "error" else "closed"
        )
        port = raw.get("port")
        addresses = raw.get("addresses")
        return WindowState(
            state=state,
            pending=pending,
            pending_since=since,
            opened=_when(raw.get("opened")),
            deadline=_when(raw.get("deadline")),
            port=port if isinstance(port, int) and not isinstance(port, bool) else None,
            interface=str(raw.get("interface", "")),
            addresses=tuple(str(a) for a in addresses) if isinstance(addresses, list) else (),
            fingerprint=str(raw.get("fingerprint", "")),
            error=str(raw.get("error", "")),
            reason=str(raw.get("reason", "")),
        )
