"""Mails that once stopped the purge for good (issue 12), and genuine returns for sent lots, for
the purge's progress, full-disk and soak tests.

Every return is built relative to the test clock (lots dated the day before ``TEST_TODAY``, as
:func:`tests.support.purge_support.fresh_lot` makes them); nothing here reads the wall clock.
"""

from __future__ import annotations

from datetime import date, timedelta

from balise.domain.returns import InvoicePayment, NoemieLot, PaymentState, Reason, Share
from balise.sim.returnfile import build_arl, build_noemie
from balise.sim.returnmail import return_mail
from tests.support.clock import TEST_TODAY
from tests.support.mail_corpus import EMITTER, ORGANISM_ADDRESS, ORGANISM_NUMBER

MIB = 1024 * 1024
# What a lot made by fresh_lot() is dated (valid_lot dates a lot the day before its "today").
LOT_DATE: date = TEST_TODAY - timedelta(days=1)
# The invoices of a lot made by valid_lot() (three by default).
LOT_INVOICES = (100000, 100001, 100002)


def arl_mail(number: int, *, positive: bool = True, emitter: str = EMITTER, tag: str = "") -> bytes:
    """A genuine ARL (test flow) for lot ``number`` dated ``LOT_DATE``, from the organism."""
    reasons = () if positive else (Reason("SIGN-INV", "LOT INVERIFIABLE"),)
    payload = build_arl(
        "CP",
        ORGANISM_NUMBER,
        emitter,
        number,
        LOT_DATE,
        positive,
        len(LOT_INVOICES),
        TEST_TODAY,
        reasons,
        file_id=f"A{number:05d}",
        flow_type="T",
    )
    return return_mail(payload, message_id=f"<arl{number}{tag}@422.01.rss.fr>")


def noemie_mail(number: int, *, paid: int = 2000, tag: str = "") -> bytes:
    """A genuine NOEMIE (test flow) paying every invoice of lot ``number`` dated ``LOT_DATE``."""
    invoices = tuple(
        InvoicePayment(invoice, number, LOT_DATE, "F", Share(paid, PaymentState.PAID, paid))
        for invoice in LOT_INVOICES
    )
    payload = build_noemie(
        "CP",
        ORGANISM_NUMBER,
        EMITTER,
        TEST_TODAY,
        (NoemieLot(number, LOT_DATE, invoices),),
        file_id=f"N{number:05d}",
        flow_type="T",
    )
    return return_mail(payload, "IRISTEST/NOEMIE/Z", message_id=f"<noe{number}{tag}@422.01.rss.fr>")


def huge_headers_mail(lines: int = 4500, body: int = 2 * MIB + 4096, *, tag: str = "") -> bytes:
    """More than 256 KiB of headers (``lines`` short lines) then a body over the 2 MiB cap: its
    ``TOP n 0`` answer is larger than the purge reads of a header block."""
    head = (
        f"From: {ORGANISM_ADDRESS}\r\nSubject: HUGE-HEADERS{tag}\r\n"
        f"Message-ID: <huge-headers{tag}@x>\r\n"
    ).encode()
    filler = b"".join(b"X-Remplissage-%05d: %s\r\n" % (i, b"h" * 40) for i in range(lines))
    return head + filler + b"\r\n" + b"B" * body


def quadratic_content_type_mail(quoted: int = 130_000, *, tag: str = "") -> bytes:
    """A multipart whose Content-Type opens a quoted parameter over ``quoted`` semicolons: the
    standard library's parameter splitter counts quotes from the start of the value at each
    semicolon, quadratic time (about 130 KB passes a 10 s CPU limit)."""
    return (
        f"From: {ORGANISM_ADDRESS}\r\nSubject: IRIS{tag}\r\nMessage-ID: <quad{tag}@x>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="BB"; a="'
    ).encode() + (
        b";" * quoted + b'"\r\n\r\n--BB\r\nContent-Type: text/plain\r\n\r\nx\r\n--BB--\r\n'
    )


def many_parameters_mail(params: int = 40_000, *, tag: str = "") -> bytes:
    """A Content-Type with tens of thousands of ``;`` parameters (each one cheap, all of them
    copied again at every split)."""
    return (
        f"From: {ORGANISM_ADDRESS}\r\nSubject: IRIS{tag}\r\nMessage-ID: <params{tag}@x>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed"
    ).encode() + (
        b'; a="x"' * params
        + b'; boundary="BB"\r\n\r\n--BB\r\nContent-Type: text/plain\r\n\r\nx\r\n--BB--\r\n'
    )


def dot_lines_mail(lines: int = 600_000, *, tag: str = "") -> bytes:
    """Under the size cap, but every body line is a single dot: POP3 dot-stuffing makes its RETR
    answer a third larger than the size LIST announced."""
    head = (
        f"From: x@evil.example\r\nSubject: DOTS{tag}\r\nMessage-ID: <dots{tag}@x>\r\n\r\n"
    ).encode()
    return head + b".\r\n" * lines
