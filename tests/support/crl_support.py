"""Revocation lists for the tests: CRLs built with cryptography from the test PKI's CAs (dated
from the test clock), a loopback HTTP server (http.server in a thread on 127.0.0.1) that serves
them, and the openssl command line as the independent checker of what the box kept."""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from balise.sim.pki import Issued

__all__ = ["CrlServer", "crl_server", "make_crl", "openssl_crl_verify", "openssl_verify_crl_check"]


def make_crl(
    issuer: Issued,
    *,
    this_update: datetime,
    next_update: datetime,
    revoked: Sequence[x509.Certificate] = (),
    number: int = 1,
    delta_of: int | None = None,
    freshest: str | None = None,
    signer: Issued | None = None,
) -> bytes:
    """A DER CRL in ``issuer``'s name, signed by ``signer`` (default: the issuer itself; another
    key with the same name makes a forgery). ``delta_of``: a delta CRL over base CRL number
    ``delta_of``; ``freshest``: the URL of the delta CRL a full CRL announces."""
    key_source = signer if signer is not None else issuer
    ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    if delta_of is not None:
        builder = builder.add_extension(x509.DeltaCRLIndicator(delta_of), critical=True)
    if freshest is not None:
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(freshest)],
            relative_name=None,
            reasons=None,
            crl_issuer=None,
        )
        builder = builder.add_extension(x509.FreshestCRL([point]), critical=False)
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(this_update - timedelta(hours=1))
            .build()
        )
    return builder.sign(key_source.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


class CrlServer:
    """A loopback HTTP server answering GET with what ``files`` holds (404 otherwise); ``hits``
    counts the requests per path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/pkix-crl")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


@pytest.fixture
def crl_server() -> Iterator[CrlServer]:
    server = CrlServer()
    try:
        yield server
    finally:
        server.close()


def _pem_crl(der: bytes, where: Path) -> Path:
    crl = x509.load_der_x509_crl(der)
    where.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return where


def openssl_crl_verify(der: bytes, ca_file: Path, work: Path) -> subprocess.CompletedProcess[str]:
    """``openssl crl -verify``: openssl's own verdict on the CRL's signature by a CA of
    ``ca_file`` ("verify OK" on stderr, else "verify failure")."""
    path = _pem_crl(der, work / "checked.crl.pem")
    return subprocess.run(
        ["openssl", "crl", "-in", str(path), "-noout", "-CAfile", str(ca_file)],
        capture_output=True,
        text=True,
        check=False,
    )


def openssl_verify_crl_check(
    cert_pem: Path, chain: Path, crl_der: bytes, work: Path, *, at: datetime
) -> subprocess.CompletedProcess[str]:
    """``openssl verify -crl_check`` of ``cert_pem`` against ``chain`` and the CRL, at ``at``
    (the test clock)."""
    path = _pem_crl(crl_der, work / "verify.crl.pem")
    return subprocess.run(
        [
            "openssl", "verify", "-crl_check", "-CAfile", str(chain), "-CRLfile", str(path),
            "-attime", str(int(at.timestamp())), str(cert_pem),
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
