"""The mailbox connection test (wizard, technician, self-service) against the REAL servers: aiosmtpd
with implicit TLS and AUTH, Dovecot POP3 over TLS, the test CA — each failure said in words."""

from __future__ import annotations

import pytest
import trustme

from balise.adapters.pop3 import Pop3Mailbox
from balise.adapters.smtp import SmtpSender
from balise.domain.errors import ValidationError
from balise.services.connection import ConnectionTester, MailSettings
from balise.sim.dovecot import DovecotServer
from balise.sim.netutil import free_tcp_port
from balise.sim.smtpd import SmtpServer
from tests.support.mail_fixtures import POP3_PASSWORD, POP3_USER, SMTP_PASSWORD, SMTP_USER, TlsCA

pytestmark = pytest.mark.mail


def _settings(smtp: SmtpServer, dovecot: DovecotServer, **typed: str) -> MailSettings:
    values = {
        "bal_address": SMTP_USER,
        "smtp.host": "127.0.0.1",
        "smtp.port": str(smtp.port),
        "smtp.tls": "implicit",
        "smtp.user": SMTP_USER,
        "smtp.password": SMTP_PASSWORD,
        "pop3.host": "127.0.0.1",
        "pop3.port": str(dovecot.pop3s_port),
        "pop3.tls": "implicit",
        "pop3.user": POP3_USER,
        "pop3.password": POP3_PASSWORD,
    }
    values.update({k.replace("_", "."): v for k, v in typed.items()})
    return MailSettings().changed(values)


def _tester(ca_pem: str, *, override: bool = False) -> ConnectionTester:
    return ConnectionTester(
        SmtpSender(local_hostname="balise.test", timeout=5),
        Pop3Mailbox(),
        [ca_pem],
        webmail_override=override,
        timeout=5,
    )


def test_good_settings_pass_both_servers(
    smtp_implicit: SmtpServer, dovecot: DovecotServer, tls_ca: TlsCA
) -> None:
    report = _tester(tls_ca.ca_pem.read_text()).test(_settings(smtp_implicit, dovecot))
    assert report.ok
    assert [r.part for r in report.results] == ["smtp", "pop3"]
    assert "certificat vérifié, identifiants acceptés" in report.words()[0]
    assert "certificat vérifié, connexion acceptée" in report.words()[1]
    assert smtp_implicit.received == []  # nothing was sent
    assert any(c.upper().startswith("AUTH") for c in smtp_implicit.commands)


def test_a_wrong_password_is_said_for_each_server(
    smtp_implicit: SmtpServer, dovecot: DovecotServer, tls_ca: TlsCA
) -> None:
    settings = _settings(
        smtp_implicit, dovecot, smtp_password="mauvais-1", pop3_password="mauvais-2"
    )
    report = _tester(tls_ca.ca_pem.read_text()).test(settings)
    assert not report.ok
    assert [r.reason for r in report.results] == ["wrong_password", "wrong_password"]
    assert all("mot de passe (ou identifiant) refusé" in w for w in report.words())
    assert all("mauvais" not in w for w in report.words())


def test_a_server_certificate_from_another_ca_is_not_trusted(
    smtp_implicit: SmtpServer, dovecot: DovecotServer
) -> None:
    other = trustme.CA().cert_pem.bytes().decode()
    report = _tester(other).test(_settings(smtp_implicit, dovecot))
    assert [r.reason for r in report.results] == ["cert_untrusted", "cert_untrusted"]
    assert all("certificat du serveur non reconnu" in w for w in report.words())
    assert all("aucun mot de passe envoyé" in w for w in report.words())
    assert not any(c.upper().startswith("AUTH") for c in smtp_implicit.commands)


def test_an_unreachable_host_is_said_so(tls_ca: TlsCA) -> None:
    settings = MailSettings().changed(
        {
            "smtp.host": "127.0.0.1",
            "smtp.port": str(free_tcp_port()),
            "smtp.user": SMTP_USER,
            "smtp.password": SMTP_PASSWORD,
            "pop3.host": "127.0.0.1",
            "pop3.port": str(free_tcp_port()),
            "pop3.user": POP3_USER,
            "pop3.password": POP3_PASSWORD,
        }
    )
    report = _tester(tls_ca.ca_pem.read_text()).test(settings)
    assert [r.reason for r in report.results] == ["unreachable", "unreachable"]
    assert all("serveur injoignable" in w for w in report.words())


def test_a_webmail_host_is_refused_before_anything_is_tried(
    smtp_implicit: SmtpServer, dovecot: DovecotServer, tls_ca: TlsCA
) -> None:
    # The POP3 settings are good: had anything been tried, POP3 would have passed.
    settings = _settings(smtp_implicit, dovecot, smtp_host="smtp.gmail.com")
    report = _tester(tls_ca.ca_pem.read_text()).test(settings)
    assert [(r.part, r.reason) for r in report.results] == [("hygiene", "webmail")]
    assert "messagerie grand public refusée" in report.words()[0]
    assert "serveur SMTP chez gmail.com" in report.words()[0]
    # Under the technician's override, the same settings are tried (and fail: no such host).
    report = _tester(tls_ca.ca_pem.read_text(), override=True).test(settings)
    assert [r.part for r in report.results] == ["smtp", "pop3"]
    assert report.results[1].ok


def test_a_typed_value_is_checked_by_the_schema(
    smtp_implicit: SmtpServer, dovecot: DovecotServer
) -> None:
    with pytest.raises(ValidationError) as bad:
        _settings(smtp_implicit, dovecot, smtp_port="0")
    assert "entre 1 et 65535" in bad.value.fr
