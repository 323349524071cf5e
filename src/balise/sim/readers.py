"""The demo's virtual card reader as the kiosk's reader watcher (ports.ReaderWatcher)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

from balise.domain.devices import ReaderEvent, UsbReader
from balise.sim.pcscd import READER_NAME

_JOIN_S: Final = 30.0


class DemoReaderWatcher:
    """The virtual reader as the kiosk's reader watcher: it is no USB device, so udev never sees
    it; it is always plugged in while the demo runs (pcscd serves it)."""

    def __init__(self) -> None:
        self._reader = UsbReader(
            reader_id="vpcd:0", name=f"{READER_NAME} (lecteur virtuel de démonstration)"
        )
        self._thread: threading.Thread | None = None

    def start(self, callback: Callable[[ReaderEvent], None]) -> None:
        event = ReaderEvent("added", self._reader.reader_id, self._reader.name, (self._reader,))
        # Reported from a thread of its own, as the udev watcher does.
        self._thread = threading.Thread(target=callback, args=(event,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.join(_JOIN_S)

    def present(self) -> list[UsbReader]:
        return [self._reader]
