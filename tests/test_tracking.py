"""Returns tracking without a mail server: overdue flags, damaged returns, trust rules, encrypted
quarantine with retention and quota, and alerts listed and acknowledged through the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from balise.adapters.clock import FixedClock
from balise.app.context import open_context
from balise.domain.classify import classify_message
from balise.domain.lotstate import LotState
from balise.domain.returns import parse_return
from tests.support.box import Box
from tests.support.mail_corpus import ARL_POS, ARL_POS_EML, corpus_policy
from tests.support.purge_support import sample_lot_sent


def _record(box: Box, payload: bytes, *, own: str = "00000012345678", uidl: str = "u1") -> str:
    parsed = parse_return(payload)
    outcome = box.ctx.tracking(box.env.env).record(
        profile="p1",
        own_emitter=own,
        uidl=uidl,
        sha256="ab" * 32,
        kind=parsed.kind if parsed.kind != "not_a_return" else "damaged",
        parsed=parsed,
        words=(parsed.words("fr"), parsed.words("en")),
        raw=b"raw mail bytes",
        payload=payload,
    )
    return outcome.status


def test_overdue_lot_alerted_once_per_sending_then_acknowledged_by_cli(box: Box) -> None:
    lot_id = sample_lot_sent(box.ctx)
    assert box.ctx.tracking().check_overdue(3) == []  # just sent
    later = open_context(
        box.env.home,
        actor="test",
        env=box.env.env,
        clock=FixedClock(datetime.now(UTC) + timedelta(days=4)),
    )
    try:
        tracking = later.tracking(box.env.env)
        raised = tracking.check_overdue(3)
        assert len(raised) == 1 and tracking.check_overdue(3) == []
        alert = tracking.alerts()[0]
        assert alert.kind == "lot_overdue" and alert.subject == f"lot:{lot_id}"
        assert "sans ARL" in alert.fr
    finally:
        later.close()
    listed = json.loads(box.env.run("alerts", "list", "--json").stdout)
    assert [a["kind"] for a in listed] == ["lot_overdue"]
    assert box.env.run("alerts", "ack", str(listed[0]["id"])).returncode == 0
    assert json.loads(box.env.run("alerts", "list", "--json").stdout) == []
    assert box.ctx.tracking().check_overdue(0) == []  # acknowledged: not raised again


def test_damaged_return_kept_as_evidence_alerted_never_applied(box: Box) -> None:
    lot_id = sample_lot_sent(box.ctx)
    damaged = ARL_POS[:-40]  # trailer cut: a valid header, a broken stream
    assert parse_return(damaged).kind == "damaged"
    assert _record(box, damaged) == "damaged"
    assert box.ctx.lots.get(lot_id).state is LotState.SENT  # type: ignore[union-attr]
    assert [a.kind for a in box.ctx.tracking().alerts()] == ["return_damaged"]
    stored = box.ctx.tracking().returns()
    assert stored[0].kind == "damaged" and stored[0].lot_id is None


def test_return_for_another_emitter_or_a_lot_not_sent_changes_nothing(box: Box) -> None:
    lot_id = sample_lot_sent(box.ctx)
    # the mailbox's practitioner is someone else: not applied, alerted
    assert _record(box, ARL_POS, own="00000099999999") == "unmatched"
    assert box.ctx.lots.get(lot_id).state is LotState.SENT  # type: ignore[union-attr]
    assert _record(box, ARL_POS, uidl="u2") == "applied"
    assert box.ctx.lots.get(lot_id).state is LotState.ACKNOWLEDGED  # type: ignore[union-attr]
    assert _record(box, ARL_POS, uidl="u3") == "duplicate"  # same answer again: no alert
    assert [a.kind for a in box.ctx.tracking().alerts()] == ["return_foreign"]


def test_classified_golden_mail_round_trips_through_the_store_encrypted(box: Box) -> None:
    c = classify_message(ARL_POS_EML, corpus_policy())
    assert c.parsed is not None and c.payload is not None
    repo = box.ctx.returns_store
    with repo.transaction():
        rid = repo.add_return(
            profile="p1",
            uidl="u9",
            sha256=c.sha256,
            kind="arl",
            status="unmatched",
            header={"emitter": "00000012345678"},
            lot_id=None,
            positive=True,
            words=("a", "b"),
            detail={},
            size=c.size,
            raw=ARL_POS_EML,
            payload=c.payload,
            when="2026-11-23T10:00:00+00:00",
        )
    assert repo.payload(rid) == c.payload
    box.ctx.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = box.ctx.store.path.read_bytes()
    assert b"c533a505cd1f@422.01.rss.fr" not in data  # the raw mail's Message-ID


def test_quarantine_copies_dropped_oldest_first_within_quota_metadata_kept(box: Box) -> None:
    repo = box.ctx.returns_store
    base = datetime(2026, 11, 1, tzinfo=UTC)
    ids = [
        repo.add_unknown(
            profile="p1",
            uidl=f"u{i}",
            sha256=f"{i:064x}",
            digest_scope="message",
            size=400_000,
            reason=("SENDER_NOT_ALLOWED", "fr", "en"),
            meta={"subject": f"secret subject {i}"},
            copy=bytes([65 + i]) * 400_000,
            when=(base + timedelta(days=i)).isoformat(timespec="seconds"),
        )
        for i in range(4)
    ]
    dropped = repo.enforce_quarantine(30, 1024 * 1024, base + timedelta(days=5))
    kept = {r.id: r.has_copy for r in repo.mail_quarantine()}
    assert dropped == 2 and kept == {ids[0]: False, ids[1]: False, ids[2]: True, ids[3]: True}
    assert repo.quarantine_meta(ids[0])["subject"] == "secret subject 0"  # metadata kept
    assert repo.quarantine_copy(ids[3]) == b"D" * 400_000
    # retention: copies older than the limit go too
    assert repo.enforce_quarantine(1, 64 * 1024 * 1024, base + timedelta(days=10)) == 2
    assert not any(r.has_copy for r in repo.mail_quarantine())
