"""Intake always makes progress: whatever lies in depot/new (an unreadable file, a link, a folder,
a named pipe, a huge file, a name too long for its report), it is taken or set aside with its
reason, and the files behind it are taken; nothing is ever followed through a link."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from balise.adapters.kek import create_key_file
from balise.app.context import Context, open_context
from balise.sim.pki import TestPKI
from tests.support.balise_env import BALISE, BaliseEnv
from tests.support.box import Box, SyncedClock, configure_box
from tests.support.clock import TEST_NOW, TEST_TODAY
from tests.support.lot_corpus import valid_lot
from tests.support.small_fs import SmallFs

# A generous safety net for a subprocess, not a speed target.
SAFETY_TIMEOUT_S = 300
# The intake may hold one lot-sized read (8 MiB + 1) at a time: a heap limit far below the size
# of one huge file proves it never reads one whole.
DATA_LIMIT = 256 * 1024 * 1024
HUGE = 1024 * 1024 * 1024  # sparse: no disk space used
SENTINEL = b"SECRET-DU-CABINET-NE-DOIT-JAMAIS-ETRE-LU"


def _drop(exchange_root: Path, name: str, data: bytes, mtime_ns: int | None = None) -> Path:
    """As the practice software does: write in depot/tmp, then rename into depot/new."""
    tmp = exchange_root / "depot" / "tmp" / name
    tmp.write_bytes(data)
    target = exchange_root / "depot" / "new" / name
    tmp.rename(target)
    if mtime_ns is not None:
        os.utime(target, ns=(mtime_ns, mtime_ns))
    return target


def _intake(env: dict[str, str], *prefix: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, BALISE, "intake", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=SAFETY_TIMEOUT_S,
        check=False,
    )


def _data_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.iterdir() if p.is_file())


def test_a_depot_of_500_mixed_files_is_drained_without_following_links(
    box: Box, tmp_path: Path
) -> None:
    exchange = box.ctx.exchange(box.env.env)
    outside = tmp_path / "ailleurs"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_bytes(SENTINEL * 64)
    lot_outside = outside / "lot-hors-depot.lot"
    lot_outside.write_bytes(valid_lot(TEST_TODAY, lot_number=999))
    # Oldest first: every bad entry is older than every good one, as if it had always been there.
    kinds = ["fifo"] * 20 + ["dossier"] * 20 + ["lien-secret"] * 10 + ["lien-lot"] * 10
    kinds += ["enorme"] * 10 + ["bon"] * 430
    base_ns = int(TEST_NOW.timestamp()) * 10**9 - 10**12
    valid_hashes: set[str] = set()
    for index, kind in enumerate(kinds):
        name = f"{index:03d}-{kind}.lot"
        target = exchange.new / name
        if kind == "bon":
            data = valid_lot(TEST_TODAY, lot_number=len(valid_hashes) + 1)
            valid_hashes.add(hashlib.sha256(data).hexdigest())
            _drop(exchange.root, name, data)
        elif kind == "fifo":
            os.mkfifo(target)
        elif kind == "dossier":
            target.mkdir()
            (target / "dedans.lot").write_bytes(valid_lot(TEST_TODAY, lot_number=998))
        elif kind == "lien-secret":
            target.symlink_to(secret)
        elif kind == "lien-lot":
            target.symlink_to(lot_outside)
        else:
            with target.open("wb") as out:
                out.truncate(HUGE)
        os.utime(target, ns=(base_ns + index, base_ns + index), follow_symlinks=False)
    assert len(os.listdir(exchange.new)) == 500

    env = {**box.env.env, "PYTHONDONTWRITEBYTECODE": "1"}
    outputs = []
    for _ in range(2):  # at most two runs
        result = _intake(env, "prlimit", f"--data={DATA_LIMIT}")
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        outputs.append(result.stdout)
        if not os.listdir(exchange.new):
            break
    assert os.listdir(exchange.new) == []

    listed = json.loads(box.env.run("lots", "list", "--json").stdout)
    assert {lot["sha256"] for lot in listed["lots"]} == valid_hashes
    assert all(lot["state"] == "ready" for lot in listed["lots"])
    assert not {"998", "999"} & {lot["lot_number"] for lot in listed["lots"]}  # never followed

    aside = exchange.root / "depot" / "ecartes"
    reports = exchange.retours / "refus"
    expected = {"fifo": "DEPOT_NOT_A_FILE", "dossier": "DEPOT_NOT_A_FILE"}
    expected |= {"lien-secret": "DEPOT_SYMLINK", "lien-lot": "DEPOT_SYMLINK"}
    expected |= {"enorme": "LOT_FILE_TOO_LARGE"}
    for index, kind in enumerate(kinds):
        if kind == "bon":
            continue
        name = f"{index:03d}-{kind}.lot"
        kept = os.lstat(aside / name)  # moved aside whole, as it was: never deleted
        if kind == "fifo":
            assert stat.S_ISFIFO(kept.st_mode)
        elif kind == "dossier":
            assert (aside / name / "dedans.lot").is_file()
        elif kind.startswith("lien"):
            target = secret if kind == "lien-secret" else lot_outside
            assert os.readlink(aside / name) == str(target)
        else:
            assert stat.S_ISREG(kept.st_mode) and kept.st_size == HUGE
            assert f"{HUGE} octets" in (reports / f"{name}.txt").read_text()  # its real size
        report = (reports / f"{name}.txt").read_text()
        assert expected[kind] in report and "Fichier refusé" in report, name
    assert "lien symbolique" in (reports / "050-lien-lot.lot.txt").read_text()
    printed = "".join(outputs)
    assert printed.count("ÉCARTÉ") == 70 and printed.count("ACCEPTÉ") == 430
    # the secret and the lot outside are where they were, and nothing of the secret came in
    assert secret.read_bytes() == SENTINEL * 64 and lot_outside.exists()
    assert SENTINEL not in _data_bytes(box.env.home)
    assert not any(SENTINEL in p.read_bytes() for p in exchange.retours.rglob("*") if p.is_file())
    # huge files: refused by their real size, and none of their bytes kept in the store
    huge = [q for q in listed["quarantine"] if "LOT_FILE_TOO_LARGE" in str(q["problems"])]
    assert len(huge) == 10 and all(q["size"] == HUGE for q in huge)
    assert sum(p.stat().st_size for p in box.env.home.iterdir() if p.is_file()) < 32 * 2**20
    # one alert for what was set aside, not seventy
    alerts = [a for a in box.ctx.tracking().alerts() if a.kind == "depot_set_aside"]
    assert len(alerts) == 1 and "mis de côté" in alerts[0].fr


UID = 64123  # no account: the exchange account as seen by the kernel, nothing else


@pytest.fixture
def box_for_uid(pki: TestPKI) -> Iterator[tuple[BaliseEnv, Context]]:
    """A configured box in a folder of its own under /tmp, removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("dropping capabilities and giving files away needs root (CI runs as root)")
    base = Path(tempfile.mkdtemp(prefix="balise-uid-", dir="/tmp"))
    try:
        base.chmod(0o755)
        kek = base / "balise.kek"
        create_key_file(kek)
        env = BaliseEnv(base / "data", kek)
        ctx = open_context(env.home, actor="test", env=env.env, clock=SyncedClock())
        try:
            configure_box(ctx, pki)
            ctx.exchange(env.env)
            yield env, ctx
        finally:
            ctx.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_lot_the_box_user_may_not_read_is_set_aside_and_the_next_one_is_taken(
    box_for_uid: tuple[BaliseEnv, Context],
) -> None:
    """The real case: the SFTP client made its file 0600. Tests run as root, for whom no mode
    bit is a barrier: the command runs as root without the capabilities that override file modes
    (setpriv drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH), bound by them as the box's balise
    user is; the file and the folder belong to another user id, as they would to the exchange
    account. (Running as another user id instead needs the checkout and its venv readable by
    that user, which a CI clone in a private folder is not.)"""
    env, ctx = box_for_uid
    exchange = ctx.exchange(env.env)
    base_ns = int(TEST_NOW.timestamp()) * 10**9 - 10**12
    locked = valid_lot(TEST_TODAY, lot_number=1)
    good = valid_lot(TEST_TODAY, lot_number=2)
    _drop(exchange.root, "a-verrouille.lot", locked, base_ns)
    _drop(exchange.root, "c-bon.lot", good, base_ns + 2)
    folder = exchange.new / "b-dossier.lot"  # root's folder: the box user may not move it away
    folder.mkdir()
    os.utime(folder, ns=(base_ns + 1, base_ns + 1))
    (exchange.new / "a-verrouille.lot").chmod(0o600)
    os.chown(exchange.new / "a-verrouille.lot", UID, UID)
    os.chown(folder, UID, UID)
    folder.chmod(0o700)  # the exchange account's own folder: the box may not even open it

    as_box = [
        "setpriv",
        "--inh-caps=-all",
        "--bounding-set=-dac_override,-dac_read_search",
        "--",
    ]
    result = _intake({**env.env, "PYTHONDONTWRITEBYTECODE": "1"}, *as_box)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ÉCARTÉ a-verrouille.lot" in result.stdout and "ACCEPTÉ c-bon.lot" in result.stdout
    assert exchange.pending() == []
    lots = ctx.lots.lots()
    assert [lot.sha256 for lot in lots] == [hashlib.sha256(good).hexdigest()]
    # the locked lot is not lost: set aside whole, with its reason for the practice software
    kept = exchange.root / "depot" / "ecartes" / "a-verrouille.lot"
    assert kept.read_bytes() == locked
    report = (exchange.retours / "refus" / "a-verrouille.lot.txt").read_text()
    assert "DEPOT_UNREADABLE" in report and "illisible" in report
    # the folder it may not move is renamed where intake no longer looks, with its reason too
    assert not folder.exists() and any(
        p.name.startswith(".ecarte-") and p.is_dir() for p in exchange.new.iterdir()
    )
    assert "DEPOT_NOT_A_FILE" in (exchange.retours / "refus" / "b-dossier.lot.txt").read_text()
    alerts = [a for a in ctx.tracking().alerts() if a.kind == "depot_set_aside"]
    assert len(alerts) == 1 and "a-verrouille.lot" in alerts[0].fr


def test_long_names_and_files_refused_before_never_block_the_depot(
    box: Box, tmp_path: Path
) -> None:
    exchange = box.ctx.exchange(box.env.env)
    base_ns = int(TEST_NOW.timestamp()) * 10**9 - 10**12
    not_a_lot = b"ceci n'est pas un lot\n"
    # refused once from a USB key; the practice software then drops the same file in the depot
    copy = tmp_path / "copie.lot"
    copy.write_bytes(not_a_lot)
    assert box.env.run("import", str(copy)).returncode != 0
    _drop(exchange.root, "copie.lot", not_a_lot, base_ns)
    # a legal name (247 bytes) whose report name would not be
    long_name = "€" * 81 + ".lot"
    _drop(exchange.root, long_name, not_a_lot + b"\n", base_ns + 1)
    good = valid_lot(TEST_TODAY, lot_number=3)
    _drop(exchange.root, "zz-bon.lot", good, base_ns + 2)

    result = box.env.run("intake", "--once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert exchange.pending() == []
    assert [lot.sha256 for lot in box.ctx.lots.lots()] == [hashlib.sha256(good).hexdigest()]
    refus = exchange.retours / "refus"
    assert "LOT_" in (refus / "copie.lot.txt").read_text()
    [long_report] = [p for p in refus.iterdir() if p.name.startswith("€")]
    assert "Fichier refusé : €€€" in long_report.read_text()


def test_a_full_exchange_disk_keeps_the_refused_file_in_the_depot_until_there_is_room(
    box: Box, small_fs: Callable[[int], SmallFs]
) -> None:
    fs = small_fs(1024)
    env = {**box.env.env, "BALISE_EXCHANGE": str(fs.root / "echange")}
    exchange = box.ctx.exchange(env)
    base_ns = int(TEST_NOW.timestamp()) * 10**9 - 10**12
    good = valid_lot(TEST_TODAY, lot_number=4)
    _drop(exchange.root, "a-mauvais.lot", b"pas un lot\n", base_ns)
    _drop(exchange.root, "b-bon.lot", good, base_ns + 1)
    fs.fill()

    for _ in range(2):  # still full the second time: the same answer, and no second alert
        full = box.env.run("intake", "--once", env=env)
        assert full.returncode != 0 and "Disque plein" in full.stderr, full.stdout + full.stderr
        assert "Traceback" not in full.stderr
        # the refusal's reasons cannot be written: nothing of it is recorded, the files wait
        assert exchange.pending() == ["a-mauvais.lot", "b-bon.lot"]
        assert box.ctx.lots.quarantined() == [] and box.ctx.lots.lots() == []
        assert not [p for p in exchange.retours.rglob("*") if p.is_file()]  # no half report
    alerts = [a for a in box.ctx.tracking().alerts() if a.kind == "disk_full"]
    assert len(alerts) == 1 and alerts[0].fr.startswith("Disque plein")

    fs.free()
    after = box.env.run("intake", "--once", env=env)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "REFUSÉ a-mauvais.lot" in after.stdout and "ACCEPTÉ b-bon.lot" in after.stdout
    assert exchange.pending() == []
    assert [q.name for q in box.ctx.lots.quarantined()] == ["a-mauvais.lot"]
    assert "Fichier refusé" in (exchange.retours / "refus" / "a-mauvais.lot.txt").read_text()
    assert [lot.sha256 for lot in box.ctx.lots.lots()] == [hashlib.sha256(good).hexdigest()]


def test_a_full_data_disk_keeps_the_lot_in_the_depot_until_there_is_room(
    pki: TestPKI, small_fs: Callable[[int], SmallFs], tmp_path: Path
) -> None:
    """The database itself cannot grow: the lot is not half imported, it waits in depot/new
    and the command says why. (The disk_full alert lives in that same database: when it is the
    full one, the command's words are what the person sees.)"""
    fs = small_fs(32 * 1024)
    kek = tmp_path / "balise.kek"
    create_key_file(kek)
    env = BaliseEnv(fs.root / "data", kek)
    run_env = {**env.env, "BALISE_EXCHANGE": str(tmp_path / "echange")}
    ctx = open_context(env.home, actor="test", env=env.env, clock=SyncedClock())
    try:
        configure_box(ctx, pki)
        exchange = ctx.exchange(run_env)
        good = valid_lot(TEST_TODAY, lot_number=5)
        _drop(exchange.root, "bon.lot", good)
        # As after a checkpoint: the write-ahead log holds no room the next write could reuse.
        ctx.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        fs.fill()

        full = env.run("intake", "--once", env=run_env)
        assert full.returncode != 0 and "Disque plein" in full.stderr, full.stderr
        assert "Traceback" not in full.stderr
        assert exchange.pending() == ["bon.lot"] and ctx.lots.lots() == []

        fs.free()
        after = env.run("intake", "--once", env=run_env)
        assert after.returncode == 0 and "ACCEPTÉ bon.lot" in after.stdout, after.stderr
        assert exchange.pending() == []
        assert [lot.sha256 for lot in ctx.lots.lots()] == [hashlib.sha256(good).hexdigest()]
    finally:
        ctx.close()
