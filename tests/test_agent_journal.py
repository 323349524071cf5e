"""What a technician reads in the system journal about the agent (issue 16): `balise agent` run as
systemd runs it, its records sent to a real systemd-journald (private, tests/support/journald.py)
and read back with journalctl. Representative failures — a mail server refusing the mailbox's
password (real aiosmtpd, TLS + AUTH), a backup with no recovery passphrase, a full disk (a real
size-capped tmpfs) — each at warning or err with its code; routine work at info; no Python repr;
and the password, a sentinel, in no record and in no byte journald wrote."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from balise.adapters.kek import create_key_file
from balise.adapters.systemd import JournalHandler
from balise.app.agent import Agent
from balise.sim.pki import TestPKI
from balise.sim.smtpd import SmtpServer
from tests.support.balise_env import BALISE, BaliseEnv
from tests.support.box import Box, configure_box
from tests.support.clock import TEST_TODAY
from tests.support.journald import Journald
from tests.support.lot_corpus import valid_lot
from tests.support.mail_fixtures import TlsCA
from tests.support.signed_lots import configure_smtp, sign_lots
from tests.support.small_fs import SmallFs

SENTINEL = "BALISE-SENTINEL-smtp-7c2e90"
# A Python repr shown to a person: `DestinationResult(dest=..., error_code='...')`.
REPR = re.compile(r"\b[A-Z][A-Za-z]+\([a-z_]+=")


def _codes(entries: list[dict[str, Any]]) -> dict[str, str]:
    """BALISE_CODE -> PRIORITY of each record (a code seen twice keeps the same priority)."""
    return {e["BALISE_CODE"]: e["PRIORITY"] for e in entries if "BALISE_CODE" in e}


def _said_plainly(entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        message = entry["MESSAGE"]
        assert not REPR.search(message), message
        assert "Traceback" not in message
        assert f"[{entry['BALISE_CODE']}]" in message  # the code, in the words a person reads


@pytest.mark.mail
def test_the_agent_under_systemd_journals_its_problems_at_their_priority(
    box: Box, pki: TestPKI, smtp_implicit: SmtpServer, tls_ca: TlsCA, journald: Journald
) -> None:
    ctx = box.ctx
    ctx.params.set("code6", "123456", profile="p1")
    sign_lots(ctx, pki, [1, 2])
    # The server is there and speaks TLS; it refuses the password (a sentinel).
    configure_smtp(ctx, smtp_implicit, tls_ca, password=SENTINEL)
    # No recovery passphrase: the daily backup cannot be made (configure_box sets none).
    assert ctx.params.get("recovery_passphrase") is None

    # As systemd starts it: INVOCATION_ID set, the journal's socket at its usual path.
    env = {**box.env.env, "INVOCATION_ID": "0123456789abcdef0123456789abcdef"}
    done = journald.run_inside([BALISE, "agent", "--once"], env=env)

    assert done.returncode in (0, 1), done.stderr
    # The journal is the channel: nothing of it on stdout or stderr.
    assert done.stdout == "" and "BACKUP_NO_PASSPHRASE" not in done.stderr, done.stderr
    entries = journald.wait_for("SYSLOG_IDENTIFIER=balise-agent", "BALISE_CODE=AGENT_STOPPED")
    assert entries, journald.entries()
    everything = journald.entries("SYSLOG_IDENTIFIER=balise-agent")
    warned = journald.entries("SYSLOG_IDENTIFIER=balise-agent", priority="warning")
    # Exactly the two problems, at warning; the routine at info.
    assert _codes(warned) == {"SMTP_AUTH": "4", "BACKUP_NO_PASSPHRASE": "4"}, warned
    codes = _codes(everything)
    assert codes["AGENT_STARTED"] == codes["AGENT_STOPPED"] == "6"
    _said_plainly(everything)
    backup = next(e for e in warned if e["BALISE_CODE"] == "BACKUP_NO_PASSPHRASE")
    assert backup["MESSAGE"].startswith("sauvegarde vers ")
    assert backup["BALISE_DEST"].endswith("sauvegardes")
    smtp = next(e for e in warned if e["BALISE_CODE"] == "SMTP_AUTH")
    assert smtp["BALISE_PROFILE"] == "p1" and smtp["BALISE_WAITING"] == "2"
    assert smtp["_PID"] == smtp["SYSLOG_PID"]
    # The password went to the server (and was refused); never to the journal.
    assert all(SENTINEL not in str(e) for e in journald.entries())
    assert SENTINEL.encode() not in journald.raw_bytes()


@pytest.fixture
def agent_to_journald(journald: Journald) -> Iterator[Journald]:
    """The ``balise.agent`` logger sent to the private journald (an agent in this process)."""
    import logging

    log = logging.getLogger("balise.agent")
    handler = JournalHandler("balise-agent-test", socket_path=journald.socket)
    log.addHandler(handler)
    previous = log.level
    log.setLevel(logging.INFO)
    try:
        yield journald
    finally:
        log.removeHandler(handler)
        log.setLevel(previous)
        handler.close()


def test_a_full_disk_is_an_error_with_its_code_and_the_recovery_is_info(
    small_fs: Callable[[int], SmallFs], pki: TestPKI, tmp_path: Path, agent_to_journald: Journald
) -> None:
    journald = agent_to_journald
    fs = small_fs(16 * 1024)
    kek = tmp_path / "balise.kek"
    create_key_file(kek)
    ctx = BaliseEnv(fs.root / "data", kek).context()
    configure_box(ctx, pki)
    depot = ctx.data_dir / "echange" / "depot"
    for sub in ("tmp", "new"):
        (depot / sub).mkdir(parents=True, exist_ok=True)
    (depot / "tmp" / "lot7.lot").write_bytes(valid_lot(TEST_TODAY, lot_number=7))
    (depot / "tmp" / "lot7.lot").rename(depot / "new" / "lot7.lot")
    env = {"BALISE_HOME": str(ctx.data_dir), "BALISE_KEK_FILE": str(kek)}
    agent = Agent(ctx, env=env, interval_scale=0.001)
    try:
        fs.fill()
        assert "intake" in agent.cycle().failed
        fs.free()
        time.sleep(0.2)  # past the step's backoff (scaled down)
        assert agent.cycle().failed == []
    finally:
        agent.close()
        ctx.close()
    match = "SYSLOG_IDENTIFIER=balise-agent-test"
    entries = journald.wait_for(match, "BALISE_CODE=STEP_RECOVERED")
    assert entries, journald.entries(match)
    everything = journald.entries(match)
    failed = [e for e in everything if e.get("BALISE_STEP") == "intake"]
    assert [(e["BALISE_CODE"], e["PRIORITY"]) for e in failed] == [
        ("DISK_FULL", "3"),  # err: the box itself is at risk
        ("STEP_RECOVERED", "6"),
    ]
    assert "Disque plein" in failed[0]["MESSAGE"] and failed[0]["BALISE_FAILURES"] == "1"
    assert _codes(everything)["INTAKE_TAKEN"] == "6"
    _said_plainly(everything)
