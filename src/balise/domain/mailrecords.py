"""What the returns store keeps of the mail it took: returns, payments, unknown mail set aside,
alerts — as the kiosk, the CLI and the services read them back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from balise.domain.journal import JsonValue


@dataclass(frozen=True, slots=True)
class ReturnRecord:
    """A recognised (or damaged) return as stored; the raw mail and payload stay encrypted."""

    id: int
    profile: str
    uidl: str
    sha256: str
    kind: str  # arl, noemie, damaged
    status: str  # applied, unmatched, conflict, duplicate, damaged, partial
    emitter: str | None
    organism_number: str | None
    lot_number: str | None
    lot_date: str | None
    lot_id: int | None
    positive: bool | None
    words_fr: str
    words_en: str
    detail: Mapping[str, JsonValue]
    received: str
    size: int
    published: bool


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """One invoice of a NOEMIE return: AMO and AMC shares in cents, state P/R/D."""

    id: int
    return_id: int
    profile: str
    emitter: str
    lot_number: str
    lot_date: str
    lot_id: int | None
    invoice_number: int
    invoice_type: str
    amo_asked: int
    amo_state: str
    amo_paid: int
    amc_asked: int | None
    amc_state: str | None
    amc_paid: int | None
    reasons: tuple[str, ...]
    accounting_date: str | None
    transfer_reference: str | None


@dataclass(frozen=True, slots=True)
class MailQuarantineRecord:
    """An unknown mail: facts in clear, its metadata and copy only encrypted (never shown raw)."""

    id: int
    profile: str
    uidl: str
    sha256: str
    digest_scope: str
    size: int
    reason_code: str
    reason_fr: str
    reason_en: str
    received: str
    copy_size: int
    has_copy: bool
    copy_dropped: str | None
    alerted: bool


@dataclass(frozen=True, slots=True)
class AlertRecord:
    id: int
    kind: str
    subject: str
    fr: str
    en: str
    details: Mapping[str, JsonValue]
    created: str
    acknowledged: str | None
    acknowledged_by: str | None
