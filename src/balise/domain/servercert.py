"""The certificate a mail server presented: what the expiry watch needs to warn before it ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

# The two servers of a practitioner's mailbox: sending (SMTP) and relieving it (POP3).
MailService = Literal["smtp", "pop3"]


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """The leaf certificate a mail server showed in a TLS handshake the box verified (chain to a
    trusted CA, host name): its DER bytes, subject and end of validity (UTC)."""

    der: bytes = field(repr=False)
    subject: str
    not_after: datetime


@dataclass(frozen=True, slots=True)
class SeenServerCert:
    """The certificate one practitioner's mail server last presented in a verified handshake,
    and when: first seen (this certificate), last seen (ISO 8601, UTC)."""

    profile: str
    service: MailService
    host: str
    port: int
    subject: str
    not_after: str  # ISO 8601, UTC
    der: bytes = field(repr=False)
    first_seen: str
    last_seen: str
