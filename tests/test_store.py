"""The store: durability pragmas on every connection, schema through migrations only."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from balise.adapters import store as store_module
from balise.adapters.store import Store, connect, migrations
from tests.support.balise_env import BaliseEnv


def test_every_connection_has_wal_and_full_sync(balise_env: BaliseEnv) -> None:
    ctx = balise_env.context()
    try:
        assert ctx.store.pragmas() == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1}
        assert ctx.store.applied_migrations() == [m.name for m in migrations._migrations]
        assert ctx.store.applied_migrations()[0] == "0001_journal_vault_meta"
    finally:
        ctx.close()
    # A second connection opened later gets the same settings (synchronous is per connection).
    conn = connect(balise_env.home / "balise.db")
    try:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_migrations_run_once(balise_env: BaliseEnv) -> None:
    balise_env.context().close()
    store = Store(balise_env.home)
    try:
        rows = store.conn.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()
        assert rows[0] == len(migrations._migrations)
    finally:
        store.close()


def test_write_transactions_roll_back_on_error(balise_env: BaliseEnv) -> None:
    ctx = balise_env.context()
    try:
        try:
            with ctx.store.write():
                ctx.store.conn.execute("INSERT INTO meta(key, value) VALUES ('a', '1')")
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        assert ctx.store.meta_get("a") is None
        ctx.store.meta_set("a", "2")
        assert ctx.store.meta_get("a") == "2"
    finally:
        ctx.close()


def test_write_takes_the_lock_immediately(balise_env: BaliseEnv) -> None:
    ctx = balise_env.context()
    other = connect(balise_env.home / "balise.db")
    other.execute("PRAGMA busy_timeout=50")
    blocked = threading.Event()
    try:
        with ctx.store.write():
            try:
                other.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                blocked.set()
        assert blocked.is_set()
    finally:
        other.close()
        ctx.close()


def test_retention_finds_the_payments_of_a_return_by_index(balise_env: BaliseEnv) -> None:
    # Deleting an old return makes SQLite look for payments still pointing at it (foreign key):
    # without an index that is a scan of every payment, per return — an hour on a ten-year box.
    ctx = balise_env.context()
    try:
        plan = " ".join(
            str(row[-1])
            for row in ctx.store.conn.execute(
                "EXPLAIN QUERY PLAN SELECT 1 FROM payments WHERE return_id = ?", (1,)
            )
        )
    finally:
        ctx.close()
    assert "USING COVERING INDEX payments_return" in plan or "USING INDEX payments_return" in plan


def test_a_large_transaction_does_not_keep_its_log_on_the_disk(
    balise_env: BaliseEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration, a restore or a first retention writes one large transaction: its
    write-ahead log must not stay that large for as long as the agent keeps the database open
    (months), only up to WAL_KEPT_BYTES (here made 1 MiB, the transaction 8 MiB)."""
    monkeypatch.setattr(store_module, "WAL_KEPT_BYTES", 1024 * 1024)
    balise_env.context().close()
    store = Store(balise_env.home)
    agent = connect(balise_env.home / "balise.db")  # another process holding it open
    wal = balise_env.home / "balise.db-wal"
    try:
        with store.write() as db:
            for i in range(8):
                db.execute(
                    "INSERT INTO meta(key, value) VALUES (?, ?)", (f"big{i}", "x" * 1024 * 1024)
                )
        assert wal.stat().st_size > 8 * 1024 * 1024
        with store.write() as db:  # the next write, once the large one was checkpointed
            db.execute("DELETE FROM meta WHERE key LIKE 'big%'")
        with store.write() as db:
            db.execute("INSERT INTO meta(key, value) VALUES ('after', 'petit')")
        assert wal.stat().st_size <= 1024 * 1024
        assert agent.execute("SELECT value FROM meta WHERE key = 'after'").fetchone() == ("petit",)
    finally:
        agent.close()
        store.close()
