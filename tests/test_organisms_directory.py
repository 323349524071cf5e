"""The organisms' encryption certificates from the SESAM-Vitale public directory, here a REAL
slapd on loopback (private config and mdb database, base like the public one), validated against
a SESAM-Vitale-like CA of the test PKI. Signing goes through the REAL SoftHSM2 token, and openssl
is the organism that decrypts."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pkcs11
import pytest

from balise.adapters.pkcs11 import Pkcs11Signer
from balise.app.context import Context
from balise.domain.lotstate import LotState
from balise.services.signing import examine_card, sign_with_card
from balise.sim.pki import Issued, SesamVitalePKI, TestPKI
from balise.sim.softhsm import SoftHSM, TokenInfo
from tests.support.balise_env import BaliseEnv
from tests.support.box import Box, box_at
from tests.support.clock import TEST_NOW, TEST_TODAY
from tests.support.lot_corpus import valid_lot
from tests.support.pki_fixtures import TEST_PIN
from tests.support.slapd_support import Slapd

AMC_CN = "01996@996.01.rss.fr"  # organism amc996 of the test box: régime 01, caisse 996
AMC_ADDRESSEE = "00000001996000"


def use_directory(ctx: Context, slapd: Slapd, sv: SesamVitalePKI) -> None:
    ctx.params.set("sesam_vitale_roots", sv.ca.cert_pem.read_text())
    ctx.params.set("sesam_vitale_directory", slapd.url)  # test mode: the TEST base


def der(issued: Issued) -> bytes:
    return issued.cert_der.read_bytes()


@pytest.fixture(scope="module")
def amc_cert(sesam_vitale: SesamVitalePKI) -> Issued:
    return sesam_vitale.issue_organism(AMC_CN)


@pytest.mark.softhsm
def test_lot_for_an_organism_nobody_pasted_a_certificate_for_opens_with_its_directory_key(
    box: Box,
    pki: TestPKI,
    slapd: Slapd,
    sesam_vitale: SesamVitalePKI,
    amc_cert: Issued,
    token: tuple[SoftHSM, TokenInfo],
    tmp_path: Path,
) -> None:
    ctx = box.ctx
    assert ctx.params.get("recipient_certs", organism="amc996") is None  # nobody pasted one
    use_directory(ctx, slapd, sesam_vitale)
    slapd.publish(AMC_CN, [der(amc_cert)])

    fetched = box.env.run("organisms", "fetch", "--organism", "amc996")
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert "amc996" in fetched.stdout and "(nouveau)" in fetched.stdout

    outcome = ctx.intake().import_bytes(
        "amc.lot", valid_lot(TEST_TODAY, addressee=AMC_ADDRESSEE, lot_number=3), "t:amc"
    )
    assert outcome.accepted and outcome.lot_id is not None, outcome.problems
    softhsm, info = token
    signer = Pkcs11Signer(pkcs11.lib(str(softhsm.module)), token_label=info.label)
    service = ctx.signing()
    report = examine_card(service, signer, ctx.cert_checker())
    result = sign_with_card(
        service, signer, bytearray(TEST_PIN.encode()), report.identity, "p1", [outcome.lot_id]
    )
    assert result.signed == (outcome.lot_id,), result
    lot = ctx.lots.get(outcome.lot_id)
    assert lot is not None and lot.state is LotState.SIGNED
    envelope = ctx.lots.blob(outcome.lot_id, "envelope")
    assert envelope is not None
    p7m = tmp_path / "lot.p7m"
    p7m.write_bytes(envelope)
    opened = subprocess.run(
        ["openssl", "cms", "-decrypt", "-inform", "DER", "-in", str(p7m),
         "-recip", str(amc_cert.cert_pem), "-inkey", str(amc_cert.key_pem)],
        capture_output=True, check=False, timeout=30,
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    assert b"application/EDI-consent" in opened.stdout

    listed = json.loads(box.env.run("organisms", "list", "--json").stdout)
    amc = next(o for o in listed if o["organism"] == "amc996")
    assert amc["used"] == "annuaire" and amc["directory_name"] == AMC_CN
    assert [c["source"] for c in amc["certificates"]] == ["annuaire"]
    cpam = next(o for o in listed if o["organism"] == "cpam422")
    assert cpam["used"] == "saisi"
    assert {c["source"] for c in cpam["certificates"]} == {"saisi"}


def test_what_fails_validation_is_never_used_and_the_last_good_stays(
    box: Box, pki: TestPKI, slapd: Slapd, sesam_vitale: SesamVitalePKI, amc_cert: Issued
) -> None:
    ctx = box.ctx
    use_directory(ctx, slapd, sesam_vitale)
    service = ctx.organism_certs()
    # Nothing good yet: every bad answer leaves the organism without a certificate.
    bad = {
        "another CA (IGC-Santé test, not SESAM-Vitale)": der(pki.issue_organism(AMC_CN)),
        "no keyEncipherment": der(sesam_vitale.issue_organism(AMC_CN, encipherment=False)),
        "expired": der(
            sesam_vitale.issue_organism(
                AMC_CN,
                not_before=TEST_NOW - timedelta(days=400),
                not_after=TEST_NOW - timedelta(days=1),
            )
        ),
    }
    for what, value in bad.items():
        slapd.publish(AMC_CN, [value])
        (outcome,) = service.refresh(["amc996"])
        assert outcome.kind == "refused", what
        assert service.recipient_pems("amc996") == [], what
    assert any(a.kind == "organism_cert_invalid" for a in ctx.tracking().alerts())

    slapd.publish(AMC_CN, [*bad.values(), der(amc_cert)])  # the good one among bad ones
    (outcome,) = service.refresh(["amc996"])
    assert outcome.kind == "fetched"
    good = service.recipient_pems("amc996")
    assert good == [amc_cert.cert_pem.read_text()]

    slapd.publish(AMC_CN, [bad["expired"]])
    (outcome,) = service.refresh(["amc996"])
    assert outcome.kind == "refused" and "reste en usage" in outcome.fr
    assert service.recipient_pems("amc996") == good
    with garbage_server() as url:  # something that is no LDAP server answers at the address
        ctx.params.set("sesam_vitale_directory", url)
        (outcome,) = ctx.organism_certs().refresh(["amc996"])
    assert outcome.kind == "unreachable" and "reste en usage" in outcome.fr
    assert service.recipient_pems("amc996") == good
    ctx.params.set("sesam_vitale_directory", slapd.url)
    service = ctx.organism_certs()
    slapd.stop()  # the directory is gone
    (outcome,) = service.refresh(["amc996"])
    assert outcome.kind == "unreachable" and "reste en usage" in outcome.fr
    assert service.recipient_pems("amc996") == good
    (listed,) = [o for o in service.listing() if o.organism == "amc996"]
    assert listed.used == "annuaire" and listed.last_error and "injoignable" in listed.last_error


def test_a_changed_certificate_is_journaled_alerted_and_used_only_once_valid(
    box: Box, balise_env: BaliseEnv, slapd: Slapd, sesam_vitale: SesamVitalePKI, amc_cert: Issued
) -> None:
    ctx = box.ctx
    use_directory(ctx, slapd, sesam_vitale)
    service = ctx.organism_certs()
    slapd.publish(AMC_CN, [der(amc_cert)])
    assert [o.kind for o in service.refresh(["amc996"])] == ["fetched"]

    # The organism publishes its next certificate ahead of time, beside the current one.
    renewal = sesam_vitale.issue_organism(
        AMC_CN, not_before=TEST_NOW + timedelta(days=20), not_after=TEST_NOW + timedelta(days=800)
    )
    slapd.publish(AMC_CN, [der(amc_cert), der(renewal)])
    (outcome,) = service.refresh(["amc996"])
    assert outcome.kind == "unchanged" and "le suivant servira à partir du" in outcome.fr
    assert service.recipient_pems("amc996") == [amc_cert.cert_pem.read_text()]
    later = box_at(balise_env, TEST_NOW + timedelta(days=21))
    try:
        assert later.organism_certs().recipient_pems("amc996") == [renewal.cert_pem.read_text()]
    finally:
        later.close()

    # Replaced at once by another currently valid certificate: journaled and alerted, with both
    # fingerprints.
    replaced = sesam_vitale.issue_organism(AMC_CN)
    slapd.publish(AMC_CN, [der(replaced)])
    (outcome,) = service.refresh(["amc996"])
    assert outcome.kind == "changed"
    assert service.recipient_pems("amc996") == [replaced.cert_pem.read_text()]
    changed = [e for e in ctx.journal.entries() if e.kind == "organism.cert_changed"]
    details = json.loads(changed[-1].details)
    assert details["old"] == _sha256(der(amc_cert)) and details["new"] == _sha256(der(replaced))
    (alert,) = [a for a in ctx.tracking().alerts() if a.kind == "organism_cert_changed"]
    assert details["old"][:16] in alert.fr and details["new"][:16] in alert.fr


def test_agent_refreshes_due_organisms_weekly(
    box: Box, slapd: Slapd, sesam_vitale: SesamVitalePKI, amc_cert: Issued
) -> None:
    from balise.app.agent import Agent

    use_directory(box.ctx, slapd, sesam_vitale)
    slapd.publish(AMC_CN, [der(amc_cert)])
    agent = Agent(box.ctx, env=box.env.env, interval_scale=0.01)
    try:
        report = agent.cycle()
    finally:
        agent.close()
    assert "organisms" not in report.failed, report
    assert box.ctx.organism_certs().recipient_pems("amc996") == [amc_cert.cert_pem.read_text()]
    assert box.ctx.organism_certs().due() == []  # nothing again before a week


@contextlib.contextmanager
def garbage_server() -> Iterator[str]:
    """A loopback TCP server answering every connection with bytes that are no LDAP."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"\x30\x84\xff\xff\xff\xffHTTP/1.1 200 OK\r\n\r\n" * 50)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"ldap://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
