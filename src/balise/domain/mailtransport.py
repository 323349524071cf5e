"""How the box reaches a mail server, and what a mailbox session could not hand over."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SmtpTls = Literal["implicit", "starttls"]


@dataclass(frozen=True, slots=True)
class Pop3Settings:
    """How to reach one practitioner's mailbox; the password never appears in a repr."""

    host: str
    port: int
    tls: Literal["implicit", "stls"]
    user: str
    password: str = field(repr=False)
    ca_pem: tuple[str, ...] = ()  # trusted CAs; empty = the system's trust store
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class Unfetched:
    """A message the session could not hand over whole, the session still in step with the
    server: ``kept`` is what was read of it (at most the bound asked for; empty when the server
    refused it). ``why``: ``too_large`` (the answer went past its bound and the rest was read
    and dropped) or ``refused`` (the server answered -ERR: it cannot serve that message)."""

    why: Literal["too_large", "refused"]
    kept: bytes = field(repr=False)
