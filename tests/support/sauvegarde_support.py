"""Backup test support: a box filled with lots in every state, returns, payments, alerts and a few
hundred journal entries; a second, empty box with its own KEK; archive byte helpers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from balise.adapters.kek import create_key_file
from balise.app.context import Context
from balise.domain.lotstate import LotState
from balise.domain.returns import parse_return
from tests.support.balise_env import BaliseEnv
from tests.support.box import Box
from tests.support.mail_corpus import ARL_POS, NOEMIE
from tests.support.purge_support import fresh_lot, sample_lot_sent

RECOVERY = "phrase de secours du cabinet 42"
FILLER_ENTRIES = 300


def record_return(
    ctx: Context, env: dict[str, str], payload: bytes, uidl: str, *, raw: bytes | None = None
) -> str:
    """Store ``payload`` as a return received in a mail (``raw``, stored encrypted)."""
    parsed = parse_return(payload)
    outcome = ctx.tracking(env).record(
        profile="p1",
        own_emitter="00000012345678",
        uidl=uidl,
        sha256=f"{uidl:0<64}"[:64],
        kind=parsed.kind if parsed.kind != "not_a_return" else "damaged",
        parsed=parsed,
        words=(parsed.words("fr"), parsed.words("en")),
        raw=b"raw mail bytes " + uidl.encode() if raw is None else raw,
        payload=payload,
    )
    return outcome.status


@dataclass
class Filled:
    """What the filled box holds, to compare after a restore."""

    sample_lot: int
    lots: dict[int, LotState]


def fill_box(box: Box) -> Filled:
    """Lots in every state, returns (NOEMIE with payments, a damaged ARL), alerts, and a few
    hundred journal entries; the golden lot 007 stays SENT (its ARL arrives on the new box)."""
    ctx, env = box.ctx, box.env.env
    ctx.params.set("recovery_passphrase", RECOVERY)
    sample = sample_lot_sent(ctx)
    moves = ctx.transitions()
    ready = fresh_lot(ctx, 20, sent=False)
    signed = fresh_lot(ctx, 21, sent=False)
    moves.move(signed, LotState.READY, LotState.SIGNED, signer="t", signed_cms=b"cms-21")
    sending = fresh_lot(ctx, 22, sent=False)
    moves.move(sending, LotState.READY, LotState.SIGNED, signer="t", signed_cms=b"cms-22")
    moves.move(sending, LotState.SIGNED, LotState.SENDING, compostage="000000022")
    sent = fresh_lot(ctx, 23)
    acked = fresh_lot(ctx, 24)
    moves.move(acked, LotState.SENT, LotState.ACKNOWLEDGED)
    rejected = fresh_lot(ctx, 25)
    moves.move(rejected, LotState.SENT, LotState.REJECTED)
    cancelled = fresh_lot(ctx, 26, sent=False)
    moves.move(cancelled, LotState.READY, LotState.CANCELLED, note="retiré")
    assert record_return(ctx, env, NOEMIE, "noemie-1") == "applied"
    assert record_return(ctx, env, ARL_POS[:-40], "damaged-1") == "damaged"
    ctx.tracking(env).alert("test_alert", "lot:1", "alerte d'essai", "test alert")
    with ctx.store.write():
        for i in range(FILLER_ENTRIES):
            ctx.journal.append("test.filler", f"n{i}", {"i": i})
    ids = (sample, ready, signed, sending, sent, acked, rejected, cancelled)
    lots = {lot_id: ctx.lots.get(lot_id).state for lot_id in ids}  # type: ignore[union-attr]
    assert set(lots.values()) == set(LotState)
    return Filled(sample, lots)


def snapshot_of(ctx: Context) -> dict[str, Any]:
    """What a person sees of a box's data: lots, returns, payments, alerts, parameters."""
    conn = ctx.store.conn
    return {
        "lots": conn.execute(
            "SELECT id, state, sha256, compostage FROM lots ORDER BY id"
        ).fetchall(),
        "lot_bytes": conn.execute(
            "SELECT lot_id, kind, data FROM lot_blobs ORDER BY lot_id, kind"
        ).fetchall(),
        "returns": [(r.id, r.kind, r.status, r.lot_id) for r in ctx.tracking().returns()],
        "payloads": [ctx.returns_store.payload(r.id) for r in ctx.tracking().returns()],
        "payments": ctx.tracking().payments(),
        "alerts": [(a.id, a.kind, a.subject, a.fr) for a in ctx.tracking().alerts()],
        "params": [(r.scope, r.ident, r.name, r.shown) for r in ctx.params.rows()],
    }


@pytest.fixture
def other_box(tmp_path: Path) -> Iterator[BaliseEnv]:
    """A fresh box B: its own data dir (not created yet) and its own KEK."""
    kek = tmp_path / "b" / "balise.kek"
    kek.parent.mkdir()
    create_key_file(kek)
    yield BaliseEnv(tmp_path / "b" / "data", kek)


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
