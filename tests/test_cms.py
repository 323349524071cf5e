"""balise.cms against an independent peer: the openssl command line decrypts and verifies what we build."""

from __future__ import annotations

import base64
import email
import gzip
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from balise.cms import (
    CmsError,
    CmsErrorCode,
    ContentCipher,
    KeyEncryption,
    SignatureAlgorithm,
    build_entity,
    build_enveloped_data,
    gunzip_payload,
    gzip_payload,
    open_enveloped_data,
    parse_entity,
    prepare_signature,
    sign_data,
    verify_signed_data,
)
from balise.sim.pki import Issued, TestPKI, build_pki
from tests.support.clock import TEST_NOW
from tests.support.lot_corpus import SAMPLES

EMITTER = "00000012345678"
OPENSSL_TIMEOUT = 30  # seconds; each call takes a few ms, the bound only stops a hang


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return build_pki(tmp_path_factory.mktemp("pki"), now=TEST_NOW)


@pytest.fixture(scope="module")
def lot() -> bytes:
    return (SAMPLES / "valid.lot").read_bytes()


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: bytes
    stderr: str


def openssl(*args: str | Path) -> Run:
    proc = subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, timeout=OPENSSL_TIMEOUT, check=False
    )
    return Run(proc.returncode, proc.stdout, proc.stderr.decode(errors="replace"))


def pkcs1_signer(issued: Issued) -> Callable[[bytes], bytes]:
    """What the card does with CKM_SHA256_RSA_PKCS: hash the bytes itself, then sign."""
    return lambda tbs: issued.key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())


def pss_signer(issued: Issued) -> Callable[[bytes], bytes]:
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    return lambda tbs: issued.key.sign(tbs, pss, hashes.SHA256())


def sign_lot(
    pki: TestPKI, content: bytes, *, algorithm: SignatureAlgorithm = "rsassa_pkcs1v15"
) -> bytes:
    signer = pki.practitioner.signature
    sign = pss_signer(signer) if algorithm == "rsassa_pss" else pkcs1_signer(signer)
    return sign_data(
        content,
        signer.cert_der.read_bytes(),
        sign,
        signing_time=TEST_NOW,
        extra_certs_der=[pki.intermediate.cert_der.read_bytes()],
        algorithm=algorithm,
    )


def openssl_verify(pki: TestPKI, signed_der: bytes, work: Path) -> Run:
    """PROFILE.md §2 "Independent check": the command exactly, content written to a file."""
    src, out = work / "signed.der", work / "verified.out"
    src.write_bytes(signed_der)
    out.unlink(missing_ok=True)
    run = openssl(
        "cms", "-verify", "-inform", "DER", "-in", src, "-CAfile", pki.root_pem,
        "-purpose", "any", "-out", out,
    )  # fmt: skip
    content = out.read_bytes() if run.returncode == 0 else b""
    return Run(run.returncode, content, run.stderr)


def openssl_decrypt(recipient: Issued, enveloped_der: bytes, work: Path) -> Run:
    src, out = work / "part.p7m", work / "decrypted.out"
    src.write_bytes(enveloped_der)
    out.unlink(missing_ok=True)
    run = openssl(
        "cms", "-decrypt", "-inform", "DER", "-in", src,
        "-recip", recipient.cert_pem, "-inkey", recipient.key_pem, "-out", out,
    )  # fmt: skip
    content = out.read_bytes() if run.returncode == 0 else b""
    return Run(run.returncode, content, run.stderr)


def openssl_print(der: bytes, work: Path) -> str:
    src = work / "print.der"
    src.write_bytes(der)
    run = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", src)
    assert run.returncode == 0, run.stderr
    return run.stdout.decode()


def body_of(entity: bytes) -> bytes:
    """Decode the entity body without balise: split at the blank line, base64, gunzip."""
    _, _, body = entity.partition(b"\r\n\r\n")
    return gzip.decompress(base64.b64decode(body))


# --- the whole PROFILE.md §2 chain -------------------------------------------------------------


def test_each_recipient_recovers_the_lot_byte_for_byte_with_openssl(
    pki: TestPKI, lot: bytes, tmp_path: Path
) -> None:
    signed = sign_lot(pki, lot)
    entity = build_entity(gzip_payload(signed), emitter=EMITTER, lot_number="001", test_flow=False)
    enveloped = build_enveloped_data(
        entity, [pki.amo.cert_der.read_bytes(), pki.amc.cert_der.read_bytes()]
    )
    printed = openssl_print(enveloped, tmp_path)
    assert printed.count("keyEncryptionAlgorithm") == 2
    assert "rsaEncryption" in printed and "aes-256-cbc" in printed

    for recipient in (pki.amo, pki.amc):
        decrypted = openssl_decrypt(recipient, enveloped, tmp_path)
        assert decrypted.returncode == 0, decrypted.stderr
        assert decrypted.stdout == entity
        verified = openssl_verify(pki, body_of(decrypted.stdout), tmp_path)
        assert verified.returncode == 0, verified.stderr
        assert verified.stdout == lot

    # Our own reader agrees with openssl on the same bytes (the simulator uses it).
    opened = open_enveloped_data(enveloped, pki.amo.key, pki.amo.cert_der.read_bytes())
    _, payload = parse_entity(opened)
    result = verify_signed_data(gunzip_payload(payload), [pki.root.cert_der.read_bytes()])
    assert result.content == lot
    assert result.signer_cert_der == pki.practitioner.signature.cert_der.read_bytes()


@pytest.mark.parametrize(
    ("key_encryption", "content_cipher", "printed_key_alg", "printed_cipher"),
    [
        ("rsaes_oaep", "aes256_cbc", "rsaesOaep", "aes-256-cbc"),
        ("rsaes_pkcs1v15", "aes128_cbc", "rsaEncryption", "aes-128-cbc"),
        ("rsaes_oaep", "aes128_cbc", "rsaesOaep", "aes-128-cbc"),
    ],
)
def test_envelope_options_decrypt_with_openssl(
    pki: TestPKI,
    tmp_path: Path,
    key_encryption: KeyEncryption,
    content_cipher: ContentCipher,
    printed_key_alg: str,
    printed_cipher: str,
) -> None:
    content = b"binary \x00\r\n\n\r content must survive untouched\xff"
    enveloped = build_enveloped_data(
        content,
        [pki.amo.cert_der.read_bytes(), pki.amc.cert_der.read_bytes()],
        key_encryption=key_encryption,
        content_cipher=content_cipher,
    )
    printed = openssl_print(enveloped, tmp_path)
    assert printed_key_alg in printed and printed_cipher in printed
    for recipient in (pki.amo, pki.amc):
        decrypted = openssl_decrypt(recipient, enveloped, tmp_path)
        assert decrypted.returncode == 0, decrypted.stderr
        assert decrypted.stdout == content
        assert open_enveloped_data(enveloped, recipient.key, recipient.cert_der.read_bytes()) == (
            content
        )


def test_pss_signature_verifies_with_openssl(pki: TestPKI, lot: bytes, tmp_path: Path) -> None:
    signed = sign_lot(pki, lot, algorithm="rsassa_pss")
    assert "rsassaPss" in openssl_print(signed, tmp_path)
    verified = openssl_verify(pki, signed, tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout == lot
    result = verify_signed_data(signed, [pki.root.cert_der.read_bytes()])
    assert result.algorithm == "rsassa_pss"
    assert result.content == lot


# --- tampering and wrong keys ------------------------------------------------------------------


def test_tampered_signature_fails_in_openssl_and_in_balise(
    pki: TestPKI, lot: bytes, tmp_path: Path
) -> None:
    signed = bytearray(sign_lot(pki, lot))
    # The signature is the last field of the only SignerInfo, itself the last field of the DER.
    signed[-1] ^= 0x01
    assert openssl_verify(pki, bytes(signed), tmp_path).returncode != 0
    with pytest.raises(CmsError) as err:
        verify_signed_data(bytes(signed), [pki.root.cert_der.read_bytes()])
    assert err.value.code == CmsErrorCode.BAD_SIGNATURE


def test_tampered_content_fails_in_openssl_and_in_balise(
    pki: TestPKI, lot: bytes, tmp_path: Path
) -> None:
    signed = sign_lot(pki, lot)
    at = signed.index(lot) + 200  # a byte inside the lot, inside the attached content
    tampered = bytearray(signed)
    tampered[at] = ord("9") if tampered[at] != ord("9") else ord("8")
    assert openssl_verify(pki, bytes(tampered), tmp_path).returncode != 0
    with pytest.raises(CmsError) as err:
        verify_signed_data(bytes(tampered), [pki.root.cert_der.read_bytes()])
    assert err.value.code == CmsErrorCode.DIGEST_MISMATCH


def test_a_non_recipient_cannot_decrypt(pki: TestPKI, tmp_path: Path) -> None:
    stranger = pki.issue_organism("TEST MUTUELLE ETRANGERE")
    enveloped = build_enveloped_data(b"for amo only", [pki.amo.cert_der.read_bytes()])
    run = openssl_decrypt(stranger, enveloped, tmp_path)
    assert run.returncode != 0
    assert run.stdout == b""
    with pytest.raises(CmsError) as err:
        open_enveloped_data(enveloped, stranger.key, stranger.cert_der.read_bytes())
    assert err.value.code == CmsErrorCode.NOT_RECIPIENT


def test_each_envelope_uses_a_fresh_content_key(pki: TestPKI) -> None:
    certs = [pki.amo.cert_der.read_bytes()]
    assert build_enveloped_data(b"same", certs) != build_enveloped_data(b"same", certs)


def test_envelope_without_recipient_is_refused() -> None:
    with pytest.raises(CmsError) as err:
        build_enveloped_data(b"x", [])
    assert err.value.code == CmsErrorCode.NO_RECIPIENTS


# --- signer trust ------------------------------------------------------------------------------


def test_signer_from_another_hierarchy_is_untrusted(
    pki: TestPKI, lot: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = build_pki(tmp_path_factory.mktemp("other-pki"), now=TEST_NOW)
    signed = sign_lot(other, lot)
    with pytest.raises(CmsError) as err:
        verify_signed_data(signed, [pki.root.cert_der.read_bytes()])
    assert err.value.code == CmsErrorCode.UNTRUSTED_SIGNER


def test_missing_intermediate_breaks_the_chain_for_openssl_and_balise(
    pki: TestPKI, lot: bytes, tmp_path: Path
) -> None:
    signer = pki.practitioner.signature
    signed = sign_data(
        lot, signer.cert_der.read_bytes(), pkcs1_signer(signer), signing_time=TEST_NOW
    )
    assert openssl_verify(pki, signed, tmp_path).returncode != 0
    with pytest.raises(CmsError) as err:
        verify_signed_data(signed, [pki.root.cert_der.read_bytes()])
    assert err.value.code == CmsErrorCode.UNTRUSTED_SIGNER


def test_expired_signer_certificate_is_refused(pki: TestPKI, lot: bytes) -> None:
    now = TEST_NOW
    old = pki.issue_practitioner(
        "10009999999",
        "Dr Ancien TEST",
        not_before=now - timedelta(days=800),
        not_after=now - timedelta(days=1),
    )
    signed = sign_data(
        lot,
        old.signature.cert_der.read_bytes(),
        pkcs1_signer(old.signature),
        signing_time=now - timedelta(days=400),
        extra_certs_der=[pki.intermediate.cert_der.read_bytes()],
    )
    with pytest.raises(CmsError) as err:
        verify_signed_data(signed, [pki.root.cert_der.read_bytes()])
    assert err.value.code == CmsErrorCode.UNTRUSTED_SIGNER
    # Verified at a date inside its validity, the same lot is accepted.
    result = verify_signed_data(
        signed, [pki.root.cert_der.read_bytes()], at=now - timedelta(days=400)
    )
    assert result.content == lot


# --- two-phase signing -------------------------------------------------------------------------


def test_two_prepared_signatures_finished_in_any_order(
    pki: TestPKI, lot: bytes, tmp_path: Path
) -> None:
    signer = pki.practitioner.signature
    when = TEST_NOW - timedelta(hours=3)
    chain = [pki.intermediate.cert_der.read_bytes()]
    cert = signer.cert_der.read_bytes()
    first = prepare_signature(lot, cert, signing_time=when, extra_certs_der=chain)
    second_lot = lot.replace(b"LOT001", b"LOT002")
    assert second_lot != lot
    second = prepare_signature(second_lot, cert, signing_time=when, extra_certs_der=chain)
    assert first.to_be_signed[0] == 0x31 and second.to_be_signed[0] == 0x31
    sign = pkcs1_signer(signer)
    signed_second = second.finish(sign(second.to_be_signed))
    signed_first = first.finish(sign(first.to_be_signed))
    assert openssl_verify(pki, signed_first, tmp_path).stdout == lot
    assert openssl_verify(pki, signed_second, tmp_path).stdout == second_lot
    assert verify_signed_data(signed_first, [pki.root.cert_der.read_bytes()]).signing_time == when


def test_finish_refuses_a_signature_from_the_wrong_key(pki: TestPKI, lot: bytes) -> None:
    """A card that signs with its authentication key must not yield a lot the organism rejects."""
    practitioner = pki.practitioner
    prepared = prepare_signature(
        lot, practitioner.signature.cert_der.read_bytes(), signing_time=TEST_NOW
    )
    wrong = pkcs1_signer(practitioner.authentication)(prepared.to_be_signed)
    with pytest.raises(CmsError) as err:
        prepared.finish(wrong)
    assert err.value.code == CmsErrorCode.BAD_SIGNATURE


# --- gzip payload and MIME entity --------------------------------------------------------------


def test_gzip_payload_is_deterministic_and_standard(lot: bytes) -> None:
    first, second = gzip_payload(lot), gzip_payload(lot)
    assert first == second
    assert first[4:8] == b"\x00\x00\x00\x00"  # mtime 0: resending a lot gives the same bytes
    assert gzip.decompress(first) == lot


def test_gunzip_refuses_a_bomb() -> None:
    bomb = gzip_payload(b"\x00" * (2 * 1024 * 1024))
    with pytest.raises(CmsError) as err:
        gunzip_payload(bomb, max_size=1024 * 1024)
    assert err.value.code == CmsErrorCode.TOO_LARGE
    with pytest.raises(CmsError) as err:
        gunzip_payload(bomb[:-10])
    assert err.value.code == CmsErrorCode.BAD_COMPRESSION


@pytest.mark.parametrize(
    ("test_flow", "description"), [(False, "IRIS/B2/Z"), (True, "IRISTEST/B2/Z")]
)
def test_entity_format(test_flow: bool, description: str, lot: bytes) -> None:
    payload = gzip_payload(lot * 8)  # several body lines
    entity = build_entity(payload, emitter=EMITTER, lot_number="042", test_flow=test_flow)
    head, sep, body = entity.partition(b"\r\n\r\n")
    assert sep
    assert head.split(b"\r\n") == [
        b"Content-Type: application/EDI-consent",
        b"Content-Transfer-Encoding: base64",
        b"Content-Description: " + description.encode(),
        b'Content-Disposition: attachment; filename="LOT_00000012345678_042.gz"',
    ]
    # CRLF everywhere: no bare LF, no bare CR.
    assert entity.count(b"\n") == entity.count(b"\r\n") == entity.count(b"\r")
    assert body.endswith(b"\r\n")
    lines = body[:-2].split(b"\r\n")
    assert len(lines) > 2
    assert all(len(line) == 76 for line in lines[:-1])
    assert 0 < len(lines[-1]) <= 76
    assert base64.b64decode(b"".join(lines)) == payload

    # The stdlib mail parser (an independent reader) sees the same entity.
    msg = email.message_from_bytes(entity)
    assert msg.get_content_type() == "application/edi-consent"
    assert msg["Content-Description"] == description
    assert msg.get_filename() == "LOT_00000012345678_042.gz"
    assert msg.get_payload(decode=True) == payload

    headers, decoded = parse_entity(entity)
    assert decoded == payload
    assert headers["content-description"] == description
    assert headers["content-type"] == "application/EDI-consent"


@pytest.mark.parametrize(
    ("emitter", "lot_number", "payload"),
    [
        ("12345", "001", b"\x1f\x8b..."),  # emitter not 14 digits
        (EMITTER, "000", b"\x1f\x8b..."),  # lot numbers run 001-999
        (EMITTER, "1", b"\x1f\x8b..."),
        (EMITTER, "001", b"not gzip"),  # "/Z" promises gzip
    ],
)
def test_entity_refuses_bad_inputs(emitter: str, lot_number: str, payload: bytes) -> None:
    with pytest.raises(CmsError) as err:
        build_entity(payload, emitter=emitter, lot_number=lot_number, test_flow=False)
    assert err.value.code == CmsErrorCode.BAD_ENTITY


@pytest.mark.parametrize(
    ("entity", "code"),
    [
        (b"Content-Transfer-Encoding: 8bit\r\n\r\nabc\r\n", CmsErrorCode.BAD_ENTITY),
        (b"Content-Transfer-Encoding: base64\r\n\r\n!!not base64!!\r\n", CmsErrorCode.BAD_ENTITY),
        (b"Content-Transfer-Encoding: base64\r\nno end of headers", CmsErrorCode.BAD_ENTITY),
        (b"X-A: 1\r\nX-A: 2\r\nContent-Transfer-Encoding: base64\r\n\r\n", CmsErrorCode.BAD_ENTITY),
        (b"X: " + b"a" * (25 * 1024 * 1024), CmsErrorCode.TOO_LARGE),
    ],
)
def test_parse_entity_bounds(entity: bytes, code: CmsErrorCode) -> None:
    with pytest.raises(CmsError) as err:
        parse_entity(entity)
    assert err.value.code == code


# --- hostile input -----------------------------------------------------------------------------


def test_garbage_never_escapes_as_a_library_error(pki: TestPKI, lot: bytes) -> None:
    """Whatever arrives (truncated, bit-flipped, wrong type), the simulator only meets CmsError."""
    signed = sign_lot(pki, lot)
    enveloped = build_enveloped_data(lot, [pki.amo.cert_der.read_bytes()])
    roots = [pki.root.cert_der.read_bytes()]
    flipped = bytearray(signed)
    flipped[len(lot) + 400] ^= 0x40  # inside the embedded certificates
    inputs = [b"", b"\x30\x00", b"\x00" * 64, signed[: len(signed) // 2], bytes(flipped), enveloped]
    for data in inputs:
        with pytest.raises(CmsError):
            verify_signed_data(data, roots)
    for data in [b"", b"\x30\x00", enveloped[: len(enveloped) // 2], signed]:
        with pytest.raises(CmsError):
            open_enveloped_data(data, pki.amo.key, pki.amo.cert_der.read_bytes())
