"""The typed parameter schema: names, scopes, secrecy and validation of every value (pure)."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography import x509

from balise.domain.codes import ParamCode
from balise.domain.errors import ValidationError
from balise.domain.lotmail import DEFAULT_CODE6
from balise.domain.relay import parse_allow_list
from balise.domain.update import version_or_empty
from balise.domain.vocabulary import day


class Scope(StrEnum):
    GLOBAL = "global"
    PROFILE = "profile"
    ORGANISM = "organism"


Value = str | int | list[str]


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """How one parameter is named, scoped, validated and shown."""

    name: str
    scope: Scope
    label_fr: str
    label_en: str
    parse: Callable[[str, datetime], Value]
    secret: bool = False
    default: Value | None = None
    hashed: bool = False  # stored as an Argon2id hash, never as the value


def _invalid(name: str, fr: str, en: str) -> ValidationError:
    return ValidationError(f"{name} : {fr}", f"{name}: {en}", code=ParamCode.PARAM_INVALID)


def _text(max_len: int = 200) -> Callable[[str, datetime], Value]:
    def parse(raw: str, _now: datetime) -> Value:
        value = raw.strip()
        if not value or len(value) > max_len or any(ord(c) < 0x20 for c in value):
            raise ValueError(f"texte de 1 à {max_len} caractères imprimables attendu")
        return value

    return parse


def _digits(n: int) -> Callable[[str, datetime], Value]:
    def parse(raw: str, _now: datetime) -> Value:
        value = raw.strip()
        if not re.fullmatch(rf"[0-9]{{{n}}}", value):
            raise ValueError(f"{n} chiffres attendus")
        return value

    return parse


def _int_range(lo: int, hi: int) -> Callable[[str, datetime], Value]:
    def parse(raw: str, _now: datetime) -> Value:
        value = raw.strip()
        if not re.fullmatch(r"[0-9]{1,9}", value) or not lo <= int(value) <= hi:
            raise ValueError(f"nombre entier entre {lo} et {hi} attendu")
        return int(value)

    return parse


def _choice(*choices: str) -> Callable[[str, datetime], Value]:
    def parse(raw: str, _now: datetime) -> Value:
        value = raw.strip()
        if value not in choices:
            raise ValueError("valeur attendue parmi : " + ", ".join(choices))
        return value

    return parse


_HOST_RE = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_IPV4_RE = re.compile(r"(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}")
_EMAIL_RE = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def parse_host(raw: str, _now: datetime) -> Value:
    value = raw.strip().lower()
    if not (_IPV4_RE.fullmatch(value) or _HOST_RE.fullmatch(value)):
        raise ValueError("nom d'hôte ou adresse IPv4 attendu")
    return value


def parse_email(raw: str, _now: datetime) -> Value:
    value = raw.strip()
    if not _EMAIL_RE.fullmatch(value):
        raise ValueError("adresse électronique complète attendue (nom@domaine.tld)")
    return value.lower()


_PEM_RE = re.compile(r"-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")


def _certificates(*, allow_expired: bool, at_least: int = 1) -> Callable[[str, datetime], Value]:
    def parse(raw: str, now: datetime) -> Value:
        blocks = _PEM_RE.findall(raw)
        if len(blocks) < at_least:
            raise ValueError("certificat(s) PEM attendu(s)")
        out: list[str] = []
        for block in blocks:
            try:
                cert = x509.load_pem_x509_certificate(block.encode("ascii"))
            except ValueError as exc:
                raise ValueError("un certificat ne se lit pas (PEM invalide)") from exc
            if not allow_expired and cert.not_valid_after_utc < now:
                subject = cert.subject.rfc4514_string()
                raise ValueError(
                    f"certificat expiré le {day(cert.not_valid_after_utc, 'fr')} ({subject})"
                )
            if not allow_expired and cert.not_valid_before_utc > now:
                raise ValueError("certificat pas encore valide")
            out.append(block.strip() + "\n")
        return out

    return parse


def _ldap_url(raw: str, _now: datetime) -> Value:
    value = raw.strip()
    match = re.fullmatch(r"ldap://([A-Za-z0-9.-]{1,253})(?::([0-9]{1,5}))?/?", value)
    if not match or (match.group(2) and not 1 <= int(match.group(2)) <= 65535):
        raise ValueError("adresse ldap://hôte[:port] attendue")
    parse_host(match.group(1), _now)
    return value.rstrip("/")


def _http_url(raw: str, _now: datetime) -> Value:
    """An http:// or https:// address of a host (a CRL is signed: plain HTTP is how the
    IGC-Santé publishes them); printable ASCII only, no credentials in it."""
    value = raw.strip()
    match = re.fullmatch(
        r"(https?)://([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::([0-9]{1,5}))?"
        r"(/[\x21-\x7e]{0,400})?",
        value,
    )
    if not match or (match.group(3) and not 1 <= int(match.group(3)) <= 65535):
        raise ValueError("adresse http://hôte[:port]/chemin ou https://… attendue")
    host = match.group(2)
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise ValueError("adresse http://hôte[:port]/chemin ou https://… attendue") from exc
    else:
        parse_host(host, _now)
    return value


def _update_version(raw: str, _now: datetime) -> Value:
    """A version the technician allows (or empty: none), as balise.domain.update checks it."""
    try:
        return version_or_empty(raw)
    except ValidationError as exc:
        raise ValueError(exc.fr) from exc


def _passphrase(raw: str, _now: datetime) -> Value:
    if len(raw) < 10 or len(raw) > 256:
        raise ValueError("phrase de passe de 10 à 256 caractères attendue")
    return raw


def _password(raw: str, _now: datetime) -> Value:
    value = raw.rstrip("\r\n")
    if not value or len(value) > 512 or "\n" in value:
        raise ValueError("mot de passe d'une ligne attendu")
    return value


def _path(raw: str, _now: datetime) -> Value:
    value = raw.strip()
    if not value.startswith("/") or "\x00" in value:
        raise ValueError("chemin absolu attendu")
    return value


def _domains(raw: str, _now: datetime) -> Value:
    items = [d.strip().lower() for d in raw.replace(",", " ").split() if d.strip()]
    for item in items:
        bare = item[2:] if item.startswith("*.") else item
        if not _HOST_RE.fullmatch(bare) or "." not in bare:
            raise ValueError(f"domaine invalide : {item}")
    return items


def _relay_services(raw: str, _now: datetime) -> Value:
    """The card-authenticated relay's allow-list (issue 20): ``name=https://host[:port]/base``
    entries separated by spaces, commas or new lines, as balise.domain.relay checks them."""
    items = [i for i in raw.replace(",", " ").split() if i]
    try:
        services = parse_allow_list(items)
    except ValidationError as exc:
        raise ValueError(exc.fr) from exc
    return [f"{s.name}={s.url.rstrip('/')}" for s in services.values()]


_S = Scope
SCHEMA: dict[tuple[Scope, str], ParamSpec] = {
    (spec.scope, spec.name): spec
    for spec in (
        # global
        ParamSpec(
            "mode", _S.GLOBAL, "Mode", "Mode", _choice("production", "test", "demo"), default="test"
        ),
        ParamSpec(
            "ca_bundle",
            _S.GLOBAL,
            "Autorités TLS de confiance (PEM)",
            "Trusted TLS CAs (PEM)",
            _certificates(allow_expired=False),
        ),
        ParamSpec(
            "igc_roots",
            _S.GLOBAL,
            "Racines IGC-Santé (PEM)",
            "IGC-Santé roots (PEM)",
            _certificates(allow_expired=False),
        ),
        ParamSpec(
            "igc_intermediates",
            _S.GLOBAL,
            "Autorités intermédiaires IGC-Santé (PEM)",
            "IGC-Santé intermediates (PEM)",
            _certificates(allow_expired=False),
        ),
        ParamSpec(
            "crl_url", _S.GLOBAL, "Adresse de la liste de révocation", "CRL address", _http_url
        ),
        ParamSpec(
            "sesam_vitale_roots",
            _S.GLOBAL,
            "Autorités SESAM-Vitale des certificats des organismes (PEM)",
            "SESAM-Vitale authorities of the organisms' certificates (PEM)",
            _certificates(allow_expired=False),
        ),
        ParamSpec(
            "sesam_vitale_directory",
            _S.GLOBAL,
            "Annuaire SESAM-Vitale des organismes (ldap://hôte[:port])",
            "SESAM-Vitale organism directory (ldap://host[:port])",
            _ldap_url,
        ),
        ParamSpec(
            "sesam_vitale_base",
            _S.GLOBAL,
            "Base de recherche de l'annuaire (sinon celle du mode)",
            "Directory search base (else the mode's)",
            _text(300),
        ),
        ParamSpec(
            "crl_grace_hours",
            _S.GLOBAL,
            "Délai de grâce d'une liste de révocation périmée (heures)",
            "Grace for an out-of-date revocation list (hours)",
            _int_range(0, 24 * 7),
            default=24,
        ),
        ParamSpec(
            "arl_overdue_days",
            _S.GLOBAL,
            "Délai d'ARL (jours)",
            "ARL overdue delay (days)",
            _int_range(1, 60),
            default=3,
        ),
        ParamSpec(
            "quarantine_retention_days",
            _S.GLOBAL,
            "Conservation de la quarantaine (jours)",
            "Quarantine retention (days)",
            _int_range(0, 365),
            default=30,
        ),
        ParamSpec(
            "quarantine_quota_mib",
            _S.GLOBAL,
            "Quota de quarantaine (Mio)",
            "Quarantine quota (MiB)",
            _int_range(1, 4096),
            default=64,
        ),
        ParamSpec(
            "refused_quota_mib",
            _S.GLOBAL,
            "Quota des fichiers refusés (Mio)",
            "Refused files quota (MiB)",
            _int_range(1, 4096),
            default=64,
        ),
        ParamSpec(
            "technician_passphrase",
            _S.GLOBAL,
            "Phrase de passe technicien",
            "Technician passphrase",
            _passphrase,
            secret=True,
            hashed=True,
        ),
        ParamSpec("pkcs11_module", _S.GLOBAL, "Module PKCS#11", "PKCS#11 module", _path),
        ParamSpec(
            "oct_domains",
            _S.GLOBAL,
            "Domaines des OCT autorisés",
            "Allowed OCT domains",
            _domains,
            default=[],
        ),
        ParamSpec(
            "weak_key_override",
            _S.GLOBAL,
            "Dérogation protection faible",
            "Weak protection override",
            _choice("non", "oui"),
            default="non",
        ),
        # Backups: only the Argon2id result of the recovery passphrase is kept (hashed=True),
        # and that 32-byte result is the backup master key — the agent can back up without a
        # person, and the passphrase itself is never stored.
        ParamSpec(
            "recovery_passphrase",
            _S.GLOBAL,
            "Phrase de passe de secours (sauvegardes)",
            "Recovery passphrase (backups)",
            _passphrase,
            secret=True,
            hashed=True,
        ),
        ParamSpec(
            "backup_keep",
            _S.GLOBAL,
            "Sauvegardes conservées (par destination)",
            "Backups kept (per destination)",
            _int_range(1, 365),
            default=7,
        ),
        ParamSpec(
            "backup_quota_mib",
            _S.GLOBAL,
            "Quota des sauvegardes (Mio, par destination)",
            "Backup quota (MiB, per destination)",
            _int_range(1, 1024 * 1024),
            default=4096,
        ),
        ParamSpec(
            "backup_max_age_hours",
            _S.GLOBAL,
            "Âge maximal de la dernière sauvegarde (heures)",
            "Maximum age of the last backup (hours)",
            _int_range(1, 24 * 90),
            default=48,
        ),
        ParamSpec(
            "retention_days",
            _S.GLOBAL,
            "Conservation des preuves (jours)",
            "Evidence retention (days)",
            _int_range(30, 36500),
            default=3 * 365,
        ),
        ParamSpec(
            "webmail_override",
            _S.GLOBAL,
            "Dérogation messagerie grand public",
            "Consumer webmail override",
            _choice("non", "oui"),
            default="non",
        ),
        # Self-updates (issue 14): read by the root helper through `balise update policy`.
        ParamSpec(
            "update_hold",
            _S.GLOBAL,
            "Garder la version en service (aucune mise à jour)",
            "Keep the running version (no update)",
            _choice("non", "oui"),
            default="non",
        ),
        ParamSpec(
            "update_allow",
            _S.GLOBAL,
            "Version autorisée explicitement (vide : aucune)",
            "Version allowed explicitly (empty: none)",
            _update_version,
            default="",
        ),
        # The card-authenticated relay (issue 20): services reached with the CPS card, fed to
        # the egress list; the channel closes after this many idle minutes.
        ParamSpec(
            "relay_services",
            _S.GLOBAL,
            "Services en ligne joints avec la carte (nom=https://…)",
            "Online services reached with the card (name=https://…)",
            _relay_services,
        ),
        ParamSpec(
            "relay_idle_minutes",
            _S.GLOBAL,
            "Fermeture du canal de la carte après inactivité (minutes)",
            "Card channel closed after idle time (minutes)",
            _int_range(1, 240),
            default=15,
        ),
        # per practitioner profile
        ParamSpec("display_name", _S.PROFILE, "Nom affiché", "Display name", _text(80)),
        ParamSpec(
            "emitter_number",
            _S.PROFILE,
            "Numéro d'émetteur (facturation)",
            "Emitter number",
            _digits(14),
        ),
        ParamSpec("rpps", _S.PROFILE, "RPPS", "RPPS", _digits(11)),
        ParamSpec(
            "code6",
            _S.PROFILE,
            "Code application (objet IR<code6>)",
            "Application code (IR<code6> subject)",
            _digits(6),
            default=DEFAULT_CODE6,  # PROFILE.md §2: the value seen in public code
        ),
        ParamSpec("bal_address", _S.PROFILE, "Adresse de la BAL", "BAL address", parse_email),
        ParamSpec("smtp.host", _S.PROFILE, "Serveur SMTP", "SMTP host", parse_host),
        ParamSpec(
            "smtp.port", _S.PROFILE, "Port SMTP", "SMTP port", _int_range(1, 65535), default=465
        ),
        ParamSpec(
            "smtp.tls",
            _S.PROFILE,
            "TLS SMTP",
            "SMTP TLS mode",
            _choice("implicit", "starttls"),
            default="implicit",
        ),
        ParamSpec("smtp.user", _S.PROFILE, "Identifiant SMTP", "SMTP user", _text(200)),
        ParamSpec(
            "smtp.password",
            _S.PROFILE,
            "Mot de passe SMTP",
            "SMTP password",
            _password,
            secret=True,
        ),
        ParamSpec("pop3.host", _S.PROFILE, "Serveur POP3", "POP3 host", parse_host),
        ParamSpec(
            "pop3.port", _S.PROFILE, "Port POP3", "POP3 port", _int_range(1, 65535), default=995
        ),
        ParamSpec(
            "pop3.tls",
            _S.PROFILE,
            "TLS POP3",
            "POP3 TLS mode",
            _choice("implicit", "stls"),
            default="implicit",
        ),
        ParamSpec("pop3.user", _S.PROFILE, "Identifiant POP3", "POP3 user", _text(200)),
        ParamSpec(
            "pop3.password",
            _S.PROFILE,
            "Mot de passe POP3",
            "POP3 password",
            _password,
            secret=True,
        ),
        ParamSpec(
            "pop3.interval",
            _S.PROFILE,
            "Intervalle de relève (s)",
            "Poll interval (s)",
            _int_range(30, 86400),
            default=300,
        ),
        ParamSpec(
            "signers.titular",
            _S.PROFILE,
            "Certificat du titulaire",
            "Titular certificate",
            _certificates(allow_expired=True),
        ),
        ParamSpec(
            "signers.locums",
            _S.PROFILE,
            "Certificats des remplaçants",
            "Locum certificates",
            _certificates(allow_expired=True, at_least=0),
            default=[],
        ),
        # organisms
        ParamSpec(
            "type",
            _S.ORGANISM,
            "Type d'organisme",
            "Organism type",
            _choice("CP", "MA", "OC", "OT"),
        ),
        ParamSpec("regime", _S.ORGANISM, "Régime", "Régime", _digits(2)),
        ParamSpec("caisse", _S.ORGANISM, "Caisse", "Caisse", _digits(3)),
        ParamSpec("centre", _S.ORGANISM, "Centre", "Centre", _digits(3)),
        ParamSpec(
            "address", _S.ORGANISM, "Adresse de l'organisme", "Organism address", parse_email
        ),
        ParamSpec(
            "recipient_certs",
            _S.ORGANISM,
            "Certificats de chiffrement",
            "Recipient certificates",
            _certificates(allow_expired=False),
        ),
        ParamSpec(
            "return_signing_cert",
            _S.ORGANISM,
            "Certificat de signature des retours",
            "Return-signing certificate",
            _certificates(allow_expired=False),
        ),
    )
}

_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def check_scope_id(scope: Scope, ident: str | None) -> str:
    """The profile or organism id, or '' for globals; refuses malformed ids."""
    if scope is Scope.GLOBAL:
        if ident:
            raise ValidationError(
                "ce paramètre est global : pas de --profile ni --organism",
                "this parameter is global: no --profile nor --organism",
                code=ParamCode.PARAM_SCOPE,
            )
        return ""
    if not ident:
        option = "--profile" if scope is Scope.PROFILE else "--organism"
        raise ValidationError(
            f"ce paramètre demande {option} ID",
            f"this parameter needs {option} ID",
            code=ParamCode.PARAM_SCOPE,
        )
    if not _ID_RE.fullmatch(ident):
        raise ValidationError(
            "identifiant invalide (minuscules, chiffres, - et _, 32 au plus)",
            "invalid id (lowercase, digits, - and _, at most 32)",
            code=ParamCode.PARAM_SCOPE,
        )
    return ident


def spec_for(name: str, *, profile: str | None, organism: str | None) -> ParamSpec:
    """Find the parameter by name; the options given must match its scope."""
    matches = [s for (sc, n), s in SCHEMA.items() if n == name]
    if not matches:
        raise ValidationError(
            f"paramètre inconnu : {name}",
            f"unknown parameter: {name}",
            code=ParamCode.PARAM_UNKNOWN,
        )
    wanted = Scope.PROFILE if profile else Scope.ORGANISM if organism else Scope.GLOBAL
    for spec in matches:
        if spec.scope is wanted:
            return spec
    return matches[0]


def parse_value(spec: ParamSpec, raw: str, now: datetime) -> Value:
    try:
        return spec.parse(raw, now)
    except ValueError as exc:
        raise _invalid(spec.name, str(exc), str(exc)) from exc


def encode_value(value: Value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_value(data: bytes) -> Value:
    value = json.loads(data.decode("utf-8"))
    if isinstance(value, str | int) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    ):
        return value
    raise ValueError("unexpected stored value type")
