"""The CPS card proves who holds it (first-start wizard, self-service): its signature certificate
checked before any PIN (IGC-Santé chain, dates, revocation), then, after the PIN, a fresh random
challenge signed by the card's AUTHENTICATION key and verified here against that key's
certificate — itself checked against the IGC-Santé chain and its revocation list — and the two
certificates must name the same holder. A successful PIN alone proves nothing."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.hashes import SHA256

from balise.domain.card import CardError, CardIdentity, CardProof
from balise.domain.codes import CardCode
from balise.ports import CardAuthenticator, Journal
from balise.services.signing import CertChecker, CertVerdict

CHALLENGE_BYTES = 32

# (authentication certificate DER, intermediates the card carries) -> verdict in words
AuthCertChecker = Callable[[bytes, tuple[bytes, ...]], CertVerdict]


@dataclass(frozen=True, slots=True)
class ProvenCard:
    """Who holds the card, proven: the identity read from it, and the words of the checks."""

    identity: CardIdentity
    fr: str
    en: str


class CardRefused(CardError):
    code = CardCode.CARD_REFUSED


def prove_card(
    card: CardAuthenticator,
    identity: CardIdentity,
    pin: bytearray | None,
    *,
    check_cert: CertChecker,
    check_auth_cert: AuthCertChecker,
    journal: Journal,
    purpose: str,
) -> ProvenCard:
    """The whole proof; raises CardError (words for the screen) when any part fails. The PIN
    buffer is overwritten whatever happens; the result is journaled with the RPPS, never the
    PIN."""
    try:
        verdict = check_cert(identity)
        if not verdict.ok:
            raise CardRefused(verdict.words_fr, verdict.words_en)
        challenge = os.urandom(CHALLENGE_BYTES)
        proof = card.prove(pin, challenge)
    finally:
        if pin is not None:
            pin[:] = bytes(len(pin))
    try:
        _verify(identity, proof, challenge)
    except CardRefused:
        journal.append(
            "card.proof", f"rpps:{identity.rpps}", {"result": "refused", "purpose": purpose}
        )
        raise
    auth = check_auth_cert(proof.auth_cert_der, identity.extra_certs_der)
    if not auth.ok:
        journal.append(
            "card.proof", f"rpps:{identity.rpps}", {"result": "refused", "purpose": purpose}
        )
        raise CardRefused(
            f"Certificat d'authentification de la carte refusé : {auth.words_fr}",
            f"The card's authentication certificate is refused: {auth.words_en}",
        )
    journal.append("card.proof", f"rpps:{identity.rpps}", {"result": "ok", "purpose": purpose})
    return ProvenCard(
        identity,
        f"Carte authentifiée : signature de la carte vérifiée, {verdict.words_fr}",
        f"Card authenticated: the card's signature verified, {verdict.words_en}",
    )


def _verify(identity: CardIdentity, proof: CardProof, challenge: bytes) -> None:
    if proof.challenge != challenge:
        raise CardRefused(
            "La carte a signé autre chose que le défi du boîtier.",
            "The card signed something other than the box's challenge.",
        )
    try:
        auth = x509.load_der_x509_certificate(proof.auth_cert_der)
        signing = x509.load_der_x509_certificate(identity.signature_cert_der)
    except ValueError as exc:
        raise CardRefused(
            "Un certificat de la carte est illisible.", "A card certificate cannot be read."
        ) from exc
    if auth.subject != signing.subject or auth.issuer != signing.issuer:
        raise CardRefused(
            "Les certificats d'authentification et de signature de la carte ne désignent pas "
            "la même personne.",
            "The card's authentication and signature certificates do not name the same person.",
        )
    key = auth.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(proof.signature, challenge, padding.PKCS1v15(), SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(proof.signature, challenge, ec.ECDSA(SHA256()))
        else:
            raise InvalidSignature
    except InvalidSignature as exc:
        raise CardRefused(
            "La signature du défi par la carte est fausse : la carte n'a pas prouvé qui la "
            "détient.",
            "The card's signature of the challenge is wrong: the card did not prove who holds it.",
        ) from exc
