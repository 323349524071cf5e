"""A restore checks the archived journal as `balise journal verify --full` does (issue 15): a chain
rewritten below the head the box had verified, or a starting point moved without a retention
checkpoint, is refused even though every hash agrees and the archive is sealed with the right
passphrase; a good restore leaves the restored box's daily check starting from the head it
verified."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from balise.adapters.archive import derive_master, open_archive, write_archive
from balise.app.backup import backup_service, restore_archive
from balise.app.context import open_context
from balise.domain.errors import BaliseError
from balise.domain.journal import entry_hash
from tests.support import backup_reader
from tests.support.balise_env import BaliseEnv
from tests.support.box import Box
from tests.support.sauvegarde_support import RECOVERY, fill_box


def _forge(archive: Path, tmp_path: Path, edit: Callable[[sqlite3.Connection], None]) -> Path:
    """The archive's database edited by ``edit``, sealed again under the same passphrase with a
    manifest that matches it (what a forger holding the passphrase would make)."""
    database = tmp_path / "forge.db"
    database.unlink(missing_ok=True)
    backup_reader.extract_database(archive, RECOVERY, database)
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        triggers = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        for (name,) in triggers.fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        edit(conn)
        head = conn.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    handle, header = open_archive(archive)
    handle.close()
    data = database.read_bytes()
    manifest = dict(
        header.manifest,
        payload_size=len(data),
        payload_sha256=hashlib.sha256(data).hexdigest(),
        journal_head_seq=head[0],
        journal_head_hash=head[1],
    )
    forged = tmp_path / "forgee.sauvegarde"
    with database.open("rb") as source, forged.open("wb") as out:
        # the archive's nonce again: the vault's data key stays wrapped under the same key
        write_archive(out, source, derive_master(RECOVERY, header.kdf), header.nonce, manifest)
    return forged


def _rehash_from(conn: sqlite3.Connection, first: int) -> None:
    rows = conn.execute(
        "SELECT seq, time, kind, actor, subject, details FROM journal WHERE seq >= ? ORDER BY seq",
        (first,),
    ).fetchall()
    (prev,) = conn.execute("SELECT hash FROM journal WHERE seq = ?", (first - 1,)).fetchone()
    for seq, time, kind, actor, subject, details in rows:
        digest = entry_hash(prev, seq, time, kind, actor, subject, details)
        conn.execute(
            "UPDATE journal SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq)
        )
        prev = digest


def _refused(forged: Path, other_box: BaliseEnv) -> BaliseError:
    with pytest.raises(BaliseError) as caught:
        restore_archive(forged, other_box.home, lambda: RECOVERY, env=other_box.env)
    assert not (other_box.home / "balise.db").exists()
    return caught.value


def test_a_journal_rewritten_below_the_verified_head_is_refused_at_restore(
    box: Box, other_box: BaliseEnv, tmp_path: Path
) -> None:
    fill_box(box)
    assert box.ctx.journal.verify(full=True).ok  # the box remembers the head it verified
    archive = Path(backup_service(box.ctx).backup(tmp_path / "out").path)

    def rewrite(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE journal SET details = ? WHERE seq = 10", (json.dumps({"réécrit": True}),)
        )
        _rehash_from(conn, 10)  # every hash agrees again

    error = _refused(_forge(archive, tmp_path, rewrite), other_box)
    assert error.code == "RESTORE_CHAIN" and "journal réécrit" in str(error), error

    # the same forge without the rewrite restores: the refusal is about the journal alone
    intact = _forge(archive, tmp_path, lambda conn: None)
    restore_archive(intact, other_box.home, lambda: RECOVERY, env=other_box.env)


def test_a_chain_start_moved_without_a_retention_checkpoint_is_refused_at_restore(
    box: Box, other_box: BaliseEnv, tmp_path: Path
) -> None:
    fill_box(box)
    archive = Path(backup_service(box.ctx).backup(tmp_path / "out").path)

    def cut(conn: sqlite3.Connection) -> None:
        (digest,) = conn.execute("SELECT hash FROM journal WHERE seq = 40").fetchone()
        conn.execute("DELETE FROM journal WHERE seq <= 40")
        conn.execute("DELETE FROM journal_verified")
        conn.execute(
            "INSERT INTO journal_anchor(id, seq, hash, removed) VALUES (1, 40, ?, 40)", (digest,)
        )

    error = _refused(_forge(archive, tmp_path, cut), other_box)
    assert error.code == "RESTORE_CHAIN" and "point de contrôle" in str(error), error


def test_after_a_restore_the_daily_check_starts_from_the_head_the_restore_verified(
    box: Box, other_box: BaliseEnv, tmp_path: Path
) -> None:
    fill_box(box)
    assert box.ctx.journal.verify(full=True).ok
    for i in range(5):  # entries the box never verified before its backup
        box.ctx.journal.append("test.after", f"n{i}")
    archive = Path(backup_service(box.ctx).backup(tmp_path / "out").path)
    handle, header = open_archive(archive)
    handle.close()
    report = restore_archive(archive, other_box.home, lambda: RECOVERY, env=other_box.env)
    assert report.head_seq == header.manifest["journal_head_seq"]
    ctx = open_context(other_box.home, actor="test", env=other_box.env)
    try:
        mark = ctx.journal.verified_head()
        assert mark is not None and mark.seq == report.head_seq and mark.full_verified
        daily = ctx.journal.verify(full=False)
        assert daily.ok and daily.since_seq == report.head_seq and daily.checked == 1  # restored
    finally:
        ctx.close()
