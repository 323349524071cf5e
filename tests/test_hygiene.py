"""Mailbox hygiene rules (pure): consumer webmail, nominative BAL, shared BAL, two BALs for one
practitioner — each rule, its level and the profiles it names."""

from __future__ import annotations

import pytest

from balise.domain.hygiene import (
    REFUSAL,
    WARNING,
    Finding,
    MailboxProfile,
    check_mailboxes,
    name_tokens,
    new_refusals,
    webmail_domain,
)


def prof(ident: str = "p1", **kwargs: str) -> MailboxProfile:
    base = {
        "display_name": "Dr Jeanne TEST",
        "bal_address": "xyz999212@bal.example.net",
        "smtp_host": "smtp.bal.example.net",
        "pop3_host": "pop.bal.example.net",
    }
    base.update(kwargs)
    return MailboxProfile(ident, **base)


def codes(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.code, f.level) for f in findings]


def test_a_clean_professional_box_has_no_finding() -> None:
    assert check_mailboxes([prof(), prof("p2", bal_address="abc123@bal.example.net")]) == []


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("gmail.com", "gmail.com"),
        ("pop.gmail.com", "gmail.com"),
        ("googlemail.com", "googlemail.com"),
        ("hotmail.fr", "hotmail.fr"),
        ("smtp-mail.outlook.com", "outlook.com"),
        ("live.co.uk", "live.co.uk"),
        ("MSN.com", "msn.com"),
        ("yahoo.fr", "yahoo.fr"),
        ("ymail.com", "ymail.com"),
        ("aol.com", "aol.com"),
        ("imap.mail.me.com", "me.com"),
        ("icloud.com", "icloud.com"),
        ("smtp.orange.fr", "orange.fr"),
        ("pop.wanadoo.fr", "wanadoo.fr"),
        ("smtp.free.fr", "free.fr"),
        ("laposte.net", "laposte.net"),
        ("smtp.sfr.fr", "sfr.fr"),
        ("mail.gmx.de", "gmx.de"),
        ("protonmail.ch", "protonmail.ch"),
    ],
)
def test_consumer_webmail_domains_are_recognised(host: str, domain: str) -> None:
    assert webmail_domain(host) == domain


@pytest.mark.parametrize(
    "host",
    ["bal.example.net", "alive.com", "outlook.example.net", "notgmail.com", "127.0.0.1", "rss.fr"],
)
def test_other_hosts_are_not_webmail(host: str) -> None:
    assert webmail_domain(host) is None


@pytest.mark.parametrize(
    "field",
    [
        {"bal_address": "cabinet42@gmail.com"},
        {"smtp_host": "smtp.orange.fr"},
        {"pop3_host": "pop-mail.outlook.com"},
    ],
)
def test_webmail_in_the_bal_or_a_server_is_refused(field: dict[str, str]) -> None:
    [finding] = check_mailboxes([prof(**field)])
    assert (finding.code, finding.level, finding.profiles) == ("HYG_WEBMAIL", REFUSAL, ("p1",))
    assert "profil p1" in finding.fr and "grand public" in finding.fr
    assert "profile p1" in finding.en and "webmail" in finding.en


def test_the_technician_override_turns_webmail_into_a_warning() -> None:
    [finding] = check_mailboxes([prof(bal_address="x1@gmail.com")], webmail_override=True)
    assert (finding.code, finding.level) == ("HYG_WEBMAIL", WARNING)
    assert "dérogation" in finding.fr and "gmail.com" in finding.fr


def test_a_nominative_local_part_is_warned_accent_insensitively() -> None:
    findings = check_mailboxes(
        [prof(display_name="Dr Hélène Lefèvre", bal_address="helene.lefevre@bal.example.net")]
    )
    assert codes(findings) == [("HYG_NOMINATIVE", WARNING)]
    assert "« helene »" in findings[0].fr and "« lefevre »" in findings[0].fr
    assert "profil p1" in findings[0].fr and "profile p1" in findings[0].en


def test_short_names_and_titles_do_not_count_as_the_name() -> None:
    assert name_tokens("Dr Lé NY, Docteur Bo Madame") == []
    assert name_tokens("Pr. Jean-Luc Martin") == ["jean", "luc", "martin"]
    assert check_mailboxes([prof(display_name="Docteur Li", bal_address="docteur@bal.fr")]) == []


def test_one_bal_shared_by_two_practitioners_is_refused() -> None:
    findings = check_mailboxes(
        [
            prof("p1", bal_address="Cabinet77@bal.example.net"),
            prof("p2", display_name="Dr Second", bal_address="cabinet77@bal.example.net"),
        ]
    )
    assert codes(findings) == [("HYG_SHARED_BAL", REFUSAL)]
    assert findings[0].profiles == ("p1", "p2")
    assert "p1, p2" in findings[0].fr and "partagée" in findings[0].fr
    assert "shared" in findings[0].en


@pytest.mark.parametrize(
    ("key", "code"),
    [("rpps", "HYG_TWO_BALS_RPPS"), ("emitter_number", "HYG_TWO_BALS_EMITTER")],
)
def test_two_bals_for_one_practitioner_are_warned(key: str, code: str) -> None:
    findings = check_mailboxes(
        [
            prof("p1", **{key: "10001234567"}),
            prof("p2", bal_address="other55@bal.example.net", **{key: "10001234567"}),
        ]
    )
    assert codes(findings) == [(code, WARNING)]
    assert findings[0].profiles == ("p1", "p2")
    assert "xyz999212@bal.example.net" in findings[0].fr and "other55" in findings[0].fr


def test_refusals_come_first_and_only_new_refusals_block_a_change() -> None:
    before = check_mailboxes([prof(bal_address="jeanne@gmail.com")])
    assert codes(before) == [("HYG_WEBMAIL", REFUSAL), ("HYG_NOMINATIVE", WARNING)]
    same = check_mailboxes([prof(bal_address="jeanne@gmail.com", smtp_host="smtp.gmail.com")])
    assert new_refusals(before, same) == []
    shared = check_mailboxes(
        [prof(bal_address="jeanne@gmail.com"), prof("p2", bal_address="jeanne@gmail.com")]
    )
    assert {f.code for f in new_refusals(before, shared)} == {"HYG_WEBMAIL", "HYG_SHARED_BAL"}
