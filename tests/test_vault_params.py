"""Parameters exist on disk only encrypted; bad input is refused with nothing written."""

from __future__ import annotations

import base64
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from balise.adapters.kek import create_key_file
from balise.domain.errors import IntegrityError
from balise.sim.pki import TestPKI
from tests.support.balise_env import BaliseEnv
from tests.support.clock import TEST_NOW

SECRET = "Zq7-unique-SMTP-secret-91x"


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _snapshot(balise_env: BaliseEnv) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    conn = sqlite3.connect(balise_env.home / "balise.db")
    try:
        vault = conn.execute("SELECT * FROM vault ORDER BY scope_id, name").fetchall()
        journal = conn.execute("SELECT * FROM journal ORDER BY seq").fetchall()
    finally:
        conn.close()
    return vault, journal


def test_secret_is_nowhere_in_clear_nor_base64(balise_env: BaliseEnv) -> None:
    result = balise_env.run(
        "params", "set", "smtp.password", "--profile", "p1", "--secret", stdin=SECRET + "\n"
    )
    assert result.returncode == 0, result.stderr
    got = balise_env.run("params", "get", "smtp.password", "--profile", "p1")
    assert got.returncode == 0
    assert SECRET not in got.stdout and "****" in got.stdout
    listed = balise_env.run("params", "list")
    assert "smtp.password" in listed.stdout and SECRET not in listed.stdout
    shown = balise_env.run("journal", "show")
    assert SECRET not in shown.stdout
    needles = [SECRET.encode()]
    for shift in range(3):  # base64 of the secret at any alignment
        chunk = base64.b64encode(b"x" * shift + SECRET.encode())[4:20]
        needles.append(chunk)
    needles.append(SECRET.encode("utf-16-le"))
    files = _files_under(balise_env.home)
    assert any(f.name == "balise.db" for f in files)
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"{needle!r} found in {path}"
    # The service still gets the real value back.
    ctx = balise_env.context()
    try:
        assert ctx.params.value("smtp.password", profile="p1") == SECRET
    finally:
        ctx.close()


def test_secret_is_refused_on_the_command_line(balise_env: BaliseEnv) -> None:
    result = balise_env.run("params", "set", "pop3.password", SECRET, "--profile", "p1")
    assert result.returncode != 0
    assert "entrée standard" in result.stderr
    assert not (balise_env.home / "balise.db").exists()


def test_setting_a_profile_parameter_creates_the_profile(balise_env: BaliseEnv) -> None:
    assert (
        balise_env.run("params", "set", "display_name", "Dr Test", "--profile", "cab-1").returncode
        == 0
    )
    ctx = balise_env.context()
    try:
        from balise.domain.params import Scope

        assert ctx.params.ids(Scope.PROFILE) == ["cab-1"]
        kinds = [e.kind for e in ctx.journal.entries()]
        assert kinds == ["profile.created", "param.set"]
    finally:
        ctx.close()


def test_no_kek_means_nothing_starts(balise_env: BaliseEnv) -> None:
    env = dict(balise_env.env)
    env.pop("BALISE_KEK_FILE")
    result = balise_env.run("params", "set", "mode", "demo", env=env)
    assert result.returncode == 1
    assert "KEK" in result.stderr
    assert not balise_env.home.exists()


def test_wrong_kek_is_refused_before_anything_is_written(
    balise_env: BaliseEnv, tmp_path: Path
) -> None:
    assert balise_env.run("params", "set", "mode", "demo").returncode == 0
    before = _snapshot(balise_env)
    other = tmp_path / "other.kek"
    create_key_file(other)
    env = dict(balise_env.env, BALISE_KEK_FILE=str(other))
    result = balise_env.run("params", "set", "arl_overdue_days", "5", env=env)
    assert result.returncode == 1
    assert "ne correspond pas" in result.stderr
    assert balise_env.run("params", "get", "mode", env=env).returncode == 1
    assert _snapshot(balise_env) == before


def test_short_or_world_readable_kek_is_refused(balise_env: BaliseEnv, tmp_path: Path) -> None:
    short = tmp_path / "short.kek"
    short.write_bytes(b"too short")
    short.chmod(0o600)
    result = balise_env.run("params", "list", env=dict(balise_env.env, BALISE_KEK_FILE=str(short)))
    assert result.returncode == 1 and "KEK_INVALID" in result.stderr
    balise_env.kek_file.chmod(0o644)
    result = balise_env.run("params", "list")
    assert result.returncode == 1 and "lisible par tous" in result.stderr


def test_corrupted_entry_fails_authentication(balise_env: BaliseEnv) -> None:
    balise_env.run("params", "set", "pop3.host", "pop.example.net", "--profile", "p1")
    conn = sqlite3.connect(balise_env.home / "balise.db")
    (blob,) = conn.execute("SELECT ciphertext FROM vault WHERE name = 'pop3.host'").fetchone()
    flipped = bytes([blob[0] ^ 0x01]) + blob[1:]
    conn.execute("UPDATE vault SET ciphertext = ? WHERE name = 'pop3.host'", (flipped,))
    conn.commit()
    conn.close()
    result = balise_env.run("params", "get", "pop3.host", "--profile", "p1")
    assert result.returncode == 1
    assert "corrompue" in result.stderr and "VAULT_CORRUPT" in result.stderr
    doctor = balise_env.run("doctor")
    assert doctor.returncode == 1 and "entrées corrompues" in doctor.stdout


def test_value_moved_to_another_profile_is_refused(balise_env: BaliseEnv) -> None:
    balise_env.run("params", "set", "pop3.host", "pop.example.net", "--profile", "p1")
    balise_env.run("params", "set", "pop3.host", "pop.other.net", "--profile", "p2")
    conn = sqlite3.connect(balise_env.home / "balise.db")
    row = conn.execute(
        "SELECT nonce, ciphertext FROM vault WHERE scope_id = 'profile:p1' AND name = 'pop3.host'"
    ).fetchone()
    conn.execute(
        "UPDATE vault SET nonce = ?, ciphertext = ? WHERE scope_id = 'profile:p2' AND name = 'pop3.host'",
        row,
    )
    conn.commit()
    conn.close()
    ctx = balise_env.context()
    try:
        with pytest.raises(IntegrityError):
            ctx.params.get("pop3.host", profile="p2")
    finally:
        ctx.close()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["params", "set", "nope", "x"], "paramètre inconnu"),
        (["params", "set", "smtp.port", "70000", "--profile", "p1"], "entre 1 et 65535"),
        (["params", "set", "smtp.port", "-3", "--profile", "p1"], "entre 1 et 65535"),
        (["params", "set", "bal_address", "cabinet", "--profile", "p1"], "adresse électronique"),
        (
            ["params", "set", "bal_address", "x@localhost", "--profile", "p1"],
            "adresse électronique",
        ),
        (["params", "set", "emitter_number", "12AB", "--profile", "p1"], "14 chiffres"),
        (["params", "set", "smtp.tls", "none", "--profile", "p1"], "implicit, starttls"),
        (["params", "set", "smtp.host", "smtp.example.net"], "--profile"),
        (["params", "set", "mode", "demo", "--profile", "p1"], "global"),
        (["params", "set", "smtp.host", "a", "--profile", "Bad Id"], "identifiant invalide"),
    ],
)
def test_bad_values_are_refused_and_nothing_is_written(
    balise_env: BaliseEnv, args: list[str], words: str
) -> None:
    assert balise_env.run("params", "set", "mode", "test").returncode == 0
    before = _snapshot(balise_env)
    result = balise_env.run(*args)
    assert result.returncode == 1, result.stdout
    assert words in result.stderr
    assert _snapshot(balise_env) == before


def test_certificates_are_checked(balise_env: BaliseEnv, pki: TestPKI, tmp_path: Path) -> None:
    assert balise_env.run("params", "set", "mode", "test").returncode == 0
    before = _snapshot(balise_env)
    garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    bad = balise_env.run("params", "set", "recipient_certs", "--organism", "amo", stdin=garbage)
    assert bad.returncode == 1 and "ne se lit pas" in bad.stderr
    none = balise_env.run("params", "set", "recipient_certs", "--organism", "amo", stdin="hello")
    assert none.returncode == 1 and "PEM" in none.stderr
    now = TEST_NOW
    expired = pki.issue_organism(
        "TEST CPAM EXPIREE", not_before=now - timedelta(days=400), not_after=now - timedelta(days=5)
    )
    old = balise_env.run(
        "params", "set", "recipient_certs", "--organism", "amo", stdin=expired.cert_pem.read_text()
    )
    assert old.returncode == 1 and "expiré" in old.stderr
    assert _snapshot(balise_env) == before
    good = balise_env.run(
        "params",
        "set",
        "recipient_certs",
        "--organism",
        "amo",
        stdin=pki.amo.cert_pem.read_text() + pki.amc.cert_pem.read_text(),
    )
    assert good.returncode == 0, good.stderr
    shown = balise_env.run("params", "get", "recipient_certs", "--organism", "amo")
    assert shown.stdout.count("BEGIN CERTIFICATE") == 2


def test_rotate_key_with_new_kek(balise_env: BaliseEnv, tmp_path: Path) -> None:
    balise_env.run("params", "set", "smtp.password", "--profile", "p1", "--secret", stdin=SECRET)
    balise_env.run("params", "set", "smtp.host", "smtp.example.net", "--profile", "p1")
    conn = sqlite3.connect(balise_env.home / "balise.db")
    (old_wrapped,) = conn.execute("SELECT wrapped FROM vault_keys").fetchone()
    conn.close()
    new = tmp_path / "new.kek"
    create_key_file(new)
    result = balise_env.run("params", "rotate-key", "--new-kek-file", str(new))
    assert result.returncode == 0, result.stderr
    assert "2 paramètre(s)" in result.stdout
    assert balise_env.run("params", "list").returncode == 1  # the old KEK no longer opens it
    env = dict(balise_env.env, BALISE_KEK_FILE=str(new))
    assert "smtp.example.net" in balise_env.run("params", "list", env=env).stdout
    conn = sqlite3.connect(balise_env.home / "balise.db")
    keys = conn.execute("SELECT wrapped FROM vault_keys").fetchall()
    conn.close()
    assert len(keys) == 1 and keys[0][0] != old_wrapped
    assert balise_env.run("journal", "verify", env=env).returncode == 0


def test_technician_passphrase_is_stored_as_argon2id_hash(balise_env: BaliseEnv) -> None:
    phrase = "correct horse battery staple"
    result = balise_env.run("params", "set", "technician_passphrase", "--secret", stdin=phrase)
    assert result.returncode == 0, result.stderr
    ctx = balise_env.context()
    try:
        stored = ctx.vault.get("", "technician_passphrase")
        assert isinstance(stored, str) and stored.startswith("$argon2id$")
        assert phrase not in stored
        assert ctx.params.check_passphrase("technician_passphrase", phrase)
        assert not ctx.params.check_passphrase("technician_passphrase", phrase + "!")
    finally:
        ctx.close()
