"""`balise doctor`: one line per check, problems in words and a non-zero exit only for problems."""

from __future__ import annotations

from tests.support.balise_env import BaliseEnv

CHECKS = (
    "dossier de données",
    "clé (KEK)",
    "base de données",
    "journal",
    "paramètres",
    "module PKCS#11",
    "service pcscd",
    "lecteurs",
    "horloge",
)


def test_doctor_reports_every_check(balise_env: BaliseEnv) -> None:
    assert balise_env.run("params", "set", "mode", "demo").returncode == 0
    result = balise_env.run("doctor")
    # Warnings (weak key, no practitioner, no pcscd) are problems found unless tolerated.
    assert result.returncode == 1, result.stdout
    assert "PROBLÈME" not in result.stdout and "ATTENTION" in result.stdout
    assert balise_env.run("doctor", "--allow-warnings").returncode == 0
    for name in CHECKS:
        assert any(name in line for line in result.stdout.splitlines()), name
    assert "WAL, synchronous=FULL" in result.stdout
    assert "protection faible" in result.stdout
    assert "aucun praticien configuré" in result.stdout


def test_doctor_without_kek_is_a_problem(balise_env: BaliseEnv) -> None:
    env = dict(balise_env.env)
    env.pop("BALISE_KEK_FILE")
    result = balise_env.run("doctor", env=env)
    assert result.returncode == 1
    assert "PROBLÈME" in result.stdout and "KEK" in result.stdout


def test_weak_key_in_production_is_a_problem_until_overridden(balise_env: BaliseEnv) -> None:
    assert balise_env.run("params", "set", "mode", "production").returncode == 0
    result = balise_env.run("doctor")
    assert result.returncode == 1
    assert "protection faible" in result.stdout and "dérogation" in result.stdout
    assert balise_env.run("params", "set", "weak_key_override", "oui").returncode == 0
    assert balise_env.run("doctor").returncode == 1  # the weak key stays a warning
    assert balise_env.run("doctor", "--allow-warnings").returncode == 0


def test_doctor_names_a_broken_journal(balise_env: BaliseEnv) -> None:
    import sqlite3

    assert balise_env.run("params", "set", "mode", "demo").returncode == 0
    conn = sqlite3.connect(balise_env.home / "balise.db")
    conn.execute("DROP TRIGGER journal_no_update")
    conn.execute("UPDATE journal SET actor = 'x' WHERE seq = 1")
    conn.commit()
    conn.close()
    result = balise_env.run("doctor")
    assert result.returncode == 1
    assert "journal rompu à l'entrée 1" in result.stdout
