"""Raising an alert once, the way every service that may meet a full disk does it."""

from __future__ import annotations

from contextlib import AbstractContextManager

from balise.domain.errors import DiskFullError
from balise.domain.journal import JsonValue
from balise.ports import Alerts, Journal

__all__ = ["raise_once"]


def raise_once(
    alerts: Alerts,
    journal: Journal,
    transaction: AbstractContextManager[None],
    when: str,
    kind: str,
    subject: str,
    words: tuple[str, str],
    details: dict[str, JsonValue],
) -> int | None:
    """Raise an alert of ``kind`` on ``subject`` unless one is still open, journaled in the same
    ``transaction``. Best effort: when the full disk is the one holding the alerts, nothing is
    raised (None) and the caller's own error says it."""
    try:
        with transaction:
            if alerts.open_alert(kind, subject) is not None:
                return None
            alert_id = alerts.add_alert(kind, subject, words, details, when)
            journal.append("alert.raised", subject, {"kind": kind, "alert": alert_id})
            return alert_id
    except DiskFullError:
        return None
