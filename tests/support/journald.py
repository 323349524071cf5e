"""A real systemd-journald, private to a test: started in its own mount namespace (tmpfs on
/run/systemd and /run/log, and on /var/log/journal when the machine has one), so it listens on its
own /run/systemd/journal/socket and writes its own volatile journal. The test reaches both through
/proc/<pid>/root; ``run_inside`` starts a command in that namespace, where the socket is at its
usual path (as on the box). ``journalctl --directory`` reads what it stored — the reader a
technician uses. Needs root (mount namespace); skipped otherwise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

JOURNALD = Path("/lib/systemd/systemd-journald")
START_S = 15.0
READ_S = 15.0

_SCRIPT = """set -e
for d in /run/systemd /run/log; do mkdir -p "$d"; mount -t tmpfs -o mode=0755 tmpfs "$d"; done
mkdir -p /run/systemd/journal
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
exec "$0"
"""


@dataclass
class Journald:
    proc: subprocess.Popen[bytes]

    @property
    def root(self) -> Path:
        return Path(f"/proc/{self.proc.pid}/root")

    @property
    def socket(self) -> Path:
        """The native protocol's socket, as the test (outside the namespace) reaches it."""
        return self.root / "run/systemd/journal/socket"

    @property
    def directory(self) -> Path:
        return self.root / "run/log/journal"

    def run_inside(
        self, args: Sequence[str], *, env: dict[str, str], timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """``args`` in journald's mount namespace: /run/systemd/journal/socket is this one."""
        return subprocess.run(
            ["nsenter", f"--mount=/proc/{self.proc.pid}/ns/mnt", "--", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def entries(self, *matches: str, priority: str | None = None) -> list[dict[str, Any]]:
        """What ``journalctl --directory ... -o json`` prints for these matches."""
        args = ["journalctl", f"--directory={self.directory}", "-o", "json", "--no-pager"]
        if priority is not None:
            args += ["-p", priority]
        result = subprocess.run(
            [*args, *matches], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode in (0, 1), result.stderr
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def wait_for(self, *matches: str, count: int = 1) -> list[dict[str, Any]]:
        """The entries for ``matches`` once there are ``count`` of them (bounded wait)."""
        deadline = time.monotonic() + READ_S
        while True:
            found = self.entries(*matches)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def raw_bytes(self) -> bytes:
        """Every byte journald wrote (to look for a secret in clear)."""
        return b"".join(p.read_bytes() for p in sorted(self.directory.rglob("*.journal*")))


@pytest.fixture
def journald() -> Iterator[Journald]:
    if os.geteuid() != 0:
        pytest.skip("a private journald needs root (a mount namespace; CI runs as root)")
    if not JOURNALD.exists() or shutil.which("journalctl") is None:
        pytest.skip("systemd-journald is not installed")
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", _SCRIPT, str(JOURNALD)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    daemon = Journald(proc)
    try:
        deadline = time.monotonic() + START_S
        while not (daemon.socket.is_socket() and list(daemon.directory.rglob("*.journal"))):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                pytest.fail(f"systemd-journald did not start: {err}")
            time.sleep(0.05)
        yield daemon
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
