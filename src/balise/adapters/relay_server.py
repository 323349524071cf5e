"""The relay's door for the practice software: a unix socket, never a TCP port on the LAN.

Who reaches it: the socket is made with mode 0660 in a directory only the box's service and the
exchange account can enter, and each connection's peer credentials (SO_PEERCRED) must name one
of the allowed uids — the exchange account, whose only way in is SSH with the key registered at
provisioning (``ssh -L 8443:/run/balise/relay.sock exchange@box`` on the practice's server
forwards a local port to it). Anyone else on the LAN has no socket to talk to; a local process of
another account is refused before a byte is read.

Each connection carries plain HTTP/1.1 requests (kept alive); each request's head is read with
bounds and parsed once, its body by its Content-Length, and the answer comes from the handler
(:meth:`Relay.respond`), sent as it is — a long one passed on in pieces as it comes
(``streams``). The connection ends after an answer whose end is the close, after one cut
half-way (AnswerCut), after a head that cannot be framed, or when the practice software asks."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Final

from balise.domain.relay import (
    MAX_BODY,
    MAX_HEAD,
    AnswerCut,
    RelayRefused,
    parse_head,
)

__all__ = ["RelayServer", "kernel_timeouts", "peer_uid"]

_MAX_CONNECTIONS: Final = 16
_CLIENT_TIMEOUT_S: Final = 120.0
_FINISH_S: Final = 2.0

# The answer to send, or the answer and what the handler does once it is sent (its journal
# entry: off the path between the request and its answer). Given ``streams=True``, the handler
# also gets the connection's send (head, body, send): it may pass a long answer on through it
# in pieces and return only the rest, or raise AnswerCut (the connection is then closed). A third
# element False: the answer's end is the close of the connection (no length, no chunks).
Handler = Callable[
    ...,
    bytes | tuple[bytes, Callable[[], object]] | tuple[bytes, Callable[[], object], bool],
]
Refusal = Callable[[int, str], bytes]


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a unix socket (the kernel's word)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class RelayServer:
    """Serves the relay on ``path`` for the processes of ``allowed_uids`` only."""

    def __init__(
        self,
        path: Path,
        *,
        allowed_uids: Collection[int],
        handler: Handler,
        refusal: Refusal,
        on_refused_peer: Callable[[int], None] | None = None,
        streams: bool = False,
    ) -> None:
        self.path = path
        self._allowed = frozenset(allowed_uids)
        self._handler = handler
        self._streams = streams
        self._refusal = refusal
        self._on_refused_peer = on_refused_peer
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._slots = threading.BoundedSemaphore(_MAX_CONNECTIONS)
        self._stopping = threading.Event()
        self._clients: set[socket.socket] = set()
        self._serving: set[threading.Thread] = set()  # under _clients_lock
        self._clients_lock = threading.Lock()

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.path.is_socket():
                self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)  # created 0660: never world-reachable, even for an instant
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        sock.listen(8)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept_loop, name="relay-accept", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self._clients_lock:
            clients = list(self._clients)
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
        # The requests being answered finish (their journal entries with them), briefly.
        deadline = time.monotonic() + _FINISH_S
        with self._clients_lock:
            serving = list(self._serving)
        for thread in serving:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            sock = self._sock
            if sock is None:
                return
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            uid = peer_uid(conn)
            if uid not in self._allowed:
                if self._on_refused_peer is not None:
                    self._on_refused_peer(uid)
                conn.close()  # nothing read, nothing answered
                continue
            if not self._slots.acquire(blocking=False):
                with contextlib.suppress(OSError):
                    conn.sendall(self._refusal(503, "Trop de connexions au relais."))
                conn.close()
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._clients_lock:
                self._serving.add(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with self._clients_lock:
            self._clients.add(conn)
        try:
            kernel_timeouts(conn, _CLIENT_TIMEOUT_S)
            buffer = b""
            while not self._stopping.is_set():
                end = buffer.find(b"\r\n\r\n")
                while end < 0:
                    if len(buffer) > MAX_HEAD:
                        conn.sendall(self._refusal(431, "En-têtes trop longs."))
                        return
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                    end = buffer.find(b"\r\n\r\n", max(0, len(buffer) - len(data) - 3))
                try:
                    head = parse_head(buffer[:end], request=True)
                    length = head.content_length() or 0
                except RelayRefused as refused:
                    conn.sendall(self._refusal(refused.status, refused.fr))
                    return  # framing unknown after a bad head: the connection cannot go on
                buffer = buffer[end + 4 :]
                while len(buffer) < length:
                    data = conn.recv(min(65536, MAX_BODY))
                    if not data:
                        return
                    buffer += data
                if len(buffer) == length:
                    body, buffer = buffer, b""
                else:
                    body, buffer = buffer[:length], buffer[length:]
                result = (
                    self._handler(head, body, conn.sendall)
                    if self._streams
                    else self._handler(head, body)
                )
                keep = True
                if isinstance(result, tuple):
                    answer, then = result[0], result[1]
                    keep = len(result) < 3 or bool(result[2])
                    try:
                        conn.sendall(answer)
                    finally:
                        then()  # the handler's bookkeeping, once the answer is on its way
                else:
                    conn.sendall(result)
                if (
                    not keep
                    or head.first[2] == "HTTP/1.0"
                    or (head.get("connection") or "").lower() == "close"
                ):
                    return
        except (OSError, RelayRefused, AnswerCut):
            return  # AnswerCut: part of an answer sent, the rest lost: the connection ends
        finally:
            with self._clients_lock:
                self._clients.discard(conn)
                self._serving.discard(threading.current_thread())
            conn.close()
            self._slots.release()


def kernel_timeouts(sock: socket.socket, seconds: float) -> None:
    """Blocking ``sock`` whose reads and writes give up after ``seconds`` (OSError), timed by
    the kernel (SO_RCVTIMEO, SO_SNDTIMEO): one system call per wait, where Python's own
    timeout (``settimeout``) polls first, then reads — two, on every request."""
    sock.settimeout(None)
    whole = int(seconds)
    value = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
