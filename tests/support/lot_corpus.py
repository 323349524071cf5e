"""Faulty lot corpus: one lot file per LotFault, each yielding exactly that fault, plus its context.

Plain functions (reused by the intake tests); files are builder output with one targeted mutation.
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

from balise.domain.lotfile import (
    MAX_FILE_SIZE,
    MAX_PROBLEMS,
    RECORD_LEN,
    LotContext,
    LotFault,
    format_aammjj,
)
from balise.sim.lotbuild import (
    InvoiceSpec,
    LineSpec,
    build_lot,
    header_record,
    lot_records,
    make_invoices,
    patch_record,
    trailer_record,
)
from tests.support.clock import TEST_TODAY

EMITTER = "00000012345678"  # the golden samples' practitioner
OTHER_EMITTER = "00000099999999"  # configured nowhere
ADDRESSEE = "00000001422000"  # configured, with a recipient certificate
ADDRESSEE_NO_CERT = "00000001996000"  # configured, without certificate
ADDRESSEE_UNKNOWN = "00000001999000"  # not configured
# The corpus is dated by the one test clock (tests/support/clock.py).
CORPUS_TODAY = TEST_TODAY
# The golden samples of profile v0 (tests/data/samples/README.md), versioned with the suite.
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
ACCEPTED_LOT_NUMBER = 900  # already accepted (same emitter, same date) in the context
ACCEPTED_FILE_LOT_NUMBER = 901  # this exact file is already accepted (hash) in the context

# Record map of valid_lot() (1-based): 1 `000`; 2 `1`; 3 `2` A; 4 `3` A; 5 `3` A; 6 `5` A;
# 7 `2` B; 8 `3` B; 9 `5` B; 10 `2` C; 11 `3` C; 12 `5` C; 13 `6`; 14 `999`.
R_LOT, R_INV_A, R_LINE_A1, R_LINE_A2, R_END_A = 2, 3, 4, 5, 6
R_LINE_B, R_END_B, R_LOT_END, R_TRAILER = 8, 9, 13, 14


def corpus_invoices(today: date = CORPUS_TODAY) -> list[InvoiceSpec]:
    care = today - timedelta(days=2)
    return [
        InvoiceSpec(100000, care, "1850575138583", (LineSpec("G", 3000), LineSpec("MU", 1000))),
        InvoiceSpec(100001, care, "185052A979884", (LineSpec("V", 3000),)),
        InvoiceSpec(100002, care, "2940375101234", (LineSpec("C", 2650),), scope="C"),
    ]


def valid_lot(
    today: date = CORPUS_TODAY,
    *,
    emitter: str = EMITTER,
    addressee: str = ADDRESSEE,
    lot_number: int = 1,
    lot_date: date | None = None,
    flow: Literal["R", "T", "D"] = "T",
    invoices: list[InvoiceSpec] | None = None,
) -> bytes:
    """A lot accepted by ``corpus_context(today)`` (test mode), dated the day before ``today``."""
    return build_lot(
        emitter,
        addressee,
        lot_number,
        lot_date or today - timedelta(days=1),
        corpus_invoices(today) if invoices is None else invoices,
        flow=flow,
    )


def corpus_context(
    today: date = CORPUS_TODAY, mode: Literal["production", "test", "demo"] = "test"
) -> LotContext:
    """The box as the corpus assumes it: one practitioner, one organism with a certificate, one
    without, one lot already accepted by number and one by content."""
    lot_date = format_aammjj(today - timedelta(days=1))
    accepted_file = valid_lot(today, lot_number=ACCEPTED_FILE_LOT_NUMBER)
    return LotContext(
        today=today,
        mode=mode,
        known_emitters=frozenset({EMITTER}),
        organisms_with_certs=frozenset({ADDRESSEE}),
        known_organisms=frozenset({ADDRESSEE, ADDRESSEE_NO_CERT}),
        accepted_lot_keys=frozenset({(EMITTER, f"{ACCEPTED_LOT_NUMBER:03d}", lot_date)}),
        accepted_hashes=frozenset({hashlib.sha256(accepted_file).hexdigest()}),
    )


def context_for(fault: LotFault, today: date = CORPUS_TODAY) -> LotContext:
    """The context in which ``faulty_lots(today)[fault]`` shows exactly ``fault``.

    Test mode for every entry except TEST_FLOW_IN_PRODUCTION, which needs a production box.
    """
    mode: Literal["production", "test"] = (
        "production" if fault is LotFault.TEST_FLOW_IN_PRODUCTION else "test"
    )
    return corpus_context(today, mode)


def _field(data: bytes, record: int, position: int, width: int) -> int:
    start = (record - 1) * RECORD_LEN + position - 1
    return int(data[start : start + width])


def _bump(data: bytes, record: int, position: int, width: int, by: int = 1) -> bytes:
    """Add ``by`` to a numeric field, keeping its width."""
    value = _field(data, record, position, width) + by
    return patch_record(data, record, position, f"{value:0{width}d}")


def _records(data: bytes) -> list[bytes]:
    return [data[i : i + RECORD_LEN] for i in range(0, len(data), RECORD_LEN)]


def _two_lots(today: date) -> bytes:
    lot_date = today - timedelta(days=1)
    invoices = corpus_invoices(today)
    head = header_record(EMITTER, ADDRESSEE, created=lot_date)
    lot1, total1 = lot_records(EMITTER, 1, lot_date, invoices[:2])
    lot2, total2 = lot_records(EMITTER, 2, lot_date, invoices[2:])
    count = len(lot1) + len(lot2) + 2
    return b"".join([head, *lot1, *lot2, trailer_record(count, 2, total1 + total2)])


def _too_many(today: date) -> bytes:
    invoices = make_invoices(MAX_PROBLEMS + 20, seed=7, care_date=today - timedelta(days=2))
    data = valid_lot(today, invoices=invoices)
    for index, record in enumerate(_records(data), start=1):
        if record[:1] == b"2":
            data = patch_record(data, index, 30, f"{(int(record[29:31]) % 97) + 1:02d}")
    return data


def faulty_lots(today: date = CORPUS_TODAY) -> dict[LotFault, bytes]:
    """One file per fault code; validated with ``context_for(fault, today)`` each yields exactly
    that code (TOO_MANY_PROBLEMS: MAX_PROBLEMS NIR_KEY problems, then TOO_MANY_PROBLEMS)."""
    base = valid_lot(today)
    records = _records(base)
    swapped = b"".join(
        [*records[: R_LINE_B - 1], records[R_END_B - 1], records[R_LINE_B - 1], *records[R_END_B:]]
    )
    key_a = _field(base, R_INV_A, 30, 2)
    dup_invoices = corpus_invoices(today)
    dup_invoices[1] = InvoiceSpec(
        dup_invoices[0].number,
        dup_invoices[1].care_date,
        dup_invoices[1].nir,
        dup_invoices[1].lines,
    )
    corpus: dict[LotFault, bytes] = {
        LotFault.FILE_EMPTY: b"",
        LotFault.FILE_SIZE: base[:-1],
        LotFault.FILE_TOO_LARGE: base + b" " * (MAX_FILE_SIZE - len(base) + RECORD_LEN),
        LotFault.NON_PRINTABLE: patch_record(base, R_INV_A, 40, "é".encode("latin-1")),
        LotFault.FIRST_NOT_HEADER: base[RECORD_LEN:],
        LotFault.LAST_NOT_TRAILER: base[:-RECORD_LEN],
        LotFault.UNKNOWN_RECORD: patch_record(base, R_LINE_A2, 1, "4"),
        LotFault.BAD_NESTING: swapped,
        LotFault.MULTIPLE_LOTS: _two_lots(today),
        LotFault.BAD_FIELD: patch_record(base, R_INV_A, 32, "X"),
        LotFault.BAD_NUMBER: patch_record(base, R_LINE_A1, 14, "01A0"),
        LotFault.BAD_DATE: patch_record(base, R_INV_A, 11, "261332"),
        LotFault.NIR_FORMAT: patch_record(base, R_INV_A, 22, "2C"),
        LotFault.NIR_KEY: patch_record(base, R_INV_A, 30, f"{key_a % 97 + 1:02d}"),
        LotFault.DUPLICATE_INVOICE: valid_lot(today, invoices=dup_invoices),
        LotFault.INVOICE_NUMBER_MISMATCH: patch_record(base, R_LINE_A1, 2, "000199999"),
        LotFault.LOT_NUMBER_MISMATCH: patch_record(base, R_LOT_END, 2, "002"),
        LotFault.EMITTER_MISMATCH: patch_record(base, R_LOT, 11, OTHER_EMITTER),
        LotFault.INVOICE_LINE_COUNT: _bump(base, R_END_A, 11, 3),
        LotFault.INVOICE_TOTAL: _bump(base, R_LINE_A1, 18, 8),
        LotFault.LOT_INVOICE_COUNT: _bump(base, R_LOT_END, 5, 5),
        # Line and invoice agree, so only the lot level is wrong.
        LotFault.LOT_TOTAL: _bump(_bump(base, R_LINE_A1, 18, 8), R_END_A, 14, 8),
        LotFault.FILE_RECORD_COUNT: _bump(base, R_TRAILER, 4, 8),
        LotFault.FILE_LOT_COUNT: _bump(base, R_TRAILER, 12, 3),
        LotFault.FILE_TOTAL: _bump(base, R_TRAILER, 15, 11),
        LotFault.UNKNOWN_EMITTER: valid_lot(today, emitter=OTHER_EMITTER),
        LotFault.UNKNOWN_ORGANISM: valid_lot(today, addressee=ADDRESSEE_UNKNOWN),
        LotFault.NO_RECIPIENT_CERTIFICATE: valid_lot(today, addressee=ADDRESSEE_NO_CERT),
        LotFault.DUPLICATE_LOT: valid_lot(today, lot_number=ACCEPTED_LOT_NUMBER),
        LotFault.DUPLICATE_CONTENT: valid_lot(today, lot_number=ACCEPTED_FILE_LOT_NUMBER),
        LotFault.LOT_DATE_FUTURE: valid_lot(today, lot_date=today + timedelta(days=1)),
        LotFault.REAL_FLOW_IN_TEST_MODE: valid_lot(today, flow="R"),
        LotFault.TEST_FLOW_IN_PRODUCTION: valid_lot(today, flow="T"),
        LotFault.TOO_MANY_PROBLEMS: _too_many(today),
    }
    return corpus
