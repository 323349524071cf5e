"""When the box calls its disk full: the rule the kiosk shows (Accueil) and the services share.

A full disk is seen where it matters without writing anything (an alert cannot be stored when
the database has no room left): the kiosk reads the free space of the data partition each time
Accueil refreshes.
"""

from __future__ import annotations

from typing import Final

__all__ = ["FULL_BELOW_BYTES", "FULL_BELOW_RATIO", "is_full"]

# Full below 32 MiB free, or below 5 % of a small partition (a test tmpfs, a tiny SD card).
FULL_BELOW_BYTES: Final = 32 * 1024 * 1024
FULL_BELOW_RATIO: Final = 0.05


def is_full(free: int, total: int) -> bool:
    """True when ``free`` bytes out of ``total`` leave no room for a day's work."""
    if total <= 0:
        return True
    return free < min(FULL_BELOW_BYTES, int(total * FULL_BELOW_RATIO))
