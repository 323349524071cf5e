"""Certificate expiry: expired and soon-expiring certificates become alerts (once each), and one
agent cycle also makes the daily encrypted backup into the exchange account's sauvegardes/."""

from __future__ import annotations

from datetime import timedelta

from balise.app.agent import Agent
from balise.services.certwatch import expiring
from balise.services.tracking import AUTO_RESOLVER
from balise.sim.pki import TestPKI
from tests.support.box import Box
from tests.support.clock import TEST_NOW


def test_expiring_and_expired_certificates_raise_one_alert_each(box: Box, pki: TestPKI) -> None:
    now = TEST_NOW
    soon = pki.issue_organism("TEST CPAM BIENTOT", not_after=now + timedelta(days=10))
    box.ctx.params.set("recipient_certs", soon.cert_pem.read_text(), organism="cpam422")
    locum = pki.issue_practitioner(
        "10007777777",
        "Dr Ancien TEST",
        not_before=now - timedelta(days=400),
        not_after=now - timedelta(days=2),
    )
    box.ctx.params.set("signers.locums", locum.signature.cert_pem.read_text(), profile="p1")
    found = expiring(box.ctx.params, now)
    assert sorted((e.role, e.expired) for e in found) == [
        ("carte de remplaçant", True),
        ("certificat de chiffrement", False),
    ]
    tracking = box.ctx.tracking()
    raised = tracking.check_certificates(found)
    assert len(raised) == 2
    alerts = {a.kind: a for a in tracking.alerts()}
    assert "expire le" in alerts["cert_expiring"].fr
    assert "expiré" in alerts["cert_expired"].fr
    assert tracking.check_certificates(expiring(box.ctx.params, now)) == []  # once only


def test_agent_cycle_makes_the_daily_backup(box: Box) -> None:
    box.ctx.params.set("recovery_passphrase", "une phrase de secours assez longue")
    agent = Agent(box.ctx, env=box.env.env, interval_scale=0.01)
    try:
        report = agent.cycle()
    finally:
        agent.close()
    archives = list((box.env.home / "echange" / "sauvegardes").glob("*"))
    assert len([a for a in archives if not a.name.startswith(".")]) == 1, report
    kinds = [e.kind for e in box.ctx.journal.entries()]
    assert "backup.created" in kinds
    # A second cycle the same day makes no new archive.
    agent = Agent(box.ctx, env=box.env.env, interval_scale=0.01)
    try:
        agent.cycle()
    finally:
        agent.close()
    assert len(list((box.env.home / "echange" / "sauvegardes").glob("*"))) == len(archives)


def test_alerts_at_30_7_and_1_days_then_expired_each_once(box: Box, pki: TestPKI) -> None:
    now = TEST_NOW
    end = now + timedelta(days=20, hours=12)
    fetched = pki.issue_organism("TEST ORGANISME ANNUAIRE", not_after=end)
    extra = [
        ("organisme amc996, annuaire", "certificat de chiffrement", fetched.cert_pem.read_text())
    ]
    tracking = box.ctx.tracking()
    seen: list[str] = []
    for days_later, expected in (
        (0, "cert_expiring"),
        (14, "cert_expiring"),
        (20, "cert_expiring"),
        (21, "cert_expired"),
    ):
        when = now + timedelta(days=days_later)
        found = [
            e
            for e in expiring(box.ctx.params, when, extra=extra)
            if e.where.startswith("organisme")
        ]
        raised = tracking.check_certificates(found)
        assert len(raised) == 1, days_later
        assert tracking.check_certificates(found) == []  # once per threshold
        alert = next(a for a in tracking.alerts() if a.id == raised[0])
        assert alert.kind == expected
        seen.append(alert.fr)
    assert "moins de" not in seen[0]
    assert "(moins de 7 jours)" in seen[1] and "(moins de 1 jour)" in seen[2]
    assert "expiré le" in seen[3] and "amc996, annuaire" in seen[3]


def test_a_replaced_certificate_resolves_its_alert_by_itself(box: Box, pki: TestPKI) -> None:
    now = TEST_NOW
    soon = pki.issue_organism("TEST CPAM BIENTOT", not_after=now + timedelta(days=10))
    box.ctx.params.set("recipient_certs", soon.cert_pem.read_text(), organism="cpam422")
    tracking = box.ctx.tracking()
    [raised] = tracking.check_certificates(expiring(box.ctx.params, now))
    assert [a.id for a in tracking.alerts()] == [raised]
    # The technician (or the directory) puts the organism's new certificate in place.
    renewed = pki.issue_organism("TEST CPAM RENOUVELE", not_after=now + timedelta(days=700))
    box.ctx.params.set("recipient_certs", renewed.cert_pem.read_text(), organism="cpam422")
    assert tracking.check_certificates(expiring(box.ctx.params, now)) == []
    assert tracking.alerts() == []  # nothing open any more: Accueil counts none
    [alert] = tracking.alerts(include_acknowledged=True)
    assert alert.acknowledged_by == AUTO_RESOLVER
    assert [e.kind for e in box.ctx.journal.entries()].count("alert.resolved") == 1
