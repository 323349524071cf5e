"""The PKCS#11 adapter against the REAL SoftHSM2 token (signature cert at CKA_ID 02, auth at 01):
identity without PIN, one C_Login per PIN, no leaked session, per-use logins; fakes only where
SoftHSM2 cannot go (it never locks a PIN)."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11._pkcs11 import lib as Pkcs11Lib

from balise.adapters.pkcs11 import (
    NoPkcs11Module,
    Pkcs11Signer,
    SignatureNotAllowed,
    open_module,
)
from balise.domain.card import CardIdentity, CardRemoved, PinLocked, WrongPin
from balise.domain.errors import StateError, ValidationError
from balise.ports import TokenSigner
from balise.sim.pki import DEFAULT_DISPLAY_NAME, DEFAULT_RPPS, TestPKI
from balise.sim.softhsm import SIGNATURE_ID, SIGNATURE_LABEL, SoftHSM, TokenInfo
from tests.support.clock import TEST_NOW
from tests.support.fake_token import (
    CountingCryptoki,
    FakeToken,
    LockingCryptoki,
    LockingSigner,
    RemovableSigner,
)
from tests.support.pki_fixtures import MakeToken, reload_softhsm_tokens

pytestmark = pytest.mark.softhsm

# A PIN no other fixture uses, so finding it in a text means it leaked.
SENTINEL_PIN = "86420975"
WRONG_PIN = "11112222"
LOTS = [f"LOT {n:03d} - contenu a signer\r\n".encode() * 10 for n in range(1, 5)]


def pin(text: str) -> bytearray:
    return bytearray(text.encode())


def lib_of(softhsm: SoftHSM) -> Pkcs11Lib:
    # The exact path string: python-pkcs11 caches libraries by it.
    return pkcs11.lib(str(softhsm.module))


def make_signer(softhsm: SoftHSM, info: TokenInfo) -> Pkcs11Signer:
    return Pkcs11Signer(
        lib_of(softhsm), token_label=info.label, cryptoki=CountingCryptoki(str(softhsm.module))
    )


def counting(signer: Pkcs11Signer) -> CountingCryptoki:
    assert isinstance(signer.cryptoki, CountingCryptoki)
    return signer.cryptoki


def open_on_slot(signer: Pkcs11Signer) -> int:
    """Sessions open on the token's slot, asked of the module itself (C_GetSessionInfo)."""
    assert signer.slot_id is not None
    return signer.cryptoki.open_sessions(signer.slot_id)


def openssl_verifies(cert_der: bytes, signature: bytes, data: bytes, tmp_path: Path) -> bool:
    cert = x509.load_der_x509_certificate(cert_der)
    pub = tmp_path / "pub.pem"
    pub.write_bytes(
        cert.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "sig.bin").write_bytes(signature)
    (tmp_path / "data.bin").write_bytes(data)
    done = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", str(pub), "-signature",
         str(tmp_path / "sig.bin"), str(tmp_path / "data.bin")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    return done.returncode == 0 and "Verified OK" in done.stdout


@pytest.fixture
def sentinel_token(make_token: MakeToken, softhsm: SoftHSM) -> tuple[SoftHSM, TokenInfo]:
    return softhsm, make_token(pin=SENTINEL_PIN)


def test_every_signer_here_fits_the_token_signer_port(token: tuple[SoftHSM, TokenInfo]) -> None:
    softhsm, info = token
    real: TokenSigner = make_signer(softhsm, info)  # checked by mypy as much as by this test
    signers: list[TokenSigner] = [
        real,
        RemovableSigner(real),
        FakeToken(identity=_fake_identity(), pin="1234"),
        locking_signer(softhsm, info),
    ]
    assert all(s.pin_state().tries_left == 3 for s in signers)


# --- identity without PIN -----------------------------------------------------------------------


def test_identify_without_pin_finds_the_signature_certificate_at_id_02(
    token: tuple[SoftHSM, TokenInfo], pki: TestPKI
) -> None:
    softhsm, info = token
    signer = make_signer(softhsm, info)

    identity = signer.identify()

    assert identity.key_id == SIGNATURE_ID == b"\x02"
    assert x509.load_der_x509_certificate(identity.signature_cert_der) == (
        pki.practitioner.signature.cert
    )
    assert identity.signature_cert_der != pki.practitioner.authentication.cert_der.read_bytes()
    assert identity.rpps == DEFAULT_RPPS
    assert identity.holder_name == DEFAULT_DISPLAY_NAME
    assert identity.extra_certs_der == (pki.intermediate.cert_der.read_bytes(),)
    assert identity.not_after == pki.practitioner.signature.cert.not_valid_after_utc
    assert identity.token_label == info.label
    assert identity.token_serial == info.serial
    assert identity.always_authenticate is False
    assert counting(signer).logins == []  # no PIN was needed, none was tried
    assert open_on_slot(signer) == 0 and signer.open_sessions == 0


def test_pin_state_reads_fresh_flags_three_then_two_after_a_wrong_pin(
    token: tuple[SoftHSM, TokenInfo],
) -> None:
    softhsm, info = token
    signer = make_signer(softhsm, info)
    before = signer.pin_state()
    assert (before.tries_left, before.protected_path) == (3, False)
    with pytest.raises(WrongPin):
        signer.login(pin(WRONG_PIN))
    # SoftHSM2 sets CKF_USER_PIN_COUNT_LOW after a failure: 2 tries in the CPS reading.
    assert signer.pin_state().tries_left == 2


# --- sign with the right PIN ------------------------------------------------------------------


def test_sign_with_the_right_pin_verifies_with_openssl_on_the_signature_key(
    token: tuple[SoftHSM, TokenInfo], pki: TestPKI, tmp_path: Path
) -> None:
    softhsm, info = token
    signer = make_signer(softhsm, info)
    identity = signer.identify()

    session = signer.login(pin(info.pin))
    try:
        signatures = [session.sign(lot) for lot in LOTS[:2]]
    finally:
        session.close()

    assert counting(signer).user_logins == 1
    for lot, signature in zip(LOTS, signatures, strict=False):
        assert openssl_verifies(identity.signature_cert_der, signature, lot, tmp_path)
    # Signed with key 02, not 01: the authentication certificate does not verify it.
    auth_der = pki.practitioner.authentication.cert_der.read_bytes()
    assert not openssl_verifies(auth_der, signatures[0], LOTS[0], tmp_path)
    assert open_on_slot(signer) == 0 and signer.open_sessions == 0
    with pytest.raises(StateError):
        session.sign(LOTS[0])  # never reused


def test_a_session_refuses_signatures_beyond_the_confirmed_batch(
    token: tuple[SoftHSM, TokenInfo],
) -> None:
    softhsm, info = token
    signer = make_signer(softhsm, info)
    with signer.login(pin(info.pin), allowed_signatures=2) as session:
        session.sign(LOTS[0])
        session.sign(LOTS[1])
        with pytest.raises(SignatureNotAllowed, match="n'en autorisait que 2"):
            session.sign(LOTS[2])


# --- wrong PIN --------------------------------------------------------------------------------


def test_wrong_pin_is_one_login_and_leaves_no_session_open(
    sentinel_token: tuple[SoftHSM, TokenInfo],
) -> None:
    softhsm, info = sentinel_token
    signer = make_signer(softhsm, info)
    signer.identify()
    before = open_on_slot(signer)

    with pytest.raises(WrongPin) as first:
        signer.login(pin(WRONG_PIN))

    assert first.value.tries_left == 2  # from the token flags (COUNT_LOW), read after the failure
    assert "Il reste 2 essais" in str(first.value)
    assert counting(signer).user_logins == 1  # exactly one C_Login, not retried
    assert open_on_slot(signer) == before == 0  # python-pkcs11's leak is not ours
    assert signer.open_sessions == 0

    # A second wrong PIN is a second call, and only one more C_Login.
    with pytest.raises(WrongPin):
        signer.login(pin(WRONG_PIN))
    assert counting(signer).user_logins == 2
    assert open_on_slot(signer) == 0

    session = signer.login(pin(SENTINEL_PIN))
    session.close()
    assert counting(signer).user_logins == 3


def test_the_session_probe_sees_the_leak_python_pkcs11_leaves_behind(
    token: tuple[SoftHSM, TokenInfo],
) -> None:
    """The observation used above is real: Token.open(user_pin=wrong) leaks one session per
    failed login (python-pkcs11 0.10.1), and C_GetSessionInfo finds it."""
    softhsm, info = token
    signer = make_signer(softhsm, info)
    signer.identify()
    assert open_on_slot(signer) == 0
    with pytest.raises(pkcs11.PinIncorrect):
        lib_of(softhsm).get_token(token_label=info.label).open(user_pin=WRONG_PIN)
    assert open_on_slot(signer) == 1
    reload_softhsm_tokens(softhsm)  # the only way to drop a session whose handle was lost
    assert open_on_slot(signer) == 0


def test_the_pin_appears_in_no_error_text_and_no_repr(
    sentinel_token: tuple[SoftHSM, TokenInfo],
) -> None:
    softhsm, info = sentinel_token
    signer = make_signer(softhsm, info)
    wrong = pin(SENTINEL_PIN[::-1])
    with pytest.raises(WrongPin) as refused:
        signer.login(wrong)
    right = pin(SENTINEL_PIN)
    session = signer.login(right)
    texts = [str(refused.value), repr(refused.value), repr(signer), repr(session)]
    session.close()
    texts.append(repr(session))
    for text in texts:
        assert SENTINEL_PIN not in text and SENTINEL_PIN[::-1] not in text, text
    assert right == pin(SENTINEL_PIN)  # the caller's buffer is the caller's to wipe


def test_empty_pin_is_refused_without_login(token: tuple[SoftHSM, TokenInfo]) -> None:
    softhsm, info = token
    signer = make_signer(softhsm, info)
    with pytest.raises(ValidationError):
        signer.login(bytearray())
    assert counting(signer).logins == []


# --- final try and locked: SoftHSM2 never locks a PIN, so this path needs a fake token ---------


def locking_signer(softhsm: SoftHSM, info: TokenInfo) -> LockingSigner:
    return LockingSigner(
        lib_of(softhsm), token_label=info.label, cryptoki=LockingCryptoki(str(softhsm.module))
    )


def test_real_adapter_final_try_then_locked_makes_no_more_login(
    token: tuple[SoftHSM, TokenInfo],
) -> None:
    """SoftHSM2 never locks a PIN, so this path needs a fake token: the real adapter and the real
    SoftHSM2 C_Login, with a CPS-like try counter laid over the token flags."""
    softhsm, info = token
    signer = locking_signer(softhsm, info)
    cryptoki = signer.cryptoki

    with pytest.raises(WrongPin) as first:
        signer.login(pin(WRONG_PIN))
    assert first.value.tries_left == 2
    with pytest.raises(WrongPin) as second:
        signer.login(pin(WRONG_PIN))
    assert second.value.tries_left == 1
    assert "un nouveau code faux bloquera la carte" in second.value.fr
    assert signer.pin_state().final_try

    with pytest.raises(WrongPin) as third:
        signer.login(pin(WRONG_PIN))
    assert third.value.tries_left == 0
    assert "bloquée" in third.value.fr
    assert cryptoki.user_logins == 3
    assert signer.pin_state().locked

    # Locked: even the right PIN is not tried — zero C_Login.
    with pytest.raises(PinLocked):
        signer.login(pin(info.pin))
    assert cryptoki.user_logins == 3
    assert open_on_slot(signer) == 0


def test_fake_token_final_try_and_locked() -> None:
    """SoftHSM2 never locks a PIN, so this path needs a fake token."""
    fake = FakeToken(identity=_fake_identity(), pin="1234", tries_left=1)
    assert fake.pin_state().final_try
    with pytest.raises(WrongPin) as refused:
        fake.login(pin("0000"))
    assert refused.value.tries_left == 0
    assert fake.user_logins == 1
    with pytest.raises(PinLocked):
        fake.login(pin("1234"))
    assert fake.user_logins == 1  # ZERO login attempts on a locked card
    assert fake.pin_state().locked


def test_fake_token_final_try_says_the_next_wrong_pin_blocks() -> None:
    """SoftHSM2 never locks a PIN, so this path needs a fake token."""
    fake = FakeToken(identity=_fake_identity(), pin="1234", tries_left=2)
    with pytest.raises(WrongPin, match="un nouveau code faux bloquera la carte"):
        fake.login(pin("0000"))
    assert fake.pin_state().final_try


def test_fake_protected_path_logs_in_with_no_pin(pki: TestPKI) -> None:
    """SoftHSM2 has no keypad (nor PIN lock), so this path needs a fake token: the PIN is typed
    on the reader and login gets None."""
    fake = FakeToken(
        identity=_fake_identity(),
        pin="1234",
        protected_path=True,
        keypad_pin="1234",
        key=pki.practitioner.signature.key,
    )
    assert fake.pin_state().protected_path
    with pytest.raises(ValidationError):
        fake.login(pin("1234"))  # a PIN typed on the kiosk is not what a keypad reader wants
    assert fake.user_logins == 0
    session = fake.login(None)
    assert session.sign(LOTS[0])
    assert fake.user_logins == 1


def _fake_identity() -> CardIdentity:
    now = TEST_NOW
    return CardIdentity("Dr Jeanne TEST", DEFAULT_RPPS, b"", (), now, now, b"\x02")


# --- CKA_ALWAYS_AUTHENTICATE, proven on the real SoftHSM2 token --------------------------------


@pytest.fixture
def always_auth_token(
    sentinel_token: tuple[SoftHSM, TokenInfo], pki: TestPKI
) -> Iterator[tuple[SoftHSM, TokenInfo]]:
    """The signature key (CKA_ID 02) re-imported with CKA_ALWAYS_AUTHENTICATE (pkcs11-tool
    --always-auth; SoftHSM2 makes the attribute read-only once the key exists)."""
    softhsm, info = sentinel_token
    token = lib_of(softhsm).get_token(token_label=info.label)
    with token.open(rw=True, user_pin=info.pin) as session:
        session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=SIGNATURE_ID).destroy()
    done = subprocess.run(
        ["pkcs11-tool", "--module", str(softhsm.module), "--token-label", info.label,
         "--login", "--pin", info.pin, "--write-object", str(pki.practitioner.signature.key_pem),
         "--type", "privkey", "--id", SIGNATURE_ID.hex(), "--label", SIGNATURE_LABEL,
         "--usage-sign", "--always-auth"],
        capture_output=True, text=True, timeout=30, check=False, env=softhsm_env(softhsm),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    reload_softhsm_tokens(softhsm)
    # The real token enforces it: a signature without the per-use login is refused.
    with lib_of(softhsm).get_token(token_label=info.label).open(user_pin=info.pin) as session:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=SIGNATURE_ID)
        assert key[Attribute.ALWAYS_AUTHENTICATE] is True
        assert isinstance(key, pkcs11.SignMixin)
        with pytest.raises(pkcs11.UserNotLoggedIn):
            key.sign(LOTS[0], mechanism=Mechanism.SHA256_RSA_PKCS)
    yield softhsm, info


def softhsm_env(softhsm: SoftHSM) -> dict[str, str]:
    return {**os.environ, **softhsm.env()}


def test_always_authenticate_one_context_login_per_signature_none_beyond(
    always_auth_token: tuple[SoftHSM, TokenInfo], tmp_path: Path
) -> None:
    softhsm, info = always_auth_token
    signer = make_signer(softhsm, info)
    identity = signer.identify()
    cryptoki = counting(signer)

    session = signer.login(pin(SENTINEL_PIN), allowed_signatures=3)
    assert session.always_authenticate  # read after login: the key is private before it
    signatures = [session.sign(lot) for lot in LOTS[:3]]
    assert cryptoki.context_logins == 3
    with pytest.raises(SignatureNotAllowed):
        session.sign(LOTS[3])
    assert cryptoki.context_logins == 3  # the refusal made no login
    assert cryptoki.user_logins == 1
    session.close()

    for lot, signature in zip(LOTS, signatures, strict=False):
        assert openssl_verifies(identity.signature_cert_der, signature, lot, tmp_path)
    assert open_on_slot(signer) == 0
    assert SENTINEL_PIN not in repr(session)


def test_always_authenticate_without_a_confirmed_batch_signs_nothing(
    always_auth_token: tuple[SoftHSM, TokenInfo],
) -> None:
    softhsm, info = always_auth_token
    signer = make_signer(softhsm, info)
    session = signer.login(pin(SENTINEL_PIN))
    with session, pytest.raises(SignatureNotAllowed, match="lot confirmé"):
        session.sign(LOTS[0])
    assert counting(signer).context_logins == 0


def test_fake_always_authenticate_counts_context_logins(pki: TestPKI) -> None:
    fake = FakeToken(
        identity=_fake_identity(), pin="1234", always_authenticate=True,
        key=pki.practitioner.signature.key,
    )  # fmt: skip
    session = fake.login(pin("1234"), allowed_signatures=2)
    session.sign(LOTS[0])
    session.sign(LOTS[1])
    with pytest.raises(SignatureNotAllowed):
        session.sign(LOTS[2])
    assert (fake.user_logins, fake.context_logins) == (1, 2)


# --- card removal -----------------------------------------------------------------------------


def test_session_lost_under_the_adapter_is_card_removed(token: tuple[SoftHSM, TokenInfo]) -> None:
    """C_Finalize/C_Initialize drops every session, as a pulled card does in a real module."""
    softhsm, info = token
    signer = make_signer(softhsm, info)
    session = signer.login(pin(info.pin))
    session.sign(LOTS[0])
    reload_softhsm_tokens(softhsm)
    with pytest.raises(CardRemoved):
        session.sign(LOTS[1])
    session.close()  # closing a lost session is quiet
    assert signer.open_sessions == 0


def test_removable_signer_fails_from_signature_k_once_the_card_is_pulled(
    token: tuple[SoftHSM, TokenInfo],
) -> None:
    """The virtual card and SoftHSM2 are not linked: the removal event drives the wrapper."""
    softhsm, info = token
    removed = threading.Event()
    signer = RemovableSigner(make_signer(softhsm, info), removed, fail_from=2)
    session = signer.login(pin(info.pin))
    session.sign(LOTS[0])
    removed.set()
    with pytest.raises(CardRemoved):
        session.sign(LOTS[1])
    session.close()
    with pytest.raises(CardRemoved):
        signer.login(pin(info.pin))
    with pytest.raises(CardRemoved):
        signer.pin_state()


# --- module choice ----------------------------------------------------------------------------


def test_open_module_takes_the_configured_module(softhsm: SoftHSM) -> None:
    lib, candidate = open_module("production", str(softhsm.module))
    assert candidate.kind == "configured"
    assert lib is lib_of(softhsm)


def test_open_module_names_a_missing_configured_module_in_french(tmp_path: Path) -> None:
    missing = tmp_path / "libcps3_pkcs11_lux.so"
    with pytest.raises(NoPkcs11Module, match="module PKCS#11 configuré est introuvable"):
        open_module("production", str(missing))
