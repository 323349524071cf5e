"""Every `balise` command that reports something has `--json`, and what it writes is the shape
documented in docs/schemas/cli/<command>.schema.json (checked by jsonschema, the standard
validator), on a real data dir filled with lots in every state, returns, payments and alerts."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from balise.cli import WITHOUT_JSON, build_parser
from balise.sim.pki import TestPKI
from balise.sim.softhsm import SoftHSM
from tests.support.balise_env import BaliseEnv
from tests.support.box import Box
from tests.support.cli_tree import leaves
from tests.support.clock import TEST_NOW, TEST_TODAY
from tests.support.crl_support import CrlServer, make_crl
from tests.support.lot_corpus import valid_lot
from tests.support.pki_fixtures import MakeToken
from tests.support.sauvegarde_support import RECOVERY, fill_box

SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "schemas" / "cli"


def schema_name(command: str) -> str:
    return command.replace(" ", "-")


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def check(name: str, result: subprocess.CompletedProcess[str]) -> Any:
    """The document on stdout, validated against the command's schema (or the error schema when
    the command failed); the exit status agrees with it."""
    assert result.returncode in (0, 1), result.stdout + result.stderr
    document = json.loads(result.stdout)
    if isinstance(document, dict) and set(document) == {"error"}:
        assert result.returncode == 1, result.stdout
        validator("error").validate(document)
        return document
    validator(name).validate(document)
    return document


def test_every_reporting_command_has_json_and_a_schema() -> None:
    commands = dict(leaves(build_parser()))
    assert {"doctor", "lots list", "journal verify", "backup", "params get"} <= set(commands)
    for command, parser in commands.items():
        options = {s for a in parser._actions for s in a.option_strings}
        if command in WITHOUT_JSON:
            assert "--json" not in options, command
            continue
        assert "--json" in options, f"balise {command} has no --json"
        assert (SCHEMAS / f"{schema_name(command)}.schema.json").is_file(), command
        validator(schema_name(command))
    documented = {p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json")}
    expected = {schema_name(c) for c in commands if c not in WITHOUT_JSON} | {"error"}
    assert documented == expected


def test_every_json_output_matches_its_schema(
    box: Box, pki: TestPKI, crl_server: CrlServer, other_box: BaliseEnv, tmp_path: Path
) -> None:
    filled = fill_box(box)
    # The IGC-Santé CAs trusted, and their revocation list served over loopback HTTP.
    box.ctx.params.set("igc_roots", pki.root.cert_pem.read_text())
    box.ctx.params.set("igc_intermediates", pki.intermediate.cert_pem.read_text())
    box.ctx.params.set("crl_url", crl_server.url("/igc.crl"))
    # The SESAM-Vitale directory configured, but nothing answers on its port.
    box.ctx.params.set("sesam_vitale_directory", "ldap://127.0.0.1:1")
    box.ctx.params.set("sesam_vitale_roots", pki.root.cert_pem.read_text())
    crl_server.files["/igc.crl"] = make_crl(
        pki.intermediate,
        this_update=TEST_NOW - timedelta(hours=2),
        next_update=TEST_NOW + timedelta(days=7),
        revoked=[],
        number=1,
    )
    env = box.env
    seen: dict[str, Any] = {}

    def run(*args: str, stdin: str = "", on: BaliseEnv = env) -> Any:
        words = [a for a in args if not a.startswith("-") and "/" not in a and not a.isdigit()]
        command = next(c for c in known if c.split() == words[: len(c.split())])
        result = on.run(*args, "--json", stdin=stdin)
        seen[schema_name(command)] = document = check(schema_name(command), result)
        return document

    known = sorted(
        (c for c, _ in leaves(build_parser()) if c not in WITHOUT_JSON),
        key=lambda c: -len(c.split()),
    )
    # What a technician and the practice software ask of a box in service.
    doctor = run("doctor")
    assert {c["code"] for c in doctor["checks"]} >= {"data_dir", "kek", "database", "journal"}
    assert run("journal", "verify")["ok"]
    assert run("journal", "show")[0]["seq"] == 1
    params = run("params", "list")
    assert any(p["name"] == "recovery_passphrase" and p["value"] == "********" for p in params)
    assert run("params", "get", "mode")["defined"]
    assert run("params", "set", "arl_overdue_days", "6")["saved"]
    assert run("params", "rotate-key")["reencrypted"] > 0
    assert run("kek", "create", str(tmp_path / "new.kek"))["created"]

    good, bad = tmp_path / "041.lot", tmp_path / "abime.lot"
    good.write_bytes(valid_lot(TEST_TODAY, lot_number=41))
    bad.write_bytes(b"pas un lot")
    imported = run("import", str(good), str(bad), str(good))
    assert [f["outcome"] for f in imported["files"]] == ["accepted", "refused", "already"]
    depot = env.home / "echange" / "depot" / "new"
    depot.mkdir(parents=True, exist_ok=True)
    (depot / "depose.lot").write_bytes(valid_lot(TEST_TODAY, lot_number=40))
    assert [f["name"] for f in run("intake")["files"]] == ["depose.lot"]

    listed = run("lots", "list")
    assert {lot["state"] for lot in listed["lots"]} >= {"ready", "sent", "cancelled"}
    assert listed["quarantine"][-1]["name"] == "abime.lot"
    shown = run("lots", "show", str(filled.sample_lot))
    assert shown["lot"]["id"] == filled.sample_lot and shown["history"]
    ready = next(lot["id"] for lot in listed["lots"] if lot["state"] == "ready")
    assert run("lots", "cancel", str(ready))["state"] == "cancelled"
    run("lots", "resend", str(filled.sample_lot))  # not overdue yet: the error object
    # No mail server answers here: sending leaves the signed lots waiting, with the reason.
    sent = run("send")
    assert sent["profiles"] and sent["profiles"][0]["profile"] == "p1"
    run("purge")
    returns = run("returns", "list")
    assert returns["returns"] and returns["payments"]
    alerts = run("alerts", "list")
    assert run("alerts", "ack", str(alerts[0]["id"]))["acknowledged"]
    assert run("alerts", "list", "--all")[0]["acknowledged"]

    assert any(e["purpose"] == "dns" for e in run("egress", "list"))
    assert run("relay", "status")["open"] is False  # no relay started on this box
    assert run("crl", "fetch")[0]["outcome"] == "stored"
    fetched = run("organisms", "fetch", "--all")
    assert {o["outcome"] for o in fetched} <= {"unreachable", "skipped"}
    assert not any("Error" in o["fr"] or "Exception" in o["fr"] for o in fetched), fetched
    assert run("organisms", "list")

    archive = Path(run("backup", "--to", str(tmp_path / "sauvegardes"))["path"])
    assert run("backup", "verify", str(archive))["box_id"]
    extracted = run(
        "backup", "extract", str(archive), "--to", str(tmp_path / "ouverte"), stdin=RECOVERY + "\n"
    )
    assert Path(extracted["database"]).is_file()
    restored = run("restore", str(archive), stdin=RECOVERY + "\n", on=other_box)
    assert restored["head_seq"] > 0
    assert run("retention", "run")["cutoff"]
    # What the image's root helpers ask around a self-update (issue 14).
    assert run("update", "policy")["hold"] is False
    assert run("update", "gate", "--timeout", "5")["ready"]  # stdin at its end: released at once
    assert run("update", "record", "2.0")["version"] == "2.0"
    assert run("update", "health")["resolved"]["outcome"] == "rolled_back"

    # Only `sign`, which needs a card, is left to the test below; the rest succeeded (or, for
    # lots resend of a lot not overdue, gave the error object).
    errors = {name for name, doc in seen.items() if isinstance(doc, dict) and "error" in doc}
    assert errors == {"lots-resend"}, errors
    assert set(seen) == {schema_name(c) for c in known} - {"sign"}


@pytest.mark.softhsm
def test_sign_json_matches_its_schema(
    box: Box, pki: TestPKI, softhsm: SoftHSM, make_token: MakeToken
) -> None:
    info = make_token(pin="1234")
    box.ctx.params.set("mode", "demo")  # the sandbox clock is never NTP-synchronized
    box.ctx.params.set("pkcs11_module", str(softhsm.module))
    for n in (1, 2):
        data = valid_lot(TEST_TODAY, lot_number=n)
        assert box.ctx.intake().import_bytes(f"{n}.lot", data, f"t:{n}").accepted
    env = dict(box.env.env, **softhsm.env())
    result = box.env.run("sign", "--token", info.label, "--json", stdin="1234\n", env=env)
    document = check("sign", result)
    assert result.returncode == 0 and len(document["signed"]) == 2, result.stderr
    assert document["card"]["rpps"] and document["stopped"] is None
    data = valid_lot(TEST_TODAY, lot_number=3)
    assert box.ctx.intake().import_bytes("3.lot", data, "t:3").accepted
    wrong = box.env.run("sign", "--token", info.label, "--json", stdin="9999\n", env=env)
    assert wrong.returncode == 1 and "Code faux" in check("sign", wrong)["error"]["fr"]


def test_failures_and_usage_errors_in_json(balise_env: BaliseEnv) -> None:
    failed = balise_env.run("lots", "show", "99", "--json")
    assert failed.returncode == 1
    assert check("lots-show", failed)["error"]["code"] == "LOT_UNKNOWN"
    assert "lot 99 inconnu" in failed.stderr
    usage = balise_env.run("lots", "show", "quatre", "--json")
    assert usage.returncode == 2
    document = json.loads(usage.stdout)
    validator("error").validate(document)
    assert document["error"]["code"] == "USAGE" and "quatre" in document["error"]["fr"]
