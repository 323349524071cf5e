"""Ports: the Protocols the core talks to; adapters implement them, tests plug real components in."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Literal, Protocol

from balise.domain.card import CardIdentity, PinState
from balise.domain.devices import CardEvent, ReaderEvent, UsbReader
from balise.domain.journal import JournalEntry, JsonValue
from balise.domain.lotmail import Delivery, SendReport
from balise.domain.lotrecord import LotRecord, QuarantineRecord
from balise.domain.lotstate import LotState
from balise.domain.params import Value


class Clock(Protocol):
    """Wall clock in UTC, and whether it is synchronized (a Raspberry Pi has no RTC)."""

    def now(self) -> datetime: ...

    def is_synchronized(self) -> bool: ...


class Journal(Protocol):
    """The append-only, hash-chained journal."""

    def append(
        self,
        kind: str,
        subject: str = "",
        details: Mapping[str, JsonValue] | None = None,
        *,
        actor: str | None = None,
    ) -> JournalEntry: ...

    def entries(self, since_seq: int = 0) -> Iterator[JournalEntry]: ...

    def head(self) -> JournalEntry | None: ...


class Vault(Protocol):
    """Encrypted parameters; values are typed and decrypted only on demand."""

    def put(self, scope_id: str, name: str, value: Value) -> None: ...

    def get(self, scope_id: str, name: str) -> Value | None: ...

    def delete(self, scope_id: str, name: str) -> None: ...

    def names(self) -> list[tuple[str, str]]: ...

    def transaction(self) -> AbstractContextManager[None]: ...


class LotStore(Protocol):
    """Lots and refused files; state changes are compare-and-set inside write transactions."""

    def transaction(self) -> AbstractContextManager[None]: ...

    def accepted_keys(self) -> frozenset[tuple[str, str, str]]: ...

    def accepted_hashes(self) -> frozenset[str]: ...

    def find_by_hash(self, sha256: str) -> LotRecord | None: ...

    def find_quarantine(self, sha256: str, name: str) -> QuarantineRecord | None: ...

    def add_lot(self, record: LotRecord, content: bytes) -> int: ...

    def add_quarantine(self, record: QuarantineRecord, content: bytes) -> int: ...

    def get(self, lot_id: int) -> LotRecord | None: ...

    def content(self, lot_id: int) -> bytes: ...

    def lots(
        self, states: frozenset[LotState] | None = None, profile: str | None = None
    ) -> list[LotRecord]: ...

    def quarantined(self) -> list[QuarantineRecord]: ...

    def set_state(
        self, lot_id: int, expected: LotState, target: LotState, when: str, **fields: object
    ) -> None: ...

    def blob(self, lot_id: int, name: str) -> bytes | None: ...


class Exchange(Protocol):
    """The exchange account's folders: lots dropped in ``depot/new``, returns out in ``retours/``."""

    def pending(self) -> list[str]: ...

    def read(self, name: str, limit: int) -> tuple[bytes, int]: ...

    def remove(self, name: str) -> None: ...

    def publish(self, relpath: str, data: bytes) -> None: ...


class TokenSession(Protocol):
    """A logged-in session on the card; closed after the batch, never reused."""

    def sign(self, data: bytes) -> bytes:
        """sha256WithRSAEncryption over ``data`` (the card hashes); a context-specific login per
        call where the key demands it (CKA_ALWAYS_AUTHENTICATE)."""
        ...

    def close(self) -> None: ...


class TokenSigner(Protocol):
    """The card's PKCS#11 side: identity without PIN, fresh PIN state, exactly one login per PIN."""

    def identify(self) -> CardIdentity: ...

    def pin_state(self) -> PinState: ...

    def login(self, pin: bytearray | None) -> TokenSession:
        """One C_Login with ``pin`` (None on a protected authentication path); WrongPin,
        PinLocked (no attempt at all) or CardRemoved; never retried."""
        ...


class ReaderWatcher(Protocol):
    """USB smart-card readers plugged in and out (udev); bursts arrive coalesced."""

    def start(self, callback: Callable[[ReaderEvent], None]) -> None:
        """Begin watching; readers already present are reported as "added" first. ``callback``
        runs on the watcher's own thread."""
        ...

    def stop(self) -> None: ...

    def present(self) -> list[UsbReader]: ...


class CardWatcher(Protocol):
    """Cards inserted and removed in the PC/SC readers, with the ATR and its kind."""

    def start(self, callback: Callable[[CardEvent], None]) -> None:
        """Begin watching; cards already in a reader are reported as "inserted" first.
        ``callback`` runs on the watcher's own thread."""
        ...

    def stop(self) -> None:
        """Returns within about a second (never pyscard's 60 s monitor wait)."""
        ...

    def present(self) -> list[CardEvent]:
        """The cards in the readers now, as "inserted" events."""
        ...


SmtpTls = Literal["implicit", "starttls"]


class MailSender(Protocol):
    """SMTP submission: ONE TLS session for a list of messages, AUTH only after TLS."""

    async def send_batch(
        self,
        host: str,
        port: int,
        tls: SmtpTls,
        user: str,
        password: str,
        context: ssl.SSLContext,
        messages: Sequence[tuple[str, str, bytes]],
        on_accepted: Callable[[int], None],
    ) -> SendReport:
        """Send ``(mail_from, rcpt, data)`` in order; ``on_accepted(index)`` runs right after each
        250. A message refused by the server is reported and the session goes on; anything that
        breaks the session raises a TransmissionError (the rest is not sent)."""
        ...


class Outbox(Protocol):
    """The sending side of the lots: frozen mails and the compostage counter, written inside the
    caller's lot transaction (LotStore.transaction)."""

    def take_counter(self, name: str) -> int:
        """The counter's current value, and store the next one (wrapping at 99999)."""
        ...

    def store_mail(self, lot_id: int, mail: bytes) -> None: ...

    def delivery(self, lot_id: int) -> Delivery | None: ...

    def set_status(self, profile: str, status: Mapping[str, str] | None) -> None:
        """The last sending outcome of a profile's mailbox (None: it went through)."""
        ...

    def status(self, profile: str) -> dict[str, str] | None: ...
