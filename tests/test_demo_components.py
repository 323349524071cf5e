"""`balise demo` without the kiosk: every component starts on the embedded defaults, one agent cycle
takes the demo lots and purges the spam, and everything the demo started is stopped at exit."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from balise.app.context import open_context
from balise.app.demo import INVALID_LOT_NAME
from balise.domain.lotstate import LotState
from balise.sim.pcscd import PcscdRunner, running_pcscd_pids
from tests.support.demo_support import BALISE, processes_mentioning

pytestmark = [pytest.mark.pcsc, pytest.mark.mail, pytest.mark.softhsm]

RUN_TIMEOUT_S = 120
STOP_TIMEOUT_S = 45  # the agent's step in progress may take up to 30 s to end


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BALISE), "demo", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def assert_all_stopped(base: Path, output: str) -> None:
    assert running_pcscd_pids() == []
    assert processes_mentioning(str(base)) == []
    # pytest's long paths make the demo put Dovecot (its sockets) in a short folder of its own.
    for elsewhere in re.findall(r"Dovecot dans (\S+) :", output):
        assert processes_mentioning(elsewhere) == []
        assert not Path(elsewhere).exists()


@pytest.mark.usefixtures("pcscd_for_demo")
def test_one_cycle_takes_the_lots_quarantines_the_bad_file_and_purges_the_spam(
    tmp_path: Path,
) -> None:
    base = tmp_path / "demo"
    done = demo("--no-kiosk", "--once", "--keep", "--dir", str(base))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Lots acceptés : 5 · fichiers refusés : 1" in done.stdout
    assert "BAL : 1 message(s) avant la relève, 0 après" in done.stdout
    assert "Messages supprimés de la BAL : 1 · alertes : 1" in done.stdout
    assert_all_stopped(base, done.stdout)

    ctx = open_context(
        base / "data", actor="test", env={**os.environ, "BALISE_KEK_FILE": str(base / "demo.kek")}
    )
    try:
        lots = ctx.lots.lots()
        assert sorted(lot.lot_number for lot in lots) == ["001", "002", "003", "004", "005"]
        assert {lot.state for lot in lots} == {LotState.READY}
        assert ctx.params.get("mode") == "demo"
        (quarantined,) = ctx.lots.quarantined()
        assert quarantined.name == INVALID_LOT_NAME
        (alert,) = ctx.tracking().alerts()
        assert alert.kind == "mail_unknown" and "inconnu" in alert.fr
    finally:
        ctx.close()
    refusal = base / "echange" / "retours" / "refus" / f"{INVALID_LOT_NAME}.txt"
    assert "total annoncé" in refusal.read_text()
    assert list((base / "echange" / "depot" / "new").iterdir()) == []


@pytest.mark.usefixtures("pcscd_for_demo")
def test_a_second_demo_in_the_same_folder_starts_afresh_and_leaves_it_empty(
    tmp_path: Path,
) -> None:
    base = tmp_path / "demo"
    first = demo("--no-kiosk", "--once", "--keep", "--dir", str(base))
    assert first.returncode == 0, first.stdout + first.stderr
    second = demo("--no-kiosk", "--once", "--dir", str(base))
    # The same five lots again: accepted, not "already imported" — the old data was reset.
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Lots acceptés : 5 · fichiers refusés : 1" in second.stdout
    assert list(base.iterdir()) == []
    assert_all_stopped(base, first.stdout + second.stdout)


def test_a_folder_that_is_not_a_demo_is_refused_untouched(tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    done = demo("--no-kiosk", "--once", "--dir", str(tmp_path))
    assert done.returncode == 1
    assert "n'est pas vide et ne vient pas d'une démonstration" in done.stderr
    assert precious.read_text() == "keep me"


def test_another_pcscd_is_named_with_how_to_stop_it(pcscd: PcscdRunner, tmp_path: Path) -> None:
    done = demo("--no-kiosk", "--once", "--dir", str(tmp_path / "demo"))
    assert done.returncode == 1
    assert f"Un autre pcscd tourne déjà (pid {pcscd.pid}" in done.stderr
    assert f"kill {pcscd.pid}" in done.stderr
    assert pcscd.pid in running_pcscd_pids()  # the demo never touches someone else's pcscd


@contextlib.contextmanager
def running_demo(base: Path, log: Path) -> Iterator[subprocess.Popen[str]]:
    """`balise demo --no-kiosk` in ``base``, its output in ``log``; killed if still running."""
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(BALISE), "demo", "--no-kiosk", "--dir", str(base)],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def wait_for_line(process: subprocess.Popen[str], log: Path, line: str, every: float) -> None:
    """Until ``line`` is in the demo's output, looked for every ``every`` seconds (bounded)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while line not in log.read_text():  # bounded by the deadline
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(every)


@pytest.mark.usefixtures("pcscd_for_demo")
def test_sigterm_stops_everything_the_demo_started(tmp_path: Path) -> None:
    base, log = tmp_path / "demo", tmp_path / "demo.log"
    with running_demo(base, log) as process:
        wait_for_line(process, log, "agent : service de fond démarré", 0.1)
        assert running_pcscd_pids() != []
        (dovecot_dir,) = re.findall(r"Dovecot dans (\S+) :", log.read_text()) or [str(base)]
        assert processes_mentioning(dovecot_dir) != []
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STOP_TIMEOUT_S) == 0
    assert "tout ce qu'elle avait démarré est arrêté" in log.read_text()
    assert_all_stopped(base, log.read_text())
    assert not base.exists()  # the demo made this folder: it removes it


def tgkill(pid: int, tid: int, sig: int) -> None:
    """A signal to one thread of another process (glibc's tgkill; Python has none)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.tgkill(pid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")


@pytest.mark.usefixtures("pcscd_for_demo")
def test_a_sigterm_the_kernel_gives_to_another_thread_still_stops_the_demo(
    tmp_path: Path,
) -> None:
    """The kernel may hand a process's signal to any of its threads; Python runs the handler in
    the main thread when it next runs Python code. CI saw the demo asleep for an hour there."""
    base, log = tmp_path / "demo", tmp_path / "demo.log"
    with running_demo(base, log) as process:
        wait_for_line(process, log, "Données : ", 0.1)  # the main thread is waiting
        tasks = Path(f"/proc/{process.pid}/task").iterdir()
        others = sorted(
            int(t.name) for t in tasks if t.name.isdigit() and t.name != str(process.pid)
        )
        assert others, "the demo runs its agent in a thread of its own"
        tgkill(process.pid, others[0], signal.SIGTERM)
        assert process.wait(timeout=STOP_TIMEOUT_S) == 0
    assert "tout ce qu'elle avait démarré est arrêté" in log.read_text()
    assert_all_stopped(base, log.read_text())


@pytest.mark.usefixtures("pcscd_for_demo")
@pytest.mark.parametrize(
    "line",
    [
        "serveur POP3 Dovecot",  # mid-start: Dovecot starting, the OCT simulator not yet
        "Tout est démarré.",  # the agent's thread starting (CI saw it run on, stop 27)
    ],
)
def test_a_sigterm_while_the_demo_starts_still_stops_all_of_it(tmp_path: Path, line: str) -> None:
    base, log = tmp_path / "demo", tmp_path / "demo.log"
    with running_demo(base, log) as process:
        # A 1 ms watch: as close to the line as a test can get.
        wait_for_line(process, log, line, 0.001)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STOP_TIMEOUT_S) == 0, log.read_text()
    output = log.read_text()
    assert output.rstrip().endswith("tout ce qu'elle avait démarré est arrêté."), output
    assert_all_stopped(base, output)
    # Nothing the demo started outlives it: no agent left writing into the removed folder.
    time.sleep(1)
    assert not base.exists(), sorted(str(p) for p in base.rglob("*"))
