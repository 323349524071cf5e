"""A one-shot unit's failure reaches the system journal at priority err: when stderr is the
journal's stream (JOURNAL_STREAM names it), the failure line carries the ``<3>`` prefix systemd
reads (SyslogLevelPrefix); anywhere else (a terminal, a pipe) the line is plain words."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.balise_env import BALISE, BaliseEnv


def _run_with_stderr_file(balise_env: BaliseEnv, path: Path, journal: bool) -> str:
    env = balise_env.env
    with path.open("w") as err:
        st = os.fstat(err.fileno())
        if journal:
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        done = subprocess.run(
            [BALISE, "lots", "show", "999999"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    return path.read_text()


def test_a_failure_is_written_at_priority_err_into_the_journal_stream(
    balise_env: BaliseEnv, tmp_path: Path
) -> None:
    assert balise_env.run("params", "set", "mode", "test").returncode == 0
    journal = _run_with_stderr_file(balise_env, tmp_path / "journal-stream", journal=True)
    assert journal.startswith("<3>erreur : "), journal
    plain = _run_with_stderr_file(balise_env, tmp_path / "terminal", journal=False)
    assert plain.startswith("erreur : ") and "<3>" not in plain
    assert journal[3:] == plain  # the same words, only the priority added
