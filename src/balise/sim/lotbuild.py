"""Lot file builder (profile v0, PROFILE.md §1) for the demo, the tests and the benchmarks — a
simulator part: the box itself only reads lots (balise.domain.lotfile), it never writes one.

Writes valid records with correct NIR keys, counts and totals; ``patch_record`` lets tests break
exactly one field. Pure: the caller gives every date; ``make_invoices`` is seeded.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final, Literal

from balise.domain.lotfile import RECORD_LEN, format_aammjj
from balise.domain.nir import nir_key

DEFAULT_CARE_DATE: Final = date(2026, 11, 2)
_ACT_RE = re.compile(r"[A-Z]{1,3}")


@dataclass(frozen=True, slots=True)
class LineSpec:
    """One act: code (1–3 letters), coefficient ×100, amount in cents."""

    act_code: str
    amount: int
    coefficient: int = 100


@dataclass(frozen=True, slots=True)
class InvoiceSpec:
    """One invoice; the NIR key is computed by the builder."""

    number: int
    care_date: date
    nir: str
    lines: tuple[LineSpec, ...]
    scope: Literal["O", "C"] = "O"

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


def _num(value: int, width: int, what: str) -> str:
    if not 0 <= value < 10**width:
        raise ValueError(f"{what} {value} does not fit in {width} digits")
    return f"{value:0{width}d}"


def _record(text: str) -> bytes:
    if len(text) > RECORD_LEN:
        raise ValueError(f"record longer than {RECORD_LEN}: {text[:20]!r}")
    return text.ljust(RECORD_LEN).encode("ascii")


def _id14(value: str, what: str) -> str:
    if len(value) != 14 or not value.isascii() or not value.isdigit():
        raise ValueError(f"{what} must be 14 digits")
    return value


def header_record(
    emitter: str,
    addressee: str,
    *,
    created: date,
    flow: Literal["R", "T", "D"] = "T",
    file_id: str = "F00001",
    software_id: str = "ACCEPT",
    addressee_type: Literal["CP", "MA", "OC", "OT"] = "CP",
    application: Literal["FS", "DR"] = "FS",
) -> bytes:
    """The ``000`` record."""
    if not 1 <= len(file_id) <= 6 or not file_id.isascii() or not file_id.isalnum():
        raise ValueError("file_id: 1 to 6 ASCII letters or digits")
    if len(software_id) > 6 or not software_id.isascii() or not software_id.isprintable():
        raise ValueError("software_id: at most 6 printable ASCII characters")
    return _record(
        "000PS"
        + _id14(emitter, "emitter")
        + software_id.ljust(6)
        + addressee_type
        + _id14(addressee, "addressee")
        + " " * 6
        + application
        + file_id.ljust(6)
        + format_aammjj(created)
        + "LOT0"
        + "01"
        + "NNU"
        + flow
        + " " * 11
        + "128"
    )


def lot_records(
    emitter: str, lot_number: int, lot_date: date, invoices: Sequence[InvoiceSpec]
) -> tuple[list[bytes], int]:
    """The records ``1`` … ``6`` of one lot, and the lot total in cents."""
    if not 1 <= lot_number <= 999:
        raise ValueError("lot number must be 1..999")
    out = [_record("1" + f"{lot_number:03d}" + format_aammjj(lot_date) + _id14(emitter, "emitter"))]
    lot_total = 0
    for inv in invoices:
        number = _num(inv.number, 9, "invoice number")
        key = nir_key(inv.nir)
        out.append(
            _record(
                "2" + number + format_aammjj(inv.care_date) + inv.nir + f"{key:02d}" + inv.scope
            )
        )
        for line in inv.lines:
            if _ACT_RE.fullmatch(line.act_code) is None:
                raise ValueError(f"act code must be 1-3 capital letters: {line.act_code!r}")
            out.append(
                _record(
                    "3"
                    + number
                    + line.act_code.ljust(3)
                    + _num(line.coefficient, 4, "coefficient")
                    + _num(line.amount, 8, "amount")
                )
            )
        total = inv.total
        out.append(
            _record(
                "5"
                + number
                + _num(len(inv.lines), 3, "line count")
                + _num(total, 8, "invoice total")
            )
        )
        lot_total += total
    out.append(
        _record(
            "6"
            + f"{lot_number:03d}"
            + _num(len(invoices), 5, "invoice count")
            + _num(lot_total, 10, "lot total")
        )
    )
    return out, lot_total


def trailer_record(record_count: int, lot_count: int, total: int) -> bytes:
    """The ``999`` record."""
    return _record(
        "999"
        + _num(record_count, 8, "record count")
        + _num(lot_count, 3, "lot count")
        + _num(total, 11, "file total")
    )


def build_lot(
    emitter: str,
    addressee: str,
    lot_number: int,
    lot_date: date,
    invoices: Sequence[InvoiceSpec],
    *,
    flow: Literal["R", "T", "D"] = "T",
    file_id: str = "F00001",
    software_id: str = "ACCEPT",
    created: date | None = None,
    addressee_type: Literal["CP", "MA", "OC", "OT"] = "CP",
    application: Literal["FS", "DR"] = "FS",
) -> bytes:
    """A complete one-lot file; ``created`` defaults to the lot date.

    Invoices need at least one line each and the lot at least one invoice for the result to be
    valid, but the builder does not refuse them: tests use it to make faulty files too.
    """
    head = header_record(
        emitter,
        addressee,
        created=created or lot_date,
        flow=flow,
        file_id=file_id,
        software_id=software_id,
        addressee_type=addressee_type,
        application=application,
    )
    body, total = lot_records(emitter, lot_number, lot_date, invoices)
    return b"".join([head, *body, trailer_record(len(body) + 2, 1, total)])


def patch_record(data: bytes, record: int, position: int, text: str | bytes) -> bytes:
    """Overwrite ``text`` in record ``record`` at ``position`` (both 1-based, PROFILE.md style).

    Bytes are written as given, so tests can plant forbidden bytes too.
    """
    raw = text if isinstance(text, bytes) else text.encode("ascii")
    start = (record - 1) * RECORD_LEN + position - 1
    if (
        record < 1
        or position < 1
        or position - 1 + len(raw) > RECORD_LEN
        or start + len(raw) > len(data)
    ):
        raise ValueError("patch outside the record")
    return data[:start] + raw + data[start + len(raw) :]


# Plausible NGAP acts: (code, coefficient ×100, amount in cents).
_ACTS: Final = (
    ("G", 100, 3000),
    ("GS", 100, 3000),
    ("C", 100, 3000),
    ("CS", 100, 3000),
    ("V", 100, 3000),
    ("VG", 100, 1000),
    ("MU", 100, 1000),
    ("K", 1500, 2880),
)


def _random_nir(rng: random.Random) -> str:
    sex = rng.choice("12")
    year = f"{rng.randrange(100):02d}"
    month = f"{rng.randrange(1, 13):02d}"
    roll = rng.random()
    if roll < 0.05:
        dept = "2A"
    elif roll < 0.10:
        dept = "2B"
    else:
        dept = f"{rng.choice([d for d in range(1, 96) if d != 20]):02d}"
    return sex + year + month + dept + f"{rng.randrange(1, 1000):03d}{rng.randrange(1, 1000):03d}"


def make_invoices(
    n: int,
    seed: int,
    *,
    care_date: date = DEFAULT_CARE_DATE,
    first_number: int = 100000,
) -> list[InvoiceSpec]:
    """``n`` plausible invoices, the same for the same seed; care dates within 30 days before
    ``care_date``; numbers consecutive from ``first_number``; about 5 % Corsican NIRs."""
    rng = random.Random(seed)  # noqa: S311 — test data, not secrets
    out: list[InvoiceSpec] = []
    for i in range(n):
        lines = tuple(
            LineSpec(code, amount, coefficient)
            for code, coefficient, amount in (rng.choice(_ACTS) for _ in range(rng.randint(1, 3)))
        )
        out.append(
            InvoiceSpec(
                number=first_number + i,
                care_date=care_date - timedelta(days=rng.randrange(30)),
                nir=_random_nir(rng),
                lines=lines,
                scope="C" if rng.random() < 0.1 else "O",
            )
        )
    return out
