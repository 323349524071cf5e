"""The real `balise demo` in a real terminal (tmux): a newcomer reads the screen, inserts the demo
card, signs and sends the lots, sees the ARLs arrive and the spam alert, quits — and the demo
leaves no process behind."""

from __future__ import annotations

import re
import shlex
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from balise.sim.pcscd import running_pcscd_pids
from tests.support.demo_support import BALISE, processes_mentioning
from tests.support.tmux import DEMO_MARKS, QUIT_TIMEOUT_S, START_TIMEOUT_S, Terminal

pytestmark = DEMO_MARKS

ARL_TIMEOUT_S = 90.0  # the demo agent purges the BAL every 15 s
DOVECOT_ELSEWHERE = "balise-demo-dovecot-"


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal(f"balise-demo-test-{uuid.uuid4().hex[:12]}")
    try:
        yield term
    finally:
        if term.alive():
            # SIGHUP to the demo: it stops everything it started, as on a closed terminal.
            term.kill()
            deadline = time.monotonic() + QUIT_TIMEOUT_S
            while running_pcscd_pids() and time.monotonic() < deadline:  # bounded
                time.sleep(0.2)


def dovecot_dirs_elsewhere() -> set[Path]:
    return set(Path("/tmp").glob(f"{DOVECOT_ELSEWHERE}*"))


@pytest.mark.usefixtures("pcscd_for_demo")
def test_a_newcomer_signs_sends_sees_the_arls_and_the_spam_alert_then_quits(
    terminal: Terminal, tmp_path: Path
) -> None:
    base = tmp_path / "demo"
    status = tmp_path / "exit-status"
    dovecot_before = dovecot_dirs_elsewhere()
    terminal.start(
        f"{shlex.quote(str(BALISE))} demo --dir {shlex.quote(str(base))}; "
        f"echo $? > {shlex.quote(str(status))}"
    )

    # Accueil: the virtual reader, no card yet, and the demo's own help line.
    terminal.wait_for("Accueil", "Lecteur : Virtual PCD", "touche C", timeout=START_TIMEOUT_S)
    screen = terminal.wait_for("Carte : aucune carte")
    assert "code 1234" in screen

    # The demo key inserts the CPS card; the five demo lots are ready, the invalid file is not.
    terminal.press("c")
    terminal.wait_for("Carte : carte CPS3", "5 prêt(s) à signer", nudge=True)

    terminal.press("s")
    terminal.wait_for("Code de la carte (PIN)", "Essais restants : 3")
    terminal.type("1234")
    terminal.press("Enter")
    screen = terminal.wait_for("Lots à signer pour p1", "Lot 005")
    assert "Lot 006" not in screen  # the invalid file never became a lot
    terminal.press("Enter")
    terminal.wait_for("Signer 5 lot(s)")
    terminal.press("Enter")
    terminal.wait_for("5 lot(s) signé(s)", "5 lot(s) envoyé(s)", "Retirez votre carte")
    terminal.press("Enter")
    terminal.wait_for("Accueil")
    terminal.press("c")
    terminal.wait_for("Carte : aucune carte", "5 envoyé(s) sans ARL", nudge=True)

    # No key to press: the agent purges the BAL and the OCT simulator's ARLs arrive.
    screen = terminal.wait_for("5 accusé(s)", timeout=ARL_TIMEOUT_S, nudge=True)
    assert "0 rejeté(s)" in screen
    terminal.press("r")
    screen = terminal.wait_for("Retours", "Lot 001 accepté", "payés")
    assert re.search(r"Lot 00[1-5] rejeté", screen) is None
    terminal.press("Escape")

    # The spam: taken out of the BAL unopened, and said so.
    terminal.wait_for("Alertes : 1 à lire")
    terminal.press("a")
    terminal.wait_for("inconnu(s) retiré(s) de la BAL")
    terminal.press("Escape")
    terminal.wait_for("Accueil")

    # Ctrl+Q quits the demo (not a kiosk): everything it started stops, the terminal closes.
    terminal.press("C-q")
    deadline = time.monotonic() + QUIT_TIMEOUT_S
    while terminal.alive():  # bounded by the deadline
        assert time.monotonic() < deadline, terminal.screen()
        time.sleep(0.2)
    assert status.read_text().strip() == "0"
    assert running_pcscd_pids() == []
    assert processes_mentioning(str(base)) == []
    # This demo's own Dovecot (another test's leftover is that test's failure, not this one's).
    theirs = [str(d) for d in dovecot_before]
    mine = [p for p in processes_mentioning(DOVECOT_ELSEWHERE) if not any(d in p for d in theirs)]
    assert mine == []
    assert dovecot_dirs_elsewhere() <= dovecot_before
    assert not base.exists()
