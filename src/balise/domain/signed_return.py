"""Signed returns (profile v0 extension, PROFILE.md §3.1): the decoded payload of a return may be
a DER CMS ``ContentInfo(SignedData)`` whose attached id-data content is the entity stream.

Pure and bounded: this module only FINDS the content (a walk of a few definite-length DER
headers, never a general ASN.1 parser) so that the classifier can read the ``000`` header; it
proves nothing. The signature is verified later, against the organism's return-signing
certificate, before the return may change anything (services/tracking)."""

from __future__ import annotations

from typing import Final

_SEQUENCE: Final = 0x30
_SET: Final = 0x31
_OID: Final = 0x06
_INTEGER: Final = 0x02
_OCTET_STRING: Final = 0x04
_CONTEXT_0: Final = 0xA0
# id-signedData 1.2.840.113549.1.7.2 and id-data 1.2.840.113549.1.7.1, DER-encoded values.
_ID_SIGNED_DATA: Final = bytes.fromhex("2a864886f70d010702")
_ID_DATA: Final = bytes.fromhex("2a864886f70d010701")


def _tlv(data: bytes, at: int, end: int) -> tuple[int, int, int] | None:
    """(tag, start of value, end of value) of the DER element at ``at``; None if malformed or
    running past ``end`` (definite lengths only, at most 4 length bytes)."""
    if at + 2 > end:
        return None
    tag = data[at]
    first = data[at + 1]
    pos = at + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            return None  # indefinite length (BER) or absurd
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        return None
    return tag, pos, pos + length


def looks_signed(payload: bytes) -> bool:
    """An entity stream begins with ASCII ``000`` (0x30 0x30 0x30); a SignedData with a DER
    SEQUENCE (0x30) whose length, always over 127 bytes, takes the long form (0x81-0x84)."""
    return len(payload) > 1 and payload[0] == _SEQUENCE and 0x81 <= payload[1] <= 0x84


def signed_content(payload: bytes) -> bytes | None:
    """The attached id-data content of a DER ``ContentInfo(SignedData)``, or None when the
    payload is not one (no verification here)."""
    end = len(payload)
    info = _tlv(payload, 0, end)
    if info is None or info[0] != _SEQUENCE or info[2] != end:
        return None
    oid = _tlv(payload, info[1], info[2])
    if oid is None or oid[0] != _OID or payload[oid[1] : oid[2]] != _ID_SIGNED_DATA:
        return None
    explicit = _tlv(payload, oid[2], info[2])
    if explicit is None or explicit[0] != _CONTEXT_0:
        return None
    signed_data = _tlv(payload, explicit[1], explicit[2])
    if signed_data is None or signed_data[0] != _SEQUENCE:
        return None
    version = _tlv(payload, signed_data[1], signed_data[2])
    if version is None or version[0] != _INTEGER:
        return None
    digests = _tlv(payload, version[2], signed_data[2])
    if digests is None or digests[0] != _SET:
        return None
    encap = _tlv(payload, digests[2], signed_data[2])
    if encap is None or encap[0] != _SEQUENCE:
        return None
    content_type = _tlv(payload, encap[1], encap[2])
    if (
        content_type is None
        or content_type[0] != _OID
        or payload[content_type[1] : content_type[2]] != _ID_DATA
    ):
        return None
    wrapper = _tlv(payload, content_type[2], encap[2])
    if wrapper is None or wrapper[0] != _CONTEXT_0:
        return None
    octets = _tlv(payload, wrapper[1], wrapper[2])
    if octets is None or octets[0] != _OCTET_STRING:
        return None  # detached, or a constructed (BER) OCTET STRING: not in the profile
    return payload[octets[1] : octets[2]]


def return_stream(payload: bytes) -> tuple[bytes, bool] | None:
    """The entity stream of a return payload and whether it came signed; None for a payload
    that looks signed but is no SignedData of the profile."""
    if not looks_signed(payload):
        return payload, False
    content = signed_content(payload)
    return None if content is None else (content, True)
