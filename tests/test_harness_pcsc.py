"""Proof that the PC/SC harness works: real pcscd + vpcd, our virtual card, seen through pyscard."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from smartcard import scard
from smartcard.CardMonitoring import CardMonitor, CardObserver
from smartcard.Exceptions import NoCardException
from smartcard.System import readers

from balise.sim.pcscd import PcscdError, PcscdRunner, listening_tcp_ports
from balise.sim.vcard import (
    ATR_CPS3,
    ATR_CPS3_CONTACTLESS,
    ATR_CPS4,
    ATR_CPS4_T0,
    ATR_CPS4_VARIANT,
    ATR_UNKNOWN,
)
from tests.support.pcsc_fixtures import DETECT_TIMEOUT_S, VirtualCardSlot

pytestmark = pytest.mark.pcsc

ALL_ATRS = {
    "cps3": ATR_CPS3,
    "cps3-contactless": ATR_CPS3_CONTACTLESS,
    "cps4": ATR_CPS4,
    "cps4-variant": ATR_CPS4_VARIANT,
    "cps4-t0": ATR_CPS4_T0,
    "unknown": ATR_UNKNOWN,
}


def reader_named(name: str) -> Any:
    matches = [r for r in readers() if str(r) == name]
    assert matches, f"{name!r} not in {[str(r) for r in readers()]}"
    return matches[0]


@contextmanager
def connected(reader_name: str) -> Iterator[Any]:
    connection = reader_named(reader_name).createConnection()
    connection.connect()
    try:
        yield connection
    finally:
        connection.disconnect()
        connection.release()


def test_virtual_reader_is_listed(pcscd: PcscdRunner) -> None:
    assert "Virtual PCD 00 00" in [str(r) for r in readers()]


@pytest.mark.parametrize("atr", ALL_ATRS.values(), ids=ALL_ATRS.keys())
def test_inserted_card_shows_its_exact_atr(virtual_card: VirtualCardSlot, atr: bytes) -> None:
    virtual_card.insert(atr)
    with connected(virtual_card.reader_name) as connection:
        assert bytes(connection.getATR()) == atr


def test_apdu_gets_the_scripted_answer(virtual_card: VirtualCardSlot) -> None:
    def responder(apdu: bytes) -> bytes:
        if apdu[:4] == bytes.fromhex("00B00000"):  # READ BINARY
            return b"CPS" + bytes.fromhex("9000")
        return bytes.fromhex("6A82")

    card = virtual_card.insert(ATR_CPS4, responder)
    with connected(virtual_card.reader_name) as connection:
        data, sw1, sw2 = connection.transmit(list(bytes.fromhex("00B0000003")))
        assert (bytes(data), sw1, sw2) == (b"CPS", 0x90, 0x00)
        _, sw1, sw2 = connection.transmit(list(bytes.fromhex("00A4040002DEAD")))
        assert (sw1, sw2) == (0x6A, 0x82)
    assert card.apdus == [bytes.fromhex("00B0000003"), bytes.fromhex("00A4040002DEAD")]


def test_default_card_knows_select_only(virtual_card: VirtualCardSlot) -> None:
    virtual_card.insert(ATR_CPS3)
    with connected(virtual_card.reader_name) as connection:
        assert connection.transmit(list(bytes.fromhex("00A4040002E828")))[1:] == (0x90, 0x00)
        assert connection.transmit(list(bytes.fromhex("80CA9F7F00")))[1:] == (0x6D, 0x00)


def test_failing_responder_answers_6f00_instead_of_hanging(virtual_card: VirtualCardSlot) -> None:
    def responder(apdu: bytes) -> bytes:
        raise RuntimeError("scripted failure")

    card = virtual_card.insert(ATR_CPS3, responder)
    with connected(virtual_card.reader_name) as connection:
        assert connection.transmit(list(bytes.fromhex("00B0000001")))[1:] == (0x6F, 0x00)
    assert [str(e) for e in card.errors] == ["scripted failure"]


def test_apdus_are_fast(virtual_card: VirtualCardSlot) -> None:
    # Without TCP_NODELAY/QUICKACK vpcd round trips cost ~40 ms (about 21 APDU/s).
    virtual_card.insert(ATR_CPS4, lambda apdu: bytes.fromhex("9000"))
    with connected(virtual_card.reader_name) as connection:
        start = time.monotonic()
        for _ in range(300):
            connection.transmit([0x00, 0xB0, 0x00, 0x00, 0x01])
        elapsed = time.monotonic() - start
    assert elapsed < 1.0, f"300 APDUs took {elapsed:.2f} s"


def test_removed_card_gives_no_card(virtual_card: VirtualCardSlot) -> None:
    virtual_card.insert(ATR_CPS3)
    with connected(virtual_card.reader_name) as connection:
        assert bytes(connection.getATR()) == ATR_CPS3
    virtual_card.remove()
    connection = reader_named(virtual_card.reader_name).createConnection()
    with pytest.raises(NoCardException):
        connection.connect()
    connection.release()


class RecordingObserver(CardObserver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.inserted: list[tuple[float, bytes]] = []
        self.removed: list[tuple[float, bytes]] = []
        self.changed = threading.Condition()

    def update(self, observable: object, handlers: tuple[list[Any], list[Any]]) -> None:
        added, removed = handlers
        now = time.monotonic()
        with self.changed:
            self.inserted += [(now, bytes(card.atr)) for card in added]
            self.removed += [(now, bytes(card.atr)) for card in removed]
            self.changed.notify_all()

    def wait(self, events: list[tuple[float, bytes]], timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: bool(events), timeout)


def stop_monitor(monitor: CardMonitor, observer: CardObserver) -> None:
    """Detach ``observer`` without waiting up to 60 s.

    pyscard's monitor thread blocks in SCardGetStatusChange (timeout 60 s) and deleteObserver
    joins it: cancel the wait first.
    """
    thread = monitor.rmthread
    if thread is not None and thread.cardrequest is not None:
        thread.stop()
        scard.SCardCancel(thread.cardrequest.pcsccardrequest.hcontext)
    monitor.deleteObserver(observer)


def test_card_monitor_sees_insertion_and_removal(virtual_card: VirtualCardSlot) -> None:
    monitor = CardMonitor()
    observer = RecordingObserver()
    monitor.addObserver(observer)
    try:
        time.sleep(0.2)  # let the monitor take its first snapshot (empty reader)
        inserted_at = time.monotonic()
        virtual_card.insert(ATR_CPS4, wait=False)
        assert observer.wait(observer.inserted, DETECT_TIMEOUT_S), "insertion not seen"
        removed_at = time.monotonic()
        virtual_card.remove(wait=False)
        assert observer.wait(observer.removed, DETECT_TIMEOUT_S), "removal not seen"
    finally:
        stop_monitor(monitor, observer)
    insertion_delay = observer.inserted[0][0] - inserted_at
    removal_delay = observer.removed[0][0] - removed_at
    assert observer.inserted[0][1] == ATR_CPS4
    assert observer.removed[0][1] == ATR_CPS4
    assert insertion_delay < 3.0
    assert removal_delay < 3.0


def _interfaces(pid: int) -> set[str]:
    lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    return {line.split(":", 1)[0].strip() for line in lines}


def test_nothing_of_this_setup_listens_beyond_loopback(
    pcscd: PcscdRunner, virtual_card: VirtualCardSlot
) -> None:
    virtual_card.insert(ATR_CPS3)
    assert pcscd.pid is not None
    vpcd_ports = {pcscd.port, pcscd.port + 1}
    # vpcd listens only inside pcscd's private network namespace, which has no interface but lo.
    assert os.readlink("/proc/self/ns/net") != os.readlink(pcscd.netns)
    assert _interfaces(pcscd.pid) == {"lo"}
    assert vpcd_ports & {port for _, port in listening_tcp_ports(pcscd.pid)}
    # In the machine's own namespace, neither vpcd nor our card listens on anything.
    assert not vpcd_ports & {port for _, port in listening_tcp_ports("self")}
    own_inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # the fd of iterdir itself is gone
            target = os.readlink(fd)
            if target.startswith("socket:["):
                own_inodes.add(target.removeprefix("socket:[").removesuffix("]"))
    for line in Path("/proc/self/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        assert not (fields[3] == "0A" and fields[9] in own_inodes), line


def test_second_pcscd_is_refused(pcscd: PcscdRunner, tmp_path: Path) -> None:
    with pytest.raises(PcscdError, match="un seul pcscd par machine") as excinfo:
        PcscdRunner(tmp_path, port=pcscd.port + 10).start()
    assert excinfo.value.code == "SIM_PCSCD"
    assert "one per machine" in excinfo.value.en
