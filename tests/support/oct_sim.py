"""OCT simulator test support: a running simulator answering into the module's Dovecot (mailbox
bal1 for the box's BAL), and a signature tamperer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import cms

from balise.sim.box import BAL, CPAM
from balise.sim.dovecot import DovecotServer
from balise.sim.netutil import free_tcp_port
from balise.sim.oct import OctSimulator, OrganismKey
from balise.sim.pki import TestPKI
from tests.support.mail_fixtures import SMTP_PASSWORD, SMTP_USER, TlsCA

ORGANISM_ADDRESS = CPAM[5]


def flip_signature_bit(signed_der: bytes) -> bytes:
    """The same SignedData with one bit of its signature value flipped (content untouched)."""
    info = cms.ContentInfo.load(signed_der)
    signer = info["content"]["signer_infos"][0]
    value = bytearray(signer["signature"].native)
    value[len(value) // 2] ^= 0x01
    signer["signature"] = bytes(value)
    out: bytes = info.dump(force=True)
    return out


def make_oct(
    directory: Path,
    dovecot: DovecotServer,
    tls_ca: TlsCA,
    pki: TestPKI,
    **options: object,
) -> OctSimulator:
    """A simulator (not started) for the box's BAL → Dovecot user bal1, holding the AMO key of
    the box's CPAM address; ``options`` go to the constructor (answer_delay, send_noemie...)."""
    return OctSimulator(
        directory=directory,
        host="127.0.0.1",
        port=free_tcp_port(),
        tls_cert_pem=tls_ca.cert_pem,
        tls_key_pem=tls_ca.key_pem,
        smtp_users={SMTP_USER: SMTP_PASSWORD},
        dovecot=dovecot,
        mailbox_for={BAL: "bal1"},
        organisms=[OrganismKey(ORGANISM_ADDRESS, pki.amo.key_pem, pki.amo.cert_pem)],
        trusted_roots_der=[pki.root.cert_der.read_bytes()],
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def oct_simulator(
    mailboxes: DovecotServer, tls_ca: TlsCA, pki: TestPKI, tmp_path: Path
) -> Iterator[OctSimulator]:
    """A running OCT simulator answering into the module Dovecot's mailbox bal1 (emptied)."""
    sim = make_oct(tmp_path / "oct", mailboxes, tls_ca, pki)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()
