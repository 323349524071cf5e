"""Proof that the test PKI and the SoftHSM2 CPS stand-in work with the real tools: python-pkcs11
on SoftHSM2, openssl as the independent verifier, pyhanko-certvalidator for path validation."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from pkcs11 import Attribute, Mechanism, ObjectClass
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import InvalidCertificateError

from balise.sim.pki import Issued, TestPKI, build_pki
from balise.sim.softhsm import INTERMEDIATE_ID, SoftHSM, TokenInfo
from tests.support.clock import TEST_NOW
from tests.support.pki_fixtures import TEST_PIN, TEST_SO_PIN, MakeToken, reload_softhsm_tokens

DATA = b"LOT 001 - contenu a signer\r\n" * 20


def openssl(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=cwd,
    )


def open_token(softhsm: SoftHSM, info: TokenInfo) -> pkcs11.Token:
    return pkcs11.lib(str(softhsm.module)).get_token(token_label=info.label)


def token_certificates(session: pkcs11.Session) -> dict[bytes, x509.Certificate]:
    """CKA_ID -> certificate, as a card reader would list them before any PIN."""
    return {
        obj[Attribute.ID]: x509.load_der_x509_certificate(obj[Attribute.VALUE])
        for obj in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE})
    }


def signature_cert_id(certs: dict[bytes, x509.Certificate]) -> bytes:
    """The CKA_ID of the one end-entity certificate with keyUsage nonRepudiation."""
    ids = [
        cka_id
        for cka_id, cert in certs.items()
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        and cert.extensions.get_extension_for_class(x509.KeyUsage).value.content_commitment
    ]
    assert len(ids) == 1, ids
    return ids[0]


def write_pubkey(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(
        cert.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def openssl_dgst_verify(pubkey: Path, signature: bytes, data: bytes, tmp_path: Path) -> bool:
    (tmp_path / "sig.bin").write_bytes(signature)
    (tmp_path / "data.bin").write_bytes(data)
    done = openssl(
        "dgst",
        "-sha256",
        "-verify",
        pubkey,
        "-signature",
        tmp_path / "sig.bin",
        tmp_path / "data.bin",
    )
    # openssl prints "Verified OK" with exit 0, "Verification failure" with exit 1.
    assert done.returncode in (0, 1), done.stderr
    return done.returncode == 0 and "Verified OK" in done.stdout


# --- SoftHSM2 token through python-pkcs11 --------------------------------------------------------


@pytest.mark.softhsm
def test_certificates_are_listed_without_login_and_keys_are_not(
    token: tuple[SoftHSM, TokenInfo], pki: TestPKI
) -> None:
    softhsm, info = token
    with open_token(softhsm, info).open() as session:
        certs = token_certificates(session)
        private_keys = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))

    assert set(certs) == {info.authentication_id, info.signature_id, INTERMEDIATE_ID}
    assert certs[info.signature_id] == pki.practitioner.signature.cert
    assert certs[info.authentication_id] == pki.practitioner.authentication.cert
    assert certs[INTERMEDIATE_ID] == pki.intermediate.cert
    # Private keys are private objects: invisible before the PIN.
    assert private_keys == []


@pytest.mark.softhsm
def test_token_serial_and_labels_are_what_the_fixture_reports(
    token: tuple[SoftHSM, TokenInfo],
) -> None:
    softhsm, info = token
    tok = open_token(softhsm, info)
    assert tok.serial.decode() == info.serial
    with tok.open(user_pin=info.pin) as session:
        labels = {
            obj[Attribute.ID]: obj[Attribute.LABEL]
            for obj in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
        }
    assert labels == {info.authentication_id: "Authentification", info.signature_id: "Signature"}


@pytest.mark.softhsm
def test_signature_key_found_by_usage_and_id_verifies_with_openssl(
    token: tuple[SoftHSM, TokenInfo], tmp_path: Path
) -> None:
    softhsm, info = token
    tok = open_token(softhsm, info)
    with tok.open() as session:
        certs = token_certificates(session)
    cka_id = signature_cert_id(certs)
    assert cka_id == info.signature_id

    with tok.open(user_pin=info.pin) as session:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=cka_id)
        assert isinstance(key, pkcs11.SignMixin)
        signature = key.sign(DATA, mechanism=Mechanism.SHA256_RSA_PKCS)

    pubkey = write_pubkey(certs[cka_id], tmp_path / "pubkey.pem")
    assert openssl_dgst_verify(pubkey, signature, DATA, tmp_path)
    assert not openssl_dgst_verify(pubkey, signature, DATA.replace(b"001", b"002"), tmp_path)


@pytest.mark.softhsm
def test_first_private_key_is_not_the_signature_key(
    token: tuple[SoftHSM, TokenInfo], tmp_path: Path
) -> None:
    """Signing with the authentication key (CKA_ID 01) gives a signature that the signature
    certificate does not verify: choosing a key by position is a real, visible bug."""
    softhsm, info = token
    tok = open_token(softhsm, info)
    with tok.open() as session:
        signature_cert = token_certificates(session)[info.signature_id]
    with tok.open(user_pin=info.pin) as session:
        auth_key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=info.authentication_id)
        assert isinstance(auth_key, pkcs11.SignMixin)
        wrong = auth_key.sign(DATA, mechanism=Mechanism.SHA256_RSA_PKCS)

    pubkey = write_pubkey(signature_cert, tmp_path / "pubkey.pem")
    assert not openssl_dgst_verify(pubkey, wrong, DATA, tmp_path)


@pytest.mark.softhsm
def test_wrong_pin_is_refused(token: tuple[SoftHSM, TokenInfo]) -> None:
    softhsm, info = token
    tok = open_token(softhsm, info)
    with pytest.raises(pkcs11.PinIncorrect):
        session = tok.open(user_pin="0000")
        session.close()  # only reached if the wrong PIN were accepted


@pytest.mark.softhsm
def test_token_created_during_a_test_is_visible_after_reload(
    token: tuple[SoftHSM, TokenInfo], pki: TestPKI
) -> None:
    """A token made by softhsm2-util after the library was loaded (here by the ``token``
    fixture) is invisible until the library is reloaded."""
    softhsm, first = token
    with open_token(softhsm, first).open():
        pass  # the library is loaded and initialised now
    other = pki.issue_practitioner("10009876543", "Dr Paul REMPLACANT")
    label = "CPS REMPLACANT"
    info = softhsm.create_token(label, other, pin="9876", so_pin=TEST_SO_PIN)
    try:
        with pytest.raises(pkcs11.NoSuchToken):
            open_token(softhsm, info)
        reload_softhsm_tokens(softhsm)
        with open_token(softhsm, info).open() as session:
            certs = token_certificates(session)
        assert set(certs) == {info.authentication_id, info.signature_id}
        assert certs[info.signature_id] == other.signature.cert
    finally:
        softhsm.delete_token(label)
        reload_softhsm_tokens(softhsm)


@pytest.mark.softhsm
def test_make_token_gives_each_practitioner_a_token_with_its_own_pin(
    make_token: MakeToken, softhsm: SoftHSM, pki: TestPKI
) -> None:
    locum = pki.issue_practitioner("10005555555", "Dr Lucie REMPLACANTE")
    titular = make_token()
    second = make_token(locum, pin="2468")
    assert titular.label != second.label
    with open_token(softhsm, second).open(user_pin="2468") as session:
        assert token_certificates(session)[second.signature_id] == locum.signature.cert
    with pytest.raises(pkcs11.PinIncorrect):
        open_token(softhsm, second).open(user_pin=TEST_PIN).close()


@pytest.mark.softhsm
def test_duplicate_token_label_is_refused(token: tuple[SoftHSM, TokenInfo], pki: TestPKI) -> None:
    softhsm, info = token
    with pytest.raises(ValueError, match="already used"):
        softhsm.create_token(info.label, pki.practitioner, pin=TEST_PIN, so_pin=TEST_SO_PIN)


# --- PKI checked by openssl and pyhanko-certvalidator --------------------------------------------


def test_openssl_verify_accepts_chain_and_rejects_another_root(
    pki: TestPKI, tmp_path: Path
) -> None:
    for leaf in (
        pki.practitioner.signature,
        pki.practitioner.authentication,
        pki.amo,
        pki.amc,
    ):
        done = openssl(
            "verify",
            "-CAfile",
            pki.root_pem,
            "-untrusted",
            pki.intermediate.cert_pem,
            leaf.cert_pem,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip().endswith("OK")

    # Without the intermediate the path cannot be built.
    done = openssl("verify", "-CAfile", pki.root_pem, pki.practitioner.signature.cert_pem)
    assert done.returncode != 0

    stranger = build_pki(tmp_path / "other", now=TEST_NOW)
    done = openssl(
        "verify",
        "-CAfile",
        pki.root_pem,
        "-untrusted",
        pki.intermediate.cert_pem,
        stranger.practitioner.signature.cert_pem,
    )
    assert done.returncode != 0
    assert "unable to get local issuer certificate" in done.stdout + done.stderr


def test_chain_pem_holds_intermediate_then_root(pki: TestPKI) -> None:
    certs = x509.load_pem_x509_certificates(pki.chain_pem.read_bytes())
    assert certs == [pki.intermediate.cert, pki.root.cert]
    assert pki.root.cert.subject == pki.root.cert.issuer
    assert "TEST" in pki.root.cert.subject.rfc4514_string()


def test_openssl_cms_verify_accepts_signature_with_default_smime_purpose(
    pki: TestPKI, tmp_path: Path
) -> None:
    """A SignedData made with the practitioner's signature key and carrying the intermediate
    passes ``openssl cms -verify -CAfile root.pem`` (default S/MIME purpose checks)."""
    signer = pki.practitioner.signature
    der = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(DATA)
        .add_signer(signer.cert, signer.key, signer.cert.signature_hash_algorithm)  # type: ignore[arg-type]
        .add_certificate(pki.intermediate.cert)
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )
    (tmp_path / "signed.p7m").write_bytes(der)
    done = openssl(
        "cms",
        "-verify",
        "-inform",
        "DER",
        "-binary",
        "-in",
        tmp_path / "signed.p7m",
        "-CAfile",
        pki.root_pem,
        "-out",
        tmp_path / "out.bin",
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.bin").read_bytes() == DATA

    stranger = build_pki(tmp_path / "other", now=TEST_NOW)
    done = openssl(
        "cms", "-verify", "-inform", "DER", "-binary", "-in", tmp_path / "signed.p7m",
        "-CAfile", stranger.root_pem, "-out", tmp_path / "out2.bin",
    )  # fmt: skip
    assert done.returncode == 4, done.stderr


def test_openssl_decrypts_for_the_organism_recipient(pki: TestPKI, tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(DATA)
    enc = openssl(
        "cms", "-encrypt", "-binary", "-aes256", "-outform", "DER",
        "-in", tmp_path / "data.bin", "-out", tmp_path / "env.p7m", pki.amo.cert_pem,
    )  # fmt: skip
    assert enc.returncode == 0, enc.stderr
    dec = openssl(
        "cms", "-decrypt", "-binary", "-inform", "DER", "-in", tmp_path / "env.p7m",
        "-recip", pki.amo.cert_pem, "-inkey", pki.amo.key_pem, "-out", tmp_path / "out.bin",
    )  # fmt: skip
    assert dec.returncode == 0, dec.stderr
    assert (tmp_path / "out.bin").read_bytes() == DATA
    wrong = openssl(
        "cms", "-decrypt", "-binary", "-inform", "DER", "-in", tmp_path / "env.p7m",
        "-recip", pki.amc.cert_pem, "-inkey", pki.amc.key_pem, "-out", tmp_path / "out2.bin",
    )  # fmt: skip
    assert wrong.returncode != 0


def test_expired_organism_certificate_is_expired(pki: TestPKI) -> None:
    now = TEST_NOW
    expired = pki.issue_organism(
        "TEST CPAM 01422", not_before=now - timedelta(days=400), not_after=now - timedelta(days=1)
    )
    assert expired.cert.not_valid_after_utc < now
    # Same name as the session's AMO certificate: its files must not have been overwritten.
    assert expired.cert_pem != pki.amo.cert_pem
    assert x509.load_pem_x509_certificate(pki.amo.cert_pem.read_bytes()) == pki.amo.cert

    done = openssl(
        "verify", "-CAfile", pki.root_pem, "-untrusted", pki.intermediate.cert_pem, expired.cert_pem
    )
    assert done.returncode != 0
    assert "certificate has expired" in done.stdout + done.stderr


def test_tls_server_certificate_matches_its_hosts(pki: TestPKI) -> None:
    server = pki.issue_tls_server("pop3 test", ["localhost", "127.0.0.2"])
    ok = openssl(
        "verify", "-CAfile", pki.root_pem, "-purpose", "sslserver", "-verify_ip", "127.0.0.2",
        server.cert_pem,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    wrong_ip = openssl(
        "verify", "-CAfile", pki.root_pem, "-verify_ip", "127.0.0.3", server.cert_pem
    )
    assert wrong_ip.returncode != 0
    host = openssl(
        "verify", "-CAfile", pki.root_pem, "-verify_hostname", "localhost", server.cert_pem
    )
    assert host.returncode == 0, host.stdout + host.stderr


def _asn1(issued: Issued) -> Any:
    return asn1_x509.Certificate.load(issued.cert_der.read_bytes())


async def test_certvalidator_accepts_signature_cert_for_non_repudiation(pki: TestPKI) -> None:
    context = ValidationContext(
        trust_roots=[_asn1(pki.root)], other_certs=[_asn1(pki.intermediate)]
    )
    validator = CertificateValidator(_asn1(pki.practitioner.signature), validation_context=context)
    path = await validator.async_validate_usage({"non_repudiation"})  # type: ignore[no-untyped-call]
    assert len(path) == 3

    with pytest.raises(InvalidCertificateError, match="non repudiation"):
        await CertificateValidator(
            _asn1(pki.practitioner.authentication), validation_context=context
        ).async_validate_usage({"non_repudiation"})  # type: ignore[no-untyped-call]
