"""The provisioning window's state as its root helper writes it (read by the kiosk)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal


@dataclass(frozen=True, slots=True)
class WindowState:
    """The provisioning window as its root helper last wrote it, and the kiosk's request still
    waiting to be taken, if any."""

    state: Literal["closed", "open", "error"]
    pending: Literal["open", "close"] | None = None
    pending_since: datetime | None = None
    opened: datetime | None = None
    deadline: datetime | None = None
    port: int | None = None
    interface: str = ""
    addresses: tuple[str, ...] = ()
    fingerprint: str = ""
    error: str = ""  # the helper's code: no-interface, no-address, nft, sshd, ssh-keygen...
    reason: str = ""  # why it was last closed: kiosk, deadline, provision, manual, error
