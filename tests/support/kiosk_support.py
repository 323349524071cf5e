"""Kiosk test support: a configured box with a SoftHSM2 card and ready lots, the kiosk backend
built by the real composition root, and udev/PC-SC event sources driven by the test.

The reader and card event sources are stand-ins behind the real ports (ReaderWatcher,
CardWatcher): the test machines have no udev events for a virtual USB reader, and the vpcd
virtual card is not linked to the SoftHSM2 token (test_card_watcher.py and test_udev_watcher.py
test the real watchers). Everything else — store, journal, vault, signing, CMS, PKCS#11 on
SoftHSM2, SMTP — is real."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pkcs11
import pytest

from balise.app.kiosk import WiredBackend, build_backend
from balise.domain.atr import CardKind, classify_atr
from balise.domain.devices import CardEvent, ReaderEvent, UsbReader
from balise.ports import TokenSigner
from balise.sim.softhsm import SoftHSM, TokenInfo
from balise.sim.vcard import ATR_CPS3, ATR_CPS3_CONTACTLESS, ATR_CPS4, ATR_UNKNOWN
from balise.ui.app import BaliseApp
from tests.support.box import Box
from tests.support.clock import TEST_NOW, TEST_TODAY

READER = UsbReader("/devices/usb1/1-1", "Lecteur CCID de test")
PCSC_NAME = "Lecteur CCID de test 00 00"
ATRS = {
    "cps3": ATR_CPS3,
    "cps4": ATR_CPS4,
    "contactless": ATR_CPS3_CONTACTLESS,
    "unknown": ATR_UNKNOWN,
}


class ScriptedReaders:
    """ReaderWatcher fed by the test (no udev events here); reports the reader at start, like
    the real one does."""

    def __init__(self, plugged: bool = True) -> None:
        self.plugged = plugged
        self._callback: Callable[[ReaderEvent], None] | None = None

    def start(self, callback: Callable[[ReaderEvent], None]) -> None:
        self._callback = callback
        if self.plugged:
            callback(ReaderEvent("added", READER.reader_id, READER.name, (READER,)))

    def stop(self) -> None:
        self._callback = None

    def present(self) -> list[UsbReader]:
        return [READER] if self.plugged else []

    def _emit(self, event: ReaderEvent) -> None:
        # From another thread, as the real watcher does.
        callback = self._callback
        if callback is not None:
            thread = threading.Thread(target=callback, args=(event,))
            thread.start()
            thread.join(5)

    def plug(self) -> None:
        self.plugged = True
        self._emit(ReaderEvent("added", READER.reader_id, READER.name, (READER,)))

    def unplug(self) -> None:
        self.plugged = False
        self._emit(ReaderEvent("removed", READER.reader_id, READER.name, ()))


class ScriptedCards:
    """CardWatcher fed by the test: insert a card by its ATR, pull it."""

    def __init__(self) -> None:
        self.atr: bytes | None = None
        self._callback: Callable[[CardEvent], None] | None = None

    def start(self, callback: Callable[[CardEvent], None]) -> None:
        self._callback = callback
        if self.atr is not None:
            callback(CardEvent("inserted", PCSC_NAME, self.atr, classify_atr(self.atr)))

    def stop(self) -> None:
        self._callback = None

    def present(self) -> list[CardEvent]:
        if self.atr is None:
            return []
        return [CardEvent("inserted", PCSC_NAME, self.atr, classify_atr(self.atr))]

    def _emit(self, event: CardEvent) -> None:
        callback = self._callback
        if callback is not None:
            thread = threading.Thread(target=callback, args=(event,))
            thread.start()
            thread.join(5)

    def insert(self, which: str = "cps3") -> None:
        self.atr = ATRS[which]
        self._emit(CardEvent("inserted", PCSC_NAME, self.atr, classify_atr(self.atr)))

    def pull(self) -> None:
        atr, self.atr = self.atr, None
        kind: CardKind | None = classify_atr(atr) if atr else None
        self._emit(CardEvent("removed", PCSC_NAME, atr, kind))


class SteppingClock:
    """Real-looking time the test moves forward (technician delays without sleeping)."""

    def __init__(self, synchronized: bool = True) -> None:
        self.when = TEST_NOW
        self.synchronized = synchronized

    def now(self) -> datetime:
        return self.when

    def is_synchronized(self) -> bool:
        return self.synchronized

    def advance(self, seconds: float) -> None:
        self.when += timedelta(seconds=seconds)


@dataclass
class Kiosk:
    box: Box
    backend: WiredBackend
    readers: ScriptedReaders
    cards: ScriptedCards
    softhsm: SoftHSM
    token: TokenInfo
    lot_ids: list[int]

    def app(self, **kwargs: object) -> BaliseApp:
        return BaliseApp(self.backend, **kwargs)  # type: ignore[arg-type]

    def use_signer(self, signer_factory: Callable[[], TokenSigner]) -> None:
        """Another card stand-in on the same box (a fake token for what SoftHSM2 cannot play: a
        locked PIN, a reader's keypad): a new backend with fresh scripted readers and cards; the
        replaced backend's watches are stopped."""
        self.backend.stop_watches()
        self.readers, self.cards = ScriptedReaders(), ScriptedCards()
        backend = build_backend(
            self.box.ctx,
            env=self.box.env.env,
            reader_watcher=self.readers,
            card_watcher=self.cards,
            signer_factory=signer_factory,
        )
        assert isinstance(backend, WiredBackend)
        self.backend = backend


def import_lots(box: Box, count: int, first: int = 1, today: date | None = None) -> list[int]:
    # Imported here: lot_corpus is registered as a plugin after this module.
    from tests.support.lot_corpus import valid_lot

    today = today or TEST_TODAY
    ids = []
    for n in range(first, first + count):
        outcome = box.ctx.intake().import_bytes(
            f"{n}.lot", valid_lot(today, lot_number=n), f"t:{n}"
        )
        assert outcome.accepted and outcome.lot_id is not None, outcome.problems
        ids.append(outcome.lot_id)
    return ids


def real_signer(softhsm: SoftHSM, info: TokenInfo) -> Callable[[], TokenSigner]:
    from balise.adapters.pkcs11 import Pkcs11Signer

    return lambda: Pkcs11Signer(pkcs11.lib(str(softhsm.module)), token_label=info.label)


@pytest.fixture
def kiosk(box: Box, token: tuple[SoftHSM, TokenInfo]) -> Iterator[Kiosk]:
    """A configured box (p1), 3 ready lots, a SoftHSM2 card, reader plugged, no card yet."""
    softhsm, info = token
    box.ctx.params.set("pkcs11_module", str(softhsm.module))
    ids = import_lots(box, 3)
    readers, cards = ScriptedReaders(), ScriptedCards()
    backend = build_backend(
        box.ctx,
        env=box.env.env,
        reader_watcher=readers,
        card_watcher=cards,
        signer_factory=real_signer(softhsm, info),
    )
    assert isinstance(backend, WiredBackend)
    kiosk = Kiosk(box, backend, readers, cards, softhsm, info, ids)
    try:
        yield kiosk
    finally:
        kiosk.backend.stop_watches()  # the one in use (use_signer stopped any earlier one)
