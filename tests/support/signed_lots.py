"""Signed lots without a card: lots imported through intake, signed in-process with the test key
and enveloped like services/signing.py, then moved READY → SIGNED; and a box wired to an SMTP
test server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA256

from balise.app.context import Context
from balise.cms import build_entity, build_enveloped_data, gzip_payload, sign_data
from balise.domain.lotstate import LotState
from balise.sim.pki import TestPKI
from balise.sim.smtpd import SmtpServer
from tests.support.balise_env import BaliseEnv
from tests.support.box import configure_box
from tests.support.clock import TEST_NOW, TEST_TODAY
from tests.support.lot_corpus import valid_lot
from tests.support.mail_fixtures import SMTP_PASSWORD, SMTP_USER, TlsCA


def sign_lots(ctx: Context, pki: TestPKI, numbers: range | list[int]) -> list[int]:
    """Import one valid lot per number (dated yesterday) and sign it; returns the lot ids."""
    signer = pki.practitioner.signature
    cert_der = signer.cert_der.read_bytes()
    recipients = [pki.amo.cert_der.read_bytes(), pki.amc.cert_der.read_bytes()]
    intake = ctx.intake()
    transitions = ctx.transitions()
    today = TEST_TODAY
    ids: list[int] = []
    for number in numbers:
        outcome = intake.import_bytes(
            f"lot{number}.lot", valid_lot(today, lot_number=number), f"test:{number}"
        )
        assert outcome.accepted and outcome.lot_id is not None, outcome.problems
        lot = ctx.lots.get(outcome.lot_id)
        assert lot is not None
        signed = sign_data(
            ctx.lots.content(lot.id),
            cert_der,
            lambda tbs: signer.key.sign(tbs, PKCS1v15(), SHA256()),
            signing_time=TEST_NOW,
            # As the card does: the intermediate travels with the signature, so it chains.
            extra_certs_der=(pki.intermediate.cert_der.read_bytes(),),
        )
        entity = build_entity(
            gzip_payload(signed), emitter=lot.emitter, lot_number=lot.lot_number, test_flow=True
        )
        transitions.move(
            lot.id,
            LotState.READY,
            LotState.SIGNED,
            signer="test",
            signed_at=TEST_NOW.isoformat(timespec="seconds"),
            signed_cms=signed,
            envelope=build_enveloped_data(entity, recipients),
        )
        ids.append(lot.id)
    return ids


def configure_smtp(
    ctx: Context,
    server: SmtpServer | None,
    tls_ca: TlsCA | None,
    *,
    tls: str | None = None,
    port: int | None = None,
    password: str = SMTP_PASSWORD,
) -> None:
    """Point profile p1 at ``server`` (or ``port`` on 127.0.0.1); trust the test CA if given."""
    p = ctx.params
    p.set("smtp.host", "127.0.0.1", profile="p1")
    p.set(
        "smtp.port", str(port if port is not None else server.port if server else 25), profile="p1"
    )
    mode = tls or (server.tls if server and server.tls != "hidden-starttls" else "starttls")
    p.set("smtp.tls", mode, profile="p1")
    p.set("smtp.user", SMTP_USER, profile="p1")
    p.set("smtp.password", password, profile="p1")
    if tls_ca is not None:
        p.set("ca_bundle", tls_ca.ca_pem.read_text())


@dataclass
class SendingBox:
    env: BaliseEnv
    ctx: Context
    pki: TestPKI


@pytest.fixture
def sending_box(balise_env: BaliseEnv, pki: TestPKI) -> Iterator[SendingBox]:
    """A configured box (profile p1, organism cpam422) with no SMTP settings yet."""
    ctx = balise_env.context()
    configure_box(ctx, pki)
    try:
        yield SendingBox(balise_env, ctx, pki)
    finally:
        ctx.close()
