"""Journal append cost: Balise's hash-chained append against a bare SQLite insert, same run.

Both use one connection with WAL and synchronous=FULL and one transaction per entry, so the
ratio shows what the chain (head re-read, canonical JSON, SHA-256) adds to a durable insert.
Usage: .venv/bin/python bench/journal_append.py [N]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from balise.adapters.kek import create_key_file
from balise.adapters.store import connect
from balise.app.context import open_context


def bench_balise(base: Path, n: int) -> float:
    kek = base / "k"
    create_key_file(kek)
    ctx = open_context(base / "data", actor="bench", env={"BALISE_KEK_FILE": str(kek)})
    try:
        start = time.perf_counter()
        for i in range(n):
            ctx.journal.append("bench.entry", f"lot {i}", {"i": i, "state": "sent"})
        elapsed = time.perf_counter() - start
        assert ctx.journal.verify().ok
    finally:
        ctx.close()
    return elapsed


def bench_bare(base: Path, n: int) -> float:
    conn = connect(base / "bare.db")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, kind TEXT, subject TEXT, details TEXT)")
    start = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO t(kind, subject, details) VALUES (?, ?, ?)",
            ("bench.entry", f"lot {i}", f'{{"i":{i},"state":"sent"}}'),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        os.umask(0o077)
        bare = bench_bare(base, n)
        balise = bench_balise(base, n)
    print(f"entries: {n}")
    print(f"bare SQLite insert (peer): {bare / n * 1e6:8.1f} us/entry")
    print(f"Balise journal append:     {balise / n * 1e6:8.1f} us/entry")
    print(f"ratio Balise / bare: {balise / bare:.2f}")


if __name__ == "__main__":
    main()
