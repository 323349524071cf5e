"""Expiry watch of the mail servers' certificates: a real aiosmtpd SMTP server and a real Dovecot
present a certificate of the test PKI ending in 5 days; after one send (one purge) the agent's
certificate check raises one alert naming the server and the practitioner, never twice, and a
renewed certificate seen at the next session ends the watch of the old one. One certificate on
both servers (also met after STARTTLS / STLS) is one alert naming both."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from balise.app.agent import Agent, CycleReport
from balise.app.context import Context
from balise.domain.mailrecords import AlertRecord
from balise.services.tracking import AUTO_RESOLVER
from balise.sim.dovecot import DovecotServer
from balise.sim.netutil import free_tcp_port
from balise.sim.pki import Issued, TestPKI
from balise.sim.smtpd import SmtpServer, TlsMode
from tests.support.box import box_at
from tests.support.clock import TEST_NOW
from tests.support.mail_fixtures import LOOPBACKS, SMTP_PASSWORD, SMTP_USER
from tests.support.purge_support import MAILBOXES
from tests.support.signed_lots import SendingBox, configure_smtp, sign_lots

pytestmark = pytest.mark.mail

CERT_KINDS = ("cert_expiring", "cert_expired")


def server_cert(pki: TestPKI, name: str, days: int) -> Issued:
    """A TLS server certificate of the test PKI for the loopback servers, ending in ``days``."""
    return pki.issue_tls_server(
        name, ["127.0.0.1", "localhost"], not_after=TEST_NOW + timedelta(days=days)
    )


def smtp_server(cert: Issued, port: int | None = None, tls: TlsMode = "implicit") -> SmtpServer:
    server = SmtpServer(
        host="127.0.0.1",
        port=port or free_tcp_port(),
        cert_pem=cert.cert_pem,
        key_pem=cert.key_pem,
        users={SMTP_USER: SMTP_PASSWORD},
        tls=tls,
    )
    server.start()
    return server


@pytest.fixture
def dovecots() -> Iterator[list[DovecotServer]]:
    """Where a test puts the Dovecot servers it starts: stopped at teardown."""
    started: list[DovecotServer] = []
    yield started
    for server in started:
        server.stop()


def start_dovecot(tmp_path: Path, cert: Issued, started: list[DovecotServer]) -> DovecotServer:
    server = DovecotServer(
        tmp_path / "dovecot",
        cert_pem=cert.cert_pem,
        key_pem=cert.key_pem,
        users={"bal1": MAILBOXES["bal1"]},
        pop3_port=free_tcp_port(LOOPBACKS),
        pop3s_port=free_tcp_port(LOOPBACKS),
        listen=LOOPBACKS,
    )
    started.append(server)
    server.start()
    return server


def trust_test_root(ctx: Context, pki: TestPKI) -> None:
    ctx.params.set("ca_bundle", pki.root_pem.read_text())


def configure_pop3(ctx: Context, server: DovecotServer, *, stls: bool = False) -> None:
    p = ctx.params
    p.set("pop3.host", "127.0.0.1", profile="p1")
    p.set("pop3.port", str(server.pop3_port if stls else server.pop3s_port), profile="p1")
    p.set("pop3.tls", "stls" if stls else "implicit", profile="p1")
    p.set("pop3.user", "bal1", profile="p1")
    p.set("pop3.password", MAILBOXES["bal1"], profile="p1")


def agent_cycle(ctx: Context, env: dict[str, str]) -> CycleReport:
    """One cycle of the real agent: it sends and purges what is due, then checks the
    certificates (its first cycle always does)."""
    agent = Agent(ctx, env=env, interval_scale=0.01)
    try:
        return agent.cycle()
    finally:
        agent.close()


def cert_alerts(ctx: Context) -> list[AlertRecord]:
    return [a for a in ctx.tracking().alerts(include_acknowledged=True) if a.kind in CERT_KINDS]


def later(box: SendingBox, days: int) -> Context:
    """Another context on the same box, its clock ``days`` after TEST_NOW."""
    return box_at(box.env, TEST_NOW + timedelta(days=days))


def test_smtp_certificate_ending_in_5_days_alerted_once_until_renewed(
    sending_box: SendingBox,
) -> None:
    ctx, pki, env = sending_box.ctx, sending_box.pki, sending_box.env.env
    soon = server_cert(pki, "smtp bientot expire", 5)
    server = smtp_server(soon)
    try:
        configure_smtp(ctx, server, None)
        trust_test_root(ctx, pki)
        sign_lots(ctx, pki, [1])
        report = agent_cycle(ctx, env)
        assert report.sent == 1, report
        server.wait_received(1)
        [alert] = cert_alerts(ctx)
        assert alert.kind == "cert_expiring"
        assert alert.fr.startswith(
            f"Certificat du serveur d'envoi 127.0.0.1:{server.port} (praticien p1) expire le "
            f"{soon.cert.not_valid_after_utc:%d/%m/%Y} (moins de 7 jours)"
        ), alert.fr
        assert "l'envoi des lots s'arrêtera" in alert.fr
        assert f"sending server 127.0.0.1:{server.port} (practitioner p1)" in alert.en

        # The next check (no send in between, or one with the same certificate): nothing new.
        assert "overdue" not in agent_cycle(ctx, env).failed
        assert cert_alerts(ctx) == [alert]
        port = server.port
    finally:
        server.stop()

    # The mail host renews its certificate; the next send meets it.
    renewed = server_cert(pki, "smtp renouvele", 90)
    server = smtp_server(renewed, port)
    try:
        sign_lots(ctx, pki, [2])
        assert agent_cycle(ctx, env).sent == 1
        server.wait_received(1)
    finally:
        server.stop()
    # Six days on, the old certificate has expired: its alert resolved itself once the renewed
    # certificate was seen (nothing left for the practice to do), no new alert about it, and
    # none about the renewed one (84 days left).
    six_days_on = later(sending_box, 6)
    try:
        agent_cycle(six_days_on, env)
        [resolved] = cert_alerts(six_days_on)
        assert resolved.id == alert.id and resolved.acknowledged_by == AUTO_RESOLVER
        # nothing open about certificates: Accueil's « dont N sur les certificats » counts none
        assert not [a for a in six_days_on.tracking().alerts() if a.kind in CERT_KINDS]
    finally:
        six_days_on.close()
    changes = [e for e in ctx.journal.entries() if e.kind == "tls.server_certificate"]
    assert len(changes) == 2  # the first certificate seen, then the renewed one


def test_pop3_certificate_ending_in_5_days_alerted_once_until_renewed(
    sending_box: SendingBox, tmp_path: Path, dovecots: list[DovecotServer]
) -> None:
    ctx, pki, env = sending_box.ctx, sending_box.pki, sending_box.env.env
    soon = server_cert(pki, "pop3 bientot expire", 5)
    dovecot = start_dovecot(tmp_path, soon, dovecots)
    configure_pop3(ctx, dovecot)
    trust_test_root(ctx, pki)
    report = agent_cycle(ctx, env)
    assert "purge:p1" not in report.failed, report
    [alert] = cert_alerts(ctx)
    assert alert.kind == "cert_expiring"
    assert alert.fr.startswith(
        f"Certificat du serveur de relève 127.0.0.1:{dovecot.pop3s_port} (praticien p1) expire "
        f"le {soon.cert.not_valid_after_utc:%d/%m/%Y} (moins de 7 jours)"
    ), alert.fr
    assert "la relève des retours s'arrêtera" in alert.fr

    assert "purge:p1" not in agent_cycle(ctx, env).failed  # a second purge and check
    assert cert_alerts(ctx) == [alert]

    # Dovecot restarted with a renewed certificate on the same ports.
    dovecot.stop()
    renewed = server_cert(pki, "pop3 renouvele", 90)
    dovecot.cert_pem, dovecot.key_pem = renewed.cert_pem, renewed.key_pem
    dovecot.start()
    six_days_on = later(sending_box, 6)
    try:
        assert "purge:p1" not in agent_cycle(six_days_on, env).failed
        [resolved] = cert_alerts(six_days_on)
        assert resolved.id == alert.id and resolved.acknowledged_by == AUTO_RESOLVER
    finally:
        six_days_on.close()
    kinds = [e.kind for e in ctx.journal.entries()]
    assert kinds.count("alert.resolved") == 1


def test_one_certificate_on_both_servers_after_starttls_is_one_alert_naming_both(
    sending_box: SendingBox, tmp_path: Path, dovecots: list[DovecotServer]
) -> None:
    ctx, pki, env = sending_box.ctx, sending_box.pki, sending_box.env.env
    shared = server_cert(pki, "mail partage", 5)
    dovecot = start_dovecot(tmp_path, shared, dovecots)
    server = smtp_server(shared, tls="starttls")
    try:
        configure_smtp(ctx, server, None)
        configure_pop3(ctx, dovecot, stls=True)
        trust_test_root(ctx, pki)
        sign_lots(ctx, pki, [1])
        report = agent_cycle(ctx, env)
        assert report.sent == 1 and "purge:p1" not in report.failed, report
    finally:
        server.stop()
    [alert] = cert_alerts(ctx)
    assert (
        f"du serveur d'envoi 127.0.0.1:{server.port} (praticien p1) et du serveur de relève "
        f"127.0.0.1:{dovecot.pop3_port} (praticien p1) expire le"
    ) in alert.fr
    assert "l'envoi des lots et la relève des retours s'arrêteront" in alert.fr


def test_a_certificate_the_host_renews_on_time_raises_nothing(sending_box: SendingBox) -> None:
    """Mail hosts renew with about a month left (certbot renews Let's Encrypt's 90-day
    certificates when 30 days remain): 20 days left is not late, no alert at each renewal."""
    ctx, pki, env = sending_box.ctx, sending_box.pki, sending_box.env.env
    server = smtp_server(server_cert(pki, "smtp renouvellement en cours", 20))
    try:
        configure_smtp(ctx, server, None)
        trust_test_root(ctx, pki)
        sign_lots(ctx, pki, [1])
        assert agent_cycle(ctx, env).sent == 1
        server.wait_received(1)
    finally:
        server.stop()
    assert cert_alerts(ctx) == []
    # Left unrenewed, it is worth telling from 14 days on.
    eight_days_on = later(sending_box, 8)
    try:
        agent_cycle(eight_days_on, env)
        [alert] = cert_alerts(eight_days_on)
        assert alert.kind == "cert_expiring" and "moins de" not in alert.fr
    finally:
        eight_days_on.close()
