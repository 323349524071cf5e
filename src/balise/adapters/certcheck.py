"""Checks of the card's signature certificate before any PIN: validity at the clock's time, chain to
the configured IGC-Santé roots, nonRepudiation usage and, when a CRL is given, revocation and age."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal, TypeVar

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    ExpiredError,
    InsufficientRevinfoError,
    InvalidCertificateError,
    NotYetValidError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy,
    FreshnessReqType,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)

from balise.domain import vocabulary
from balise.domain.card import CardError, CardIdentity
from balise.domain.codes import TrustCode
from balise.ports import Clock

__all__ = [
    "CertCheck",
    "CertificateRefused",
    "CheckCode",
    "check_card",
    "check_signature_certificate",
    "check_signature_certificate_async",
]

CheckCode = Literal[
    "ok", "expired", "not_yet_valid", "unknown_issuer", "revoked", "bad_usage", "bad_crl", "invalid"
]

Usage = Literal["non_repudiation", "digital_signature"]

# A CRL past its nextUpdate still tells what it knew: use it (a revoked certificate stays revoked)
# and say its age; certvalidator's default would drop it silently.
_ANY_AGE: Final = timedelta(days=36500)
_T = TypeVar("_T")


class CertificateRefused(CardError):
    code = TrustCode.CERT_REFUSED


@dataclass(frozen=True, slots=True)
class CertCheck:
    """The verdict on the signature certificate, in words for the screen (French first)."""

    ok: bool
    code: CheckCode
    words: str
    words_en: str
    subject: str = ""
    not_after: datetime | None = None
    revocation_checked: bool = False
    crl_this_update: datetime | None = None
    crl_next_update: datetime | None = None
    crl_age: timedelta | None = None
    crl_stale: bool = False
    crl_words: str = ""  # French line on the CRL (date and age), "" without a CRL

    def raise_if_refused(self) -> None:
        if not self.ok:
            raise CertificateRefused(
                self.words, self.words_en, code=TrustCode(f"CERT_{self.code.upper()}")
            )


def _age_words(age: timedelta) -> str:
    if age < timedelta(hours=1):
        return "moins d'une heure"
    if age < timedelta(days=1):
        hours = int(age.total_seconds() // 3600)
        return f"{hours} heure" + ("s" if hours > 1 else "")
    return f"{age.days} jour" + ("s" if age.days > 1 else "")


def _load_certs(items: Sequence[bytes | str]) -> list[x509.Certificate]:
    """PEM text (one or more blocks, as the igc_* parameters hold) or DER bytes."""
    out: list[x509.Certificate] = []
    for item in items:
        data = item.encode("ascii") if isinstance(item, str) else item
        if b"-----BEGIN" in data:
            out += x509.load_pem_x509_certificates(data)
        else:
            out.append(x509.load_der_x509_certificate(data))
    return out


def _load_crl(data: bytes | str) -> x509.CertificateRevocationList:
    raw = data.encode("ascii") if isinstance(data, str) else data
    if b"-----BEGIN" in raw:
        return x509.load_pem_x509_crl(raw)
    return x509.load_der_x509_crl(raw)


def _asn1(cert: x509.Certificate) -> Any:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


def _result(code: CheckCode, fr: str, en: str, **fields: Any) -> CertCheck:
    return CertCheck(ok=code == "ok", code=code, words=fr, words_en=en, **fields)


async def check_signature_certificate_async(
    cert_der: bytes,
    *,
    moment: datetime,
    roots: Sequence[bytes | str],
    intermediates: Sequence[bytes | str] = (),
    crl: bytes | str | None = None,
    delta_crl: bytes | None = None,
    usage: Usage = "non_repudiation",
) -> CertCheck:
    """Check ``cert_der`` at ``moment`` against ``roots`` (the only trust anchors), building the
    path through ``intermediates`` (from the card and the configuration); never fetches. A
    ``delta_crl`` counts with ``crl`` when the latter names it (FreshestCRL). ``usage``: the key
    usage required (``digital_signature`` for the card's authentication certificate)."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError:
        return _result(
            "invalid",
            "Le certificat de signature de la carte est illisible.",
            "The card's signature certificate cannot be read.",
        )
    base: dict[str, Any] = {
        "subject": cert.subject.rfc4514_string(),
        "not_after": cert.not_valid_after_utc,
    }

    crl_obj: x509.CertificateRevocationList | None = None
    if crl is not None:
        try:
            crl_obj = _load_crl(crl)
        except ValueError:
            return _result(
                "bad_crl",
                "La liste de révocation est illisible : le certificat ne peut pas être vérifié.",
                "The revocation list cannot be read: the certificate cannot be checked.",
                **base,
            )
        this_update = crl_obj.last_update_utc
        next_update = crl_obj.next_update_utc
        age = moment - this_update
        stale = next_update is not None and next_update < moment
        base |= {
            "crl_this_update": this_update,
            "crl_next_update": next_update,
            "crl_age": age,
            "crl_stale": stale,
            "crl_words": (
                f"Liste de révocation du {vocabulary.moment(this_update, 'fr')} UTC "
                f"(âge : {_age_words(max(age, timedelta(0)))})"
                + (
                    f", périmée depuis le {vocabulary.day(next_update, 'fr')}"
                    if stale and next_update
                    else ""
                )
                + "."
            ),
        }

    # Time first, in words with the dates: the most common refusal.
    if moment < cert.not_valid_before_utc:
        return _result(
            "not_yet_valid",
            f"Le certificat de signature n'est pas encore valable (à partir du "
            f"{vocabulary.day(cert.not_valid_before_utc, 'fr')}). Vérifiez l'heure du boîtier.",
            f"The signature certificate is not valid yet (from "
            f"{vocabulary.day(cert.not_valid_before_utc, 'en')}). Check the box's clock.",
            **base,
        )
    if moment > cert.not_valid_after_utc:
        return _result(
            "expired",
            f"Le certificat de signature a expiré le {vocabulary.day(cert.not_valid_after_utc, 'fr')} : "
            "la carte doit être renouvelée.",
            f"The signature certificate expired on {vocabulary.day(cert.not_valid_after_utc, 'en')}: "
            "the card must be renewed.",
            **base,
        )

    try:
        trust = _load_certs(roots)
        others = _load_certs(intermediates)
    except ValueError:
        return _result(
            "invalid",
            "Un certificat d'autorité configuré est illisible.",
            "A configured authority certificate cannot be read.",
            **base,
        )
    # The CRL is required only when it is the one of this certificate's issuer; another CA's
    # CRL says nothing about it (and is said so).
    applies = crl_obj is not None and crl_obj.issuer == cert.issuer
    if crl_obj is not None and not applies:
        base["crl_words"] = (
            base["crl_words"] + " Elle ne concerne pas l'autorité de ce certificat : "
            "révocation non vérifiée."
        )
    rule = RevocationCheckingRule.CRL_REQUIRED if applies else RevocationCheckingRule.NO_CHECK
    context = ValidationContext(
        trust_roots=[_asn1(c) for c in trust],
        other_certs=[_asn1(c) for c in others],
        moment=moment,
        allow_fetching=False,
        crls=(
            [crl_obj.public_bytes(Encoding.DER), *([delta_crl] if delta_crl else [])]
            if applies and crl_obj is not None
            else []
        ),
        revinfo_policy=CertRevTrustPolicy(
            RevocationCheckingPolicy(rule, RevocationCheckingRule.NO_CHECK),
            freshness=_ANY_AGE,
            freshness_req_type=FreshnessReqType.MAX_DIFF_REVOCATION_VALIDATION,
        ),
    )
    validator = CertificateValidator(_asn1(cert), validation_context=context)
    try:
        await validator.async_validate_usage({usage})  # type: ignore[no-untyped-call]
    except RevokedError as exc:
        when = exc.revocation_dt
        return _result(
            "revoked",
            f"Le certificat de signature a été révoqué le {vocabulary.day(when, 'fr')} : la carte ne doit plus "
            "servir.",
            f"The signature certificate was revoked on {vocabulary.day(when, 'en')}: the card must not be used.",
            revocation_checked=True,
            **base,
        )
    except PathBuildingError:
        return _result(
            "unknown_issuer",
            "Le certificat de la carte n'est pas émis par une autorité IGC-Santé reconnue "
            "par ce boîtier.",
            "The card's certificate is not issued by an IGC-Santé authority this box trusts.",
            **base,
        )
    except (ExpiredError, NotYetValidError) as exc:
        return _result(
            "expired",
            "Une autorité de la chaîne du certificat n'est pas valable à cette date "
            f"({'expirée' if isinstance(exc, ExpiredError) else 'pas encore valable'}).",
            "An authority in the certificate's chain is not valid at this date.",
            **base,
        )
    except InsufficientRevinfoError:
        return _result(
            "bad_crl",
            "La liste de révocation ne permet pas de vérifier ce certificat (signature ou "
            "émetteur incorrects).",
            "The revocation list cannot vouch for this certificate (bad signature or issuer).",
            **base,
        )
    except InvalidCertificateError:
        return _result(
            "bad_usage",
            "Ce certificat n'est pas un certificat de signature (usage non-répudiation absent).",
            "This is not a signature certificate (no nonRepudiation key usage).",
            **base,
        )
    except (PathValidationError, ValidationError):
        return _result(
            "invalid",
            "La chaîne de certification du certificat de signature n'est pas valide.",
            "The signature certificate's chain is not valid.",
            **base,
        )
    return _result(
        "ok",
        f"Certificat de signature valable jusqu'au {vocabulary.day(cert.not_valid_after_utc, 'fr')}.",
        f"Signature certificate valid until {vocabulary.day(cert.not_valid_after_utc, 'en')}.",
        revocation_checked=applies,
        **base,
    )


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to the end from sync code, also from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def check_signature_certificate(
    cert_der: bytes,
    *,
    moment: datetime,
    roots: Sequence[bytes | str],
    intermediates: Sequence[bytes | str] = (),
    crl: bytes | str | None = None,
    delta_crl: bytes | None = None,
    usage: Usage = "non_repudiation",
) -> CertCheck:
    """Synchronous :func:`check_signature_certificate_async` (for workers and the CLI)."""
    return _run(
        check_signature_certificate_async(
            cert_der,
            moment=moment,
            roots=roots,
            intermediates=intermediates,
            crl=crl,
            delta_crl=delta_crl,
            usage=usage,
        )
    )


def check_card(
    identity: CardIdentity,
    clock: Clock,
    *,
    roots: Sequence[bytes | str],
    intermediates: Sequence[bytes | str] = (),
    crl: bytes | str | None = None,
    delta_crl: bytes | None = None,
) -> CertCheck:
    """Check the card's signature certificate at the clock's time, with the intermediates the
    card carries and the configured ones (``igc_roots``, ``igc_intermediates``)."""
    return check_signature_certificate(
        identity.signature_cert_der,
        moment=clock.now(),
        roots=roots,
        intermediates=[*identity.extra_certs_der, *intermediates],
        crl=crl,
        delta_crl=delta_crl,
    )


async def _check_encryption_async(
    cert_der: bytes, roots: Sequence[str], moment: datetime
) -> tuple[str, str] | None:
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        configured = _load_certs(roots)
    except ValueError:
        return "certificat illisible", "unreadable certificate"
    anchors = [c for c in configured if c.issuer == c.subject]
    others = [c for c in configured if c.issuer != c.subject]
    if not anchors:
        return (
            "aucune autorité SESAM-Vitale racine configurée (sesam_vitale_roots)",
            "no SESAM-Vitale root authority configured (sesam_vitale_roots)",
        )
    context = ValidationContext(
        trust_roots=[_asn1(c) for c in anchors],
        other_certs=[_asn1(c) for c in others],
        moment=moment,
        allow_fetching=False,
        revinfo_policy=CertRevTrustPolicy(
            RevocationCheckingPolicy(
                RevocationCheckingRule.NO_CHECK, RevocationCheckingRule.NO_CHECK
            )
        ),
    )
    validator = CertificateValidator(_asn1(cert), validation_context=context)
    try:
        await validator.async_validate_usage({"key_encipherment"})  # type: ignore[no-untyped-call]
    except PathBuildingError:
        return (
            "certificat non émis par l'autorité SESAM-Vitale configurée",
            "certificate not issued by the configured SESAM-Vitale authority",
        )
    except (ExpiredError, NotYetValidError):
        return "certificat hors de sa période de validité", "certificate outside its validity"
    except InvalidCertificateError:
        return (
            "certificat sans l'usage de chiffrement (keyEncipherment)",
            "certificate without the encryption usage (keyEncipherment)",
        )
    except (PathValidationError, ValidationError, ValueError):
        return "chaîne de certification invalide", "invalid certificate chain"
    return None


def check_encryption_certificate(
    cert_der: bytes, roots: Sequence[str], moment: datetime
) -> tuple[str, str] | None:
    """Why an organism's encryption certificate (from the directory) may not be used at
    ``moment`` — path to a configured SESAM-Vitale root (self-signed certificates of ``roots``;
    the others serve as intermediates), dates, keyEncipherment — in French and English; None when
    it may."""
    return _run(_check_encryption_async(cert_der, roots, moment))
