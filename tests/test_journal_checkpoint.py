"""Ten years of journal: verification streams the chain in constant memory, and a verified-head
checkpoint lets the daily check (`balise journal verify`, the doctor) hash only what is new,
while `--full` re-hashes everything. Tampering before the checkpoint is caught by `--full`;
after it, by both; a history rewritten or cut short below the checkpoint, by both."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tracemalloc
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from balise.adapters.clock import FixedClock
from balise.app.backup import retention_service
from balise.app.context import open_context
from balise.domain.journal import GENESIS_HASH, entry_hash
from tests.support.balise_env import BaliseEnv
from tests.support.clock import TEST_NOW


def _fill(balise_env: BaliseEnv, n: int, *, clock: FixedClock | None = None) -> None:
    ctx = open_context(balise_env.home, actor="test", env=balise_env.env, clock=clock)
    try:
        with ctx.store.write():
            for i in range(n):
                ctx.journal.append("test.entry", f"entry {i}", {"i": i})
    finally:
        ctx.close()


def _raw(balise_env: BaliseEnv) -> sqlite3.Connection:
    conn = sqlite3.connect(balise_env.home / "balise.db", isolation_level=None)
    conn.execute("DROP TRIGGER journal_no_update")
    conn.execute("DROP TRIGGER journal_no_delete")
    return conn


def _rehash_from(conn: sqlite3.Connection, seq: int) -> None:
    """What a careful forger does after an edit: recompute every hash from ``seq`` on, so the
    chain agrees with itself again."""
    row = conn.execute("SELECT hash FROM journal WHERE seq = ?", (seq - 1,)).fetchone()
    prev = GENESIS_HASH if row is None else str(row[0])
    rows = conn.execute(
        "SELECT seq, time, kind, actor, subject, details FROM journal WHERE seq >= ? ORDER BY seq",
        (seq,),
    ).fetchall()
    for number, time, kind, actor, subject, details in rows:
        digest = entry_hash(prev, number, time, kind, actor, subject, details)
        conn.execute(
            "UPDATE journal SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, number)
        )
        prev = digest


def test_the_daily_check_hashes_only_the_new_entries(balise_env: BaliseEnv) -> None:
    _fill(balise_env, 10)
    first = balise_env.run("journal", "verify")
    assert first.returncode == 0, first.stderr
    assert "10 entrées" in first.stdout and "vérification complète" in first.stdout
    _fill(balise_env, 3)
    second = balise_env.run("journal", "verify")
    assert second.returncode == 0, second.stderr
    assert "13 entrées" in second.stdout
    assert "3 nouvelle(s) entrée(s) après l'entrée 10" in second.stdout
    assert "--full" in second.stdout
    full = balise_env.run("journal", "verify", "--full")
    assert full.returncode == 0 and "13 entrées" in full.stdout
    assert "vérification complète" in full.stdout


def test_an_edit_before_the_checkpoint_is_caught_by_the_full_check(balise_env: BaliseEnv) -> None:
    _fill(balise_env, 10)
    assert balise_env.run("journal", "verify").returncode == 0  # checkpoint at entry 10
    _fill(balise_env, 5)
    conn = _raw(balise_env)
    conn.execute("UPDATE journal SET subject = 'falsifié' WHERE seq = 4")
    conn.close()
    daily = balise_env.run("journal", "verify")
    # The incremental check trusts what it verified before (docs: README, journal verify).
    assert daily.returncode == 0 and "5 nouvelle(s) entrée(s)" in daily.stdout
    full = balise_env.run("journal", "verify", "--full")
    assert full.returncode == 1
    assert "entrée 4" in full.stderr and "modifiée" in full.stderr


def test_an_edit_after_the_checkpoint_is_caught_by_both_checks(balise_env: BaliseEnv) -> None:
    _fill(balise_env, 10)
    assert balise_env.run("journal", "verify").returncode == 0
    _fill(balise_env, 5)
    conn = _raw(balise_env)
    conn.execute("UPDATE journal SET details = '{\"i\":99}' WHERE seq = 12")
    conn.close()
    for args in (("journal", "verify"), ("journal", "verify", "--full")):
        result = balise_env.run(*args)
        assert result.returncode == 1, args
        assert "entrée 12" in result.stderr and "modifiée" in result.stderr
    doctor = balise_env.run("doctor")
    assert doctor.returncode == 1
    assert "journal rompu à l'entrée 12" in doctor.stdout


def test_the_checkpointed_entry_itself_is_checked(balise_env: BaliseEnv) -> None:
    _fill(balise_env, 10)
    assert balise_env.run("journal", "verify").returncode == 0
    conn = _raw(balise_env)
    conn.execute("UPDATE journal SET subject = 'falsifié' WHERE seq = 10")
    conn.close()
    result = balise_env.run("journal", "verify")
    assert result.returncode == 1 and "entrée 10" in result.stderr


def test_a_rewritten_history_is_caught_even_when_its_hashes_agree(balise_env: BaliseEnv) -> None:
    _fill(balise_env, 10)
    assert balise_env.run("journal", "verify").returncode == 0
    _fill(balise_env, 2)
    conn = _raw(balise_env)
    conn.execute("UPDATE journal SET subject = 'falsifié' WHERE seq = 4")
    _rehash_from(conn, 4)
    conn.close()
    for args in (("journal", "verify"), ("journal", "verify", "--full")):
        result = balise_env.run(*args)
        assert result.returncode == 1, args
        assert "entrée 10" in result.stderr and "réécrit" in result.stderr


def test_a_journal_cut_short_after_a_check_is_caught(balise_env: BaliseEnv) -> None:
    _fill(balise_env, 10)
    assert balise_env.run("journal", "verify").returncode == 0
    conn = _raw(balise_env)
    conn.execute("DELETE FROM journal WHERE seq >= 8")
    conn.close()
    for args in (("journal", "verify"), ("journal", "verify", "--full")):
        result = balise_env.run(*args)
        assert result.returncode == 1, args
        assert "entrée 8" in result.stderr and "manquante" in result.stderr


def test_the_doctor_checks_what_is_new_since_the_last_check(balise_env: BaliseEnv) -> None:
    _fill(balise_env, 10)
    assert balise_env.run("journal", "verify").returncode == 0
    _fill(balise_env, 2)
    doctor = balise_env.run("doctor")
    line = next(x for x in doctor.stdout.splitlines() if x.split()[1:2] == ["journal"])
    assert line.startswith("OK")
    assert "12 entrées" in line
    assert "2 nouvelle(s) entrée(s) vérifiée(s) depuis le point de contrôle n° 10" in line


def test_the_checkpoint_follows_retention(balise_env: BaliseEnv) -> None:
    """Retention removes the entries the checkpoint named: the next check starts from the
    retention anchor, then checkpoints the new head."""
    old = FixedClock(TEST_NOW - timedelta(days=4 * 365))
    _fill(balise_env, 50, clock=old)
    assert balise_env.run("journal", "verify").returncode == 0  # checkpoint at entry 50
    _fill(balise_env, 5)
    ctx = open_context(balise_env.home, actor="test", env=balise_env.env)
    try:
        outcome = retention_service(ctx).run(TEST_NOW)
        assert outcome.journal_removed == 50  # entry 50 is the anchor now
        report = ctx.journal.verify(full=False)
        assert report.ok, report.describe()
        assert report.since_seq is None  # started again from the anchor
        assert report.count == 6  # five recent entries and the retention checkpoint
        mark = ctx.journal.verified_head()
        head = ctx.journal.head()
        assert mark is not None and head is not None and mark.seq == head.seq
        again = ctx.journal.verify(full=False)
        assert again.ok and again.since_seq == head.seq and again.checked == 0
    finally:
        ctx.close()


ENTRIES = 60_000


def _bulk_journal(balise_env: BaliseEnv, n: int) -> None:
    """A long valid chain written straight into the table (the append path would take minutes)."""
    ctx = balise_env.context()
    ctx.close()
    conn = sqlite3.connect(balise_env.home / "balise.db", isolation_level=None)
    prev = GENESIS_HASH
    when = TEST_NOW.isoformat(timespec="microseconds")
    rows = []
    for seq in range(1, n + 1):
        details = json.dumps({"from": "sent", "lot": seq, "to": "acknowledged"})
        digest = entry_hash(prev, seq, when, "lot.state", "agent", f"lot:{seq}", details)
        rows.append((seq, when, "lot.state", "agent", f"lot:{seq}", details, prev, digest))
        prev = digest
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    conn.close()


def test_verifying_a_long_journal_keeps_memory_flat(balise_env: BaliseEnv) -> None:
    """60,000 entries: the old list-and-dict verification held about 40 MB of them; streaming
    keeps a few kilobytes whatever the length (and a 1 GB Raspberry Pi survives ten years)."""
    _bulk_journal(balise_env, ENTRIES)
    ctx = balise_env.context()
    try:
        tracemalloc.start()
        try:
            report = ctx.journal.verify(full=True)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        ctx.close()
    assert report.ok and report.count == ENTRIES, report.describe()
    assert peak < 4 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_a_swap_deep_in_a_long_journal_is_still_named(balise_env: BaliseEnv) -> None:
    """The "reordered" diagnosis finds the owner of a link by an indexed lookup, not a dict."""
    _bulk_journal(balise_env, 5_000)
    conn = _raw(balise_env)
    conn.execute("UPDATE journal SET seq = -1 WHERE seq = 4000")
    conn.execute("UPDATE journal SET seq = 4000 WHERE seq = 4700")
    conn.execute("UPDATE journal SET seq = 4700 WHERE seq = -1")
    conn.close()
    result = balise_env.run("journal", "verify", "--full")
    assert result.returncode == 1
    assert "entrée 4000" in result.stderr and "ordre modifié" in result.stderr
    assert "position 4700" in result.stderr


def _reference_hash(
    prev: str, seq: int, time: str, kind: str, actor: str, subject: str, details: str
) -> str:
    """The encoding every stored entry was hashed with since the first journal."""
    body = json.dumps(
        [seq, time, kind, actor, subject, details], separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(prev.encode("ascii") + b"\n" + body.encode("utf-8")).hexdigest()


@given(
    seq=st.integers(min_value=1, max_value=2**62),
    texts=st.lists(st.text(), min_size=5, max_size=5),
)
def test_entry_hash_is_the_encoding_existing_journals_were_hashed_with(
    seq: int, texts: list[str]
) -> None:
    time, kind, actor, subject, details = texts
    assert entry_hash("a" * 64, seq, time, kind, actor, subject, details) == _reference_hash(
        "a" * 64, seq, time, kind, actor, subject, details
    )
