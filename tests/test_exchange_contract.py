"""The exchange contract of docs/exchange.md, as the practice software sees the files: a receipt
for every file taken (accepted with its lot id, refused with its codes), never one file's receipt
replaced by another's, the lot status files and retours/etat.json — each file the box really
wrote checked against the JSON Schema files in docs/schemas/exchange/."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest

import balise
from balise.app.exchange import KEEP_DAYS, REFRESH_S, prune_receipts, refresh_state
from balise.sim.dovecot import DovecotServer
from balise.sim.pki import TestPKI
from tests.support.balise_env import BaliseEnv
from tests.support.box import EMITTER, Box, box_at, configure_box
from tests.support.clock import TEST_NOW
from tests.support.exchange_schemas import checked
from tests.support.lot_corpus import valid_lot
from tests.support.mail_fixtures import SMTP_PASSWORD, TlsCA
from tests.support.purge_support import arl_mail, configure_pop3, fresh_lot, noemie_mail


def _drop(root: Path, name: str, data: bytes) -> None:
    """The documented way: written in depot/tmp, then renamed into depot/new."""
    tmp = root / "depot" / "tmp" / name
    tmp.write_bytes(data)
    tmp.rename(root / "depot" / "new" / name)


def _intake(box: Box) -> str:
    result = box.env.run("intake", "--once")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_every_file_taken_gets_a_receipt_and_no_receipt_replaces_another_files(
    box: Box, tmp_path: Path
) -> None:
    box.ctx.params.set("smtp.password", SMTP_PASSWORD, profile="p1")
    exchange = box.ctx.exchange(box.env.env)
    good = valid_lot(box.ctx.clock.now().date(), lot_number=21)
    bad = b"ceci n'est pas un lot\n"
    _drop(exchange.root, "bon.lot", good)
    _drop(exchange.root, "mauvais.lot", bad)
    outside = tmp_path / "ailleurs.lot"
    outside.write_bytes(good)
    os.symlink(outside, exchange.new / "lien.lot")
    _intake(box)
    recus = exchange.retours / "recus"

    accepted = checked("recu", recus / "bon.lot.json")
    [lot] = box.ctx.lots.lots()
    assert accepted["resultat"] == "accepte" and accepted["lot"]["id"] == lot.id
    assert accepted["sha256"] == hashlib.sha256(good).hexdigest() == lot.sha256
    assert accepted["lot"]["numero"] == "021" and accepted["lot"]["emetteur"] == EMITTER
    assert accepted["lot"]["statut"] == f"retours/{EMITTER}/lot-{lot.lot_date}-021.statut.json"

    refused = checked("recu", recus / "mauvais.lot.json")
    assert refused["resultat"] == "refuse" and refused["lot"] is None
    assert refused["sha256"] == hashlib.sha256(bad).hexdigest() and refused["taille"] == len(bad)
    codes = {m["code"] for m in refused["motifs"]}
    assert codes and all(code.startswith("LOT_") for code in codes)
    assert all(m["message"] and m["message_en"] for m in refused["motifs"])
    report = exchange.root / refused["rapport"]
    assert all(f"[{code}]" in report.read_text() for code in codes)  # the .txt for people

    link = checked("recu", recus / "lien.lot.json")
    assert link["resultat"] == "refuse" and link["ecarte"] is True and link["sha256"] is None
    assert [m["code"] for m in link["motifs"]] == ["DEPOT_SYMLINK"]

    # Another file under a name already used: its own receipt, the first one left as it was.
    first = (recus / "mauvais.lot.json").read_bytes()
    other = b"encore autre chose\n"
    _drop(exchange.root, "mauvais.lot", other)
    _intake(box)
    assert (recus / "mauvais.lot.json").read_bytes() == first
    sha = hashlib.sha256(other).hexdigest()
    second = checked("recu", recus / f"mauvais.lot.{sha[:16]}.json")
    assert second["sha256"] == sha and second["resultat"] == "refuse"

    # The same file dropped again: its own receipt, said again, no new file.
    before = sorted(p.name for p in recus.iterdir())
    _drop(exchange.root, "mauvais.lot", bad)
    _intake(box)
    assert sorted(p.name for p in recus.iterdir()) == before
    again = checked("recu", recus / "mauvais.lot.json")
    assert again["deja_recu"] is True and again["sha256"] == hashlib.sha256(bad).hexdigest()
    assert not [p for p in recus.iterdir() if p.name.startswith(".")]  # no temporary left
    # Readable by the exchange account's group although the CLI runs with umask 077.
    for made in (recus, exchange.retours / "refus", *recus.iterdir()):
        wanted = 0o750 if made.is_dir() else 0o640
        assert stat.S_IMODE(made.stat().st_mode) & 0o777 == wanted, made

    # The box's state, refreshed by the intake round: no secret, no outside text.
    state = checked("etat", exchange.retours / "etat.json")
    assert state["version"] == balise.__version__
    assert [p["profil"] for p in state["praticiens"]] == ["p1"]
    assert state["praticiens"][0]["emetteur"] == EMITTER
    assert state["alertes"]["par_type"] == {"depot_set_aside": 1}
    assert state["alertes"]["total"] == 1
    roles = {c["role"] for c in state["certificats"]}
    assert "carte du titulaire" in roles and "certificat de chiffrement" in roles
    raw = (exchange.retours / "etat.json").read_text()
    assert SMTP_PASSWORD not in raw and "lien.lot" not in raw  # an alert's words stay out


@pytest.mark.mail
def test_lot_status_and_state_after_a_purge_follow_their_schemas(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA
) -> None:
    configure_pop3(box.ctx, mailboxes, tls_ca)
    box.ctx.params.set("recovery_passphrase", "phrase de secours du cabinet 42")
    lot_id = fresh_lot(box.ctx, 31)
    lot = box.ctx.lots.get(lot_id)
    assert lot is not None
    for raw in (arl_mail(31), noemie_mail(31)):
        mailboxes.deliver("bal1", raw)
    run = box.env.run("agent", "--once")
    assert run.returncode == 0, run.stdout + run.stderr
    retours = box.ctx.exchange(box.env.env).retours

    status = checked("statut", retours / EMITTER / f"lot-{lot.lot_date}-031.statut.json")
    assert status["schema"] == "balise.statut/1" and status["etat"] == "acknowledged"
    assert {r["type"] for r in status["retours"]} == {"arl", "noemie"}
    assert len(status["paiements"]) == 2

    state = checked("etat", retours / "etat.json")
    [p1] = state["praticiens"]
    assert p1["derniere_releve"] is not None  # the agent's purge
    assert state["sauvegarde"]["derniere"] is not None  # the agent's daily backup
    assert state["sauvegarde"]["trop_ancienne"] is False


def test_the_state_is_rewritten_when_the_journal_moved_or_it_is_stale_not_at_every_cycle(
    balise_env: BaliseEnv, pki: TestPKI
) -> None:
    ctx = box_at(balise_env, TEST_NOW)
    try:
        configure_box(ctx, pki)
        state = ctx.exchange(balise_env.env).retours / "etat.json"
        assert refresh_state(ctx, balise_env.env)
        assert checked("etat", state)["genere_le"] == TEST_NOW.isoformat(timespec="seconds")
    finally:
        ctx.close()

    def refresh_at(seconds: int, *, journal: bool = False) -> bool:
        later = box_at(balise_env, TEST_NOW + timedelta(seconds=seconds))
        try:
            if journal:  # something happened: an alert acknowledged, a purge, a lot's change
                later.journal.append("alert.acknowledged", "alert:1", {})
            return refresh_state(later, balise_env.env)
        finally:
            later.close()

    assert not refresh_at(1)  # an idle cycle: nothing written
    assert refresh_at(2, journal=True)
    assert not refresh_at(REFRESH_S + 1)
    assert refresh_at(REFRESH_S + 2)  # the heartbeat: genere_le tells the agent is alive
    held = json.loads(state.read_text())
    assert held["genere_le"] == (TEST_NOW + timedelta(seconds=REFRESH_S + 2)).isoformat(
        timespec="seconds"
    )


def test_receipts_and_reports_are_kept_ninety_days_then_removed_once_a_day(
    balise_env: BaliseEnv, pki: TestPKI
) -> None:
    ctx = box_at(balise_env, TEST_NOW)
    try:
        configure_box(ctx, pki)
        exchange = ctx.exchange(balise_env.env)
        for name in ("ancien.lot", "recent.lot"):
            _drop(exchange.root, name, f"pas un lot : {name}\n".encode())
        assert len(list(ctx.intake(balise_env.env).scan_depot())) == 2
        recus, refus = exchange.retours / "recus", exchange.retours / "refus"
        for days, name in ((KEEP_DAYS + 1, "ancien.lot"), (KEEP_DAYS - 1, "recent.lot")):
            when = (TEST_NOW - timedelta(days=days)).timestamp()
            for made in (recus / f"{name}.json", refus / f"{name}.txt"):
                os.utime(made, (when, when))

        assert prune_receipts(ctx, balise_env.env) == 2
        assert sorted(p.name for p in recus.iterdir()) == ["recent.lot.json"]
        assert sorted(p.name for p in refus.iterdir()) == ["recent.lot.txt"]
        assert (exchange.retours / "etat.json").exists()  # only receipts and reports go
        assert prune_receipts(ctx, balise_env.env) == 0  # once a day
    finally:
        ctx.close()
