"""The card's TLS channel: Python's ``ssl`` with the card's AUTHENTICATION key held by OpenSSL's
PKCS#11 provider (``pkcs11-provider``, Debian 13), one handshake kept for many HTTP/1.1 requests.

Why this stack (issue 20's spike, Debian 13: OpenSSL 3.5, pkcs11-provider 1.0, Python 3.13):
``ssl.SSLContext.load_cert_chain`` takes a "PKCS#11 PROVIDER URI" PEM (a key *reference*, no
secret) once the provider is activated in the default library context; the handshake's
CertificateVerify is then signed by the card (one C_SignInit/C_Sign per full handshake, none for
the requests that follow on the same connection). No new dependency, the server verified by the
same :func:`balise.adapters.tls.client_context` as every other client.

How the PIN reaches the token, never through a file, the environment or a prompt: PKCS#11 login
state belongs to the *application* (every session of one C_Initialize shares it). The relay's own
process loads the card's module with python-pkcs11 and makes exactly ONE C_Login through
:meth:`Pkcs11Signer.login` (PIN state checked first, a wrong PIN reported with the tries left);
the provider loads the SAME module in the same process (its C_Initialize answers
CKR_CRYPTOKI_ALREADY_INITIALIZED) and finds its sessions already logged in. The spike showed why
the provider must never ask for the PIN itself: given a wrong PIN through OpenSSL's passphrase
callback it tried C_Login FIVE times (a CPS card locks after three). So the password callback
given to OpenSSL here always refuses, and logging out closes every door: the provider can no
longer sign.

The provider's configuration (:func:`provider_config`) holds the provider's and the module's
paths only; it is loaded into this process's default library context by
``OSSL_LIB_CTX_load_config`` (ctypes on the libcrypto ``_ssl`` uses), never through the
environment, and with the ``no-deinit`` quirk (without it the provider's teardown crashed the
interpreter at exit in the spike)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

import pkcs11
from cryptography import x509
from pkcs11 import Attribute, ObjectClass

from balise.adapters.relay_server import kernel_timeouts
from balise.adapters.tls import client_context
from balise.domain.card import CardNotSupported, CardRemoved
from balise.domain.errors import ConfigError, StateError
from balise.domain.relay import (
    MAX_BODY,
    MAX_HEAD,
    STREAM_FROM,
    AnswerCut,
    HttpHead,
    RelayCode,
    RelayRefused,
    answer_framing,
    parse_head,
)

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Pkcs11Lib

__all__ = [
    "PROVIDER_CANDIDATES",
    "AuthCertificate",
    "ChannelBroken",
    "ProviderMissing",
    "TlsChannel",
    "card_auth_certificate",
    "card_context",
    "find_provider",
    "key_reference_pem",
    "key_uri",
    "load_provider",
    "provider_config",
]

PROVIDER_CANDIDATES: Final[tuple[Path, ...]] = (
    Path("/usr/lib/x86_64-linux-gnu/ossl-modules/pkcs11.so"),
    Path("/usr/lib/aarch64-linux-gnu/ossl-modules/pkcs11.so"),
)
_MAX_CHUNK_LINE: Final = 1024
_MAX_TRAILERS: Final = 8 * 1024


class ProviderMissing(ConfigError):
    code = RelayCode.RELAY_PROVIDER


class ChannelBroken(StateError):
    """The TLS channel to the service failed (handshake refused, connection lost)."""

    code = RelayCode.RELAY_CHANNEL


def find_provider() -> Path | None:
    """The pkcs11-provider module installed here (Debian 13's package), or None."""
    return next((p for p in PROVIDER_CANDIDATES if p.is_file()), None)


def provider_config(provider: Path, module: Path) -> str:
    """The OpenSSL configuration activating the default provider and pkcs11-provider on
    ``module`` (the card's PKCS#11 module, the SAME path the relay's python-pkcs11 loaded). No
    PIN: the token is logged in by the relay itself. Keys are not copied into session objects
    (``cache-keys = false``); the provider never de-initialises the module it shares."""
    for path in (provider, module):
        if any(c in str(path) for c in "\n\r$\"'#") or not path.is_absolute():
            raise ConfigError(f"Chemin refusé : {path}", f"Path refused: {path}")
    return (
        "openssl_conf = openssl_init\n"
        "[openssl_init]\n"
        "providers = provider_sect\n"
        "[provider_sect]\n"
        "default = default_sect\n"
        "pkcs11 = pkcs11_sect\n"
        "[default_sect]\n"
        "activate = 1\n"
        "[pkcs11_sect]\n"
        f"module = {provider}\n"
        f"pkcs11-module-path = {module}\n"
        "pkcs11-module-quirks = no-deinit\n"
        "pkcs11-module-cache-keys = false\n"
        "activate = 1\n"
    )


def _libcrypto() -> ctypes.CDLL:
    """The libcrypto ``_ssl`` is linked with (already loaded in this process)."""
    name = ctypes.util.find_library("crypto")
    if name is None:
        raise ProviderMissing("libcrypto introuvable.", "libcrypto not found.")
    return ctypes.CDLL(name)


def load_provider(config: Path) -> None:
    """Load ``config`` (:func:`provider_config`) into this process's default OpenSSL library
    context and check that pkcs11-provider is now available there."""
    crypto = _libcrypto()
    crypto.OSSL_LIB_CTX_load_config.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    crypto.OSSL_LIB_CTX_load_config.restype = ctypes.c_int
    crypto.OSSL_PROVIDER_available.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    crypto.OSSL_PROVIDER_available.restype = ctypes.c_int
    # Without a PIN (card logged out, another card) the provider falls back on OpenSSL's
    # default UI, a prompt on the terminal — the kiosk's. UI_null answers nothing, ever.
    crypto.UI_null.restype = ctypes.c_void_p
    crypto.UI_set_default_method.argtypes = [ctypes.c_void_p]
    crypto.UI_set_default_method(crypto.UI_null())
    if crypto.OSSL_LIB_CTX_load_config(None, str(config).encode()) != 1 or not (
        crypto.OSSL_PROVIDER_available(None, b"pkcs11")
    ):
        raise ProviderMissing(
            "Le fournisseur PKCS#11 d'OpenSSL (paquet pkcs11-provider) n'a pas pu être chargé.",
            "OpenSSL's PKCS#11 provider (package pkcs11-provider) could not be loaded.",
        )


def key_uri(token_serial: str, key_id: bytes) -> str:
    """RFC 7512 URI of the private key with CKA_ID ``key_id`` on the token ``token_serial``
    (the serial: another card put in its place is never used)."""
    serial = quote(token_serial, safe="")
    return f"pkcs11:serial={serial};id={quote(key_id, safe='')};type=private"


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(value)) + value


def key_reference_pem(uri: str) -> str:
    """The PEM pkcs11-provider decodes into a key reference (its tools/uri2pem.py format:
    SEQUENCE { VisibleString description, UTF8String uri }). A reference, not a secret — but
    never a ``pin-value``/``pin-source`` in it."""
    if "pin-" in uri.lower():
        raise ValueError("no PIN in a key reference")
    import base64

    body = _tlv(0x30, _tlv(0x1A, b"PKCS#11 Provider URI v1.0") + _tlv(0x0C, uri.encode()))
    text = base64.encodebytes(body).decode("ascii")
    return f"-----BEGIN PKCS#11 PROVIDER URI-----\n{text}-----END PKCS#11 PROVIDER URI-----\n"


@dataclass(frozen=True, slots=True)
class AuthCertificate:
    """The card's AUTHENTICATION certificate (digitalSignature, not nonRepudiation) and the
    CKA_ID of its key, read WITHOUT PIN, with the intermediate CA(s) the card carries."""

    der: bytes
    key_id: bytes
    intermediates_der: tuple[bytes, ...]
    token_serial: str

    def chain_pem(self) -> str:
        from cryptography.hazmat.primitives.serialization import Encoding

        certs = [x509.load_der_x509_certificate(d) for d in (self.der, *self.intermediates_der)]
        return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in certs)


def _usage(cert: x509.Certificate) -> tuple[bool, bool, bool]:
    """(is a CA, digitalSignature, nonRepudiation)."""
    try:
        ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        ca = False
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return ca, False, False
    return ca, ku.digital_signature, ku.content_commitment


def card_auth_certificate(lib: Pkcs11Lib, token_serial: str) -> AuthCertificate:
    """Read the authentication certificate of the card ``token_serial`` without logging in:
    chosen by key usage (never the nonRepudiation signature certificate), its key by CKA_ID."""
    try:
        tokens = [t for t in lib.get_tokens() if t.serial.decode(errors="replace") == token_serial]
        if len(tokens) != 1:
            raise CardRemoved()
        with tokens[0].open() as session:
            found: list[tuple[bytes, x509.Certificate, bytes]] = []
            for obj in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE}):
                try:
                    der = bytes(obj[Attribute.VALUE])
                    found.append(
                        (bytes(obj[Attribute.ID]), x509.load_der_x509_certificate(der), der)
                    )
                except (pkcs11.PKCS11Error, ValueError):
                    continue
    except (pkcs11.TokenNotPresent, pkcs11.DeviceRemoved, pkcs11.SlotIDInvalid) as exc:
        raise CardRemoved() from exc
    auth = [
        (kid, der)
        for kid, cert, der in found
        if kid and (u := _usage(cert)) and not u[0] and u[1] and not u[2]
    ]
    if len(auth) != 1:
        raise CardNotSupported(
            "Aucun certificat d'authentification unique sur la carte.",
            "No single authentication certificate on the card.",
        )
    cas = tuple(
        der
        for _kid, cert, der in sorted(found, key=lambda f: f[0])
        if _usage(cert)[0] and cert.issuer != cert.subject
    )
    return AuthCertificate(auth[0][1], auth[0][0], cas, token_serial)


def _refuse_pin_prompt() -> bytes:
    # The provider must never ask for the PIN (see the module's docstring): OpenSSL's callback.
    raise StateError(
        "La carte n'est pas déverrouillée : le code se saisit sur le boîtier.",
        "The card is not unlocked: the PIN is typed on the box.",
        code=RelayCode.RELAY_CHANNEL,
    )


def card_context(
    *,
    roots_pem: Sequence[str],
    cert_chain: Path,
    key: Path,
    crl_file: Path | None = None,
) -> ssl.SSLContext:
    """A verifying client context (:func:`client_context`: configured roots, host name, TLS
    >= 1.2) presenting ``cert_chain`` with ``key`` — a pkcs11-provider key reference PEM on the
    box, a key file where a test stands in for the card. ``crl_file`` (PEM CRLs of the server's
    chain): the server's certificate is then refused when revoked or when its issuer's CRL is
    missing (VERIFY_CRL_CHECK_LEAF)."""
    context = client_context(roots_pem)
    if crl_file is not None:
        context.load_verify_locations(cafile=str(crl_file))
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    # A full handshake signs with the card; a resumed one would not prove it is still there.
    context.options |= ssl.OP_NO_TICKET
    try:
        context.load_cert_chain(str(cert_chain), str(key), password=_refuse_pin_prompt)
    except ssl.SSLError as exc:
        raise ChannelBroken(
            "La clé d'authentification de la carte est inutilisable pour TLS.",
            "The card's authentication key cannot be used for TLS.",
        ) from exc
    return context


class TlsChannel:
    """One TLS connection to one service, opened at the first request and kept (HTTP/1.1
    keep-alive); opened again when the server closed it. ``handshakes`` counts full handshakes,
    each one card operation."""

    def __init__(
        self,
        context: ssl.SSLContext,
        host: str,
        port: int,
        *,
        timeout: float = 30.0,
        connect: Callable[[tuple[str, int], float], socket.socket] | None = None,
    ) -> None:
        self._context = context
        self.host = host
        self.port = port
        self._timeout = timeout
        self._connect = connect or (lambda addr, t: socket.create_connection(addr, timeout=t))
        self._sock: ssl.SSLSocket | None = None
        self._buffer = b""
        self.handshakes = 0

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def _open(self) -> ssl.SSLSocket:
        if self._sock is not None:
            return self._sock
        try:
            raw = self._connect((self.host, self.port), self._timeout)
        except OSError as exc:
            raise ChannelBroken(
                f"Service injoignable ({self.host}:{self.port}).",
                f"Service unreachable ({self.host}:{self.port}).",
            ) from exc
        try:
            if raw.family in (socket.AF_INET, socket.AF_INET6):
                # Each request is one write: sent at once, never held for an ACK.
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            kernel_timeouts(raw, self._timeout)
            sock = self._context.wrap_socket(raw, server_hostname=self.host)
        except ssl.SSLCertVerificationError as exc:
            raw.close()
            raise ChannelBroken(
                f"Certificat du service refusé ({exc.verify_message}).",
                f"The service's certificate is refused ({exc.verify_message}).",
            ) from exc
        except (ssl.SSLError, OSError) as exc:
            raw.close()
            raise ChannelBroken(
                "Le service a refusé la connexion authentifiée par la carte.",
                "The service refused the connection authenticated by the card.",
            ) from exc
        self.handshakes += 1
        self._sock, self._buffer = sock, b""
        return sock

    def close(self) -> None:
        sock, self._sock, self._buffer = self._sock, None, b""
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _recv(self, sock: ssl.SSLSocket) -> bytes:
        data = sock.recv(65536)
        if not data:
            raise EOFError
        return data

    def _read_until(self, sock: ssl.SSLSocket, marker: bytes, limit: int) -> bytes:
        end = self._buffer.find(marker)
        while end < 0:
            if len(self._buffer) > limit:
                raise RelayRefused(502, "Réponse du service trop longue.", "Answer too long.")
            data = self._recv(sock)
            self._buffer += data
            end = self._buffer.find(marker, max(0, len(self._buffer) - len(data) - len(marker)))
        part, self._buffer = self._buffer[:end], self._buffer[end + len(marker) :]
        return part

    def _read_into(self, sock: ssl.SSLSocket, n: int, out: _Out) -> None:
        """The next ``n`` bytes of the answer, passed to ``out`` as they come."""
        while n:
            if not self._buffer:
                self._buffer = self._recv(sock)
            if len(self._buffer) <= n:
                piece, self._buffer = self._buffer, b""
            else:
                piece, self._buffer = self._buffer[:n], self._buffer[n:]
            out.add(piece)
            n -= len(piece)

    def exchange(self, request_head: bytes, body: bytes, method: str) -> tuple[bytes, HttpHead]:
        """:meth:`forward`, with the answer's head parsed for its caller."""
        answer = self.forward(request_head, body, method)[0]
        return answer, parse_head(answer[: answer.find(b"\r\n\r\n")], request=False)

    def forward(
        self,
        request_head: bytes,
        body: bytes,
        method: str,
        send: Callable[[bytes], object] | None = None,
    ) -> tuple[bytes, int, int, bool]:
        """Send one request and read its answer (head and body, as received, unchanged):
        (what is left of the answer to pass on, its status, its whole size, whether its body
        ended with the connection — no length, no chunks: the practice software then knows its
        end only by the close of its own connection). Without ``send``
        the answer is read whole and returned. With it, an answer over STREAM_FROM is passed to
        ``send`` in pieces of about that size as it comes (same bounds: MAX_BODY), and what is
        returned is its last piece; if it then breaks — the service, a bound, or ``send`` itself
        — the channel is closed and AnswerCut raised. A connection the server closed while idle
        is opened again once (a new handshake)."""
        for attempt in (0, 1):
            reused = self._sock is not None
            sock = self._open()
            try:
                sock.sendall(request_head + body if len(body) < 65536 else request_head)
                if len(body) >= 65536:
                    sock.sendall(body)  # a large body is not copied behind its head
                end = self._buffer.find(b"\r\n\r\n")
                while end < 0:
                    if len(self._buffer) > MAX_HEAD:
                        raise RelayRefused(
                            502, "Réponse du service trop longue.", "Answer too long."
                        )
                    data = self._recv(sock)
                    self._buffer += data
                    end = self._buffer.find(b"\r\n\r\n", max(0, len(self._buffer) - len(data) - 3))
            except (EOFError, OSError) as exc:
                self.close()
                if reused and attempt == 0:
                    continue  # the kept connection had been closed by the server: reopen once
                raise ChannelBroken(
                    "La connexion au service s'est interrompue.",
                    "The connection to the service was interrupted.",
                ) from exc
            except RelayRefused:
                self.close()
                raise
            break
        try:
            status, kind, length, keep = answer_framing(self._buffer[:end], method)
        except RelayRefused:
            self.close()
            raise
        if kind == "length" and length <= STREAM_FROM:
            # A short answer (the usual case), read whole and passed on as one slice.
            total = end + 4 + length
            try:
                while len(self._buffer) < total:
                    self._buffer += self._recv(sock)
            except (EOFError, OSError) as exc:
                self.close()
                raise ChannelBroken(
                    "La réponse du service s'est interrompue.",
                    "The service's answer was interrupted.",
                ) from exc
            if len(self._buffer) == total:
                answer, self._buffer = self._buffer, b""
            else:
                answer, self._buffer = self._buffer[:total], self._buffer[total:]
            if not keep:
                self.close()
            return answer, status, total, False
        out = _Out(send)
        out.add(self._buffer[: end + 4])
        self._buffer = self._buffer[end + 4 :]
        try:
            self._read_body(sock, kind, length, out)
        except (EOFError, OSError, RelayRefused, _SendFailed) as exc:
            self.close()
            if out.sent:
                raise AnswerCut(status, out.sent) from exc
            if isinstance(exc, RelayRefused):
                raise
            raise ChannelBroken(
                "La réponse du service s'est interrompue.",
                "The service's answer was interrupted.",
            ) from exc
        if not keep:
            self.close()
        rest = out.rest()
        return rest, status, out.sent + len(rest), kind == "close"

    def _read_body(self, sock: ssl.SSLSocket, kind: str, length: int, out: _Out) -> None:
        if kind == "none":
            return
        if kind == "length":
            self._read_into(sock, length, out)
            return
        if kind == "chunked":
            total = 0
            while True:
                line = self._read_until(sock, b"\r\n", _MAX_CHUNK_LINE)
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise RelayRefused(502, "Morceau mal formé.", "Malformed chunk.") from None
                total += size
                if size < 0 or total > MAX_BODY:
                    raise RelayRefused(502, "Réponse trop longue.", "Answer too long.")
                out.add(line + b"\r\n")
                if size == 0:
                    while len(self._buffer) < 2:
                        self._buffer += self._recv(sock)
                    if self._buffer.startswith(b"\r\n"):
                        self._buffer = self._buffer[2:]
                        out.add(b"\r\n")
                        return
                    trailers = self._read_until(sock, b"\r\n\r\n", _MAX_TRAILERS)
                    out.add(trailers + b"\r\n\r\n")
                    return
                self._read_into(sock, size + 2, out)
        # Delimited by the close: read to the end, bounded; the channel cannot be kept.
        total, self._buffer = len(self._buffer), self._buffer
        if self._buffer:
            out.add(self._buffer)
            self._buffer = b""
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            total += len(data)
            if total > MAX_BODY:
                raise RelayRefused(502, "Réponse trop longue.", "Answer too long.")
            out.add(data)
        self.close()


class _SendFailed(Exception):
    """The practice software's socket failed while an answer was passed on to it."""


class _Out:
    """An answer as it is read: held whole up to STREAM_FROM, beyond it passed on to ``send``
    (when there is one) in pieces of at least that size."""

    __slots__ = ("_held", "_parts", "_send", "sent")

    def __init__(self, send: Callable[[bytes], object] | None) -> None:
        self._send = send
        self._parts: list[bytes] = []
        self._held = 0
        self.sent = 0

    def add(self, data: bytes) -> None:
        self._parts.append(data)
        self._held += len(data)
        if self._send is not None and self._held >= STREAM_FROM:
            data = b"".join(self._parts)
            self._parts, self._held = [], 0
            try:
                self._send(data)
            except OSError as exc:
                raise _SendFailed from exc
            self.sent += len(data)

    def rest(self) -> bytes:
        return b"".join(self._parts)
