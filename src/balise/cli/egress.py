"""`balise egress list`: the ONE list of hosts the box may reach, derived from the parameters.

The root helper of the appliance (ansible/roles/hardening/files/balise-egress-apply) resolves this
list and loads it into the nftables sets of the default-drop output policy. A destination nftables
could not take (a scoped IPv6 literal, a port out of range, a host that is no host name) is listed
as refused, with its reason in French, and never reaches the helper: one bad parameter must not
cut the others.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from balise.cli.common import EXIT_OK, _context, _err, _out
from balise.domain.params import Scope
from balise.services.crl import configured_sources
from balise.services.params import ParameterService

Proto = Literal["tcp", "udp"]
# DNS goes to whatever resolvers the system was given (DHCP or static): the helper reads them
# from resolv.conf, so the list names them by this token rather than by an address.
RESOLVERS = "@resolvers"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)
_SHOWN_MAX = 80


def _shown(text: str) -> str:
    """A hostile value as one printable line (no control character reaches a terminal)."""
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return escaped if len(escaped) <= _SHOWN_MAX else escaped[: _SHOWN_MAX - 1] + "…"


@dataclass(frozen=True, slots=True)
class EgressEntry:
    """One destination the box may open a connection to, and why; ``refused`` says why it may
    not after all (French), empty when the helper loads it."""

    purpose: str
    host: str
    port: int
    proto: Proto
    refused: str = ""

    def line(self) -> str:
        if self.refused:
            port = str(self.port) if self.port else "?"
            where = f"{_shown(self.host):<40} {port}/{self.proto}"
            return f"{_shown(self.purpose):<16} {where} refusé : {self.refused}"
        return f"{self.purpose:<16} {self.host:<40} {self.port}/{self.proto}"


def _host_problem(host: str) -> str | None:
    """Why the helper could not load this host (French), None when it can: an IP literal
    without a zone or a plain DNS name."""
    if host == RESOLVERS:
        return None
    if "%" in host:
        return "adresse IPv6 avec une zone (%…) : nftables ne la prend pas, donnez l'adresse seule"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    if ":" in host or host.startswith("["):
        return "adresse IPv6 invalide"
    if len(host) > 253 or not _HOSTNAME_RE.fullmatch(host):
        return "nom d'hôte invalide (lettres sans accent, chiffres, tirets et points seulement)"
    if host.rsplit(".", maxsplit=1)[-1].isdigit():
        return "adresse IPv4 invalide"
    return None


def checked(entry: EgressEntry) -> EgressEntry:
    """``entry``, or the same marked refused with the reason the helper could not load it."""
    if entry.refused:
        return entry
    host = entry.host.lower() if entry.host.isascii() else entry.host
    port = entry.port
    reason = _host_problem(host)
    if reason is None and (isinstance(port, bool) or not isinstance(port, int)):
        reason = "port invalide"
    elif reason is None and not 1 <= port <= 65535:
        reason = f"port {port} hors de 1 à 65535"
    elif reason is None and entry.proto not in ("tcp", "udp"):
        reason = "protocole inconnu"
    return replace(entry, host=host, refused=reason or "")


def crl_destination(url: object) -> EgressEntry | None:
    """The CRL host of ``crl_url``: None when the parameter is not set, else the destination,
    accepted or refused with its reason (never an exception, whatever the value)."""
    if not isinstance(url, str) or not url.strip():
        return None
    text = url.strip()
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
    except ValueError:
        return EgressEntry(
            "crl", text, 0, "tcp", "adresse illisible (hôte entre crochets invalide)"
        )
    try:
        port = parts.port
    except ValueError:
        return EgressEntry("crl", host or text, 0, "tcp", "port invalide ou hors de 1 à 65535")
    if parts.scheme not in ("http", "https"):
        return EgressEntry(
            "crl", text, 0, "tcp", "seules les adresses http:// et https:// sont prises en charge"
        )
    if not host:
        return EgressEntry("crl", text, 0, "tcp", "aucun hôte dans l'adresse")
    default = 443 if parts.scheme == "https" else 80
    return checked(EgressEntry("crl", host, default if port is None else port, "tcp"))


# Fixed destinations every box needs, whatever the practice parameters say.
FIXED: tuple[EgressEntry, ...] = (
    EgressEntry("dns", RESOLVERS, 53, "udp"),
    EgressEntry("dns", RESOLVERS, 53, "tcp"),
    *(EgressEntry("ntp", f"{n}.debian.pool.ntp.org", 123, "udp") for n in range(4)),
    EgressEntry("debian", "deb.debian.org", 80, "tcp"),
    EgressEntry("debian", "deb.debian.org", 443, "tcp"),
    EgressEntry("debian-security", "security.debian.org", 80, "tcp"),
    EgressEntry("debian-security", "security.debian.org", 443, "tcp"),
    EgressEntry("igc-sante-crl", "igc-sante.esante.gouv.fr", 80, "tcp"),
    EgressEntry("igc-sante-crl", "igc-sante.esante.gouv.fr", 443, "tcp"),
)


def egress_entries(params: ParameterService) -> list[EgressEntry]:
    """Fixed hosts, the configured CRL host, then every profile's SMTP and POP3 endpoints; those
    the helper could not load are kept, marked refused."""
    entries: list[EgressEntry] = list(FIXED)
    for url in configured_sources(params):  # crl_url and the certificates' CRL points
        crl = crl_destination(url)
        if crl is not None:
            entries.append(crl)
    directory = params.value("sesam_vitale_directory")
    if isinstance(directory, str):
        parts = urlsplit(directory)
        entries.append(
            checked(EgressEntry("sv-directory", parts.hostname or "", parts.port or 389, "tcp"))
        )
    for profile in params.ids(Scope.PROFILE):
        for kind in ("smtp", "pop3"):
            host = params.value(f"{kind}.host", profile=profile)
            service_port = params.value(f"{kind}.port", profile=profile)
            if isinstance(host, str):
                port = service_port if isinstance(service_port, int) else 0
                entries.append(checked(EgressEntry(f"{kind}:{profile}", host, port, "tcp")))
    # Servers typed in the kiosk and being tested, not saved yet (ParameterService.hold_egress).
    for host, port in params.held_egress():
        entries.append(checked(EgressEntry("test-connexion", host, port, "tcp")))
    unique: dict[tuple[str, int, str, str], EgressEntry] = {}
    for entry in entries:
        unique.setdefault((entry.host, entry.port, entry.proto, entry.refused), entry)
    return list(unique.values())


def cmd_egress_list(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        entries = egress_entries(ctx.params)
    finally:
        ctx.close()
    for entry in entries:
        if entry.refused:
            # stderr: the journal of balise-egress.service, the technician's terminal.
            _err(
                f"balise egress : destination refusée ({_shown(entry.purpose)}) "
                f"« {_shown(entry.host)} » : {entry.refused} ; les autres restent autorisées"
            )
    if args.json:
        text = json.dumps([asdict(e) for e in entries], ensure_ascii=False, indent=1)
    else:
        text = "\n".join(e.line() for e in entries)
    if args.output:
        # Written through a temporary name so the root helper never reads half a list.
        target = Path(args.output)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, target)
    else:
        _out(text)
    return EXIT_OK
