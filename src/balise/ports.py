"""Ports: the Protocols the core talks to; adapters implement them, tests plug real components in."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from balise.domain.journal import JournalEntry, JsonValue
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
