"""Ten years of lots, returns, payments and alerts: `balise lots|returns|alerts list --json`
stream their documents row by row (same shape as ever, memory flat however old the box is)."""

from __future__ import annotations

import contextlib
import json
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from balise.cli import main
from tests.support.box import Box
from tests.support.mail_corpus import NOEMIE
from tests.support.many_rows import many_alerts, many_lots, many_payments
from tests.support.purge_support import fresh_lot, sample_lot_sent
from tests.support.sauvegarde_support import record_return

LOTS = 20_000
PAYMENTS = 30_000
ALERTS = 10_000
# The old listings built every record and the whole JSON text: tens of megabytes at these sizes.
BOUND = 4 * 1024 * 1024


@pytest.fixture
def cli_env(box: Box, monkeypatch: pytest.MonkeyPatch) -> Iterator[Box]:
    """The `balise` command called in this process (so tracemalloc sees all it allocates)."""
    for name, value in box.env.env.items():
        if name.startswith("BALISE_"):
            monkeypatch.setenv(name, value)
    mask = os.umask(0o077)
    try:
        yield box
    finally:
        os.umask(mask)


def _run_traced(box: Box, out: Path, *args: str) -> tuple[Any, int]:
    """Run `balise ARGS` writing into ``out``; the parsed output and the peak traced memory."""
    with out.open("w", encoding="utf-8") as handle, contextlib.redirect_stdout(handle):
        tracemalloc.start()
        try:
            code = main(["--data-dir", str(box.env.home), *args])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert code == 0
    text = out.read_text(encoding="utf-8")
    document = json.loads(text)
    # Exactly the text the whole document gives to json.dumps (consumers see no change).
    assert text == json.dumps(document, ensure_ascii=False, indent=1) + "\n"
    return document, peak


def test_lots_list_json_streams_ten_years_of_lots(cli_env: Box, tmp_path: Path) -> None:
    ctx = cli_env.ctx
    first = fresh_lot(ctx, 1, sent=False)
    many_lots(ctx, first, LOTS - 1)
    ctx.intake().import_bytes("abime.lot", b"pas un lot", "t:bad")
    document, peak = _run_traced(cli_env, tmp_path / "lots.json", "lots", "list", "--json")
    assert len(document["lots"]) == LOTS
    ids = [lot["id"] for lot in document["lots"]]
    assert ids == sorted(ids) and ids[0] == first
    assert document["lots"][0]["state"] == "ready"
    assert [q["name"] for q in document["quarantine"]] == ["abime.lot"]
    assert peak < BOUND, f"peak {peak / 1e6:.1f} MB"


def test_returns_list_json_streams_millions_of_payments(cli_env: Box, tmp_path: Path) -> None:
    ctx = cli_env.ctx
    sample_lot_sent(ctx)  # the golden lot 007, which the NOEMIE pays
    assert record_return(ctx, cli_env.env.env, NOEMIE, "noemie-1") == "applied"
    template = ctx.store.conn.execute("SELECT min(id) FROM payments").fetchone()[0]
    many_payments(ctx, template, PAYMENTS)
    document, peak = _run_traced(cli_env, tmp_path / "returns.json", "returns", "list", "--json")
    assert len(document["returns"]) == 1 and document["returns"][0]["kind"] == "noemie"
    assert len(document["payments"]) > PAYMENTS
    assert {p["return_id"] for p in document["payments"]} == {document["returns"][0]["id"]}
    assert peak < BOUND, f"peak {peak / 1e6:.1f} MB"


def test_alerts_list_json_streams_every_alert(cli_env: Box, tmp_path: Path) -> None:
    ctx = cli_env.ctx
    tracking = ctx.tracking(cli_env.env.env)
    template = tracking.alert("test_alert", "lot:1", "alerte d'essai", "test alert")
    many_alerts(ctx, template, ALERTS)
    acked = tracking.alert("test_alert", "lot:2", "alerte lue", "read alert")
    assert tracking.acknowledge(acked, "test")
    document, peak = _run_traced(cli_env, tmp_path / "alerts.json", "alerts", "list", "--json")
    assert len(document) == ALERTS + 1
    assert acked not in {a["id"] for a in document}
    assert peak < BOUND, f"peak {peak / 1e6:.1f} MB"
    everything, _ = _run_traced(cli_env, tmp_path / "all.json", "alerts", "list", "--json", "--all")
    assert len(everything) == ALERTS + 2 and everything[-1]["acknowledged"]


def test_empty_listings_keep_their_shape(cli_env: Box, tmp_path: Path) -> None:
    lots, _ = _run_traced(cli_env, tmp_path / "l.json", "lots", "list", "--json")
    returns, _ = _run_traced(cli_env, tmp_path / "r.json", "returns", "list", "--json")
    alerts, _ = _run_traced(cli_env, tmp_path / "a.json", "alerts", "list", "--json")
    assert lots == {"lots": [], "quarantine": []}
    assert returns == {"returns": [], "payments": []}
    assert alerts == []
