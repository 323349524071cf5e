"""Backups never destroy themselves: pruning removes only archives proved to be this box's (their
authenticated manifest: box identity and creation date), oldest first by that date, never the one
just written; future-dated archives are ignored and alerted; other files are left alone. A full
disk fails closed: no archive recorded as made, no partial file, nothing older pruned."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from balise.adapters.archive import MAGIC
from balise.adapters.backup_db import box_id
from balise.adapters.kek import create_key_file
from balise.app.backup import backup_service
from balise.app.context import open_context
from balise.domain.journal import JournalEntry
from balise.sim.pki import TestPKI
from tests.support.balise_env import BaliseEnv
from tests.support.box import Box, SyncedClock, configure_box
from tests.support.clock import TEST_NOW, fixed_clock
from tests.support.mail_corpus import NOEMIE
from tests.support.sauvegarde_support import RECOVERY, flip, record_return
from tests.support.small_fs import SmallFs


def _made_at(env: BaliseEnv, dest: Path, when: datetime) -> Path:
    """One archive of the box in ``env`` made by a box whose clock says ``when``."""
    ctx = open_context(env.home, actor="test", env=env.env, clock=fixed_clock(when - TEST_NOW))
    try:
        return Path(backup_service(ctx).backup(dest, keep=100).path)
    finally:
        ctx.close()


def _last_backup_entry(box: Box) -> JournalEntry:
    return [e for e in box.ctx.journal.entries() if e.kind.startswith("backup.")][-1]


def _names(dest: Path) -> set[str]:
    return {p.name for p in dest.iterdir()}


def test_planted_and_future_archives_never_make_the_box_delete_its_own(
    box: Box, other_box: BaliseEnv, tmp_path: Path
) -> None:
    box.ctx.params.set("recovery_passphrase", RECOVERY)
    box.ctx.params.set("backup_keep", "2")
    ident = box_id(box.ctx.store)
    key = tmp_path / "cle"  # the BALISE-SAUV key, where anyone may have put anything
    real = [_made_at(box.env, key, TEST_NOW - timedelta(days=d)) for d in (3, 2, 1)]
    # yesterday's archive, renamed as if made in 2000: its manifest, not its name, dates it
    renamed = key / f"balise-{ident}-20000101T000000000000Z.sauvegarde"
    real[2].rename(renamed)
    # this box's own archive from a clock ten years ahead (a wrong clock once)
    future = _made_at(box.env, key, TEST_NOW + timedelta(days=3650))
    # planted: names of this box, far in the future, but not its archives
    junk = key / f"balise-{ident}-20990101T000000000000Z.sauvegarde"
    junk.write_bytes(MAGIC + os.urandom(4096))
    damaged = key / f"balise-{ident}-20980101T000000000000Z.sauvegarde"
    damaged.write_bytes(real[1].read_bytes())
    flip(damaged, 30)  # a copy whose header was changed: nothing proves it is this box's any more
    other = open_context(other_box.home, actor="test", env=other_box.env, clock=fixed_clock())
    try:
        other.params.set("recovery_passphrase", RECOVERY)  # even the same phrase
        theirs = Path(backup_service(other).backup(tmp_path / "autre").path)
    finally:
        other.close()
    impostor = key / f"balise-{ident}-20970101T000000000000Z.sauvegarde"
    theirs.rename(impostor)
    (key / "photos.jpg").write_bytes(b"the secretary's own file")
    before = _names(key)

    made = box.env.run("backup", "--to", str(key))
    assert made.returncode == 0, made.stdout + made.stderr
    [new] = _names(key) - before
    assert box.env.run("backup", "verify", str(key / new)).returncode == 0
    # newest two of this box by manifest date: the new one and yesterday's (renamed); the two
    # older ones pruned; everything unproved or future-dated left alone
    assert _names(key) == {new, renamed.name, future.name} | {
        junk.name,
        damaged.name,
        impostor.name,
        "photos.jpg",
    }
    last = _last_backup_entry(box)
    assert last.kind == "backup.created"
    assert sorted(json.loads(last.details)["pruned"]) == sorted(p.name for p in real[:2])
    status = backup_service(box.ctx).status()
    assert status.last_ok is not None and status.age is not None and not status.too_old
    alerts = [a for a in box.ctx.tracking().alerts() if a.kind == "backup_future"]
    assert len(alerts) == 1 and "dans le futur" in alerts[0].fr and future.name in alerts[0].fr
    # a second backup: the same future archive raises no second alert while the first is open
    assert box.env.run("backup", "--to", str(key)).returncode == 0
    assert [a.kind for a in box.ctx.tracking().alerts()].count("backup_future") == 1
    assert future.exists() and junk.exists() and impostor.exists() and damaged.exists()


def test_a_full_backup_key_fails_closed_and_says_disk_full(
    box: Box, small_fs: Callable[[int], SmallFs]
) -> None:
    box.ctx.params.set("recovery_passphrase", RECOVERY)
    fs = small_fs(4096)
    key = fs.root
    older = [_made_at(box.env, key, TEST_NOW - timedelta(days=d)) for d in (2, 1)]
    kept = {p.name: p.read_bytes() for p in older}
    last_ok = backup_service(box.ctx).status().last_ok
    fs.fill()

    full = box.env.run("backup", "--to", str(key))
    assert full.returncode != 0 and "Disque plein" in full.stderr, full.stdout + full.stderr
    assert "Traceback" not in full.stderr
    # no half archive, nothing older pruned, not counted as a backup made
    assert {p.name for p in key.iterdir() if p.name != ".remplissage"} == set(kept)
    assert all((key / name).read_bytes() == data for name, data in kept.items())
    assert backup_service(box.ctx).status().last_ok == last_ok
    last = _last_backup_entry(box)
    assert last.kind == "backup.failed" and json.loads(last.details)["code"] == "DISK_FULL"
    alerts = [a for a in box.ctx.tracking().alerts() if a.kind == "disk_full"]
    assert len(alerts) == 1 and alerts[0].fr.startswith("Disque plein") and str(key) in alerts[0].fr

    fs.free()
    again = box.env.run("backup", "--to", str(key))
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(list(key.glob("*.sauvegarde"))) == 3


def test_a_full_data_disk_fails_the_backup_closed(
    pki: TestPKI, small_fs: Callable[[int], SmallFs], tmp_path: Path
) -> None:
    """The snapshot is made in the data dir before it is sealed: when that disk is full the
    backup fails, says so, leaves nothing behind and prunes nothing. (A context stays open, as
    the agent's does: on a full disk SQLite could not even create its shared-memory file.)"""
    fs = small_fs(32 * 1024)
    kek = tmp_path / "balise.kek"
    create_key_file(kek)
    env = BaliseEnv(fs.root / "data", kek)
    ctx = open_context(env.home, actor="test", env=env.env, clock=SyncedClock())
    try:
        configure_box(ctx, pki)
        ctx.params.set("recovery_passphrase", RECOVERY)
        out = tmp_path / "out"
        older = [_made_at(env, out, TEST_NOW - timedelta(days=d)) for d in (2, 1)]
        fs.fill()

        full = env.run("backup", "--to", str(out))
        assert full.returncode != 0 and "Disque plein" in full.stderr, full.stdout + full.stderr
        assert "Traceback" not in full.stderr
        assert sorted(out.iterdir()) == sorted(older)
        assert not [p for p in env.home.iterdir() if p.name.startswith(".sauvegarde-")]

        fs.free()
        assert env.run("backup", "--to", str(out)).returncode == 0
        assert len(list(out.glob("*.sauvegarde"))) == 3
    finally:
        ctx.close()


def test_archives_beyond_the_backup_quota_are_pruned_with_an_alert(
    box: Box, tmp_path: Path
) -> None:
    box.ctx.params.set("recovery_passphrase", RECOVERY)
    # about 1.5 MiB of returns' mail, stored encrypted (archives compress, ciphertext does not),
    # so that three archives need more than the 4 MiB quota
    for number in range(3):
        raw = os.urandom(500 * 1024)
        record_return(box.ctx, box.env.env, NOEMIE, f"gros-{number}", raw=raw)
    assert box.env.run("params", "set", "backup_quota_mib", "4").returncode == 0
    dest = tmp_path / "sauvegardes"
    made = [_made_at(box.env, dest, TEST_NOW - timedelta(days=d)) for d in (2, 1)]
    size = made[0].stat().st_size
    assert 1.4 * 2**20 < size < 2 * 2**20, size

    result = box.env.run("backup", "--to", str(dest))  # backup_keep: 7 by default
    assert result.returncode == 0, result.stdout + result.stderr
    archives = sorted(dest.glob("*.sauvegarde"))
    assert len(archives) == 2 and made[1] in archives and made[0] not in archives
    alerts = [a for a in box.ctx.tracking().alerts() if a.kind == "backup_quota"]
    assert len(alerts) == 1 and "Quota des sauvegardes" in alerts[0].fr
