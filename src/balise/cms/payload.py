"""The gzip payload and the `application/EDI-consent` MIME entity of PROFILE.md §2 steps 2–3.

Building is byte-exact (CRLF, 76-column base64); parsing is bounded, for the simulator and returns.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import re
import zlib
from typing import Final

from balise.cms.errors import CmsError, CmsErrorCode

GZIP_MAGIC: Final = b"\x1f\x8b"
CONTENT_TYPE: Final = "application/EDI-consent"
DESCRIPTION_REAL: Final = "IRIS/B2/Z"
DESCRIPTION_TEST: Final = "IRISTEST/B2/Z"  # flow types T (test) and D (demo)
LINE_LENGTH: Final = 76
CRLF: Final = b"\r\n"

# A lot is at most 8 MiB; its SignedData adds a few KiB; gzip can in theory grow it a little.
DEFAULT_MAX_PAYLOAD: Final = 16 * 1024 * 1024
# base64 adds 4/3 plus CRLF every 76 columns: 24 MiB bounds an entity carrying the payload above.
DEFAULT_MAX_ENTITY: Final = 24 * 1024 * 1024
MAX_HEADER_BYTES: Final = 8 * 1024
MAX_HEADERS: Final = 32

_EMITTER = re.compile(r"[0-9]{14}")
_LOT = re.compile(r"[0-9]{3}")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext: printable ASCII except ':'


def gzip_payload(der: bytes) -> bytes:
    """gzip of ``der`` with mtime 0 and no file name: the same input always gives the same bytes."""
    return gzip.compress(der, compresslevel=6, mtime=0)


def gunzip_payload(data: bytes, *, max_size: int = DEFAULT_MAX_PAYLOAD) -> bytes:
    """Inflate one gzip member, refusing more than ``max_size`` bytes of output (no gzip bombs)."""
    if not data.startswith(GZIP_MAGIC):
        raise CmsError(
            CmsErrorCode.BAD_COMPRESSION,
            "Données compressées illisibles (pas de gzip).",
            "Unreadable compressed data (not gzip).",
        )
    inflater = zlib.decompressobj(wbits=31)  # 16 + 15: gzip header and trailer
    try:
        out = inflater.decompress(data, max_size + 1)
    except zlib.error as exc:
        raise CmsError(
            CmsErrorCode.BAD_COMPRESSION,
            "Données compressées corrompues.",
            "Corrupt compressed data.",
        ) from exc
    if len(out) > max_size:
        raise CmsError(
            CmsErrorCode.TOO_LARGE,
            f"Données décompressées au-delà de {max_size} octets.",
            f"Decompressed data over {max_size} bytes.",
        )
    if not inflater.eof or inflater.unused_data:
        raise CmsError(
            CmsErrorCode.BAD_COMPRESSION,
            "Données compressées tronquées ou suivies de données en trop.",
            "Compressed data truncated or followed by extra bytes.",
        )
    return out


def content_description(*, test_flow: bool) -> str:
    """``Content-Description`` of a lot entity: the test form for flow types T and D."""
    return DESCRIPTION_TEST if test_flow else DESCRIPTION_REAL


def entity_filename(emitter: str, lot_number: str) -> str:
    """``LOT_<emitter14>_<lot3>.gz``, after checking both numbers."""
    if not _EMITTER.fullmatch(emitter):
        raise _bad_entity(
            f"numéro d'émetteur {emitter!r} (14 chiffres attendus)",
            f"emitter number {emitter!r} (14 digits expected)",
        )
    if not _LOT.fullmatch(lot_number) or lot_number == "000":
        raise _bad_entity(
            f"numéro de lot {lot_number!r} (001 à 999 attendu)",
            f"lot number {lot_number!r} (001 to 999 expected)",
        )
    return f"LOT_{emitter}_{lot_number}.gz"


def build_entity(payload: bytes, *, emitter: str, lot_number: str, test_flow: bool) -> bytes:
    """The MIME entity around the gzip'd SignedData: four headers, blank line, base64 body, CRLF."""
    filename = entity_filename(emitter, lot_number)
    if not payload.startswith(GZIP_MAGIC):
        # The "/Z" in Content-Description promises gzip; a receiver would fail to inflate.
        raise _bad_entity("charge utile non compressée (gzip attendu)", "payload is not gzip")
    headers = (
        f"Content-Type: {CONTENT_TYPE}",
        "Content-Transfer-Encoding: base64",
        f"Content-Description: {content_description(test_flow=test_flow)}",
        f'Content-Disposition: attachment; filename="{filename}"',
    )
    encoded = base64.b64encode(payload)
    lines = [encoded[i : i + LINE_LENGTH] for i in range(0, len(encoded), LINE_LENGTH)]
    head = CRLF.join(h.encode("ascii") for h in headers) + CRLF + CRLF
    return head + b"".join(line + CRLF for line in lines)


def parse_entity(
    entity: bytes, *, max_size: int = DEFAULT_MAX_ENTITY
) -> tuple[dict[str, str], bytes]:
    """Headers (names lower-cased, values stripped) and decoded body of a base64 MIME entity.

    Accepts CRLF or bare LF line ends (mail tools sometimes convert them) and folded headers;
    refuses anything over ``max_size``, too many or too long headers, a transfer encoding other
    than base64, and a body that is not strict base64.
    """
    if len(entity) > max_size:
        raise CmsError(
            CmsErrorCode.TOO_LARGE,
            f"Entité MIME trop volumineuse ({len(entity)} octets).",
            f"MIME entity too large ({len(entity)} bytes).",
        )
    blank = _BLANK_LINE.search(entity, 0, MAX_HEADER_BYTES + 4)
    if blank is None:
        raise _bad_entity("pas de fin d'en-têtes", "no end of headers")
    try:
        head = entity[: blank.start()].decode("ascii")
    except UnicodeDecodeError as exc:
        raise _bad_entity("en-têtes non ASCII", "non-ASCII headers") from exc
    headers: dict[str, str] = {}
    logical: list[str] = []
    for raw in head.replace("\r\n", "\n").split("\n"):
        if raw[:1] in (" ", "\t") and logical:
            logical[-1] += " " + raw.strip()  # folded continuation line
        else:
            logical.append(raw)
    if len(logical) > MAX_HEADERS:
        raise _bad_entity("trop d'en-têtes", "too many headers")
    for line in logical:
        name, sep, value = line.partition(":")
        if not sep or not _HEADER_NAME.fullmatch(name):
            raise _bad_entity(f"en-tête invalide {line[:40]!r}", f"invalid header {line[:40]!r}")
        key = name.lower()
        if key in headers:
            raise _bad_entity(f"en-tête {name} répété", f"header {name} repeated")
        headers[key] = value.strip()
    encoding = headers.get("content-transfer-encoding", "").lower()
    if encoding != "base64":
        raise _bad_entity(
            f"encodage {encoding or 'absent'} (base64 attendu)",
            f"encoding {encoding or 'missing'} (base64 expected)",
        )
    body = entity[blank.end() :].replace(b"\r", b"").replace(b"\n", b"")
    try:
        payload = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad_entity("corps base64 invalide", "invalid base64 body") from exc
    return headers, payload


def _bad_entity(what_fr: str, what_en: str) -> CmsError:
    return CmsError(
        CmsErrorCode.BAD_ENTITY,
        f"Entité MIME invalide : {what_fr}.",
        f"Invalid MIME entity: {what_en}.",
    )
