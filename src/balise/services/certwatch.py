"""Certificates the box depends on (signers, organisms, trust roots, and the certificates its
mail servers present): expired or expiring soon."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from balise.domain.params import Scope
from balise.domain.servercert import MailService, SeenServerCert, ServerCertificate
from balise.domain.vocabulary import day
from balise.ports import Clock, Journal, ServerCertStore
from balise.services.params import ParameterService
from balise.services.settings import box_settings
from balise.services.settings import organisms as all_organisms
from balise.services.settings import profiles as all_profiles

WARN_DAYS = 30
# An alert when a certificate comes within each of these many days of its end (once each).
THRESHOLDS = (30, 7, 1)
# The mail servers' certificates are renewed by their host, usually with a month left (certbot
# renews Let's Encrypt's 90-day certificates when 30 days remain): a warning from 30 days would
# fire at every renewal. Within 14 days, the renewal is late and worth telling the practice.
SERVER_WARN_DAYS = 14
SERVER_THRESHOLDS = (14, 7, 1)

# (scope, parameter, words) of every certificate parameter worth watching.


@dataclass(frozen=True, slots=True)
class ServerWords:
    """For a certificate mail servers present: which servers, whose (French, English), and what
    stops when it ends (``plural``: more than one thing)."""

    servers_fr: str  # « du serveur d'envoi smtp.example.net:465 (praticien p1) »
    servers_en: str  # "of the sending server smtp.example.net:465 (practitioner p1)"
    stops_fr: str
    stops_en: str
    plural: bool = False


@dataclass(frozen=True, slots=True)
class Expiry:
    """One certificate past or near its end of validity."""

    fingerprint: str
    where: str
    role: str
    subject: str
    not_after: datetime
    expired: bool
    threshold: int | None = None  # the tightest of its thresholds reached (None: expired)
    server: ServerWords | None = None  # a certificate the practitioner's mail host must renew

    @property
    def first_threshold(self) -> int:
        return SERVER_THRESHOLDS[0] if self.server is not None else THRESHOLDS[0]

    @property
    def subject_key(self) -> str:
        """The alert subject: one per certificate and threshold (the first threshold keeps the
        plain form)."""
        if self.threshold is None or self.threshold == self.first_threshold:
            return f"cert:{self.fingerprint}"
        return f"cert:{self.fingerprint}:{self.threshold}d"

    def words(self) -> tuple[str, str]:
        on = day(self.not_after, "fr")
        if self.server is not None:
            return self._server_words(self.server, on)
        if self.expired:
            return (
                f"Certificat expiré le {on} : {self.role} ({self.where}) — {self.subject}. "
                "Les lots qui en dépendent ne peuvent plus avancer.",
                f"Certificate expired on {day(self.not_after, 'en')}: {self.role} ({self.where}) — "
                f"{self.subject}. Lots depending on it cannot move on.",
            )
        soon_fr, soon_en = self._soon()
        return (
            f"Certificat à renouveler : {self.role} ({self.where}) expire le {on}{soon_fr} — "
            f"{self.subject}",
            f"Certificate to renew: {self.role} ({self.where}) expires on "
            f"{day(self.not_after, 'en')}{soon_en} — {self.subject}",
        )

    def _server_words(self, server: ServerWords, on: str) -> tuple[str, str]:
        if self.expired:
            return (
                f"Certificat {server.servers_fr} expiré le {on} — {self.subject} : la boîte "
                f"refuse ce serveur (« certificat non reconnu ») ; {server.stops_fr} "
                f"reprendr{'ont' if server.plural else 'a'} quand l'hébergeur de la messagerie "
                "l'aura renouvelé.",
                f"Certificate {server.servers_en} expired on {day(self.not_after, 'en')} — "
                f"{self.subject}: the box refuses this server ('certificate not trusted'); "
                f"{server.stops_en} will resume once the mail host has renewed it.",
            )
        soon_fr, soon_en = self._soon()
        return (
            f"Certificat {server.servers_fr} expire le {on}{soon_fr} — {self.subject}. "
            "Prévenez l'hébergeur de la messagerie : s'il n'est pas renouvelé, "
            f"{server.stops_fr} s'arrêter{'ont' if server.plural else 'a'} à cette date "
            "(« certificat non reconnu »).",
            f"Certificate {server.servers_en} expires on {day(self.not_after, 'en')}{soon_en} — "
            f"{self.subject}. Tell the mail host: unless it is renewed, {server.stops_en} will "
            "stop on that date ('certificate not trusted').",
        )

    def _soon(self) -> tuple[str, str]:
        if self.threshold is None or self.threshold == self.first_threshold:
            return "", ""
        plural = "s" if self.threshold != 1 else ""
        return (
            f" (moins de {self.threshold} jour{plural})",
            f" (less than {self.threshold} day{plural})",
        )


def _threshold(end: datetime, now: datetime, thresholds: Sequence[int] = THRESHOLDS) -> int | None:
    left = end - now
    reached = [t for t in thresholds if left <= timedelta(days=t)]
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
    people, organisms = all_profiles(params), all_organisms(params)
    for role, per_profile in (
        ("carte du titulaire", [(p.id, p.signers_titular) for p in people]),
        ("carte de remplaçant", [(p.id, p.signers_locums) for p in people]),
    ):
        for ident, pems in per_profile:
            watched += [(f"{Scope.PROFILE.value} {ident}", role, pem) for pem in pems]
    for role, per_organism in (
        ("certificat de chiffrement", [(o.id, o.recipient_certs) for o in organisms]),
        ("certificat de signature des retours", [(o.id, o.return_signing_cert) for o in organisms]),
    ):
        for ident, pems in per_organism:
            watched += [(f"{Scope.ORGANISM.value} {ident}", role, pem) for pem in pems]
    box = box_settings(params)
    for role, pems in (
        ("racine IGC-Santé", box.igc_roots),
        ("autorité intermédiaire IGC-Santé", box.igc_intermediates),
        ("autorité TLS", box.ca_bundle),
    ):
        watched += [("réglage global", role, pem) for pem in pems]
    for where, role, pem in [*watched, *extra]:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        fingerprint = hashlib.sha256(pem.encode("ascii")).hexdigest()[:16]
        item = _expiry(cert, fingerprint, where, role, now, horizon)
        if item is not None:
            found.append(item)
    return found


def _expiry(
    cert: x509.Certificate,
    fingerprint: str,
    where: str,
    role: str,
    now: datetime,
    horizon: datetime,
    server: ServerWords | None = None,
) -> Expiry | None:
    """``cert`` as an Expiry, or None when it ends after ``horizon``."""
    end = cert.not_valid_after_utc
    if end > horizon:
        return None
    return Expiry(
        fingerprint,
        where,
        role,
        cert.subject.rfc4514_string()[:120],
        end,
        end <= now,
        None
        if end <= now
        else _threshold(end, now, THRESHOLDS if server is None else SERVER_THRESHOLDS),
        server,
    )


# What each mail server is called, and what stops without it (French, English).
_SERVICE_WORDS: dict[MailService, tuple[str, str, str, str]] = {
    "smtp": ("serveur d'envoi", "sending server", "l'envoi des lots", "sending the lots"),
    "pop3": (
        "serveur de relève",
        "mailbox server",
        "la relève des retours",
        "fetching the returns",
    ),
}


def _and(parts: Sequence[str], word: str) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} {word} {parts[-1]}"


class ServerCertWatch:
    """The certificates the practitioners' mail servers (SMTP, POP3) present, recorded after
    each verified TLS handshake and watched like the box's own: the mail host renews them, the
    box warns before sending or the purge stops on « certificat non reconnu »."""

    def __init__(self, store: ServerCertStore, journal: Journal, clock: Clock) -> None:
        self._store = store
        self._journal = journal
        self._clock = clock

    def seen(
        self,
        profile: str,
        service: MailService,
        host: str,
        port: int,
        cert: ServerCertificate | None,
    ) -> None:
        """Keep ``cert`` as what ``profile``'s ``service`` server presents now (it replaces the
        one seen before: a renewed certificate ends the watch of the old one); another
        certificate than before is journaled."""
        if cert is None:
            return
        when = self._clock.now().isoformat(timespec="seconds")
        with self._store.transaction():
            if self._store.record(profile, service, host, port, cert, when):
                self._journal.append(
                    "tls.server_certificate",
                    f"profile:{profile}",
                    {
                        "service": service,
                        "host": host,
                        "port": port,
                        "subject": cert.subject,
                        "not_after": cert.not_after.isoformat(),
                        "sha256": hashlib.sha256(cert.der).hexdigest(),
                    },
                )

    def seen_certificates(self) -> list[SeenServerCert]:
        return self._store.all()

    def expiring(self, now: datetime, warn_days: int = SERVER_WARN_DAYS) -> list[Expiry]:
        """The certificates last seen on the mail servers that are expired, or expiring within
        ``warn_days`` (SERVER_THRESHOLDS: 14, 7, 1 days — the host renews them itself): one per
        certificate, naming every server and practitioner that presents it."""
        horizon = now + timedelta(days=warn_days)
        by_cert: dict[bytes, list[SeenServerCert]] = {}
        for row in self._store.all():
            by_cert.setdefault(row.der, []).append(row)
        found: list[Expiry] = []
        order = list(_SERVICE_WORDS)
        for der, rows in by_cert.items():
            rows.sort(key=lambda r: (order.index(r.service), r.profile))
            services = [s for s in _SERVICE_WORDS if any(r.service == s for r in rows)]
            words = ServerWords(
                _and(
                    [
                        f"du {_SERVICE_WORDS[r.service][0]} {r.host}:{r.port} "
                        f"(praticien {r.profile})"
                        for r in rows
                    ],
                    "et",
                ),
                _and(
                    [
                        f"of the {_SERVICE_WORDS[r.service][1]} {r.host}:{r.port} "
                        f"(practitioner {r.profile})"
                        for r in rows
                    ],
                    "and",
                ),
                _and([_SERVICE_WORDS[s][2] for s in services], "et"),
                _and([_SERVICE_WORDS[s][3] for s in services], "and"),
                plural=len(services) > 1,
            )
            item = _expiry(
                x509.load_der_x509_certificate(der),
                hashlib.sha256(der).hexdigest()[:16],
                ", ".join(sorted({f"praticien {r.profile}" for r in rows})),
                ", ".join(f"{_SERVICE_WORDS[r.service][0]} {r.host}:{r.port}" for r in rows),
                now,
                horizon,
                words,
            )
            if item is not None:
                found.append(item)
        return found
