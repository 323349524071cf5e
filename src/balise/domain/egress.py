"""The ONE list of hosts the box may reach: its entries and the rules an entry must meet to be
loaded into nftables by the root helper (ansible/roles/hardening/files/balise-egress-apply).

A destination nftables could not take (a scoped IPv6 literal, a port out of range, a host that is
no host name) is kept, marked refused with its reason in French, and never reaches the helper:
one bad parameter must not cut the others. Pure: the parameters are read by
``balise.services.egress``, the list printed by ``balise egress list`` (balise.cli.egress)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import urlsplit

Proto = Literal["tcp", "udp"]
# DNS goes to whatever resolvers the system was given (DHCP or static): the helper reads them
# from resolv.conf, so the list names them by this token rather than by an address.
RESOLVERS = "@resolvers"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)


@dataclass(frozen=True, slots=True)
class EgressEntry:
    """One destination the box may open a connection to, and why; ``refused`` says why it may
    not after all (French), empty when the helper loads it."""

    purpose: str
    host: str
    port: int
    proto: Proto
    refused: str = ""


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


def crl_destination(url: str) -> EgressEntry | None:
    """The CRL host of ``crl_url``: None when blank, else the destination, accepted or refused
    with its reason (never an exception, whatever the text)."""
    if not url.strip():
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
