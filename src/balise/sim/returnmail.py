"""Mails as they land in a practitioner's BAL, for the OCT simulator, the demo and the tests: return
mails built the way organisms send them (PROFILE.md §3) and hostile ones (spam, phishing)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from balise.cms import sign_data

__all__ = [
    "SAMPLE_BAL_ADDRESS",
    "SAMPLE_DATE",
    "SAMPLE_ORGANISM_ADDRESS",
    "edi_part",
    "envelope",
    "phishing_mail",
    "return_mail",
    "sign_return",
    "spam_mail",
]

# The golden samples' values (PROFILE.md §3): the defaults reproduce those mails byte for byte.
SAMPLE_ORGANISM_ADDRESS: Final = "01422@422.01.rss.fr"
SAMPLE_BAL_ADDRESS: Final = "xyz999212@bal.example.net"
SAMPLE_DATE: Final = "Mon, 23 Nov 2026 10:00:00 +0100"
PHISHING_SENDER: Final = '"Assurance Maladie" <remboursement@ameli-rss.fr.evil.com>'


def edi_part(
    payload: bytes,
    description: str = "IRISTEST/ARL/Z",
    *,
    gzip_mtime: int = 0,
    compressed_body: bytes | None = None,
) -> MIMEApplication:
    """An ``application/EDI-consent`` part (base64), gzip when the description ends in ``/Z``."""
    if compressed_body is not None:
        body = compressed_body
    elif description.upper().endswith("/Z"):
        body = gzip.compress(payload, mtime=gzip_mtime)
    else:
        body = payload
    part = MIMEApplication(body, "EDI-consent")
    part["Content-Description"] = description
    return part


def sign_return(
    payload: bytes, key_pem: Path, cert_pem: Path, *, signing_time: datetime | None = None
) -> bytes:
    """``payload`` (an entity stream) wrapped in a DER CMS SignedData signed with an organism's
    return-signing key and certificate (PROFILE.md §3.1): what a signing organism sends."""
    key = serialization.load_pem_private_key(key_pem.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("an RSA key is expected")
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    return sign_data(
        payload,
        cert.public_bytes(serialization.Encoding.DER),
        lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256()),
        signing_time=signing_time or datetime.now(UTC),
    )


def envelope(
    top: MIMEMultipart | MIMEApplication | MIMEText,
    *,
    sender: str,
    subject: str,
    message_id: str,
    to: str = SAMPLE_BAL_ADDRESS,
    date: str = SAMPLE_DATE,
) -> bytes:
    """``top`` with From, To, Subject, Date and Message-ID, as bytes."""
    top["From"] = sender
    top["To"] = to
    top["Subject"] = subject
    top["Date"] = date
    top["Message-ID"] = message_id
    return top.as_bytes()


def return_mail(
    payload: bytes,
    description: str = "IRISTEST/ARL/Z",
    *,
    sender: str = SAMPLE_ORGANISM_ADDRESS,
    to: str = SAMPLE_BAL_ADDRESS,
    subject: str = "IRIS",
    message_id: str = "<test@422.01.rss.fr>",
    date: str = SAMPLE_DATE,
    boundary: str | None = None,
    gzip_mtime: int = 0,
    bare: bool = False,
) -> bytes:
    """A return mail as an organism sends it (the golden samples are built exactly this way):
    a top-level multipart/mixed with the EDI part as its single child, or the bare part."""
    part = edi_part(payload, description, gzip_mtime=gzip_mtime)
    if bare:
        return envelope(
            part, sender=sender, subject=subject, message_id=message_id, to=to, date=date
        )
    top = MIMEMultipart("mixed", boundary=boundary)
    top.attach(part)
    return envelope(top, sender=sender, subject=subject, message_id=message_id, to=to, date=date)


def spam_mail(to: str = SAMPLE_BAL_ADDRESS, *, date: str = SAMPLE_DATE) -> bytes:
    """Plain-text spam from a consumer webmail address (not on the organism allow-list)."""
    body = MIMEText("Gagnez un iPhone ! Cliquez ici : http://promo.example/win\n", "plain", "utf-8")
    return envelope(
        body,
        sender='"Promo" <deals4you@gmail.com>',
        subject="Vous avez gagné",
        message_id="<s@g>",
        to=to,
        date=date,
    )


def phishing_mail(
    sender: str = PHISHING_SENDER, *, to: str = SAMPLE_BAL_ADDRESS, date: str = SAMPLE_DATE
) -> bytes:
    """HTML with links, made to look like an organism."""
    top = MIMEMultipart("alternative")
    top.attach(MIMEText("Votre remboursement est en attente : http://evil.example/ameli\n"))
    html = (
        '<html><body><p>Remboursement en attente</p><a href="http://evil.example/ameli">'
        'Cliquez</a><img src="http://evil.example/pixel.gif"></body></html>'
    )
    top.attach(MIMEText(html, "html"))
    return envelope(
        top, sender=sender, subject="Remboursement", message_id="<p@evil>", to=to, date=date
    )
