"""Schema migrations across a self-update (issue 14), on a real on-disk database: a copy named
after the schema is taken before migrating; a migration that fails leaves the database as it was
and the boot's health check fails; an older version that boots a database a newer one migrated
puts its copy back, journals it and says it on Accueil's alerts, instead of refusing to start."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from balise.adapters import schema_copies
from balise.adapters import store as store_module
from balise.adapters.schema_copies import LEGACY_NAME, copy_path, known_names
from balise.adapters.store import DB_NAME, Store
from balise.app.update import check_health
from balise.domain.errors import IntegrityError
from tests.support.balise_env import BALISE, BaliseEnv
from tests.support.notify import Manager

REAL = known_names(store_module.migrations)


def schema_with(*extra: tuple[str, Callable[[Database], None]]) -> Migrations:
    """This version's migrations followed by ``extra`` (a newer version's, or a broken one)."""
    schema = Migrations("balise")
    for migration in store_module.migrations.pending(Database(memory=True)):
        schema(name=migration.name)(migration.fn)
    for name, fn in extra:
        schema(name=name)(fn)
    return schema


def _newer(db: Database) -> None:
    db.execute("CREATE TABLE update_test_newer (id INTEGER PRIMARY KEY, note TEXT NOT NULL)")
    db.execute("ALTER TABLE lots ADD COLUMN update_test TEXT")


def _broken(db: Database) -> None:
    db.execute("CREATE TABLE update_test_half (id INTEGER PRIMARY KEY)")
    db.execute("INSERT INTO update_test_half(id) VALUES (1)")
    db.execute("ALTER TABLE no_such_table ADD COLUMN x TEXT")  # fails half-way


def version_before() -> Migrations:
    """The migrations of the version before this one (all but its last, 0012_lot_blobs)."""
    schema = Migrations("balise")
    for migration in store_module.migrations.pending(Database(memory=True)):
        if migration.name != "0012_lot_blobs":
            schema(name=migration.name)(migration.fn)
    return schema


NEWER = ("9001_update_test_newer", _newer)
BROKEN = ("9002_update_test_broken", _broken)


def filled(balise_env: BaliseEnv) -> Path:
    """A box in service: parameters set (journaled), then closed."""
    for name, value in (("mode", "test"), ("arl_overdue_days", "5"), ("update_hold", "oui")):
        done = balise_env.run("params", "set", name, value)
        assert done.returncode == 0, done.stderr
    return balise_env.home / DB_NAME


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(str(path))
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def applied(path: Path) -> list[str]:
    conn = sqlite3.connect(str(path))
    try:
        rows = conn.execute("SELECT name FROM _sqlite_migrations ORDER BY rowid").fetchall()
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return [str(r[0]) for r in rows]
    finally:
        conn.close()


def test_a_copy_named_after_the_schema_is_taken_before_migrating(balise_env: BaliseEnv) -> None:
    db_path = filled(balise_env)
    before = dump(db_path)
    Store(balise_env.home, schema=schema_with(NEWER)).close()
    copy = copy_path(db_path, REAL[-1])
    assert copy.name == f"balise.db.schema-{REAL[-1]}"
    assert copy.stat().st_mode & 0o077 == 0
    # The copy is the database exactly as the migration found it; the database moved on.
    assert dump(copy) == before
    assert applied(copy) == REAL
    assert applied(db_path) == [*REAL, NEWER[0]]
    # The versions before schema_name look for it under LEGACY_NAME: the same file, linked.
    legacy = copy_path(db_path, LEGACY_NAME)
    assert legacy.stat().st_ino == copy.stat().st_ino
    # Opening again migrates nothing and copies nothing more.
    Store(balise_env.home, schema=schema_with(NEWER)).close()
    copies = sorted(p.name for p in db_path.parent.glob("balise.db.schema-*"))
    assert copies == sorted([copy.name, legacy.name])


def test_a_failing_migration_leaves_the_database_as_it_was_and_health_fails(
    balise_env: BaliseEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_path = filled(balise_env)
    before = dump(db_path)
    with pytest.raises(IntegrityError) as caught:
        Store(balise_env.home, schema=schema_with(NEWER, BROKEN))
    assert caught.value.code == "DB_MIGRATION"
    assert "la base est restée telle qu'elle était" in caught.value.fr
    # Not even the first of the two new migrations stayed: one transaction for all of them.
    assert dump(db_path) == before
    assert applied(db_path) == REAL
    assert copy_path(db_path, REAL[-1]).is_file()
    # The new version's health check fails in words (its store does not open)...
    monkeypatch.setattr(store_module, "migrations", schema_with(NEWER, BROKEN))
    report = check_health(balise_env.home, env=balise_env.env)
    assert not report.ok
    assert "a échoué" in report.checks[0].fr and report.checks[0].code == "database"
    # ...and the previous version boots on the database as it was.
    monkeypatch.undo()
    again = check_health(balise_env.home, env=balise_env.env)
    assert again.ok, again.checks
    assert applied(db_path) == REAL


def test_an_older_version_puts_back_its_copy_instead_of_refusing(
    balise_env: BaliseEnv, tmp_path: Path
) -> None:
    db_path = filled(balise_env)
    release = tmp_path / "os-release"
    release.write_text('IMAGE_ID=balise\nIMAGE_VERSION="2.0"\n', encoding="utf-8")
    env = dict(balise_env.env, BALISE_OS_RELEASE=str(release))
    recorded = balise_env.run("update", "record", "3.0", env=env)
    assert recorded.returncode == 0, recorded.stderr
    # Version 3.0 boots: its store migrates (after the copy), then it writes under its schema.
    newer = Store(balise_env.home, schema=schema_with(NEWER))
    with newer.write():
        newer.conn.execute("INSERT INTO update_test_newer(note) VALUES ('fait sous 3.0')")
    newer.close()
    # 3.0 fails its health check: the box is back on 2.0, whose health check opens the store.
    health = balise_env.run("update", "health", "--json", env=env)
    assert health.returncode == 0, health.stdout + health.stderr
    assert json.loads(health.stdout)["resolved"]["outcome"] == "rolled_back"
    assert applied(db_path) == REAL
    kept = list(db_path.parent.glob(f"balise.db.newer-schema-{NEWER[0]}.*"))
    assert len(kept) == 1 and applied(kept[0]) == [*REAL, NEWER[0]]
    conn = sqlite3.connect(str(kept[0]))
    try:
        assert conn.execute("SELECT note FROM update_test_newer").fetchall() == [("fait sous 3.0",)]
    finally:
        conn.close()
    ctx = balise_env.context()
    try:
        alerts = {a.kind: a.fr for a in ctx.returns_store.alerts()}
        assert alerts["update.rolled_back"] == "Mise à jour annulée, version 2.0 conservée."
        assert f"schéma {REAL[-1]}" in alerts["database.restored"]
        assert kept[0].name in alerts["database.restored"]
        kinds = [e.kind for e in ctx.journal.entries()]
        assert "database.restored" in kinds and kinds[-1] == "alert.raised"
        assert ctx.journal.verify(full=True).ok
        assert ctx.params.get("update_hold") == "oui"  # the parameters carried over
    finally:
        ctx.close()
    # Restored once: the next process opens the database as it is now.
    assert balise_env.run("update", "health", env=env).returncode == 0
    ctx = balise_env.context()
    try:
        restored = [e for e in ctx.journal.entries() if e.kind == "database.restored"]
        assert len(restored) == 1
    finally:
        ctx.close()


def test_processes_opening_at_once_migrate_once_from_one_copy(
    balise_env: BaliseEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kiosk, agent and health check start together after an update: one of them copies and
    migrates, the others wait for it and find nothing left to do."""
    monkeypatch.setattr(store_module, "migrations", version_before())
    ctx = balise_env.context()
    try:
        ctx.params.set("arl_overdue_days", "5")
    finally:
        ctx.close()
    monkeypatch.undo()
    db_path = balise_env.home / DB_NAME
    assert applied(db_path) == REAL[:-1]
    procs = [
        subprocess.Popen(
            [BALISE, "update", "health", "--json"],
            env=balise_env.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out + err
    assert applied(db_path) == REAL
    copies = sorted(p.name for p in db_path.parent.glob("balise.db.schema-*"))
    assert copies == sorted([copy_path(db_path, n).name for n in (REAL[-2], LEGACY_NAME)])
    assert applied(copy_path(db_path, REAL[-2])) == REAL[:-1]


def test_a_box_updated_before_still_gets_its_copy_back(
    balise_env: BaliseEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A box in service for years: its database was made by an older version and migrated at an
    update since (its migrations recorded in the order they ran, not in this version's order).
    At the next update the newer version copies it; when that update fails, this version must
    find the copy and put it back — not run on a schema it does not know."""
    monkeypatch.setattr(store_module, "migrations", version_before())
    balise_env.context().close()  # the box as the version before made it
    monkeypatch.undo()
    db_path = filled(balise_env)  # this version opens it: 0012 runs, after the others
    history = applied(db_path)
    assert sorted(history) == sorted(REAL) and history[-1] == "0012_lot_blobs"
    newer = Store(balise_env.home, schema=schema_with(NEWER))
    with newer.write():
        newer.conn.execute("INSERT INTO update_test_newer(note) VALUES ('fait sous 3.0')")
    newer.close()
    # The newer version failed: this one boots again on the database the newer one migrated.
    back = Store(balise_env.home)
    try:
        assert back.restored is not None
        assert NEWER[0] not in [m.name for m in store_module.migrations.applied(back.db)]
        assert "update_test_newer" not in back.db.table_names()
    finally:
        back.close()
    assert applied(db_path) == history
    kept = list(db_path.parent.glob(f"balise.db.newer-schema-{NEWER[0]}.*"))
    assert len(kept) == 1 and applied(kept[0]) == [*history, NEWER[0]]


def test_the_migrations_are_the_same_whatever_a_process_imported() -> None:
    """A process that opens the store having imported nothing else (a technician's one-off
    command, a helper) must know every migration: one it did not know would be taken for a newer
    version's, and the copy from before the last update put back over the live database."""
    alone = subprocess.run(
        [
            sys.executable,
            "-c",
            "from balise.adapters.store import migrations\n"
            "from balise.adapters.schema_copies import known_names\n"
            "print('\\n'.join(known_names(migrations)))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert alone.stdout.split() == REAL


def agent_says(balise_env: BaliseEnv, socket_path: Path) -> list[str]:
    """What one cycle of `balise agent` says to systemd (NOTIFY_SOCKET at ``socket_path``)."""
    manager = Manager(str(socket_path))
    try:
        env = {**balise_env.env, "NOTIFY_SOCKET": manager.path}
        balise_env.run("agent", "--once", "--interval-scale", "0.01", env=env)
    finally:
        said = manager.close()
    return said


def test_the_agent_tells_systemd_its_start_goes_on_while_it_migrates(
    balise_env: BaliseEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The first start after an update copies and migrates the database: minutes on a ten-year
    database and an SD card, longer than balise-agent.service's TimeoutStartSec, which would kill
    it half-way (and the next start would begin again). The agent says EXTEND_TIMEOUT_USEC= with
    what it is doing while it copies and migrates, and READY=1 only after (NOTIFY_SOCKET: a
    real datagram socket standing for systemd's)."""
    monkeypatch.setattr(store_module, "migrations", version_before())
    balise_env.context().close()  # the database as the version before the update left it
    monkeypatch.undo()
    said = agent_says(balise_env, tmp_path / "notify")
    assert applied(balise_env.home / DB_NAME)[-1] == "0012_lot_blobs"  # migrated by the agent
    ready = next(i for i, d in enumerate(said) if d.startswith("READY=1"))
    extended = [i for i, d in enumerate(said) if d.startswith("EXTEND_TIMEOUT_USEC=")]
    assert extended and max(extended) < ready, said
    assert said[extended[0]] == (
        "EXTEND_TIMEOUT_USEC=300000000\n"
        "STATUS=préparation de la base de données (mise à jour) : ne pas éteindre"
    )
    # A start with nothing to migrate says nothing of the kind.
    said = agent_says(balise_env, tmp_path / "notify-again")
    assert any(d.startswith("READY=1") for d in said)
    assert not any(d.startswith("EXTEND_TIMEOUT_USEC=") for d in said), said


class Preparing(threading.Thread):
    """Another process preparing the database (its schema lock held, flock on a descriptor of
    its own) for ``seconds``; ``writing``: its copy growing meanwhile, as a real copy does."""

    def __init__(self, home: Path, seconds: float, *, writing: bool) -> None:
        super().__init__(daemon=True)
        self.home, self.seconds, self.writing = home, seconds, writing
        self.holding = threading.Event()

    def run(self) -> None:
        fd = os.open(self.home / f"{DB_NAME}.schema.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.holding.set()
            copy = self.home / f"{DB_NAME}.schema-0011_journal_by_subject.tmp"
            end = time.monotonic() + self.seconds
            while time.monotonic() < end:
                if self.writing:
                    with copy.open("ab") as out:
                        out.write(b"\0" * 4096)
                time.sleep(0.05)
            copy.unlink(missing_ok=True)
        finally:
            os.close(fd)


def test_a_process_waits_for_another_preparing_the_database_while_it_progresses(
    balise_env: BaliseEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kiosk and agent start together after an update on a large database: the one that waits
    keeps waiting as long as the other's copy and migration make progress, even past the time
    it would wait for one that is silent (here made 0.4 s; the box: 5 min)."""
    balise_env.context().close()
    monkeypatch.setattr(schema_copies, "LOCK_SILENCE_S", 0.4)
    other = Preparing(balise_env.home, 2.0, writing=True)
    other.start()
    assert other.holding.wait(10)
    waited = time.monotonic()
    said: list[float] = []
    Store(balise_env.home, busy=lambda: said.append(time.monotonic())).close()  # no error
    assert time.monotonic() - waited >= 1.5  # it waited until the other was done
    assert said and said[0] - waited >= 0.9  # and said it was busy, after the first second
    other.join(10)
    # A lock held a moment (every start takes it; nothing to migrate) is not "busy" (Accueil would
    # say the database is being prepared).
    brief = Preparing(balise_env.home, 0.3, writing=False)
    brief.start()
    assert brief.holding.wait(10)
    said.clear()
    Store(balise_env.home, busy=lambda: said.append(time.monotonic())).close()
    assert said == []
    brief.join(10)
    # One that holds the lock and does nothing is given up after the silence, in words.
    silent = Preparing(balise_env.home, 5.0, writing=False)
    silent.start()
    assert silent.holding.wait(10)
    waited = time.monotonic()
    with pytest.raises(IntegrityError) as caught:
        Store(balise_env.home)
    assert time.monotonic() - waited < 3.0
    assert caught.value.code == "DB_MIGRATION" and "depuis trop longtemps" in caught.value.fr
    silent.join(10)


def test_a_file_system_refusing_the_link_does_not_stop_the_migration(
    balise_env: BaliseEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link under LEGACY_NAME only serves a rollback to a version from before schema_name:
    when the file system refuses it (a fake for that refusal: ext4 and tmpfs make links), the
    copy is still taken and the database still migrated."""
    db_path = filled(balise_env)

    def refused(_src: object, _dst: object) -> None:
        raise PermissionError("links not allowed here")

    monkeypatch.setattr(os, "link", refused)
    Store(balise_env.home, schema=schema_with(NEWER)).close()
    assert applied(db_path) == [*REAL, NEWER[0]]
    copies = sorted(p.name for p in db_path.parent.glob("balise.db.schema-*"))
    assert copies == [copy_path(db_path, REAL[-1]).name]
