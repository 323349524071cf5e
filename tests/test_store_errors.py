"""The database failing under the box is said in words, never a traceback: the store adapter turns
SQLite's failures into the domain's errors (decided on SQLite's result code), so the command line
prints the French (or English) words with the code, its --json error object carries them, and the
kiosk shows them where the action was asked. Each failure is provoked for real: another
connection holding the write lock, a file that is not a database, the data dir on a file system
remounted read-only (a tmpfs: root only, as tests/support/small_fs.py says). Only the busy timeout
is shortened (30 s on a box) so that a test does not wait for it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from balise.adapters.kek import create_key_file
from balise.adapters.locks import send_lock
from balise.domain.codes import GeneralCode, StoreCode
from balise.domain.errors import BaliseError, DatabaseLocked, FileSystemError
from balise.ui.app import BaliseApp
from balise.ui.screens.params_edit import ParamDialog, ParamEditScreen
from balise.ui.screens.technician import TechnicianScreen
from tests.support.balise_env import BaliseEnv
from tests.support.bounded_wait import until
from tests.support.kiosk_support import Kiosk
from tests.support.small_fs import SmallFs

LOCKED_FR = "base de données occupée par un autre traitement de la boîte"
LOCKED_EN = "database busy with another task of the box"
# The real command in its own process, the busy timeout shortened before anything opens.
SHORT_WAIT = (
    "import sys, balise.adapters.store as store; store.BUSY_TIMEOUT_MS = 200; "
    "from balise.cli import main; raise SystemExit(main(sys.argv[1:]))"
)


@contextmanager
def write_lock(db: Path) -> Iterator[None]:
    """Another process's connection holding the database's write lock (BEGIN IMMEDIATE)."""
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


def _impatient(env: BaliseEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SHORT_WAIT, *args],
        capture_output=True,
        text=True,
        env=env.env,
        timeout=60,
        check=False,
    )


def _said(run: subprocess.CompletedProcess[str], code: str, words: str) -> None:
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert f"erreur : {words}" in run.stderr and f"[{code}]" in run.stderr, run.stderr


def test_a_database_locked_by_another_process_is_said_and_nothing_is_lost(
    balise_env: BaliseEnv,
) -> None:
    assert balise_env.run("params", "set", "mode", "demo").returncode == 0
    db = balise_env.home / "balise.db"

    with write_lock(db):
        refused = _impatient(balise_env, "params", "set", "mode", "production", "--json")
        en_env = {**balise_env.env, "BALISE_LANG": "en"}  # the same box, in English
        en = subprocess.run(
            [sys.executable, "-c", SHORT_WAIT, "params", "set", "mode", "production"],
            capture_output=True,
            text=True,
            env=en_env,
            timeout=60,
            check=False,
        )

    _said(refused, "DB_LOCKED", LOCKED_FR)
    error = json.loads(refused.stdout)["error"]
    assert error["code"] == "DB_LOCKED" and error["fr"].startswith(LOCKED_FR)
    assert error["en"].startswith(LOCKED_EN) and "réessayez" in error["fr"]
    assert en.returncode == 1 and f"error: {LOCKED_EN}" in en.stderr and "[DB_LOCKED]" in en.stderr
    # The lock released, the same command goes through: nothing was half-written.
    assert balise_env.run("params", "set", "mode", "production").returncode == 0
    assert balise_env.run("params", "get", "mode").stdout.strip().endswith("production")
    assert balise_env.run("journal", "verify").returncode == 0


def test_the_store_raises_the_domain_error_with_its_code(balise_env: BaliseEnv) -> None:
    ctx = balise_env.context()
    try:
        ctx.store.conn.execute("PRAGMA busy_timeout=100")
        with write_lock(balise_env.home / "balise.db"), pytest.raises(DatabaseLocked) as held:
            ctx.params.set("mode", "production")
        assert held.value.code is StoreCode.DB_LOCKED
        assert isinstance(held.value.__cause__, sqlite3.OperationalError)  # kept for a developer
        ctx.params.set("mode", "production")  # the connection is usable again
        assert ctx.params.get("mode") == "production"
    finally:
        ctx.close()


def test_a_file_that_is_not_a_database_is_said_damaged(balise_env: BaliseEnv) -> None:
    assert balise_env.run("params", "set", "mode", "demo").returncode == 0
    db = balise_env.home / "balise.db"
    for leftover in (db.with_name("balise.db-wal"), db.with_name("balise.db-shm")):
        leftover.unlink(missing_ok=True)
    db.write_bytes(b"pas une base SQLite\n" * 500)

    run = balise_env.run("params", "list", "--json")

    _said(run, "DB_CORRUPT", "la base de données de la boîte est endommagée")
    assert "restauration de la dernière sauvegarde" in run.stderr
    assert json.loads(run.stdout)["error"]["code"] == "DB_CORRUPT"


def test_a_read_only_data_disk_is_said(small_fs: Callable[[int], SmallFs], tmp_path: Path) -> None:
    fs = small_fs(16 * 1024)
    kek = tmp_path / "balise.kek"
    create_key_file(kek)
    env = BaliseEnv(fs.root / "data", kek)
    assert env.run("params", "set", "mode", "demo").returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(fs.root)], check=True, timeout=30)

    for args in (("params", "set", "mode", "production"), ("params", "list")):
        run = env.run(*args)
        _said(run, "DB_READONLY", "la base de données ne peut pas être écrite")
        assert "lecture seule" in run.stderr


def test_a_lock_the_disk_refuses_is_said_not_raised_as_a_system_error(
    balise_env: BaliseEnv, small_fs: Callable[[int], SmallFs]
) -> None:
    """The cross-process locks (purge, send) are files: a disk that refuses one is said in words
    with the file, never an OSError's repr."""
    ctx = balise_env.context()
    try:
        (balise_env.home / "locks" / "purge-p1.lock").mkdir(parents=True)  # a folder in its way
        with pytest.raises(FileSystemError) as refused, ctx.returns_store.lock("p1"):
            pass
    finally:
        ctx.close()
    assert refused.value.code is GeneralCode.OS_ERROR
    assert refused.value.fr.startswith("verrou ") and refused.value.fr.endswith(": est un dossier")
    assert refused.value.en.endswith(": Is a directory") and "purge-p1.lock" in refused.value.en
    fs = small_fs(1024)
    subprocess.run(["mount", "-o", "remount,ro", str(fs.root)], check=True, timeout=30)
    with pytest.raises(BaliseError) as read_only, send_lock(fs.root / "locks")("p1"):
        pass
    assert read_only.value.code == "OS_ERROR"
    assert read_only.value.fr.endswith("système de fichiers en lecture seule")


PASSPHRASE = "phrase de passe du technicien"


async def _parameter_dialog(pilot: Pilot[None], app: BaliseApp, name: str) -> ParamDialog:
    """Technician mode, Paramètres, M, practitioner p1, then the line of ``name``."""
    await pilot.press("t")
    await until(pilot, lambda: app.screen.query("#passphrase").first(Input).disabled is False)
    await pilot.press(*PASSPHRASE, "enter")
    await until(pilot, lambda: isinstance(app.screen, TechnicianScreen))
    tech = app.screen
    assert isinstance(tech, TechnicianScreen)
    await pilot.press("p")
    await until(pilot, lambda: "M : modifier" in tech.content_text)
    await pilot.press("m")
    await until(pilot, lambda: isinstance(app.screen, ParamEditScreen))
    screen = app.screen
    assert isinstance(screen, ParamEditScreen)
    for words in ("Praticien p1", f"({name})"):
        await until(pilot, lambda words=words: words in screen.list_text)  # type: ignore[misc]
        lines = screen.list_text.splitlines()
        index = next(i for i, line in enumerate(lines) if words in line)
        await pilot.press("home", *["down"] * index, "enter")
    await until(pilot, lambda: isinstance(app.screen, ParamDialog))
    dialog = app.screen
    assert isinstance(dialog, ParamDialog)
    await until(pilot, lambda: dialog.query_one("#param-value", Input).has_focus)
    return dialog


@pytest.mark.softhsm
async def test_the_kiosk_says_a_locked_database_in_french(kiosk: Kiosk) -> None:
    kiosk.backend.set_passphrase(PASSPHRASE)
    kiosk.backend.technician_left()
    kiosk.box.ctx.store.conn.execute("PRAGMA busy_timeout=200")  # the kiosk's own connection
    app = kiosk.app()
    async with app.run_test(size=(110, 40)) as pilot:
        dialog = await _parameter_dialog(pilot, app, "smtp.port")
        with write_lock(kiosk.box.ctx.store.path):
            await pilot.press("end", "ctrl+u", *"587", "enter")
            await until(pilot, lambda: LOCKED_FR in dialog.error_text)
        assert "Refusé" in dialog.error_text and "réessayez dans un moment" in dialog.error_text
        assert app.screen is dialog  # still open, the value typed kept to try again
        assert dialog.query_one("#param-value", Input).value == "587"
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is not dialog)
    assert kiosk.box.ctx.params.get("smtp.port", profile="p1") == 587
