"""IGC-Santé revocation lists: fetched from the configured certificates' CRL distribution points
and the ``crl_url`` parameter, each verified (signed by an accepted issuer — a CA of ``igc_roots``
or ``igc_intermediates`` — with sane thisUpdate/nextUpdate, never older than the one kept), kept,
and journaled. The card check reads them before any PIN (see balise.app.context.cert_checker)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from balise.domain.codes import TrustCode
from balise.domain.crl import CrlAge, StoredCrl, crl_age
from balise.domain.errors import BaliseError
from balise.domain.vocabulary import moment
from balise.ports import Clock, CrlStore, HttpFetcher, Journal
from balise.services.params import ParameterService
from balise.services.settings import box_settings, profiles

# A CRL dated a little ahead of the box's clock is a clock difference, not a forgery.
CLOCK_SKEW = timedelta(minutes=10)
MAX_SOURCES = 32

OutcomeKind = Literal["stored", "unchanged", "refused", "unreachable"]


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    """What one address gave: a CRL stored (or the same one again), or why nothing was kept."""

    url: str
    kind: OutcomeKind
    fr: str
    en: str
    issuer: str = ""
    crl_kind: Literal["full", "delta"] | None = None
    number: int | None = None
    this_update: datetime | None = None
    next_update: datetime | None = None
    revoked: int | None = None

    @property
    def ok(self) -> bool:
        return self.kind in ("stored", "unchanged")


@dataclass(frozen=True, slots=True)
class IssuerCrl:
    """An accepted issuer and the CRLs kept for it (None: none yet)."""

    issuer_key: str
    subject: str
    full: StoredCrl | None
    delta: StoredCrl | None
    age: CrlAge | None


def issuer_key(ca: x509.Certificate) -> str:
    """Names an issuing CA by its name AND its key (a renewed CA key under the same name is
    another issuer)."""
    spki = ca.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(ca.subject.public_bytes() + b"\0" + spki).hexdigest()[:32]


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    if b"-----BEGIN" in data[:64]:
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def _pems(value: Sequence[str]) -> list[x509.Certificate]:
    out: list[x509.Certificate] = []
    for pem in value:
        try:
            out.append(x509.load_pem_x509_certificate(pem.encode("ascii")))
        except ValueError:
            continue
    return out


def _distribution_points(cert: x509.Certificate, extension: type[x509.ExtensionType]) -> list[str]:
    try:
        points = cert.extensions.get_extension_for_class(extension).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return _uris(points)


def _uris(points: object) -> list[str]:
    urls: list[str] = []
    for point in points:  # type: ignore[attr-defined]
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier):
                value = name.value.strip()
                if value.lower().startswith(("http://", "https://")):
                    urls.append(value)
    return urls


def _crl_number(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except (x509.ExtensionNotFound, ValueError):
        return None


def _delta_base(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value.crl_number
    except (x509.ExtensionNotFound, ValueError):
        return None


def _can_sign_crls(ca: x509.Certificate) -> bool:
    try:
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    except ValueError:
        return False
    return usage.crl_sign


def _short(name: x509.Name) -> str:
    cns = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else name.rfc4514_string()[:80]


def configured_sources(params: ParameterService) -> list[str]:
    """``crl_url``, then the CRL distribution points of the configured certificates (the
    practitioners' cards, the intermediates): also what the firewall must let through."""
    urls: list[str] = []
    box = box_settings(params)
    if box.crl_url is not None and box.crl_url.strip():
        urls.append(box.crl_url.strip())
    certs = _pems(box.igc_intermediates)
    for profile in profiles(params):
        certs += _pems(profile.signers_titular) + _pems(profile.signers_locums)
    for cert in certs:
        urls += _distribution_points(cert, x509.CRLDistributionPoints)
    return list(dict.fromkeys(urls))


class CrlService:
    """Fetch, verify and keep the CRLs of the accepted issuers; tell what is kept."""

    def __init__(
        self,
        params: ParameterService,
        fetcher: HttpFetcher,
        store: CrlStore,
        journal: Journal,
        clock: Clock,
    ) -> None:
        self._params = params
        self._fetcher = fetcher
        self._store = store
        self._journal = journal
        self._clock = clock

    # -- what is trusted and where to look ----------------------------------------------------

    def issuers(self) -> list[x509.Certificate]:
        """The accepted issuers: the configured IGC-Santé CAs (roots and intermediates)."""
        box = box_settings(self._params)
        cas = _pems(box.igc_intermediates) + _pems(box.igc_roots)
        unique: dict[str, x509.Certificate] = {}
        for ca in cas:
            unique.setdefault(issuer_key(ca), ca)
        return list(unique.values())

    def grace(self) -> timedelta:
        return timedelta(hours=box_settings(self._params).crl_grace_hours)

    def sources(self) -> list[str]:
        """``crl_url`` first, then the CRL distribution points of the configured certificates
        (the practitioners' cards, the intermediates), then the delta CRLs the kept CRLs name."""
        urls = configured_sources(self._params)
        for stored in self._store.all():
            if stored.kind == "full":
                try:
                    crl = load_crl(stored.der)
                    freshest = crl.extensions.get_extension_for_class(x509.FreshestCRL).value
                except (x509.ExtensionNotFound, ValueError):
                    continue
                urls += _uris(freshest)
        return list(dict.fromkeys(urls))[:MAX_SOURCES]

    # -- fetching -------------------------------------------------------------------------------

    def fetch_all(self) -> list[FetchOutcome]:
        """Every source once; each outcome journaled. Raises nothing for one bad source."""
        issuers = self.issuers()
        outcomes = [self._fetch_one(url, issuers) for url in self.sources()]
        # A kept CRL may name a delta CRL fetched for the first time: one more pass for those.
        seen = {o.url for o in outcomes}
        outcomes += [self._fetch_one(u, issuers) for u in self.sources() if u not in seen]
        return outcomes

    def _fetch_one(self, url: str, issuers: list[x509.Certificate]) -> FetchOutcome:
        try:
            data = self._fetcher.fetch(url)
        except BaliseError as exc:
            return self._refused(url, "unreachable", exc.fr, exc.en, exc.code)
        return self.accept(url, data, issuers)

    def accept(
        self, url: str, data: bytes, issuers: list[x509.Certificate] | None = None
    ) -> FetchOutcome:
        """Verify ``data`` as a CRL of an accepted issuer and keep it if it is newer."""
        now = self._clock.now()
        try:
            crl = load_crl(data)
        except ValueError:
            return self._refused(
                url, "refused", "liste de révocation illisible",
                "not a readable revocation list", TrustCode.CRL_UNREADABLE,
            )  # fmt: skip
        accepted = self.issuers() if issuers is None else issuers
        issuer = next(
            (
                ca
                for ca in accepted
                if ca.subject == crl.issuer and crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
            ),
            None,
        )
        if issuer is None:
            return self._refused(
                url, "refused",
                f"liste signée par une autorité non acceptée par ce boîtier ({_short(crl.issuer)})"
                " : ignorée",
                f"list signed by an authority this box does not accept ({_short(crl.issuer)}): "
                "ignored",
                TrustCode.CRL_UNTRUSTED,
            )  # fmt: skip
        if not _can_sign_crls(issuer):
            return self._refused(
                url, "refused", "l'autorité n'a pas le droit de signer des listes de révocation",
                "the authority may not sign revocation lists", TrustCode.CRL_UNTRUSTED,
            )  # fmt: skip
        this_update = crl.last_update_utc
        next_update = crl.next_update_utc
        if next_update is None or next_update <= this_update:
            return self._refused(
                url, "refused", "liste sans date de prochaine mise à jour valable",
                "list without a valid next update", TrustCode.CRL_DATES,
            )  # fmt: skip
        if this_update > now + CLOCK_SKEW:
            return self._refused(
                url, "refused",
                f"liste émise dans le futur ({moment(this_update, 'fr')} UTC) : vérifiez l'heure "
                "du boîtier",
                f"list issued in the future ({moment(this_update, 'en')} UTC): check the box's "
                "clock",
                TrustCode.CRL_DATES,
            )  # fmt: skip
        key = issuer_key(issuer)
        base = _delta_base(crl)
        kind: Literal["full", "delta"] = "full" if base is None else "delta"
        number = _crl_number(crl)
        der = crl.public_bytes(Encoding.DER)
        kept = self._store.get(key, kind)
        facts = {
            "issuer": _short(issuer.subject),
            "crl_kind": kind,
            "number": number,
            "this_update": this_update,
            "next_update": next_update,
            "revoked": len(crl),
        }
        if kept is not None:
            old = load_crl(kept.der)
            old_number = _crl_number(old)
            older = (
                number < old_number
                if number is not None and old_number is not None
                else this_update < old.last_update_utc
            )
            if older:
                return self._refused(
                    url, "refused",
                    f"liste plus ancienne que celle déjà conservée (du "
                    f"{moment(old.last_update_utc, 'fr')} UTC) : la plus récente est gardée",
                    "list older than the one already kept: the newer one stays",
                    TrustCode.CRL_OLDER, **facts,
                )  # fmt: skip
        fetched = now.isoformat(timespec="seconds")
        same = kept is not None and kept.der == der
        self._store.put(StoredCrl(key, kind, der, url, fetched))
        age = crl_age(this_update, next_update, now, self.grace())
        late = "" if age.freshness == "fresh" else f" ; {age.words()[0]}"
        late_en = "" if age.freshness == "fresh" else f"; {age.words()[1]}"
        label = "liste delta" if kind == "delta" else "liste"
        fr = (
            f"{label} de {_short(issuer.subject)} n° {number if number is not None else '?'} du "
            f"{moment(this_update, 'fr')} UTC, prochaine le {moment(next_update, 'fr')} UTC, "
            f"{len(crl)} certificat(s) révoqué(s)" + (" (inchangée)" if same else "") + late
        )
        en = (
            f"{'delta list' if kind == 'delta' else 'list'} of {_short(issuer.subject)} no. "
            f"{number if number is not None else '?'} of {moment(this_update, 'en')} UTC, next on "
            f"{moment(next_update, 'en')} UTC, {len(crl)} revoked certificate(s)"
            + (" (unchanged)" if same else "")
            + late_en
        )
        self._journal.append(
            "crl.unchanged" if same else "crl.stored",
            f"crl:{key}",
            {
                "url": url,
                "issuer": _short(issuer.subject),
                "kind": kind,
                "number": number,
                "this_update": this_update.isoformat(),
                "next_update": next_update.isoformat(),
                "revoked": len(crl),
                "sha256": hashlib.sha256(der).hexdigest(),
            },
        )
        return FetchOutcome(url, "unchanged" if same else "stored", fr, en, **facts)  # type: ignore[arg-type]

    def _refused(
        self, url: str, kind: OutcomeKind, fr: str, en: str, code: StrEnum, **facts: object
    ) -> FetchOutcome:
        self._journal.append(
            "crl.refused", f"crl-url:{url[:200]}", {"url": url[:500], "code": code, "words": fr}
        )
        return FetchOutcome(url, kind, fr, en, **facts)  # type: ignore[arg-type]

    # -- what the card check reads ----------------------------------------------------------

    def issuer_of(self, cert: x509.Certificate) -> x509.Certificate | None:
        """The accepted CA that issued ``cert`` (by name and signature), if any."""
        for ca in self.issuers():
            if ca.subject != cert.issuer:
                continue
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
                continue
            return ca
        return None

    def for_certificate(self, cert_der: bytes) -> IssuerCrl | None:
        """The CRLs kept for the issuer of ``cert_der``; None when no accepted CA issued it."""
        try:
            cert = x509.load_der_x509_certificate(cert_der)
        except ValueError:
            return None
        ca = self.issuer_of(cert)
        return None if ca is None else self._issuer_crl(ca)

    def _issuer_crl(self, ca: x509.Certificate) -> IssuerCrl:
        key = issuer_key(ca)
        full = self._store.get(key, "full")
        delta = self._store.get(key, "delta")
        age = None
        if full is not None:
            try:
                crl = load_crl(full.der)
            except ValueError:
                full = None
            else:
                if crl.next_update_utc is not None:
                    age = crl_age(
                        crl.last_update_utc, crl.next_update_utc, self._clock.now(), self.grace()
                    )
        if full is not None and delta is not None:
            try:
                base = _delta_base(load_crl(delta.der))
                number = _crl_number(load_crl(full.der))
            except ValueError:
                base = number = None
            if base is None or number is None or base > number:
                delta = None  # a delta for another base CRL says nothing reliable here
        return IssuerCrl(key, _short(ca.subject), full, delta, age)

    def status(self) -> list[IssuerCrl]:
        """Every accepted issuer and what is kept for it."""
        return [self._issuer_crl(ca) for ca in self.issuers()]


def revocation_words(kept: IssuerCrl | None, *, production: bool) -> tuple[bool, str, str]:
    """Whether the card may be used as far as the CRL's freshness goes, and the line shown before
    the PIN: no CRL or one past its nextUpdate plus the grace refuses in production and warns
    otherwise; a CRL past its nextUpdate within the grace warns."""
    if kept is None or kept.full is None or kept.age is None:
        lead_fr = "" if production else "Attention : "
        lead_en = "" if production else "Warning: "
        return (
            not production,
            lead_fr + "aucune liste de révocation pour l'autorité de cette carte : sa révocation "
            "ne peut pas être vérifiée (le technicien lance « balise crl fetch »).",
            lead_en + "no revocation list for this card's authority: its revocation cannot be "
            "checked (the technician runs 'balise crl fetch').",
        )
    fr, en = kept.age.words()
    if kept.age.freshness == "stale":
        if production:
            return (
                False,
                f"{fr[0].upper()}{fr[1:]} ; une liste à jour doit être téléchargée "
                "(« balise crl fetch ») avant de signer.",
                f"{en[0].upper()}{en[1:]}; a current list must be downloaded "
                "('balise crl fetch') before signing.",
            )
        return True, f"Attention : {fr}.", f"Warning: {en}."
    if kept.age.freshness == "late":
        return True, f"Attention : {fr}.", f"Warning: {en}."
    return True, f"Révocation vérifiée ({fr}).", f"Revocation checked ({en})."
