"""The real `balise demo` in a real terminal (tmux): a newcomer reads the screen, inserts the demo
card, signs and sends the lots, sees the ARLs arrive and the spam alert, quits — and the demo
leaves no process behind."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from balise.sim.pcscd import running_pcscd_pids
from tests.support.demo_support import BALISE, processes_mentioning

pytestmark = [
    pytest.mark.slow,
    pytest.mark.pcsc,
    pytest.mark.mail,
    pytest.mark.softhsm,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.skipif(
        importlib.util.find_spec("balise.ui.app") is None
        or importlib.util.find_spec("balise.app.kiosk") is None,
        reason="the kiosk (balise.ui.app, balise.app.kiosk) is not there yet",
    ),
]

START_TIMEOUT_S = 60.0
STEP_TIMEOUT_S = 20.0
ARL_TIMEOUT_S = 90.0  # the demo agent purges the BAL every 15 s
QUIT_TIMEOUT_S = 30.0
DOVECOT_ELSEWHERE = "balise-demo-dovecot-"


class Terminal:
    """One tmux session running a command in a 120x40 terminal, on a tmux server of its own (so
    no other tmux user's settings or clients change its size)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.name, *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=check,
        )

    def start(self, command: str) -> None:
        # The test session exports COLUMNS=80 and LINES=24 (a plugin does): the program would
        # believe them rather than the terminal it runs in.
        command = f"env -u COLUMNS -u LINES {command}"
        self._tmux("new-session", "-d", "-s", self.name, "-x", "120", "-y", "40", command)

    def alive(self) -> bool:
        return self._tmux("has-session", "-t", self.name, check=False).returncode == 0

    def screen(self) -> str:
        """The screen with every run of blanks (line breaks too) made one space: a line that
        wraps still reads the same."""
        raw = self._tmux("capture-pane", "-t", self.name, "-p", check=False).stdout
        return " ".join(raw.split())

    def press(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.name, *keys)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", self.name, "-l", text)

    def wait_for(self, *texts: str, timeout: float = STEP_TIMEOUT_S, nudge: bool = False) -> str:
        """Wait (bounded) until every text is on the screen; return the screen. With ``nudge``,
        open Retours and come back now and then, which makes Accueil read its figures again."""
        deadline = time.monotonic() + timeout
        last_nudge = time.monotonic()
        while True:  # bounded by the deadline
            screen = self.screen()
            if all(text in screen for text in texts):
                return screen
            if not self.alive():
                pytest.fail(f"the demo ended while waiting for {texts!r}:\n{screen}")
            if time.monotonic() >= deadline:
                pytest.fail(f"not on screen after {timeout} s: {texts!r}\n{screen}")
            if nudge and time.monotonic() - last_nudge > 5:
                self.press("r")
                self.wait_for("Retours")
                self.press("Escape")
                self.wait_for("Accueil")
                last_nudge = time.monotonic()
            time.sleep(0.3)

    def kill(self) -> None:
        self._tmux("kill-server", check=False)


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
    assert processes_mentioning(DOVECOT_ELSEWHERE) == []
    assert dovecot_dirs_elsewhere() <= dovecot_before
    assert not base.exists()
