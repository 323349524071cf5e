"""Backups: archive on box A, restore on box B (another KEK) with the same data and working secrets;
damaged archives and wrong passphrases refused before anything is written; crash-safe publication;
the daily round (newest N kept, journaled, age alert)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from balise.adapters.archive import derive_master, open_archive, payload_blocks
from balise.adapters.backup_db import THROTTLE_FILE, unlock
from balise.adapters.clock import FixedClock
from balise.app.backup import backup_service, restore_archive
from balise.app.context import open_context
from balise.domain.errors import BaliseError, ValidationError
from balise.domain.lotstate import LotState
from balise.sim.dovecot import DovecotServer
from tests.support.balise_env import BaliseEnv
from tests.support.box import Box
from tests.support.mail_corpus import ARL_POS_EML
from tests.support.mail_fixtures import TlsCA
from tests.support.purge_support import SENTINEL_PASSWORD, configure_pop3
from tests.support.sauvegarde_support import RECOVERY, fill_box, flip, snapshot_of


def _files_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file())


def _archive(box: Box, dest: Path, **kwargs: object) -> Path:
    outcome = backup_service(box.ctx).backup(dest, **kwargs)  # type: ignore[arg-type]
    return Path(outcome.path)


def test_restore_on_another_box_same_data_chain_verified_secrets_work_nowhere_in_clear(
    box: Box, other_box: BaliseEnv, mailboxes: DovecotServer, tls_ca: TlsCA, tmp_path: Path
) -> None:
    configure_pop3(box.ctx, mailboxes, tls_ca)
    filled = fill_box(box)
    before = snapshot_of(box.ctx)
    made = box.env.run("backup", "--to", str(tmp_path / "out"))
    assert made.returncode == 0, made.stderr
    archive = next((tmp_path / "out").glob("*.sauvegarde"))
    head_a = box.ctx.journal.head()
    assert head_a is not None and head_a.kind == "backup.created"
    archived_head = json.loads(head_a.details)["journal_head_hash"]
    assert archived_head == head_a.prev_hash  # the archive holds the chain up to the backup

    restored = other_box.run("restore", str(archive), stdin=RECOVERY + "\n")
    assert restored.returncode == 0, restored.stderr
    verified = other_box.run("journal", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    shown = other_box.run("journal", "show").stdout
    assert "backup.restored" in shown and archived_head in shown

    ctx_b = open_context(other_box.home, actor="test", env=other_box.env)
    try:
        assert ctx_b.kek.fingerprint != box.ctx.kek.fingerprint
        assert snapshot_of(ctx_b) == before  # same lots, returns, payments, alerts, parameters
        restore_entry = ctx_b.journal.head()
        assert restore_entry is not None and restore_entry.prev_hash == archived_head
        # the secrets still work: the POP3 password logs in, the blob key stores the ARL
        mailboxes.deliver("bal1", ARL_POS_EML)
        purge = ctx_b.purge(env=other_box.env)
        try:
            report = purge.run_once("p1")
        finally:
            purge.close()
        assert (report.returns, report.deleted) == (1, 1)
        lot = ctx_b.lots.get(filled.sample_lot)
        assert lot is not None and lot.state is LotState.ACKNOWLEDGED
    finally:
        ctx_b.close()
    # ... and appear nowhere in clear: not on B, not in the archive, not in its decrypted payload
    secret = SENTINEL_PASSWORD.encode()
    assert secret not in _files_bytes(other_box.home)
    assert secret not in archive.read_bytes()
    handle, header = open_archive(archive)
    with handle:
        keys = unlock(archive, derive_master(RECOVERY, header.kdf)).keys
        payload = b"".join(payload_blocks(handle, header, keys))
    assert payload.startswith(b"SQLite format 3") and secret not in payload
    assert box.ctx.kek.key not in payload and box.ctx.kek.key not in archive.read_bytes()


def test_flipped_byte_anywhere_or_truncation_refused_before_writing(
    box: Box, other_box: BaliseEnv, tmp_path: Path
) -> None:
    fill_box(box)
    good = _archive(box, tmp_path / "out", chunk_size=4096)
    size = good.stat().st_size
    handle, header = open_archive(good)
    handle.close()
    offsets = [0, 9, 20, header.payload_offset - 40, header.payload_offset - 1]
    offsets += [header.payload_offset, header.payload_offset + 5000, size // 2, size - 17, size - 1]
    sleeps: list[float] = []
    for offset in offsets:
        bad = tmp_path / f"bad-{offset}.sauvegarde"
        bad.write_bytes(good.read_bytes())
        flip(bad, offset)
        with pytest.raises(BaliseError) as caught:
            restore_archive(
                bad, other_box.home, lambda: RECOVERY, env=other_box.env, sleep=sleeps.append
            )
        assert caught.value.code == "BACKUP_DAMAGED", (offset, caught.value)
        assert not other_box.home.exists(), offset  # nothing written, not even the data dir
    for name, data in (
        ("cut", good.read_bytes()[: size - 4096 - 16]),
        ("longer", good.read_bytes() + b"\0"),
        ("header-only", good.read_bytes()[: header.payload_offset]),
    ):
        bad = tmp_path / f"{name}.sauvegarde"
        bad.write_bytes(data)
        with pytest.raises(BaliseError) as caught:
            restore_archive(bad, other_box.home, lambda: RECOVERY, env=other_box.env)
        assert caught.value.code == "BACKUP_DAMAGED", name
        assert not other_box.home.exists()
    assert sleeps == []  # damage is never mistaken for a wrong passphrase
    # through the command: refused, nothing written; the intact archive still restores
    bad = tmp_path / "cli.sauvegarde"
    bad.write_bytes(good.read_bytes())
    flip(bad, size // 3)
    refused = other_box.run("restore", str(bad), stdin=RECOVERY + "\n")
    assert refused.returncode == 1 and "BACKUP_DAMAGED" in refused.stderr
    assert not other_box.home.exists()
    assert other_box.run("restore", str(good), stdin=RECOVERY + "\n").returncode == 0


def test_wrong_passphrase_refused_with_growing_delays_then_right_one_restores(
    box: Box, other_box: BaliseEnv, tmp_path: Path
) -> None:
    fill_box(box)
    archive = _archive(box, tmp_path / "out")
    # through the command: each wrong passphrase is counted durably, before its penalty is paid
    # (the penalties themselves are observed below through the injected sleep: no test times a
    # subprocess, a loaded CI machine would make that flaky)
    for failures in (1, 2):
        refused = other_box.run("restore", str(archive), stdin="pas la bonne phrase\n")
        assert refused.returncode == 1 and "BACKUP_WRONG_PASSPHRASE" in refused.stderr
        assert not (other_box.home / "balise.db").exists()
        state = json.loads((other_box.home / THROTTLE_FILE).read_text())
        assert state["failures"] == failures
    # in one process (a terminal allows three tries): the delays keep growing, durably
    sleeps: list[float] = []
    answers = iter(["encore faux", "toujours faux", RECOVERY])
    restore_archive(
        archive,
        other_box.home,
        lambda: next(answers),
        env=other_box.env,
        attempts=3,
        sleep=sleeps.append,
    )
    penalties = [s for s in sleeps if s in (4.0, 8.0)]
    assert penalties == [4.0, 8.0]
    assert not (other_box.home / THROTTLE_FILE).exists()  # success resets the counter
    assert other_box.run("journal", "verify").returncode == 0


def test_restore_refuses_a_box_holding_data_unless_forced(
    box: Box, balise_env: BaliseEnv, tmp_path: Path
) -> None:
    fill_box(box)
    archive = _archive(box, tmp_path / "out")
    refused = balise_env.run("restore", str(archive), stdin=RECOVERY + "\n")
    assert refused.returncode == 1 and "RESTORE_NOT_EMPTY" in refused.stderr
    forced = balise_env.run("restore", str(archive), "--force", stdin=RECOVERY + "\n")
    assert forced.returncode == 0, forced.stderr
    assert any(
        p.name.startswith("balise.db.avant-restauration-") for p in balise_env.home.iterdir()
    )
    assert balise_env.run("journal", "verify").returncode == 0


def test_verify_reports_the_manifest_without_restoring(
    box: Box, other_box: BaliseEnv, tmp_path: Path
) -> None:
    fill_box(box)
    archive = _archive(box, tmp_path / "out")
    own = box.env.run("backup", "verify", str(archive), "--json")  # the box's own key: no prompt
    assert own.returncode == 0, own.stderr
    manifest = json.loads(own.stdout)
    assert manifest["counts"]["lots"] == 8 and manifest["counts"]["journal"] > 300
    elsewhere = other_box.run("backup", "verify", str(archive), stdin=RECOVERY + "\n")
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert "archive intègre" in elsewhere.stdout and manifest["box_id"] in elsewhere.stdout
    assert not (other_box.home / "balise.db").exists()
    flip(archive, archive.stat().st_size - 3)
    damaged = box.env.run("backup", "verify", str(archive))
    assert damaged.returncode == 1 and "BACKUP_DAMAGED" in damaged.stderr


def test_backup_without_recovery_passphrase_is_refused(box: Box, tmp_path: Path) -> None:
    made = box.env.run("backup", "--to", str(tmp_path / "out"))
    assert made.returncode == 1 and "BACKUP_NO_PASSPHRASE" in made.stderr
    assert not list((tmp_path / "out").glob("*.sauvegarde"))
    assert box.ctx.journal.head().kind == "backup.failed"  # type: ignore[union-attr]
    # the agent's round fails once, then waits before retrying (no journal line per cycle)
    service = backup_service(box.ctx)
    assert [r.error_code for r in service.run_daily([tmp_path / "out"])] == ["BACKUP_NO_PASSPHRASE"]
    assert service.run_daily([tmp_path / "out"]) == []
    kinds = [e.kind for e in box.ctx.journal.entries()]
    assert kinds.count("backup.failed") == 2 and kinds.count("alert.raised") == 1


SLOW_BACKUP = """
import sys, time
from pathlib import Path
from balise.app.backup import backup_service
from balise.app.context import open_context
from tests.support.clock import TEST_NOW

ctx = open_context(Path(sys.argv[1]), actor="test")
def slow(index):
    print(f"chunk {index}", flush=True)
    time.sleep(0.2)
backup_service(ctx).backup(Path(sys.argv[2]), chunk_size=4096, on_chunk=slow)
"""


def test_sigkill_during_backup_leaves_no_half_archive(box: Box, tmp_path: Path) -> None:
    fill_box(box)
    dest = tmp_path / "usb"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_BACKUP, str(box.env.home), str(dest)],
        env=box.env.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for _ in range(3):
            assert proc.stdout.readline().startswith("chunk")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    left = [p.name for p in dest.iterdir()]
    assert left and all(name.startswith(".partiel-") for name in left)  # never a "whole" one
    assert not list(dest.glob("balise-*.sauvegarde"))
    # the next backup clears what the crash left and publishes a whole archive
    archive = _archive(box, dest)
    assert [p.name for p in dest.iterdir()] == [archive.name]
    assert box.env.run("backup", "verify", str(archive)).returncode == 0


def test_daily_round_keeps_newest_n_journals_each_and_alerts_when_too_old(
    box: Box, tmp_path: Path
) -> None:
    fill_box(box)
    service = backup_service(box.ctx)
    assert service.status().last_ok is None and service.status().too_old
    share, usb = tmp_path / "echange" / "sauvegardes", tmp_path / "usb"
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the key should be")
    for _ in range(3):
        results = service.run_daily([share, usb, blocked], keep=2, force=True)
        assert [r.ok for r in results] == [True, True, False]
    assert len(list(share.glob("*.sauvegarde"))) == 2 and len(list(usb.glob("*.sauvegarde"))) == 2
    kinds = [e.kind for e in box.ctx.journal.entries() if e.kind.startswith("backup.")]
    assert kinds.count("backup.created") == 6 and kinds.count("backup.failed") == 3
    status = service.status()
    assert status.age is not None and not status.too_old and "il y a" in status.words()
    assert service.run_daily([share], keep=2) == []  # less than a day old: nothing to do
    assert service.check_age() is None
    # three days later, nothing new: the kiosk shows it and one alert is raised
    later = open_context(
        box.env.home,
        actor="agent",
        env=box.env.env,
        clock=FixedClock(datetime.now(UTC) + timedelta(days=3)),  # after a real backup
    )
    try:
        late = backup_service(later)
        assert late.status().too_old and "TROP ANCIENNE" in late.status().words()
        alert_id = late.check_age()
        assert alert_id is not None and late.check_age() is None  # once, until acknowledged
        assert [a.kind for a in later.tracking().alerts()].count("backup_stale") == 1
        results = late.run_daily([share], keep=2)
        assert [r.ok for r in results] == [True]
        assert not late.status().too_old
    finally:
        later.close()


def test_usb_key_backup_counts_for_the_age_and_does_not_postpone_the_daily_round(
    box: Box, tmp_path: Path
) -> None:
    fill_box(box)
    key, share = tmp_path / "cle", tmp_path / "echange" / "sauvegardes"
    key.mkdir()
    (key / "photos.jpg").write_bytes(b"the secretary's own file")
    # What balise-usb-backup@.service runs as the balise user on the mounted BALISE-SAUV key.
    made = box.env.run("backup", "--to", str(key))
    assert made.returncode == 0, made.stderr
    [archive] = key.glob("balise-*.sauvegarde")
    assert archive.read_bytes()[:8] == b"BALSAV\x00\x01"  # sealed, never the SQLite file
    assert (key / "photos.jpg").exists()
    head = box.ctx.journal.head()
    assert head is not None and head.kind == "backup.created"
    assert json.loads(head.details)["dest"] == str(key)
    # The kiosk's Accueil reads this status: the key backup is the last good one.
    status = backup_service(box.ctx).status()
    assert status.age is not None and not status.too_old
    assert status.words() == "dernière sauvegarde réussie il y a moins d'une heure"
    # The agent's daily round to sauvegardes/ still happens: the share has never had one.
    results = backup_service(box.ctx).run_daily([share])
    assert [r.ok for r in results] == [True] and len(list(share.glob("*.sauvegarde"))) == 1
    assert backup_service(box.ctx).run_daily([share]) == []  # and then not before a day
    assert list(key.glob("*.sauvegarde")) == [archive]  # the round never writes to the key


def test_restore_passphrase_errors_do_not_leak_the_phrase(
    box: Box, other_box: BaliseEnv, tmp_path: Path
) -> None:
    fill_box(box)
    archive = _archive(box, tmp_path / "out")
    with pytest.raises(ValidationError) as caught:
        restore_archive(
            archive,
            other_box.home,
            lambda: "sentinelle-123456",
            env=other_box.env,
            sleep=lambda _: None,
        )
    assert "sentinelle" not in str(caught.value) + caught.value.en
    assert b"sentinelle" not in _files_bytes(other_box.home)
