"""umockdev testbed helper: fake USB devices plugged in and out, driven by JSON lines on stdin.

Run by ``udev_fixtures`` as ``umockdev-wrapper /usr/bin/python3 udev_testbed.py`` (UMockdev's GI
bindings exist only for Debian's python3, and the testbed must itself run under the preload).
Importing this module (pytest registers tests/support modules as plugins) does nothing.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _usb_device(bed: Any, port: str, vid: int, pid: int, manufacturer: str, product: str) -> str:
    # Attributes and uevent properties as the kernel gives them for a USB device.
    return str(
        bed.add_device(
            "usb",
            port,
            None,
            [
                "idVendor", f"{vid:04x}",
                "idProduct", f"{pid:04x}",
                "bDeviceClass", "00",
                "manufacturer", manufacturer,
                "product", product,
            ],
            ["DEVTYPE", "usb_device", "PRODUCT", f"{vid:x}/{pid:x}/100", "TYPE", "0/0/0"],
        )
    )  # fmt: skip


def _usb_interface(bed: Any, parent: str, port: str, cls: int, vid: int, pid: int) -> str:
    modalias = f"usb:v{vid:04X}p{pid:04X}d0100dc00dsc00dp00ic{cls:02X}isc00ip00in00"
    return str(
        bed.add_device(
            "usb",
            f"{port}:1.0",
            parent,
            [
                "bInterfaceClass", f"{cls:02x}",
                "bInterfaceSubClass", "00",
                "bInterfaceProtocol", "00",
                "bInterfaceNumber", "00",
            ],
            [
                "DEVTYPE", "usb_interface",
                "INTERFACE", f"{cls}/0/0",  # decimal, like the kernel
                "PRODUCT", f"{vid:x}/{pid:x}/100",
                "MODALIAS", modalias,
            ],
        )
    )  # fmt: skip


def serve(bed: Any, lines: Any, out: Any) -> None:
    """One JSON command per line; one JSON answer per command. Ends at EOF."""
    devices: dict[str, tuple[str, str]] = {}  # port -> (device syspath, interface syspath)

    def answer(payload: dict[str, Any]) -> None:
        out.write(json.dumps(payload) + "\n")
        out.flush()

    answer({"root": bed.get_root_dir()})
    for line in lines:
        if not line.strip():
            continue
        command = json.loads(line)
        try:
            op, port = command["op"], command["port"]
            if op == "plug":
                # add_device emits the "add" uevents itself: device first, then interface.
                vid, pid = command.get("vid", 0x072F), command.get("pid", 0x90CC)
                device = _usb_device(
                    bed, port, vid, pid, command.get("manufacturer", ""), command["product"]
                )
                interface = _usb_interface(bed, device, port, command["cls"], vid, pid)
                devices[port] = (device, interface)
            elif op == "flicker":
                # Everything in one go, microseconds apart: one burst for the watcher.
                device = _usb_device(bed, port, 0x072F, 0x90CC, "ACS", "ACR38U")
                interface = _usb_interface(bed, device, port, 0x0B, 0x072F, 0x90CC)
                for path in (interface, device):
                    bed.uevent(path, "remove")
                bed.remove_device(interface)
                bed.remove_device(device)
            elif op == "uevent":
                bed.uevent(devices[port][1], command["action"])
            elif op == "unplug":
                device, interface = devices.pop(port)
                # remove_device emits nothing: send the kernel's removal uevents first.
                if not command.get("device_only", False):
                    bed.uevent(interface, "remove")
                bed.uevent(device, "remove")
                bed.remove_device(interface)
                bed.remove_device(device)
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as exc:  # the test reads the failure instead of hanging
            answer({"error": f"{type(exc).__name__}: {exc}"})
            continue
        answer({"ok": op, "port": port})


def main() -> None:
    import gi

    gi.require_version("UMockdev", "1.0")
    from gi.repository import UMockdev

    bed = UMockdev.Testbed.new()
    serve(bed, sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
