"""The mailbox connection test of the first-start wizard, the technician and a practitioner's
self-service: before mail settings are saved, the box checks that the SMTP server's certificate
is trusted (TLS verified, TLS 1.2 at least) and that it accepts AUTH, and that the POP3 server
accepts the login — each failure said in words (wrong password, certificate not trusted, host
unreachable, consumer webmail refused by the hygiene rules). Nothing is sent: SMTP opens one
session, logs in and quits; POP3 logs in and quits without touching a message."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal, cast

from balise.domain.codes import MailCode
from balise.domain.errors import BaliseError, ConfigError
from balise.domain.hygiene import webmail_domain
from balise.domain.mailtransport import (
    AuthRefused,
    CertUnverified,
    MailTransportError,
    NoSafeTls,
    Pop3Settings,
    ServerUnreachable,
    SmtpTls,
    SmtpUnreachable,
)
from balise.domain.params import SCHEMA, Scope, parse_value
from balise.ports import Mailbox, MailSender
from balise.services.params import ParameterService
from balise.services.settings import Pop3Tls, box_settings, profile_settings

Reason = Literal[
    "ok", "wrong_password", "cert_untrusted", "unreachable", "webmail", "no_tls", "other"
]
Part = Literal["smtp", "pop3", "hygiene"]

# The mail parameters' parsers never read the date (only certificates do).
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

# The parameters a connection test reads (a profile's mail settings).
MAIL_PARAMS = (
    "bal_address",
    "smtp.host",
    "smtp.port",
    "smtp.tls",
    "smtp.user",
    "smtp.password",
    "pop3.host",
    "pop3.port",
    "pop3.tls",
    "pop3.user",
    "pop3.password",
)


def _default(name: str) -> object:
    """A profile parameter's default: the schema's, the one place defaults are given."""
    return SCHEMA[(Scope.PROFILE, name)].default


_SMTP_PORT = cast(int, _default("smtp.port"))
_SMTP_TLS = cast(SmtpTls, _default("smtp.tls"))
_POP3_PORT = cast(int, _default("pop3.port"))
_POP3_TLS = cast(Pop3Tls, _default("pop3.tls"))


@dataclass(frozen=True, slots=True)
class MailSettings:
    """One practitioner's mailbox as typed or saved; the passwords never appear in a repr."""

    bal_address: str = ""
    smtp_host: str = ""
    smtp_port: int = _SMTP_PORT
    smtp_tls: SmtpTls = _SMTP_TLS
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    pop3_host: str = ""
    pop3_port: int = _POP3_PORT
    pop3_tls: Pop3Tls = _POP3_TLS
    pop3_user: str = ""
    pop3_password: str = field(default="", repr=False)

    @classmethod
    def of_profile(cls, params: ParameterService, profile: str | None) -> MailSettings:
        """What is saved for ``profile`` (defaults where nothing is; empty without a profile)."""
        if profile is None:
            return cls()
        s = profile_settings(params, profile)
        return cls(
            bal_address=s.bal_address or "",
            smtp_host=s.smtp_host or "",
            smtp_port=s.smtp_port,
            smtp_tls=s.smtp_tls,
            smtp_user=s.smtp_user or "",
            smtp_password=s.smtp_password or "",
            pop3_host=s.pop3_host or "",
            pop3_port=s.pop3_port,
            pop3_tls=s.pop3_tls,
            pop3_user=s.pop3_user or "",
            pop3_password=s.pop3_password or "",
        )

    def changed(self, typed: Mapping[str, str]) -> MailSettings:
        """These settings with ``typed`` values (parameter names) parsed by the schema: a bad
        value raises the same ValidationError as `balise params set`."""
        updates: dict[str, object] = {}
        for name, raw in typed.items():
            if name not in MAIL_PARAMS:
                continue
            value = parse_value(SCHEMA[(Scope.PROFILE, name)], raw, _EPOCH)
            updates[name.replace(".", "_")] = value
        return replace(self, **updates)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class PartResult:
    part: Part
    reason: Reason
    fr: str
    en: str

    @property
    def ok(self) -> bool:
        return self.reason == "ok"


@dataclass(frozen=True, slots=True)
class ConnectionReport:
    results: tuple[PartResult, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def words(self, lang: str = "fr") -> list[str]:
        return [r.en if lang == "en" else r.fr for r in self.results]


# What a person can do about a failed connection, the same for both servers: decided on the kind
# of transport failure (domain/mailtransport.py), never on its words.
_FAILURE_WORDS: dict[Reason, tuple[str, str]] = {
    "wrong_password": (
        "mot de passe (ou identifiant) refusé par le serveur",
        "password (or user name) refused by the server",
    ),
    "cert_untrusted": (
        "certificat du serveur non reconnu (autorité non approuvée ou nom différent) ; "
        "aucun mot de passe envoyé",
        "server certificate not trusted (unknown authority or other name); no password sent",
    ),
    "unreachable": (
        "serveur injoignable (nom, port ou réseau à vérifier)",
        "server unreachable (check the name, port or network)",
    ),
    "no_tls": (
        "pas de TLS sûr (mode TLS à vérifier) ; aucun mot de passe envoyé",
        "no safe TLS (check the TLS mode); no password sent",
    ),
}


def _reason(exc: BaliseError) -> Reason:
    if not isinstance(exc, MailTransportError):
        return "other"
    if isinstance(exc, AuthRefused):
        return "wrong_password"
    if isinstance(exc, CertUnverified):  # before NoSafeTls: POP3's certificate is a TLS failure
        return "cert_untrusted"
    if isinstance(exc, NoSafeTls):
        return "no_tls"
    if isinstance(exc, ServerUnreachable):
        return "unreachable"
    return "other"


def _failure(part: Literal["smtp", "pop3"], exc: BaliseError, where: str) -> PartResult:
    reason = _reason(exc)
    fr, en = _FAILURE_WORDS.get(reason, (exc.fr, exc.en))
    name = part.upper()
    return PartResult(part, reason, f"{name} {where} : {fr}", f"{name} {where}: {en}")


class ConnectionTester:
    """Tests one mailbox's settings against its real servers (blocking: call it from a worker)."""

    def __init__(
        self,
        sender: MailSender,
        mailbox: Mailbox,
        ca_pems: Sequence[str] = (),
        *,
        webmail_override: bool = False,
        timeout: float = 15.0,
    ) -> None:
        self._sender = sender
        self._mailbox = mailbox
        self._ca_pems = tuple(ca_pems)
        self._webmail_override = webmail_override
        self._timeout = timeout

    @classmethod
    def for_box(
        cls, params: ParameterService, sender: MailSender, mailbox: Mailbox, timeout: float = 15.0
    ) -> ConnectionTester:
        box = box_settings(params)
        return cls(
            sender,
            mailbox,
            box.ca_bundle,
            webmail_override=box.webmail_override,
            timeout=timeout,
        )

    def test(self, settings: MailSettings) -> ConnectionReport:
        missing = [
            name
            for name, value in (
                ("smtp.host", settings.smtp_host),
                ("smtp.user", settings.smtp_user),
                ("smtp.password", settings.smtp_password),
                ("pop3.host", settings.pop3_host),
                ("pop3.user", settings.pop3_user),
                ("pop3.password", settings.pop3_password),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                "réglages incomplets pour le test de connexion : " + ", ".join(missing),
                "settings incomplete for the connection test: " + ", ".join(missing),
                code=MailCode.MAIL_TEST_INCOMPLETE,
            )
        refused = self._webmail(settings)
        if refused is not None:
            return ConnectionReport((refused,))  # no password goes to a consumer webmail host
        return ConnectionReport((self._smtp(settings), self._pop3(settings)))

    def _webmail(self, s: MailSettings) -> PartResult | None:
        if self._webmail_override:
            return None
        hits = []
        if "@" in s.bal_address and (d := webmail_domain(s.bal_address.rsplit("@", 1)[1])):
            hits.append((f"adresse de la BAL chez {d}", f"mailbox address at {d}"))
        for where_fr, where_en, host in (
            ("serveur SMTP", "SMTP server", s.smtp_host),
            ("serveur POP3", "POP3 server", s.pop3_host),
        ):
            if host and (d := webmail_domain(host)):
                hits.append((f"{where_fr} chez {d}", f"{where_en} at {d}"))
        if not hits:
            return None
        return PartResult(
            "hygiene",
            "webmail",
            "messagerie grand public refusée par les règles d'hygiène ("
            + ", ".join(fr for fr, _ in hits)
            + ") : une BAL professionnelle est attendue ; rien n'a été tenté",
            "consumer webmail refused by the hygiene rules ("
            + ", ".join(en for _, en in hits)
            + "): a professional mailbox is expected; nothing was tried",
        )

    def _smtp(self, s: MailSettings) -> PartResult:
        where = f"{s.smtp_host}:{s.smtp_port}"
        try:
            asyncio.run(
                asyncio.wait_for(
                    self._sender.send_batch(
                        s.smtp_host,
                        s.smtp_port,
                        s.smtp_tls,
                        s.smtp_user,
                        s.smtp_password,
                        self._ca_pems,
                        [],  # nothing sent: connect, TLS verified, AUTH, QUIT
                        lambda _index: None,
                    ),
                    self._timeout * 2,
                )
            )
        except TimeoutError:
            return _failure("smtp", SmtpUnreachable("délai dépassé", "timed out"), where)
        except BaliseError as exc:
            return _failure("smtp", exc, where)
        return PartResult(
            "smtp",
            "ok",
            f"SMTP {where} : certificat vérifié, identifiants acceptés",
            f"SMTP {where}: certificate verified, credentials accepted",
        )

    def _pop3(self, s: MailSettings) -> PartResult:
        where = f"{s.pop3_host}:{s.pop3_port}"
        settings = Pop3Settings(
            host=s.pop3_host,
            port=s.pop3_port,
            tls=s.pop3_tls,
            user=s.pop3_user,
            password=s.pop3_password,
            ca_pem=self._ca_pems,
            timeout=self._timeout,
        )
        try:
            session = self._mailbox.open(settings)
        except BaliseError as exc:
            return _failure("pop3", exc, where)
        try:
            session.quit()
        except BaliseError:
            session.close()
        return PartResult(
            "pop3",
            "ok",
            f"POP3 {where} : certificat vérifié, connexion acceptée",
            f"POP3 {where}: certificate verified, login accepted",
        )
