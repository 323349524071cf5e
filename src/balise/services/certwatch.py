"""Certificates the box depends on (signers, organisms, trust roots): expired or expiring soon."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from balise.domain.params import Scope
from balise.services.params import ParameterService

WARN_DAYS = 30
# An alert when a certificate comes within each of these many days of its end (once each).
THRESHOLDS = (30, 7, 1)

# (scope, parameter, words) of every certificate parameter worth watching.
_WATCHED = (
    (Scope.PROFILE, "signers.titular", "carte du titulaire"),
    (Scope.PROFILE, "signers.locums", "carte de remplaçant"),
    (Scope.ORGANISM, "recipient_certs", "certificat de chiffrement"),
    (Scope.ORGANISM, "return_signing_cert", "certificat de signature des retours"),
    (Scope.GLOBAL, "igc_roots", "racine IGC-Santé"),
    (Scope.GLOBAL, "igc_intermediates", "autorité intermédiaire IGC-Santé"),
    (Scope.GLOBAL, "ca_bundle", "autorité TLS"),
)


@dataclass(frozen=True, slots=True)
class Expiry:
    """One certificate past or near its end of validity."""

    fingerprint: str
    where: str
    role: str
    subject: str
    not_after: datetime
    expired: bool
    threshold: int | None = None  # the tightest of THRESHOLDS reached (None: expired)

    @property
    def subject_key(self) -> str:
        """The alert subject: one per certificate and threshold (30 days keeps the plain form)."""
        if self.threshold is None or self.threshold == THRESHOLDS[0]:
            return f"cert:{self.fingerprint}"
        return f"cert:{self.fingerprint}:{self.threshold}d"

    def words(self) -> tuple[str, str]:
        day = f"{self.not_after:%d/%m/%Y}"
        if self.expired:
            return (
                f"Certificat expiré le {day} : {self.role} ({self.where}) — {self.subject}. "
                "Les lots qui en dépendent ne peuvent plus avancer.",
                f"Certificate expired on {self.not_after:%Y-%m-%d}: {self.role} ({self.where}) — "
                f"{self.subject}. Lots depending on it cannot move on.",
            )
        soon_fr = f" (moins de {self.threshold} jour{'s' if self.threshold != 1 else ''})"
        soon_en = f" (less than {self.threshold} day{'s' if self.threshold != 1 else ''})"
        if self.threshold is None or self.threshold == THRESHOLDS[0]:
            soon_fr = soon_en = ""
        return (
            f"Certificat à renouveler : {self.role} ({self.where}) expire le {day}{soon_fr} — "
            f"{self.subject}",
            f"Certificate to renew: {self.role} ({self.where}) expires on "
            f"{self.not_after:%Y-%m-%d}{soon_en} — {self.subject}",
        )


def _threshold(end: datetime, now: datetime) -> int | None:
    left = end - now
    reached = [t for t in THRESHOLDS if left <= timedelta(days=t)]
    return min(reached) if reached else None


def expiring(
    params: ParameterService,
    now: datetime,
    warn_days: int = WARN_DAYS,
    *,
    extra: Sequence[tuple[str, str, str]] = (),
) -> list[Expiry]:
    """Every configured certificate — and each of ``extra`` (where, role, PEM), such as the
    organisms' certificates fetched from the directory — expired, or expiring within
    ``warn_days``, with the tightest of THRESHOLDS (30, 7, 1 days) it has reached."""
    found: list[Expiry] = []
    horizon = now + timedelta(days=warn_days)
    watched: list[tuple[str, str, str]] = []
    for scope, name, role in _WATCHED:
        idents = [""] if scope is Scope.GLOBAL else params.ids(scope)
        for ident in idents:
            value = params.get(
                name,
                profile=ident if scope is Scope.PROFILE else None,
                organism=ident if scope is Scope.ORGANISM else None,
            )
            where = f"{scope.value} {ident}" if ident else "réglage global"
            watched += [(where, role, pem) for pem in (value if isinstance(value, list) else [])]
    for where, role, pem in [*watched, *extra]:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        end = cert.not_valid_after_utc
        if end > horizon:
            continue
        found.append(
            Expiry(
                hashlib.sha256(pem.encode("ascii")).hexdigest()[:16],
                where,
                role,
                cert.subject.rfc4514_string()[:120],
                end,
                end <= now,
                None if end <= now else _threshold(end, now),
            )
        )
    return found
