"""Intake: every file ends accepted (a ready lot) or in quarantine with its reasons; nothing lost."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from balise.domain.errors import StateError
from balise.domain.lotfile import LotFault
from balise.domain.lotstate import TRANSITIONS, LotState, check_transition
from balise.sim.pki import TestPKI
from tests.support.balise_env import BaliseEnv
from tests.support.box import Box, box_at, configure_box
from tests.support.clock import TEST_NOW, TEST_TODAY
from tests.support.lot_corpus import (
    ACCEPTED_FILE_LOT_NUMBER,
    ACCEPTED_LOT_NUMBER,
    CORPUS_TODAY,
    SAMPLES,
    faulty_lots,
    valid_lot,
)

NOON = datetime(CORPUS_TODAY.year, CORPUS_TODAY.month, CORPUS_TODAY.day, 12, tzinfo=UTC)


def test_golden_lots_are_accepted_by_the_cli(box: Box) -> None:
    files = [str(SAMPLES / "valid.lot"), str(SAMPLES / "valid_corsica.lot")]
    result = box.env.run("import", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ACCEPTÉ") == 2
    listed = json.loads(box.env.run("lots", "list", "--json").stdout)
    assert [lot["lot_number"] for lot in listed["lots"]] == ["007", "008"]
    assert all(lot["state"] == "ready" and lot["organism"] == "cpam422" for lot in listed["lots"])
    import hashlib

    assert (
        listed["lots"][0]["sha256"]
        == hashlib.sha256((SAMPLES / "valid.lot").read_bytes()).hexdigest()
    )
    shown = box.env.run("lots", "show", str(listed["lots"][0]["id"]))
    assert "validé à l'arrivée" in shown.stdout
    again = box.env.run("import", str(SAMPLES / "valid.lot"))
    assert "DÉJÀ IMPORTÉ" in again.stdout


@pytest.mark.parametrize("fault", list(LotFault), ids=lambda f: f.value)
def test_each_faulty_lot_is_quarantined_with_its_code(
    balise_env: BaliseEnv, pki: TestPKI, fault: LotFault
) -> None:
    ctx = box_at(balise_env, NOON)
    try:
        configure_box(ctx, pki)
        intake = ctx.intake()
        # The corpus assumes two lots already accepted: one by number + date, one by content.
        for number in (ACCEPTED_LOT_NUMBER, ACCEPTED_FILE_LOT_NUMBER):
            lot = valid_lot(CORPUS_TODAY, lot_number=number)
            assert intake.import_bytes(f"{number}.lot", lot, f"t:{number}").accepted
        if fault is LotFault.TEST_FLOW_IN_PRODUCTION:
            ctx.params.set("mode", "production")
        data = faulty_lots(CORPUS_TODAY)[fault]
        outcome = intake.import_bytes("faulty.lot", data, "t:faulty")
        assert not outcome.accepted
        assert fault.value in {p.code for p in outcome.problems}
        assert all(p.fr and p.en for p in outcome.problems)
        stored = ctx.lots.quarantined()
        assert [q.name for q in stored] == ["faulty.lot"]
        assert outcome.validation is not None and stored[0].sha256 == outcome.validation.sha256
        entries = [e for e in ctx.journal.entries() if e.kind == "lot.quarantined"]
        assert len(entries) == 1 and fault.value in entries[0].details
    finally:
        ctx.close()


def test_depot_files_are_taken_and_nothing_is_lost(box: Box) -> None:
    exchange = box.ctx.exchange(box.env.env)
    good = (SAMPLES / "valid.lot").read_bytes()
    bad = good[:-10]  # truncated
    for name, data in (("bon.lot", good), ("tronque.lot", bad)):
        tmp = exchange.root / "depot" / "tmp" / name
        tmp.write_bytes(data)
        tmp.rename(exchange.new / name)
    (exchange.root / "depot" / "tmp" / "en-cours.lot").write_bytes(good[:128])
    result = box.env.run("intake", "--once")
    assert result.returncode == 0, result.stderr
    assert "ACCEPTÉ bon.lot" in result.stdout and "REFUSÉ tronque.lot" in result.stdout
    assert exchange.pending() == []
    assert (exchange.root / "depot" / "tmp" / "en-cours.lot").exists()  # never read while written
    report = (exchange.retours / "refus" / "tronque.lot.txt").read_text()
    assert "LOT_FILE_SIZE" in report and "tronqué" in report
    assert len(box.ctx.lots.lots()) == 1 and len(box.ctx.lots.quarantined()) == 1


def test_a_crash_before_removal_does_not_import_twice(box: Box) -> None:
    exchange = box.ctx.exchange(box.env.env)
    data = (SAMPLES / "valid.lot").read_bytes()
    (exchange.new / "lot.lot").write_bytes(data)
    # The first run committed the lot but died before removing the file.
    first = box.ctx.intake().import_bytes("lot.lot", data, "depot:lot.lot")
    assert first.accepted
    outcomes = list(box.ctx.intake().scan_depot())
    assert len(outcomes) == 1 and outcomes[0].already and outcomes[0].lot_id == first.lot_id
    assert exchange.pending() == [] and box.ctx.lots.quarantined() == []
    assert len(box.ctx.lots.lots()) == 1


def test_duplicate_from_another_source_is_refused(box: Box) -> None:
    data = (SAMPLES / "valid.lot").read_bytes()
    assert box.ctx.intake().import_bytes("a.lot", data, "import:/a.lot").accepted
    again = box.ctx.intake().import_bytes("copie.lot", data, "depot:copie.lot")
    assert not again.accepted
    assert {"LOT_DUPLICATE_LOT", "LOT_DUPLICATE_CONTENT"} <= {p.code for p in again.problems}


def test_transition_table_is_exactly_the_architecture_one() -> None:
    allowed = {
        ("ready", "signed"),
        ("signed", "sending"),
        ("sending", "sent"),
        ("sending", "signed"),
        ("sending", "acknowledged"),
        ("sending", "rejected"),
        ("sent", "acknowledged"),
        ("sent", "rejected"),
        ("sent", "sending"),
        ("ready", "cancelled"),
        ("signed", "cancelled"),
    }
    assert {(a.value, b.value) for a, b in TRANSITIONS} == allowed
    for a in LotState:
        for b in LotState:
            if (a.value, b.value) in allowed:
                assert check_transition(a, b)
            else:
                with pytest.raises(StateError):
                    check_transition(a, b)


def test_cancel_is_journaled_and_terminal(box: Box) -> None:
    assert box.env.run("import", str(SAMPLES / "valid.lot")).returncode == 0
    lot_id = box.ctx.lots.lots()[0].id
    result = box.env.run("lots", "cancel", str(lot_id), "--reason", "erreur de saisie")
    assert result.returncode == 0, result.stderr
    assert box.ctx.lots.get(lot_id).state is LotState.CANCELLED  # type: ignore[union-attr]
    again = box.env.run("lots", "cancel", str(lot_id))
    assert again.returncode == 1 and "ne peut pas passer" in again.stderr
    kinds = [(e.kind, e.subject) for e in box.ctx.journal.entries()]
    assert kinds.count(("lot.state", f"lot:{lot_id}")) == 2
    assert box.env.run("journal", "verify").returncode == 0


def test_future_dated_lot_is_refused(box: Box) -> None:
    ctx = box_at(box.env, TEST_NOW - timedelta(days=3))
    try:
        tomorrow = TEST_TODAY
        outcome = ctx.intake().import_bytes("x.lot", valid_lot(tomorrow), "t:x")
        assert not outcome.accepted
        assert "LOT_DATE_FUTURE" in {p.code for p in outcome.problems}
    finally:
        ctx.close()
