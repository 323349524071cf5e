"""The journal: append-only, hash-chained, verifiable, with one chain under concurrent writers."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from balise.domain.errors import ValidationError
from tests.support.balise_env import BaliseEnv

WRITER = """
import sys
import time
from pathlib import Path
from balise.app.context import open_context
ctx = open_context(Path(sys.argv[1]), actor=sys.argv[2])
print("ready", flush=True)
pause = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
for i in range(int(sys.argv[3])):
    ctx.journal.append("test.append", f"{sys.argv[2]}-{i}", {"i": i})
    if pause:
        time.sleep(pause)
ctx.close()
"""


def _fill(balise_env: BaliseEnv, n: int) -> None:
    ctx = balise_env.context()
    try:
        for i in range(n):
            ctx.journal.append("test.entry", f"entry {i}", {"i": i})
    finally:
        ctx.close()


def _raw(balise_env: BaliseEnv) -> sqlite3.Connection:
    conn = sqlite3.connect(balise_env.home / "balise.db", isolation_level=None)
    conn.execute("DROP TRIGGER journal_no_update")
    conn.execute("DROP TRIGGER journal_no_delete")
    return conn


def test_verify_prints_head_and_succeeds(balise_env: BaliseEnv) -> None:
    _fill(balise_env, 5)
    result = balise_env.run("journal", "verify")
    assert result.returncode == 0, result.stderr
    ctx = balise_env.context()
    head = ctx.journal.head()
    ctx.close()
    assert head is not None and head.seq == 5
    assert head.hash in result.stdout and "5 entrées" in result.stdout


def test_triggers_refuse_update_and_delete(balise_env: BaliseEnv) -> None:
    _fill(balise_env, 2)
    conn = sqlite3.connect(balise_env.home / "balise.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE journal SET subject = 'x' WHERE seq = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM journal WHERE seq = 1")
    conn.close()


def test_edited_entry_is_named(balise_env: BaliseEnv) -> None:
    _fill(balise_env, 10)
    conn = _raw(balise_env)
    conn.execute("UPDATE journal SET subject = 'falsifié' WHERE seq = 4")
    conn.close()
    result = balise_env.run("journal", "verify")
    assert result.returncode == 1
    assert "entrée 4" in result.stderr and "modifiée" in result.stderr


def test_deleted_entry_is_named(balise_env: BaliseEnv) -> None:
    _fill(balise_env, 10)
    conn = _raw(balise_env)
    conn.execute("DELETE FROM journal WHERE seq = 6")
    conn.close()
    result = balise_env.run("journal", "verify")
    assert result.returncode == 1
    assert "entrée 6" in result.stderr and "manquante" in result.stderr


def test_swapped_entries_are_named(balise_env: BaliseEnv) -> None:
    _fill(balise_env, 10)
    conn = _raw(balise_env)
    conn.execute("UPDATE journal SET seq = -1 WHERE seq = 3")
    conn.execute("UPDATE journal SET seq = 3 WHERE seq = 7")
    conn.execute("UPDATE journal SET seq = 7 WHERE seq = -1")
    conn.close()
    result = balise_env.run("journal", "verify")
    assert result.returncode == 1
    assert "entrée 3" in result.stderr and "ordre modifié" in result.stderr


def test_no_secret_key_enters_the_journal(balise_env: BaliseEnv) -> None:
    ctx = balise_env.context()
    try:
        with pytest.raises(ValidationError):
            ctx.journal.append("x", "y", {"pop3_password": "hunter2"})
        with pytest.raises(ValidationError):
            ctx.journal.append("x", "y", {"nested": {"PIN": "1234"}})
        for key in ("card-token_key", "KEK", "smtp-Secret"):
            with pytest.raises(ValidationError):
                ctx.journal.append("x", "y", {"items": [{key: "v"}]})
        assert ctx.journal.head() is None
        # Whole words only: a lot "pinned" or a "spinner" is no secret.
        ctx.journal.append("x", "y", {"pinned": True, "spinner": 1})
        assert ctx.journal.head() is not None
    finally:
        ctx.close()


@pytest.mark.slow
def test_two_concurrent_writers_keep_one_chain(balise_env: BaliseEnv) -> None:
    _fill(balise_env, 1)  # creates the database before both writers start
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(balise_env.home), name, "500"],
            env=balise_env.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("kiosk", "agent")
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0
    ctx = balise_env.context()
    try:
        report = ctx.journal.verify()
        actors = [e.actor for e in ctx.journal.entries()]
    finally:
        ctx.close()
    assert report.ok, report.describe()
    assert report.count == 1001
    assert actors.count("kiosk") == 500 and actors.count("agent") == 500


@pytest.mark.slow
def test_sigkill_during_appends_leaves_a_verifiable_journal(balise_env: BaliseEnv) -> None:
    _fill(balise_env, 1)
    proc = subprocess.Popen(
        # A short pause between appends keeps the writer busy long enough for the kill to land
        # in the middle even on a loaded machine (the kill can still hit a transaction).
        [sys.executable, "-c", WRITER, str(balise_env.home), "cli", "1000", "0.005"],
        env=balise_env.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 60
    ctx = balise_env.context()
    try:
        # Kill it in the middle: once some appends are committed but long before the end.
        while time.monotonic() < deadline:
            head = ctx.journal.head()
            if head is not None and head.seq >= 50:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        report = ctx.journal.verify()
    finally:
        ctx.close()
    assert report.ok, report.describe()
    assert 50 <= report.count < 1001
    result = balise_env.run("journal", "verify")
    assert result.returncode == 0
