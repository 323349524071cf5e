"""Classification of a raw mail found in the BAL (PROFILE.md §4): ARL, NOEMIE, damaged or unknown.

Pure and bounded: the size cap is checked before any parsing, the MIME tree is bounded before and
after the standard parser builds it, gunzip is bounded in output and ratio. Never raises on input.
"""

from __future__ import annotations

import base64
import binascii
import email.errors
import hashlib
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from email import policy as email_policy
from email.message import Message
from email.parser import BytesParser
from enum import StrEnum
from typing import Literal

from balise.domain.returns import ParsedReturn, parse_return
from balise.domain.signed_return import return_stream

ClassKind = Literal["arl", "noemie", "damaged", "unknown"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassifyPolicy:
    """Bounds and configuration of one mailbox's classification."""

    configured_emitters: frozenset[str]
    test_mode: bool
    size_cap: int = 2 * 1024 * 1024
    allowed_domains: tuple[str, ...] = ("*.rss.fr",)
    max_mime_depth: int = 3
    max_parts: int = 20
    max_gunzip_out: int = 16 * 1024 * 1024
    max_gunzip_ratio: int = 200
    max_header_bytes: int = 64 * 1024
    metadata_max_len: int = 200


class UnknownReason(StrEnum):
    """Why a message is unknown. Values are stable codes (quarantine records, alerts, tests)."""

    TOO_LARGE = "TOO_LARGE"
    SENDER_NOT_ALLOWED = "SENDER_NOT_ALLOWED"
    MIME_TOO_COMPLEX = "MIME_TOO_COMPLEX"
    MALFORMED = "MALFORMED"
    TOO_DEEP = "TOO_DEEP"
    TOO_MANY_PARTS = "TOO_MANY_PARTS"
    NO_EDI_PART = "NO_EDI_PART"
    SEVERAL_EDI_PARTS = "SEVERAL_EDI_PARTS"
    EDI_PART_MISPLACED = "EDI_PART_MISPLACED"
    BAD_DESCRIPTION = "BAD_DESCRIPTION"
    TEST_IN_PRODUCTION = "TEST_IN_PRODUCTION"
    BAD_ENCODING = "BAD_ENCODING"
    GZIP_BOMB = "GZIP_BOMB"
    BAD_HEADER = "BAD_HEADER"
    DESCRIPTION_MISMATCH = "DESCRIPTION_MISMATCH"
    NOT_FOR_THIS_BOX = "NOT_FOR_THIS_BOX"
    HEADER_TOO_COMPLEX = "HEADER_TOO_COMPLEX"
    HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"
    NOT_SERVED = "NOT_SERVED"

    def words(self, lang: str = "fr") -> str:
        fr, en = _REASON_WORDS[self]
        return en if lang == "en" else fr


_REASON_WORDS: dict[UnknownReason, tuple[str, str]] = {
    UnknownReason.TOO_LARGE: ("message trop volumineux", "message too large"),
    UnknownReason.SENDER_NOT_ALLOWED: (
        "expéditeur absent, illisible ou hors de la liste des organismes",
        "sender missing, unreadable or not on the organism allow-list",
    ),
    UnknownReason.MIME_TOO_COMPLEX: (
        "structure MIME trop complexe pour être analysée",
        "MIME structure too complex to be parsed",
    ),
    UnknownReason.MALFORMED: ("message illisible", "unreadable message"),
    UnknownReason.TOO_DEEP: ("parties MIME trop imbriquées", "MIME parts nested too deeply"),
    UnknownReason.TOO_MANY_PARTS: ("trop de parties MIME", "too many MIME parts"),
    UnknownReason.NO_EDI_PART: ("aucune pièce EDI", "no EDI part"),
    UnknownReason.SEVERAL_EDI_PARTS: ("plusieurs pièces EDI", "several EDI parts"),
    UnknownReason.EDI_PART_MISPLACED: (
        "pièce EDI placée trop profondément",
        "EDI part nested too deep",
    ),
    UnknownReason.BAD_DESCRIPTION: (
        "description de la pièce EDI inconnue",
        "unknown EDI part description",
    ),
    UnknownReason.TEST_IN_PRODUCTION: (
        "retour de test reçu en mode production",
        "test return received in production mode",
    ),
    UnknownReason.BAD_ENCODING: (
        "pièce EDI mal encodée (base64 ou gzip)",
        "EDI part badly encoded (base64 or gzip)",
    ),
    UnknownReason.GZIP_BOMB: (
        "pièce EDI décompressée trop grande (bombe gzip)",
        "EDI part too large once decompressed (gzip bomb)",
    ),
    UnknownReason.BAD_HEADER: ("en-tête 000 invalide", "invalid 000 header"),
    UnknownReason.DESCRIPTION_MISMATCH: (
        "la description ne correspond pas au type de retour de l'en-tête",
        "the description does not match the header's return type",
    ),
    UnknownReason.NOT_FOR_THIS_BOX: (
        "retour adressé à un praticien inconnu de ce boîtier",
        "return addressed to a practitioner not configured on this box",
    ),
    UnknownReason.HEADER_TOO_COMPLEX: (
        "en-tête MIME aux paramètres trop nombreux ou trop longs",
        "MIME header with too many or too long parameters",
    ),
    UnknownReason.HEADERS_TOO_LARGE: (
        "en-têtes trop volumineux (seul leur début a été lu)",
        "headers too large (only their beginning was read)",
    ),
    UnknownReason.NOT_SERVED: (
        "le serveur n'a pas fourni le message",
        "the server did not hand the message over",
    ),
}

# Content-Description → (kind of return, gzip-compressed?).
_ReturnKind = Literal["arl", "noemie"]
_DESCRIPTIONS: dict[str, tuple[_ReturnKind, bool]] = {
    "IRIS/ARL": ("arl", False),
    "IRIS/ARL/Z": ("arl", True),
    "IRIS/NOEMIE": ("noemie", False),
    "IRIS/NOEMIE/Z": ("noemie", True),
}
_TEST_PREFIX = "IRISTEST/"
_EDI_TYPE = "application/edi-consent"
_CHUNK = 64 * 1024
# The standard parser recurses once per nested multipart or message/* entity and fails near
# 1,000 levels; a mail with more container declarations than this is refused before parsing.
_MAX_CONTAINER_MENTIONS = 100
_CONTAINER_RE = re.compile(rb"(?i)(?:multipart|message)/")
# A MIME header field (Content-Type, Content-Disposition...) of a genuine mail has a handful of
# parameters; the standard parser splits them in time quadratic in their number and length (a
# quoted value over 130 KB of ";" took more than 10 s of CPU). Any field named Content-*, at the
# start of any line (the parser also breaks lines on a lone CR), folded lines included, with
# more parameters or bytes than this is refused before the parser sees the message.
_MAX_MIME_PARAMS = 32
_MAX_MIME_FIELD = 8 * 1024
_MIME_NAME_RE = re.compile(rb"content-[!-9;-~]*[ \t]*:")  # on lower-cased bytes
_FIELD_VALUE_RE = re.compile(rb"[^\r\n]*(?:(?:\r\n|\r|\n)[ \t][^\r\n]*)*")
_ADDRESS_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@"
    r"((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
)
_B64_SPACE = re.compile(r"[ \t\r\n]+")
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True, slots=True)
class Classification:
    """Outcome for one message. Metadata fields are bounded, printable-ASCII strings kept for the
    quarantine record: this module never renders them, and they stay out of ``repr``."""

    kind: ClassKind
    reason: UnknownReason | None
    size: int
    sha256: str
    digest_scope: Literal["message", "headers"]
    parsed: ParsedReturn | None = None
    description: str | None = None
    sender_address: str | None = field(default=None, repr=False)
    sender: str | None = field(default=None, repr=False)
    message_id: str | None = field(default=None, repr=False)
    subject: str | None = field(default=None, repr=False)
    payload: bytes | None = field(default=None, repr=False)

    def words(self, lang: str = "fr") -> str:
        if self.reason is not None:
            prefix = "Unknown message" if lang == "en" else "Message inconnu"
            sep = ": " if lang == "en" else " : "
            return prefix + sep + self.reason.words(lang)
        if self.parsed is not None:
            return self.parsed.words(lang)
        return ""


# --------------------------------------------------------------------------------------------
# Small pure helpers (public where other layers need the same rule)
# --------------------------------------------------------------------------------------------


def domain_allowed(domain: str, patterns: Sequence[str]) -> bool:
    """``*.rss.fr`` matches ``422.01.rss.fr`` (any depth) but neither ``rss.fr``,
    ``evilrss.fr`` nor ``rss.fr.evil.com``; a pattern without ``*`` matches exactly."""
    d = domain.lower()
    for pattern in patterns:
        p = pattern.strip().lower()
        if p.startswith("*."):
            suffix = p[1:]
            if len(d) > len(suffix) and d.endswith(suffix):
                return True
        elif p and d == p:
            return True
    return False


def sender_address(from_values: Sequence[str]) -> str | None:
    """The single address of a From header, with its domain lower-cased, or None.

    Strict on purpose: one From header, one address, ASCII, no comments; anything else is unknown.
    """
    if len(from_values) != 1:
        return None
    value = " ".join(from_values[0].split())
    if not value.isascii() or len(value) > 998:
        return None
    if "<" in value or ">" in value:
        if value.count("<") != 1 or value.count(">") != 1:
            return None
        before, _, rest = value.partition("<")
        addr, _, after = rest.partition(">")
        # A second address or a comment around the angle address is refused, not guessed at.
        if after.strip() or "@" in before or "," in before:
            return None
        addr = addr.strip()
    else:
        addr = value.strip()
    match = _ADDRESS_RE.fullmatch(addr)
    if match is None:
        return None
    local = addr[: -len(match.group(1)) - 1]
    return f"{local}@{match.group(1).lower()}"


def gunzip_bounded(data: bytes, max_out: int, max_ratio: int) -> bytes | UnknownReason:
    """Gunzip one gzip member, refusing more than ``min(max_out, max_ratio * len(data))`` bytes
    out: a bomb is stopped after at most that much work, never inflated whole."""
    limit = min(max_out, max_ratio * len(data))
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip wrapper only
    out = bytearray()
    pending = data
    # Every pass but the last fills a full chunk, so limit // _CHUNK + 2 passes always suffice.
    for _ in range(limit // _CHUNK + 3):
        try:
            chunk = inflater.decompress(pending, min(_CHUNK, limit + 1 - len(out)))
        except zlib.error:
            return UnknownReason.BAD_ENCODING
        out += chunk
        if len(out) > limit:
            return UnknownReason.GZIP_BOMB
        if inflater.eof:
            break
        pending = inflater.unconsumed_tail
        if not pending:
            return UnknownReason.BAD_ENCODING  # truncated stream
    else:
        return UnknownReason.GZIP_BOMB
    if inflater.unused_data:
        return UnknownReason.BAD_ENCODING  # a second member or trailing garbage
    return bytes(out)


def _raw_values(msg: Message, name: str) -> list[str]:
    # raw_items skips the compat32 "sanitizing" that turns 8-bit headers into Header objects.
    lname = name.lower()
    return [str(v) for k, v in msg.raw_items() if k.lower() == lname]


def _meta(values: list[str], limit: int) -> str | None:
    if not values:
        return None
    text = _NOT_PRINTABLE.sub("?", " ".join(values[0].split()))
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


@dataclass(frozen=True, slots=True)
class _Meta:
    sender: str | None = None
    sender_address: str | None = None
    message_id: str | None = None
    subject: str | None = None


def _parse_headers(header_bytes: bytes, policy: ClassifyPolicy) -> tuple[Message | None, _Meta]:
    try:
        msg = _fast_header_block(header_bytes) or BytesParser(
            policy=email_policy.compat32
        ).parsebytes(header_bytes, headersonly=True)
    except (email.errors.MessageError, ValueError, LookupError, TypeError, RecursionError):
        return None, _Meta()
    limit = policy.metadata_max_len
    from_values = _raw_values(msg, "From")
    address = sender_address(from_values)
    meta = _Meta(
        sender=_meta(from_values, limit),
        sender_address=address if address is not None and len(address) <= limit else None,
        message_id=_meta(_raw_values(msg, "Message-ID"), limit),
        subject=_meta(_raw_values(msg, "Subject"), limit),
    )
    return msg, meta


def _unknown(
    reason: UnknownReason,
    raw: bytes,
    meta: _Meta,
    *,
    size: int | None = None,
    scope: Literal["message", "headers"] = "message",
    description: str | None = None,
    parsed: ParsedReturn | None = None,
) -> Classification:
    return Classification(
        kind="unknown",
        reason=reason,
        size=len(raw) if size is None else size,
        sha256=hashlib.sha256(raw).hexdigest(),
        digest_scope=scope,
        parsed=parsed,
        description=description,
        sender_address=meta.sender_address,
        sender=meta.sender,
        message_id=meta.message_id,
        subject=meta.subject,
    )


def _header_block(raw: bytes, limit: int) -> bytes:
    head = raw[:limit]
    for sep in (b"\r\n\r\n", b"\n\n"):
        end = head.find(sep)
        if end >= 0:
            return head[: end + len(sep)]
    return head


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------


def classify_headers_only(
    size: int,
    header_bytes: bytes,
    policy: ClassifyPolicy,
    reason: UnknownReason = UnknownReason.TOO_LARGE,
) -> Classification:
    """For a message seen only through its headers (``TOP n 0``: over the size cap, or a header
    block over its own bound, then ``reason`` says so): always unknown, with bounded metadata and
    the SHA-256 of the header bytes read."""
    _, meta = _parse_headers(header_bytes[: policy.max_header_bytes], policy)
    return _unknown(reason, header_bytes, meta, size=size, scope="headers")


@dataclass(frozen=True, slots=True)
class _Edi:
    part: Message
    depth: int
    under_root_mixed: bool


def _walk(root: Message, policy: ClassifyPolicy) -> list[_Edi] | UnknownReason:
    """Bounded iterative walk of the parsed tree, collecting every application/EDI-consent part."""
    found: list[_Edi] = []
    root_mixed = root.is_multipart() and root.get_content_type() == "multipart/mixed"
    stack: list[tuple[Message, int, bool]] = [(root, 1, False)]
    seen = 0
    while stack:
        part, depth, parent_is_root = stack.pop()
        seen += 1
        if depth > policy.max_mime_depth:
            return UnknownReason.TOO_DEEP
        if seen > policy.max_parts:
            return UnknownReason.TOO_MANY_PARTS
        if part.is_multipart():
            children = part.get_payload()
            if not isinstance(children, list) or len(children) > policy.max_parts:
                return UnknownReason.TOO_MANY_PARTS
            is_root = part is root
            for child in reversed(children):
                if not isinstance(child, Message):
                    return UnknownReason.MALFORMED
                stack.append((child, depth + 1, is_root))
        elif part.get_content_type() == _EDI_TYPE:
            found.append(_Edi(part, depth, parent_is_root and root_mixed))
    return found


def _too_complex(raw: bytes, policy: ClassifyPolicy) -> bool:
    """Cheap upper bounds checked before the standard parser builds the tree: container
    declarations (its recursion) and lines starting with ``--`` (every part needs one)."""
    for mentions, _ in enumerate(_CONTAINER_RE.finditer(raw), start=1):
        if mentions > _MAX_CONTAINER_MENTIONS:
            return True
    # The parser also splits lines on a lone CR, so count both line ends.
    dash_lines = raw.startswith(b"--") + raw.count(b"\n--") + raw.count(b"\r--")
    return dash_lines > max(8 * policy.max_parts, 200)


def _mime_field_too_complex(raw: bytes) -> bool:
    """Whether a Content-* header field anywhere in ``raw`` has more than _MAX_MIME_PARAMS
    parameters or _MAX_MIME_FIELD bytes. Linear, and fast on a big body: a plain search for
    "content-", each hit checked once, and fields never overlap."""
    low = raw.lower()
    at = low.find(b"content-")
    while at >= 0:
        name = _MIME_NAME_RE.match(low, at) if at == 0 or low[at - 1] in b"\r\n" else None
        if name is None:
            at = low.find(b"content-", at + 1)
            continue
        value = _FIELD_VALUE_RE.match(raw, name.end())
        end = value.end() if value is not None else name.end()
        start = name.end()
        if end - start > _MAX_MIME_FIELD or raw.count(b";", start, end) > _MAX_MIME_PARAMS:
            return True
        at = low.find(b"content-", end)
    return False


def _description(values: list[str], test_mode: bool) -> tuple[_ReturnKind, bool] | UnknownReason:
    """(kind, compressed) for a known Content-Description."""
    if len(values) != 1:
        return UnknownReason.BAD_DESCRIPTION
    text = " ".join(values[0].split()).upper()
    if text.startswith(_TEST_PREFIX):
        known = _DESCRIPTIONS.get("IRIS/" + text[len(_TEST_PREFIX) :])
        if known is None:
            return UnknownReason.BAD_DESCRIPTION
        return known if test_mode else UnknownReason.TEST_IN_PRODUCTION
    return _DESCRIPTIONS.get(text, UnknownReason.BAD_DESCRIPTION)


def _decode_base64(part: Message) -> bytes | UnknownReason:
    encodings = _raw_values(part, "Content-Transfer-Encoding")
    if len(encodings) != 1 or encodings[0].strip().lower() != "base64":
        return UnknownReason.BAD_ENCODING
    body = part.get_payload()
    if not isinstance(body, str):
        return UnknownReason.BAD_ENCODING
    compact = _B64_SPACE.sub("", body)
    if not compact or not compact.isascii():
        return UnknownReason.BAD_ENCODING
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return UnknownReason.BAD_ENCODING


# A header line as the standard parser reads it: a name of printable characters but ":" and
# space, then ":" (its headerRE, with a non-empty name).
_HEADER_LINE_RE = re.compile(r"[\x21-\x39\x3b-\x7e]+:")


def _fast_headers(
    lines: list[str], at: int, separator: str | None = None
) -> tuple[list[tuple[str, str]], int] | None:
    """The header fields of the entity starting at ``lines[at]`` as the standard parser (policy
    compat32) stores them, and the index of its first body line; None for anything but plain
    fields (folded ones included) ended by an empty line, or for a line starting with the
    enclosing multipart's ``separator``."""
    fields: list[tuple[str, str]] = []
    current: list[str] = []
    while at < len(lines):
        line = lines[at]
        at += 1
        if separator is not None and line.startswith(separator):
            return None
        if line in ("\r\n", "\n"):
            if current:
                fields.append(_compat32_field(current))
            return fields, at
        if line[0] in " \t":
            if not current:
                return None
            current.append(line)
            continue
        if line.startswith("From ") or _HEADER_LINE_RE.match(line) is None:
            return None
        if current:
            fields.append(_compat32_field(current))
        current = [line]
    return None  # no empty line: the standard parser's defects, left to it


def _compat32_field(source: list[str]) -> tuple[str, str]:
    # email.policy.compat32.header_source_parse, verbatim.
    name, value = source[0].split(":", 1)
    value = value.lstrip(" \t") + "".join(source[1:])
    return name, value.rstrip("\r\n")


def _entity(fields: list[tuple[str, str]]) -> Message:
    entity = Message(policy=email_policy.compat32)
    for name, value in fields:
        entity.set_raw(name, value)
    return entity


def _plain_lines(raw: bytes) -> list[str] | None:
    """The lines of ``raw`` as the standard parser splits them, each with its line end, when it
    is ASCII with CRLF or LF line ends only; else None."""
    if not raw.isascii() or raw.count(b"\r") != raw.count(b"\r\n"):
        return None
    lines = [line + "\n" for line in raw.decode("ascii").split("\n")]
    if lines[-1] == "\n":
        lines.pop()  # the text ended with a line end
    else:
        lines[-1] = lines[-1][:-1]  # a last line without one
    return lines


def _fast_header_block(header_bytes: bytes) -> Message | None:
    """What ``BytesParser(policy=compat32).parsebytes(header_bytes, headersonly=True)`` builds,
    for plain header fields ended by an empty line (the sender check reads every mail's header
    block: the standard parser took a quarter of the analysis); None for anything else, left
    to the standard parser. Checked against it in tests/test_classify_fast.py."""
    lines = _plain_lines(header_bytes)
    parsed = _fast_headers(lines, 0) if lines is not None else None
    if lines is None or parsed is None:
        return None
    fields, at = parsed
    msg = _entity(fields)
    msg.set_payload("".join(lines[at:]))
    return msg


def _fast_tree(raw: bytes) -> Message | None:
    """The tree ``BytesParser(policy=compat32).parsebytes(raw)`` builds, for the plain shape of
    a return (ASCII, CRLF or LF line ends, plain header fields; a single part, or one
    multipart/mixed of single parts with exact boundary lines and a closing one), built without
    the standard parser's line machinery and its regular expression compiled for every
    boundary (most of a purge's analysis time). None for any other shape: the standard parser
    reads those. The two are checked against each other in tests/test_classify_fast.py."""
    lines = _plain_lines(raw)
    if lines is None:
        return None
    parsed = _fast_headers(lines, 0)
    if parsed is None:
        return None
    fields, at = parsed
    root = _entity(fields)
    maintype = root.get_content_maintype()
    if maintype == "message":
        return None
    if maintype != "multipart":
        root.set_payload("".join(lines[at:]))
        return root
    if root.get_content_type() != "multipart/mixed" or len(root.get_all("content-type", [])) != 1:
        return None
    boundary = root.get_boundary()
    if not boundary:
        return None
    separator = "--" + boundary
    opening = (separator + "\r\n", separator + "\n")
    closing = (separator + "--\r\n", separator + "--\n", separator + "--")
    # The preamble: up to the first boundary line; nothing in it may look like one.
    while at < len(lines) and not lines[at].startswith(separator):
        at += 1
    if at >= len(lines) or lines[at] not in opening:
        return None
    at += 1
    while True:
        parsed = _fast_headers(lines, at, separator)
        if parsed is None:
            return None
        fields, at = parsed
        part = _entity(fields)
        if part.get_content_maintype() in ("multipart", "message"):
            return None
        start = at
        while at < len(lines) and not lines[at].startswith(separator):
            at += 1
        if at >= len(lines):
            return None  # no closing boundary
        body = "".join(lines[start:at])
        # The line end before a boundary belongs to the boundary (RFC 2046).
        if body.endswith("\r\n"):
            body = body[:-2]
        elif body.endswith("\n"):
            body = body[:-1]
        part.set_payload(body)
        root.attach(part)
        boundary_line = lines[at]
        at += 1
        if boundary_line in closing:
            return root  # what follows is the epilogue, which nothing reads
        if boundary_line not in opening or at >= len(lines) or lines[at].startswith(separator):
            return None  # boundary with trailing blanks, or an empty part: the parser's own ways


def classify_message(raw: bytes, policy: ClassifyPolicy) -> Classification:
    """Apply the ordered rules of PROFILE.md §4 to one raw RFC 5322 message. Never raises."""
    # 1. Size first, so that no parser ever sees more than size_cap bytes.
    if len(raw) > policy.size_cap:
        _, meta = _parse_headers(_header_block(raw, policy.max_header_bytes), policy)
        return _unknown(UnknownReason.TOO_LARGE, raw, meta)

    # 2. Sender domain, from the header block alone (bounded).
    headers, meta = _parse_headers(_header_block(raw, policy.max_header_bytes), policy)
    if headers is None:
        return _unknown(UnknownReason.MALFORMED, raw, meta)
    address = meta.sender_address
    if address is None or not domain_allowed(address.rpartition("@")[2], policy.allowed_domains):
        return _unknown(UnknownReason.SENDER_NOT_ALLOWED, raw, meta)

    # 3. Exactly one EDI part, at the top or directly under a top-level multipart/mixed.
    if _mime_field_too_complex(raw):
        return _unknown(UnknownReason.HEADER_TOO_COMPLEX, raw, meta)
    if _too_complex(raw, policy):
        return _unknown(UnknownReason.MIME_TOO_COMPLEX, raw, meta)
    try:
        root = _fast_tree(raw) or BytesParser(policy=email_policy.compat32).parsebytes(raw)
    except (email.errors.MessageError, ValueError, LookupError, TypeError, RecursionError):
        return _unknown(UnknownReason.MALFORMED, raw, meta)
    walked = _walk(root, policy)
    if isinstance(walked, UnknownReason):
        return _unknown(walked, raw, meta)
    if not walked:
        return _unknown(UnknownReason.NO_EDI_PART, raw, meta)
    if len(walked) > 1:
        return _unknown(UnknownReason.SEVERAL_EDI_PARTS, raw, meta)
    edi = walked[0]
    if not (edi.depth == 1 or (edi.depth == 2 and edi.under_root_mixed)):
        return _unknown(UnknownReason.EDI_PART_MISPLACED, raw, meta)
    desc_values = _raw_values(edi.part, "Content-Description")
    description = _meta(desc_values, policy.metadata_max_len)
    known = _description(desc_values, policy.test_mode)
    if isinstance(known, UnknownReason):
        return _unknown(known, raw, meta, description=description)
    expected_kind, compressed = known

    # 4. Decode (base64, bounded gunzip) and check the 000 header and its addressee.
    decoded = _decode_base64(edi.part)
    if isinstance(decoded, UnknownReason):
        return _unknown(decoded, raw, meta, description=description)
    if compressed:
        decoded = gunzip_bounded(decoded, policy.max_gunzip_out, policy.max_gunzip_ratio)
        if isinstance(decoded, UnknownReason):
            return _unknown(decoded, raw, meta, description=description)
    # A signing organism's payload is a SignedData around the stream (PROFILE.md §3.1): read
    # through it here; the signature is verified before the return may change anything.
    stream = return_stream(decoded)
    if stream is None:
        return _unknown(UnknownReason.BAD_ENCODING, raw, meta, description=description)
    parsed = parse_return(stream[0])
    header = parsed.header
    if header is None:
        return _unknown(UnknownReason.BAD_HEADER, raw, meta, description=description)
    if header.emitter not in policy.configured_emitters:
        return _unknown(UnknownReason.NOT_FOR_THIS_BOX, raw, meta, description=description)
    if (header.application == "AR") != (expected_kind == "arl"):
        return _unknown(UnknownReason.DESCRIPTION_MISMATCH, raw, meta, description=description)
    if not policy.test_mode and header.flow_type != "R":
        return _unknown(UnknownReason.TEST_IN_PRODUCTION, raw, meta, description=description)

    # 5. ARL, NOEMIE, or damaged (kept as evidence, never matched).
    kind: ClassKind = "damaged" if parsed.kind == "damaged" else expected_kind
    return Classification(
        kind=kind,
        reason=None,
        size=len(raw),
        sha256=hashlib.sha256(raw).hexdigest(),
        digest_scope="message",
        parsed=parsed,
        description=description,
        sender_address=meta.sender_address,
        sender=meta.sender,
        message_id=meta.message_id,
        subject=meta.subject,
        payload=decoded,
    )
