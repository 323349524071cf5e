"""Typed settings: the parameters as the box uses them, read in ONE place.

The parameter store (:class:`balise.services.params.ParameterService`) keeps loose values
(text, a number or a list of texts, the schema's default when unset). Everything else reads them
through the frozen objects of this module — :class:`BoxSettings` (box-wide), one
:class:`ProfileSettings` per practitioner profile, one :class:`OrganismSettings` per organism —
so a value's type is checked here and nowhere else, and a default lives in the schema
(:data:`balise.domain.params.SCHEMA`) and nowhere else. A stored value of the wrong type (a
database written by hand, an old version) is a :class:`ConfigError` ``PARAM_TYPE`` naming the
parameter, in French and English, never a traceback further down."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, cast

from balise.domain.codes import ParamCode
from balise.domain.errors import ConfigError, ValidationError
from balise.domain.mailtransport import SmtpTls
from balise.domain.params import Scope, Value
from balise.domain.relay import AllowedService, parse_allow_list

Mode = Literal["production", "test", "demo"]
Pop3Tls = Literal["implicit", "stls"]
Pems = tuple[str, ...]


class ParamReader(Protocol):
    """What the settings are read from (a :class:`ParameterService`): values with their
    secrets, the schema's default when unset."""

    def value(
        self, name: str, *, profile: str | None = None, organism: str | None = None
    ) -> Value | None: ...

    def ids(self, scope: Scope) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class BoxSettings:
    """The box-wide parameters (scope ``global``)."""

    mode: Mode
    ca_bundle: Pems  # trusted TLS roots; empty = the system's store
    igc_roots: Pems
    igc_intermediates: Pems
    crl_url: str | None
    sesam_vitale_roots: Pems
    sesam_vitale_directory: str | None
    sesam_vitale_base: str | None
    crl_grace_hours: int
    arl_overdue_days: int
    quarantine_retention_days: int
    quarantine_quota_mib: int
    refused_quota_mib: int
    pkcs11_module: str | None
    oct_domains: tuple[str, ...]
    weak_key_override: bool
    backup_keep: int
    backup_quota_mib: int
    backup_max_age_hours: int
    retention_days: int
    webmail_override: bool
    has_technician_passphrase: bool
    has_recovery_passphrase: bool
    update_hold: bool  # the technician keeps the running version
    update_allow: str | None  # allowed explicitly (the root helper refuses an older one)

    @property
    def production(self) -> bool:
        return self.mode == "production"


@dataclass(frozen=True, slots=True)
class ProfileSettings:
    """One practitioner profile (scope ``profile``); the passwords never show in a repr."""

    id: str
    display_name: str | None
    emitter_number: str | None
    rpps: str | None
    code6: str
    bal_address: str | None
    smtp_host: str | None
    smtp_port: int
    smtp_tls: SmtpTls
    smtp_user: str | None
    smtp_password: str | None = field(repr=False)
    pop3_host: str | None
    pop3_port: int
    pop3_tls: Pop3Tls
    pop3_user: str | None
    pop3_password: str | None = field(repr=False)
    pop3_interval: int
    signers_titular: Pems
    signers_locums: Pems

    @property
    def sends(self) -> bool:
        """Its mailbox's SMTP server is set (lots can be sent)."""
        return self.smtp_host is not None

    @property
    def fetches(self) -> bool:
        """Its mailbox's POP3 server is set (returns can be fetched)."""
        return self.pop3_host is not None


@dataclass(frozen=True, slots=True)
class OrganismSettings:
    """One organism (scope ``organism``)."""

    id: str
    type: str | None
    regime: str | None
    caisse: str | None
    centre: str | None
    address: str | None
    recipient_certs: Pems
    return_signing_cert: Pems


def lenient_text(value: Value | None) -> str | None:
    """A text value, or None when unset, empty or not a text: for the mailbox hygiene rules,
    which judge a would-be state and must never block the change that repairs a bad value."""
    return value if isinstance(value, str) and value else None


def _wrong(name: str, where: tuple[str, str], fr: str, en: str) -> ConfigError:
    return ConfigError(
        f"paramètre {name}{where[0]} : la valeur enregistrée n'est pas {fr} ; "
        f"la définir à nouveau (balise params set {name} …)",
        f"parameter {name}{where[1]}: the stored value is not {en}; set it again "
        f"(balise params set {name} …)",
        code=ParamCode.PARAM_TYPE,
    )


class _Reader:
    """Typed reads of one scope's values; the only place a value's type is checked."""

    def __init__(
        self, params: ParamReader, *, profile: str | None = None, organism: str | None = None
    ) -> None:
        self._params = params
        self._profile = profile
        self._organism = organism
        if profile:
            self._where = (f" (profil {profile})", f" (profile {profile})")
        elif organism:
            self._where = (f" (organisme {organism})", f" (organism {organism})")
        else:
            self._where = ("", "")

    def _raw(self, name: str) -> Value | None:
        return self._params.value(name, profile=self._profile, organism=self._organism)

    def text(self, name: str) -> str | None:
        value = self._raw(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise _wrong(name, self._where, "un texte", "a text")
        return value

    def required_text(self, name: str) -> str:
        value = self.text(name)
        if value is None:
            raise _wrong(name, self._where, "un texte", "a text")
        return value

    def number(self, name: str) -> int:
        """A number the schema gives a default for (never unset)."""
        value = self._raw(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise _wrong(name, self._where, "un nombre entier", "a whole number")
        return value

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self._raw(name)
        if not isinstance(value, str) or value not in choices:
            listed = ", ".join(choices)
            raise _wrong(name, self._where, f"l'un de : {listed}", f"one of: {listed}")
        return value

    def texts(self, name: str) -> tuple[str, ...]:
        value = self._raw(name)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _wrong(name, self._where, "une liste", "a list")
        return tuple(value)

    def present(self, name: str) -> bool:
        return self._raw(name) is not None


def box_settings(params: ParamReader) -> BoxSettings:
    """The box-wide settings, every value typed, the schema's defaults when unset."""
    r = _Reader(params)
    return BoxSettings(
        mode=cast(Mode, r.choice("mode", ("production", "test", "demo"))),
        ca_bundle=r.texts("ca_bundle"),
        igc_roots=r.texts("igc_roots"),
        igc_intermediates=r.texts("igc_intermediates"),
        crl_url=r.text("crl_url"),
        sesam_vitale_roots=r.texts("sesam_vitale_roots"),
        sesam_vitale_directory=r.text("sesam_vitale_directory"),
        sesam_vitale_base=r.text("sesam_vitale_base"),
        crl_grace_hours=r.number("crl_grace_hours"),
        arl_overdue_days=r.number("arl_overdue_days"),
        quarantine_retention_days=r.number("quarantine_retention_days"),
        quarantine_quota_mib=r.number("quarantine_quota_mib"),
        refused_quota_mib=r.number("refused_quota_mib"),
        pkcs11_module=r.text("pkcs11_module"),
        oct_domains=r.texts("oct_domains"),
        weak_key_override=r.choice("weak_key_override", ("non", "oui")) == "oui",
        backup_keep=r.number("backup_keep"),
        backup_quota_mib=r.number("backup_quota_mib"),
        backup_max_age_hours=r.number("backup_max_age_hours"),
        retention_days=r.number("retention_days"),
        webmail_override=r.choice("webmail_override", ("non", "oui")) == "oui",
        has_technician_passphrase=r.present("technician_passphrase"),
        has_recovery_passphrase=r.present("recovery_passphrase"),
        update_hold=r.choice("update_hold", ("non", "oui")) == "oui",
        update_allow=r.text("update_allow"),
    )


def profile_ids(params: ParamReader) -> list[str]:
    """Every practitioner profile's id, sorted."""
    return params.ids(Scope.PROFILE)


def profile_settings(params: ParamReader, profile: str) -> ProfileSettings:
    """One profile's settings, every value typed, the schema's defaults when unset."""
    r = _Reader(params, profile=profile)
    return ProfileSettings(
        id=profile,
        display_name=r.text("display_name"),
        emitter_number=r.text("emitter_number"),
        rpps=r.text("rpps"),
        code6=r.required_text("code6"),
        bal_address=r.text("bal_address"),
        smtp_host=r.text("smtp.host"),
        smtp_port=r.number("smtp.port"),
        smtp_tls=cast(SmtpTls, r.choice("smtp.tls", ("implicit", "starttls"))),
        smtp_user=r.text("smtp.user"),
        smtp_password=r.text("smtp.password"),
        pop3_host=r.text("pop3.host"),
        pop3_port=r.number("pop3.port"),
        pop3_tls=cast(Pop3Tls, r.choice("pop3.tls", ("implicit", "stls"))),
        pop3_user=r.text("pop3.user"),
        pop3_password=r.text("pop3.password"),
        pop3_interval=r.number("pop3.interval"),
        signers_titular=r.texts("signers.titular"),
        signers_locums=r.texts("signers.locums"),
    )


def profiles(params: ParamReader) -> list[ProfileSettings]:
    """Every practitioner profile's settings, by id (the ONE scan of the profiles)."""
    return [profile_settings(params, p) for p in profile_ids(params)]


def organism_ids(params: ParamReader) -> list[str]:
    """Every organism's id, sorted."""
    return params.ids(Scope.ORGANISM)


def organism_settings(params: ParamReader, organism: str) -> OrganismSettings:
    """One organism's settings, every value typed."""
    r = _Reader(params, organism=organism)
    return OrganismSettings(
        id=organism,
        type=r.text("type"),
        regime=r.text("regime"),
        caisse=r.text("caisse"),
        centre=r.text("centre"),
        address=r.text("address"),
        recipient_certs=r.texts("recipient_certs"),
        return_signing_cert=r.texts("return_signing_cert"),
    )


def organisms(params: ParamReader) -> list[OrganismSettings]:
    """Every organism's settings, by id."""
    return [organism_settings(params, o) for o in organism_ids(params)]


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """The card-authenticated relay's parameters (issue 20, scope ``global``)."""

    services: Mapping[str, AllowedService]  # the allow-list, by the name the software uses
    idle_minutes: int


def relay_settings(params: ParamReader) -> RelaySettings:
    """The relay's allow-list (``relay_services``) and idle time, typed; an entry stored before
    a stricter rule is reported as a parameter to set again."""
    r = _Reader(params)
    try:
        services = parse_allow_list(r.texts("relay_services"))
    except ValidationError as exc:
        raise _wrong("relay_services", r._where, "une liste de services", "a service list") from exc
    return RelaySettings(services=services, idle_minutes=r.number("relay_idle_minutes"))
