"""A lot mail as the box builds it (PROFILE.md §2) — signed in-process with the test PKI's
practitioner key, enveloped for an organism — for the tests that send lots to the OCT simulator
without a box."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA256

from balise.cms import build_entity, build_enveloped_data, gzip_payload, sign_data
from balise.domain.lotmail import build_lot_mail
from balise.sim.pki import Issued, TestPKI
from tests.support.clock import TEST_NOW
from tests.support.mail_corpus import BAL_ADDRESS, EMITTER, ORGANISM_ADDRESS
from tests.support.oct_sim import flip_signature_bit


def lot_mail(
    pki: TestPKI,
    lot: bytes,
    number: int,
    *,
    tamper: bool = False,
    recipient: Issued | None = None,
    description_test: bool = True,
) -> bytes:
    """A lot mail as the box builds it (PROFILE.md §2), signed in-process with the test key;
    ``tamper`` flips one bit of the signature value after signing."""
    who = pki.practitioner.signature
    signed = sign_data(
        lot,
        who.cert_der.read_bytes(),
        lambda tbs: who.key.sign(tbs, PKCS1v15(), SHA256()),
        signing_time=TEST_NOW,
        extra_certs_der=[pki.intermediate.cert_der.read_bytes()],
    )
    if tamper:
        signed = flip_signature_bit(signed)
    entity = build_entity(
        gzip_payload(signed),
        emitter=EMITTER,
        lot_number=f"{number:03d}",
        test_flow=description_test,
    )
    envelope = build_enveloped_data(entity, [(recipient or pki.amo).cert_der.read_bytes()])
    return build_lot_mail(
        from_addr=BAL_ADDRESS,
        to_addr=ORGANISM_ADDRESS,
        subject=f"IR100500/{EMITTER}/2026112310000000001/00003",
        message_id=f"<2026112310000000001.{number:03d}.{EMITTER}@box.balise.test>",
        date=TEST_NOW,
        envelope_der=envelope,
    )
