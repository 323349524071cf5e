"""Backups a technician opens without a box: `balise backup extract` writes the plain database and
the archive's header, and an independent reader written from docs/backup-format.md alone
(tests/support/backup_reader.py) opens the same archive to the same database; both refuse a
tampered chunk, a truncated archive and a wrong passphrase."""

from __future__ import annotations

import ast
import json
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from balise.app.backup import backup_service, extract_archive
from balise.domain.errors import ValidationError
from tests.support import backup_reader
from tests.support.balise_env import BALISE
from tests.support.box import Box
from tests.support.sauvegarde_support import RECOVERY, fill_box
from tests.support.small_fs import SmallFs

READER = Path(backup_reader.__file__)
FORMAT1 = Path(__file__).parent / "data" / "backups" / "format1.sauvegarde"
# Tables whose rows travel unchanged from the box into the archive.
SAME_TABLES = ("lots", "returns", "payments", "alerts", "journal", "journal_anchor", "vault")


def _technician_env(tmp_path: Path) -> dict[str, str]:
    """A machine without a box: no data folder, no KEK, nothing of Balise's configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BALISE_")}
    env.pop("CREDENTIALS_DIRECTORY", None)
    env["HOME"] = str(tmp_path / "technicien")
    return env


def _extract(
    archive: Path, dest: Path, env: dict[str, str], stdin: str = RECOVERY + "\n", *extra: str
) -> tuple[int, str, str]:
    import subprocess

    done = subprocess.run(
        [BALISE, "backup", "extract", str(archive), "--to", str(dest), *extra],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def _dump(database: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def _rows(database: Path, table: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
    finally:
        conn.close()


def test_the_reader_imports_nothing_of_balise() -> None:
    tree = ast.parse(READER.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert roots, "no import found: the check would prove nothing"
    assert roots - set(sys.stdlib_module_names) == {"cryptography", "zstandard"}, roots


def test_a_technician_extracts_without_a_box_and_the_independent_reader_agrees(
    box: Box, tmp_path: Path
) -> None:
    fill_box(box)
    made = box.env.run("backup", "--to", str(tmp_path / "out"))
    assert made.returncode == 0, made.stderr
    [archive] = (tmp_path / "out").glob("*.sauvegarde")
    env = _technician_env(tmp_path)
    dest = tmp_path / "technicien" / "ouverte"

    code, out, err = _extract(archive, dest, env)
    assert code == 0, err
    assert sorted(p.name for p in dest.iterdir()) == ["balise.db", "entete.json"]
    assert dest.stat().st_mode & 0o777 == 0o700
    assert "archive ouverte" in out and "restent chiffrés" in out
    header_file = json.loads((dest / "entete.json").read_text())
    assert header_file["format"] == 2 and header_file["compression"] == "zstd"

    # The independent reader, from the document alone, gets the very same database.
    by_reader = tmp_path / "lecteur.db"
    header = backup_reader.extract_database(archive, RECOVERY, by_reader)
    assert header.fields == header_file
    assert by_reader.read_bytes() == (dest / "balise.db").read_bytes()
    assert _dump(by_reader) == _dump(dest / "balise.db")

    # ... which is the box's data: the same rows as the box's own store, table by table
    source = box.env.home / "balise.db"
    for table in SAME_TABLES:
        theirs = _rows(source, table)
        if table == "journal":  # the box journaled the backup after its snapshot
            assert theirs[-1][2] == "backup.created"
            theirs = theirs[:-1]
        assert _rows(by_reader, table) == theirs, table
    assert len(_rows(by_reader, "lots")) == 8 and len(_rows(by_reader, "journal")) > 300

    # Secrets stay encrypted in what extract wrote; the document's key wrapping is right: the
    # passphrase's vault-wrap key unwraps the data key, which opens the box's parameters.
    ((wrapped, fingerprint),) = _rows_of(
        by_reader, "SELECT wrapped, kek_fingerprint FROM vault_keys"
    )
    assert fingerprint == "archive"
    data_key = backup_reader.vault_data_key(header, RECOVERY, wrapped)
    values = {
        (scope, name): backup_reader.vault_value(data_key, scope, name, nonce, ciphertext)
        for scope, name, nonce, ciphertext in _rows_of(
            by_reader, "SELECT scope_id, name, nonce, ciphertext FROM vault"
        )
    }
    assert values[("profile:p1", "emitter_number")] == box.ctx.params.get(
        "emitter_number", profile="p1"
    )
    written = b"".join(p.read_bytes() for p in dest.iterdir())
    assert RECOVERY.encode() not in written and data_key not in written
    assert box.ctx.kek.key not in written


def _rows_of(database: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_the_reader_opens_an_archive_of_the_format_before_compression(tmp_path: Path) -> None:
    out = tmp_path / "f1.db"
    header = backup_reader.extract_database(FORMAT1, RECOVERY, out)
    assert header.fields["format"] == 1
    assert [row[0] for row in _rows_of(out, "SELECT lot_number FROM lots")] == ["007"]
    assert len(_rows_of(out, "SELECT 1 FROM payments")) == 3


def test_tampered_truncated_or_wrong_passphrase_refused_by_both_readers_nothing_left(
    box: Box, tmp_path: Path
) -> None:
    fill_box(box)
    good = Path(backup_service(box.ctx).backup(tmp_path / "out", chunk_size=4096).path)
    data = good.read_bytes()
    with good.open("rb") as handle:
        start = backup_reader.parse_header(handle).chunks_at
    piece = 4096 + 16
    assert len(data) - start > 3 * piece  # several chunks: the cuts below fall between them
    tampered = bytearray(data)
    tampered[start + piece + 100] ^= 0x01  # inside the second chunk
    cases = {
        "bloc 1 non authentifié": bytes(tampered),
        "tronquée": data[: start + 2 * piece],  # cut at a chunk boundary
        "tronquée ou modifiée": data[:-7],  # cut inside the last chunk
        "en-tête altéré": data[:20] + bytes([data[20] ^ 1]) + data[21:],
    }
    env = _technician_env(tmp_path)
    for words, content in cases.items():
        bad = tmp_path / "abimee.sauvegarde"
        bad.write_bytes(content)
        with pytest.raises(backup_reader.ArchiveRefused) as refused:
            backup_reader.extract_database(bad, RECOVERY, tmp_path / "lu.db")
        assert refused.value.why == "damaged", words
        assert not (tmp_path / "lu.db").exists() and not (tmp_path / "lu.db.partial").exists()
        dest = tmp_path / "sortie"
        code, out, err = _extract(bad, dest, env)
        assert code != 0 and "[BACKUP_DAMAGED]" in err and words in err, (words, err)
        assert "archive endommagée ou modifiée" in err and "Traceback" not in err
        assert not dest.exists(), words  # the folder it created is gone again

    with pytest.raises(backup_reader.ArchiveRefused) as refused:
        backup_reader.extract_database(good, "pas la bonne phrase", tmp_path / "lu.db")
    assert refused.value.why == "passphrase"
    dest = tmp_path / "vide"
    dest.mkdir()
    code, out, err = _extract(good, dest, env, "pas la bonne phrase\n")
    assert code != 0 and "phrase de passe de secours incorrecte" in err, err
    assert "pas la bonne phrase" not in out + err
    assert dest.is_dir() and not any(dest.iterdir())  # an empty folder given stays, empty

    code, out, err = _extract(good, dest, env, RECOVERY + "\n", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["database"] == str(dest / "balise.db") and shown["manifest"]["box_id"]


def test_extract_refuses_a_folder_not_empty_or_a_link_before_asking_anything(
    box: Box, tmp_path: Path
) -> None:
    fill_box(box)
    archive = Path(backup_service(box.ctx).backup(tmp_path / "out").path)
    env = _technician_env(tmp_path)
    full = tmp_path / "plein"
    full.mkdir()
    (full / "notes.txt").write_text("à garder\n")
    code, _, err = _extract(archive, full, env, stdin="")  # no passphrase given: never asked
    assert code != 0 and "[EXTRACT_NOT_EMPTY]" in err and "n'est pas vide" in err, err
    assert [p.name for p in full.iterdir()] == ["notes.txt"]

    empty = tmp_path / "ailleurs"
    empty.mkdir()
    link = tmp_path / "lien"
    link.symlink_to(empty)
    code, _, err = _extract(archive, link, env, stdin="")
    assert code != 0 and "[EXTRACT_TARGET]" in err and "lien symbolique" in err, err
    assert not any(empty.iterdir())

    code, _, err = _extract(archive, tmp_path / "x", env, "", "--passphrase", RECOVERY)
    assert code != 0 and not (tmp_path / "x").exists()  # never an argument


def test_at_a_terminal_extract_gives_three_tries_with_growing_delays_like_restore(
    box: Box, tmp_path: Path
) -> None:
    # in one process, as `balise backup extract` at a terminal (three tries); the penalties are
    # observed through the injected sleep, nothing is timed
    fill_box(box)
    archive = Path(backup_service(box.ctx).backup(tmp_path / "out").path)
    sleeps: list[float] = []
    answers = iter(["faux", "encore faux", RECOVERY])
    facts = extract_archive(
        archive, tmp_path / "ok", lambda: next(answers), attempts=3, sleep=sleeps.append
    )
    assert facts.database.is_file() and next(answers, None) is None
    assert 1.0 in sleeps and max(sleeps) == 2.0  # 1 s after the first wrong one, 2 s after the 2nd

    asked: list[str] = []

    def wrong() -> str:
        asked.append("x")
        return "toujours pas la bonne phrase"

    dest = tmp_path / "ko"
    with pytest.raises(ValidationError) as refused:
        extract_archive(archive, dest, wrong, attempts=3, sleep=lambda _s: None)
    assert refused.value.code == "BACKUP_WRONG_PASSPHRASE" and len(asked) == 3
    assert not dest.exists()  # the folder it created is gone again


def test_extract_onto_a_disk_too_small_says_so_and_leaves_nothing(
    box: Box, tmp_path: Path, small_fs: Callable[[int], SmallFs]
) -> None:
    fill_box(box)
    archive = Path(backup_service(box.ctx).backup(tmp_path / "out").path)
    with archive.open("rb") as handle:
        size = backup_reader.parse_header(handle).manifest["payload_size"]
    fs = small_fs(16 * 1024)
    fs.fill(leave=size // 2)  # a key with room for half the database
    dest = fs.root / "ouverte"
    code, _, err = _extract(archive, dest, _technician_env(tmp_path))
    assert code != 0 and "[DISK_FULL]" in err and "Disque plein" in err, err
    assert not dest.exists()
