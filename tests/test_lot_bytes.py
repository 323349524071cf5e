"""A lot's bytes (the lot file, its signed CMS, its envelope, its frozen mail: 40-100 KB a real
lot) are written once, when they come, and never again: the state changes of a lot's life (a purge
of 1,000 returns makes about 600) write its row and its journal entry, a few pages, where they used
to write the whole lot again into the database's log — ten years of wear on a Pi's SD card
(migration 0012_lot_blobs)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from dataclasses import replace

import pytest
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from balise.adapters import store as store_module
from balise.adapters.lots import SqliteLotStore
from balise.adapters.outbox import SqliteOutbox
from balise.adapters.store import Store
from balise.app.context import Context
from balise.domain.lotstate import LotState
from tests.support.balise_env import BaliseEnv
from tests.support.box import Box
from tests.support.clock import TEST_NOW
from tests.support.purge_support import fresh_lot, make_signed


def written(ctx: Context, action: Callable[[], object]) -> int:
    """Bytes ``action`` wrote into the database's write-ahead log (emptied before it)."""
    wal = ctx.store.path.with_name(ctx.store.path.name + "-wal")
    busy, _, _ = ctx.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0 and wal.stat().st_size == 0
    action()
    return wal.stat().st_size


def test_a_lots_state_changes_do_not_write_its_bytes_again(box: Box) -> None:
    ctx = box.ctx
    moves = ctx.transitions()
    lot_id = fresh_lot(ctx, 1, sent=False)
    content = ctx.lots.content(lot_id)
    cms = content + os.urandom(40_000)  # a signed CMS and an envelope of a real lot's size
    envelope = os.urandom(30_000)
    mail = b"Subject: IRIS\r\n\r\n" + base64.encodebytes(envelope)
    lot_bytes = len(cms) + len(envelope) + len(mail)

    def sign() -> None:
        make_signed(ctx, lot_id, signed_cms=cms, envelope=envelope)

    def send() -> None:
        with ctx.lots.transaction():
            moves.move(lot_id, LotState.SIGNED, LotState.SENDING, compostage="000000001")
            SqliteOutbox(ctx.store).store_mail(lot_id, mail)

    # The measure sees bytes when they are written: signing writes the CMS and the envelope.
    assert written(ctx, sign) >= len(cms) + len(envelope)
    assert written(ctx, send) >= len(mail)
    sent = written(
        ctx,
        lambda: moves.move(lot_id, LotState.SENDING, LotState.SENT, sent_at=TEST_NOW.isoformat()),
    )
    acked = written(ctx, lambda: moves.move(lot_id, LotState.SENT, LotState.ACKNOWLEDGED))
    # The lot's row, its index and its journal entry: a few pages, not the lot's 140 KB again.
    assert sent < lot_bytes / 4 and acked < lot_bytes / 4, (sent, acked, lot_bytes)

    # Its bytes are those that came, unchanged, for the sending service and the backup.
    assert hashlib.sha256(ctx.lots.content(lot_id)).hexdigest() == ctx.lots.get(lot_id).sha256  # type: ignore[union-attr]
    assert ctx.lots.blob(lot_id, "signed_cms") == cms
    assert ctx.lots.blob(lot_id, "envelope") == envelope
    delivery = SqliteOutbox(ctx.store).delivery(lot_id)
    assert delivery is not None and delivery.mail == mail


def test_the_lots_a_box_already_holds_keep_their_bytes_through_the_migration(
    balise_env: BaliseEnv,
) -> None:
    """A box updated from the version before: its lots' bytes (here one of each kind, and a lot
    never signed) move out of the lots' rows whole, and a lot can still be found and sent."""
    older = Migrations("balise")
    for migration in store_module.migrations.pending(Database(memory=True)):
        if migration.name != "0012_lot_blobs":
            older(name=migration.name)(migration.fn)
    balise_env.home.mkdir(parents=True, exist_ok=True)
    before = Store(balise_env.home, schema=older)
    blobs = {
        "content": os.urandom(5_000),
        "signed_cms": os.urandom(9_000),
        "envelope": os.urandom(7_000),
        "mail": os.urandom(9_500),
    }
    try:
        with before.write():
            for n, kinds in ((1, tuple(blobs)), (2, ("content",))):
                before.conn.execute(
                    "INSERT INTO lots(id, profile, emitter, lot_number, lot_date, addressee, "
                    "organism, flow, application, invoices, total, sha256, size, state, received, "
                    "source, state_changed, " + ", ".join(kinds) + ") VALUES ("
                    "?, 'p1', '00000012345678', ?, '261204', 'ADR', '01', 'T', 'FS', 1, 100, ?, "
                    "5000, 'sent', 'r', 's', 'c', " + ", ".join("?" * len(kinds)) + ")",
                    (n, f"{n:03d}", f"{n:064d}", *(blobs[k] for k in kinds)),
                )
    finally:
        before.close()

    after = Store(balise_env.home)
    try:
        lots, outbox = SqliteLotStore(after), SqliteOutbox(after)
        assert "0012_lot_blobs" in after.applied_migrations()
        for kind in ("content", "signed_cms", "envelope"):
            assert lots.blob(1, kind) == blobs[kind]
        delivery = outbox.delivery(1)
        assert delivery is not None and delivery.mail == blobs["mail"]
        assert lots.content(2) == blobs["content"] and lots.blob(2, "envelope") is None
        never_sent = outbox.delivery(2)
        assert never_sent is not None and never_sent.mail is None
        assert lots.find_by_key("00000012345678", "002", "261204") is not None
        columns = {r[1] for r in after.conn.execute("PRAGMA table_info(lots)")}
        assert not columns & set(blobs)
        assert after.conn.execute("PRAGMA foreign_key_check").fetchall() == []
        # a frozen mail is still never replaced; the lot without one can get its own
        with pytest.raises(ValueError):
            outbox.store_mail(1, b"other bytes")
        outbox.store_mail(2, b"its mail")
        assert outbox.delivery(2) == replace(never_sent, mail=b"its mail")
    finally:
        after.close()
