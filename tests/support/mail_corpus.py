"""Mails for the classifier and purge tests: the golden returns, a return-mail builder and a hostile
corpus (spam, phishing, bad payloads, gzip bomb, deep MIME...) each with the reason it must get.
"""

from __future__ import annotations

import email
import functools
import gzip
import zlib
from dataclasses import dataclass
from datetime import date
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from balise.domain.classify import ClassifyPolicy, UnknownReason
from balise.domain.returns import Reason, RejectLine
from balise.sim.returnfile import build_arl

# The builders live in balise.sim.returnmail (the OCT simulator uses them too).
from balise.sim.returnmail import edi_part, phishing_mail, return_mail, spam_mail
from balise.sim.returnmail import envelope as _envelope
from tests.support.lot_corpus import SAMPLES

EMITTER = "00000012345678"
ORGANISM_NUMBER = "00000001422000"
ORGANISM_ADDRESS = "01422@422.01.rss.fr"
BAL_ADDRESS = "xyz999212@bal.example.net"
SAMPLE_DATE = "Mon, 23 Nov 2026 10:00:00 +0100"
# The golden samples (docs/profile.md §3), versioned with the suite in tests/data/samples.
ARL_POS_EML = (SAMPLES / "arl_pos.eml").read_bytes()
ARL_NEG_EML = (SAMPLES / "arl_neg.eml").read_bytes()
NOEMIE_EML = (SAMPLES / "noemie.eml").read_bytes()
GOLDEN = {"arl_pos.eml": ARL_POS_EML, "arl_neg.eml": ARL_NEG_EML, "noemie.eml": NOEMIE_EML}


def golden_parts(eml: bytes) -> tuple[Message, Message, bytes]:
    """(message, EDI part, base64-decoded body) of a golden mail."""
    msg = email.message_from_bytes(eml)
    parts = msg.get_payload()
    assert isinstance(parts, list) and isinstance(parts[0], Message)
    body = parts[0].get_payload(decode=True)
    assert isinstance(body, bytes)
    return msg, parts[0], body


def golden_payload(eml: bytes) -> bytes:
    """The decoded entity stream of a golden mail (trusted test data: plain gunzip is fine)."""
    return gzip.decompress(golden_parts(eml)[2])


ARL_POS = golden_payload(ARL_POS_EML)
ARL_NEG = golden_payload(ARL_NEG_EML)
NOEMIE = golden_payload(NOEMIE_EML)


def corpus_policy(*, test_mode: bool = True, **overrides: object) -> ClassifyPolicy:
    """The policy the corpus is written for: the samples' practitioner is configured."""
    return ClassifyPolicy(
        configured_emitters=frozenset({EMITTER}),
        test_mode=test_mode,
        **overrides,  # type: ignore[arg-type]
    )


def arl_payload(emitter: str = EMITTER, *, positive: bool = True, flow_type: str = "T") -> bytes:
    """An ARL for lot 007 of the samples, to any emitter."""
    reasons = () if positive else (Reason("SIGN-INV", "LOT INVERIFIABLE"),)
    lines = () if positive else (RejectLine(100000, "A123", "FACTURE REJETEE", "F"),)
    return build_arl(
        "CP",
        ORGANISM_NUMBER,
        emitter,
        7,
        date(2026, 11, 22),
        positive,
        3,
        date(2026, 11, 23),
        reasons,
        lines,
        flow_type=flow_type,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------------------------
# Hostile mails
# --------------------------------------------------------------------------------------------


def raw_part_mail(
    part_headers: str, body: str, *, sender: str = ORGANISM_ADDRESS, top: str = "multipart/mixed"
) -> bytes:
    """A mail whose single part is written by hand (for bodies the email package would fix)."""
    return (
        f"From: {sender}\r\nTo: {BAL_ADDRESS}\r\nSubject: IRIS\r\nMessage-ID: <raw@x>\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: {top}; boundary="BB"\r\n\r\n'
        f"--BB\r\n{part_headers}\r\n\r\n{body}\r\n--BB--\r\n"
    ).encode()


def not_base64_mail() -> bytes:
    return raw_part_mail(
        "Content-Type: application/EDI-consent\r\nContent-Transfer-Encoding: base64\r\n"
        "Content-Description: IRIS/ARL/Z",
        "Ceci n'est pas du base64 !!! <script>alert(1)</script>",
    )


def bad_header_mail() -> bytes:
    """Good base64 and gzip around a payload that is not a return."""
    return return_mail(b"MZ\x90\x00 not a return at all " * 20, "IRIS/ARL/Z")


def not_gzip_mail() -> bytes:
    """Base64 fine, but /Z announced over bytes that are not gzip."""
    top = MIMEMultipart("mixed")
    top.attach(edi_part(b"", "IRIS/NOEMIE/Z", compressed_body=b"\x1f\x8b\x08\x00garbage" * 10))
    return _envelope(top, sender=ORGANISM_ADDRESS, subject="IRIS", message_id="<g@x>")


@functools.cache
def gzip_bomb(out_size: int = 128 * 1024 * 1024) -> bytes:
    """A real gzip stream of ``out_size`` zero bytes (about 1,000:1), built in chunks."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    pieces = [packer.compress(block) for _ in range(out_size // len(block))]
    pieces.append(packer.flush())
    return b"".join(pieces)


def gzip_bomb_mail(out_size: int = 128 * 1024 * 1024) -> bytes:
    top = MIMEMultipart("mixed")
    top.attach(edi_part(b"", "IRIS/ARL/Z", compressed_body=gzip_bomb(out_size)))
    return _envelope(top, sender=ORGANISM_ADDRESS, subject="IRIS", message_id="<bomb@x>")


def deep_mime_mail(levels: int = 50, *, leaf: bytes | None = None) -> bytes:
    """``levels`` nested multipart/mixed containers around a leaf (the EDI part by default)."""
    if leaf is None:
        leaf = edi_part(arl_payload(), "IRIS/ARL/Z").as_bytes()
    head = b""
    tail = b""
    for i in range(levels):
        head += b'Content-Type: multipart/mixed; boundary="L%d"\r\n\r\n--L%d\r\n' % (i, i)
        tail = b"\r\n--L%d--\r\n" % i + tail
    return (
        f"From: {ORGANISM_ADDRESS}\r\nTo: {BAL_ADDRESS}\r\nSubject: deep\r\n"
        "Message-ID: <deep@x>\r\nMIME-Version: 1.0\r\n"
    ).encode() + (head + leaf + tail)


def two_edi_parts_mail() -> bytes:
    top = MIMEMultipart("mixed")
    top.attach(edi_part(arl_payload(), "IRIS/ARL/Z"))
    top.attach(edi_part(arl_payload(positive=False), "IRIS/ARL/Z"))
    return _envelope(top, sender=ORGANISM_ADDRESS, subject="IRIS", message_id="<two@x>")


def nested_edi_mail() -> bytes:
    """multipart/mixed > multipart/mixed > EDI part: one level too deep for a return."""
    inner = MIMEMultipart("mixed")
    inner.attach(edi_part(arl_payload(), "IRIS/ARL/Z"))
    top = MIMEMultipart("mixed")
    top.attach(inner)
    return _envelope(top, sender=ORGANISM_ADDRESS, subject="IRIS", message_id="<nest@x>")


def many_parts_mail(parts: int = 30) -> bytes:
    top = MIMEMultipart("mixed")
    for i in range(parts):
        top.attach(MIMEText(f"part {i}\n"))
    return _envelope(top, sender=ORGANISM_ADDRESS, subject="IRIS", message_id="<many@x>")


def part_flood_mail(parts: int = 5000) -> bytes:
    """Thousands of empty parts in one multipart, written by hand (cheap to send, costly to parse)."""
    return (
        (
            f"From: {ORGANISM_ADDRESS}\r\nSubject: flood\r\nMessage-ID: <flood@x>\r\n"
            'Content-Type: multipart/mixed; boundary="F"\r\n\r\n'
        ).encode()
        + b"--F\r\n\r\nx\r\n" * parts
        + b"--F--\r\n"
    )


def oversize_mail(size: int = 3 * 1024 * 1024) -> bytes:
    head = f"From: {ORGANISM_ADDRESS}\r\nSubject: big\r\nMessage-ID: <big@x>\r\n\r\n".encode()
    return head + b"A" * (size - len(head))


@dataclass(frozen=True, slots=True)
class HostileMail:
    name: str
    raw: bytes
    reason: UnknownReason


def hostile_corpus(*, test_mode: bool = True, with_bomb: bool = True) -> list[HostileMail]:
    """Every hostile mail with the reason :func:`classify_message` must give it under
    :func:`corpus_policy` with the same ``test_mode``."""
    flow = "T" if test_mode else "R"
    r = UnknownReason
    mails = [
        HostileMail("spam", spam_mail(), r.SENDER_NOT_ALLOWED),
        HostileMail("phishing_lookalike_domain", phishing_mail(), r.SENDER_NOT_ALLOWED),
        HostileMail("phishing_forged_from", phishing_mail(ORGANISM_ADDRESS), r.NO_EDI_PART),
        HostileMail(
            "suffix_domain", return_mail(arl_payload(), sender="x@evilrss.fr"), r.SENDER_NOT_ALLOWED
        ),
        HostileMail(
            "domain_after_rss",
            return_mail(arl_payload(), sender="01422@422.01.rss.fr.evil.com"),
            r.SENDER_NOT_ALLOWED,
        ),
        HostileMail(
            "two_senders",
            return_mail(arl_payload(), sender=f"{ORGANISM_ADDRESS}, x@evil.com"),
            r.SENDER_NOT_ALLOWED,
        ),
        HostileMail("not_base64", not_base64_mail(), r.BAD_ENCODING),
        HostileMail("not_gzip", not_gzip_mail(), r.BAD_ENCODING),
        HostileMail("bad_000_header", bad_header_mail(), r.BAD_HEADER),
        HostileMail("deep_mime_50", deep_mime_mail(50), r.TOO_DEEP),
        HostileMail("deep_mime_3000", deep_mime_mail(3000), r.MIME_TOO_COMPLEX),
        HostileMail("many_parts", many_parts_mail(), r.TOO_MANY_PARTS),
        HostileMail("part_flood", part_flood_mail(), r.MIME_TOO_COMPLEX),
        HostileMail("two_edi_parts", two_edi_parts_mail(), r.SEVERAL_EDI_PARTS),
        HostileMail("edi_part_too_deep", nested_edi_mail(), r.EDI_PART_MISPLACED),
        HostileMail(
            "unknown_description",
            return_mail(arl_payload(flow_type=flow), "IRIS/B2/Z"),
            r.BAD_DESCRIPTION,
        ),
        HostileMail(
            "description_mismatch",
            return_mail(arl_payload(flow_type=flow), "IRIS/NOEMIE/Z"),
            r.DESCRIPTION_MISMATCH,
        ),
        HostileMail(
            "other_emitter",
            return_mail(arl_payload("00000099999999", flow_type=flow), "IRIS/ARL/Z"),
            r.NOT_FOR_THIS_BOX,
        ),
        HostileMail("oversize", oversize_mail(), r.TOO_LARGE),
    ]
    if not test_mode:
        mails.append(HostileMail("iristest_in_production", ARL_POS_EML, r.TEST_IN_PRODUCTION))
        mails.append(
            HostileMail(
                "test_flow_in_production",
                return_mail(arl_payload(flow_type="T"), "IRIS/ARL/Z"),
                r.TEST_IN_PRODUCTION,
            )
        )
    if with_bomb:
        mails.append(HostileMail("gzip_bomb", gzip_bomb_mail(), r.GZIP_BOMB))
    return mails


@pytest.fixture(scope="session")
def hostile_mails() -> list[HostileMail]:
    """The hostile corpus for a box in test mode (see :func:`corpus_policy`)."""
    return hostile_corpus(test_mode=True)
