"""SMTP submission with aiosmtplib: ONE verified TLS session (implicit or required STARTTLS) per
mailbox, AUTH only inside TLS, library errors turned into the domain's SmtpErrors with words."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Sequence
from typing import Final, NoReturn

import aiosmtplib

from balise.adapters.peercert import presented
from balise.adapters.tls import client_context
from balise.domain.errors import ConfigError
from balise.domain.lotmail import SendReport
from balise.domain.mailtransport import (
    SmtpAuthRefused,
    SmtpCertUnverified,
    SmtpError,
    SmtpNoStartTls,
    SmtpRefused,
    SmtpTls,
    SmtpTlsTooOld,
    SmtpUnreachable,
)
from balise.domain.servercert import ServerCertificate

DEFAULT_TIMEOUT_S: Final = 30.0
# OpenSSL reasons that mean "no TLS version in common" (a server stuck below TLS 1.2).
_VERSION_REASONS: Final = frozenset(
    {
        "UNSUPPORTED_PROTOCOL",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "NO_PROTOCOLS_AVAILABLE",
        "WRONG_SSL_VERSION",
    }
)


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _where(host: str, port: int) -> str:
    return f"{host}:{port}"


def translate(exc: BaseException, host: str, port: int) -> SmtpError:
    """Words for an aiosmtplib/ssl/socket failure (never the library text: no server echo, no
    secret can leak through it)."""
    where = _where(host, port)
    cause = _ssl_cause(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return SmtpCertUnverified(
            f"certificat du serveur non vérifié ({where}) : rien n'a été envoyé",
            f"server certificate not verified ({where}): nothing was sent ({cause.verify_message})",
        )
    if cause is not None and (getattr(cause, "reason", None) or "") in _VERSION_REASONS:
        return SmtpTlsTooOld(
            f"TLS trop ancien ou refusé par le serveur ({where}) : TLS 1.2 au moins est exigé",
            f"TLS too old or refused by the server ({where}): TLS 1.2 or later is required",
        )
    if cause is not None:
        return SmtpUnreachable(
            f"échec de la négociation TLS avec {where} : en attente de réseau",
            f"TLS handshake with {where} failed ({cause.reason}): waiting for the network",
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return SmtpAuthRefused(
            f"identifiants refusés par le serveur {where} (code {exc.code}) : vérifiez "
            "l'identifiant et le mot de passe SMTP",
            f"credentials refused by {where} (code {exc.code}): check the SMTP user and password",
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return SmtpUnreachable(
            f"le serveur {where} a répondu {exc.code} : en attente de réseau",
            f"server {where} answered {exc.code}: waiting for the network",
        )
    return SmtpUnreachable(
        f"serveur {where} injoignable ou connexion coupée : en attente de réseau",
        f"server {where} unreachable or connection lost ({type(exc).__name__}): "
        "waiting for the network",
    )


def _refused(exc: aiosmtplib.SMTPException, index: int) -> SmtpRefused:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = ", ".join(str(r.code) for r in exc.recipients)
    elif isinstance(exc, aiosmtplib.SMTPResponseException):
        codes = str(exc.code)
    else:
        codes = "?"
    return SmtpRefused(
        f"message n° {index + 1} refusé par le serveur (code {codes})",
        f"message {index + 1} refused by the server (code {codes})",
    )


class _CallbackFailed(Exception):
    """Carries an exception raised by ``on_accepted`` past the library-error translation."""


CLOSE_WAIT_S = 2.0


class SmtpSender:
    """The MailSender port on aiosmtplib (≥ 5.1.2; the TLS mode is always explicit)."""

    def __init__(self, *, local_hostname: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        # An explicit EHLO name: aiosmtplib's default calls socket.getfqdn(), which may hang on DNS.
        self._local_hostname = local_hostname
        self._timeout = timeout

    async def send_batch(
        self,
        host: str,
        port: int,
        tls: SmtpTls,
        user: str,
        password: str,
        ca_pem: Sequence[str],
        messages: Sequence[tuple[str, str, bytes]],
        on_accepted: Callable[[int], None],
    ) -> SendReport:
        context = client_context(ca_pem)
        if tls not in ("implicit", "starttls"):
            raise ConfigError(f"mode TLS inconnu : {tls}", f"unknown TLS mode: {tls}")
        # use_tls / start_tls are both explicit: with neither, aiosmtplib would log in over a
        # clear connection to a server that hides STARTTLS (TESTING.md, "SMTP").
        client = aiosmtplib.SMTP(
            hostname=host,
            port=port,
            local_hostname=self._local_hostname,
            timeout=self._timeout,
            use_tls=tls == "implicit",
            start_tls=tls == "starttls",
            validate_certs=True,
            tls_context=context,
        )
        accepted: list[int] = []
        # Each protocol object the client uses (STARTTLS replaces it): waited on at the end.
        protocols: list[object] = []
        refused: list[tuple[int, SmtpRefused]] = []
        server_cert: ServerCertificate | None = None
        try:
            server_cert = await self._open(client, host, port, tls, user, password)
            protocols.append(client.protocol)
            for index, (mail_from, rcpt, data) in enumerate(messages):
                try:
                    await client.sendmail(mail_from, [rcpt], data)
                except (
                    aiosmtplib.SMTPRecipientsRefused,
                    aiosmtplib.SMTPSenderRefused,
                    aiosmtplib.SMTPDataError,
                ) as exc:
                    refused.append((index, _refused(exc, index)))
                    if not client.is_connected:
                        raise
                    continue
                accepted.append(index)
                try:
                    on_accepted(index)
                except BaseException as exc:
                    # Failing to record a 250 is not a send failure: it must reach the caller
                    # as itself, never be translated into "network down".
                    raise _CallbackFailed from exc
            await self._quit(client)
        except _CallbackFailed as wrapper:
            original = wrapper.__cause__
            assert original is not None
            raise original from original.__cause__
        except SmtpError:
            raise
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._raise(exc, host, port)
        finally:
            await self._close(client, protocols)
        return SendReport(tuple(accepted), tuple(refused), server_cert)

    async def _open(
        self, client: aiosmtplib.SMTP, host: str, port: int, tls: SmtpTls, user: str, password: str
    ) -> ServerCertificate | None:
        """Connect (TLS verified), then log in; the certificate the server presented."""
        try:
            await client.connect()
        except aiosmtplib.SMTPException as exc:
            # On a fresh client, connect() raises the bare SMTPException (every other failure is
            # a subclass: connect, timeout, disconnect, a server's answer) only when the server
            # does not offer the STARTTLS it was asked for — decided on the type, not its words.
            if tls == "starttls" and type(exc) is aiosmtplib.SMTPException:
                raise SmtpNoStartTls(
                    f"le serveur {_where(host, port)} ne propose pas STARTTLS alors qu'il est "
                    "exigé : connexion refusée, aucun identifiant envoyé",
                    f"server {_where(host, port)} does not offer the required STARTTLS: "
                    "refused, no credentials sent",
                ) from exc
            raise
        # Belt and braces: never AUTH on a connection that is not (yet) TLS.
        if client.get_transport_info("sslcontext") is None:
            raise SmtpNoStartTls(
                f"la connexion à {_where(host, port)} n'est pas chiffrée : aucun identifiant envoyé",
                f"the connection to {_where(host, port)} is not encrypted: no credentials sent",
            )
        # The TLS transport (STARTTLS replaced the first one): its verified peer's certificate.
        server_cert = presented(client.get_transport_info("ssl_object"))
        await client.login(user, password)
        return server_cert

    @staticmethod
    async def _close(client: aiosmtplib.SMTP, protocols: list[object]) -> None:
        """Close and wait (bounded) until the connection is really lost, so no socket outlives
        the event loop of a caller using asyncio.run()."""
        if client.protocol is not None:
            protocols.append(client.protocol)
        client.close()
        # aiosmtplib exposes no public "closed" future; its flow-control mixin records
        # connection_lost in ``_connection_lost``.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_WAIT_S
        while any(not getattr(p, "_connection_lost", True) for p in protocols):
            if loop.time() >= deadline:
                break
            await asyncio.sleep(0.005)

    @staticmethod
    async def _quit(client: aiosmtplib.SMTP) -> None:
        # Every message already has its 250: a failed QUIT changes nothing we recorded.
        with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
            await client.quit()

    @staticmethod
    def _raise(exc: BaseException, host: str, port: int) -> NoReturn:
        raise translate(exc, host, port) from exc
