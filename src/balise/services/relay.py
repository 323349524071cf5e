"""The card-authenticated relay (issue 20): the practice software's plain HTTP requests forwarded
to the online services on the allow-list over TLS authenticated by the card's AUTHENTICATION key,
one channel per service kept open and reused, answers returned unchanged.

What this service decides: which requests go (the allow-list, bounded parsing:
``balise.domain.relay``), what is journaled (service, method, sizes, status, duration — never a
body, never a header value), and when everything closes: the practitioner's key, the card pulled,
or the idle time. Closing ends the card's login (the TLS layer can no longer sign) and every
channel. The sockets, the TLS and the card are the adapters' (``balise.adapters.card_tls``,
``balise.adapters.relay_server``), seen here through the small Protocols below."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from balise.domain.errors import BaliseError
from balise.domain.journal import JsonValue
from balise.domain.relay import (
    AllowedService,
    HttpHead,
    RelayRefused,
    forward_head,
    route,
)
from balise.ports import Clock

__all__ = [
    "JOURNAL_KIND",
    "CardLogin",
    "ChannelState",
    "CloseReason",
    "Relay",
    "RequestLog",
    "UpstreamChannel",
    "error_answer",
]

JOURNAL_KIND = "relay_request"
# Why a channel closed: the card pulled, the idle time, the practitioner's key, the relay stopped.
CloseReason = Literal["card_pulled", "idle", "practitioner", "stopped"]
JOURNAL_OPEN = "relay_open"
JOURNAL_CLOSE = "relay_close"


class UpstreamChannel(Protocol):
    """One kept TLS channel to one service (balise.adapters.card_tls.TlsChannel)."""

    handshakes: int

    @property
    def is_open(self) -> bool: ...

    def exchange(self, request_head: bytes, body: bytes, method: str) -> tuple[bytes, HttpHead]: ...

    def close(self) -> None: ...


class RequestLog(Protocol):
    """Where the relay journals (the journal port; on the box its group commit,
    balise.adapters.journal.GroupCommitJournal: one entry per request, committed together)."""

    def append(
        self,
        kind: str,
        subject: str = "",
        details: Mapping[str, JsonValue] | None = None,
        *,
        actor: str | None = None,
    ) -> object: ...


class CardLogin(Protocol):
    """The card's login held for the channel (balise.adapters.pkcs11.Pkcs11Session)."""

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ChannelState:
    """What the kiosk shows: open or not, for whom, since when, how many requests."""

    open: bool
    practitioner: str
    since: datetime | None
    requests: int
    handshakes: int
    closed_because: CloseReason | None  # None while open


def error_answer(status: int, words: str) -> bytes:
    """A short plain-text HTTP answer from the relay itself (never from the service)."""
    reasons = {
        400: "Bad Request",
        403: "Forbidden",
        411: "Length Required",
        413: "Content Too Large",
        431: "Request Header Fields Too Large",
        502: "Bad Gateway",
        503: "Service Unavailable",
    }
    body = (words + "\n").encode("utf-8")
    return (
        f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "X-Balise-Relay: refused\r\n\r\n"
    ).encode("ascii") + body


class Relay:
    """The relay's state and decisions; thread-safe (one lock per service channel, so two
    requests never interleave on one TLS connection)."""

    def __init__(
        self,
        *,
        services: Mapping[str, AllowedService],
        channel_for: Callable[[AllowedService], UpstreamChannel],
        login: CardLogin,
        practitioner: str,
        journal: RequestLog,
        clock: Clock,
        idle_seconds: float,
        card_present: Callable[[], bool],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._services = dict(services)
        self._channel_for = channel_for
        self._login: CardLogin | None = login
        self._journal = journal
        self._clock = clock
        self._idle = idle_seconds
        self._card_present = card_present
        self._monotonic = monotonic
        self._channels: dict[str, UpstreamChannel] = {}
        self._locks: dict[str, threading.Lock] = {name: threading.Lock() for name in services}
        self._state_lock = threading.Lock()
        self._practitioner = practitioner
        self._since = clock.now()
        self._last_used = monotonic()
        self._requests = 0
        self._closed_because: CloseReason | None = None
        journal.append(
            JOURNAL_OPEN,
            practitioner,
            {"services": ", ".join(sorted(self._services))},
            actor="relay",
        )

    # -- state ---------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._login is not None

    def state(self) -> ChannelState:
        with self._state_lock:
            return ChannelState(
                open=self._login is not None,
                practitioner=self._practitioner,
                since=self._since,
                requests=self._requests,
                handshakes=sum(c.handshakes for c in self._channels.values()),
                closed_because=self._closed_because,
            )

    def close(self, because: CloseReason) -> None:
        """Close every channel and end the card's login (idempotent)."""
        with self._state_lock:
            login, self._login = self._login, None
            if login is None:
                return
            self._closed_because = because
            channels = list(self._channels.values())
            requests = self._requests
        for channel in channels:
            channel.close()
        login.close()
        self._journal.append(
            JOURNAL_CLOSE,
            self._practitioner,
            {"because": because, "requests": requests},
            actor="relay",
        )

    def check(self) -> None:
        """Called periodically: close when the card was pulled or the channel stayed idle."""
        if self._login is None:
            return
        if not self._card_present():
            self.close("card_pulled")
        elif self._monotonic() - self._last_used >= self._idle:
            self.close("idle")

    # -- one request ---------------------------------------------------------------------------

    def handle(self, head: HttpHead, body: bytes) -> bytes:
        """Forward one parsed request from the practice software and return the answer to send
        back: the service's answer byte for byte, or the relay's own refusal."""
        started = self._monotonic()
        name = head.first[1][1:].partition("/")[0].partition("?")[0][:40]
        try:
            service, target = route(head, self._services)
        except RelayRefused as refused:
            self._record(name, head, len(body), refused.status, 0, started, refused=True)
            return error_answer(refused.status, refused.fr)
        if self._login is None:
            self._record(name, head, len(body), 503, 0, started, refused=True)
            return error_answer(
                503, "Canal de la carte fermé : ouvrez-le sur le boîtier (code de la carte)."
            )
        if not self._card_present():
            self.close("card_pulled")
            self._record(name, head, len(body), 503, 0, started, refused=True)
            return error_answer(503, "Carte retirée : le canal est fermé.")
        with self._locks[service.name]:
            channel = self._channels.get(service.name)
            if channel is None:
                channel = self._channel_for(service)
                with self._state_lock:
                    self._channels[service.name] = channel
            try:
                answer, answer_head = channel.exchange(
                    forward_head(head, service, target, len(body)), body, head.first[0]
                )
            except RelayRefused as refused:
                self._record(name, head, len(body), refused.status, 0, started, refused=True)
                return error_answer(refused.status, refused.fr)
            except BaliseError as exc:
                self._record(name, head, len(body), 502, 0, started, refused=True)
                return error_answer(502, exc.fr)
        status = int(answer_head.first[1])
        with self._state_lock:
            self._requests += 1
            self._last_used = self._monotonic()
        self._record(name, head, len(body), status, len(answer), started, refused=False)
        return answer

    def _record(
        self,
        name: str,
        head: HttpHead,
        request_size: int,
        status: int,
        answer_size: int,
        started: float,
        *,
        refused: bool,
    ) -> None:
        # Sizes and the status only: never a body, a header value or the query string.
        self._journal.append(
            JOURNAL_KIND,
            name,
            {
                "service": name,
                "method": head.first[0],
                "status": status,
                "request_bytes": request_size,
                "answer_bytes": answer_size,
                "duration_ms": round((self._monotonic() - started) * 1000),
                "by_relay": refused,
            },
            actor="relay",
        )
