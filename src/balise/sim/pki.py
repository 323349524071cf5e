"""Test/demo PKI named like the IGC-Santé hierarchy (every name says TEST): root, intermediate,
practitioner (CPS) certificates, organism recipient certificates and loopback TLS servers."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "AMC_NAME",
    "AMO_NAME",
    "DEFAULT_DISPLAY_NAME",
    "DEFAULT_RPPS",
    "INTERMEDIATE_NAME",
    "LEAF_LIFETIME",
    "ROOT_NAME",
    "SESAM_VITALE_CA_NAME",
    "Issued",
    "Practitioner",
    "SesamVitalePKI",
    "TestPKI",
    "build_pki",
    "build_sesam_vitale",
]

ROOT_NAME: Final = "TEST AC RACINE IGC-SANTE FORTE"
INTERMEDIATE_NAME: Final = "TEST AC IGC-SANTE ELEMENTAIRE PERSONNES"
DEFAULT_RPPS: Final = "10001234567"
DEFAULT_DISPLAY_NAME: Final = "Dr Jeanne TEST"
AMO_NAME: Final = "TEST CPAM 01422"
AMC_NAME: Final = "TEST AMC 01996"

_ORGANIZATION: Final = "TEST ASIP-SANTE (NON PRODUCTION)"
_ORG_UNIT: Final = "IGC-SANTE TEST BALISE"
_KEY_SIZE: Final = 2048
# CAs outlive every leaf, including back-dated ones (expired-certificate tests).
_CA_BACKDATE: Final = timedelta(days=5 * 365)
_CA_LIFETIME: Final = timedelta(days=10 * 365)
_LEAF_BACKDATE: Final = timedelta(days=1)
LEAF_LIFETIME: Final = timedelta(days=3 * 365)
_MAX_SAME_NAME: Final = 10_000


@dataclass(frozen=True, slots=True)
class Issued:
    """One key pair and its certificate, with the files written for external tools."""

    name: str
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    key_pem: Path  # PKCS#8 PEM, unencrypted
    cert_pem: Path
    cert_der: Path


@dataclass(frozen=True, slots=True)
class Practitioner:
    """What a CPS card holds: a signature (nonRepudiation) and an authentication certificate."""

    rpps: str
    display_name: str
    signature: Issued
    authentication: Issued


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=_KEY_SIZE)


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "cert"


def _ca_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _ORG_UNIT),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(
    *,
    digital_signature: bool = False,
    content_commitment: bool = False,
    key_encipherment: bool = False,
    data_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,
        key_encipherment=key_encipherment,
        data_encipherment=data_encipherment,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write(
    directory: Path, name: str, stem: str, key: rsa.RSAPrivateKey, cert: x509.Certificate
) -> Issued:
    """Write key and certificate under a file stem not used yet, so that a second certificate
    issued with the same name (an expired variant, say) never overwrites the first one's files."""
    directory.mkdir(parents=True, exist_ok=True)
    base = _slug(stem)
    for n in range(1, _MAX_SAME_NAME):
        stem = base if n == 1 else f"{base}-{n}"
        key_pem = directory / f"{stem}.key.pem"
        if not key_pem.exists():
            break
    else:  # pragma: no cover - ten thousand certificates with one name is a bug in the caller
        raise RuntimeError(f"too many certificates named {name!r} in {directory}")
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_pem.chmod(0o600)
    cert_pem = directory / f"{stem}.cert.pem"
    cert_der = directory / f"{stem}.cert.der"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    cert_der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return Issued(
        name=name, key=key, cert=cert, key_pem=key_pem, cert_pem=cert_pem, cert_der=cert_der
    )


def _issue(
    directory: Path,
    name: str,
    subject: x509.Name,
    *,
    issuer: Issued | None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]],
    not_before: datetime,
    not_after: datetime,
    stem: str | None = None,
) -> Issued:
    """Sign a new certificate; ``issuer=None`` makes it self-signed. Files are named after
    ``stem`` (default: the name)."""
    key = _new_key()
    signing_key = key if issuer is None else issuer.key
    issuer_name = subject if issuer is None else issuer.cert.subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        # AKI taken from the issuer's own SKI so path builders (openssl, certvalidator) match them.
        ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    cert = builder.sign(signing_key, hashes.SHA256())
    return _write(directory, name, stem if stem is not None else name, key, cert)


def _leaf_validity(
    now: datetime, not_before: datetime | None, not_after: datetime | None
) -> tuple[datetime, datetime]:
    start = not_before if not_before is not None else now - _LEAF_BACKDATE
    end = not_after if not_after is not None else now + LEAF_LIFETIME
    if end <= start:
        raise ValueError(f"not_after ({end}) must come after not_before ({start})")
    return start, end


def _leaf_constraints() -> tuple[x509.ExtensionType, bool]:
    return x509.BasicConstraints(ca=False, path_length=None), True


def _issue_practitioner(
    directory: Path,
    intermediate: Issued,
    rpps: str,
    display_name: str,
    *,
    now: datetime,
    not_before: datetime | None,
    not_after: datetime | None,
    crl_urls: Sequence[str] = (),
) -> Practitioner:
    if not re.fullmatch(r"\d{11}", rpps):
        raise ValueError(f"an RPPS number has 11 digits, got {rpps!r}")
    start, end = _leaf_validity(now, not_before, not_after)
    # The RPPS is in serialNumber (exactly) and in the CN ("<rpps>/<name>"), as CPS
    # certificates carry the national identifier in both.
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TEST CABINET MEDICAL BALISE"),
            x509.NameAttribute(NameOID.TITLE, "Medecin"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, rpps),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{rpps}/{display_name}"),
        ]
    )
    signature = _issue(
        directory,
        f"practitioner {rpps} signature",
        subject,
        issuer=intermediate,
        extensions=[
            _leaf_constraints(),
            (_key_usage(content_commitment=True), True),
            *_distribution_points(crl_urls),
        ],
        not_before=start,
        not_after=end,
    )
    authentication = _issue(
        directory,
        f"practitioner {rpps} authentication",
        subject,
        issuer=intermediate,
        extensions=[
            _leaf_constraints(),
            (_key_usage(digital_signature=True, key_encipherment=True), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        ],
        not_before=start,
        not_after=end,
    )
    return Practitioner(
        rpps=rpps, display_name=display_name, signature=signature, authentication=authentication
    )


def _distribution_points(crl_urls: Sequence[str]) -> list[tuple[x509.ExtensionType, bool]]:
    """The CRL distribution points extension naming ``crl_urls`` (none when empty)."""
    if not crl_urls:
        return []
    points = [
        x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(url)],
            relative_name=None,
            reasons=None,
            crl_issuer=None,
        )
        for url in crl_urls
    ]
    return [(x509.CRLDistributionPoints(points), False)]


def _issue_organism(
    directory: Path,
    intermediate: Issued,
    name: str,
    *,
    now: datetime,
    not_before: datetime | None,
    not_after: datetime | None,
) -> Issued:
    start, end = _leaf_validity(now, not_before, not_after)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "ORGANISMES TEST"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    return _issue(
        directory,
        name,
        subject,
        issuer=intermediate,
        extensions=[
            _leaf_constraints(),
            (_key_usage(key_encipherment=True, data_encipherment=True), True),
        ],
        not_before=start,
        not_after=end,
    )


@dataclass(frozen=True, slots=True)
class TestPKI:
    """The whole test hierarchy; ``issue_*`` add more certificates under the same CAs."""

    # Not a test class, although pytest would collect it by its name.
    __test__ = False

    directory: Path
    root: Issued
    intermediate: Issued
    practitioner: Practitioner
    amo: Issued
    amc: Issued
    root_pem: Path
    chain_pem: Path
    # The instant the hierarchy was issued at: leaves issued later default to it too (valid from
    # a day before it, for three years), so a test clock set at it sees them all valid.
    now: datetime

    def issue_practitioner(
        self,
        rpps: str,
        display_name: str,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        crl_urls: Sequence[str] = (),
    ) -> Practitioner:
        """Issue a CPS-like pair (signature: nonRepudiation; authentication: digitalSignature)
        for ``rpps`` (11 digits) under the intermediate CA; ``crl_urls`` go into the signature
        certificate's CRL distribution points."""
        return _issue_practitioner(
            self.directory,
            self.intermediate,
            rpps,
            display_name,
            now=self.now,
            not_before=not_before,
            not_after=not_after,
            crl_urls=crl_urls,
        )

    def issue_organism(
        self,
        name: str,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> Issued:
        """Issue an organism (AMO/AMC/OCT) recipient certificate (keyEncipherment) for CMS
        EnvelopedData; its key stays in the test directory so tests can decrypt."""
        return _issue_organism(
            self.directory,
            self.intermediate,
            name,
            now=self.now,
            not_before=not_before,
            not_after=not_after,
        )

    def issue_return_signer(
        self,
        name: str,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> Issued:
        """Issue an organism's return-signing certificate (digitalSignature, nonRepudiation)
        under the intermediate CA; its key stays in the test directory so the OCT simulator
        can sign the returns it answers (PROFILE.md §3.1)."""
        start, end = _leaf_validity(self.now, not_before, not_after)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "ORGANISMES TEST"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        return _issue(
            self.directory,
            name,
            subject,
            issuer=self.intermediate,
            extensions=[
                _leaf_constraints(),
                (_key_usage(digital_signature=True, content_commitment=True), True),
            ],
            not_before=start,
            not_after=end,
        )

    def issue_tls_server(
        self,
        name: str,
        hosts: Sequence[str],
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> Issued:
        """Issue a TLS server certificate signed by the root (trust ``root_pem``); each host is
        a DNS name or an IP address (e.g. ``127.0.0.2``) and goes into subjectAltName. Valid
        from a day before the PKI's ``now`` for three years unless ``not_before`` /
        ``not_after`` say otherwise (a mail server whose certificate ends soon)."""
        if not hosts:
            raise ValueError("a TLS server certificate needs at least one host")
        start, end = _leaf_validity(self.now, not_before, not_after)
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
                x509.NameAttribute(NameOID.COMMON_NAME, hosts[0]),
            ]
        )
        return _issue(
            self.directory,
            name,
            subject,
            issuer=self.root,
            extensions=[
                _leaf_constraints(),
                (_key_usage(digital_signature=True, key_encipherment=True), True),
                (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
                (x509.SubjectAlternativeName(names), False),
            ],
            not_before=start,
            not_after=end,
        )


def build_pki(directory: Path, *, now: datetime | None = None) -> TestPKI:
    """Build the root, the intermediate, one practitioner (``DEFAULT_RPPS``) and two organisms
    under ``directory``; RSA-2048, SHA-256. Validity is counted from ``now`` (default: the
    system clock): CAs from five years before it for ten years, leaves from a day before it for
    three years. Tests pass their test clock."""
    directory.mkdir(parents=True, exist_ok=True)
    now = _now() if now is None else now
    ca_start, ca_end = now - _CA_BACKDATE, now + _CA_LIFETIME
    root = _issue(
        directory,
        ROOT_NAME,
        _ca_name(ROOT_NAME),
        issuer=None,
        extensions=[
            (x509.BasicConstraints(ca=True, path_length=1), True),
            (_key_usage(key_cert_sign=True, crl_sign=True), True),
        ],
        not_before=ca_start,
        not_after=ca_end,
        stem="root",
    )
    intermediate = _issue(
        directory,
        INTERMEDIATE_NAME,
        _ca_name(INTERMEDIATE_NAME),
        issuer=root,
        extensions=[
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (_key_usage(key_cert_sign=True, crl_sign=True), True),
        ],
        not_before=ca_start,
        not_after=ca_end,
        stem="intermediate",
    )
    chain_pem = directory / "chain.pem"
    chain_pem.write_bytes(
        intermediate.cert.public_bytes(serialization.Encoding.PEM)
        + root.cert.public_bytes(serialization.Encoding.PEM)
    )
    return TestPKI(
        directory=directory,
        root=root,
        intermediate=intermediate,
        practitioner=_issue_practitioner(
            directory,
            intermediate,
            DEFAULT_RPPS,
            DEFAULT_DISPLAY_NAME,
            now=now,
            not_before=None,
            not_after=None,
        ),
        amo=_issue_organism(
            directory, intermediate, AMO_NAME, now=now, not_before=None, not_after=None
        ),
        amc=_issue_organism(
            directory, intermediate, AMC_NAME, now=now, not_before=None, not_after=None
        ),
        root_pem=root.cert_pem,
        chain_pem=chain_pem,
        now=now,
    )


SESAM_VITALE_CA_NAME: Final = "TEST AC-SESAM-VITALE-TEST-2034"


@dataclass(frozen=True, slots=True)
class SesamVitalePKI:
    """A SESAM-Vitale-like CA (every name says TEST) issuing the organisms' encryption
    certificates that the public directory publishes; ``ca.cert_pem`` is what a box configures as
    ``sesam_vitale_roots``."""

    __test__ = False

    directory: Path
    ca: Issued
    now: datetime

    def issue_organism(
        self,
        cn: str,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        encipherment: bool = True,
    ) -> Issued:
        """An organism certificate for the directory entry ``cn`` (e.g. ``01422@422.01.rss.fr``):
        keyEncipherment and dataEncipherment (``encipherment=False``: digitalSignature only, a
        certificate no lot may be encrypted to); the key stays here so tests can decrypt."""
        start, end = _leaf_validity(self.now, not_before, not_after)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TEST GIE SESAM-VITALE"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "ORGANISMES TEST"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )
        usage = (
            _key_usage(key_encipherment=True, data_encipherment=True)
            if encipherment
            else _key_usage(digital_signature=True)
        )
        return _issue(
            self.directory,
            cn,
            subject,
            issuer=self.ca,
            extensions=[_leaf_constraints(), (usage, True)],
            not_before=start,
            not_after=end,
            stem=f"sv-{cn}",
        )


def build_sesam_vitale(directory: Path, *, now: datetime | None = None) -> SesamVitalePKI:
    """The SESAM-Vitale-like CA under ``directory`` (valid from five years before ``now`` for ten
    years, like the IGC-Santé test CAs)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = _now() if now is None else now
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TEST GIE SESAM-VITALE"),
            x509.NameAttribute(NameOID.COMMON_NAME, SESAM_VITALE_CA_NAME),
        ]
    )
    ca = _issue(
        directory,
        SESAM_VITALE_CA_NAME,
        name,
        issuer=None,
        extensions=[
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (_key_usage(key_cert_sign=True, crl_sign=True), True),
        ],
        not_before=now - _CA_BACKDATE,
        not_after=now + _CA_LIFETIME,
        stem="sesam-vitale-ca",
    )
    return SesamVitalePKI(directory=directory, ca=ca, now=now)
