"""How the box reaches a mail server, what a mailbox session could not hand over, and how a
mail server failed: the same kinds of failure for SMTP (sending lots) and POP3 (fetching returns).

The adapters (adapters/smtp.py on aiosmtplib, adapters/pop3.py on poplib) translate the library's,
ssl's and socket's exceptions into these, with words that never echo the server or a secret; the
services and the agent decide on the kind (``isinstance``), never on words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from balise.domain.codes import MailCode
from balise.domain.errors import BaliseError

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


# -- failures: one kind per thing a person can do about it, then one class per protocol -----------


class MailTransportError(BaliseError):
    """A mail server could not be reached or used."""


class ServerUnreachable(MailTransportError):
    """The server cannot be reached, timed out, or the session broke: "waiting for the network",
    retried later, alerted only when it lasts."""


class AuthRefused(MailTransportError):
    """The server refused the mailbox's user name or password."""


class CertUnverified(MailTransportError):
    """The server's certificate does not chain to a trusted CA or does not name the host: nothing,
    credentials least, was sent."""


class NoSafeTls(MailTransportError):
    """No TLS the box accepts (not offered, too old, or the negotiation failed): nothing,
    credentials least, was sent."""


class SmtpError(MailTransportError):
    """Sending failed before the server's 250: the lot goes back to "signed" and is retried."""

    code = MailCode.SMTP


class SmtpUnreachable(SmtpError, ServerUnreachable):
    code = MailCode.SMTP_NETWORK


class SmtpAuthRefused(SmtpError, AuthRefused):
    code = MailCode.SMTP_AUTH


class SmtpCertUnverified(SmtpError, CertUnverified):
    code = MailCode.SMTP_CERT


class SmtpTlsTooOld(SmtpError, NoSafeTls):
    """The server offers only TLS older than 1.2."""

    code = MailCode.SMTP_TLS_VERSION


class SmtpNoStartTls(SmtpError, NoSafeTls):
    """STARTTLS is required but the server does not offer it (or the session is not TLS)."""

    code = MailCode.SMTP_NO_STARTTLS


class SmtpRefused(SmtpError):
    """The server refused one message (sender, recipient or content); the session went on."""

    code = MailCode.SMTP_REFUSED


class Pop3Error(MailTransportError):
    """The mailbox could not be used: the purge stops, nothing is deleted without its record."""

    code = MailCode.POP3


class Pop3Unreachable(Pop3Error, ServerUnreachable):
    code = MailCode.POP3_UNREACHABLE


class Pop3AuthRefused(Pop3Error, AuthRefused):
    code = MailCode.POP3_AUTH


class Pop3TlsError(Pop3Error, NoSafeTls):
    """TLS could not be set up with the POP3 server."""

    code = MailCode.POP3_TLS


class Pop3CertUnverified(Pop3TlsError, CertUnverified):
    code = MailCode.POP3_CERT


class Pop3NoStls(Pop3TlsError):
    """STLS is required but the server does not offer it."""

    code = MailCode.POP3_NO_STLS


class Pop3ProtocolError(Pop3Error):
    """The server answered something unexpected, or more than allowed."""

    code = MailCode.POP3_PROTOCOL
