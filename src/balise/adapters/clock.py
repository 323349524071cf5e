"""The system clock, and whether the kernel says it is synchronized (adjtimex), for signing."""

from __future__ import annotations

import ctypes
import ctypes.util
from datetime import UTC, datetime

TIME_ERROR = 5  # adjtimex() state when the clock is not synchronized (STA_UNSYNC)


class SystemClock:
    """UTC time from the system; synchronization read from the kernel on each call."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def is_synchronized(self) -> bool:
        libc_name = ctypes.util.find_library("c")
        if libc_name is None:
            return False
        libc = ctypes.CDLL(libc_name, use_errno=True)
        # struct timex is about 208 bytes; its first field, modes = 0, makes the call read-only.
        buf = ctypes.create_string_buffer(512)
        state = int(libc.adjtimex(buf))
        return 0 <= state < TIME_ERROR


class FixedClock:
    """A clock for tests and the demo: a given time and a given synchronization state."""

    def __init__(self, when: datetime, synchronized: bool = True) -> None:
        self.when = when
        self.synchronized = synchronized

    def now(self) -> datetime:
        return self.when

    def is_synchronized(self) -> bool:
        return self.synchronized
