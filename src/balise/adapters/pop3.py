"""POP3 over verified TLS (poplib): implicit TLS or required STLS, never a credential in clear.

Blocking calls: the purge service runs them in its own worker thread or process, never on a UI loop.
"""

from __future__ import annotations

import contextlib
import poplib
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Any, Final, ParamSpec, TypeVar

from balise.adapters.peercert import presented
from balise.adapters.tls import client_context
from balise.domain.mailtransport import (
    Pop3AuthRefused,
    Pop3CertUnverified,
    Pop3Error,
    Pop3NoStls,
    Pop3ProtocolError,
    Pop3Settings,
    Pop3TlsError,
    Pop3Unreachable,
    Unfetched,
)
from balise.domain.servercert import ServerCertificate

# poplib refuses lines over 2,048 bytes, which would break a session on a legal but long line;
# status, UIDL and LIST lines are bounded by this instead. Message answers are read in pieces of
# _PIECE bytes whatever their line lengths, and bounded by their own budgets.
_LINE_LIMIT: Final = 8 * 1024 * 1024
_PIECE: Final = 64 * 1024
_CRLF: Final = b"\r\n"
_P = ParamSpec("_P")
_T = TypeVar("_T")


class _Refused(Exception):
    """The server answered -ERR to a command; the session is still in step."""


class _Counting:
    """Mixin over poplib's line reader: counts bytes received; reads message answers bounded."""

    file: Any
    received: int
    # poplib's own command writer and answer reader (not in its stubs), for pipelined commands.
    _putcmd: Any
    _getresp: Any

    def _getline(self) -> tuple[bytes, int]:
        line: bytes = self.file.readline(_LINE_LIMIT + 1)
        self.received += len(line)
        if len(line) > _LINE_LIMIT:
            raise poplib.error_proto("-ERR line too long")
        if not line:
            raise poplib.error_proto("-ERR EOF")
        octets = len(line)
        if line[-2:] == _CRLF:
            return line[:-2], octets
        if line[:1] == b"\r":
            return line[1:-1], octets
        return line[:-1], octets

    def _status(self) -> None:
        """The status line of an answer: +OK goes on, -ERR raises _Refused (the session stays
        in step: no multi-line answer follows), anything else is a protocol error."""
        line, _ = self._getline()
        if line.startswith(b"-"):
            raise _Refused(line[:200])
        if not line.startswith(b"+"):
            raise poplib.error_proto("-ERR unexpected status line")

    def _message(self, keep: int, most: int) -> tuple[bytes, bool]:
        """The body of a multi-line answer (after its +OK) up to its "." line, un-dot-stuffed,
        each line ending in CRLF: its first ``keep`` bytes, and whether that was all of it. The
        rest is read and dropped, so the session stays in step. More than ``most`` bytes on the
        wire: the server sends more than its own LIST announced, a protocol error (session
        lost)."""
        out = bytearray()
        whole = True
        wire = 0
        line_start = True
        after_cr = False  # the previous piece ended inside a line, on a CR
        while True:
            piece: bytes = self.file.readline(_PIECE)
            if not piece:
                raise poplib.error_proto("-ERR EOF")
            self.received += len(piece)
            wire += len(piece)
            if wire > most:
                raise poplib.error_proto("-ERR response larger than announced")
            ends_line = piece[-1:] == b"\n"
            if line_start and piece[:1] == b".":
                if piece in (b".\r\n", b".\n"):
                    return bytes(out), whole
                piece = piece[1:]
            if ends_line and piece[-2:] != _CRLF and not (piece == b"\n" and after_cr):
                piece = piece[:-1] + _CRLF
            line_start = ends_line
            after_cr = not ends_line and piece[-1:] == b"\r"
            if whole:
                room = keep - len(out)
                if len(piece) > room:
                    out += piece[:room]
                    whole = False
                else:
                    out += piece


class _Pop3(_Counting, poplib.POP3):
    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.received = 0
        super().__init__(host, port, timeout=timeout)


class _Pop3Ssl(_Counting, poplib.POP3_SSL):
    def __init__(self, host: str, port: int, timeout: float, context: ssl.SSLContext) -> None:
        self.received = 0
        super().__init__(host, port, timeout=timeout, context=context)


def _words(settings: Pop3Settings) -> str:
    return f"{settings.host}:{settings.port}"


class Pop3Session:
    """A MailboxSession on poplib; every library error becomes a Pop3Error without any secret.

    With ``pipelining`` (the server announced PIPELINING, RFC 2449) the ``*_many`` calls send
    their commands in one write and then read the answers in order; otherwise one by one.
    :meth:`prefetch` sends a window's RETRs ahead: their answers are read by the next
    :meth:`retr_many` of the same window, or before any other command (the session stays in
    step: answers are always read in the order the commands went)."""

    def __init__(
        self,
        client: _Pop3 | _Pop3Ssl,
        where: str,
        *,
        pipelining: bool = False,
        server_certificate: ServerCertificate | None = None,
    ) -> None:
        self._client = client
        self._where = where
        self.pipelining = pipelining
        self._server_certificate = server_certificate
        # RETRs sent ahead by prefetch(), and their answers once read (before another command)
        self._ahead: list[tuple[int, int]] = []
        self._ahead_answers: list[bytes | Unfetched] | None = None

    @property
    def bytes_received(self) -> int:
        return self._client.received

    @property
    def server_certificate(self) -> ServerCertificate | None:
        return self._server_certificate

    def _call(self, what: str, func: Callable[_P, _T], *args: _P.args, **kw: _P.kwargs) -> _T:
        try:
            return func(*args, **kw)
        except poplib.error_proto as exc:
            raise Pop3ProtocolError(
                f"le serveur {self._where} a refusé {what}",
                f"server {self._where} refused {what}",
            ) from exc
        except (OSError, EOFError) as exc:
            raise Pop3Error(
                f"connexion perdue avec {self._where} pendant {what}",
                f"connection to {self._where} lost during {what}",
            ) from exc

    def _drain(self) -> None:
        """Read the answers of RETRs sent ahead and not read yet (another command goes next)."""
        if self._ahead and self._ahead_answers is None:
            self._ahead_answers = [
                self._call("RETR", self._answer, _keep(size), _wire_budget(size))
                for _, size in self._ahead
            ]

    def uidl(self) -> dict[int, str]:
        self._drain()
        resp = self._call("UIDL", self._client.uidl)
        out: dict[int, str] = {}
        for line in resp[1]:
            number, _, uid = bytes(line).decode("ascii", "replace").partition(" ")
            out[int(number)] = uid.strip()
        return out

    def sizes(self) -> dict[int, int]:
        self._drain()
        resp = self._call("LIST", self._client.list)
        out: dict[int, int] = {}
        for line in resp[1]:
            number, _, size = bytes(line).decode("ascii", "replace").partition(" ")
            out[int(number)] = int(size.split()[0])
        return out

    def _answer(self, keep: int, most: int) -> bytes | Unfetched:
        """One message answer, its command already sent: the message, or Unfetched."""
        client = self._client
        try:
            client._status()
        except _Refused:
            return Unfetched("refused", b"")
        data, whole = client._message(keep, most)
        return data if whole else Unfetched("too_large", data)

    def _fetch(self, command: str, keep: int, most: int) -> bytes | Unfetched:
        self._client._putcmd(command)
        return self._answer(keep, most)

    def top_headers(self, number: int, limit: int, size: int) -> bytes | Unfetched:
        """TOP n 0: the headers of a message of ``size`` bytes, at most ``limit`` kept (a larger
        header block is read to its end and dropped: the session goes on)."""
        self._drain()
        return self._call("TOP", self._fetch, f"TOP {number} 0", limit, _wire_budget(size))

    def prefetch(self, wanted: Sequence[tuple[int, int]]) -> None:
        """Send the RETRs of the next window now (pipelined servers only; at most one window
        ahead): the server sends them while the caller works on the previous one."""
        if not self.pipelining or len(wanted) < 2 or self._ahead:
            return
        self._call("RETR", self._send, [f"RETR {number}" for number, _ in wanted])
        self._ahead = list(wanted)

    def retr_many(self, wanted: Sequence[tuple[int, int]]) -> list[bytes | Unfetched]:
        """RETR of each (number, size) in order; each answer kept up to its size (and a margin),
        read to its end in any case."""
        if self._ahead:
            if list(wanted) == self._ahead:  # sent ahead by prefetch()
                self._drain()
                answers, self._ahead, self._ahead_answers = self._ahead_answers or [], [], None
                return answers
            self._drain()  # another window: those answers are dropped, the session in step
            self._ahead, self._ahead_answers = [], None
        if not self.pipelining or len(wanted) < 2:
            return [
                self._call("RETR", self._fetch, f"RETR {number}", _keep(size), _wire_budget(size))
                for number, size in wanted
            ]
        self._call("RETR", self._send, [f"RETR {number}" for number, _ in wanted])
        return [
            self._call("RETR", self._answer, _keep(size), _wire_budget(size)) for _, size in wanted
        ]

    def dele(self, number: int) -> None:
        self._drain()
        self._call("DELE", self._client.dele, number)

    def dele_many(self, numbers: Sequence[int]) -> None:
        """DELE of each number (marked only: the server deletes at QUIT); every answer must be
        +OK, or the whole session is abandoned by the caller."""
        if not self.pipelining or len(numbers) < 2:
            for number in numbers:
                self.dele(number)
            return
        self._drain()
        self._call("DELE", self._send, [f"DELE {number}" for number in numbers])
        for _ in numbers:
            self._call("DELE", self._client._getresp)

    def _send(self, commands: list[str]) -> None:
        self._client.sock.sendall("".join(f"{c}\r\n" for c in commands).encode("ascii"))

    def quit(self) -> None:
        self._drain()
        self._call("QUIT", self._client.quit)

    def close(self) -> None:
        """Drop the connection without QUIT (the server then deletes nothing)."""
        # After a failed handshake poplib's close() raises on the dead socket.
        with contextlib.suppress(OSError):
            self._client.close()


def _keep(size: int) -> int:
    """What is kept of a RETR answer for a message LIST says is ``size`` bytes: all of it, and a
    margin for a last line the server ends with CRLF."""
    return size + 4096


def _wire_budget(size: int) -> int:
    """The bytes a server may send for a message of ``size`` bytes (RETR, or TOP of its headers):
    dot-stuffing adds at most one byte per line, and a line takes at least 3 bytes once stuffed
    (".\r\n" becomes "..\r\n"), so a third more, with the margin of :func:`_keep`."""
    keep = _keep(size)
    return keep + keep // 3 + 8


class Pop3Mailbox:
    """The Mailbox port: connect, verify the certificate, then (and only then) USER/PASS."""

    def open(self, settings: Pop3Settings) -> Pop3Session:
        where = _words(settings)
        context = client_context(settings.ca_pem)  # poplib alone verifies nothing
        client: _Pop3 | _Pop3Ssl | None = None
        try:
            if settings.tls == "implicit":
                client = _Pop3Ssl(settings.host, settings.port, settings.timeout, context)
            else:
                client = _Pop3(settings.host, settings.port, settings.timeout)
                try:
                    caps = client.capa()
                except poplib.error_proto:
                    caps = {}
                if "STLS" not in caps:
                    raise Pop3NoStls(
                        f"le serveur {where} ne propose pas STLS : connexion refusée, "
                        "aucun identifiant envoyé",
                        f"server {where} does not offer STLS: refused, no credential sent",
                    )
                client.stls(context)
            # The handshake is done and verified (implicit TLS, or STLS just above).
            sock = client.sock
            session = Pop3Session(
                client,
                where,
                server_certificate=presented(sock if isinstance(sock, ssl.SSLSocket) else None),
            )
            try:
                client.user(settings.user)
                client.pass_(settings.password)
            except poplib.error_proto as exc:
                raise Pop3AuthRefused(
                    f"le serveur {where} a refusé l'identifiant ou le mot de passe POP3",
                    f"server {where} refused the POP3 user name or password",
                ) from exc
            try:  # asked after login (RFC 2449: the transaction state's own list)
                session.pipelining = "PIPELINING" in client.capa()
            except poplib.error_proto:
                session.pipelining = False
            return session
        except ssl.SSLCertVerificationError as exc:
            _close(client)
            raise Pop3CertUnverified(
                f"certificat du serveur {where} non reconnu ({exc.verify_message}) : "
                "connexion refusée, aucun identifiant envoyé",
                f"certificate of server {where} not trusted ({exc.verify_message}): "
                "refused, no credential sent",
            ) from exc
        except ssl.SSLError as exc:
            _close(client)
            raise Pop3TlsError(
                f"échec de la négociation TLS avec {where} : aucun identifiant envoyé",
                f"TLS negotiation with {where} failed: no credential sent",
            ) from exc
        except Pop3Error:
            _close(client)
            raise
        except poplib.error_proto as exc:
            _close(client)
            raise Pop3ProtocolError(
                f"réponse inattendue du serveur {where}", f"unexpected answer from {where}"
            ) from exc
        except (OSError, EOFError) as exc:
            _close(client)
            reason = "délai dépassé" if isinstance(exc, socket.timeout) else "injoignable"
            raise Pop3Unreachable(
                f"serveur POP3 {where} {reason}",
                f"POP3 server {where} {'timed out' if reason != 'injoignable' else 'unreachable'}",
            ) from exc


def _close(client: _Pop3 | _Pop3Ssl | None) -> None:
    if client is None:
        return
    with contextlib.suppress(OSError):
        client.close()
