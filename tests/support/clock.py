"""The one test clock of the suite.

Every date a test makes that meets the wall clock (certificates of the test PKI, lot dates, mail
dates, sending and signing times, clocks given to a box) derives from ``TEST_NOW``, read once when
the session starts. Run under libfaketime (``FAKETIME=+400d``), the whole suite, its PKI and every
process it starts move together, so the suite passes on any day.

Fixed dates remain only where a file's content is fixed (the golden samples of
``tests/data/samples`` are dated 22 and 23 November 2026) and the test is pure (no certificate, no
clock), or where a picture must not change (kiosk snapshots: their own clock and their own PKI
issued relative to it, see ``SNAPSHOT_NOW``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Final

from balise.adapters.clock import FixedClock

__all__ = ["SNAPSHOT_NOW", "TEST_NOW", "TEST_TODAY", "at_noon", "days_ago", "fixed_clock"]

TEST_NOW: Final[datetime] = datetime.now(UTC).replace(microsecond=0)
TEST_TODAY: Final[date] = TEST_NOW.date()

# The kiosk snapshots show dates: the pictures need one fixed instant, whatever the day of the
# run. Their box and their PKI are both issued relative to it (never to TEST_NOW).
SNAPSHOT_NOW: Final[datetime] = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def at_noon(day: date) -> datetime:
    """Noon UTC of ``day`` (clear of any midnight in Europe/Paris)."""
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def days_ago(days: float) -> datetime:
    """``TEST_NOW`` minus ``days`` (negative: in the future)."""
    return TEST_NOW - timedelta(days=days)


def fixed_clock(offset: timedelta = timedelta(0), *, synchronized: bool = True) -> FixedClock:
    """A clock stopped at ``TEST_NOW + offset``."""
    return FixedClock(TEST_NOW + offset, synchronized=synchronized)
