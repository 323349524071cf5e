"""pytest fixtures for PC/SC tests: the real pcscd with the vpcd virtual reader, and virtual cards.

Tests using them are marked ``@pytest.mark.pcsc``; pcscd is one per machine, so the session
fixture also takes a machine-wide lock (other pytest runs wait for it, bounded).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from balise.sim.pcscd import READER_NAME, PcscdRunner, find_vpcd_driver
from balise.sim.vcard import ATR_CPS3, Responder, VirtualCard, VirtualReaderLink

LOCK_PATH = Path("/tmp/balise-pcscd.lock")
LOCK_WAIT_S = 120.0
DETECT_TIMEOUT_S = 3.0


def wait_card_state(reader: str, present: bool, timeout: float = DETECT_TIMEOUT_S) -> float:
    """Wait until pcscd reports a card in ``reader`` (or none); return the seconds it took.

    Uses SCardGetStatusChange, the same event path as pyscard's CardMonitor.
    Raises TimeoutError after ``timeout`` s.
    """
    from smartcard import scard

    start = time.monotonic()
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise RuntimeError(scard.SCardGetErrorMessage(hresult))
    try:
        state = scard.SCARD_STATE_UNAWARE
        while True:  # bounded by the deadline below
            remaining_ms = int((start + timeout - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                raise TimeoutError(f"{reader}: card {'in' if present else 'out'} not seen")
            hresult, states = scard.SCardGetStatusChange(context, remaining_ms, [(reader, state)])
            if hresult == scard.SCARD_E_TIMEOUT:
                continue
            if hresult != scard.SCARD_S_SUCCESS:
                raise RuntimeError(scard.SCardGetErrorMessage(hresult))
            _, event_state, _ = states[0]
            if bool(event_state & scard.SCARD_STATE_PRESENT) == present and not (
                present and event_state & scard.SCARD_STATE_MUTE
            ):
                return time.monotonic() - start
            state = event_state & ~scard.SCARD_STATE_CHANGED
    finally:
        scard.SCardReleaseContext(context)


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcscdRunner]:
    """The machine's pcscd, started privately with the vpcd reader only; stopped at session end."""
    if os.geteuid() != 0:
        pytest.skip("pcscd needs root (/run/pcscd)")
    if find_vpcd_driver() is None:
        pytest.skip("vsmartcard-vpcd is not installed")
    with LOCK_PATH.open("a") as lock:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:  # bounded: another pytest run on this machine may hold pcscd for a while
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    pytest.fail(f"pcscd lock {LOCK_PATH} held for more than {LOCK_WAIT_S} s")
                time.sleep(0.2)
        try:
            runner = PcscdRunner(tmp_path_factory.mktemp("pcscd"), die_with_parent=True)
            runner.start()
            try:
                yield runner
            finally:
                runner.stop()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class VirtualCardSlot:
    """Slot 0 of the virtual reader, from a test's point of view: insert any card, remove it."""

    def __init__(self, runner: PcscdRunner) -> None:
        self.reader_name = READER_NAME
        self.link: VirtualReaderLink = runner.link()

    @property
    def card(self) -> VirtualCard | None:
        return self.link.card

    def insert(
        self, atr: bytes = ATR_CPS3, responder: Responder | None = None, *, wait: bool = True
    ) -> VirtualCard:
        """Insert a card; with ``wait``, return once pcscd reports it (bounded)."""
        card = VirtualCard(atr, responder)
        self.link.insert(card)
        if wait:
            wait_card_state(self.reader_name, present=True)
        return card

    def remove(self, *, wait: bool = True) -> None:
        """Remove the card (if any); with ``wait``, return once pcscd reports the slot empty."""
        had_card = self.link.card is not None
        self.link.remove()
        if wait and had_card:
            wait_card_state(self.reader_name, present=False)


@pytest.fixture
def virtual_card(pcscd: PcscdRunner) -> Iterator[VirtualCardSlot]:
    """A slot to insert virtual cards into; the card is always removed at teardown."""
    slot = VirtualCardSlot(pcscd)
    try:
        yield slot
    finally:
        slot.link.remove()
        # Leave the next test an empty reader (pcscd notices within one poll, ~0.4 s).
        with contextlib.suppress(TimeoutError, RuntimeError):
            wait_card_state(slot.reader_name, present=False)
