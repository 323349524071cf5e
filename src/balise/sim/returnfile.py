"""Returns (ARL and NOEMIE) of wire profile v0, PROFILE.md §3, written as an organism writes
them: the OCT simulator's, the tests' and the benchmarks' builders. The box only reads returns
(balise.domain.returns, whose parser reads back every value written here)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

from balise.domain.codes import SimCode
from balise.domain.errors import ValidationError
from balise.domain.returns import (
    FLOW_TYPES,
    ORGANISM_TYPES,
    PROFILE_V0,
    Arl,
    FlowType,
    Noemie,
    NoemieLot,
    OrganismType,
    PaymentState,
    Reason,
    RejectLine,
    ReturnHeader,
    ReturnProfile,
    Share,
)

_ALNUM = re.compile(r"[A-Za-z0-9]+")


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


class ReturnBuildError(ValidationError):
    """A builder was given a value that does not fit the return layout."""

    code = SimCode.RETURN_BUILD


def _bad(what: str) -> ReturnBuildError:
    return ReturnBuildError(
        f"Valeur impossible dans un retour : {what}", f"Value does not fit a return: {what}"
    )


def _text(value: str, length: int, what: str) -> str:
    if len(value) > length or not value.isascii() or not value.isprintable() or "@" in value:
        raise _bad(f"{what} (at most {length} printable ASCII characters, no @)")
    return value.ljust(length, " ")


def _digits(value: int | str, length: int, what: str) -> str:
    text = value if isinstance(value, str) else str(value)
    if isinstance(value, int) and value < 0:
        raise _bad(f"{what} (negative)")
    if not _is_digits(text) or len(text) > length:
        raise _bad(f"{what} (at most {length} digits)")
    return text.rjust(length, "0")


def _aammjj(value: date, what: str) -> str:
    if not 2000 <= value.year <= 2099:
        raise _bad(f"{what} (year 2000-2099)")
    return value.strftime("%y%m%d")


def _choose(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise _bad(f"{what} (one of {', '.join(allowed)})")
    return value


def encode_header(header: ReturnHeader, profile: ReturnProfile = PROFILE_V0) -> bytes:
    """The 128-byte ``000`` header."""
    file_id = header.file_id
    if len(file_id) != 6 or _ALNUM.fullmatch(file_id) is None:
        raise _bad("file identifier (6 letters or digits)")
    text = (
        "000"
        + _choose(header.organism_type, ORGANISM_TYPES, "organism type")
        + _digits(header.organism_number, 14, "organism number")
        + _text(header.software_id, 6, "software id")
        + _choose(header.addressee_type, ("PS",), "addressee type")
        + _digits(header.emitter, 14, "emitter number")
        + _text(header.program, 6, "program")
        + _choose(header.application, ("AR", "NO"), "application type")
        + file_id
        + _aammjj(header.created, "creation date")
        + profile.norm
        + profile.version
        + "NNU"
        + _choose(header.flow_type, FLOW_TYPES, "flow type")
        + " " * 11
        + f"{profile.record_length:03d}"
    )
    return text.ljust(profile.record_length, " ").encode("ascii")


def _trailer(count: int, total: int, profile: ReturnProfile) -> str:
    text = "999" + _digits(count, 8, "entity count") + _digits(total, 11, "total")
    return text.ljust(profile.record_length, " ")


def _reason_entity(reason: Reason) -> str:
    return "290" + _text(reason.code, 10, "290 code") + _text(reason.label, 80, "290 label") + "@"


def _line_entity(line: RejectLine) -> str:
    return (
        "294"
        + _digits(line.invoice_number, 9, "294 invoice number")
        + _text(line.code, 4, "294 code")
        + _text(line.label, 86, "294 label")
        + _choose(line.level, ("F", "L"), "294 level")
        + "@"
    )


def _lot_entity(lot_number: int, lot_date: date) -> str:
    return "080" + _aammjj(lot_date, "lot date") + _digits(lot_number, 3, "lot number") + "@"


def encode_arl(header: ReturnHeader, arl: Arl, profile: ReturnProfile = PROFILE_V0) -> bytes:
    """Payload of an ARL: ``000 080 085 290* 294* 999``."""
    if header.application != "AR":
        raise _bad("application type of an ARL header must be AR")
    entities = [
        _lot_entity(arl.lot_number, arl.lot_date),
        "085"
        + ("P" if arl.positive else "N")
        + _digits(arl.invoices_received, 5, "invoices received")
        + _aammjj(arl.arl_date, "ARL date")
        + "@",
    ]
    entities += [_reason_entity(r) for r in arl.reasons]
    entities += [_line_entity(line) for line in arl.reject_lines]
    body = "".join(entities) + _trailer(len(entities) + 2, 0, profile)
    return encode_header(header, profile) + body.encode("ascii")


def _share_entity(code: str, share: Share) -> str:
    if share.paid > share.asked or (share.state is not PaymentState.PAID and share.paid != 0):
        raise _bad(f"{code} amounts (paid ≤ asked, and 0 unless paid)")
    return (
        code
        + _digits(share.asked, 8, f"{code} amount asked")
        + _choose(share.state.value, "PRD", f"{code} state")
        + _digits(share.paid, 8, f"{code} amount paid")
        + "@"
    )


def encode_noemie(
    header: ReturnHeader, noemie: Noemie, profile: ReturnProfile = PROFILE_V0
) -> bytes:
    """Payload of a NOEMIE return: ``000 070? (080 (100 198 199? 290* 294*)+)+ 990 999``."""
    if header.application != "NO":
        raise _bad("application type of a NOEMIE header must be NO")
    if not noemie.lots:
        raise _bad("a NOEMIE return needs at least one lot")
    entities: list[str] = []
    if noemie.accounting_date is not None:
        entities.append(
            "070"
            + _aammjj(noemie.accounting_date, "accounting date")
            + _text(noemie.transfer_reference or "", 32, "transfer reference")
            + "@"
        )
    elif noemie.transfer_reference:
        raise _bad("a transfer reference needs an accounting date")
    for lot in noemie.lots:
        if not lot.invoices:
            raise _bad(f"lot {lot.lot_number:03d} has no invoice")
        entities.append(_lot_entity(lot.lot_number, lot.lot_date))
        for inv in lot.invoices:
            if (inv.lot_number, inv.lot_date) != (lot.lot_number, lot.lot_date):
                raise _bad(f"invoice {inv.invoice_number} belongs to another lot")
            entities.append(
                "100"
                + _digits(inv.invoice_number, 9, "invoice number")
                + _digits(inv.lot_number, 3, "lot number")
                + _aammjj(inv.lot_date, "lot date")
                + _choose(inv.invoice_type, ("F", "D"), "invoice type")
                + "@"
            )
            entities.append(_share_entity("198", inv.amo))
            if inv.amc is not None:
                entities.append(_share_entity("199", inv.amc))
            entities += [_reason_entity(r) for r in inv.reasons]
            for line in inv.reject_lines:
                if line.invoice_number != inv.invoice_number:
                    raise _bad(f"294 for invoice {line.invoice_number} under another invoice")
                entities.append(_line_entity(line))
    total = noemie.total_paid
    entities.append(
        "990" + _digits(len(entities), 8, "990 count") + _digits(total, 11, "990 total") + "@"
    )
    body = "".join(entities) + _trailer(len(entities) + 2, total, profile)
    return encode_header(header, profile) + body.encode("ascii")


def build_arl(
    organism_type: OrganismType,
    organism_number: str,
    emitter: str,
    lot_number: int,
    lot_date: date,
    positive: bool,
    invoices: int,
    arl_date: date,
    reasons: Sequence[Reason] = (),
    reject_lines: Sequence[RejectLine] = (),
    *,
    file_id: str = "R00001",
    software_id: str = "CPAM",
    created: date | None = None,
    flow_type: FlowType = "R",
) -> bytes:
    """An ARL payload that :func:`parse_return` reads back as the same values."""
    header = ReturnHeader(
        organism_type=organism_type,
        organism_number=organism_number,
        software_id=software_id,
        emitter=emitter,
        application="AR",
        file_id=file_id,
        created=created if created is not None else arl_date,
        flow_type=flow_type,
    )
    arl = Arl(
        lot_number=lot_number,
        lot_date=lot_date,
        positive=positive,
        invoices_received=invoices,
        arl_date=arl_date,
        reasons=tuple(reasons),
        reject_lines=tuple(reject_lines),
    )
    return encode_arl(header, arl)


def build_noemie(
    organism_type: OrganismType,
    organism_number: str,
    emitter: str,
    accounting_date: date | None,
    lots: Sequence[NoemieLot],
    *,
    transfer_reference: str | None = None,
    file_id: str = "R00001",
    software_id: str = "CPAM",
    created: date | None = None,
    flow_type: FlowType = "R",
) -> bytes:
    """A NOEMIE payload (payments per invoice) that :func:`parse_return` reads back.

    ``accounting_date`` None leaves out the optional ``070`` entity; then ``created`` is required.
    """
    when = created if created is not None else accounting_date
    if when is None:
        raise _bad("creation date (give created= when there is no accounting date)")
    header = ReturnHeader(
        organism_type=organism_type,
        organism_number=organism_number,
        software_id=software_id,
        emitter=emitter,
        application="NO",
        file_id=file_id,
        created=when,
        flow_type=flow_type,
    )
    noemie = Noemie(
        lots=tuple(lots), accounting_date=accounting_date, transfer_reference=transfer_reference
    )
    return encode_noemie(header, noemie)
