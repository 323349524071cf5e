"""Sending lots in the tests: the transmission service wired on a test box as the composition
wires it (a real SMTP sender, the box's outbox), a sender whose every server 250 a test can hook,
and the frozen mail of a lot (the exact bytes that leave, kept for retries)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from balise.adapters.clock import FixedClock
from balise.adapters.outbox import SqliteOutbox
from balise.adapters.smtp import SmtpSender
from balise.app.context import Context
from balise.domain.lotmail import SendReport
from balise.services.lots import LotTransitions
from balise.services.transmission import TransmissionService

HOST = "box-test.balise.test"


class HookedSender:
    """A real MailSender whose ``accepted(index, on_accepted)`` runs at each server 250 in place
    of the service's own callback (which it may call, or not)."""

    def __init__(self, inner: SmtpSender) -> None:
        self._inner = inner

    def accepted(self, index: int, on_accepted: Callable[[int], None]) -> None:
        on_accepted(index)

    async def send_batch(self, *args: Any) -> SendReport:
        """The real sender's ``send_batch`` with the service's arguments, unchanged but the last
        (on_accepted), which goes through ``accepted``."""
        *given, on_accepted = args
        send: Callable[..., Awaitable[SendReport]] = self._inner.send_batch
        return await send(*given, lambda index: self.accepted(index, on_accepted))


def service(
    ctx: Context, clock: FixedClock | None = None, sender: object = None
) -> TransmissionService:
    """The transmission service of ``ctx`` (its clock unless ``clock``; a real SMTP sender unless
    ``sender``)."""
    transitions = (
        ctx.transitions() if clock is None else LotTransitions(ctx.lots, ctx.journal, clock)
    )
    return TransmissionService(
        ctx.lots,
        transitions,
        ctx.journal,
        clock or ctx.clock,
        ctx.params,
        sender or SmtpSender(local_hostname=HOST, timeout=5),  # type: ignore[arg-type]
        SqliteOutbox(ctx.store),
        HOST,
    )


def frozen_mail(ctx: Context, lot_id: int) -> bytes:
    """The mail frozen for ``lot_id`` in the outbox (what leaves, and leaves again on a retry)."""
    delivery = SqliteOutbox(ctx.store).delivery(lot_id)
    assert delivery is not None and delivery.mail is not None
    return delivery.mail
