"""Certificates the box depends on (signers, organisms, trust roots): expired or expiring soon."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from balise.domain.params import Scope
from balise.services.params import ParameterService

WARN_DAYS = 30

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

    def words(self) -> tuple[str, str]:
        day = f"{self.not_after:%d/%m/%Y}"
        if self.expired:
            return (
                f"Certificat expiré le {day} : {self.role} ({self.where}) — {self.subject}. "
                "Les lots qui en dépendent ne peuvent plus avancer.",
                f"Certificate expired on {self.not_after:%Y-%m-%d}: {self.role} ({self.where}) — "
                f"{self.subject}. Lots depending on it cannot move on.",
            )
        return (
            f"Certificat à renouveler : {self.role} ({self.where}) expire le {day} — {self.subject}",
            f"Certificate to renew: {self.role} ({self.where}) expires on "
            f"{self.not_after:%Y-%m-%d} — {self.subject}",
        )


def expiring(params: ParameterService, now: datetime, warn_days: int = WARN_DAYS) -> list[Expiry]:
    """Every configured certificate expired, or expiring within ``warn_days``."""
    found: list[Expiry] = []
    horizon = now + timedelta(days=warn_days)
    for scope, name, role in _WATCHED:
        idents = [""] if scope is Scope.GLOBAL else params.ids(scope)
        for ident in idents:
            value = params.get(
                name,
                profile=ident if scope is Scope.PROFILE else None,
                organism=ident if scope is Scope.ORGANISM else None,
            )
            for pem in value if isinstance(value, list) else []:
                cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
                end = cert.not_valid_after_utc
                if end > horizon:
                    continue
                where = f"{scope.value} {ident}" if ident else "réglage global"
                found.append(
                    Expiry(
                        hashlib.sha256(pem.encode("ascii")).hexdigest()[:16],
                        where,
                        role,
                        cert.subject.rfc4514_string()[:120],
                        end,
                        end <= now,
                    )
                )
    return found
