"""Refused lot files cannot fill the box: their bytes are kept only within a quota (an alert says
when it is reached; their name, size, SHA-256 and reasons always stay), and backups carry their
metadata and hash, never their bytes."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

from balise.adapters.archive import derive_master, open_archive, payload_blocks
from balise.adapters.backup_db import unlock
from balise.app.backup import backup_service
from tests.support.box import Box
from tests.support.clock import TEST_NOW
from tests.support.sauvegarde_support import RECOVERY

REFUSED_SIZE = 400 * 1024
SENTINEL = b"OCTETS-DU-FICHIER-REFUSE-"


def _refused(index: int) -> bytes:
    """Not a lot: a 400 KiB file of its own (distinct content, distinct hash)."""
    head = SENTINEL + f"{index:04d}".encode()
    return head + b"x" * (REFUSED_SIZE - len(head))


def _store_size(home: Path) -> int:
    return sum(p.stat().st_size for p in home.iterdir() if p.is_file())


def test_refused_files_beyond_the_quota_keep_their_reasons_and_hash_not_their_bytes(
    box: Box, tmp_path: Path
) -> None:
    assert box.env.run("params", "set", "refused_quota_mib", "1").returncode == 0
    exchange = box.ctx.exchange(box.env.env)
    base_ns = int(TEST_NOW.timestamp()) * 10**9 - 10**12
    sent = {f"refus-{i:02d}.lot": _refused(i) for i in range(20)}  # 8 MB from outside
    for i, (name, data) in enumerate(sent.items()):
        (exchange.root / "depot" / "tmp" / name).write_bytes(data)
        (exchange.root / "depot" / "tmp" / name).rename(exchange.new / name)
        os.utime(exchange.new / name, ns=(base_ns + i, base_ns + i))
    result = box.env.run("intake", "--once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert exchange.pending() == []

    listed = json.loads(box.env.run("lots", "list", "--json").stdout)["quarantine"]
    assert [q["name"] for q in listed] == list(sent)
    assert [q["sha256"] for q in listed] == [hashlib.sha256(d).hexdigest() for d in sent.values()]
    assert all(q["size"] == REFUSED_SIZE and q["problems"] for q in listed)
    kept = [q["content_kept"] for q in listed]
    assert kept == [True, True] + [False] * 18  # 2 × 400 KiB fit in 1 MiB, the third does not
    # the bytes the store does not keep are not lost: set aside whole for the practice software
    aside = exchange.root / "depot" / "ecartes"
    assert sorted(p.name for p in aside.iterdir()) == list(sent)[2:]
    assert all((aside / n).read_bytes() == sent[n] for n in list(sent)[2:])
    assert _store_size(box.env.home) < 4 * 2**20  # 8 MB came in
    alerts = [a for a in box.ctx.tracking().alerts() if a.kind == "refused_quota"]
    assert len(alerts) == 1 and "Quota des fichiers refusés" in alerts[0].fr

    # the same quota for the lots USB key (`balise import`): the key keeps its own file
    key_file = tmp_path / "cle.lot"
    key_file.write_bytes(_refused(99))
    assert box.env.run("import", str(key_file)).returncode != 0
    last = json.loads(box.env.run("lots", "list", "--json").stdout)["quarantine"][-1]
    assert last["name"] == "cle.lot" and last["content_kept"] is False and key_file.exists()
    alerts = [a for a in box.ctx.tracking().alerts() if a.kind == "refused_quota"]
    assert len(alerts) == 1  # once, until acknowledged


def test_backups_carry_refused_files_metadata_and_hash_not_their_bytes(
    box: Box, tmp_path: Path
) -> None:
    box.ctx.params.set("recovery_passphrase", RECOVERY)
    data = _refused(7)
    key_file = tmp_path / "abime.lot"
    key_file.write_bytes(data)
    assert box.env.run("import", str(key_file)).returncode != 0
    made = box.env.run("backup", "--to", str(tmp_path / "out"))
    assert made.returncode == 0, made.stderr
    [archive] = (tmp_path / "out").glob("*.sauvegarde")
    handle, header = open_archive(archive)
    with handle:
        keys = unlock(archive, derive_master(RECOVERY, header.kdf)).keys
        payload = b"".join(payload_blocks(handle, header, keys))
    assert SENTINEL not in payload
    snapshot = tmp_path / "copie.db"
    snapshot.write_bytes(payload)
    conn = sqlite3.connect(snapshot)
    try:
        rows = conn.execute(
            "SELECT name, sha256, size, length(content), content_dropped FROM quarantine_files"
        ).fetchall()
    finally:
        conn.close()
    assert rows == [("abime.lot", hashlib.sha256(data).hexdigest(), REFUSED_SIZE, 0, "sauvegarde")]
    # the box itself still holds the bytes (within its quota): only the backup leaves them out
    assert box.ctx.lots.quarantined()[0].content_kept
    assert backup_service(box.ctx).status().last_ok is not None
