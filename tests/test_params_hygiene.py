"""Mailbox hygiene through the real `balise` command: a change creating a refusal is refused with
nothing written; the technician override admits webmail; doctor lists every finding."""

from __future__ import annotations

from tests.support.balise_env import BaliseEnv
from tests.support.box import Box


def setup(env: BaliseEnv) -> None:
    for args in (
        ("display_name", "Dr Hélène Lefèvre", "p1"),
        ("bal_address", "cab0042@bal.example.net", "p1"),
        ("display_name", "Dr Paul Second", "p2"),
        ("bal_address", "cab0077@bal.example.net", "p2"),
    ):
        done = env.run("params", "set", args[0], args[1], "--profile", args[2])
        assert done.returncode == 0, done.stderr


def journal_size(env: BaliseEnv) -> int:
    done = env.run("journal", "show")
    assert done.returncode == 0, done.stderr
    return len(done.stdout.splitlines())


def test_a_gmail_bal_is_refused_with_nothing_written(balise_env: BaliseEnv) -> None:
    setup(balise_env)
    before = journal_size(balise_env)
    done = balise_env.run("params", "set", "bal_address", "cab0042@gmail.com", "--profile", "p1")
    assert done.returncode == 1
    assert "grand public" in done.stderr and "rien n'est enregistré" in done.stderr
    assert "[HYG_WEBMAIL]" in done.stderr
    shown = balise_env.run("params", "get", "bal_address", "--profile", "p1")
    assert shown.stdout.strip() == "cab0042@bal.example.net"
    assert journal_size(balise_env) == before
    # A webmail server is refused the same way, for a brand-new profile too.
    done = balise_env.run("params", "set", "smtp.host", "smtp.orange.fr", "--profile", "p3")
    assert done.returncode == 1 and "[HYG_WEBMAIL]" in done.stderr
    assert "p3" not in balise_env.run("params", "list").stdout


def test_the_override_admits_webmail_and_cannot_be_withdrawn_under_it(
    balise_env: BaliseEnv,
) -> None:
    setup(balise_env)
    assert balise_env.run("params", "set", "webmail_override", "oui").returncode == 0
    done = balise_env.run("params", "set", "bal_address", "cab0042@gmail.com", "--profile", "p1")
    assert done.returncode == 0, done.stderr
    doctor = balise_env.run("doctor")
    assert "dérogation" in doctor.stdout and "[HYG_WEBMAIL]" in doctor.stdout
    # Withdrawing the override would turn the warning into a refusal: refused.
    done = balise_env.run("params", "set", "webmail_override", "non")
    assert done.returncode == 1 and "[HYG_WEBMAIL]" in done.stderr
    assert balise_env.run("params", "get", "webmail_override").stdout.strip() == "oui"


def test_a_shared_bal_is_refused_with_nothing_written(balise_env: BaliseEnv) -> None:
    setup(balise_env)
    done = balise_env.run(
        "params", "set", "bal_address", "CAB0042@bal.example.net", "--profile", "p2"
    )
    assert done.returncode == 1
    assert "[HYG_SHARED_BAL]" in done.stderr and "p1, p2" in done.stderr
    shown = balise_env.run("params", "get", "bal_address", "--profile", "p2")
    assert shown.stdout.strip() == "cab0077@bal.example.net"


def test_doctor_shows_the_nominative_warning_and_two_bals(balise_env: BaliseEnv) -> None:
    setup(balise_env)
    clean = balise_env.run("doctor")
    assert "hygiène des BAL" in clean.stdout and "aucune remarque" in clean.stdout
    done = balise_env.run(
        "params", "set", "bal_address", "h.lefevre@bal.example.net", "--profile", "p1"
    )
    assert done.returncode == 0, done.stderr  # a warning never blocks
    for profile in ("p1", "p2"):
        done = balise_env.run("params", "set", "rpps", "10001234567", "--profile", profile)
        assert done.returncode == 0, done.stderr
    doctor = balise_env.run("doctor")
    lines = [line for line in doctor.stdout.splitlines() if "hygiène des BAL" in line]
    assert any(
        line.startswith("ATTENTION") and "« lefevre »" in line and "[HYG_NOMINATIVE]" in line
        for line in lines
    ), doctor.stdout
    assert any("[HYG_TWO_BALS_RPPS]" in line and "p1, p2" in line for line in lines)
    assert "aucune remarque" not in doctor.stdout


def test_kiosk_shows_the_same_hygiene_findings(box: Box) -> None:
    from balise.app.kiosk import hygiene

    box.ctx.params.set("bal_address", "jeanne.test@bal.example.net", profile="p1")
    found = hygiene(box.ctx)
    assert [h.level for h in found["p1"]] == ["warn"]
    assert "jeanne.test@bal.example.net" in found["p1"][0].fr
