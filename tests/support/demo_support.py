"""Support for the `balise demo` tests: the machine's one pcscd handed over to the demo (and taken
back after), and the processes a demo left behind."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from balise.sim.pcscd import PcscdRunner, running_pcscd_pids

BALISE = Path(sys.executable).with_name("balise")


def processes_mentioning(text: str) -> list[str]:
    """``pid: command line`` of every live process whose command line contains ``text``."""
    found: list[str] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        line = raw.replace(b"\0", b" ").decode("utf-8", "replace")
        if text in line and state != "Z":
            found.append(f"{entry.name}: {line.strip()}")
    return found


@pytest.fixture
def pcscd_for_demo(pcscd: PcscdRunner) -> Iterator[None]:
    """The demo starts its own pcscd and refuses while another runs (one per machine): stop the
    session's pcscd — its fixture also holds the machine-wide pcscd lock — and start it again
    after the test."""
    pcscd.stop()
    try:
        assert running_pcscd_pids() == [], "a pcscd not started by the tests is running"
        yield
    finally:
        pcscd.start()
