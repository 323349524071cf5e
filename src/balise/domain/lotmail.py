"""The lot mail of PROFILE.md §2 step 5 (compostage, Subject, Message-ID, MIME bytes), and the retry
backoff: pure functions, so a lot's frozen mail is the same bytes every time it is built or sent."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.utils import format_datetime, parseaddr

from balise.domain.codes import LotCode
from balise.domain.errors import ValidationError
from balise.domain.mailtransport import SmtpRefused
from balise.domain.servercert import ServerCertificate

COUNTER_MODULO = 100_000  # 5 digits: 00000..99999, then back to 00000
DEFAULT_CODE6 = "100500"  # the value seen in public code (PROFILE.md §2)
PROFILE_VERSION = "0"
# Waits after the 1st, 2nd... failure; the last one repeats (a box offline for a day retries hourly).
BACKOFF_MINUTES = (1, 2, 5, 10, 30, 60)

_COMPOSTAGE_RE = re.compile(r"[0-9]{19}")
_HOST_RE = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_ADDR_RE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the box knows about sending one lot: its frozen mail and its attempts so far."""

    lot_id: int
    mail: bytes | None
    attempts: int
    next_attempt: str | None  # ISO 8601 UTC
    sent_at: str | None


@dataclass(frozen=True, slots=True)
class SendReport:
    """What one SMTP session did: the indexes accepted (250) and those refused, with the words;
    and the certificate the server presented in the verified TLS handshake (for the expiry
    watch; None when it could not be read)."""

    accepted: tuple[int, ...]
    refused: tuple[tuple[int, SmtpRefused], ...] = ()
    server_cert: ServerCertificate | None = None


def _invalid(fr: str, en: str) -> ValidationError:
    return ValidationError(fr, en, code=LotCode.LOT_MAIL)


def compostage(now: datetime, counter: int) -> str:
    """UTC ``YYYYMMDDHHMMSS`` + the 5-digit counter (19 digits)."""
    if now.tzinfo is None:
        raise _invalid("heure sans fuseau pour le compostage", "naive time for the compostage")
    if not 0 <= counter < COUNTER_MODULO:
        raise _invalid(f"compteur hors limites : {counter}", f"counter out of range: {counter}")
    return f"{now.astimezone(UTC):%Y%m%d%H%M%S}{counter:05d}"


def next_counter(counter: int) -> int:
    """The counter after ``counter``: 99999 wraps to 00000."""
    return (counter + 1) % COUNTER_MODULO


def _digits(value: str, n: int, what: str) -> str:
    if not re.fullmatch(rf"[0-9]{{{n}}}", value):
        raise _invalid(f"{what} : {n} chiffres attendus", f"{what}: {n} digits expected")
    return value


def message_id(compostage: str, lot3: str, emitter14: str, host: str) -> str:
    """``<compostage.lot3.emitter14@box-hostname>``: stable for a lot, so a resend carries it too."""
    _digits(compostage, 19, "compostage")
    _digits(lot3, 3, "numéro de lot")
    _digits(emitter14, 14, "numéro d'émetteur")
    if not _HOST_RE.fullmatch(host) or len(host) > 253:
        raise _invalid(f"nom d'hôte invalide : {host!r}", f"invalid host name: {host!r}")
    return f"<{compostage}.{lot3}.{emitter14}@{host}>"


def box_hostname(raw: str) -> str:
    """The right side of Message-IDs: the box's host name if it is a clean DNS name."""
    name = raw.strip().rstrip(".").lower()
    return name if _HOST_RE.fullmatch(name) and len(name) <= 253 else "balise.invalid"


def subject(code6: str, emitter14: str, compostage: str, nb_invoices: int) -> str:
    """``IR<code6>/<emitter14>/<compostage19>/<nb5>``."""
    _digits(code6, 6, "code")
    _digits(emitter14, 14, "numéro d'émetteur")
    _digits(compostage, 19, "compostage")
    if not 0 <= nb_invoices < 100_000:
        raise _invalid("nombre de factures hors limites", "invoice count out of range")
    return f"IR{code6}/{emitter14}/{compostage}/{nb_invoices:05d}"


def _header_value(name: str, value: str) -> str:
    # A CR or LF in a header value would let it forge headers (or the body): refuse, never fold.
    if not value or any(not 0x20 <= ord(c) <= 0x7E for c in value):
        raise _invalid(f"en-tête {name} invalide", f"invalid {name} header")
    return value


def _address(name: str, value: str) -> str:
    if not _ADDR_RE.fullmatch(value):
        raise _invalid(f"adresse {name} invalide : {value!r}", f"invalid {name} address: {value!r}")
    return value


def _base64_lines(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return b"".join(encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76))


def build_lot_mail(
    *,
    from_addr: str,
    to_addr: str,
    subject: str,
    message_id: str,
    date: datetime,
    envelope_der: bytes,
) -> bytes:
    """The lot mail, CRLF line ends; the same inputs always give the same bytes (the MIME
    boundary is derived from the Message-ID, the Date is the frozen enveloping time)."""
    if date.tzinfo is None:
        raise _invalid("date sans fuseau", "naive date")
    if not envelope_der:
        raise _invalid("enveloppe vide", "empty envelope")
    boundary = "=_balise_" + hashlib.sha256(message_id.encode("ascii", "replace")).hexdigest()[:32]
    headers = (
        ("From", _address("From", from_addr)),
        ("To", _address("To", to_addr)),
        ("Subject", _header_value("Subject", subject)),
        ("Date", format_datetime(date.astimezone(UTC), usegmt=True)),
        ("Message-ID", _header_value("Message-ID", message_id)),
        ("MIME-Version", "1.0"),
        ("X-Balise-Profile", PROFILE_VERSION),
        ("Content-Type", f'multipart/mixed; boundary="{boundary}"'),
    )
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    part_head = (
        f"--{boundary}\r\n"
        "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="smime.p7m"\r\n'
        "\r\n"
    )
    return (
        head.encode("ascii")
        + b"\r\n"
        + part_head.encode("ascii")
        + _base64_lines(envelope_der)
        + f"--{boundary}--\r\n".encode("ascii")
    )


def mail_envelope_addresses(mail: bytes) -> tuple[str, str]:
    """(From, To) of a frozen lot mail: the SMTP envelope always matches the frozen headers."""
    headers = BytesHeaderParser().parsebytes(mail)
    from_addr = parseaddr(str(headers.get("From", "")))[1]
    to_addr = parseaddr(str(headers.get("To", "")))[1]
    return _address("From", from_addr), _address("To", to_addr)


def backoff(attempts: int) -> timedelta:
    """The wait before the next try after ``attempts`` failures (1, 2, 5, 10, 30, then 60 min)."""
    index = min(max(attempts, 1), len(BACKOFF_MINUTES)) - 1
    return timedelta(minutes=BACKOFF_MINUTES[index])
