"""Backup cost on years of a busy practice: `balise backup` (compressed, then encrypted) against
``sqlite3 DB .dump | zstd -3`` on the same database, measured in the same run; then `balise
restore` of that archive on a fresh box and `balise backup extract` of it on a machine without a
box (issue 16), with the peak memory of each command.

Targets (issue 15): archive size ≤ 1.2× the peer's output, backup time ≤ 1.5× the peer's, and
backup, restore and extract in constant memory (peak resident memory far below the database:
≤ 150 MiB).

The database:
- by default, the ten-year box of bench/scale.py (its builder, at ``--scale``, default 1: the
  box of the issue's targets, built once and cached by it) when that file is there, with a
  recovery passphrase set on a copy;
- else (or with ``--years``) tests/support/years.py: a box filled through the real write paths,
  multiplied by bulk copies of its rows (``--lots``, default 4,000: about 340 MB).

The peer needs Debian's ``sqlite3`` and ``zstd`` (``apt-get install sqlite3 zstd``). Each of R
rounds (default 3) runs the peer then Balise on the same database (page cache warm for both); the
best and the median are printed, the objective judged on the best (shared machines are noisy).
Balise's time includes what the peer does not do: the fsync of the archive before it is renamed
into place.

Usage: .venv/bin/python bench/backup.py [--scale=S | --years [--lots=N]] [--rounds=R]
(the ten-year box at scale 1: 3.3 GB, about 1 GB once compacted; a few minutes once it is cached)
"""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.support

from balise.adapters.kek import create_key_file  # noqa: E402
from balise.app.context import open_context  # noqa: E402
from tests.support.balise_env import BALISE, BaliseEnv  # noqa: E402
from tests.support.sauvegarde_support import RECOVERY  # noqa: E402
from tests.support.years import run_measured  # noqa: E402

MIB = 1024 * 1024
SIZE_TARGET, TIME_TARGET, PEAK_TARGET = 1.2, 1.5, 150 * MIB


def _scale_module() -> ModuleType | None:
    """bench/scale.py, when it is there and offers its cached builder."""
    path = ROOT / "bench" / "scale.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("bench_scale", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    if not all(hasattr(module, name) for name in ("Shape", "cached_box")):
        return None
    return module


def scale_box(base: Path, scale: float) -> tuple[BaliseEnv, str]:
    """A fresh copy of bench/scale.py's cached ten-year box, with a recovery passphrase."""
    module = _scale_module()
    assert module is not None
    cache = Path.home() / ".cache" / "balise-bench"
    where, _ = module.cached_box(cache, module.Shape.at(scale), False)
    shutil.copytree(where / "data", base / "data", ignore=shutil.ignore_patterns("*-shm"))
    shutil.copy2(where / "bench.kek", base / "bench.kek")
    env = BaliseEnv(base / "data", base / "bench.kek")
    ctx = open_context(env.home, actor="bench", env=env.env)
    try:
        ctx.params.set("recovery_passphrase", RECOVERY)
    finally:
        ctx.close()
    return env, f"bench/scale.py's ten-year box at scale {scale:g}"


def years_box(base: Path, lots: int) -> tuple[BaliseEnv, str]:
    """tests/support/years.py: ``lots`` lots with their returns, payments and journal."""
    from balise.sim.box import configure_box
    from balise.sim.pki import build_pki
    from tests.support.box import Box, SyncedClock
    from tests.support.years import busy_years

    base.mkdir()
    kek = base / "bench.kek"
    create_key_file(kek)
    env = BaliseEnv(base / "data", kek)
    ctx = open_context(env.home, actor="bench", env=env.env, clock=SyncedClock())
    try:
        configure_box(ctx, build_pki(base / "pki"))
        busy_years(Box(env, ctx), lots=lots)
    finally:
        ctx.close()
    return env, f"tests/support/years.py, {lots} lots"


def _describe(database: Path) -> str:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        tables = ("lots", "returns", "payments", "journal", "mail_quarantine")
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        conn.close()
    return ", ".join(f"{t} {n:,}" for t, n in counts.items())


def peer(database: Path, out: Path) -> float:
    start = time.perf_counter()
    pipeline = 'sqlite3 "$1" .dump | zstd -3 -q -c > "$2"'
    subprocess.run(
        ["bash", "-o", "pipefail", "-c", pipeline, "peer", str(database), str(out)], check=True
    )
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    missing = [tool for tool in ("sqlite3", "zstd") if shutil.which(tool) is None]
    if missing:
        print(
            f"bench/backup.py: the peer needs {' and '.join(missing)}: "
            f"apt-get install {' '.join(missing)} (Debian packages)",
            file=sys.stderr,
        )
        return 2
    options: dict[str, str] = {}
    for arg in argv:
        name, _, value = arg.lstrip("-").partition("=")
        options[name] = value
    rounds = int(options.get("rounds", "3"))
    use_years = "--years" in argv or _scale_module() is None
    base = Path(tempfile.mkdtemp(prefix="balise-bench-backup-"))
    try:
        print("building the database (outside the timings)…", flush=True)
        if use_years:
            env, what = years_box(base / "box", int(options.get("lots", "4000")))
        else:
            env, what = scale_box(base / "box", float(options.get("scale", "1")))
        database = env.home / "balise.db"
        with sqlite3.connect(database) as conn:  # everything in the file: the peer reads it
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db_size = database.stat().st_size
        print(f"database: {db_size / 1e6:.1f} MB ({what}): {_describe(database)}", flush=True)

        peer_times: list[float] = []
        peer_size = 0
        balise_times: list[float] = []
        balise_peaks: list[int] = []
        archive_size = 0
        archive = base / "none"
        for round_ in range(rounds):
            print(f"round {round_ + 1}/{rounds}…", flush=True)
            dumped = base / "peer.sql.zst"
            peer_times.append(peer(database, dumped))
            peer_size = dumped.stat().st_size
            dumped.unlink()
            dest = base / f"out{round_}"
            start = time.perf_counter()
            made, peak = run_measured([BALISE, "backup", "--to", str(dest)], env.env)
            balise_times.append(time.perf_counter() - start)
            if made.returncode != 0:
                print(made.stderr, file=sys.stderr)
                return 1
            balise_peaks.append(peak)
            [archive] = dest.glob("*.sauvegarde")
            archive_size = archive.stat().st_size
            if round_ < rounds - 1:
                shutil.rmtree(dest)

        kek = base / "other.kek"
        create_key_file(kek)
        other = BaliseEnv(base / "other" / "data", kek)
        start = time.perf_counter()
        restored, restore_peak = run_measured(
            [BALISE, "restore", str(archive)], other.env, stdin=RECOVERY + "\n"
        )
        restore_time = time.perf_counter() - start
        if restored.returncode != 0:
            print(restored.stderr, file=sys.stderr)
            return 1
        restored_size = (other.home / "balise.db").stat().st_size
        shutil.rmtree(other.home)

        # A technician's machine: no data folder, no KEK.
        bare = {k: v for k, v in env.env.items() if not k.startswith("BALISE_")}
        start = time.perf_counter()
        extracted, extract_peak = run_measured(
            [BALISE, "backup", "extract", str(archive), "--to", str(base / "extrait")],
            bare,
            stdin=RECOVERY + "\n",
        )
        extract_time = time.perf_counter() - start
        if extracted.returncode != 0:
            print(extracted.stderr, file=sys.stderr)
            return 1
    finally:
        shutil.rmtree(base, ignore_errors=True)

    def secs(values: list[float]) -> str:
        return (f"best {min(values):6.2f} s, median {statistics.median(values):6.2f} s  "
                f"({', '.join(f'{v:.2f}' for v in values)})")  # fmt: skip

    size_ratio = archive_size / peer_size
    time_best = min(balise_times) / min(peer_times)
    time_median = statistics.median(balise_times) / statistics.median(peer_times)
    peak = max(balise_peaks)
    print(f"sqlite3 .dump | zstd -3:  {peer_size / 1e6:8.1f} MB   {secs(peer_times)}")
    print(f"balise backup:            {archive_size / 1e6:8.1f} MB   {secs(balise_times)}, "
          f"peak {peak / MIB:.0f} MiB")  # fmt: skip
    print(f"balise restore:           {restored_size / 1e6:8.1f} MB   {restore_time:6.2f} s, "
          f"peak {restore_peak / MIB:.0f} MiB (the database restored, compact)")  # fmt: skip
    print(f"balise backup extract:    {restored_size / 1e6:8.1f} MB   {extract_time:6.2f} s, "
          f"peak {extract_peak / MIB:.0f} MiB (without a box)")  # fmt: skip
    print(f"archive / database: {archive_size / db_size:5.2f}")
    print(f"ratio size Balise / peer: {size_ratio:5.2f} "
          f"(objectif ≤ {SIZE_TARGET:g})   {_ok(size_ratio <= SIZE_TARGET)}")  # fmt: skip
    print(f"ratio time Balise / peer: best {time_best:5.2f}, median {time_median:5.2f} "
          f"(objectif ≤ {TIME_TARGET:g})   {_ok(time_best <= TIME_TARGET)}")  # fmt: skip
    print(f"peak memory: backup {peak / MIB:.0f} MiB, restore {restore_peak / MIB:.0f} MiB, "
          f"extract {extract_peak / MIB:.0f} MiB for a database of {db_size / MIB:.0f} MiB "
          f"(objectif ≤ {PEAK_TARGET // MIB} MiB)   "
          f"{_ok(max(peak, restore_peak, extract_peak) <= PEAK_TARGET)}")  # fmt: skip
    return 0


def _ok(ok: bool) -> str:
    return "OK" if ok else "HORS OBJECTIF"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
