"""The technician gate's durable record: the failures counted between attempts (and restarts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class GateRecord:
    """What the store keeps between attempts (and across restarts)."""

    failures: int = 0
    last_failure: datetime | None = None
    locked_until: datetime | None = None
