"""A scriptable virtual smart card for the vsmartcard ``vpcd`` reader driver, used by tests and the demo.

The card speaks vpcd's wire protocol over TCP (2-byte big-endian length + payload) from a thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from balise.domain.codes import SimCode
from balise.domain.errors import BaliseError

# ATRs from PROFILE.md §5 (ANS CryptoLib CPS sources, card-cps.c).
ATR_CPS3: Final = bytes.fromhex("3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00")
ATR_CPS3_CONTACTLESS: Final = bytes.fromhex(
    "3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00 0E"
)
ATR_CPS4: Final = bytes.fromhex("3B 9B 18 80 01 00 12 25 00 64 80 04 01 00 00 90 44")
ATR_CPS4_VARIANT: Final = bytes.fromhex("3B 9B 18 80 01 00 12 25 00 64 80 00 04 01 00 90 44")
ATR_CPS4_T0: Final = bytes.fromhex("3B DC 18 FF 00 00 12 25 00 64 80 00 04 01 00 90 00")
# A real, well-formed ATR of a non-CPS card (a YubiKey 5): Balise must say "unknown card".
ATR_UNKNOWN: Final = bytes.fromhex(
    "3B FD 13 00 00 81 31 FE 15 80 73 C0 21 C0 57 59 75 62 69 4B 65 79 40"
)
CPS_ATRS: Final = (ATR_CPS3, ATR_CPS3_CONTACTLESS, ATR_CPS4, ATR_CPS4_VARIANT, ATR_CPS4_T0)

SW_OK: Final = bytes.fromhex("9000")
SW_INS_NOT_SUPPORTED: Final = bytes.fromhex("6D00")
SW_NO_PRECISE_DIAGNOSIS: Final = bytes.fromhex("6F00")

VPCD_PORT: Final = 35963
"""vpcd's default port (its CHANNELID 0x8C7B); slot n uses port + n."""

# vpcd control codes (1-byte payloads).
CTRL_OFF: Final = 0
CTRL_ON: Final = 1
CTRL_RESET: Final = 2
CTRL_ATR: Final = 4

_MAX_ATR = 33  # ISO 7816-3 maximum, also pcsc-lite's MAX_ATR_SIZE
_CLONE_NEWNET: Final = 0x40000000

Responder = Callable[[bytes], bytes]
"""Turns one C-APDU into one R-APDU (data + SW1 SW2)."""


class VirtualCardError(BaliseError):
    """The virtual card (test and demo tool) could not be inserted or used."""

    code = SimCode.SIM_VCARD


def default_responder(apdu: bytes) -> bytes:
    """Answer 9000 to SELECT (INS A4) and 6D00 (instruction not supported) to anything else."""
    if len(apdu) >= 4 and apdu[1] == 0xA4:
        return SW_OK
    return SW_INS_NOT_SUPPORTED


class VirtualCard:
    """One card: its ATR, a responder scripting its answers, and the log of APDUs it received.

    The card itself holds no socket; a :class:`VirtualReaderLink` carries it to vpcd.
    """

    def __init__(self, atr: bytes, responder: Responder | None = None) -> None:
        if not 2 <= len(atr) <= _MAX_ATR:
            raise VirtualCardError(
                f"ATR de longueur invalide ({len(atr)} octets, 2 à {_MAX_ATR} attendus)",
                f"invalid ATR length ({len(atr)} bytes, 2 to {_MAX_ATR} expected)",
            )
        self.atr: Final = bytes(atr)
        self.responder: Responder = responder if responder is not None else default_responder
        self._lock = threading.Lock()
        self._apdus: list[bytes] = []
        self._errors: list[BaseException] = []
        self._powered = threading.Event()

    @property
    def apdus(self) -> list[bytes]:
        """C-APDUs received so far (a copy, oldest first)."""
        with self._lock:
            return list(self._apdus)

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by the responder (each one was answered 6F00)."""
        with self._lock:
            return list(self._errors)

    @property
    def powered(self) -> bool:
        return self._powered.is_set()

    def wait_powered(self, timeout: float) -> bool:
        """Wait until the reader powered the card on (pcscd saw it); False after ``timeout`` s."""
        return self._powered.wait(timeout)

    def handle(self, message: bytes) -> bytes | None:
        """Answer one vpcd message; ``None`` means vpcd expects no reply (power on/off/reset)."""
        if len(message) == 1:
            code = message[0]
            if code == CTRL_ATR:
                return self.atr
            if code in (CTRL_ON, CTRL_RESET):
                self._powered.set()
            elif code == CTRL_OFF:
                self._powered.clear()
            return None
        with self._lock:
            self._apdus.append(bytes(message))
        try:
            answer = self.responder(bytes(message))
        except Exception as exc:  # noqa: BLE001 - vpcd blocks forever without an answer
            with self._lock:
                self._errors.append(exc)
            return SW_NO_PRECISE_DIAGNOSIS
        if len(answer) < 2:
            with self._lock:
                self._errors.append(ValueError(f"R-APDU too short: {answer.hex()}"))
            return SW_NO_PRECISE_DIAGNOSIS
        return answer


def _enter_netns(netns: Path) -> None:
    """Move the calling thread (only) into the network namespace at ``netns``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(netns, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({netns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _connect(host: str, port: int, netns: Path | None, timeout: float) -> socket.socket:
    """Connect to vpcd, retrying while it is not listening yet (bounded by ``timeout``).

    With ``netns`` the socket is created by a short-lived thread that entered that namespace, so
    the caller's own threads never change namespace; the socket stays in it for its whole life.
    """
    result: list[socket.socket] = []
    failure: list[BaseException] = []

    def attempt() -> None:
        try:
            if netns is not None:
                _enter_netns(netns)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    result.append(socket.create_connection((host, port), timeout=timeout))
                    return
                except ConnectionRefusedError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.02)
        except BaseException as exc:  # noqa: BLE001 - handed over to the calling thread
            failure.append(exc)

    worker = threading.Thread(target=attempt, name="vcard-connect", daemon=True)
    worker.start()
    worker.join(timeout + 1.0)
    if result:
        return result[0]
    cause = failure[0] if failure else TimeoutError(f"connect to {host}:{port}")
    raise VirtualCardError(
        f"lecteur virtuel injoignable ({host}:{port}) : {cause}",
        f"virtual reader unreachable ({host}:{port}): {cause}",
    ) from cause


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """Read exactly ``size`` bytes; ``None`` when the peer closed the connection."""
    chunks = bytearray()
    while len(chunks) < size:  # bounded: each pass reads at least one byte or returns
        # vpcd writes the length and the payload separately with Nagle on: acknowledge at once
        # so its second write is not held back for the delayed-ACK timer (~40 ms per APDU).
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = sock.recv(size - len(chunks))
        except OSError:  # closed under us by remove(): same as the peer closing
            return None
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


class VirtualReaderLink:
    """The TCP link between one vpcd reader slot and the card currently in it.

    ``insert(card)`` connects to vpcd (the card is then "in the reader" as soon as pcscd polls,
    ~0.4 s); ``remove()`` closes the connection, which vpcd reads as the card being pulled.
    vpcd listens (``DEVICENAME /dev/null:<port>``); ``netns`` names the private network
    namespace where it does (see :class:`balise.sim.pcscd.PcscdRunner`).
    """

    def __init__(
        self,
        port: int = VPCD_PORT,
        *,
        host: str = "127.0.0.1",
        netns: Path | None = None,
        connect_timeout: float = 3.0,
    ) -> None:
        self.host = host
        self.port = port
        self.netns = netns
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._card: VirtualCard | None = None

    @property
    def card(self) -> VirtualCard | None:
        """The card in the reader, or ``None``."""
        with self._lock:
            return self._card

    def insert(self, card: VirtualCard) -> None:
        """Put ``card`` in the reader (returns once connected; pcscd notices on its next poll)."""
        with self._lock:
            if self._card is not None:
                raise VirtualCardError(
                    "une carte est déjà dans le lecteur virtuel",
                    "a card is already in the virtual reader",
                )
            sock = _connect(self.host, self.port, self.netns, self.connect_timeout)
            # Our replies must leave at once, in one segment: no Nagle delay on our side.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(None)
            self._sock = sock
            self._card = card
            self._thread = threading.Thread(
                target=self._serve, args=(sock, card), name=f"vcard-{self.port}", daemon=True
            )
            self._thread.start()

    def remove(self, timeout: float = 2.0) -> None:
        """Pull the card out (idempotent)."""
        with self._lock:
            sock, thread = self._sock, self._thread
            self._sock = self._thread = self._card = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    close = remove

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def _serve(self, sock: socket.socket, card: VirtualCard) -> None:
        while True:  # ends when the socket closes (card removed or pcscd stopped)
            header = _recv_exact(sock, 2)
            if header is None:
                break
            length = int.from_bytes(header, "big")
            message = _recv_exact(sock, length) if length else b""
            if message is None:
                break
            reply = card.handle(message)
            if reply is None:
                continue
            try:
                # One write for length + payload: two small writes cost a round trip each.
                sock.sendall(len(reply).to_bytes(2, "big") + reply)
            except OSError:  # vpcd went away or remove() closed the socket
                break
        with self._lock:
            if self._sock is sock:  # vpcd closed on its side: the slot is empty again
                self._sock = self._thread = self._card = None
        with contextlib.suppress(OSError):
            sock.close()
