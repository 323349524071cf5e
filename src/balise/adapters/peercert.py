"""The certificate a TLS peer presented, read from the ssl object once the handshake is verified."""

from __future__ import annotations

import ssl

from cryptography import x509

from balise.domain.servercert import ServerCertificate

SUBJECT_MAX = 200


def presented(sslobj: ssl.SSLObject | ssl.SSLSocket | None) -> ServerCertificate | None:
    """The leaf certificate of a verified connection, or None when there is none or it cannot be
    parsed (the watch is a courtesy: it never breaks a session)."""
    if sslobj is None:
        return None
    try:
        der = sslobj.getpeercert(binary_form=True)
    except (ValueError, OSError):  # not connected, or the handshake is not done
        return None
    if not der:
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
        subject = cert.subject.rfc4514_string()[:SUBJECT_MAX]
        not_after = cert.not_valid_after_utc
    except ValueError:
        return None
    return ServerCertificate(der, subject, not_after)
