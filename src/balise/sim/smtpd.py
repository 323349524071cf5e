"""aiosmtpd-based SMTP servers on loopback for tests and the demo: TLS (implicit or STARTTLS) with
AUTH, or a trap server hiding STARTTLS; they keep every message and every command line received."""

from __future__ import annotations

import hmac
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, AnyStr, Final, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from balise.domain.codes import SimCode
from balise.domain.errors import BaliseError
from balise.sim.netutil import is_loopback

__all__ = ["Received", "SmtpServer", "SmtpServerError", "TlsMode"]

TlsMode = Literal["implicit", "starttls", "hidden-starttls"]

_READY_TIMEOUT_S: Final = 5.0
_SERVER_NAME: Final = "oct-sim.balise.test"  # avoids socket.getfqdn(), which may wait on DNS


class SmtpServerError(BaliseError):
    """The test SMTP server could not be set up or started."""

    code = SimCode.SIM_SMTPD


@dataclass(frozen=True, slots=True)
class Received:
    """One message accepted by the server (after the final '.' of DATA)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    authenticated_as: str | None


class _Handler:
    """aiosmtpd handler: refuses mail from unauthenticated sessions, records accepted messages."""

    def __init__(self, owner: SmtpServer) -> None:
        self._owner = owner

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        # Enforced here rather than with aiosmtpd's auth_required, which warns (an error under
        # pytest) when combined with auth_require_tls=False, needed on the implicit-TLS port.
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content
        if data is None:
            content = envelope.content
            data = content.encode("utf-8") if isinstance(content, str) else (content or b"")
        user = session.auth_data if session.authenticated else None
        message = Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            authenticated_as=user if isinstance(user, str) else None,
        )
        return self._owner._accept(message)


class _RecordingSMTP(SMTP):
    """aiosmtpd's SMTP protocol, also writing down each line the client sends.

    Lines are taken in ``data_received`` (the asyncio Protocol entry point, which sees the bytes
    after TLS decryption on an implicit-TLS or STARTTLS session, and before any command parsing),
    so commands aiosmtpd refuses — AUTH before STARTTLS, unknown verbs — are recorded too. The
    message text after a 354 reply is not recorded as commands.
    """

    def __init__(self, handler: _Handler, owner: SmtpServer, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._owner = owner
        self._pending = b""
        self._in_data = False

    def data_received(self, data: bytes) -> None:
        self._pending += data
        while b"\n" in self._pending:
            raw, self._pending = self._pending.split(b"\n", 1)
            line = raw.rstrip(b"\r")
            if self._in_data:
                self._in_data = line != b"."
                continue
            transport = self.transport
            secure = transport is not None and transport.get_extra_info("ssl_object") is not None
            self._owner._record_command(line.decode("utf-8", "replace"), secure=secure)
        super().data_received(data)

    async def push(self, status: AnyStr) -> None:
        # The client sends the message text only after this reply, so the flag is set in time.
        code = status[:3]
        if code in ("354", b"354"):
            self._in_data = True
        await super().push(status)


class _Controller(Controller):
    def __init__(self, owner: SmtpServer, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._owner = owner

    def factory(self) -> SMTP:
        return _RecordingSMTP(self.handler, self._owner, loop=self.loop, **self.SMTP_kwargs)


class SmtpServer:
    """An SMTP server on ``host:port`` run by aiosmtpd's Controller (its own loop in a thread).

    ``tls``: "implicit" — TLS from the first byte, AUTH offered inside it; "starttls" — STARTTLS
    required before anything else and AUTH only after it; "hidden-starttls" — a trap that never
    offers STARTTLS but offers AUTH in clear, to prove a client refuses to log in there.
    Every mode refuses MAIL before a successful AUTH. ``handler_hook`` is called (in the server
    thread) with each accepted message; if it raises, the client gets a 451 and the message is
    still in ``received``. ``commands`` holds every command line received, in clear or not
    (AUTH lines included, credentials and all); ``clear_commands`` only those received without TLS.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        cert_pem: Path,
        key_pem: Path,
        users: Mapping[str, str],
        tls: TlsMode,
        handler_hook: Callable[[Received], None] | None = None,
        tls_maximum_version: ssl.TLSVersion | None = None,
    ) -> None:
        if not is_loopback(host):
            raise SmtpServerError(
                f"Adresse hors boucle locale refusée : {host}",
                f"Only loopback addresses are allowed: {host}",
            )
        if tls not in ("implicit", "starttls", "hidden-starttls"):
            raise SmtpServerError(f"Mode TLS inconnu : {tls}", f"Unknown TLS mode: {tls}")
        self.host = host
        self.port = port
        self.tls: TlsMode = tls
        self.cert_pem = cert_pem
        self.key_pem = key_pem
        self._users: dict[str, str] = dict(users)
        self._hook = handler_hook
        self._tls_maximum_version = tls_maximum_version
        self._lock = threading.Lock()
        self._controller: _Controller | None = None
        self.received: list[Received] = []
        self.commands: list[str] = []
        self.clear_commands: list[str] = []
        self.hook_errors: list[BaseException] = []

    @property
    def users(self) -> Mapping[str, str]:
        return MappingProxyType(self._users)

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        """Bind and serve; returns once the server answers (bounded by aiosmtpd's ready timeout)."""
        if self._controller is not None:
            raise SmtpServerError(
                "Serveur SMTP de test déjà démarré.", "SMTP server already started."
            )
        context = self._server_context() if self.tls != "hidden-starttls" else None
        options: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "server_hostname": _SERVER_NAME,
            "ready_timeout": _READY_TIMEOUT_S,
            "authenticator": self._authenticate,
            "decode_data": False,
        }
        if self.tls == "implicit":
            # aiosmtpd only counts a STARTTLS layer as TLS: with auth_require_tls=True it would
            # never offer AUTH on the implicit-TLS port.
            options.update(ssl_context=context, auth_require_tls=False)
        elif self.tls == "starttls":
            options.update(tls_context=context, require_starttls=True, auth_require_tls=True)
        else:
            options.update(auth_require_tls=False)
        controller = _Controller(self, _Handler(self), **options)
        try:
            controller.start()
        except Exception as exc:
            controller.stop(no_assert=True)
            # When binding fails aiosmtpd's thread returns without closing its loop.
            if not controller.loop.is_closed():
                controller.loop.close()
            raise SmtpServerError(
                "Le serveur SMTP de test n'a pas démarré.",
                f"The test SMTP server on {self.host}:{self.port} did not start: {exc}",
            ) from exc
        self._controller = controller

    def stop(self) -> None:
        """Stop serving; safe to call at any time, also twice or before start."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def wait_received(self, count: int, *, timeout: float = 5.0) -> list[Received]:
        """Wait (bounded) until at least ``count`` messages arrived; return a copy of them."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(self.received)} message(s) received, {count} expected")
            time.sleep(0.005)

    def _server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self._tls_maximum_version is not None:
            context.maximum_version = self._tls_maximum_version
        context.load_cert_chain(self.cert_pem, self.key_pem)
        return context

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: object,
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode("utf-8", "replace")
            expected = self._users.get(user)
            if expected is not None and hmac.compare_digest(
                expected.encode("utf-8"), auth_data.password
            ):
                return AuthResult(success=True, auth_data=user)
        # handled=False: let aiosmtpd answer 535 (handled=True would send nothing at all).
        return AuthResult(success=False, handled=False)

    def _record_command(self, line: str, *, secure: bool) -> None:
        with self._lock:
            self.commands.append(line)
            if not secure:
                self.clear_commands.append(line)

    def _accept(self, message: Received) -> str:
        with self._lock:
            self.received.append(message)
        if self._hook is not None:
            try:
                self._hook(message)
            except Exception as exc:  # noqa: BLE001 - test code in the hook: report it, keep serving
                with self._lock:
                    self.hook_errors.append(exc)
                return f"451 4.3.0 Simulator hook failed: {type(exc).__name__}"
        return "250 2.0.0 OK: queued"
