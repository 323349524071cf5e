"""systemd's side of NOTIFY_SOCKET for the tests: a real unix datagram socket that reads what a
service says (READY=1, WATCHDOG=1, STATUS=, EXTEND_TIMEOUT_USEC=...), as PID 1 does."""

from __future__ import annotations

import socket
import threading

__all__ = ["Manager"]


class Manager:
    """Reads the datagrams as they come, as PID 1 does (a unix datagram queue holds only a few:
    `net.unix.max_dgram_qlen`, 10 by default; the agent never waits for room, it drops)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.said: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(path)
        self._sock.settimeout(0.1)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done.is_set():
            try:
                self.said.append(self._sock.recv(65536).decode("utf-8"))
            except TimeoutError:
                continue

    def close(self) -> list[str]:
        """Everything received (what is still queued included)."""
        if self._done.is_set():
            return self.said
        self._done.set()
        self._thread.join(timeout=10)
        self._sock.setblocking(False)
        try:
            while True:
                self.said.append(self._sock.recv(65536).decode("utf-8"))
        except BlockingIOError:
            pass
        self._sock.close()
        return self.said
