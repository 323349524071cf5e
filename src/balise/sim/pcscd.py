"""Run the real pcscd with the vsmartcard virtual reader (vpcd), for tests and the demo.

pcscd is one per machine (its socket is always /run/pcscd/pcscd.comm); vpcd is kept inside a
private network namespace so that nothing it opens is reachable from outside the box.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from balise.domain.codes import SimCode
from balise.domain.errors import BaliseError
from balise.sim.vcard import VPCD_PORT, VirtualReaderLink

PCSCD_DIR: Final = Path("/run/pcscd")
PCSCD_SOCKET: Final = PCSCD_DIR / "pcscd.comm"
FRIENDLY_NAME: Final = "Virtual PCD"
READER_NAME: Final = f"{FRIENDLY_NAME} 00 00"
"""Name pcscd gives the first slot of the virtual reader (slot n: ``Virtual PCD 00 0n``)."""

_DRIVER_NAME = "libifdvpcd.so"
_DRIVER_DIRS: Final = (
    Path("/usr/lib/pcsc/drivers/serial"),
    Path("/usr/local/lib/pcsc/drivers/serial"),
    Path("/usr/lib/x86_64-linux-gnu/pcsc/drivers/serial"),
    Path("/usr/lib/aarch64-linux-gnu/pcsc/drivers/serial"),
    Path("/usr/lib64/pcsc/drivers/serial"),
)
_TCP_LISTEN = "0A"  # state code in /proc/net/tcp


class PcscdError(BaliseError):
    """The test/demo pcscd could not be started or stopped."""

    code = SimCode.SIM_PCSCD


def find_vpcd_driver() -> Path | None:
    """Path of vsmartcard's vpcd driver for pcscd, or ``None`` if it is not installed."""
    for directory in _DRIVER_DIRS:
        for candidate in (directory / _DRIVER_NAME, *sorted(directory.glob(f"{_DRIVER_NAME}.*"))):
            if candidate.is_file():
                return candidate
    return None


def running_pcscd_pids() -> list[int]:
    """PIDs of every pcscd process on this machine (any owner)."""
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            # /proc/<pid>/stat is "pid (comm) state ..."; a zombie (Z) is dead, only unreaped.
            comm, _, rest = (entry / "stat").read_text().partition("(")[2].rpartition(")")
            if comm == "pcscd" and not rest.strip().startswith("Z"):
                pids.append(int(entry.name))
    return sorted(pids)


def listening_tcp_ports(pid: int | str = "self") -> set[tuple[str, int]]:
    """(hex local address, port) of listening TCP sockets in the network namespace of ``pid``."""
    found: set[tuple[str, int]] = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 3 and fields[3] == _TCP_LISTEN:
                    address, _, port = fields[1].partition(":")
                    found.add((address, int(port, 16)))
    return found


class PcscdRunner:
    """A private pcscd whose only reader is the vpcd virtual reader.

    ``directory`` receives the reader config dir and pcscd's log (``pcscd.log``). vpcd listens on
    ``port`` (slot n on ``port + n``) with ``DEVICENAME /dev/null:<port>``, inside a network
    namespace of its own holding only ``lo``: nothing is reachable from another host. (vpcd's
    "connect out" form, ``DEVICENAME 127.0.0.1:<port>``, would avoid listening, but vsmartcard
    3.3's vpcd aborts pcscd — ``FD_SET(-1)`` — as soon as such a connection closes, i.e. at the
    first card removal.) Needs root, like any pcscd.

    With ``die_with_parent`` pcscd gets SIGTERM if the thread that started it dies (a crashed or
    killed test run then leaves no pcscd behind); only for a start from a long-lived thread.
    """

    def __init__(
        self,
        directory: Path,
        port: int = VPCD_PORT,
        *,
        pcscd: str = "pcscd",
        die_with_parent: bool = False,
    ) -> None:
        self.directory = directory
        self.die_with_parent = die_with_parent
        self.port = port
        self.pcscd = pcscd
        self.config_dir = directory / "reader.conf.d"
        self.log_path = directory / "pcscd.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def netns(self) -> Path:
        """The network namespace where vpcd listens (``/proc/<pid>/ns/net``)."""
        if self._process is None:
            raise PcscdError("pcscd n'est pas démarré", "pcscd is not started")
        return Path(f"/proc/{self._process.pid}/ns/net")

    def link(self, slot: int = 0) -> VirtualReaderLink:
        """A link to put cards in slot ``slot`` of the virtual reader."""
        return VirtualReaderLink(self.port + slot, netns=self.netns)

    def write_config(self) -> Path:
        driver = find_vpcd_driver()
        if driver is None:
            raise PcscdError(
                "pilote vpcd introuvable (paquet vsmartcard-vpcd)",
                "vpcd driver not found (package vsmartcard-vpcd)",
            )
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "vpcd").write_text(
            f'FRIENDLYNAME "{FRIENDLY_NAME}"\n'
            f"DEVICENAME   /dev/null:{self.port}\n"
            f"LIBPATH      {driver}\n"
            f"CHANNELID    {self.port:#06x}\n"
        )
        return self.config_dir

    def start(self, timeout: float = 5.0) -> None:
        """Start pcscd; returns when clients can connect and vpcd listens. Refuses if one runs."""
        if self._process is not None:
            raise PcscdError("pcscd est déjà démarré", "pcscd is already started")
        others = running_pcscd_pids()
        if others:
            raise PcscdError(
                f"un autre pcscd tourne déjà (pid {', '.join(map(str, others))}) : "
                "un seul pcscd par machine",
                f"another pcscd is already running (pid {', '.join(map(str, others))}): "
                "pcscd is one per machine",
            )
        # Left behind by a killed pcscd: would make the readiness check below lie.
        for stale in (PCSCD_SOCKET, PCSCD_DIR / "pcscd.pid"):
            stale.unlink(missing_ok=True)
        self.write_config()
        pcscd_cmd = shlex.join([self.pcscd, "-f", "-i", "-c", str(self.config_dir)])
        # unshare execs sh which execs pcscd: the child's PID is pcscd's own, for signals.
        command = ["unshare", "--net", "sh", "-c", f"ip link set lo up && exec {pcscd_cmd}"]
        if self.die_with_parent:
            command = ["setpriv", "--pdeathsig", "TERM", *command]
        with self.log_path.open("ab") as log:
            # Logs to a file, never a pipe: an undrained pipe would block pcscd.
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:  # bounded by the deadline
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise PcscdError(
                    f"pcscd s'est arrêté au démarrage (code {code}, voir {self.log_path})",
                    f"pcscd exited at startup (code {code}, see {self.log_path})",
                )
            if PCSCD_SOCKET.exists() and self._vpcd_listening():
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise PcscdError(
                    f"pcscd pas prêt après {timeout} s (voir {self.log_path})",
                    f"pcscd not ready after {timeout} s (see {self.log_path})",
                )
            time.sleep(0.01)

    def _vpcd_listening(self) -> bool:
        assert self._process is not None
        return any(port == self.port for _, port in listening_tcp_ports(self._process.pid))

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s; idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        pid_file = PCSCD_DIR / "pcscd.pid"
        with contextlib.suppress(OSError, ValueError):
            if int(pid_file.read_text().strip()) == process.pid:
                # Killed before its own cleanup: do not leave a socket that looks alive.
                PCSCD_SOCKET.unlink(missing_ok=True)
                pid_file.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
