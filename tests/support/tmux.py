"""The real `balise demo` in a real terminal: a tmux session of its own that the tests read (the
screen as text) and type into, and the marks of the tests that run it (the demo needs pcscd,
Dovecot, SoftHSM2 and tmux)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import time

import pytest

DEMO_MARKS = [
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
QUIT_TIMEOUT_S = 30.0


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
        # "--": a text that begins with "-" (a random password) is typed, not read as flags.
        self._tmux("send-keys", "-t", self.name, "-l", "--", text)

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
