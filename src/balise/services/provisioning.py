"""The provisioning window from the kiosk's technician mode: the request passed to the root
helper and journaled, and the window's state in the terms the screen shows (time left, LAN
address, host key fingerprint). The kiosk never opens anything itself: it runs unprivileged."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from balise.ports import Clock, Journal, ProvisioningWindow

# A request still in the spool after this long: the root helper is not answering.
NO_ANSWER_AFTER = timedelta(seconds=15)

Phase = Literal["closed", "opening", "open", "closing", "error", "no-answer"]


@dataclass(frozen=True, slots=True)
class WindowStatus:
    """What the technician sees."""

    phase: Phase
    seconds_left: int = 0
    addresses: tuple[str, ...] = ()
    port: int | None = None
    fingerprint: str = ""
    error: str = ""  # the helper's code when the opening failed
    reason: str = ""  # why it was last closed


class ProvisioningService:
    def __init__(self, window: ProvisioningWindow, journal: Journal, clock: Clock) -> None:
        self._window = window
        self._journal = journal
        self._clock = clock

    def open(self) -> None:
        """Ask the root helper to open the window; journaled once the request is passed on."""
        self._window.request("open")
        self._journal.append("provision.window.open", "technician", {"via": "kiosk"})

    def close(self) -> None:
        """Ask the root helper to close the window now (it also closes by itself)."""
        self._window.request("close")
        self._journal.append("provision.window.close", "technician", {"via": "kiosk"})

    def status(self) -> WindowStatus:
        raw = self._window.read()
        now = self._clock.now()
        if raw.pending is not None:
            if raw.pending_since is not None and now - raw.pending_since > NO_ANSWER_AFTER:
                return WindowStatus("no-answer")
            return WindowStatus("opening" if raw.pending == "open" else "closing")
        if raw.state == "error":
            return WindowStatus("error", error=raw.error or "unknown")
        if raw.state == "open" and raw.deadline is not None and raw.deadline > now:
            left = math.ceil((raw.deadline - now).total_seconds())
            return WindowStatus("open", left, raw.addresses, raw.port, raw.fingerprint)
        if raw.state == "open":  # past its deadline: the helper is closing it
            return WindowStatus("closed", reason="deadline")
        return WindowStatus("closed", reason=raw.reason)
