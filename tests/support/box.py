"""A configured box for tests: one practitioner (the golden samples' emitter) and its organisms."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest

from balise.adapters.clock import FixedClock
from balise.bootstrap import Context, open_context
from balise.sim.pki import TestPKI
from tests.support.balise_env import BaliseEnv

EMITTER = "00000012345678"
BAL = "xyz999212@bal.example.net"


def configure_box(ctx: Context, pki: TestPKI, *, mode: str = "test") -> None:
    """Profile p1 (emitter of the samples), CPAM 01 422 000 with certificates, AMC without."""
    p = ctx.params
    p.set("mode", mode)
    p.set("display_name", pki.practitioner.display_name, profile="p1")
    p.set("emitter_number", EMITTER, profile="p1")
    p.set("rpps", pki.practitioner.rpps, profile="p1")
    p.set("bal_address", BAL, profile="p1")
    p.set("signers.titular", pki.practitioner.signature.cert_pem.read_text(), profile="p1")
    for name, value in (("type", "CP"), ("regime", "01"), ("caisse", "422"), ("centre", "000")):
        p.set(name, value, organism="cpam422")
    p.set("address", "01422@422.01.rss.fr", organism="cpam422")
    p.set(
        "recipient_certs",
        pki.amo.cert_pem.read_text() + pki.amc.cert_pem.read_text(),
        organism="cpam422",
    )
    for name, value in (("type", "OC"), ("regime", "01"), ("caisse", "996"), ("centre", "000")):
        p.set(name, value, organism="amc996")


@dataclass
class Box:
    env: BaliseEnv
    ctx: Context


@pytest.fixture
def box(balise_env: BaliseEnv, pki: TestPKI) -> Iterator[Box]:
    """A configured box whose context runs on the real clock."""
    ctx = balise_env.context()
    configure_box(ctx, pki)
    try:
        yield Box(balise_env, ctx)
    finally:
        ctx.close()


def box_at(balise_env: BaliseEnv, when: datetime) -> Context:
    """Another context on the same data dir, with a fixed clock (for dated lot files)."""
    return open_context(balise_env.home, actor="test", env=balise_env.env, clock=FixedClock(when))
