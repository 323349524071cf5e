"""Revocation lists, the pure rules: when this box fetches them and how fresh is fresh enough.

The ANS guide to IGC-Santé status checking asks for the CRLs of the accepted issuers only, daily,
each installation at its own time spread over the hours (never all boxes at midnight), over short
connections. The minute of the day comes from the box's identity: stable across restarts, different
from one box to the next.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from balise.domain.vocabulary import moment

MINUTES_PER_DAY = 24 * 60
DEFAULT_GRACE = timedelta(hours=24)

Freshness = Literal["fresh", "late", "stale"]


def daily_minute(box_id: str) -> int:
    """This box's minute of the day (UTC, 0-1439) for the daily CRL fetch."""
    digest = hashlib.sha256(b"balise-crl:" + box_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % MINUTES_PER_DAY


def next_fetch(box_id: str, after: datetime) -> datetime:
    """The first instant strictly after ``after`` at this box's minute of the day."""
    minute = daily_minute(box_id)
    day = after.replace(hour=0, minute=0, second=0, microsecond=0)
    candidate = day + timedelta(minutes=minute)
    if candidate <= after:
        candidate += timedelta(days=1)
    return candidate


@dataclass(frozen=True, slots=True)
class CrlAge:
    """How a stored CRL stands at ``now``: fresh (before its nextUpdate), late (past it, within
    the grace) or stale (past nextUpdate plus the grace: production no longer signs on it)."""

    freshness: Freshness
    this_update: datetime
    next_update: datetime
    grace: timedelta

    def words(self) -> tuple[str, str]:
        day = f"{moment(self.this_update, 'fr')} UTC"
        nxt = f"{moment(self.next_update, 'fr')} UTC"
        if self.freshness == "fresh":
            return (
                f"liste de révocation du {day}, à jour jusqu'au {nxt}",
                f"revocation list of {moment(self.this_update, 'en')} UTC, current until "
                f"{moment(self.next_update, 'en')} UTC",
            )
        if self.freshness == "late":
            return (
                f"liste de révocation du {day} en retard : elle devait être remplacée le {nxt}",
                f"revocation list of {moment(self.this_update, 'en')} UTC is late: it was due "
                f"to be replaced on {moment(self.next_update, 'en')} UTC",
            )
        hours = int(self.grace.total_seconds() // 3600)
        return (
            f"liste de révocation périmée : du {day}, elle devait être remplacée le {nxt} "
            f"(délai de grâce de {hours} h dépassé)",
            f"revocation list out of date: issued {moment(self.this_update, 'en')} UTC, due "
            f"to be replaced on {moment(self.next_update, 'en')} UTC (grace of {hours} h over)",
        )


def crl_age(
    this_update: datetime, next_update: datetime, now: datetime, grace: timedelta = DEFAULT_GRACE
) -> CrlAge:
    if now <= next_update:
        freshness: Freshness = "fresh"
    elif now <= next_update + grace:
        freshness = "late"
    else:
        freshness = "stale"
    return CrlAge(freshness, this_update, next_update, grace)


@dataclass(frozen=True, slots=True)
class StoredCrl:
    """A revocation list the box verified and kept: ``issuer_key`` names the accepted issuing CA
    (its name and key), ``kind`` is ``full`` or ``delta``; ``der`` is exactly what was fetched."""

    issuer_key: str
    kind: Literal["full", "delta"]
    der: bytes = field(repr=False)
    url: str
    fetched: str  # ISO 8601, UTC
