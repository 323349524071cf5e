"""The first-start wizard's result turned into parameter changes: the practitioner proven by their
CPS card (name, RPPS and signature certificate read from it), their mailbox, emitter number and
organisms — saved together through the parameter service, journaled with their RPPS — and the
first backup recovery passphrase, made here and shown once."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from balise.domain.card import CardIdentity
from balise.services.params import Change

# No 0/O, 1/I/L: read from the screen and written on paper without doubt.
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


@dataclass(frozen=True, slots=True)
class OrganismPlan:
    ident: str
    type: str
    regime: str
    caisse: str
    centre: str
    address: str
    pem_path: str  # the encryption certificates, a PEM file on a USB key ("": the directory's)


@dataclass(frozen=True, slots=True)
class SetupPlan:
    """What the practitioner typed in the wizard (the card gives the rest)."""

    bal_address: str
    bal_password: str = field(repr=False)
    smtp_host: str
    smtp_port: str
    smtp_tls: str
    pop3_host: str
    pop3_port: str
    pop3_tls: str
    emitter_number: str
    organisms: tuple[OrganismPlan, ...] = ()

    def mail(self) -> dict[str, str]:
        """The mail parameters as typed (the BAL address is the user name on both servers)."""
        return {
            "bal_address": self.bal_address,
            "smtp.host": self.smtp_host,
            "smtp.port": self.smtp_port,
            "smtp.tls": self.smtp_tls,
            "smtp.user": self.bal_address,
            "smtp.password": self.bal_password,
            "pop3.host": self.pop3_host,
            "pop3.port": self.pop3_port,
            "pop3.tls": self.pop3_tls,
            "pop3.user": self.bal_address,
            "pop3.password": self.bal_password,
        }


def new_recovery_passphrase() -> str:
    """Six groups of four characters (about 118 bits), e.g. 7KQM-2XRT-…"""
    return "-".join("".join(secrets.choice(_ALPHABET) for _ in range(4)) for _ in range(6))


def certificate_holder(pem: str) -> str:
    """The holder's common name of a PEM certificate (a locum's), for the screen."""
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def certificate_pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode("ascii")


def setup_changes(
    plan: SetupPlan,
    identity: CardIdentity,
    profile: str,
    organism_pems: Mapping[str, str],
) -> list[Change]:
    """Every change the wizard saves, in one go (the card's signature certificate becomes the
    profile's titular signer)."""
    changes = [
        Change("display_name", identity.holder_name, profile=profile),
        Change("rpps", identity.rpps, profile=profile),
        Change("emitter_number", plan.emitter_number, profile=profile),
        Change("signers.titular", certificate_pem(identity.signature_cert_der), profile=profile),
    ]
    changes += [Change(name, raw, profile=profile) for name, raw in plan.mail().items()]
    for org in plan.organisms:
        for name, raw in (
            ("type", org.type),
            ("regime", org.regime),
            ("caisse", org.caisse),
            ("centre", org.centre),
            ("address", org.address),
        ):
            changes.append(Change(name, raw, organism=org.ident))
        if org.ident in organism_pems:  # else fetched from the SESAM-Vitale directory
            changes.append(Change("recipient_certs", organism_pems[org.ident], organism=org.ident))
    return changes
