"""`balise egress list`: the ONE list of hosts the box may reach, derived from the parameters.

The root helper of the appliance (ansible/roles/hardening/files/balise-egress-apply) resolves this
list and loads it into the nftables sets of the default-drop output policy.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from balise.cli.common import EXIT_OK, _context, _out
from balise.domain.params import Scope
from balise.services.params import ParameterService

Proto = Literal["tcp", "udp"]
# DNS goes to whatever resolvers the system was given (DHCP or static): the helper reads them
# from resolv.conf, so the list names them by this token rather than by an address.
RESOLVERS = "@resolvers"


@dataclass(frozen=True, slots=True)
class EgressEntry:
    """One destination the box may open a connection to, and why."""

    purpose: str
    host: str
    port: int
    proto: Proto

    def line(self) -> str:
        return f"{self.purpose:<16} {self.host:<40} {self.port}/{self.proto}"


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
    """Fixed hosts, the configured CRL host, then every profile's SMTP and POP3 endpoints."""
    entries: list[EgressEntry] = list(FIXED)
    crl = params.value("crl_url")
    if isinstance(crl, str):
        parts = urlsplit(crl.strip())
        if parts.hostname and parts.scheme in {"http", "https"}:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            entries.append(EgressEntry("crl", parts.hostname.lower(), port, "tcp"))
    for profile in params.ids(Scope.PROFILE):
        for kind in ("smtp", "pop3"):
            host = params.value(f"{kind}.host", profile=profile)
            service_port = params.value(f"{kind}.port", profile=profile)
            if isinstance(host, str) and isinstance(service_port, int):
                entries.append(EgressEntry(f"{kind}:{profile}", host, service_port, "tcp"))
    unique: dict[tuple[str, int, str], EgressEntry] = {}
    for entry in entries:
        unique.setdefault((entry.host, entry.port, entry.proto), entry)
    return list(unique.values())


def cmd_egress_list(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        entries = egress_entries(ctx.params)
    finally:
        ctx.close()
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
