"""pytest fixtures for udev hot-plug tests: an umockdev testbed and the reader watcher, each a child.

The test process itself runs without the umockdev preload: the testbed helper (Debian's
python3, which has UMockdev's GI bindings) and the watcher driver (the venv's python, which
has pyudev and balise) both run under ``umockdev-wrapper`` and share the testbed directory
through ``UMOCKDEV_DIR``; they talk to the test in JSON lines. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"
REPO_ROOT = Path(__file__).resolve().parents[2]
TESTBED_SCRIPT = Path(__file__).with_name("udev_testbed.py")
REPLY_TIMEOUT_S = 10.0  # process start-up included; uevents themselves arrive in a few ms
STOP_TIMEOUT_S = 5.0


@functools.cache
def umockdev_missing() -> str | None:
    """Why the umockdev tests cannot run here, or None."""
    if shutil.which("umockdev-wrapper") is None:
        return "umockdev is not installed (package umockdev)"
    probe = "import gi; gi.require_version('UMockdev', '1.0'); from gi.repository import UMockdev"
    try:
        result = subprocess.run(
            [SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=REPLY_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{SYSTEM_PYTHON} unusable: {exc}"
    if result.returncode != 0:
        return "UMockdev GI bindings missing (packages gir1.2-umockdev-1.0 python3-gi)"
    return None


class JsonChild:
    """A child process speaking JSON lines; its stdout is read by a thread into a queue."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.log = log
        self._stderr = log.open("wb")  # a file, never an undrained pipe
        self.process = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._pending: list[dict[str, Any]] = []  # read, but not asked for yet
        assert self.process.stdout is not None
        self._reader = threading.Thread(
            target=self._read, args=(self.process.stdout,), name=f"json-{argv[-1]}", daemon=True
        )
        self._reader.start()

    def _read(self, stream: TextIO) -> None:
        for line in stream:  # ends when the child closes stdout
            with contextlib.suppress(ValueError):
                self._lines.put(json.loads(line))
        self._lines.put(None)

    def send(self, payload: dict[str, Any] | str) -> None:
        assert self.process.stdin is not None
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def next(self, timeout: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
        """The next JSON line; fails the test after ``timeout`` s or if the child exited."""
        if self._pending:
            return self._pending.pop(0)
        return self._receive(timeout)

    def _receive(self, timeout: float) -> dict[str, Any]:
        try:
            message = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no message within {timeout} s (stderr: {self.stderr()})")
        if message is None:
            pytest.fail(f"child exited ({self.process.poll()}); stderr: {self.stderr()}")
        return message

    def next_with(self, key: str, timeout: float = REPLY_TIMEOUT_S) -> Any:
        """Value of ``key`` in the first message that has it; other messages stay queued, in
        order, for later calls (bounded in count and time)."""
        for index, message in enumerate(self._pending):
            if key in message:
                del self._pending[index]
                return message[key]
        for _ in range(1000):
            message = self._receive(timeout)
            if key in message:
                return message[key]
            self._pending.append(message)
        pytest.fail(f"no {key!r} in 1000 messages")

    def stderr(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-2000:]
        return ""

    def close_stdin(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):
                self.process.stdin.close()

    def stop(self) -> None:
        """EOF first (a clean exit), then SIGTERM, then SIGKILL; always reaped."""
        self.close_stdin()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        self._reader.join(STOP_TIMEOUT_S)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()


class UsbTestbed:
    """Fake USB devices, plugged and unplugged with uevents, seen by children under the preload."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # The testbed dir is made under TMPDIR: keep it inside pytest's temp dir.
        env = dict(os.environ, TMPDIR=str(directory))
        env.pop("UMOCKDEV_DIR", None)
        self.helper = JsonChild(
            ["umockdev-wrapper", SYSTEM_PYTHON, str(TESTBED_SCRIPT)],
            env,
            directory,
            directory / "testbed.stderr",
        )
        self.children: list[JsonChild] = []
        try:
            self.root: str = self.helper.next_with("root")
        except BaseException:
            self.helper.stop()  # the fixture never got the object: reap the helper here
            raise

    def _do(self, command: dict[str, Any]) -> None:
        self.helper.send(command)
        reply = self.helper.next()
        assert "error" not in reply, reply

    def plug(
        self, port: str, *, cls: int = 0x0B, product: str = "ACR38U", manufacturer: str = "ACS"
    ) -> str:
        """Plug a USB device with one interface of class ``cls`` at a NEW ``port`` ("1-4").

        Returns the reader id the watcher should report (the USB device's path).
        """
        self._do(
            {
                "op": "plug",
                "port": port,
                "cls": cls,
                "product": product,
                "manufacturer": manufacturer,
            }
        )
        return f"/devices/{port}"

    def uevent(self, port: str, action: str) -> None:
        """Send one more uevent for the interface at ``port`` (e.g. "change", "bind")."""
        self._do({"op": "uevent", "port": port, "action": action})

    def flicker(self, port: str) -> None:
        """Plug and unplug a reader at ``port`` back to back (a bad contact in the USB plug)."""
        self._do({"op": "flicker", "port": port})

    def unplug(self, port: str, *, device_only: bool = False) -> None:
        """Pull the device out (a port is never reused: umockdev aborts on re-adding a path)."""
        self._do({"op": "unplug", "port": port, "device_only": device_only})

    def start_watcher(self, coalesce_s: float = 0.05) -> JsonChild:
        """Start the real UdevReaderWatcher in a child that sees this testbed."""
        env = dict(os.environ, UMOCKDEV_DIR=self.root)
        driver = ["-m", "tests.support.udev_driver", str(coalesce_s)]
        child = JsonChild(
            ["umockdev-wrapper", sys.executable, *driver],
            env,
            REPO_ROOT,
            self.directory / f"watcher{len(self.children)}.stderr",
        )
        self.children.append(child)
        return child

    def close(self) -> None:
        for child in self.children:
            child.stop()
        self.helper.stop()


@pytest.fixture
def usb_testbed(tmp_path: Path) -> Iterator[UsbTestbed]:
    """A fresh umockdev testbed (no device yet); every child is stopped at teardown."""
    reason = umockdev_missing()
    if reason is not None:
        pytest.skip(reason)
    bed = UsbTestbed(tmp_path)
    try:
        yield bed
    finally:
        bed.close()


WatcherFactory = Callable[[], JsonChild]
