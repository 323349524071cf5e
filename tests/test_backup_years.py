"""Backups of years of a busy practice: the archive is compressed (then encrypted), made, restored
and extracted without a box in constant memory; archives of the format before compression still
verify and restore; a hostile archive cannot make the box decompress without limit."""

from __future__ import annotations

import hashlib
import io
import shutil
import sqlite3
from pathlib import Path

import pytest

from balise.adapters.archive import (
    MAX_PAYLOAD,
    MAX_WINDOW,
    derive_master,
    new_nonce,
    open_archive,
    write_archive,
)
from balise.adapters.outbox import SqliteOutbox
from balise.app.backup import backup_service
from balise.app.context import open_context
from balise.domain.errors import BaliseError
from balise.domain.lotstate import LotState
from tests.support.balise_env import BALISE, BaliseEnv
from tests.support.box import Box
from tests.support.sauvegarde_support import RECOVERY, fill_box
from tests.support.years import busy_years, run_measured

MIB = 1024 * 1024
# Years of lots, returns and journal: about 250 MB of database, built in seconds.
LOTS = 3000
# Far below the database: neither command may hold it, nor the archive, in memory (the recovery
# passphrase's Argon2id alone takes 64 MiB while a restore derives the key).
PEAK_BOUND = 150 * MIB
# The newest lot with its envelope, as bytes (lot_blobs).
NEWEST_LOT = (
    "SELECT l.sha256, b.data FROM lots l JOIN lot_blobs b ON b.lot_id = l.id "
    "AND b.kind = 'envelope' ORDER BY l.id DESC"
)
FIXTURE = Path(__file__).parent / "data" / "backups" / "format1.sauvegarde"


def test_years_of_a_practice_back_up_compressed_and_restore_in_constant_memory(
    box: Box, other_box: BaliseEnv, tmp_path: Path
) -> None:
    added = busy_years(box, lots=LOTS)
    database = box.env.home / "balise.db"
    db_size = database.stat().st_size
    assert db_size > 200 * MIB

    made, backup_peak = run_measured([BALISE, "backup", "--to", str(tmp_path / "out")], box.env.env)
    assert made.returncode == 0, made.stderr
    [archive] = (tmp_path / "out").glob("*.sauvegarde")
    # half of such a database is ciphertext (envelopes, encrypted mail), which no compressor
    # shrinks; the rest compresses well
    assert archive.stat().st_size < 0.6 * db_size, (archive.stat().st_size, db_size)
    assert backup_peak < PEAK_BOUND, backup_peak

    restored, restore_peak = run_measured(
        [BALISE, "restore", str(archive)], other_box.env, stdin=RECOVERY + "\n"
    )
    assert restored.returncode == 0, restored.stderr
    assert restore_peak < PEAK_BOUND, restore_peak
    verified = other_box.run("journal", "verify", timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    ctx_b = open_context(other_box.home, actor="test", env=other_box.env)
    try:
        conn = ctx_b.store.conn
        lots, returns, payments = conn.execute(
            "SELECT (SELECT count(*) FROM lots), (SELECT count(*) FROM returns), "
            "(SELECT count(*) FROM payments)"
        ).fetchone()
        assert lots >= added.lots and returns >= added.returns and payments >= added.payments
        mine = box.ctx.store.conn.execute(NEWEST_LOT)
        theirs = conn.execute(NEWEST_LOT)
        assert mine.fetchone() == theirs.fetchone()  # the newest lot, byte for byte
    finally:
        ctx_b.close()

    # a technician's machine: no box, no KEK
    bare = {k: v for k, v in other_box.env.items() if not k.startswith("BALISE_")}
    extracted, extract_peak = run_measured(
        [BALISE, "backup", "extract", str(archive), "--to", str(tmp_path / "extrait")],
        bare,
        stdin=RECOVERY + "\n",
    )
    assert extracted.returncode == 0, extracted.stderr
    assert extract_peak < PEAK_BOUND, extract_peak
    opened = sqlite3.connect(f"file:{tmp_path / 'extrait' / 'balise.db'}?mode=ro", uri=True)
    try:
        newest = opened.execute(NEWEST_LOT).fetchone()
        assert newest == box.ctx.store.conn.execute(NEWEST_LOT).fetchone()
    finally:
        opened.close()


def test_an_archive_of_the_format_before_compression_still_verifies_and_restores(
    other_box: BaliseEnv, tmp_path: Path
) -> None:
    """``format1.sauvegarde`` was made by the box before archives were compressed (format 1,
    see tests/data/backups/README.md): one lot 007 SENT, its NOEMIE with three payments."""
    archive = tmp_path / FIXTURE.name
    shutil.copy(FIXTURE, archive)
    handle, header = open_archive(archive)
    handle.close()
    assert header.format == 1
    checked = other_box.run("backup", "verify", str(archive), stdin=RECOVERY + "\n")
    assert checked.returncode == 0, checked.stderr
    assert "archive intègre" in checked.stdout
    restored = other_box.run("restore", str(archive), stdin=RECOVERY + "\n")
    assert restored.returncode == 0, restored.stderr
    assert other_box.run("journal", "verify").returncode == 0
    ctx_b = open_context(other_box.home, actor="test", env=other_box.env)
    try:
        assert [(lot.lot_number, lot.state) for lot in ctx_b.lots.lots()] == [
            ("007", LotState.SENT)
        ]
        # its bytes, kept in the lot's row by that version, moved out of it on opening
        # (migration 0012_lot_blobs) and whole: the lot file, and the signature and envelope
        # make_sent gave it (no mail: it was not sent through the outbox)
        (lot,) = ctx_b.lots.lots()
        assert hashlib.sha256(ctx_b.lots.content(lot.id)).hexdigest() == lot.sha256
        assert ctx_b.lots.blob(lot.id, "signed_cms") == b"dummy-cms"
        assert ctx_b.lots.blob(lot.id, "envelope") == b"dummy-envelope"
        delivery = SqliteOutbox(ctx_b.store).delivery(lot.id)
        assert delivery is not None and delivery.mail is None and delivery.attempts == 0
        lot_columns = {r[1] for r in ctx_b.store.conn.execute("PRAGMA table_info(lots)")}
        assert not lot_columns & {"content", "signed_cms", "envelope", "mail"}
        assert len(ctx_b.tracking().payments()) == 3
        # its parameters are readable under this box's key
        assert ctx_b.params.get("emitter_number", profile="p1") == "00000012345678"
    finally:
        ctx_b.close()


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, never held in memory."""

    def __init__(self, size: int) -> None:
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: object) -> int:
        view = memoryview(buffer)  # type: ignore[arg-type]
        size = min(len(view), self._left)
        view[:size] = bytes(size)
        self._left -= size
        return size


def test_a_hostile_archive_cannot_expand_beyond_its_manifest(
    box: Box, other_box: BaliseEnv, tmp_path: Path
) -> None:
    """An archive sealed with the right passphrase (a forger who has it, or a bug) whose frame
    holds far more than the manifest declares: refused as damaged once the declared size is
    passed, in bounded memory, and nothing is restored. A manifest declaring more than the hard
    cap is refused before any decompression."""
    fill_box(box)
    made = Path(backup_service(box.ctx).backup(tmp_path / "out").path)
    handle, header = open_archive(made)
    handle.close()
    master = derive_master(RECOVERY, header.kdf)
    bomb = tmp_path / "bombe.sauvegarde"
    manifest = dict(header.manifest, payload_size=MIB)
    with bomb.open("wb") as out:
        # 4 GiB of zeros: a few hundred KiB once compressed
        write_archive(out, io.BufferedReader(_Zeros(4096 * MIB)), master, new_nonce(), manifest)
    assert bomb.stat().st_size < 2 * MAX_WINDOW
    refused, peak = run_measured(
        [BALISE, "backup", "verify", str(bomb)], other_box.env, stdin=RECOVERY + "\n"
    )
    assert refused.returncode == 1 and "BACKUP_DAMAGED" in refused.stderr, refused.stderr
    assert "plus long" in refused.stderr
    assert peak < PEAK_BOUND, peak
    assert other_box.run("restore", str(bomb), stdin=RECOVERY + "\n").returncode == 1
    assert not (other_box.home / "balise.db").exists()

    huge = tmp_path / "enorme.sauvegarde"
    with huge.open("wb") as out:
        write_archive(
            out,
            io.BytesIO(b"SQLite format 3\0"),
            master,
            new_nonce(),
            dict(header.manifest, payload_size=MAX_PAYLOAD + 1),
        )
    with pytest.raises(BaliseError) as caught:
        open_archive(huge)
    assert caught.value.code == "BACKUP_DAMAGED"
