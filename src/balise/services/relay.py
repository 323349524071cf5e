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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Literal, Protocol

from balise.domain.errors import BaliseError
from balise.domain.journal import JsonValue
from balise.domain.relay import (
    AllowedService,
    AnswerCut,
    HttpHead,
    RelayRefused,
    forward_head,
    route,
)
from balise.ports import Clock

__all__ = [
    "JOURNAL_KIND",
    "REQUESTS_PER_ENTRY",
    "REQUEST_FIELDS",
    "CardLogin",
    "ChannelState",
    "CloseReason",
    "Relay",
    "RequestLog",
    "RequestRow",
    "UpstreamChannel",
    "error_answer",
    "journaled_requests",
    "requests_details",
]

# The requests' journal: ONE entry lists the requests of one commit window of the box's journal
# (GroupCommitJournal.rows), at most REQUESTS_PER_ENTRY (more: split, in order), each as a row
# of REQUEST_FIELDS: the service's name, the method, the status, the sizes in and out, the
# duration, when it ended (ms after the first request of the entry, whose time is the entry's),
# and who answered ("service", "relay" for the relay's own refusal, "cut" for the service's
# answer cut short on its way). Never a body, a header value or the query.
JOURNAL_KIND = "relay_requests"
REQUESTS_PER_ENTRY = 256
REQUEST_FIELDS = (
    "service",
    "method",
    "status",
    "request_bytes",
    "answer_bytes",
    "duration_ms",
    "after_ms",
    "answered_by",
)
# One request as the request path notes it (the cheapest thing to keep): the service's name,
# the method, the status, the sizes in and out, started and ended (the relay's monotonic
# seconds), who answered. requests_details makes the entry of them, off the request path.
RequestRow = tuple[str, str, int, int, int, float, float, str]
# Why a channel closed: the card pulled, the idle time, the practitioner's key, the relay stopped.
CloseReason = Literal["card_pulled", "idle", "practitioner", "stopped"]
JOURNAL_OPEN = "relay_open"
JOURNAL_CLOSE = "relay_close"
_SETTLE_S = 2.0  # how long a close waits for the entries of answers being sent
# A request trusts a check of the card younger than this instead of asking the card again: on a
# real card behind pcscd the question (C_GetTokenInfo) can cost an exchange with the card,
# milliseconds, many times the relay's whole work per request. A card pulled is seen by the
# next request at most this long after, and by the watchdog (check) within its period.
CARD_CHECK_S = 0.5


class UpstreamChannel(Protocol):
    """One kept TLS channel to one service (balise.adapters.card_tls.TlsChannel)."""

    handshakes: int

    @property
    def is_open(self) -> bool: ...

    def forward(
        self,
        request_head: bytes,
        body: bytes,
        method: str,
        send: Callable[[bytes], object] | None = None,
    ) -> tuple[bytes, int, int, bool]: ...

    def close(self) -> None: ...


class RequestLog(Protocol):
    """Where the relay journals its opening and closing (the journal port; on the box its group
    commit, balise.adapters.journal.GroupCommitJournal, whose ``rows`` takes the requests)."""

    def append(
        self,
        kind: str,
        subject: str = "",
        details: Mapping[str, JsonValue] | None = None,
        *,
        actor: str | None = None,
    ) -> object: ...


def requests_details(rows: Sequence[RequestRow]) -> dict[str, JsonValue]:
    """The details of one JOURNAL_KIND entry listing ``rows`` (in order; the caller keeps them
    to REQUESTS_PER_ENTRY): the field names once, then one list per request."""
    first = rows[0][6]
    listed: list[JsonValue] = [
        [
            name,
            method,
            status,
            size_in,
            size_out,
            round((end - start) * 1000),
            round((end - first) * 1000),
            by,
        ]
        for name, method, status, size_in, size_out, start, end, by in rows
    ]
    return {"count": len(listed), "fields": list(REQUEST_FIELDS), "requests": listed}


def journaled_requests(details: Mapping[str, JsonValue]) -> list[dict[str, JsonValue]]:
    """The requests a JOURNAL_KIND entry lists (its details, parsed), each as a mapping of its
    field names to its values (for whoever reads the journal: tests, the bench, a technician)."""
    fields, requests = details.get("fields"), details.get("requests")
    if not isinstance(fields, list) or not isinstance(requests, list):
        return []
    names = [str(f) for f in fields]
    return [dict(zip(names, r, strict=True)) for r in requests if isinstance(r, list)]


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
        card_check_seconds: float = CARD_CHECK_S,
        requests: Callable[[RequestRow], object] | None = None,
    ) -> None:
        """``requests``: where each request's row goes once its answer is on its way (the box:
        its journal's group commit, GroupCommitJournal.rows, one entry per commit window);
        without it, each request is an entry of its own in ``journal``."""
        self._services = dict(services)
        self._channel_for = channel_for
        self._login: CardLogin | None = login
        self._journal = journal
        self._note: Callable[[RequestRow], object] = requests or self._entry_each
        self._clock = clock
        self._idle = idle_seconds
        self._card_present = card_present
        self._card_every = card_check_seconds
        self._card_seen = -float("inf")  # when the card was last found present (monotonic)
        self._monotonic = monotonic
        self._channels: dict[str, UpstreamChannel] = {}
        self._locks: dict[str, threading.Lock] = {name: threading.Lock() for name in services}
        self._state_lock = threading.Lock()
        # Answers whose journal entry is not appended yet (see respond): close() waits for them.
        self._unjournaled = 0
        self._journaled = threading.Condition(self._state_lock)
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
        with self._state_lock:  # the entries of the answers sent just before, then the close
            self._journaled.wait_for(lambda: self._unjournaled == 0, _SETTLE_S)
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
        now = self._monotonic()
        if not self._card_present():
            self.close("card_pulled")
        elif now - self._last_used >= self._idle:
            self.close("idle")
        else:
            self._card_seen = now

    def _card_still_there(self, now: float) -> bool:
        """The card present: asked again only when the last answer is older than
        ``card_check_seconds`` (CARD_CHECK_S), else that answer holds."""
        if now - self._card_seen < self._card_every:
            return True
        if not self._card_present():
            return False
        self._card_seen = now
        return True

    # -- one request ---------------------------------------------------------------------------

    def handle(
        self, head: HttpHead, body: bytes, send: Callable[[bytes], object] | None = None
    ) -> bytes:
        """Forward one parsed request from the practice software and return the answer to send
        back (with ``send``: what is left of it, see :meth:`respond`): the service's answer byte
        for byte, or the relay's own refusal; journaled before it returns."""
        answer, journal_it, _keep = self.respond(head, body, send)
        journal_it()
        return answer

    def respond(
        self, head: HttpHead, body: bytes, send: Callable[[bytes], object] | None = None
    ) -> tuple[bytes, Callable[[], object], bool]:
        """:meth:`handle` in two steps: the answer to send back, the noting of its request for
        the journal (timed already: a row queued, see ``requests``) to call once the answer is
        on its way, and whether the practice software's connection may carry its next request
        (not after an answer whose end is the close) — the journal's cost kept off the path
        between the request and its answer. Every request is noted: call it, even when the
        answer could not be sent; :meth:`close` waits for it (a little) before its own entry.

        With ``send`` (the practice software's socket), an answer over STREAM_FROM is passed
        on through it in pieces as it comes, and what is returned is its last piece. When such
        an answer breaks half-way, AnswerCut is raised once its request is noted: the caller
        closes the practice software's connection (too late for an error answer)."""
        started = self._monotonic()
        name = head.first[1][1:].partition("/")[0].partition("?")[0][:40]
        method, size = head.first[0], len(body)
        try:
            service, target = route(head, self._services)
        except RelayRefused as refused:
            return self._refused(name, method, size, refused.status, started, refused.fr)
        if self._login is None:
            return self._refused(
                name,
                method,
                size,
                503,
                started,
                "Canal de la carte fermé : ouvrez-le sur le boîtier (code de la carte).",
            )
        if not self._card_still_there(started):
            self.close("card_pulled")
            return self._refused(
                name, method, size, 503, started, "Carte retirée : le canal est fermé."
            )
        with self._locks[service.name]:
            channel = self._channels.get(service.name)
            if channel is None:
                channel = self._channel_for(service)
                with self._state_lock:
                    self._channels[service.name] = channel
            try:
                answer, status, answer_size, until_close = channel.forward(
                    forward_head(head, service, target, size), body, method, send
                )
            except AnswerCut as cut:
                with self._state_lock:
                    self._requests += 1
                    self._unjournaled += 1
                row = (name, method, cut.status, size, cut.sent, started, self._monotonic(), "cut")
                self._journal_request(row)
                raise
            except RelayRefused as refused:
                return self._refused(name, method, size, refused.status, started, refused.fr)
            except BaliseError as exc:
                return self._refused(name, method, size, 502, started, exc.fr)
        ended = self._monotonic()
        with self._state_lock:
            self._requests += 1
            self._last_used = ended
            self._unjournaled += 1
        row = (name, method, status, size, answer_size, started, ended, "service")
        return answer, partial(self._journal_request, row), not until_close

    def _refused(
        self, name: str, method: str, size: int, status: int, started: float, words: str
    ) -> tuple[bytes, Callable[[], object], bool]:
        """The relay's own answer (``status``, ``words``) instead of the service's."""
        row = (name, method, status, size, 0, started, self._monotonic(), "relay")
        with self._state_lock:
            self._unjournaled += 1
        return error_answer(status, words), partial(self._journal_request, row), True

    def _journal_request(self, row: RequestRow) -> None:
        """One request noted for the journal (sizes and the status only, never a body, a
        header value or the query), once its answer is on its way."""
        try:
            self._note(row)
        finally:
            with self._state_lock:
                self._unjournaled -= 1
                if not self._unjournaled:
                    self._journaled.notify_all()

    def _entry_each(self, row: RequestRow) -> None:
        """Without the group commit's rows: the request's entry alone, listing it."""
        self._journal.append(
            JOURNAL_KIND, self._practitioner, requests_details([row]), actor="relay"
        )
