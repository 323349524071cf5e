"""The egress list of this box: the fixed destinations, then those its parameters name (the CRL
hosts, the Sesam-Vitale directory, every profile's SMTP and POP3 servers, the card relay's
online services, the servers being tested in the kiosk), each checked by the rules of
``balise.domain.egress``."""

from __future__ import annotations

from urllib.parse import urlsplit

from balise.domain.egress import FIXED, EgressEntry, checked, crl_destination
from balise.services.crl import configured_sources
from balise.services.params import ParameterService
from balise.services.settings import box_settings, profiles, relay_settings


def egress_entries(params: ParameterService) -> list[EgressEntry]:
    """Fixed hosts, the configured CRL host, then every profile's SMTP and POP3 endpoints; those
    the helper could not load are kept, marked refused."""
    entries: list[EgressEntry] = list(FIXED)
    for url in configured_sources(params):  # crl_url and the certificates' CRL points
        crl = crl_destination(url)
        if crl is not None:
            entries.append(crl)
    directory = box_settings(params).sesam_vitale_directory
    if directory is not None:
        parts = urlsplit(directory)
        entries.append(
            checked(EgressEntry("sv-directory", parts.hostname or "", parts.port or 389, "tcp"))
        )
    for profile in profiles(params):
        for kind, host, port in (
            ("smtp", profile.smtp_host, profile.smtp_port),
            ("pop3", profile.pop3_host, profile.pop3_port),
        ):
            if host is not None:
                entries.append(checked(EgressEntry(f"{kind}:{profile.id}", host, port, "tcp")))
    # The online services the card-authenticated relay may reach (issue 20): only those.
    for service in relay_settings(params).services.values():
        entries.append(
            checked(EgressEntry(f"relay:{service.name}", service.host, service.port, "tcp"))
        )
    # Servers typed in the kiosk and being tested, not saved yet (ParameterService.hold_egress).
    for host, port in params.held_egress():
        entries.append(checked(EgressEntry("test-connexion", host, port, "tcp")))
    unique: dict[tuple[str, int, str, str], EgressEntry] = {}
    for entry in entries:
        unique.setdefault((entry.host, entry.port, entry.proto, entry.refused), entry)
    return list(unique.values())
