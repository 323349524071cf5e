"""The CPS card proves who holds it (wizard, self-service) on the REAL SoftHSM2 card stand-in: the
signature certificate checked before any PIN (IGC-Santé test chain, CRL fetched from a loopback
server), then a random challenge signed by the card's AUTHENTICATION key after the PIN, verified
with that key's certificate and its chain; and self-service touching only the card's own profile."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.hashes import SHA256

from balise.domain.card import CardError, CardIdentity, CardProof, WrongPin
from balise.domain.errors import StateError
from balise.services.enrolment import prove_card
from balise.services.signing import CertVerdict
from balise.sim.pki import Practitioner, TestPKI, build_pki
from tests.support.clock import TEST_NOW
from tests.support.crl_support import CrlServer, make_crl
from tests.support.kiosk_support import Kiosk, real_signer
from tests.support.pki_fixtures import TEST_PIN, MakeToken

pytestmark = pytest.mark.softhsm


def _trust(kiosk: Kiosk, pki: TestPKI, crl_server: CrlServer, revoked: list[Practitioner]) -> None:
    p = kiosk.box.ctx.params
    p.set("igc_roots", pki.root.cert_pem.read_text())
    p.set("igc_intermediates", pki.intermediate.cert_pem.read_text())
    p.set("crl_url", crl_server.url("/igc/elementaire.crl"))
    crl_server.files["/igc/elementaire.crl"] = make_crl(
        pki.intermediate,
        this_update=TEST_NOW - timedelta(hours=3),
        next_update=TEST_NOW + timedelta(days=7),
        revoked=[v.signature.cert for v in revoked] + [v.authentication.cert for v in revoked],
    )
    assert [o.kind for o in kiosk.box.ctx.crl_service().fetch_all()] == ["stored"]


def _proofs(kiosk: Kiosk) -> list[str]:
    return [
        json.loads(e.details)["result"]
        for e in kiosk.box.ctx.journal.entries()
        if e.kind == "card.proof"
    ]


def test_the_card_proves_itself_with_its_authentication_key(
    kiosk: Kiosk, pki: TestPKI, crl_server: CrlServer
) -> None:
    _trust(kiosk, pki, crl_server, [])
    backend = kiosk.backend
    backend.start_card_watch(lambda _event: None)
    check = backend.card_check()
    assert check.ok, check.fr
    assert (check.name, check.rpps) == (pki.practitioner.display_name, pki.practitioner.rpps)
    assert "Révocation vérifiée" in check.fr
    with pytest.raises(WrongPin):
        backend.prove_card(bytearray(b"9999"), "test")
    with pytest.raises(StateError):  # a wrong PIN proves nothing
        backend.my_parameters()
    pin = bytearray(TEST_PIN.encode())
    fr, _en = backend.prove_card(pin, "test")
    assert pin == bytearray(len(TEST_PIN))  # the PIN buffer overwritten
    assert fr.startswith("Carte authentifiée")
    profile, lines = backend.my_parameters()
    assert profile == "p1"
    assert ("bal_address", "xyz999212@bal.example.net") in [(x.name, x.shown) for x in lines]
    # Pulled: what was proven is forgotten.
    kiosk.cards.insert("cps3")
    kiosk.cards.pull()
    with pytest.raises(StateError):
        backend.my_parameters()
    assert _proofs(kiosk) == ["ok"]


def test_a_revoked_card_is_refused_before_the_pin(
    kiosk: Kiosk, pki: TestPKI, crl_server: CrlServer, make_token: MakeToken
) -> None:
    victim = pki.issue_practitioner("10009999999", "Dr Carte REVOQUEE")
    _trust(kiosk, pki, crl_server, [victim])
    kiosk.use_signer(real_signer(kiosk.softhsm, make_token(victim)))
    check = kiosk.backend.card_check()
    assert not check.ok
    assert "a été révoqué le" in check.fr
    with pytest.raises(CardError) as refused:  # even with the right PIN
        kiosk.backend.prove_card(bytearray(TEST_PIN.encode()), "test")
    assert "révoqué" in refused.value.fr


def test_a_card_from_another_hierarchy_is_refused(
    kiosk: Kiosk,
    pki: TestPKI,
    crl_server: CrlServer,
    make_token: MakeToken,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:

    _trust(kiosk, pki, crl_server, [])
    other = build_pki(tmp_path_factory.mktemp("other-pki"), now=TEST_NOW)
    kiosk.use_signer(real_signer(kiosk.softhsm, make_token(issuer=other)))
    check = kiosk.backend.card_check()
    assert not check.ok
    assert "autorité IGC-Santé reconnue" in check.fr


class _LyingCard:
    """A card that answers with a signature made by another key (what a real card cannot be
    made to do): the box must refuse it."""

    def __init__(self, auth_der: bytes, key: object) -> None:
        self.auth_der = auth_der
        self.key = key

    def prove(self, pin: bytearray | None, challenge: bytes) -> CardProof:
        signature = self.key.sign(challenge, padding.PKCS1v15(), SHA256())  # type: ignore[attr-defined]
        return CardProof(self.auth_der, challenge, signature)


def test_a_challenge_signed_by_another_key_is_refused(kiosk: Kiosk, pki: TestPKI) -> None:
    identity: CardIdentity = real_signer(kiosk.softhsm, kiosk.token)().identify()
    auth_der = pki.practitioner.authentication.cert_der.read_bytes()
    ok = CertVerdict(True, "ok", "ok")
    with pytest.raises(CardError) as refused:
        prove_card(
            _LyingCard(auth_der, pki.amo.key),
            identity,
            bytearray(b"1234"),
            check_cert=lambda _i: ok,
            check_auth_cert=lambda _d, _e: ok,
            journal=kiosk.box.ctx.journal,
            purpose="test",
        )
    assert "la carte n'a pas prouvé qui la détient" in refused.value.fr
    # The true key passes the same check.
    prove_card(
        _LyingCard(auth_der, pki.practitioner.authentication.key),
        identity,
        None,
        check_cert=lambda _i: ok,
        check_auth_cert=lambda _d, _e: ok,
        journal=kiosk.box.ctx.journal,
        purpose="test",
    )
    assert _proofs(kiosk) == ["refused", "ok"]
    assert x509.load_der_x509_certificate(auth_der).subject == identity_subject(identity)


def identity_subject(identity: CardIdentity) -> x509.Name:
    return x509.load_der_x509_certificate(identity.signature_cert_der).subject
