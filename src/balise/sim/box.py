"""A box configured on the test PKI (tests, benches and the demo): practitioner p1 and organisms."""

from __future__ import annotations

from typing import Protocol

from balise.services.params import ParameterService
from balise.sim.pki import TestPKI

EMITTER = "00000012345678"  # the golden samples' practitioner
BAL = "xyz999212@bal.example.net"
CPAM = ("cpam422", "CP", "01", "422", "000", "01422@422.01.rss.fr")
AMC = ("amc996", "OC", "01", "996", "000")


class HasParams(Protocol):
    """What configuring a box needs of it: its parameters (balise.app.context.Context has them;
    the simulators never import the composition)."""

    @property
    def params(self) -> ParameterService: ...


def configure_box(ctx: HasParams, pki: TestPKI, *, mode: str = "test") -> None:
    """Profile p1 (emitter of the samples), CPAM 01 422 000 with the AMO and AMC certificates,
    an AMC organism without certificate."""
    p = ctx.params
    p.set("mode", mode)
    p.set("display_name", pki.practitioner.display_name, profile="p1")
    p.set("emitter_number", EMITTER, profile="p1")
    p.set("rpps", pki.practitioner.rpps, profile="p1")
    p.set("bal_address", BAL, profile="p1")
    p.set("signers.titular", pki.practitioner.signature.cert_pem.read_text(), profile="p1")
    configure_organisms(ctx, pki)


def configure_organisms(ctx: HasParams, pki: TestPKI) -> None:
    """CPAM 01 422 000 with the AMO and AMC certificates, an AMC organism without certificate
    (what a box set up with the first-start wizard finds already configured)."""
    p = ctx.params
    ident, kind, regime, caisse, centre, address = CPAM
    for name, value in (("type", kind), ("regime", regime), ("caisse", caisse), ("centre", centre)):
        p.set(name, value, organism=ident)
    p.set("address", address, organism=ident)
    p.set(
        "recipient_certs",
        pki.amo.cert_pem.read_text() + pki.amc.cert_pem.read_text(),
        organism=ident,
    )
    ident, kind, regime, caisse, centre = AMC
    for name, value in (("type", kind), ("regime", regime), ("caisse", caisse), ("centre", centre)):
        p.set(name, value, organism=ident)
