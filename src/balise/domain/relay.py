"""The card-authenticated relay's pure side: the allow-list of online services and the HTTP/1.1
framing of what passes through (pure, bounded).

The practice software sends plain HTTP to the relay with the service's name as the first path
segment (``POST /visiodroits/api/rights HTTP/1.1``); the relay forwards the rest of the target to
that service's base URL over the card's TLS channel. Only the head is parsed (bounded), never the
body: bodies are passed through unchanged and never kept or journaled."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

from balise.domain.errors import StateError, ValidationError

__all__ = [
    "HOP_BY_HOP",
    "MAX_BODY",
    "MAX_HEAD",
    "STREAM_FROM",
    "AllowedService",
    "AnswerCut",
    "HttpHead",
    "RelayCode",
    "RelayRefused",
    "answer_framing",
    "forward_head",
    "parse_allow_list",
    "parse_head",
    "route",
]

MAX_HEAD: Final = 32 * 1024  # request line / status line and headers
MAX_BODY: Final = 16 * 1024 * 1024  # one request or answer body
# An answer is passed on whole once read, up to this size; beyond it, in pieces as it comes.
STREAM_FROM: Final = 64 * 1024
_MAX_HEADERS: Final = 100
_NAME_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
_METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_VERSIONS: Final = frozenset({"HTTP/1.1", "HTTP/1.0"})
_STATUS_RE: Final = re.compile(r"[1-5][0-9][0-9]")
# Header lines, each "token:value CRLF" with no CR, LF or NUL in the value: the whole block
# checked by the first, the (name, value without its leading blanks) pairs read by the second.
_FIELD_NAME = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_HEADER_LINES_RE: Final = re.compile(rf"(?:{_FIELD_NAME}:[^\r\n\0]*\r\n)*")
_HEADER_RE: Final = re.compile(rf"({_FIELD_NAME}):[ \t]*([^\r\n\0]*)\r\n")
# A service's answer head: status line, header lines (the block), then what frames its body.
_ANSWER_RE: Final = re.compile(
    rb"HTTP/1\.([0-9]) ([1-5][0-9][0-9])(?: [^\r\n\0]*)?\r\n((?:"
    + _FIELD_NAME.encode()
    + rb":[^\r\n\0]*\r\n)*)"
)
_FRAMING_RE: Final = re.compile(
    rb"^(content-length|transfer-encoding|connection):[ \t]*([^\r\n]*)\r\n", re.I | re.M
)
# Headers that frame a message or name its server: given twice, the message is refused.
_SINGLE: Final = frozenset({"content-length", "transfer-encoding", "host"})
# Headers about one connection, not the request (RFC 9110 §7.6.1): never forwarded as received.
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)


class RelayCode(StrEnum):
    """Codes of the card-authenticated relay."""

    RELAY_REFUSED = "RELAY_REFUSED"  # a request not forwarded (answered with an HTTP error)
    RELAY_SERVICE_BAD = "RELAY_SERVICE_BAD"  # an allow-list entry badly written
    RELAY_CHANNEL = "RELAY_CHANNEL"  # the card's TLS channel could not be opened or broke
    RELAY_PROVIDER = "RELAY_PROVIDER"  # the OpenSSL PKCS#11 provider is not usable here


class RelayRefused(ValidationError):
    """A request the relay does not forward; ``status`` is the HTTP answer it gets instead."""

    code = RelayCode.RELAY_REFUSED

    def __init__(self, status: int, fr: str, en: str) -> None:
        super().__init__(fr, en)
        self.status = status


class AnswerCut(StateError):
    """A service's answer that broke after part of it was passed on to the practice software:
    too late for an error answer, its connection is closed (the practice software sees an
    answer shorter than announced). ``status`` is the service's, ``sent`` the bytes passed."""

    code = RelayCode.RELAY_CHANNEL

    def __init__(self, status: int, sent: int) -> None:
        super().__init__(
            "La réponse du service s'est interrompue en cours de transmission.",
            "The service's answer broke while being passed on.",
        )
        self.status = status
        self.sent = sent


@dataclass(frozen=True, slots=True)
class AllowedService:
    """One online service the practice software may reach through the card's channel."""

    name: str  # first path segment the practice software uses
    host: str
    port: int
    base_path: str  # "" or "/api": prefixed to the rest of the target

    @property
    def url(self) -> str:
        port = "" if self.port == 443 else f":{self.port}"
        return f"https://{self.host}{port}{self.base_path}/"


def parse_allow_list(lines: list[str] | tuple[str, ...]) -> dict[str, AllowedService]:
    """``name=https://host[:port][/base]`` entries (the parameter ``relay_services``) into the
    allow-list; HTTPS only, no credentials, query or fragment in the URL, names unique."""
    services: dict[str, AllowedService] = {}
    for raw in lines:
        line = raw.strip()
        name, sep, url = line.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not _NAME_RE.fullmatch(name):
            raise ValidationError(
                f"Service en ligne mal écrit : « {line} » (attendu nom=https://hôte/chemin).",
                f"Badly written online service: {line!r} (expected name=https://host/path).",
                code=RelayCode.RELAY_SERVICE_BAD,
            )
        try:
            parts = urlsplit(url)
            port = parts.port or 443
        except ValueError:
            parts, port = None, 0
        if (
            parts is None
            or parts.scheme != "https"
            or not parts.hostname
            or parts.username is not None
            or parts.password is not None
            or parts.query
            or parts.fragment
        ):
            raise ValidationError(
                f"Adresse du service « {name} » refusée : une adresse https:// sans identifiant "
                "ni paramètre est attendue.",
                f"Address of service {name!r} refused: an https:// address without credentials "
                "or query is expected.",
                code=RelayCode.RELAY_SERVICE_BAD,
            )
        if name in services:
            raise ValidationError(
                f"Service en ligne « {name} » donné deux fois.",
                f"Online service {name!r} given twice.",
                code=RelayCode.RELAY_SERVICE_BAD,
            )
        services[name] = AllowedService(name, parts.hostname, port, parts.path.rstrip("/"))
    return services


class HttpHead:
    """A parsed request or response head: its first line's three parts and the headers in
    order (names as received); ``fields`` maps each lowercase name to its first value, built
    once, so that every look-up after the parse is one dictionary read. Not to be changed once
    made (a plain class with slots: made on every request, twice)."""

    __slots__ = ("_repeated", "fields", "first", "headers")

    def __init__(self, first: tuple[str, str, str], headers: tuple[tuple[str, str], ...]) -> None:
        self.first = first
        self.headers = headers
        fields: dict[str, str] = {}
        repeated: set[str] = set()
        for name, value in headers:
            key = name.lower()
            if key in fields:
                repeated.add(key)
            else:
                fields[key] = value
        self.fields = fields
        self._repeated = repeated & _SINGLE if repeated else repeated

    def __repr__(self) -> str:
        return f"HttpHead({self.first!r}, {self.headers!r})"

    def get(self, name: str) -> str | None:
        wanted = name.lower()
        if wanted in self._repeated:
            raise RelayRefused(400, f"En-tête {name} répété.", f"Header {name} repeated.")
        return self.fields.get(wanted)

    def content_length(self) -> int | None:
        value = self.get("content-length")
        if value is None:
            return None
        if not value.isdigit() or len(value) > 10 or int(value) > MAX_BODY:
            raise RelayRefused(
                413, "Corps trop long ou mal annoncé.", "Body too long or bad length."
            )
        return int(value)


def parse_head(data: bytes, *, request: bool) -> HttpHead:
    """Parse a head (without its final blank line) received from the outside: ASCII/Latin-1
    only, bounded, one request line or status line, then ``Name: value`` lines (checked whole
    by one expression, then read by another: no line split and matched one by one)."""
    if len(data) > MAX_HEAD:
        raise RelayRefused(431, "En-têtes trop longs.", "Headers too long.")
    text = data.decode("latin-1")
    line, sep, rest = text.partition("\r\n")
    if rest.count("\r\n") + (1 if sep else 0) > _MAX_HEADERS:
        raise RelayRefused(431, "Trop d'en-têtes.", "Too many headers.")
    first = line.split(" ", 2)
    if request:
        if (
            len(first) != 3
            or first[0] not in _METHODS
            or not first[1].startswith("/")
            or first[2] not in _VERSIONS
        ):
            raise RelayRefused(400, "Requête HTTP mal formée.", "Malformed HTTP request.")
    else:
        if len(first) == 2:
            first.append("")
        if (
            len(first) != 3
            or not first[0].startswith("HTTP/1.")
            or not _STATUS_RE.fullmatch(first[1])
        ):
            raise RelayRefused(502, "Réponse du service mal formée.", "Malformed service answer.")
    headers: tuple[tuple[str, str], ...] = ()
    if sep:
        rest += "\r\n"
        if not _HEADER_LINES_RE.fullmatch(rest):
            status = 400 if request else 502
            raise RelayRefused(status, "En-tête HTTP mal formé.", "Malformed HTTP header.")
        headers = tuple([(name, value.rstrip(" \t")) for name, value in _HEADER_RE.findall(rest)])
    return HttpHead((first[0], first[1], first[2]), headers)


def route(head: HttpHead, services: dict[str, AllowedService]) -> tuple[AllowedService, str]:
    """The allowed service a request goes to and the target to send it (its base path + the
    rest); a name not on the allow-list, a path going up, or a body sent in chunks are refused."""
    target = head.first[1]
    name, _, rest = target[1:].partition("/")
    name = name.partition("?")[0]
    service = services.get(name)
    if service is None:
        raise RelayRefused(
            403,
            f"Service « {name[:40]} » absent de la liste des services autorisés.",
            f"Service {name[:40]!r} is not on the allow-list.",
        )
    path = "/" + rest
    only = path.partition("?")[0]
    if ("." in only and any(seg in {"..", "."} for seg in only.split("/"))) or (
        "%" in path and "%2e" in path.lower()
    ):
        raise RelayRefused(400, "Chemin refusé.", "Path refused.")
    if head.get("transfer-encoding") is not None:
        raise RelayRefused(
            411, "Corps par morceaux non pris en charge.", "Chunked request bodies unsupported."
        )
    return service, service.base_path + path


def forward_head(head: HttpHead, service: AllowedService, target: str, body_len: int) -> bytes:
    """The head sent to the service: same method and headers except the hop-by-hop ones, the
    service's own Host, the body's exact length, and a connection kept alive."""
    host = service.host if service.port == 443 else f"{service.host}:{service.port}"
    lines = [f"{head.first[0]} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in head.headers:
        if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
            lines.append(f"{name}: {value}")
    if body_len or head.first[0] in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {body_len}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def answer_framing(head: bytes, method: str) -> tuple[int, str, int, bool]:
    """A service's answer head (without its final blank line), checked whole by one expression
    and read for what frames it: (status, how its body ends — "none", "length", "chunked" or
    "close" —, the body's length for "length", whether the connection may carry the next
    request). The other headers are passed on as received, never decoded. Anything malformed,
    repeated where it frames the body, or over the bounds: RelayRefused(502)."""
    if len(head) > MAX_HEAD:
        raise RelayRefused(502, "Réponse du service trop longue.", "Answer too long.")
    found = _ANSWER_RE.fullmatch(head + b"\r\n")
    if found is None:
        raise RelayRefused(502, "Réponse du service mal formée.", "Malformed service answer.")
    version, status_text, block = found.groups()
    if block.count(b"\r\n") > _MAX_HEADERS:
        raise RelayRefused(502, "Réponse du service trop longue.", "Answer too long.")
    status = int(status_text)
    keep = version != b"0"  # HTTP/1.0: one answer per connection
    length: bytes | None = None
    encoding: bytes | None = None
    for name, value in _FRAMING_RE.findall(block):
        key = name.lower()
        if key == b"connection":
            keep = keep and b"close" not in value.lower()
        elif key == b"content-length":
            if length is not None:
                raise RelayRefused(502, "Longueur de réponse répétée.", "Answer length repeated.")
            length = value.rstrip(b" \t")
        else:
            if encoding is not None:
                raise RelayRefused(502, "Codage de réponse répété.", "Answer encoding repeated.")
            encoding = value.rstrip(b" \t")
    if method == "HEAD" or status < 200 or status in (204, 304):
        return status, "none", 0, keep
    if encoding is not None:
        if encoding.lower() != b"chunked":
            raise RelayRefused(502, "Codage de réponse inconnu.", "Unknown answer encoding.")
        return status, "chunked", 0, keep
    if length is not None:
        if not length.isdigit() or len(length) > 10 or int(length) > MAX_BODY:
            raise RelayRefused(502, "Réponse trop longue ou mal annoncée.", "Bad answer length.")
        return status, "length", int(length), keep
    return status, "close", 0, False
