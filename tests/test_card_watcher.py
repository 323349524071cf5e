"""Card watcher against the real pcscd and the vpcd virtual reader: card in/out events and their kind."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from balise.adapters.pcsc import PcscCardWatcher, list_readers
from balise.domain.atr import CardKind, can_sign
from balise.domain.devices import CardEvent
from balise.sim.pcscd import PcscdRunner
from balise.sim.vcard import (
    ATR_CPS3,
    ATR_CPS3_CONTACTLESS,
    ATR_CPS4,
    ATR_CPS4_T0,
    ATR_CPS4_VARIANT,
    ATR_UNKNOWN,
    VirtualCard,
)
from tests.support.bounded_wait import wait_until
from tests.support.pcsc_fixtures import VirtualCardSlot

pytestmark = pytest.mark.pcsc

EVENT_TIMEOUT_S = 2.0

CARDS = {
    "cps3": (ATR_CPS3, CardKind.CPS3),
    "cps3-contactless": (ATR_CPS3_CONTACTLESS, CardKind.CPS3_CONTACTLESS),
    "cps4": (ATR_CPS4, CardKind.CPS4),
    "cps4-variant": (ATR_CPS4_VARIANT, CardKind.CPS4),
    "cps4-t0": (ATR_CPS4_T0, CardKind.CPS4),
    "unknown": (ATR_UNKNOWN, CardKind.UNKNOWN),
}


class Recorder:
    """Collects events from the watcher thread; waits are bounded."""

    def __init__(self) -> None:
        self.events: list[tuple[float, CardEvent]] = []
        self._changed = threading.Condition()

    def __call__(self, event: CardEvent) -> None:
        with self._changed:
            self.events.append((time.monotonic(), event))
            self._changed.notify_all()

    def wait_for(self, action: str, reader: str, timeout: float = EVENT_TIMEOUT_S) -> CardEvent:
        def found() -> CardEvent | None:
            return next(
                (e for _, e in self.events if e.action == action and e.reader == reader), None
            )

        with self._changed:
            if not self._changed.wait_for(lambda: found() is not None, timeout):
                raise AssertionError(f"no {action!r} event within {timeout} s: {self.events}")
            event = found()
            assert event is not None
            return event

    def take(self) -> list[CardEvent]:
        with self._changed:
            taken = [e for _, e in self.events]
            self.events.clear()
            return taken


@pytest.fixture
def watcher(virtual_card: VirtualCardSlot) -> Iterator[tuple[PcscCardWatcher, Recorder]]:
    recorder = Recorder()
    card_watcher = PcscCardWatcher()
    card_watcher.start(recorder)
    try:
        yield card_watcher, recorder
    finally:
        card_watcher.stop()


def test_virtual_readers_are_listed(virtual_card: VirtualCardSlot) -> None:
    names = list_readers()
    assert virtual_card.reader_name in names
    assert "Virtual PCD 00 01" in names


@pytest.mark.parametrize(("atr", "kind"), CARDS.values(), ids=CARDS.keys())
def test_insert_and_remove_give_events_with_the_kind(
    watcher: tuple[PcscCardWatcher, Recorder],
    virtual_card: VirtualCardSlot,
    atr: bytes,
    kind: CardKind,
) -> None:
    card_watcher, recorder = watcher
    reader = virtual_card.reader_name
    virtual_card.insert(atr, wait=False)
    inserted = recorder.wait_for("inserted", reader)
    assert (inserted.atr, inserted.kind) == (atr, kind)
    assert card_watcher.present() == [inserted]

    virtual_card.remove(wait=False)
    removed = recorder.wait_for("removed", reader)
    assert (removed.atr, removed.kind) == (atr, kind)
    assert card_watcher.present() == []
    # One insertion, one removal: nothing doubled by pcscd's polling.
    assert [e.action for e in recorder.take()] == ["inserted", "removed"]


def test_unknown_card_cannot_sign(
    watcher: tuple[PcscCardWatcher, Recorder], virtual_card: VirtualCardSlot
) -> None:
    _, recorder = watcher
    virtual_card.insert(ATR_UNKNOWN, wait=False)
    event = recorder.wait_for("inserted", virtual_card.reader_name)
    assert event.kind is CardKind.UNKNOWN
    ok, fr, _ = can_sign(event.kind, "cryptolib")
    assert not ok
    assert fr == "carte inconnue : ce n'est pas une carte CPS"


def test_card_already_in_the_reader_is_reported_at_start(virtual_card: VirtualCardSlot) -> None:
    virtual_card.insert(ATR_CPS4)  # waits until pcscd sees it
    recorder = Recorder()
    card_watcher = PcscCardWatcher()
    card_watcher.start(recorder)
    try:
        event = recorder.wait_for("inserted", virtual_card.reader_name)
        assert (event.atr, event.kind) == (ATR_CPS4, CardKind.CPS4)
    finally:
        card_watcher.stop()


def test_card_swapped_gives_removed_then_inserted(
    watcher: tuple[PcscCardWatcher, Recorder], virtual_card: VirtualCardSlot
) -> None:
    _, recorder = watcher
    reader = virtual_card.reader_name
    virtual_card.insert(ATR_CPS3, wait=False)
    recorder.wait_for("inserted", reader)
    virtual_card.remove()
    virtual_card.insert(ATR_CPS3_CONTACTLESS)
    wait_until(lambda: len(recorder.events) >= 3, EVENT_TIMEOUT_S, what="three card events")
    assert [(e.action, e.kind) for e in recorder.take()] == [
        ("inserted", CardKind.CPS3),
        ("removed", CardKind.CPS3),
        ("inserted", CardKind.CPS3_CONTACTLESS),
    ]


def test_callback_failure_does_not_stop_the_watcher(virtual_card: VirtualCardSlot) -> None:
    recorder = Recorder()
    calls = 0

    def flaky(event: CardEvent) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("consumer bug")
        recorder(event)

    card_watcher = PcscCardWatcher()
    card_watcher.start(flaky)
    try:
        virtual_card.insert(ATR_CPS3, wait=False)
        wait_until(lambda: calls > 0, EVENT_TIMEOUT_S, what="the watcher's first callback")
        virtual_card.remove(wait=False)
        recorder.wait_for("removed", virtual_card.reader_name)
    finally:
        card_watcher.stop()


@pytest.mark.parametrize("with_card", [False, True], ids=["empty", "card-in"])
def test_stop_is_fast(virtual_card: VirtualCardSlot, with_card: bool) -> None:
    if with_card:
        virtual_card.insert(ATR_CPS3)
    recorder = Recorder()
    # stop() waits for the thread at most 2 s: the thread gone right after it is the kiosk
    # quitting at once (SCardCancel, or at worst the next 0.5 s poll). No duration is measured.
    card_watcher = PcscCardWatcher()
    card_watcher.start(recorder)
    if with_card:
        recorder.wait_for("inserted", virtual_card.reader_name)
    else:
        time.sleep(0.3)  # let the thread block in SCardGetStatusChange
    card_watcher.stop()
    assert not any(t.name == "pcsc-card-watcher" for t in threading.enumerate())


def test_pcscd_restart_removes_the_card_then_watching_resumes(
    pcscd: PcscdRunner, virtual_card: VirtualCardSlot
) -> None:
    recorder = Recorder()
    card_watcher = PcscCardWatcher(retry_delay=0.2)
    card_watcher.start(recorder)
    link = None
    try:
        virtual_card.insert(ATR_CPS4, wait=False)
        recorder.wait_for("inserted", virtual_card.reader_name)
        pcscd.stop()
        removed = recorder.wait_for("removed", virtual_card.reader_name, timeout=3.0)
        assert removed.kind is CardKind.CPS4
        assert card_watcher.present() == []
        recorder.take()

        pcscd.start()
        link = pcscd.link()  # vpcd now listens in the new pcscd's namespace
        link.insert(VirtualCard(ATR_CPS3))
        inserted = recorder.wait_for("inserted", virtual_card.reader_name, timeout=5.0)
        assert inserted.kind is CardKind.CPS3
    finally:
        card_watcher.stop()
        if link is not None:
            link.remove()
        if pcscd.pid is None:  # leave the session's pcscd running for the next tests
            pcscd.start()
