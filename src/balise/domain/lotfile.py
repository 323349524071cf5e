"""Lot file parser and validator for wire profile v0 (PROFILE.md §1): bytes in, a typed lot or problems out.

Pure and linear in the file size: no I/O, no clock; "today", the mode and what the box knows come in
a ``LotContext``. Every refusal is a ``Problem`` with a stable ``LotFault`` code and French/English words.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Final, Literal

from balise.domain.nir import is_wellformed_nir, nir_key
from balise.domain.vocabulary import Lang, day, euros

PROFILE_VERSION: Final = "0"
RECORD_LEN: Final = 128
MAX_FILE_SIZE: Final = 8 * 1024 * 1024
# A hostile or garbled 8 MiB file could yield tens of thousands of problems; past this many the
# list stops growing and ends with TOO_MANY_PROBLEMS, which says so in words.
MAX_PROBLEMS: Final = 100

Mode = Literal["production", "test", "demo"]
LotKey = tuple[str, str, str]


# --------------------------------------------------------------------------------------------
# Parsed lot


class AddresseeType(StrEnum):
    """Kind of organism a lot is addressed to."""

    CAISSE_PRIMAIRE = "CP"
    MSA = "MA"
    COMPLEMENTARY = "OC"
    OCT = "OT"


class ApplicationType(StrEnum):
    """FSE (feuilles de soins électroniques) or DRE (demandes de remboursement électroniques)."""

    FSE = "FS"
    DRE = "DR"


class FlowType(StrEnum):
    """Real lots go to the insurers; test and demo lots must never leave a production box."""

    REAL = "R"
    TEST = "T"
    DEMO = "D"


class Scope(StrEnum):
    """Who an invoice is claimed from: the compulsory (AMO) or the complementary (AMC) insurer."""

    AMO = "O"
    AMC = "C"


def parse_aammjj(text: str) -> date | None:
    """AAMMJJ → date, or None when it is not a real calendar date.

    Pivot: every year is read as 20YY. Lot, creation and care dates are all recent (the profile
    has no birth dates), so a sliding pivot would only turn a typo into a date of the 1900s.
    """
    if len(text) != 6 or not text.isascii() or not text.isdigit():
        return None
    try:
        return date(2000 + int(text[0:2]), int(text[2:4]), int(text[4:6]))
    except ValueError:
        return None


def format_aammjj(value: date) -> str:
    """date → AAMMJJ (years 2000–2099 only, see ``parse_aammjj``)."""
    if not 2000 <= value.year <= 2099:
        raise ValueError("AAMMJJ dates cover the years 2000-2099 only")
    return f"{value.year - 2000:02d}{value.month:02d}{value.day:02d}"


@dataclass(frozen=True, slots=True)
class LotHeader:
    """The ``000`` record."""

    emitter_type: str
    emitter: str
    software_id: str
    addressee_type: AddresseeType
    addressee: str
    application: ApplicationType
    file_id: str
    created: date
    flow: FlowType

    @property
    def regime(self) -> str:
        return self.addressee[6:8]

    @property
    def caisse(self) -> str:
        return self.addressee[8:11]

    @property
    def centre(self) -> str:
        return self.addressee[11:14]


@dataclass(frozen=True, slots=True)
class ServiceLine:
    """A ``3`` record: one act; coefficient ×100 (``0100`` = 1.00), amount in cents."""

    act_code: str
    coefficient: int
    amount: int


@dataclass(frozen=True, slots=True)
class Invoice:
    """A ``2`` record, its service lines and its ``5`` record; ``total`` in cents."""

    number: str
    care_date: date
    nir: str
    nir_key: int
    scope: Scope
    lines: tuple[ServiceLine, ...]
    total: int


@dataclass(frozen=True, slots=True)
class Lot:
    """The ``1`` … ``6`` records; ``total`` in cents."""

    number: int
    date: date
    emitter: str
    invoices: tuple[Invoice, ...]
    total: int


@dataclass(frozen=True, slots=True)
class LotTrailer:
    """The ``999`` record."""

    record_count: int
    lot_count: int
    total: int


@dataclass(frozen=True, slots=True)
class ParsedLot:
    """A well-formed lot file (context checks aside)."""

    header: LotHeader
    lot: Lot
    trailer: LotTrailer
    sha256: str
    size: int

    @property
    def key(self) -> LotKey:
        """(emitter, lot number ``NNN``, lot date AAMMJJ): what makes a lot a duplicate."""
        return (self.header.emitter, f"{self.lot.number:03d}", format_aammjj(self.lot.date))

    @property
    def invoice_count(self) -> int:
        return len(self.lot.invoices)


# --------------------------------------------------------------------------------------------
# Faults and problems


class LotFault(StrEnum):
    """Why a lot file is refused. Values are stable: they are stored in quarantine records."""

    FILE_EMPTY = "LOT_FILE_EMPTY"
    FILE_SIZE = "LOT_FILE_SIZE"
    FILE_TOO_LARGE = "LOT_FILE_TOO_LARGE"
    NON_PRINTABLE = "LOT_NON_PRINTABLE"
    FIRST_NOT_HEADER = "LOT_FIRST_NOT_HEADER"
    LAST_NOT_TRAILER = "LOT_LAST_NOT_TRAILER"
    UNKNOWN_RECORD = "LOT_UNKNOWN_RECORD"
    BAD_NESTING = "LOT_BAD_NESTING"
    MULTIPLE_LOTS = "LOT_MULTIPLE_LOTS"
    BAD_FIELD = "LOT_BAD_FIELD"
    BAD_NUMBER = "LOT_BAD_NUMBER"
    BAD_DATE = "LOT_BAD_DATE"
    NIR_FORMAT = "LOT_NIR_FORMAT"
    NIR_KEY = "LOT_NIR_KEY"
    DUPLICATE_INVOICE = "LOT_DUPLICATE_INVOICE"
    INVOICE_NUMBER_MISMATCH = "LOT_INVOICE_NUMBER_MISMATCH"
    LOT_NUMBER_MISMATCH = "LOT_LOT_NUMBER_MISMATCH"
    EMITTER_MISMATCH = "LOT_EMITTER_MISMATCH"
    INVOICE_LINE_COUNT = "LOT_INVOICE_LINE_COUNT"
    INVOICE_TOTAL = "LOT_INVOICE_TOTAL"
    LOT_INVOICE_COUNT = "LOT_LOT_INVOICE_COUNT"
    LOT_TOTAL = "LOT_LOT_TOTAL"
    FILE_RECORD_COUNT = "LOT_FILE_RECORD_COUNT"
    FILE_LOT_COUNT = "LOT_FILE_LOT_COUNT"
    FILE_TOTAL = "LOT_FILE_TOTAL"
    UNKNOWN_EMITTER = "LOT_UNKNOWN_EMITTER"
    UNKNOWN_ORGANISM = "LOT_UNKNOWN_ORGANISM"
    NO_RECIPIENT_CERTIFICATE = "LOT_NO_RECIPIENT_CERTIFICATE"
    DUPLICATE_LOT = "LOT_DUPLICATE_LOT"
    DUPLICATE_CONTENT = "LOT_DUPLICATE_CONTENT"
    LOT_DATE_FUTURE = "LOT_DATE_FUTURE"
    REAL_FLOW_IN_TEST_MODE = "LOT_REAL_FLOW_IN_TEST_MODE"
    TEST_FLOW_IN_PRODUCTION = "LOT_TEST_FLOW_IN_PRODUCTION"
    TOO_MANY_PROBLEMS = "LOT_TOO_MANY_PROBLEMS"


# One table for the words. Placeholders are filled from Problem.params; keys ending in ``_cents``
# are shown as euros, keys ending in ``_date`` as dates, ``field`` through FIELD_LABELS. The
# record number, when known, is appended by Problem.message.
MESSAGES: Final[Mapping[LotFault, tuple[str, str]]] = {
    LotFault.FILE_EMPTY: ("Le fichier est vide", "The file is empty"),
    LotFault.FILE_SIZE: (
        "La taille du fichier ({size} octets) n'est pas un multiple de 128 : "
        "le fichier est tronqué ou ce n'est pas un lot",
        "The file size ({size} bytes) is not a multiple of 128: "
        "the file is truncated or is not a lot",
    ),
    LotFault.FILE_TOO_LARGE: (
        "Le fichier est trop gros ({size} octets, au plus {limit} permis)",
        "The file is too large ({size} bytes, at most {limit} allowed)",
    ),
    LotFault.NON_PRINTABLE: (
        "Caractère interdit (code {byte}) à la position {position} du fichier : "
        "un lot ne contient que des caractères ASCII imprimables, sans accents",
        "Forbidden character (code {byte}) at byte offset {offset}: "
        "a lot contains printable ASCII characters only, without accents",
    ),
    LotFault.FIRST_NOT_HEADER: (
        "Le fichier ne commence pas par un en-tête de lot (enregistrement 000)",
        "The file does not start with a lot header (record 000)",
    ),
    LotFault.LAST_NOT_TRAILER: (
        "Le fichier ne se termine pas par un enregistrement de fin (999) : il est peut-être tronqué",
        "The file does not end with a trailer record (999): it may be truncated",
    ),
    LotFault.UNKNOWN_RECORD: (
        "Type d'enregistrement inconnu « {found} »",
        "Unknown record type '{found}'",
    ),
    LotFault.BAD_NESTING: (
        "Enregistrements dans le désordre : un enregistrement « {found} » "
        "arrive là où « {expected} » était attendu",
        "Records out of order: a '{found}' record comes where '{expected}' was expected",
    ),
    LotFault.MULTIPLE_LOTS: (
        "Le fichier contient {found} lots ; un seul lot est permis par fichier",
        "The file holds {found} lots; only one lot is allowed per file",
    ),
    LotFault.BAD_FIELD: (
        "Valeur incorrecte pour « {field} » : « {found} »",
        "Wrong value for '{field}': '{found}'",
    ),
    LotFault.BAD_NUMBER: (
        "Nombre incorrect pour « {field} » : « {found} »",
        "Wrong number for '{field}': '{found}'",
    ),
    LotFault.BAD_DATE: (
        "Date incorrecte pour « {field} » : « {found} » (attendu : AAMMJJ, une vraie date)",
        "Wrong date for '{field}': '{found}' (expected: YYMMDD, a real date)",
    ),
    LotFault.NIR_FORMAT: (
        "Numéro de sécurité sociale (NIR) mal formé pour la facture {invoice}",
        "Malformed social security number (NIR) for invoice {invoice}",
    ),
    LotFault.NIR_KEY: (
        "Clé NIR invalide pour la facture {invoice}",
        "Invalid NIR key for invoice {invoice}",
    ),
    LotFault.DUPLICATE_INVOICE: (
        "La facture {invoice} apparaît plusieurs fois dans le lot",
        "Invoice {invoice} appears more than once in the lot",
    ),
    LotFault.INVOICE_NUMBER_MISMATCH: (
        "Numéro de facture incohérent : {found} au lieu de {invoice}",
        "Inconsistent invoice number: {found} instead of {invoice}",
    ),
    LotFault.LOT_NUMBER_MISMATCH: (
        "Numéro de lot incohérent en fin de lot : {found} au lieu de {expected}",
        "Inconsistent lot number at the end of the lot: {found} instead of {expected}",
    ),
    LotFault.EMITTER_MISMATCH: (
        "Le numéro de facturation du lot ({found}) n'est pas celui de l'en-tête ({expected})",
        "The lot's invoicing number ({found}) differs from the header's ({expected})",
    ),
    LotFault.INVOICE_LINE_COUNT: (
        "Facture {invoice} : {declared} acte(s) annoncé(s) mais {actual} présent(s)",
        "Invoice {invoice}: {declared} service line(s) announced but {actual} present",
    ),
    LotFault.INVOICE_TOTAL: (
        "Facture {invoice} : total annoncé {declared_cents}, mais les actes font {actual_cents}",
        "Invoice {invoice}: announced total {declared_cents}, but the lines add up to "
        "{actual_cents}",
    ),
    LotFault.LOT_INVOICE_COUNT: (
        "Lot {lot} : {declared} facture(s) annoncée(s) mais {actual} présente(s)",
        "Lot {lot}: {declared} invoice(s) announced but {actual} present",
    ),
    LotFault.LOT_TOTAL: (
        "Lot {lot} : total annoncé {declared_cents}, mais les factures font {actual_cents}",
        "Lot {lot}: announced total {declared_cents}, but the invoices add up to {actual_cents}",
    ),
    LotFault.FILE_RECORD_COUNT: (
        "Fin de fichier : {declared} enregistrements annoncés mais {actual} présents",
        "End of file: {declared} records announced but {actual} present",
    ),
    LotFault.FILE_LOT_COUNT: (
        "Fin de fichier : {declared} lot(s) annoncé(s) mais {actual} présent(s)",
        "End of file: {declared} lot(s) announced but {actual} present",
    ),
    LotFault.FILE_TOTAL: (
        "Fin de fichier : total annoncé {declared_cents}, mais le lot fait {actual_cents}",
        "End of file: announced total {declared_cents}, but the lot adds up to {actual_cents}",
    ),
    LotFault.UNKNOWN_EMITTER: (
        "Le numéro de facturation {emitter} ne correspond à aucun praticien configuré "
        "sur ce boîtier",
        "Invoicing number {emitter} matches no practitioner configured on this box",
    ),
    LotFault.UNKNOWN_ORGANISM: (
        "L'organisme destinataire {addressee} n'est pas configuré sur ce boîtier",
        "Addressee organism {addressee} is not configured on this box",
    ),
    LotFault.NO_RECIPIENT_CERTIFICATE: (
        "L'organisme destinataire {addressee} n'a aucun certificat de chiffrement configuré",
        "Addressee organism {addressee} has no encryption certificate configured",
    ),
    LotFault.DUPLICATE_LOT: (
        "Doublon : le lot {lot} du {lot_date} a déjà été accepté pour ce praticien",
        "Duplicate: lot {lot} of {lot_date} was already accepted for this practitioner",
    ),
    LotFault.DUPLICATE_CONTENT: (
        "Doublon : ce fichier a déjà été reçu et accepté",
        "Duplicate: this file was already received and accepted",
    ),
    LotFault.LOT_DATE_FUTURE: (
        "La date du lot ({lot_date}) est dans le futur (aujourd'hui : {today_date})",
        "The lot date ({lot_date}) is in the future (today: {today_date})",
    ),
    LotFault.REAL_FLOW_IN_TEST_MODE: (
        "Lot réel (type de flux R) refusé : le boîtier est en mode test ou démonstration",
        "Real lot (flow type R) refused: the box is in test or demo mode",
    ),
    LotFault.TEST_FLOW_IN_PRODUCTION: (
        "Lot de test ou de démonstration (type de flux {flow}) refusé : le boîtier est en "
        "production",
        "Test or demo lot (flow type {flow}) refused: the box is in production",
    ),
    LotFault.TOO_MANY_PROBLEMS: (
        "Trop d'erreurs : la vérification s'est arrêtée après {limit} problèmes",
        "Too many errors: checking stopped after {limit} problems",
    ),
}

FIELD_LABELS: Final[Mapping[str, tuple[str, str]]] = {
    "emitter_type": ("type d'émetteur", "emitter type"),
    "emitter": ("numéro de facturation du praticien", "practitioner invoicing number"),
    "software_id": ("identifiant du logiciel", "software id"),
    "addressee_type": ("type de destinataire", "addressee type"),
    "addressee": ("numéro de l'organisme destinataire", "addressee organism number"),
    "addressee_program": ("programme destinataire", "addressee program"),
    "application": ("type d'application (FS ou DR)", "application type (FS or DR)"),
    "file_id": ("identifiant du fichier", "file identifier"),
    "created": ("date de création", "creation date"),
    "norm": ("norme", "norm"),
    "version": ("version", "version"),
    "compressed": ("indicateur de compression", "compression flag"),
    "encrypted": ("indicateur de chiffrement", "encryption flag"),
    "currency": ("monnaie", "currency"),
    "flow": ("type de flux (R, T ou D)", "flow type (R, T or D)"),
    "record_length": ("longueur d'enregistrement", "record length"),
    "filler": ("zone réservée (espaces)", "reserved area (spaces)"),
    "lot_number": ("numéro de lot", "lot number"),
    "lot_date": ("date du lot", "lot date"),
    "invoice": ("numéro de facture", "invoice number"),
    "care_date": ("date des soins", "care date"),
    "nir_key": ("clé NIR", "NIR key"),
    "scope": ("part AMO/AMC (O ou C)", "AMO/AMC scope (O or C)"),
    "act_code": ("code acte", "act code"),
    "coefficient": ("coefficient", "coefficient"),
    "amount": ("montant", "amount"),
    "line_count": ("nombre d'actes", "number of service lines"),
    "invoice_total": ("total de la facture", "invoice total"),
    "invoice_count": ("nombre de factures", "number of invoices"),
    "lot_total": ("total du lot", "lot total"),
    "record_count": ("nombre d'enregistrements", "number of records"),
    "lot_count": ("nombre de lots", "number of lots"),
    "file_total": ("total du fichier", "file total"),
}


class _Missing(dict[str, str]):
    """Lets a template with a placeholder nobody filled render as '?' instead of raising."""

    def __missing__(self, key: str) -> str:
        return "?"


def _money(cents: str, lang: Lang) -> str:
    try:
        return euros(int(cents), lang)
    except ValueError:
        return cents


def _day(iso: str, lang: Lang) -> str:
    try:
        return day(date.fromisoformat(iso), lang)
    except ValueError:
        return iso


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason to refuse a lot file.

    ``record`` is the 1-based record number (the ``000`` header is record 1), None when the
    problem concerns the whole file. ``detail`` is a language-neutral summary for technicians and
    logs; ``params`` feed the message templates.
    """

    fault: LotFault
    record: int | None
    detail: str
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, fault: LotFault, record: int | None, **params: object) -> Problem:
        pairs = tuple((k, str(v)) for k, v in params.items())
        return cls(fault, record, " ".join(f"{k}={v}" for k, v in pairs), pairs)

    def message(self, lang: Lang = "fr") -> str:
        """The problem in words a secretary understands."""
        idx = 0 if lang == "fr" else 1
        values = _Missing()
        for key, raw in self.params:
            if key == "field":
                values[key] = FIELD_LABELS.get(raw, (raw, raw))[idx]
            elif key.endswith("_cents"):
                values[key] = _money(raw, lang)
            elif key.endswith("_date"):
                values[key] = _day(raw, lang)
            else:
                values[key] = raw
        text = MESSAGES[self.fault][idx].format_map(values)
        if self.record is not None:
            where = "enregistrement" if lang == "fr" else "record"
            text += f" ({where} {self.record})"
        return text + "."


# --------------------------------------------------------------------------------------------
# Context and result


@dataclass(frozen=True, slots=True)
class LotContext:
    """What the validator needs to know about the box, passed in so the validator stays pure.

    ``organisms_with_certs``: addressee numbers (``000000`` + régime + caisse + centre) of
    configured organisms holding at least one recipient certificate; ``known_organisms``: all
    configured ones; ``accepted_lot_keys``: (emitter, lot number ``NNN``, lot date AAMMJJ);
    ``accepted_hashes``: lowercase hex SHA-256 of accepted files.
    """

    today: date
    mode: Mode
    known_emitters: frozenset[str]
    organisms_with_certs: frozenset[str]
    known_organisms: frozenset[str] = frozenset()
    accepted_lot_keys: frozenset[LotKey] = frozenset()
    accepted_hashes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class LotValidation:
    """Outcome of ``validate_lot``.

    ``parsed`` is set whenever the file itself is well formed, even if the context refuses it
    (duplicate, unknown emitter…), so quarantine records can name the lot; ``lot`` only when
    there is no problem at all — use ``lot`` to decide acceptance.
    """

    sha256: str
    size: int
    problems: tuple[Problem, ...]
    parsed: ParsedLot | None

    @property
    def lot(self) -> ParsedLot | None:
        return self.parsed if not self.problems else None

    @property
    def accepted(self) -> bool:
        return self.lot is not None

    @property
    def faults(self) -> tuple[LotFault, ...]:
        return tuple(p.fault for p in self.problems)


# --------------------------------------------------------------------------------------------
# Parsing machinery


class _Stop(Exception):
    """Internal: the problem list is full."""


class _Sink:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.problems: list[Problem] = []

    def add(self, fault: LotFault, record: int | None, **params: object) -> None:
        if len(self.problems) >= self.limit:
            self.problems.append(Problem.of(LotFault.TOO_MANY_PROBLEMS, None, limit=self.limit))
            raise _Stop
        self.problems.append(Problem.of(fault, record, **params))


_DIGITS = re.compile(r"[0-9]+")
_PRINTABLE = bytes(range(0x20, 0x7F))
_NON_PRINTABLE = re.compile(rb"[^\x20-\x7e]")
_FILE_ID = re.compile(r"[A-Za-z0-9]+ *")
_ACT_CODE = re.compile(r"[A-Z]+ *")


class _Rec:
    """Reads the fields of one record; each bad field becomes a problem and reads as None.

    Positions are 1-based and inclusive, exactly as in PROFILE.md, so the code reads like the table.
    """

    __slots__ = ("index", "sink", "text")

    def __init__(self, text: str, index: int, sink: _Sink) -> None:
        self.text = text
        self.index = index
        self.sink = sink

    def _raw(self, a: int, b: int) -> str:
        return self.text[a - 1 : b]

    def _shown(self, raw: str) -> str:
        # Long fillers full of junk would drown the message; a prefix is enough to spot it.
        return raw if len(raw) <= 20 else raw[:20] + "…"

    def digits(self, name: str, a: int, b: int) -> str | None:
        raw = self._raw(a, b)
        if _DIGITS.fullmatch(raw) is None:
            self.sink.add(LotFault.BAD_NUMBER, self.index, field=name, found=raw)
            return None
        return raw

    def number(self, name: str, a: int, b: int, minimum: int = 0) -> int | None:
        raw = self.digits(name, a, b)
        if raw is None:
            return None
        value = int(raw)
        if value < minimum:
            self.sink.add(LotFault.BAD_NUMBER, self.index, field=name, found=raw)
            return None
        return value

    def day(self, name: str, a: int, b: int) -> date | None:
        raw = self._raw(a, b)
        value = parse_aammjj(raw)
        if value is None:
            self.sink.add(LotFault.BAD_DATE, self.index, field=name, found=raw)
        return value

    def choice(self, name: str, a: int, b: int, allowed: tuple[str, ...]) -> str | None:
        raw = self._raw(a, b)
        if raw not in allowed:
            self.sink.add(LotFault.BAD_FIELD, self.index, field=name, found=raw)
            return None
        return raw

    def pattern(self, name: str, a: int, b: int, rx: re.Pattern[str]) -> str | None:
        raw = self._raw(a, b)
        if rx.fullmatch(raw) is None:
            self.sink.add(LotFault.BAD_FIELD, self.index, field=name, found=self._shown(raw))
            return None
        return raw.rstrip(" ")

    def spaces(self, a: int, b: int) -> None:
        raw = self._raw(a, b)
        if raw.strip(" "):
            self.sink.add(LotFault.BAD_FIELD, self.index, field="filler", found=self._shown(raw))


@dataclass(slots=True)
class _Partial:
    """What was read so far; fields stay None where the file was wrong."""

    header: LotHeader | None = None
    emitter: str | None = None
    addressee: str | None = None
    flow: str | None = None
    lot_number: int | None = None
    lot_date: date | None = None
    lot: ParsedLot | None = None


def _split(data: bytes, sink: _Sink) -> list[str] | None:
    """Size and character checks; the records as text, or None (structural failure)."""
    size = len(data)
    if size > MAX_FILE_SIZE:
        sink.add(LotFault.FILE_TOO_LARGE, None, size=size, limit=MAX_FILE_SIZE)
        return None
    if size == 0:
        sink.add(LotFault.FILE_EMPTY, None)
        return None
    if size % RECORD_LEN:
        sink.add(LotFault.FILE_SIZE, None, size=size)
        return None
    # translate() deletes every printable byte in one C-level pass: anything left is forbidden.
    if data.translate(None, _PRINTABLE):
        match = _NON_PRINTABLE.search(data)
        offset = match.start() if match is not None else 0
        sink.add(
            LotFault.NON_PRINTABLE,
            offset // RECORD_LEN + 1,
            offset=offset,
            position=offset + 1,
            byte=f"0x{data[offset]:02X}",
        )
        return None
    text = data.decode("ascii")
    return [text[i : i + RECORD_LEN] for i in range(0, size, RECORD_LEN)]


def _kind(record: str) -> str | None:
    head = record[:3]
    if head in ("000", "999"):
        return head
    if record[0] in "12356":
        return record[0]
    return None


# Grammar `000 (1 (2 3+ 5)+ 6)+ 999` as a state machine: state → {record kind: next state}.
# Several lots parse here on purpose, so that "more than one lot" gets its own clear fault.
_GRAMMAR: Final[Mapping[str, Mapping[str, str]]] = {
    "header": {"1": "lot"},
    "lot": {"2": "invoice"},
    "invoice": {"3": "lines"},
    "lines": {"3": "lines", "5": "invoice_end"},
    "invoice_end": {"2": "invoice", "6": "lot_end"},
    "lot_end": {"1": "lot", "999": "end"},
    "end": {},
}


def _structure(records: list[str], sink: _Sink) -> bool:
    """Record kinds and their order; True when the file has the expected shape."""
    ok = True
    if _kind(records[0]) != "000":
        sink.add(LotFault.FIRST_NOT_HEADER, 1, found=records[0][:3])
        ok = False
    if len(records) < 2 or _kind(records[-1]) != "999":
        sink.add(LotFault.LAST_NOT_TRAILER, len(records), found=records[-1][:3])
        ok = False
    if not ok:
        return False
    state = "header"
    lots = 0
    nesting_reported = False
    for index in range(2, len(records) + 1):
        kind = _kind(records[index - 1])
        if kind is None:
            sink.add(LotFault.UNKNOWN_RECORD, index, found=records[index - 1][:1])
            ok = False
            continue
        if nesting_reported:
            continue
        nxt = _GRAMMAR[state].get(kind)
        if nxt is None:
            # Only the first disorder is reported: everything after it would be an echo.
            sink.add(LotFault.BAD_NESTING, index, found=kind, expected="/".join(_GRAMMAR[state]))
            nesting_reported = True
            ok = False
            continue
        lots += kind == "1"
        state = nxt
    if ok and lots != 1:
        sink.add(LotFault.MULTIPLE_LOTS, None, found=lots)
        ok = False
    return ok


def _header(rec: _Rec, part: _Partial) -> None:
    emitter_type = rec.choice("emitter_type", 4, 5, ("PS",))
    emitter = rec.digits("emitter", 6, 19)
    software_id = rec._raw(20, 25).rstrip(" ")
    addressee_type = rec.choice("addressee_type", 26, 27, tuple(AddresseeType))
    addressee = rec.digits("addressee", 28, 41)
    if addressee is not None and not addressee.startswith("000000"):
        rec.sink.add(LotFault.BAD_FIELD, rec.index, field="addressee", found=addressee)
        addressee = None
    rec.spaces(42, 47)
    application = rec.choice("application", 48, 49, tuple(ApplicationType))
    file_id = rec.pattern("file_id", 50, 55, _FILE_ID)
    created = rec.day("created", 56, 61)
    rec.choice("norm", 62, 65, ("LOT0",))
    rec.choice("version", 66, 67, ("01",))
    rec.choice("compressed", 68, 68, ("N",))
    rec.choice("encrypted", 69, 69, ("N",))
    rec.choice("currency", 70, 70, ("U",))
    flow = rec.choice("flow", 71, 71, tuple(FlowType))
    rec.spaces(72, 82)
    rec.choice("record_length", 83, 85, ("128",))
    rec.spaces(86, 128)
    part.emitter, part.addressee, part.flow = emitter, addressee, flow
    if (
        emitter_type is not None
        and emitter is not None
        and addressee_type is not None
        and addressee is not None
        and application is not None
        and file_id is not None
        and created is not None
        and flow is not None
    ):
        part.header = LotHeader(
            emitter_type=emitter_type,
            emitter=emitter,
            software_id=software_id,
            addressee_type=AddresseeType(addressee_type),
            addressee=addressee,
            application=ApplicationType(application),
            file_id=file_id,
            created=created,
            flow=FlowType(flow),
        )


def _parse(records: list[str], data_sha: str, size: int, sink: _Sink, part: _Partial) -> None:
    """Fields and consistency of a file whose structure was already checked."""
    _header(_Rec(records[0], 1, sink), part)

    # `1` lot start
    rec = _Rec(records[1], 2, sink)
    lot_number = rec.number("lot_number", 2, 4, minimum=1)
    lot_date = rec.day("lot_date", 5, 10)
    lot_emitter = rec.digits("emitter", 11, 24)
    rec.spaces(25, 128)
    part.lot_number, part.lot_date = lot_number, lot_date
    if lot_emitter is not None and part.emitter is not None and lot_emitter != part.emitter:
        sink.add(LotFault.EMITTER_MISMATCH, 2, found=lot_emitter, expected=part.emitter)

    invoices: list[Invoice] = []
    complete = True  # False once any field is unreadable: no ParsedLot then
    invoice_totals: list[int | None] = []
    seen: set[str] = set()
    i = 2  # 0-based index of the next record
    while records[i][0] == "2":
        rec = _Rec(records[i], i + 1, sink)
        number = rec.digits("invoice", 2, 10)
        care_date = rec.day("care_date", 11, 16)
        nir = records[i][16:29]
        key = rec.number("nir_key", 30, 31)
        scope = rec.choice("scope", 32, 32, tuple(Scope))
        rec.spaces(33, 128)
        shown = number if number is not None else records[i][1:10]
        if not is_wellformed_nir(nir):
            sink.add(LotFault.NIR_FORMAT, i + 1, invoice=shown)
            complete = False
        elif key is not None and nir_key(nir) != key:
            sink.add(LotFault.NIR_KEY, i + 1, invoice=shown)
        if number is not None:
            if number in seen:
                sink.add(LotFault.DUPLICATE_INVOICE, i + 1, invoice=number)
            seen.add(number)
        i += 1

        lines: list[ServiceLine] = []
        n_lines = 0  # counts unreadable lines too, unlike `lines`
        amount_sum: int | None = 0  # None once an amount is unreadable
        while records[i][0] == "3":
            rec = _Rec(records[i], i + 1, sink)
            line_invoice = rec.digits("invoice", 2, 10)
            act = rec.pattern("act_code", 11, 13, _ACT_CODE)
            coefficient = rec.number("coefficient", 14, 17)
            amount = rec.number("amount", 18, 25)
            rec.spaces(26, 128)
            if line_invoice is not None and number is not None and line_invoice != number:
                sink.add(
                    LotFault.INVOICE_NUMBER_MISMATCH, i + 1, found=line_invoice, invoice=number
                )
            if act is not None and coefficient is not None and amount is not None:
                lines.append(ServiceLine(act, coefficient, amount))
            else:
                complete = False
            amount_sum = None if amount is None or amount_sum is None else amount_sum + amount
            n_lines += 1
            i += 1

        rec = _Rec(records[i], i + 1, sink)
        end_invoice = rec.digits("invoice", 2, 10)
        line_count = rec.number("line_count", 11, 13)
        total = rec.number("invoice_total", 14, 21)
        rec.spaces(22, 128)
        if end_invoice is not None and number is not None and end_invoice != number:
            sink.add(LotFault.INVOICE_NUMBER_MISMATCH, i + 1, found=end_invoice, invoice=number)
        invoice_totals.append(total)
        i += 1
        if line_count is not None and line_count != n_lines:
            sink.add(
                LotFault.INVOICE_LINE_COUNT, i, invoice=shown, declared=line_count, actual=n_lines
            )
        if total is not None and amount_sum is not None and amount_sum != total:
            sink.add(
                LotFault.INVOICE_TOTAL,
                i,
                invoice=shown,
                declared_cents=total,
                actual_cents=amount_sum,
            )
        if (
            number is not None
            and care_date is not None
            and key is not None
            and scope is not None
            and total is not None
            and complete
        ):
            invoices.append(Invoice(number, care_date, nir, key, Scope(scope), tuple(lines), total))
        else:
            complete = False

    # `6` lot end
    rec = _Rec(records[i], i + 1, sink)
    end_number = rec.number("lot_number", 2, 4)
    invoice_count = rec.number("invoice_count", 5, 9)
    lot_total = rec.number("lot_total", 10, 19)
    rec.spaces(20, 128)
    shown_lot = f"{lot_number:03d}" if lot_number is not None else records[1][1:4]
    if end_number is not None and lot_number is not None and end_number != lot_number:
        sink.add(LotFault.LOT_NUMBER_MISMATCH, i + 1, found=f"{end_number:03d}", expected=shown_lot)
    n_invoices = len(invoice_totals)
    if invoice_count is not None and invoice_count != n_invoices:
        sink.add(
            LotFault.LOT_INVOICE_COUNT,
            i + 1,
            lot=shown_lot,
            declared=invoice_count,
            actual=n_invoices,
        )
    if lot_total is not None and all(t is not None for t in invoice_totals):
        actual = sum(t for t in invoice_totals if t is not None)
        if actual != lot_total:
            sink.add(
                LotFault.LOT_TOTAL,
                i + 1,
                lot=shown_lot,
                declared_cents=lot_total,
                actual_cents=actual,
            )
    i += 1

    # `999` trailer
    rec = _Rec(records[i], i + 1, sink)
    record_count = rec.number("record_count", 4, 11)
    lot_count = rec.number("lot_count", 12, 14)
    file_total = rec.number("file_total", 15, 25)
    rec.spaces(26, 128)
    if record_count is not None and record_count != len(records):
        sink.add(LotFault.FILE_RECORD_COUNT, i + 1, declared=record_count, actual=len(records))
    if lot_count is not None and lot_count != 1:
        sink.add(LotFault.FILE_LOT_COUNT, i + 1, declared=lot_count, actual=1)
    if file_total is not None and lot_total is not None and file_total != lot_total:
        sink.add(LotFault.FILE_TOTAL, i + 1, declared_cents=file_total, actual_cents=lot_total)

    if (
        complete
        and part.header is not None
        and lot_number is not None
        and lot_date is not None
        and lot_emitter is not None
        and lot_total is not None
        and record_count is not None
        and lot_count is not None
        and file_total is not None
    ):
        part.lot = ParsedLot(
            header=part.header,
            lot=Lot(lot_number, lot_date, lot_emitter, tuple(invoices), lot_total),
            trailer=LotTrailer(record_count, lot_count, file_total),
            sha256=data_sha,
            size=size,
        )


def _context_checks(part: _Partial, sha: str, ctx: LotContext, sink: _Sink) -> None:
    """What only the box's configuration and history can tell."""
    if part.flow is not None:
        if part.flow == FlowType.REAL and ctx.mode != "production":
            sink.add(LotFault.REAL_FLOW_IN_TEST_MODE, 1, flow=part.flow, mode=ctx.mode)
        elif part.flow != FlowType.REAL and ctx.mode == "production":
            sink.add(LotFault.TEST_FLOW_IN_PRODUCTION, 1, flow=part.flow, mode=ctx.mode)
    if part.emitter is not None and part.emitter not in ctx.known_emitters:
        sink.add(LotFault.UNKNOWN_EMITTER, 1, emitter=part.emitter)
    if part.addressee is not None and part.addressee not in ctx.organisms_with_certs:
        if part.addressee in ctx.known_organisms:
            sink.add(LotFault.NO_RECIPIENT_CERTIFICATE, 1, addressee=part.addressee)
        else:
            sink.add(LotFault.UNKNOWN_ORGANISM, 1, addressee=part.addressee)
    if part.lot_date is not None and part.lot_date > ctx.today:
        sink.add(
            LotFault.LOT_DATE_FUTURE,
            2,
            lot_date=part.lot_date.isoformat(),
            today_date=ctx.today.isoformat(),
        )
    if part.emitter is not None and part.lot_number is not None and part.lot_date is not None:
        key = (part.emitter, f"{part.lot_number:03d}", format_aammjj(part.lot_date))
        if key in ctx.accepted_lot_keys:
            sink.add(LotFault.DUPLICATE_LOT, 2, lot=key[1], lot_date=part.lot_date.isoformat())
    if sha in ctx.accepted_hashes:
        sink.add(LotFault.DUPLICATE_CONTENT, None, sha256=sha)


def _run(data: bytes, ctx: LotContext | None) -> LotValidation:
    sha = hashlib.sha256(data).hexdigest()
    sink = _Sink(MAX_PROBLEMS)
    part = _Partial()
    parsed: ParsedLot | None = None
    try:
        records = _split(data, sink)
        # Structural failures stop here: field checks on a misshapen file would only echo them.
        if records is not None and _structure(records, sink):
            _parse(records, sha, len(data), sink, part)
            if not sink.problems:
                parsed = part.lot
            if ctx is not None:
                _context_checks(part, sha, ctx, sink)
        elif ctx is not None and sha in ctx.accepted_hashes:
            sink.add(LotFault.DUPLICATE_CONTENT, None, sha256=sha)
    except _Stop:
        pass
    return LotValidation(sha, len(data), tuple(sink.problems), parsed)


def parse_lot(data: bytes) -> ParsedLot | tuple[Problem, ...]:
    """Checks that depend on the file alone: the parsed lot, or every problem found."""
    result = _run(data, None)
    if result.parsed is not None:
        return result.parsed
    return result.problems


def validate_lot(data: bytes, ctx: LotContext) -> LotValidation:
    """Every check of PROFILE.md §1, collecting all problems in one pass.

    Size, character and record-order failures stop early (what follows them would be noise);
    field, consistency and context problems are all collected, up to MAX_PROBLEMS.
    """
    return _run(data, ctx)
