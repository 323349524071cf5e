"""IGC-Santé revocation lists: fetched over HTTP from a loopback server (http.server in a thread),
verified, kept and journaled; openssl (`openssl crl`, `openssl verify -crl_check`) is the
independent checker of what the box accepted; the card check before the PIN uses them."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from balise.app.context import Context
from balise.domain.card import CardIdentity
from balise.domain.crl import daily_minute, next_fetch
from balise.sim.pki import Issued, Practitioner, TestPKI, build_pki
from tests.support.box import Box
from tests.support.clock import TEST_NOW
from tests.support.crl_support import (
    CrlServer,
    make_crl,
    openssl_crl_verify,
    openssl_verify_crl_check,
)


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """Another hierarchy with the SAME names as ours: only the keys differ."""
    return build_pki(tmp_path_factory.mktemp("stranger-pki"), now=TEST_NOW)


def trust(ctx: Context, pki: TestPKI, titular: Practitioner, *, mode: str = "test") -> None:
    """The box trusts the test IGC-Santé CAs; ``titular`` signs for p1."""
    p = ctx.params
    p.set("mode", mode)
    p.set("igc_roots", pki.root.cert_pem.read_text())
    p.set("igc_intermediates", pki.intermediate.cert_pem.read_text())
    p.set("signers.titular", titular.signature.cert_pem.read_text(), profile="p1")


def identity(who: Practitioner, pki: TestPKI) -> CardIdentity:
    cert = who.signature.cert
    return CardIdentity(
        holder_name=who.display_name,
        rpps=who.rpps,
        signature_cert_der=who.signature.cert_der.read_bytes(),
        extra_certs_der=(pki.intermediate.cert_der.read_bytes(),),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_id=b"\x02",
    )


def fresh_crl(issuer: Issued, *revoked: Practitioner, number: int = 1, **kw: object) -> bytes:
    return make_crl(
        issuer,
        this_update=TEST_NOW - timedelta(hours=2),
        next_update=TEST_NOW + timedelta(days=7),
        revoked=[p.signature.cert for p in revoked],
        number=number,
        **kw,  # type: ignore[arg-type]
    )


def kept_full(ctx: Context) -> bytes:
    stored = [c for c in ctx.crl_service().status() if c.full is not None]
    assert len(stored) == 1, stored
    assert stored[0].full is not None
    return stored[0].full.der


def test_crl_from_the_card_distribution_point_is_kept_and_openssl_agrees(
    box: Box, pki: TestPKI, crl_server: CrlServer, tmp_path: Path
) -> None:
    url = crl_server.url("/igc/elementaire.crl")
    good = pki.issue_practitioner("10001111111", "Dr Bonne CARTE", crl_urls=[url])
    victim = pki.issue_practitioner("10002222222", "Dr Carte VOLEE", crl_urls=[url])
    trust(box.ctx, pki, good)
    crl_server.files["/igc/elementaire.crl"] = fresh_crl(pki.intermediate, victim)

    service = box.ctx.crl_service()
    assert service.sources() == [url]  # from the titular's certificate, nothing configured
    outcomes = service.fetch_all()
    assert [(o.kind, o.revoked) for o in outcomes] == [("stored", 1)], outcomes
    assert "1 certificat(s) révoqué(s)" in outcomes[0].fr

    der = kept_full(box.ctx)
    # openssl, on its own, accepts the kept CRL as the intermediate's ...
    checked = openssl_crl_verify(der, pki.chain_pem, tmp_path)
    assert "verify OK" in checked.stderr, checked.stderr
    # ... and reads the same revocation from it.
    revoked = openssl_verify_crl_check(
        victim.signature.cert_pem, pki.chain_pem, der, tmp_path, at=TEST_NOW
    )
    assert revoked.returncode != 0 and "revoked" in revoked.stdout + revoked.stderr
    fine = openssl_verify_crl_check(
        good.signature.cert_pem, pki.chain_pem, der, tmp_path, at=TEST_NOW
    )
    assert fine.returncode == 0, fine.stdout + fine.stderr

    entries = [e for e in box.ctx.journal.entries() if e.kind.startswith("crl.")]
    assert [e.kind for e in entries] == ["crl.stored"]
    details = json.loads(entries[0].details)
    assert details["revoked"] == 1 and details["url"] == url

    # The card check before the PIN: the revoked card is refused in words, the other passes.
    check = box.ctx.cert_checker()
    refused = check(identity(victim, pki))
    assert not refused.ok and "révoqué" in refused.words_fr
    passed = check(identity(good, pki))
    assert passed.ok and "Révocation vérifiée" in passed.words_fr

    # A second fetch of the same list keeps it and says so.
    again = box.ctx.crl_service().fetch_all()
    assert [o.kind for o in again] == ["unchanged"]


def test_crl_signed_by_the_wrong_key_is_never_kept(
    box: Box, pki: TestPKI, stranger: TestPKI, crl_server: CrlServer, tmp_path: Path
) -> None:
    # Same issuer name, another key: an impostor's list that would "unrevoke" a stolen card.
    victim = pki.issue_practitioner("10003333333", "Dr Carte PERDUE")
    trust(box.ctx, pki, pki.practitioner)
    box.ctx.params.set("crl_url", crl_server.url("/crl"))
    crl_server.files["/crl"] = fresh_crl(pki.intermediate, victim, number=5)
    assert [o.kind for o in box.ctx.crl_service().fetch_all()] == ["stored"]
    kept = kept_full(box.ctx)

    forged = fresh_crl(pki.intermediate, number=6, signer=stranger.intermediate)
    assert "verify failure" in openssl_crl_verify(forged, pki.chain_pem, tmp_path).stderr
    crl_server.files["/crl"] = forged
    outcomes = box.ctx.crl_service().fetch_all()
    assert [o.kind for o in outcomes] == ["refused"]
    assert "autorité non acceptée" in outcomes[0].fr
    assert kept_full(box.ctx) == kept  # the good list stays, the victim stays revoked
    assert not box.ctx.cert_checker()(identity(victim, pki)).ok
    refused = [e for e in box.ctx.journal.entries() if e.kind == "crl.refused"]
    assert refused and json.loads(refused[-1].details)["code"] == "CRL_UNTRUSTED"

    # An older list of the right CA is not taken in place of the newer one either.
    crl_server.files["/crl"] = fresh_crl(pki.intermediate, number=4)
    outcomes = box.ctx.crl_service().fetch_all()
    assert [o.kind for o in outcomes] == ["refused"] and "plus ancienne" in outcomes[0].fr
    assert kept_full(box.ctx) == kept


def test_unreachable_server_and_garbage_keep_nothing_and_say_why(
    box: Box, pki: TestPKI, crl_server: CrlServer
) -> None:
    trust(box.ctx, pki, pki.practitioner)
    box.ctx.params.set("crl_url", crl_server.url("/absent.crl"))
    outcomes = box.ctx.crl_service().fetch_all()
    assert [o.kind for o in outcomes] == ["unreachable"] and "404" in outcomes[0].fr
    crl_server.files["/absent.crl"] = b"<html>maintenance</html>"
    outcomes = box.ctx.crl_service().fetch_all()
    assert [o.kind for o in outcomes] == ["refused"] and "illisible" in outcomes[0].fr
    assert all(c.full is None for c in box.ctx.crl_service().status())


def test_stale_crl_refuses_in_production_and_warns_in_test(
    box: Box, pki: TestPKI, crl_server: CrlServer
) -> None:
    trust(box.ctx, pki, pki.practitioner)
    box.ctx.params.set("crl_url", crl_server.url("/stale.crl"))
    crl_server.files["/stale.crl"] = make_crl(
        pki.intermediate,
        this_update=TEST_NOW - timedelta(days=10),
        next_update=TEST_NOW - timedelta(days=3),  # past nextUpdate plus the 24 h grace
    )
    outcomes = box.ctx.crl_service().fetch_all()
    assert [o.kind for o in outcomes] == ["stored"] and "périmée" in outcomes[0].fr
    card = identity(pki.practitioner, pki)

    warned = box.ctx.cert_checker()(card)
    assert warned.ok and "Attention" in warned.words_fr and "périmée" in warned.words_fr

    box.ctx.params.set("mode", "production")
    refused = box.ctx.cert_checker()(card)
    assert not refused.ok
    assert "périmée" in refused.words_fr and "balise crl fetch" in refused.words_fr

    # Within the grace it is only late: production signs and says so.
    box.ctx.params.set("crl_grace_hours", str(24 * 5))
    late = box.ctx.cert_checker()(card)
    assert late.ok and "en retard" in late.words_fr


def test_production_without_any_crl_refuses_test_mode_warns(box: Box, pki: TestPKI) -> None:
    trust(box.ctx, pki, pki.practitioner)
    card = identity(pki.practitioner, pki)
    warned = box.ctx.cert_checker()(card)
    assert warned.ok and "aucune liste de révocation" in warned.words_fr
    box.ctx.params.set("mode", "production")
    refused = box.ctx.cert_checker()(card)
    assert not refused.ok and "aucune liste de révocation" in refused.words_fr


def test_delta_crl_named_by_the_full_crl_revokes_too(
    box: Box, pki: TestPKI, crl_server: CrlServer, tmp_path: Path
) -> None:
    victim = pki.issue_practitioner("10004444444", "Dr Revoquee HIER")
    trust(box.ctx, pki, pki.practitioner)
    box.ctx.params.set("crl_url", crl_server.url("/full.crl"))
    crl_server.files["/full.crl"] = fresh_crl(
        pki.intermediate, number=10, freshest=crl_server.url("/delta.crl")
    )
    crl_server.files["/delta.crl"] = fresh_crl(pki.intermediate, victim, number=11, delta_of=10)
    outcomes = box.ctx.crl_service().fetch_all()
    assert sorted((o.kind, o.crl_kind) for o in outcomes) == [
        ("stored", "delta"),
        ("stored", "full"),
    ]
    assert crl_server.hits == {"/full.crl": 1, "/delta.crl": 1}
    refused = box.ctx.cert_checker()(identity(victim, pki))
    assert not refused.ok and "révoqué" in refused.words_fr
    assert box.ctx.cert_checker()(identity(pki.practitioner, pki)).ok


def test_the_daily_minute_is_the_box_own_and_stable() -> None:
    minutes = {daily_minute(f"box{n:04d}") for n in range(200)}
    assert len(minutes) > 150  # spread over the day, not one rush hour
    assert daily_minute("a1b2c3d4e5f6") == daily_minute("a1b2c3d4e5f6")
    when = next_fetch("a1b2c3d4e5f6", TEST_NOW)
    assert TEST_NOW < when <= TEST_NOW + timedelta(days=1)
    assert when.hour * 60 + when.minute == daily_minute("a1b2c3d4e5f6")
    assert next_fetch("a1b2c3d4e5f6", when) == when + timedelta(days=1)


def test_cli_fetch_and_agent_first_cycle(box: Box, pki: TestPKI, crl_server: CrlServer) -> None:
    from balise.app.agent import Agent

    victim = pki.issue_practitioner("10005555555", "Dr Agent REVOQUE")
    trust(box.ctx, pki, pki.practitioner)
    box.ctx.params.set("crl_url", crl_server.url("/a.crl"))
    crl_server.files["/a.crl"] = fresh_crl(pki.intermediate, victim)
    # The agent's first cycle fetches at once: nothing is kept yet.
    agent = Agent(box.ctx, env=box.env.env, interval_scale=0.01)
    try:
        report = agent.cycle()
        assert "crl" not in report.failed, report
        assert crl_server.hits == {"/a.crl": 1}
        agent.cycle()  # and not again before this box's minute tomorrow
        assert crl_server.hits == {"/a.crl": 1}
    finally:
        agent.close()
    done = box.env.run("crl", "fetch")
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout and "(inchangée)" in done.stdout
    assert "autorité TEST AC IGC-SANTE ELEMENTAIRE PERSONNES" in done.stdout
    crl_server.files.clear()
    failed = box.env.run("crl", "fetch")
    assert failed.returncode == 1 and "refusé" in failed.stdout and "404" in failed.stdout


def test_egress_list_lets_the_crl_points_and_the_directory_through(box: Box, pki: TestPKI) -> None:
    from balise.services.egress import egress_entries

    card = pki.issue_practitioner(
        "10006666666", "Dr Pare FEU", crl_urls=["http://crl.igc-test.example:8080/e.crl"]
    )
    trust(box.ctx, pki, card)
    box.ctx.params.set("sesam_vitale_directory", "ldap://annuaire.sv-test.example")
    found = {(e.purpose, e.host, e.port, e.refused) for e in egress_entries(box.ctx.params)}
    assert ("crl", "crl.igc-test.example", 8080, "") in found
    assert ("sv-directory", "annuaire.sv-test.example", 389, "") in found
