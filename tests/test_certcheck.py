"""The card's signature certificate checked as the box does before any PIN: chain to the configured
roots, time, nonRepudiation, and a CRL (revocation and age) built with cryptography."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from balise.adapters.certcheck import (
    CertCheck,
    CertificateRefused,
    check_card,
    check_signature_certificate,
    check_signature_certificate_async,
)
from balise.domain.card import CardIdentity
from balise.sim.pki import Issued, TestPKI, build_pki
from tests.support.clock import TEST_NOW


@dataclass
class FixedClock:
    moment: datetime

    def now(self) -> datetime:
        return self.moment

    def is_synchronized(self) -> bool:
        return True


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """Another hierarchy with the SAME names as ours (only the keys differ)."""
    return build_pki(tmp_path_factory.mktemp("stranger-pki"), now=TEST_NOW)


def der(issued: Issued) -> bytes:
    return issued.cert_der.read_bytes()


def pem_text(issued: Issued) -> str:
    return issued.cert_pem.read_text()


def identity_of(issued: Issued, pki: TestPKI) -> CardIdentity:
    cert = issued.cert
    return CardIdentity(
        holder_name="Dr Jeanne TEST",
        rpps="10001234567",
        signature_cert_der=der(issued),
        extra_certs_der=(der(pki.intermediate),),  # as read from the card
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_id=b"\x02",
    )


def make_crl(
    issuer: Issued,
    *,
    revoked: tuple[x509.Certificate, ...] = (),
    this_update: datetime,
    next_update: datetime,
    pem: bool = False,
) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
    )
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(this_update - timedelta(hours=1))
            .build()
        )
    crl = builder.sign(issuer.key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM if pem else serialization.Encoding.DER)


def now() -> datetime:
    return TEST_NOW


def check(pki: TestPKI, issued: Issued, **kwargs: Any) -> CertCheck:
    args: dict[str, Any] = {"moment": now(), "roots": [pem_text(pki.root)], **kwargs}
    return check_signature_certificate(der(issued), **args)


def test_good_chain_through_the_card_intermediate_is_ok(pki: TestPKI) -> None:
    result = check_card(
        identity_of(pki.practitioner.signature, pki),
        FixedClock(now()),
        roots=[pem_text(pki.root)],  # as the igc_roots parameter stores them
    )
    assert result.ok and result.code == "ok"
    assert f"{pki.practitioner.signature.cert.not_valid_after_utc:%d/%m/%Y}" in result.words
    assert result.revocation_checked is False and result.crl_words == ""
    result.raise_if_refused()


def test_without_the_intermediate_the_issuer_is_unknown(pki: TestPKI) -> None:
    result = check(pki, pki.practitioner.signature)
    assert (result.ok, result.code) == (False, "unknown_issuer")
    # with the configured igc_intermediates it is found again
    assert check(pki, pki.practitioner.signature, intermediates=[pem_text(pki.intermediate)]).ok


def test_expired_practitioner_is_refused_in_words(pki: TestPKI) -> None:
    expired = pki.issue_practitioner(
        "10001234567",
        "Dr Jeanne TEST",
        not_before=now() - timedelta(days=800),
        not_after=now() - timedelta(days=2),
    )
    result = check_card(
        identity_of(expired.signature, pki), FixedClock(now()), roots=[der(pki.root)]
    )
    assert (result.ok, result.code) == (False, "expired")
    assert f"a expiré le {expired.signature.cert.not_valid_after_utc:%d/%m/%Y}" in result.words
    with pytest.raises(CertificateRefused, match="a expiré") as refused:
        result.raise_if_refused()
    assert refused.value.code == "CERT_EXPIRED"


def test_certificate_not_yet_valid_at_the_clock_time_says_check_the_clock(pki: TestPKI) -> None:
    # A Raspberry Pi without NTP may believe it is 1970.
    clock = FixedClock(datetime(1970, 1, 1, tzinfo=UTC))
    result = check_card(identity_of(pki.practitioner.signature, pki), clock, roots=[der(pki.root)])
    assert (result.ok, result.code) == (False, "not_yet_valid")
    assert "Vérifiez l'heure du boîtier" in result.words


def test_certificate_from_another_root_is_refused(pki: TestPKI, stranger: TestPKI) -> None:
    # Same names all the way up, different keys: only the signatures tell them apart.
    result = check(pki, stranger.practitioner.signature, intermediates=[der(stranger.intermediate)])
    assert (result.ok, result.code) == (False, "unknown_issuer")
    assert "autorité IGC-Santé reconnue" in result.words


def test_authentication_certificate_is_not_a_signature_certificate(pki: TestPKI) -> None:
    result = check(pki, pki.practitioner.authentication, intermediates=[der(pki.intermediate)])
    assert (result.ok, result.code) == (False, "bad_usage")
    assert "non-répudiation" in result.words


def test_revoked_by_the_intermediate_crl_is_refused_and_the_crl_age_is_told(
    pki: TestPKI,
) -> None:
    victim = pki.issue_practitioner("10007777777", "Dr Perdu CARTE")
    moment = now()
    crl = make_crl(
        pki.intermediate,
        revoked=(victim.signature.cert,),
        this_update=moment - timedelta(days=2, hours=3),
        next_update=moment + timedelta(days=5),
    )
    result = check(
        pki, victim.signature, moment=moment, intermediates=[der(pki.intermediate)], crl=crl
    )
    assert (result.ok, result.code) == (False, "revoked")
    assert "a été révoqué le" in result.words
    assert result.revocation_checked
    assert result.crl_age is not None and timedelta(days=2) < result.crl_age < timedelta(days=3)
    assert "âge : 2 jours" in result.crl_words


def test_good_certificate_passes_the_crl_and_its_age_is_reported(pki: TestPKI) -> None:
    moment = now()
    this_update = moment - timedelta(hours=5)
    crl = make_crl(
        pki.intermediate,
        revoked=(pki.issue_practitioner("10008888888", "Dr Autre PERSONNE").signature.cert,),
        this_update=this_update,
        next_update=moment + timedelta(days=7),
        pem=True,
    )
    result = check(
        pki, pki.practitioner.signature, moment=moment, intermediates=[der(pki.intermediate)],
        crl=crl,
    )  # fmt: skip
    assert result.ok and result.revocation_checked
    assert result.crl_this_update == this_update.replace(microsecond=0)
    assert result.crl_age is not None and abs(result.crl_age - timedelta(hours=5)) < timedelta(
        seconds=2
    )
    assert "âge : 5 heures" in result.crl_words and not result.crl_stale


def test_stale_crl_still_counts_and_is_said_stale(pki: TestPKI) -> None:
    victim = pki.issue_practitioner("10006666666", "Dr Vieille LISTE")
    moment = now()
    stale = make_crl(
        pki.intermediate,
        revoked=(victim.signature.cert,),
        this_update=moment - timedelta(days=20),
        next_update=moment - timedelta(days=10),
    )
    revoked = check(
        pki, victim.signature, moment=moment, intermediates=[der(pki.intermediate)], crl=stale
    )
    assert revoked.code == "revoked" and revoked.crl_stale
    assert "périmée depuis le" in revoked.crl_words
    fine = check(
        pki, pki.practitioner.signature, moment=moment, intermediates=[der(pki.intermediate)],
        crl=stale,
    )  # fmt: skip
    assert fine.ok and fine.crl_stale


def test_crl_signed_by_an_impostor_with_the_same_name_is_refused(
    pki: TestPKI, stranger: TestPKI
) -> None:
    forged = make_crl(
        stranger.intermediate,
        this_update=now() - timedelta(hours=1),
        next_update=now() + timedelta(days=1),
    )
    result = check(
        pki, pki.practitioner.signature, intermediates=[der(pki.intermediate)], crl=forged
    )
    assert (result.ok, result.code) == (False, "bad_crl")


def test_crl_of_another_authority_is_said_not_to_apply(pki: TestPKI) -> None:
    root_crl = make_crl(
        pki.root, this_update=now() - timedelta(hours=1), next_update=now() + timedelta(days=1)
    )
    result = check(
        pki, pki.practitioner.signature, intermediates=[der(pki.intermediate)], crl=root_crl
    )
    assert result.ok and not result.revocation_checked
    assert "ne concerne pas l'autorité de ce certificat" in result.crl_words


def test_unreadable_crl_is_refused(pki: TestPKI) -> None:
    result = check(
        pki, pki.practitioner.signature, intermediates=[der(pki.intermediate)], crl=b"\x30\x03junk"
    )
    assert (result.ok, result.code) == (False, "bad_crl")


async def test_checks_run_inside_an_event_loop(pki: TestPKI) -> None:
    direct = await check_signature_certificate_async(
        der(pki.practitioner.signature), moment=now(), roots=[der(pki.root)],
        intermediates=[der(pki.intermediate)],
    )  # fmt: skip
    # The sync form, called by mistake from the loop, still answers (in a thread).
    via_sync = check(pki, pki.practitioner.signature, intermediates=[der(pki.intermediate)])
    assert direct.ok and via_sync.ok
