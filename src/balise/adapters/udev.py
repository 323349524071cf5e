"""Reader watcher over udev (pyudev): USB smart-card readers (CCID interfaces) plugged in and out.

The netlink monitor is started before the initial listing, so a reader plugged in between is
seen by one or the other (deduplicated by device path); bursts of uevents become one state.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import pyudev

from balise.domain.devices import ReaderEvent, UsbReader

log = logging.getLogger(__name__)

CCID_CLASS: Final = 0x0B
"""USB interface class of smart-card readers (libccid's udev rule matches ``*:0b0000:*``)."""

COALESCE_S: Final = 0.05
"""Quiet time that ends a burst (one plug gives several uevents within a few ms)."""
MAX_BURST_S: Final = 0.5
MAX_BURST_EVENTS: Final = 256
_PRESENT_ACTIONS: Final = frozenset({"add", "bind", "change", None})  # None: from the listing


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    return str(value).strip() if value is not None else ""


def _is_ccid_interface(device: Any) -> bool:
    """A USB interface of class 0b, from the uevent's INTERFACE (decimal "11/0/0") or sysfs."""
    if device.properties.get("DEVTYPE") != "usb_interface":
        return False
    interface = device.properties.get("INTERFACE")
    if interface:
        head = str(interface).split("/", 1)[0]
        return head.isdigit() and int(head) == CCID_CLASS
    with contextlib.suppress(KeyError, ValueError, OSError):
        return int(_text(device.attributes.get("bInterfaceClass")), 16) == CCID_CLASS
    return False


def _parent_path(device_path: str) -> str:
    return device_path.rsplit("/", 1)[0] or device_path


def _reader_name(device: Any) -> str:
    """Manufacturer and product as the reader says them, else the database names, else ids."""
    parent = device.find_parent("usb", "usb_device")
    sources = [d for d in (parent, device) if d is not None]
    for source in sources:
        with contextlib.suppress(KeyError, OSError):
            words = [_text(source.attributes.get(a)) for a in ("manufacturer", "product")]
            name = " ".join(w for w in words if w)
            if name:
                return name
        props = source.properties
        name = " ".join(
            _text(props.get(k)) for k in ("ID_VENDOR_FROM_DATABASE", "ID_MODEL_FROM_DATABASE")
        ).strip()
        if name:
            return name
    product = _text(device.properties.get("PRODUCT"))  # "72f/90cc/100" (hex, unpadded)
    parts = product.split("/")
    if len(parts) >= 2:
        with contextlib.suppress(ValueError):
            return f"USB {int(parts[0], 16):04x}:{int(parts[1], 16):04x}"
    return "USB"


class UdevReaderWatcher:
    """Implements :class:`balise.ports.ReaderWatcher` with a pyudev netlink monitor.

    ``start`` lists the readers present (``present()`` is right as soon as it returns) and
    reports them as "added" from the watcher thread, then every change; ``callback`` runs on
    that thread (post it to the UI loop from there).
    """

    def __init__(
        self,
        context: Any = None,
        *,
        coalesce_s: float = COALESCE_S,
        max_burst_s: float = MAX_BURST_S,
    ) -> None:
        self._context: Any = context if context is not None else pyudev.Context()
        self.coalesce_s = coalesce_s
        self.max_burst_s = max(max_burst_s, coalesce_s)
        self._lock = threading.Lock()
        self._interfaces: dict[str, UsbReader] = {}  # CCID interface path -> its reader
        self._reported: dict[str, UsbReader] = {}
        self._monitor: Any = None
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1
        self._callback: Callable[[ReaderEvent], None] | None = None

    def start(self, callback: Callable[[ReaderEvent], None]) -> None:
        if self._thread is not None:
            raise RuntimeError("reader watcher already started")
        self._callback = callback
        monitor = pyudev.Monitor.from_netlink(self._context)
        monitor.filter_by("usb")
        # Listen first, list second: a reader plugged in meanwhile is in one or the other.
        monitor.start()
        self._monitor = monitor
        interfaces: dict[str, UsbReader] = {}
        for device in self._context.list_devices(subsystem="usb", DEVTYPE="usb_interface"):
            self._apply(interfaces, device, None)
        with self._lock:
            self._interfaces = interfaces
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="udev-reader-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and close the monitor; idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if thread is not threading.current_thread():
            thread.join(timeout)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1
        self._monitor = None  # pyudev closes the netlink socket when the monitor is freed

    def present(self) -> list[UsbReader]:
        """Readers plugged in now, by device path."""
        with self._lock:
            return self._readers(self._interfaces)

    @staticmethod
    def _readers(interfaces: dict[str, UsbReader]) -> list[UsbReader]:
        unique = {reader.reader_id: reader for reader in interfaces.values()}
        return [unique[key] for key in sorted(unique)]

    def _apply(self, interfaces: dict[str, UsbReader], device: Any, action: str | None) -> None:
        path = str(device.device_path)
        if action == "remove":
            # Pulling a reader may remove only the USB device: drop everything beneath it too.
            for known in [p for p in interfaces if p == path or p.startswith(path + "/")]:
                del interfaces[known]
            return
        if action in _PRESENT_ACTIONS and path not in interfaces and _is_ccid_interface(device):
            interfaces[path] = UsbReader(reader_id=_parent_path(path), name=_reader_name(device))

    def _run(self) -> None:
        self._publish()  # the readers found by the listing
        monitor = self._monitor
        while True:  # ends on stop(): the wake pipe becomes readable
            ready, _, _ = select.select([monitor, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            with self._lock:
                interfaces = dict(self._interfaces)
            self._drain(monitor, interfaces)
            with self._lock:
                self._interfaces = interfaces
            self._publish()

    def _drain(self, monitor: Any, interfaces: dict[str, UsbReader]) -> None:
        """Apply one burst of uevents: until ``coalesce_s`` of quiet, bounded in time and count."""
        deadline = time.monotonic() + self.max_burst_s
        for count in range(MAX_BURST_EVENTS):
            timeout = 0.0 if count == 0 else min(self.coalesce_s, deadline - time.monotonic())
            device = monitor.poll(timeout=max(timeout, 0.0))
            if device is None:
                return
            try:
                self._apply(interfaces, device, device.action)
            except Exception:  # a half-gone device must not end the watching
                log.exception("udev event on %s not understood", device.device_path)

    def _publish(self) -> None:
        """Report the difference between the state last reported and now: removals first."""
        with self._lock:
            now = {r.reader_id: r for r in self._readers(self._interfaces)}
        before, self._reported = self._reported, now
        snapshot = tuple(now[key] for key in sorted(now))
        events = [
            ReaderEvent("removed", r.reader_id, r.name, snapshot)
            for key, r in sorted(before.items())
            if key not in now
        ] + [
            ReaderEvent("added", r.reader_id, r.name, snapshot)
            for key, r in sorted(now.items())
            if key not in before
        ]
        callback = self._callback
        for event in events:
            if callback is None:
                return
            try:
                callback(event)
            except Exception:  # a consumer's bug must not end the watching
                log.exception("reader watcher callback failed on %s", event)
