"""The organisms' encryption certificates from the SESAM-Vitale public directory.

Each organism's entry ``cn=<régime><caisse>@<caisse>.<régime>.rss.fr`` is asked for its
``userCertificate;binary``; every certificate that comes back is validated (path to a
``sesam_vitale_roots`` CA, keyEncipherment, dates) before it may be used — LDAP proves nothing.
The last good certificate is kept when the directory is unreachable or answers garbage; a changed
certificate is journaled and alerted with both fingerprints and used only from its notBefore on.
Hand-set ``recipient_certs`` take precedence: the directory serves the organisms nobody pasted a
certificate for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from balise.domain.codes import TrustCode
from balise.domain.errors import BaliseError
from balise.domain.params import Scope
from balise.ports import Alerts, Clock, Journal, OrganismCertStore, OrganismDirectory
from balise.services.params import ParameterService
from balise.services.settings import box_settings, organism_settings

REFRESH_EVERY = timedelta(days=7)
# (certificate DER, configured roots PEM, moment) -> None, or why not (French, English).
EncryptionCheck = Callable[[bytes, Sequence[str], datetime], tuple[str, str] | None]
OutcomeKind = Literal["fetched", "changed", "unchanged", "unreachable", "refused", "skipped"]


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    organism: str
    kind: OutcomeKind
    fr: str
    en: str

    @property
    def ok(self) -> bool:
        return self.kind in ("fetched", "changed", "unchanged")


@dataclass(frozen=True, slots=True)
class CertLine:
    """One certificate of an organism as listed: where it came from and until when."""

    source: Literal["annuaire", "saisi"]
    role: str  # "en service", "à venir", "chiffrement"
    subject: str
    fingerprint: str
    not_before: str
    not_after: str


@dataclass(frozen=True, slots=True)
class OrganismCerts:
    organism: str
    directory_name: str | None
    certificates: tuple[CertLine, ...]
    last_check: str | None
    last_error: str | None
    used: Literal["annuaire", "saisi", "aucun"]


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _entry(cert: x509.Certificate, now: datetime) -> dict[str, Any]:
    der = cert.public_bytes(Encoding.DER)
    return {
        "pem": cert.public_bytes(Encoding.PEM).decode("ascii"),
        "fingerprint": fingerprint(der),
        "subject": cert.subject.rfc4514_string()[:200],
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "fetched": now.isoformat(timespec="seconds"),
    }


def _valid_at(entry: dict[str, Any] | None, now: datetime) -> bool:
    if not isinstance(entry, dict):
        return False
    try:
        start = datetime.fromisoformat(str(entry["not_before"]))
        end = datetime.fromisoformat(str(entry["not_after"]))
    except (KeyError, ValueError):
        return False
    return start <= now <= end


class OrganismCertService:
    """Refresh, keep and hand out the organisms' directory certificates."""

    def __init__(
        self,
        params: ParameterService,
        directory: Callable[[], OrganismDirectory] | None,
        store: OrganismCertStore,
        journal: Journal,
        clock: Clock,
        validate: EncryptionCheck,
        alerts: Alerts | None = None,
    ) -> None:
        self._params = params
        self._directory = directory
        self._store = store
        self._journal = journal
        self._clock = clock
        self._validate = validate
        self._alerts = alerts

    # -- names -----------------------------------------------------------------------------

    def directory_name(self, organism: str) -> str | None:
        """``01422@422.01.rss.fr`` for régime 01, caisse 422; None without both."""
        o = organism_settings(self._params, organism)
        regime, caisse = o.regime, o.caisse
        if regime is None or caisse is None:
            return None
        return f"{regime}{caisse}@{caisse}.{regime}.rss.fr"

    def _roots(self) -> list[str]:
        return list(box_settings(self._params).sesam_vitale_roots)

    # -- refresh ---------------------------------------------------------------------------

    def due(self, now: datetime | None = None) -> list[str]:
        """The organisms the directory never answered for, or not for a week (an unreachable
        directory is asked again at the next occasion; a refused answer waits its week)."""
        when = now or self._clock.now()
        out: list[str] = []
        for ident in self._params.ids(Scope.ORGANISM):
            record = self._store.load(ident) or {}
            last = record.get("last_answer")
            try:
                checked = datetime.fromisoformat(str(last)) if last else None
            except ValueError:
                checked = None
            if checked is None or when - checked >= REFRESH_EVERY:
                out.append(ident)
        return out

    def refresh(self, organisms: Sequence[str] | None = None) -> list[RefreshOutcome]:
        if self._directory is None:
            raise BaliseError(
                "annuaire SESAM-Vitale non configuré : balise params set sesam_vitale_directory "
                "ldap://hôte",
                "SESAM-Vitale directory not configured: balise params set "
                "sesam_vitale_directory ldap://host",
                code=TrustCode.DIRECTORY_NOT_CONFIGURED,
            )
        if not self._roots():
            raise BaliseError(
                "autorité SESAM-Vitale non configurée (sesam_vitale_roots) : aucun certificat "
                "de l'annuaire ne peut être vérifié",
                "SESAM-Vitale authority not configured (sesam_vitale_roots): no certificate "
                "from the directory can be checked",
                code=TrustCode.DIRECTORY_NO_ROOTS,
            )
        known = self._params.ids(Scope.ORGANISM)
        wanted = known if organisms is None else [o for o in organisms if o in known]
        directory = self._directory()
        return [self._refresh_one(directory, ident) for ident in wanted]

    def _refresh_one(self, directory: OrganismDirectory, ident: str) -> RefreshOutcome:
        cn = self.directory_name(ident)
        if cn is None:
            return RefreshOutcome(
                ident, "skipped", "régime ou caisse non renseignés", "régime or caisse not set"
            )
        now = self._clock.now()
        record: dict[str, Any] = self._store.load(ident) or {}
        record["cn"] = cn
        record["last_check"] = now.isoformat(timespec="seconds")
        try:
            values = directory.certificates(cn)
        except BaliseError as exc:
            return self._failed(ident, record, "unreachable", exc.fr, exc.en)
        if not values:
            return self._failed(
                ident, record, "refused",
                f"l'annuaire ne donne aucun certificat pour {cn}",
                f"the directory gives no certificate for {cn}",
            )  # fmt: skip
        candidates: list[x509.Certificate] = []
        problems: list[str] = []
        for der in values:
            try:
                cert = x509.load_der_x509_certificate(der)
            except ValueError:
                problems.append("valeur illisible (pas un certificat)")
                continue
            moment = max(now, cert.not_valid_before_utc)
            problem = self._validate(der, self._roots(), moment)
            if problem is not None:
                problems.append(problem[0])
                self._journal.append(
                    "organism.cert_refused",
                    f"organism:{ident}",
                    {"fingerprint": fingerprint(der), "words": problem[0]},
                )
                continue
            if cert.not_valid_after_utc < now:
                problems.append("certificat expiré")
                continue
            candidates.append(cert)
        if not candidates:
            why = "; ".join(dict.fromkeys(problems))
            outcome = self._failed(
                ident, record, "refused",
                f"aucun certificat valable dans l'annuaire pour {cn} ({why}) : non utilisé",
                f"no valid certificate in the directory for {cn} ({why}): not used",
            )  # fmt: skip
            self._alert_once(
                "organism_cert_invalid",
                ident,
                f"Organisme {ident} : {outcome.fr} ; le dernier certificat vérifié reste en usage",
                f"Organism {ident}: {outcome.en}; the last checked certificate stays in use",
            )
            return outcome
        usable = [c for c in candidates if c.not_valid_before_utc <= now]
        upcoming = [c for c in candidates if c.not_valid_before_utc > now]
        best = max(usable, key=lambda c: c.not_valid_after_utc) if usable else None
        record["next"] = (
            _entry(min(upcoming, key=lambda c: c.not_valid_before_utc), now) if upcoming else None
        )
        record["last_error"] = None
        record["last_answer"] = record["last_check"]
        old = record.get("current") if isinstance(record.get("current"), dict) else None
        kind: OutcomeKind = "unchanged"
        if best is not None:
            new = _entry(best, now)
            if old is None:
                kind = "fetched"
                record["current"] = new
                self._journal.append(
                    "organism.cert_fetched",
                    f"organism:{ident}",
                    {"cn": cn, "fingerprint": new["fingerprint"], "not_after": new["not_after"]},
                )
            elif old.get("fingerprint") != new["fingerprint"]:
                kind = "changed"
                record["current"] = new
                self._changed(ident, cn, old, new)
            else:
                record["current"] = old | {"fetched": old.get("fetched")}
        self._store.save(ident, record)
        current = record.get("current") or {}
        fr = (
            f"{cn} : certificat {str(current.get('fingerprint', ''))[:16]}… valable jusqu'au "
            f"{str(current.get('not_after', ''))[:10]}"
            if current
            else f"{cn} : aucun certificat en service pour l'instant"
        )
        if record["next"]:
            fr += f" ; le suivant servira à partir du {record['next']['not_before'][:10]}"
        words = {"fetched": "nouveau", "changed": "remplacé", "unchanged": "inchangé"}[kind]
        return RefreshOutcome(ident, kind, f"{fr} ({words})", f"{cn}: {kind}")

    def _changed(self, ident: str, cn: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        details = {
            "cn": cn,
            "old": str(old.get("fingerprint")),
            "new": str(new["fingerprint"]),
            "not_after": str(new["not_after"]),
        }
        self._journal.append("organism.cert_changed", f"organism:{ident}", details)
        if self._alerts is not None:
            alert_id = self._alerts.add_alert(
                "organism_cert_changed",
                f"organism:{ident}",
                (
                    f"Organisme {ident} ({cn}) : nouveau certificat de chiffrement vérifié "
                    f"(ancien {details['old'][:16]}…, nouveau {details['new'][:16]}…, valable "
                    f"jusqu'au {details['not_after'][:10]})",
                    f"Organism {ident} ({cn}): new encryption certificate checked (old "
                    f"{details['old'][:16]}…, new {details['new'][:16]}…)",
                ),
                details,
                self._clock.now().isoformat(timespec="seconds"),
            )
            self._journal.append(
                "alert.raised",
                f"organism:{ident}",
                {"kind": "organism_cert_changed", "alert": alert_id},
            )

    def _failed(
        self, ident: str, record: dict[str, Any], kind: OutcomeKind, fr: str, en: str
    ) -> RefreshOutcome:
        record["last_error"] = fr
        if kind == "refused":
            record["last_answer"] = record["last_check"]
        self._store.save(ident, record)
        self._journal.append(
            "organism.directory_failed", f"organism:{ident}", {"kind": kind, "words": fr}
        )
        kept = " ; le dernier certificat vérifié reste en usage" if record.get("current") else ""
        return RefreshOutcome(ident, kind, fr + kept, en)

    def _alert_once(self, kind: str, ident: str, fr: str, en: str) -> None:
        if self._alerts is None or self._alerts.open_alert(kind, f"organism:{ident}"):
            return
        alert_id = self._alerts.add_alert(
            kind, f"organism:{ident}", (fr, en), {}, self._clock.now().isoformat(timespec="seconds")
        )
        self._journal.append("alert.raised", f"organism:{ident}", {"kind": kind, "alert": alert_id})

    # -- use -------------------------------------------------------------------------------

    def directory_pems(self, organism: str, now: datetime | None = None) -> list[str]:
        """The directory certificate usable now (the next one once its notBefore has come)."""
        when = now or self._clock.now()
        record = self._store.load(organism) or {}
        for key in ("next", "current"):
            entry = record.get(key)
            if _valid_at(entry, when):
                return [str(entry["pem"])]  # type: ignore[index]
        return []

    def recipient_pems(self, organism: str) -> list[str]:
        """What a lot for ``organism`` is encrypted to: the hand-set ``recipient_certs`` when
        there are some, else the directory certificate the box fetched and validated."""
        hand = organism_settings(self._params, organism).recipient_certs
        return list(hand) if hand else self.directory_pems(organism)

    def watched(self) -> list[tuple[str, str, str]]:
        """(where, role, PEM) of every directory certificate kept, for the expiry watch."""
        out: list[tuple[str, str, str]] = []
        for ident in self._params.ids(Scope.ORGANISM):
            record = self._store.load(ident) or {}
            for key in ("current", "next"):
                entry = record.get(key)
                if isinstance(entry, dict) and isinstance(entry.get("pem"), str):
                    out.append(
                        (f"organisme {ident}, annuaire", "certificat de chiffrement", entry["pem"])
                    )
        return out

    # -- listing ---------------------------------------------------------------------------

    def listing(self) -> list[OrganismCerts]:
        out: list[OrganismCerts] = []
        now = self._clock.now()
        for ident in self._params.ids(Scope.ORGANISM):
            lines: list[CertLine] = []
            hand = organism_settings(self._params, ident).recipient_certs
            for pem in hand:
                cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
                lines.append(
                    CertLine(
                        "saisi",
                        "chiffrement",
                        cert.subject.rfc4514_string()[:120],
                        fingerprint(cert.public_bytes(Encoding.DER)),
                        cert.not_valid_before_utc.isoformat(),
                        cert.not_valid_after_utc.isoformat(),
                    )
                )
            record = self._store.load(ident) or {}
            for key, role in (("current", "en service"), ("next", "à venir")):
                entry = record.get(key)
                if isinstance(entry, dict):
                    lines.append(
                        CertLine(
                            "annuaire",
                            role,
                            str(entry.get("subject", "")),
                            str(entry.get("fingerprint", "")),
                            str(entry.get("not_before", "")),
                            str(entry.get("not_after", "")),
                        )
                    )
            used: Literal["annuaire", "saisi", "aucun"] = (
                "saisi" if hand else "annuaire" if self.directory_pems(ident, now) else "aucun"
            )
            last_error = record.get("last_error")
            out.append(
                OrganismCerts(
                    ident,
                    self.directory_name(ident),
                    tuple(lines),
                    str(record["last_check"]) if record.get("last_check") else None,
                    str(last_error) if last_error else None,
                    used,
                )
            )
        return out
