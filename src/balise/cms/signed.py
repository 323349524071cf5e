"""CMS SignedData (RFC 5652) of PROFILE.md §2 step 1, with the signature made elsewhere (the card).

Two phases so that the card's signature can overlap other work: ``prepare_signature`` gives the
bytes to sign (DER of the signed attributes as a SET), ``PreparedSignature.finish`` embeds the
signature.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from balise.cms._certs import RsaCertificate, load_rsa_certificate
from balise.cms.errors import CmsError, CmsErrorCode

SignatureAlgorithm = Literal["rsassa_pkcs1v15", "rsassa_pss"]

PSS_SALT_LENGTH: Final = 32
# A lot is at most 8 MiB (PROFILE.md §1); the SignedData adds certificates and a few hundred bytes.
DEFAULT_MAX_SIGNED_DATA: Final = 16 * 1024 * 1024
# IGC-Santé chains are root -> intermediate -> end entity; 8 leaves room and bounds the walk.
MAX_CHAIN_DEPTH: Final = 8

_HASHES: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass(frozen=True, slots=True)
class VerifiedContent:
    """What a verified SignedData vouches for."""

    content: bytes
    signer_cert_der: bytes
    signing_time: datetime | None
    algorithm: SignatureAlgorithm


@dataclass(frozen=True, slots=True)
class PreparedSignature:
    """A SignedData waiting for its signature.

    ``to_be_signed`` is the DER of the signed attributes as a SET (first byte 0x31): the card signs
    it with a mechanism that hashes it itself (PKCS#11 ``SHA256_RSA_PKCS`` or
    ``SHA256_RSA_PKCS_PSS``).
    """

    to_be_signed: bytes
    algorithm: SignatureAlgorithm
    content: bytes = field(repr=False)
    signer_cert_der: bytes = field(repr=False)
    extra_certs_der: tuple[bytes, ...] = field(repr=False)

    def finish(self, signature: bytes) -> bytes:
        """DER ``ContentInfo(SignedData)`` with attached content and ``signature`` embedded.

        The signature is checked against the signer certificate first: a card that signed with
        another key, or returned garbage, must not produce a lot that the organism rejects later.
        """
        signer = load_rsa_certificate(self.signer_cert_der, "du signataire", "signer")
        _check_signature(signer, self.to_be_signed, signature, self.algorithm)
        signed_attrs = cms.CMSAttributes.load(self.to_be_signed)
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    name="issuer_and_serial_number",
                    value=cms.IssuerAndSerialNumber(signer.issuer_and_serial()),
                ),
                "digest_algorithm": {"algorithm": "sha256"},
                "signed_attrs": signed_attrs,
                "signature_algorithm": _signature_algorithm_asn1(self.algorithm),
                "signature": signature,
            }
        )
        # Embed freshly loaded (unparsed) copies: asn1crypto then writes their bytes as they are
        # instead of walking a parsed tree for every lot of a batch.
        certificates = [
            cms.CertificateChoices(name="certificate", value=asn1_x509.Certificate.load(signer.der))
        ]
        for der in self.extra_certs_der:
            extra = load_rsa_certificate(der, "intermédiaire", "intermediate")
            certificates.append(
                cms.CertificateChoices(
                    name="certificate", value=asn1_x509.Certificate.load(extra.der)
                )
            )
        signed_data = cms.SignedData(
            {
                # v1: issuerAndSerialNumber sid, id-data content, no attribute certificates.
                "version": "v1",
                "digest_algorithms": [{"algorithm": "sha256"}],
                "encap_content_info": {"content_type": "data", "content": self.content},
                "certificates": certificates,
                "signer_infos": [signer_info],
            }
        )
        out: bytes = cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
        return out


def prepare_signature(
    content: bytes,
    signer_cert_der: bytes,
    *,
    signing_time: datetime,
    extra_certs_der: Sequence[bytes] = (),
    algorithm: SignatureAlgorithm = "rsassa_pkcs1v15",
) -> PreparedSignature:
    """Build the signed attributes (contentType id-data, messageDigest SHA-256, signingTime)."""
    if algorithm not in ("rsassa_pkcs1v15", "rsassa_pss"):
        raise CmsError(
            CmsErrorCode.UNSUPPORTED,
            f"Algorithme de signature non pris en charge : {algorithm}.",
            f"Unsupported signature algorithm: {algorithm}.",
        )
    if signing_time.tzinfo is None:
        # A naive time would be read as local time by some and UTC by others.
        raise CmsError(
            CmsErrorCode.UNSUPPORTED,
            "L'heure de signature doit porter un fuseau horaire.",
            "The signing time must be timezone-aware.",
        )
    signer = load_rsa_certificate(signer_cert_der, "du signataire", "signer")
    extras: list[bytes] = []
    for der in extra_certs_der:
        load_rsa_certificate(der, "intermédiaire", "intermediate")
        if der != signer_cert_der and der not in extras:
            extras.append(der)
    del signer  # parsed only to fail early on a bad certificate
    when = signing_time.astimezone(UTC).replace(microsecond=0)
    # RFC 5652 §11.3: UTCTime for 1950-2049, GeneralizedTime otherwise.
    time_value = (
        {"utc_time": core.UTCTime(when)}
        if 1950 <= when.year <= 2049
        else {"general_time": core.GeneralizedTime(when)}
    )
    attrs = cms.CMSAttributes(
        [
            {"type": "content_type", "values": ["data"]},
            {"type": "message_digest", "values": [hashlib.sha256(content).digest()]},
            {"type": "signing_time", "values": [cms.Time(time_value)]},
        ]
    )
    # asn1crypto sorts a SET OF on dump, as DER requires: verifiers re-encode the attributes and
    # an unsorted SET would no longer match the signature.
    to_be_signed: bytes = attrs.dump(force=True)
    return PreparedSignature(
        to_be_signed=to_be_signed,
        algorithm=algorithm,
        content=bytes(content),
        signer_cert_der=bytes(signer_cert_der),
        extra_certs_der=tuple(extras),
    )


def sign_data(
    content: bytes,
    signer_cert_der: bytes,
    sign: Callable[[bytes], bytes],
    *,
    signing_time: datetime,
    extra_certs_der: Sequence[bytes] = (),
    algorithm: SignatureAlgorithm = "rsassa_pkcs1v15",
) -> bytes:
    """One-shot SignedData: ``sign`` receives ``to_be_signed`` and returns the raw RSA signature."""
    prepared = prepare_signature(
        content,
        signer_cert_der,
        signing_time=signing_time,
        extra_certs_der=extra_certs_der,
        algorithm=algorithm,
    )
    return prepared.finish(sign(prepared.to_be_signed))


def verify_signed_data(
    der: bytes,
    trusted_roots_der: Sequence[bytes],
    *,
    at: datetime | None = None,
    max_size: int = DEFAULT_MAX_SIGNED_DATA,
) -> VerifiedContent:
    """Verify an attached SignedData with one signer and return its content.

    Checks: structure, contentType attribute, messageDigest, the signature (PKCS#1 v1.5 or PSS),
    and that the signer certificate chains to one of ``trusted_roots_der`` through the embedded
    certificates, every certificate on the path valid at ``at`` (default now).
    """
    if len(der) > max_size:
        raise CmsError(
            CmsErrorCode.TOO_LARGE,
            f"Données signées trop volumineuses ({len(der)} octets).",
            f"Signed data too large ({len(der)} bytes).",
        )
    parsed = _parse_signed_data(der)
    digest_name = parsed.digest_algorithm
    actual = hashlib.new(digest_name, parsed.content).digest()
    if not hmac.compare_digest(actual, parsed.message_digest):
        raise CmsError(
            CmsErrorCode.DIGEST_MISMATCH,
            "L'empreinte du contenu ne correspond pas : contenu modifié.",
            "Content digest mismatch: the content was altered.",
        )
    signer = parsed.signer
    _check_signature(
        signer,
        parsed.to_be_signed,
        parsed.signature,
        parsed.algorithm,
        digest_name=digest_name,
        pss_params=parsed.pss_params,
    )
    when = at if at is not None else datetime.now(UTC)
    _check_chain(signer, parsed.embedded, trusted_roots_der, when)
    return VerifiedContent(
        content=parsed.content,
        signer_cert_der=signer.der,
        signing_time=parsed.signing_time,
        algorithm=parsed.algorithm,
    )


# --- internals ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PssParams:
    hash_name: str
    mgf_hash_name: str
    salt_length: int


@dataclass(frozen=True, slots=True)
class _ParsedSignedData:
    content: bytes
    signer: RsaCertificate
    embedded: tuple[x509.Certificate, ...]
    digest_algorithm: str
    message_digest: bytes
    signing_time: datetime | None
    to_be_signed: bytes
    signature: bytes
    algorithm: SignatureAlgorithm
    pss_params: _PssParams | None


def _malformed(what_fr: str, what_en: str) -> CmsError:
    return CmsError(
        CmsErrorCode.MALFORMED,
        f"Données signées mal formées : {what_fr}.",
        f"Malformed signed data: {what_en}.",
    )


def _unsupported(what_fr: str, what_en: str) -> CmsError:
    return CmsError(
        CmsErrorCode.UNSUPPORTED,
        f"Données signées hors profil : {what_fr}.",
        f"Signed data outside the profile: {what_en}.",
    )


def _signature_algorithm_asn1(algorithm: SignatureAlgorithm) -> Any:
    if algorithm == "rsassa_pss":
        params = algos.RSASSAPSSParams(
            {
                "hash_algorithm": {"algorithm": "sha256"},
                "mask_gen_algorithm": {
                    "algorithm": "mgf1",
                    "parameters": {"algorithm": "sha256"},
                },
                "salt_length": PSS_SALT_LENGTH,
            }
        )
        return algos.SignedDigestAlgorithm({"algorithm": "rsassa_pss", "parameters": params})
    # RFC 4055 §5: sha256WithRSAEncryption carries NULL parameters.
    return algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa", "parameters": core.Null()})


def _check_signature(
    signer: RsaCertificate,
    to_be_signed: bytes,
    signature: bytes,
    algorithm: SignatureAlgorithm,
    *,
    digest_name: str = "sha256",
    pss_params: _PssParams | None = None,
) -> None:
    modulus_bytes = (signer.public_key.key_size + 7) // 8
    pad: padding.AsymmetricPadding
    if algorithm == "rsassa_pss":
        p = pss_params or _PssParams("sha256", "sha256", PSS_SALT_LENGTH)
        hash_alg = _HASHES[p.hash_name]()
        pad = padding.PSS(mgf=padding.MGF1(_HASHES[p.mgf_hash_name]()), salt_length=p.salt_length)
    else:
        hash_alg = _HASHES[digest_name]()
        pad = padding.PKCS1v15()
    try:
        if len(signature) != modulus_bytes:
            raise InvalidSignature
        signer.public_key.verify(signature, to_be_signed, pad, hash_alg)
    except (InvalidSignature, ValueError) as exc:
        raise CmsError(
            CmsErrorCode.BAD_SIGNATURE,
            "La signature ne correspond pas au certificat du signataire.",
            "The signature does not match the signer certificate.",
        ) from exc


def _parse_signed_data(der: bytes) -> _ParsedSignedData:
    # asn1crypto parses lazily: any access may raise, so the whole walk sits under one guard.
    try:
        return _walk_signed_data(der)
    except CmsError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise _malformed("structure ASN.1 invalide", "invalid ASN.1 structure") from exc


def _walk_signed_data(der: bytes) -> _ParsedSignedData:
    info = cms.ContentInfo.load(der, strict=True)
    if info["content_type"].native != "signed_data":
        raise _malformed("ce n'est pas un SignedData", "not a SignedData")
    sd = info["content"]
    eci = sd["encap_content_info"]
    if eci["content_type"].native != "data":
        raise _unsupported("type de contenu autre que id-data", "content type other than id-data")
    if eci["content"].native is None:
        raise _unsupported("contenu détaché", "detached content")
    content = bytes(eci["content"].native)
    signer_infos = sd["signer_infos"]
    if len(signer_infos) != 1:
        raise _unsupported("un seul signataire attendu", "exactly one signer expected")
    si = signer_infos[0]

    embedded_rsa: list[RsaCertificate] = []
    embedded: list[x509.Certificate] = []
    for choice in sd["certificates"] if sd["certificates"].native is not None else []:
        if choice.name != "certificate":
            continue  # attribute or other certificates play no part in the path
        cert_der = choice.chosen.dump()
        try:
            rsa_cert = load_rsa_certificate(cert_der, "embarqué", "embedded")
        except CmsError:
            # A non-RSA or odd embedded certificate cannot be the signer; it may still be absent
            # from the path, so it is simply not used.
            continue
        embedded_rsa.append(rsa_cert)
        embedded.append(rsa_cert.crypto)

    sid = si["sid"]
    if sid.name == "issuer_and_serial_number":
        candidates = [c for c in embedded_rsa if c.matches_issuer_and_serial(sid.chosen)]
    else:
        key_id = bytes(sid.chosen.native)
        candidates = [c for c in embedded_rsa if c.matches_key_identifier(key_id)]
    if not candidates:
        raise _malformed("certificat du signataire absent", "signer certificate missing")
    signer = candidates[0]

    digest_name = si["digest_algorithm"]["algorithm"].native
    if digest_name not in _HASHES:
        raise _unsupported(f"empreinte {digest_name}", f"digest {digest_name}")

    signed_attrs = si["signed_attrs"]
    if signed_attrs.native is None or len(signed_attrs) == 0:
        raise _unsupported("attributs signés absents", "no signed attributes")
    seen: dict[str, Any] = {}
    for attr in signed_attrs:
        name = attr["type"].native
        if name in seen:
            raise _malformed(f"attribut {name} répété", f"attribute {name} repeated")
        values = attr["values"]
        if len(values) != 1:
            raise _malformed(f"attribut {name} à plusieurs valeurs", f"multi-valued {name}")
        seen[name] = values[0]
    if "content_type" not in seen or "message_digest" not in seen:
        raise _malformed(
            "contentType ou messageDigest absent", "contentType or messageDigest missing"
        )
    if seen["content_type"].native != eci["content_type"].native:
        raise _malformed("attribut contentType incohérent", "contentType attribute mismatch")
    message_digest = bytes(seen["message_digest"].native)
    signing_time: datetime | None = None
    if "signing_time" in seen:
        signing_time = seen["signing_time"].native

    # The signature covers the attributes re-tagged as a SET (RFC 5652 §5.4), i.e. [0] -> 0x31.
    attrs_der: bytes = signed_attrs.dump()
    to_be_signed = b"\x31" + attrs_der[1:]

    sig_alg = si["signature_algorithm"]
    algo_name = sig_alg.signature_algo
    pss_params: _PssParams | None = None
    algorithm: SignatureAlgorithm
    if algo_name == "rsassa_pkcs1v15":
        algorithm = "rsassa_pkcs1v15"
        # sha256WithRSAEncryption names its hash; plain rsaEncryption leaves it to digestAlgorithm.
        if sig_alg["algorithm"].native != "rsassa_pkcs1v15" and sig_alg.hash_algo != digest_name:
            raise _malformed("empreintes incohérentes", "digest algorithms disagree")
    elif algo_name == "rsassa_pss":
        algorithm = "rsassa_pss"
        params = sig_alg["parameters"]
        hash_name = params["hash_algorithm"]["algorithm"].native
        mgf = params["mask_gen_algorithm"]
        if mgf["algorithm"].native != "mgf1":
            raise _unsupported("PSS sans MGF1", "PSS without MGF1")
        mgf_hash = mgf["parameters"]["algorithm"].native
        if hash_name not in _HASHES or mgf_hash not in _HASHES:
            raise _unsupported(
                f"PSS avec {hash_name}/{mgf_hash}", f"PSS with {hash_name}/{mgf_hash}"
            )
        salt_length = int(params["salt_length"].native)
        if not 0 <= salt_length <= 512:
            raise _malformed("longueur de sel PSS invalide", "invalid PSS salt length")
        pss_params = _PssParams(hash_name, mgf_hash, salt_length)
    else:
        raise _unsupported(f"signature {algo_name}", f"signature {algo_name}")

    return _ParsedSignedData(
        content=content,
        signer=signer,
        embedded=tuple(embedded),
        digest_algorithm=digest_name,
        message_digest=message_digest,
        signing_time=signing_time,
        to_be_signed=to_be_signed,
        signature=bytes(si["signature"].native),
        algorithm=algorithm,
        pss_params=pss_params,
    )


def _untrusted(why_fr: str, why_en: str) -> CmsError:
    return CmsError(
        CmsErrorCode.UNTRUSTED_SIGNER,
        f"Signataire non reconnu : {why_fr}.",
        f"Untrusted signer: {why_en}.",
    )


def _check_validity(cert: x509.Certificate, when: datetime) -> None:
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise _untrusted(
            f"certificat « {cert.subject.rfc4514_string()} » hors de sa période de validité",
            f"certificate '{cert.subject.rfc4514_string()}' outside its validity period",
        )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        # Extensions are parsed lazily; a broken one makes the certificate unusable as a CA.
        return False
    return bc.ca


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _check_chain(
    signer: RsaCertificate,
    embedded: Sequence[x509.Certificate],
    trusted_roots_der: Sequence[bytes],
    when: datetime,
) -> None:
    try:
        roots = [x509.load_der_x509_certificate(r) for r in trusted_roots_der]
    except (ValueError, x509.InvalidVersion) as exc:
        raise CmsError(
            CmsErrorCode.BAD_CERTIFICATE,
            "Certificat racine de confiance illisible.",
            "Unreadable trusted root certificate.",
        ) from exc
    leaf = signer.crypto
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    except (x509.DuplicateExtension, ValueError) as exc:
        raise _untrusted("extensions du certificat illisibles", "unreadable extensions") from exc
    if usage is not None and not (usage.digital_signature or usage.content_commitment):
        raise _untrusted("certificat non prévu pour signer", "certificate not meant for signing")

    current = leaf
    _check_validity(current, when)
    for _ in range(MAX_CHAIN_DEPTH):
        if current in roots:
            return
        anchor = next((r for r in roots if _issued_by(current, r)), None)
        if anchor is not None:
            _check_validity(anchor, when)
            return
        parent = next(
            (c for c in embedded if c != current and _is_ca(c) and _issued_by(current, c)),
            None,
        )
        if parent is None:
            raise _untrusted(
                "aucune chaîne vers une autorité de confiance", "no chain to a trusted authority"
            )
        _check_validity(parent, when)
        current = parent
    raise _untrusted("chaîne de certification trop longue", "certificate chain too long")
