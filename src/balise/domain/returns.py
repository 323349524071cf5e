"""Returns (ARL and NOEMIE) of wire profile v0, PROFILE.md §3: a bounded parser that never raises.

Writing returns is the organisms' part: the builders live with the simulators
(balise.sim.returnfile).

Pure: bytes in, frozen dataclasses out. Amounts are integer cents; dates are ``datetime.date``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Literal

from balise.domain.vocabulary import euros, language, payment_state

OrganismType = Literal["CP", "MA", "OC", "OT"]
ApplicationType = Literal["AR", "NO"]
FlowType = Literal["R", "T", "D"]
InvoiceType = Literal["F", "D"]
RejectLevel = Literal["F", "L"]
ReturnKind = Literal["arl", "noemie", "damaged", "not_a_return"]

ORGANISM_TYPES: tuple[OrganismType, ...] = ("CP", "MA", "OC", "OT")
FLOW_TYPES: tuple[FlowType, ...] = ("R", "T", "D")


@dataclass(frozen=True, slots=True)
class ReturnProfile:
    """Constants of one return layout, so that a licensed profile can live beside v0 later."""

    name: str
    norm: str
    version: str
    record_length: int
    terminator: str
    # Length of each known entity after its 3-character code, terminator excluded.
    entity_lengths: tuple[tuple[str, int], ...]
    max_entities: int

    def length_of(self, code: str) -> int | None:
        for known, length in self.entity_lengths:
            if known == code:
                return length
        return None


PROFILE_V0 = ReturnProfile(
    name="0",
    norm="RET0",
    version="01",
    record_length=128,
    terminator="@",
    entity_lengths=(
        ("080", 6 + 3),
        ("085", 1 + 5 + 6),
        ("070", 6 + 32),
        ("100", 9 + 3 + 6 + 1),
        ("198", 8 + 1 + 8),
        ("199", 8 + 1 + 8),
        ("290", 10 + 80),
        ("294", 9 + 4 + 86 + 1),
        ("990", 8 + 11),
    ),
    # A real return for a small practice holds a few thousand entities; the bound keeps a hostile
    # 16 MiB stream of tiny entities from building millions of objects in the worker.
    max_entities=100_000,
)

# --------------------------------------------------------------------------------------------
# Parsed data
# --------------------------------------------------------------------------------------------


class PaymentState(StrEnum):
    """State of an AMO (198) or AMC (199) share."""

    PAID = "P"
    REJECTED = "R"
    DEFERRED = "D"

    def words(self, lang: str = "fr") -> str:
        return payment_state(self.value, language(lang))


@dataclass(frozen=True, slots=True)
class ReturnHeader:
    """The fixed 128-byte ``000`` header of a return."""

    organism_type: OrganismType
    organism_number: str  # 14 digits: 000000 + régime + caisse + centre
    software_id: str  # trailing spaces removed
    emitter: str  # addressee = the practitioner's emitter number, 14 digits
    application: ApplicationType
    file_id: str
    created: date
    flow_type: FlowType
    program: str = ""
    addressee_type: Literal["PS"] = "PS"


@dataclass(frozen=True, slots=True)
class Reason:
    """A ``290`` entity: reject or signalement code and label (trailing spaces removed)."""

    code: str
    label: str

    def words(self, lang: str = "fr") -> str:
        del lang  # the label is the organism's own text, in French
        return f"{self.code} : {self.label}" if self.label else self.code


@dataclass(frozen=True, slots=True)
class RejectLine:
    """A ``294`` entity: a reject on one invoice (level ``F``) or one of its lines (``L``)."""

    invoice_number: int
    code: str
    label: str
    level: RejectLevel

    def words(self, lang: str = "fr") -> str:
        if lang == "en":
            where = "invoice" if self.level == "F" else "line"
            return f"Invoice {self.invoice_number:09d} ({where}): {self.code} {self.label}".rstrip()
        where = "facture" if self.level == "F" else "ligne"
        return f"Facture {self.invoice_number:09d} ({where}) : {self.code} {self.label}".rstrip()


@dataclass(frozen=True, slots=True)
class Arl:
    """A logical acknowledgement (accusé de réception logique) for one lot."""

    lot_number: int
    lot_date: date
    positive: bool
    invoices_received: int
    arl_date: date
    reasons: tuple[Reason, ...] = ()
    reject_lines: tuple[RejectLine, ...] = ()

    def words(self, lang: str = "fr") -> str:
        """One sentence for people, e.g. ``Lot rejeté : LOT INVERIFIABLE ...``."""
        if self.positive:
            if lang == "en":
                return f"Lot {self.lot_number:03d} accepted ({self.invoices_received} invoices)"
            return f"Lot {self.lot_number:03d} accepté ({self.invoices_received} factures)"
        label = self.reasons[0].label if self.reasons else ""
        if lang == "en":
            return f"Lot rejected: {label}" if label else "Lot rejected (no reason given)"
        return f"Lot rejeté : {label}" if label else "Lot rejeté (motif non précisé)"


@dataclass(frozen=True, slots=True)
class Share:
    """AMO (``198``) or AMC (``199``) share of an invoice, in cents."""

    asked: int
    state: PaymentState
    paid: int


@dataclass(frozen=True, slots=True)
class InvoicePayment:
    """A ``100`` invoice with its shares and the rejects or signalements that follow it."""

    invoice_number: int
    lot_number: int
    lot_date: date
    invoice_type: InvoiceType
    amo: Share
    amc: Share | None = None
    reasons: tuple[Reason, ...] = ()
    reject_lines: tuple[RejectLine, ...] = ()

    @property
    def paid(self) -> int:
        return self.amo.paid + (self.amc.paid if self.amc is not None else 0)


@dataclass(frozen=True, slots=True)
class NoemieLot:
    """A ``080`` lot of a NOEMIE return and its invoices."""

    lot_number: int
    lot_date: date
    invoices: tuple[InvoicePayment, ...]


@dataclass(frozen=True, slots=True)
class Noemie:
    """A NOEMIE return: payments, rejects and signalements."""

    lots: tuple[NoemieLot, ...]
    accounting_date: date | None = None
    transfer_reference: str | None = None

    @property
    def total_paid(self) -> int:
        return sum(inv.paid for lot in self.lots for inv in lot.invoices)


class ReturnProblem(StrEnum):
    """Why a payload is not a usable return. Values are stable codes."""

    # Not a return at all (the classifier calls the message unknown).
    TOO_SHORT = "RET_TOO_SHORT"
    BAD_HEADER = "RET_BAD_HEADER"
    # A valid header followed by a broken stream: "damaged", kept as evidence, never matched.
    BAD_CHARACTER = "RET_BAD_CHARACTER"
    MISSING_TRAILER = "RET_MISSING_TRAILER"
    TRUNCATED_ENTITY = "RET_TRUNCATED_ENTITY"
    BAD_ENTITY_LENGTH = "RET_BAD_ENTITY_LENGTH"
    BAD_FIELD = "RET_BAD_FIELD"
    BAD_STRUCTURE = "RET_BAD_STRUCTURE"
    MISSING_CONTROL = "RET_MISSING_CONTROL"
    CONTROL_COUNT_MISMATCH = "RET_CONTROL_COUNT"
    CONTROL_TOTAL_MISMATCH = "RET_CONTROL_TOTAL"
    TRAILER_COUNT_MISMATCH = "RET_TRAILER_COUNT"
    TRAILER_TOTAL_MISMATCH = "RET_TRAILER_TOTAL"
    AMOUNT_INCONSISTENT = "RET_AMOUNT_INCONSISTENT"
    LOT_MISMATCH = "RET_LOT_MISMATCH"
    DATA_AFTER_TRAILER = "RET_DATA_AFTER_TRAILER"
    TOO_MANY_ENTITIES = "RET_TOO_MANY_ENTITIES"

    def words(self, lang: str = "fr") -> str:
        fr, en = _PROBLEM_WORDS[self]
        return en if lang == "en" else fr


_PROBLEM_WORDS: dict[ReturnProblem, tuple[str, str]] = {
    ReturnProblem.TOO_SHORT: (
        "trop court pour contenir un en-tête 000",
        "too short to hold a 000 header",
    ),
    ReturnProblem.BAD_HEADER: ("en-tête 000 invalide", "invalid 000 header"),
    ReturnProblem.BAD_CHARACTER: (
        "caractère non ASCII imprimable dans le flux",
        "character outside printable ASCII in the stream",
    ),
    ReturnProblem.MISSING_TRAILER: ("enregistrement 999 absent", "999 trailer missing"),
    ReturnProblem.TRUNCATED_ENTITY: ("entité tronquée", "truncated entity"),
    ReturnProblem.BAD_ENTITY_LENGTH: (
        "entité de longueur incorrecte (pas de @ à sa fin)",
        "entity of wrong length (no @ at its end)",
    ),
    ReturnProblem.BAD_FIELD: ("champ mal formé", "malformed field"),
    ReturnProblem.BAD_STRUCTURE: (
        "entités dans un ordre non prévu",
        "entities in an unexpected order",
    ),
    ReturnProblem.MISSING_CONTROL: ("entité de contrôle 990 absente", "990 control missing"),
    ReturnProblem.CONTROL_COUNT_MISMATCH: (
        "nombre d'entités du 990 incohérent",
        "990 entity count does not add up",
    ),
    ReturnProblem.CONTROL_TOTAL_MISMATCH: (
        "montant total du 990 incohérent",
        "990 total does not add up",
    ),
    ReturnProblem.TRAILER_COUNT_MISMATCH: (
        "nombre d'entités du 999 incohérent",
        "999 entity count does not add up",
    ),
    ReturnProblem.TRAILER_TOTAL_MISMATCH: (
        "montant total du 999 incohérent",
        "999 total does not add up",
    ),
    ReturnProblem.AMOUNT_INCONSISTENT: (
        "montants d'une part incohérents",
        "share amounts inconsistent",
    ),
    ReturnProblem.LOT_MISMATCH: (
        "facture ou rejet rattaché au mauvais lot ou à la mauvaise facture",
        "invoice or reject attached to the wrong lot or invoice",
    ),
    ReturnProblem.DATA_AFTER_TRAILER: (
        "données après l'enregistrement 999",
        "data after the 999 trailer",
    ),
    ReturnProblem.TOO_MANY_ENTITIES: ("trop d'entités", "too many entities"),
}


@dataclass(frozen=True, slots=True)
class ParsedReturn:
    """Outcome of :func:`parse_return`.

    ``kind`` is ``arl`` or ``noemie`` for a sound return, ``damaged`` for a stream broken after a
    valid header (``header`` set, ``problem`` says why), ``not_a_return`` when the header itself is
    invalid. ``detail`` locates the problem (entity index, code, offset) and never quotes content.
    """

    kind: ReturnKind
    header: ReturnHeader | None = None
    arl: Arl | None = None
    noemie: Noemie | None = None
    problem: ReturnProblem | None = None
    detail: str = ""
    unknown_entities: int = 0
    unknown_codes: tuple[str, ...] = ()

    @property
    def is_return(self) -> bool:
        """True when the header is valid (ARL, NOEMIE or damaged)."""
        return self.header is not None

    def words(self, lang: str = "fr") -> str:
        if self.arl is not None:
            return self.arl.words(lang)
        if self.noemie is not None:
            n = sum(len(lot.invoices) for lot in self.noemie.lots)
            paid = euros(self.noemie.total_paid, language(lang))
            if lang == "en":
                return f"NOEMIE return: {n} invoices, {paid} paid"
            return f"Retour NOEMIE : {n} factures, {paid} payés"
        problem = self.problem.words(lang) if self.problem is not None else ""
        if lang == "en":
            prefix = "Damaged return" if self.kind == "damaged" else "Not a return"
            return f"{prefix}: {problem}"
        prefix = "Retour endommagé" if self.kind == "damaged" else "Pas un retour"
        return f"{prefix} : {problem}"


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------

_PRINTABLE = re.compile(rb"[\x20-\x7e]*")
_DIGITS = re.compile(r"[0-9]+")
_ALNUM = re.compile(r"[A-Za-z0-9]+")
_MAX_UNKNOWN_CODES = 16


class _Damaged(Exception):
    """Internal: stops parsing of a stream broken after a valid header."""

    def __init__(self, problem: ReturnProblem, detail: str) -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.detail = detail


@dataclass(frozen=True, slots=True)
class _Entity:
    code: str
    body: str  # the fields after the code, terminator excluded
    seq: int  # 1-based index among the entities after the 000 header (known and unknown)
    offset: int  # byte offset in the payload

    def where(self) -> str:
        return _where(self.seq, self.code, self.offset)


def _is_digits(text: str) -> bool:
    # [0-9]+ (an ASCII text that is all digits has only those), without a regular expression
    return text.isascii() and text.isdigit()


def _num(ent: _Entity, start: int, length: int, what: str) -> int:
    text = ent.body[start : start + length]
    if not _is_digits(text):
        raise _Damaged(ReturnProblem.BAD_FIELD, f"{ent.where()}: {what} is not numeric")
    return int(text)


def _yymmdd(text: str) -> date | None:
    if len(text) != 6 or not _is_digits(text):
        return None
    try:
        return date(2000 + int(text[0:2]), int(text[2:4]), int(text[4:6]))
    except ValueError:
        return None


def _date_field(ent: _Entity, start: int, what: str) -> date:
    value = _yymmdd(ent.body[start : start + 6])
    if value is None:
        raise _Damaged(ReturnProblem.BAD_FIELD, f"{ent.where()}: {what} is not a date")
    return value


def _choice(ent: _Entity, index: int, allowed: str, what: str) -> str:
    value = ent.body[index]
    if value not in allowed:
        raise _Damaged(ReturnProblem.BAD_FIELD, f"{ent.where()}: {what} not in {allowed}")
    return value


def _parse_header(raw: bytes, profile: ReturnProfile) -> ReturnHeader | None:
    """The ``000`` header, or None when it is not one of ours (the message is then unknown)."""
    if _PRINTABLE.fullmatch(raw) is None or b"@" in raw:
        return None
    h = raw.decode("ascii")
    organism_type = h[3:5]
    application = h[47:49]
    flow = h[70]
    created = _yymmdd(h[55:61])
    ok = (
        h[0:3] == "000"
        and organism_type in ORGANISM_TYPES
        and _is_digits(h[5:19])
        and h[25:27] == "PS"
        and _is_digits(h[27:41])
        and application in ("AR", "NO")
        and _ALNUM.fullmatch(h[49:55]) is not None
        and created is not None
        and h[61:65] == profile.norm
        and h[65:67] == profile.version
        and h[67:70] == "NNU"
        and flow in FLOW_TYPES
        and h[71:82] == " " * 11
        and h[82:85] == f"{profile.record_length:03d}"
        and h[85:] == " " * (profile.record_length - 85)
    )
    if not ok or created is None:
        return None
    return ReturnHeader(
        organism_type=organism_type,  # type: ignore[arg-type]  # checked just above
        organism_number=h[5:19],
        software_id=h[19:25].rstrip(" "),
        emitter=h[27:41],
        application=application,  # type: ignore[arg-type]
        file_id=h[49:55],
        created=created,
        flow_type=flow,  # type: ignore[arg-type]
        program=h[41:47].rstrip(" "),
    )


@dataclass(slots=True)
class _Scan:
    entities: list[_Entity] = field(default_factory=list)
    unknown: int = 0
    unknown_codes: list[str] = field(default_factory=list)
    trailer_count: int = 0
    trailer_total: int = 0
    total_entities: int = 0  # after the header, before the trailer


def _scan(text: str, base: int, profile: ReturnProfile) -> _Scan:
    """Split the stream after the header into entities; read the ``999`` trailer."""
    scan = _Scan()
    pos = 0
    term = profile.terminator
    # Each iteration consumes at least 4 characters, and the count is capped: bounded.
    while True:
        if scan.total_entities >= profile.max_entities:
            raise _Damaged(ReturnProblem.TOO_MANY_ENTITIES, f"more than {profile.max_entities}")
        offset = base + pos
        if pos >= len(text):
            raise _Damaged(ReturnProblem.MISSING_TRAILER, f"stream ends at offset {offset}")
        code = text[pos : pos + 3]
        if len(code) < 3:
            raise _Damaged(ReturnProblem.TRUNCATED_ENTITY, f"entity code cut at offset {offset}")
        if code == "999":
            _read_trailer(text[pos:], offset, scan, profile)
            return scan
        if not _is_digits(code):
            raise _Damaged(
                ReturnProblem.BAD_FIELD, f"entity code is not 3 digits at offset {offset}"
            )
        seq = scan.total_entities + 1
        length = profile.length_of(code)
        if length is None:
            if code == "000":
                raise _Damaged(ReturnProblem.BAD_STRUCTURE, f"second 000 header at offset {offset}")
            end = text.find(term, pos + 3)
            if end < 0:
                raise _Damaged(
                    ReturnProblem.TRUNCATED_ENTITY, f"entity {seq} ({code}) at offset {offset}"
                )
            scan.unknown += 1
            if code not in scan.unknown_codes and len(scan.unknown_codes) < _MAX_UNKNOWN_CODES:
                scan.unknown_codes.append(code)
            scan.total_entities = seq
            pos = end + 1
            continue
        body = text[pos + 3 : pos + 3 + length]
        if len(body) < length or term in body:
            raise _Damaged(ReturnProblem.TRUNCATED_ENTITY, _where(seq, code, offset))
        after = text[pos + 3 + length : pos + 4 + length]
        if after != term:
            problem = (
                ReturnProblem.TRUNCATED_ENTITY if not after else ReturnProblem.BAD_ENTITY_LENGTH
            )
            raise _Damaged(problem, _where(seq, code, offset))
        scan.entities.append(_Entity(code, body, seq, offset))
        scan.total_entities = seq
        pos += 4 + length


def _where(seq: int, code: str, offset: int) -> str:
    return f"entity {seq} ({code}) at offset {offset}"


def _read_trailer(rest: str, offset: int, scan: _Scan, profile: ReturnProfile) -> None:
    size = profile.record_length
    if len(rest) < size:
        raise _Damaged(ReturnProblem.TRUNCATED_ENTITY, f"999 trailer cut at offset {offset}")
    if len(rest) > size:
        raise _Damaged(ReturnProblem.DATA_AFTER_TRAILER, f"at offset {offset + size}")
    if not _is_digits(rest[3:22]) or rest[22:] != " " * (size - 22):
        raise _Damaged(ReturnProblem.BAD_FIELD, f"999 trailer at offset {offset}")
    scan.trailer_count = int(rest[3:11])
    scan.trailer_total = int(rest[11:22])


def _reason(ent: _Entity) -> Reason:
    return Reason(code=ent.body[0:10].rstrip(" "), label=ent.body[10:90].rstrip(" "))


def _reject_line(ent: _Entity) -> RejectLine:
    level = _choice(ent, 99, "FL", "level")
    return RejectLine(
        invoice_number=_num(ent, 0, 9, "invoice number"),
        code=ent.body[9:13].rstrip(" "),
        label=ent.body[13:99].rstrip(" "),
        level=level,  # type: ignore[arg-type]  # checked by _choice
    )


def _share(ent: _Entity) -> Share:
    asked = _num(ent, 0, 8, "amount asked")
    state = PaymentState(_choice(ent, 8, "PRD", "state"))
    paid = _num(ent, 9, 8, "amount paid")
    if paid > asked or (state is not PaymentState.PAID and paid != 0):
        raise _Damaged(ReturnProblem.AMOUNT_INCONSISTENT, ent.where())
    return Share(asked=asked, state=state, paid=paid)


def _lot_ref(ent: _Entity) -> tuple[int, date]:
    lot_date = _date_field(ent, 0, "lot date")
    return _num(ent, 6, 3, "lot number"), lot_date


def _build_arl(scan: _Scan) -> Arl:
    ents = scan.entities
    if len(ents) < 2 or ents[0].code != "080" or ents[1].code != "085":
        raise _Damaged(ReturnProblem.BAD_STRUCTURE, "an ARL starts with 080 then 085")
    lot_number, lot_date = _lot_ref(ents[0])
    status = ents[1]
    positive = _choice(status, 0, "PN", "ARL status") == "P"
    received = _num(status, 1, 5, "invoices received")
    arl_date = _date_field(status, 6, "ARL date")
    reasons: list[Reason] = []
    lines: list[RejectLine] = []
    for ent in ents[2:]:
        if ent.code == "290":
            reasons.append(_reason(ent))
        elif ent.code == "294":
            lines.append(_reject_line(ent))
        else:
            raise _Damaged(ReturnProblem.BAD_STRUCTURE, f"{ent.where()} not allowed in an ARL")
    if scan.trailer_count != scan.total_entities + 2:
        raise _Damaged(
            ReturnProblem.TRAILER_COUNT_MISMATCH,
            f"999 says {scan.trailer_count}, stream has {scan.total_entities + 2}",
        )
    if scan.trailer_total != 0:
        raise _Damaged(ReturnProblem.TRAILER_TOTAL_MISMATCH, "an ARL total must be zero")
    return Arl(
        lot_number=lot_number,
        lot_date=lot_date,
        positive=positive,
        invoices_received=received,
        arl_date=arl_date,
        reasons=tuple(reasons),
        reject_lines=tuple(lines),
    )


def _unexpected(ent: _Entity) -> _Damaged:
    return _Damaged(ReturnProblem.BAD_STRUCTURE, f"{ent.where()} not expected here")


@dataclass(slots=True)
class _OpenInvoice:
    number: int
    lot_number: int
    lot_date: date
    invoice_type: InvoiceType
    amo: Share | None = None
    amc: Share | None = None
    remarks_seen: bool = False
    reasons: list[Reason] = field(default_factory=list)
    lines: list[RejectLine] = field(default_factory=list)

    def close(self) -> InvoicePayment:
        assert self.amo is not None  # the grammar only closes an invoice after its 198
        return InvoicePayment(
            invoice_number=self.number,
            lot_number=self.lot_number,
            lot_date=self.lot_date,
            invoice_type=self.invoice_type,
            amo=self.amo,
            amc=self.amc,
            reasons=tuple(self.reasons),
            reject_lines=tuple(self.lines),
        )


def _build_noemie(scan: _Scan) -> Noemie:
    # Grammar: 070? (080 (100 198 199? [290|294]*)+)+ 990 — unknown entities already skipped.
    accounting: date | None = None
    reference: str | None = None
    lots: list[NoemieLot] = []
    lot: tuple[int, date] | None = None
    invoices: list[InvoicePayment] = []
    inv: _OpenInvoice | None = None
    control: _Entity | None = None
    state = "start"  # start, after070, lot, invoice, shared (198 read), end

    def close_invoice() -> None:
        nonlocal inv
        if inv is not None:
            invoices.append(inv.close())
            inv = None

    def close_lot() -> None:
        nonlocal invoices
        close_invoice()
        if lot is not None:
            lots.append(NoemieLot(lot[0], lot[1], tuple(invoices)))
        invoices = []

    for ent in scan.entities:
        code = ent.code
        if code == "070":
            if state != "start":
                raise _unexpected(ent)
            accounting = _date_field(ent, 0, "accounting date")
            reference = ent.body[6:38].rstrip(" ") or None
            state = "after070"
        elif code == "080":
            if state not in ("start", "after070", "shared"):
                raise _unexpected(ent)
            close_lot()
            lot = _lot_ref(ent)
            state = "lot"
        elif code == "100":
            if state not in ("lot", "shared") or lot is None:
                raise _unexpected(ent)
            close_invoice()
            number = _num(ent, 0, 9, "invoice number")
            ref = (_num(ent, 9, 3, "lot number"), _date_field(ent, 12, "lot date"))
            kind = _choice(ent, 18, "FD", "invoice type")
            if ref != lot:
                raise _Damaged(ReturnProblem.LOT_MISMATCH, ent.where())
            inv = _OpenInvoice(number, ref[0], ref[1], kind)  # type: ignore[arg-type]
            state = "invoice"
        elif code == "198":
            if state != "invoice" or inv is None:
                raise _unexpected(ent)
            inv.amo = _share(ent)
            state = "shared"
        elif code == "199":
            if state != "shared" or inv is None or inv.amc is not None or inv.remarks_seen:
                raise _unexpected(ent)
            inv.amc = _share(ent)
        elif code in ("290", "294"):
            if state != "shared" or inv is None:
                raise _unexpected(ent)
            inv.remarks_seen = True
            if code == "290":
                inv.reasons.append(_reason(ent))
            else:
                line = _reject_line(ent)
                if line.invoice_number != inv.number:
                    raise _Damaged(ReturnProblem.LOT_MISMATCH, ent.where())
                inv.lines.append(line)
        elif code == "990":
            if state != "shared":
                raise _unexpected(ent)
            close_lot()
            control = ent
            state = "end"
        else:  # 085, or anything after 990
            raise _unexpected(ent)
    if state == "shared":
        raise _Damaged(ReturnProblem.MISSING_CONTROL, "999 follows an invoice")
    if state != "end" or control is None:
        raise _Damaged(ReturnProblem.BAD_STRUCTURE, "NOEMIE return without a complete lot")
    noemie = Noemie(lots=tuple(lots), accounting_date=accounting, transfer_reference=reference)
    total = noemie.total_paid
    control_count = _num(control, 0, 8, "990 count")
    control_total = _num(control, 8, 11, "990 total")
    if control_count != control.seq - 1:
        raise _Damaged(
            ReturnProblem.CONTROL_COUNT_MISMATCH,
            f"990 says {control_count}, stream has {control.seq - 1}",
        )
    if control_total != total:
        raise _Damaged(ReturnProblem.CONTROL_TOTAL_MISMATCH, f"{control.where()}")
    if scan.trailer_count != scan.total_entities + 2:
        raise _Damaged(
            ReturnProblem.TRAILER_COUNT_MISMATCH,
            f"999 says {scan.trailer_count}, stream has {scan.total_entities + 2}",
        )
    if scan.trailer_total != total:
        raise _Damaged(ReturnProblem.TRAILER_TOTAL_MISMATCH, "999 total differs from the 198/199")
    return noemie


def parse_header(payload: bytes, profile: ReturnProfile = PROFILE_V0) -> ReturnHeader | None:
    """The ``000`` header at the start of ``payload``, or None. Never raises."""
    if len(payload) < profile.record_length:
        return None
    return _parse_header(payload[: profile.record_length], profile)


def parse_return(payload: bytes, profile: ReturnProfile = PROFILE_V0) -> ParsedReturn:
    """Parse a decoded return payload. Never raises on any input.

    An invalid header gives ``not_a_return``; anything broken after a valid header gives
    ``damaged`` with a :class:`ReturnProblem`.
    """
    size = profile.record_length
    if len(payload) < size:
        return ParsedReturn(kind="not_a_return", problem=ReturnProblem.TOO_SHORT)
    header = _parse_header(payload[:size], profile)
    if header is None:
        return ParsedReturn(kind="not_a_return", problem=ReturnProblem.BAD_HEADER)
    rest = payload[size:]
    scan: _Scan | None = None
    try:
        bad = re.search(rb"[^\x20-\x7e]", rest)
        if bad is not None:
            raise _Damaged(ReturnProblem.BAD_CHARACTER, f"at offset {size + bad.start()}")
        scan = _scan(rest.decode("ascii"), size, profile)
        if header.application == "AR":
            arl = _build_arl(scan)
            return ParsedReturn(
                kind="arl",
                header=header,
                arl=arl,
                unknown_entities=scan.unknown,
                unknown_codes=tuple(scan.unknown_codes),
            )
        noemie = _build_noemie(scan)
        return ParsedReturn(
            kind="noemie",
            header=header,
            noemie=noemie,
            unknown_entities=scan.unknown,
            unknown_codes=tuple(scan.unknown_codes),
        )
    except _Damaged as damage:
        return ParsedReturn(
            kind="damaged",
            header=header,
            problem=damage.problem,
            detail=damage.detail,
            unknown_entities=scan.unknown if scan is not None else 0,
            unknown_codes=tuple(scan.unknown_codes) if scan is not None else (),
        )
