"""Certificate loading shared by the CMS modules: one DER certificate, parsed by asn1crypto and
by cryptography."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from balise.cms.errors import CmsError, CmsErrorCode


@dataclass(frozen=True, slots=True)
class RsaCertificate:
    """A certificate whose subject key is RSA, parsed once for both libraries."""

    der: bytes
    asn1: Any  # asn1crypto.x509.Certificate (the library ships no type information)
    crypto: x509.Certificate
    public_key: rsa.RSAPublicKey

    def issuer_and_serial(self) -> dict[str, Any]:
        """The value of an asn1crypto IssuerAndSerialNumber naming this certificate."""
        # A fresh, unparsed copy of the issuer's exact bytes: asn1crypto writes it out as is
        # instead of walking the parsed name for every lot of a batch.
        issuer = asn1_x509.Name.load(self.asn1["tbs_certificate"]["issuer"].dump())
        return {"issuer": issuer, "serial_number": self.asn1.serial_number}

    def matches_issuer_and_serial(self, ias: Any) -> bool:
        """True when ``ias`` (asn1crypto IssuerAndSerialNumber) names this certificate."""
        same_issuer: bool = ias["issuer"] == self.asn1.issuer
        same_serial: bool = ias["serial_number"].native == self.asn1.serial_number
        return same_issuer and same_serial

    def matches_key_identifier(self, key_id: bytes) -> bool:
        """True when ``key_id`` is this certificate's subject key identifier."""
        own: bytes | None = self.asn1.key_identifier
        return own is not None and own == key_id


def load_rsa_certificate(der: bytes, role_fr: str, role_en: str) -> RsaCertificate:
    """Parse a DER certificate and insist on an RSA key (what CPS cards and organisms use)."""
    return _load(bytes(der), role_fr, role_en)


# A batch meets the same few certificates (card, intermediate, organisms) for every lot: parsing
# each once per process keeps CMS work per lot small. Failures are never cached.
@functools.lru_cache(maxsize=128)
def _load(der: bytes, role_fr: str, role_en: str) -> RsaCertificate:
    try:
        asn1 = asn1_x509.Certificate.load(der, strict=True)
        # Force a full parse now, so that a broken certificate fails here and not mid-build.
        _ = asn1.issuer.native
        # RFC 5280 §4.1.2.2; cryptography only warns today (an error under -W error) and
        # will refuse such certificates later: refuse them first, the same way every time.
        if asn1.serial_number <= 0:
            raise ValueError("serial number not positive")
        crypto = x509.load_der_x509_certificate(der)
        public_key = crypto.public_key()
    except (ValueError, TypeError, x509.InvalidVersion) as exc:
        raise CmsError(
            CmsErrorCode.BAD_CERTIFICATE,
            f"Certificat {role_fr} illisible.",
            f"Unreadable {role_en} certificate.",
        ) from exc
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise CmsError(
            CmsErrorCode.BAD_CERTIFICATE,
            f"Le certificat {role_fr} n'a pas de clé RSA.",
            f"The {role_en} certificate has no RSA key.",
        )
    return RsaCertificate(der=der, asn1=asn1, crypto=crypto, public_key=public_key)
