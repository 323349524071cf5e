"""Helpers for signing tests: a CardIdentity from the test PKI and openssl checks of a signed lot."""

from __future__ import annotations

import base64
import gzip
import subprocess
from pathlib import Path

from balise.domain.card import CardIdentity
from balise.sim.pki import Practitioner, TestPKI


def identity_of(pki: TestPKI, practitioner: Practitioner | None = None) -> CardIdentity:
    who = practitioner or pki.practitioner
    cert = who.signature.cert
    return CardIdentity(
        holder_name=who.display_name,
        rpps=who.rpps,
        signature_cert_der=who.signature.cert_der.read_bytes(),
        extra_certs_der=(pki.intermediate.cert_der.read_bytes(),),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_id=b"\x02",
    )


def openssl_open_lot(envelope: bytes, pki: TestPKI, workdir: Path, recipient: str = "amo") -> bytes:
    """The PROFILE.md §2 independent check: decrypt with openssl, gunzip, verify with openssl."""
    party = pki.amo if recipient == "amo" else pki.amc
    p7m = workdir / "part.p7m"
    p7m.write_bytes(envelope)
    entity = subprocess.run(
        [
            "openssl",
            "cms",
            "-decrypt",
            "-inform",
            "DER",
            "-in",
            str(p7m),
            "-recip",
            str(party.cert_pem),
            "-inkey",
            str(party.key_pem),
        ],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    body = entity.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]
    signed = workdir / "signed.der"
    signed.write_bytes(gzip.decompress(base64.b64decode(body)))
    return subprocess.run(
        [
            "openssl",
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-in",
            str(signed),
            "-CAfile",
            str(pki.root_pem),
            "-purpose",
            "any",
        ],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
