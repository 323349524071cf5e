"""Reader watcher against umockdev: USB CCID readers plugged, unplugged and replugged, others ignored.

The watcher runs in a child process under the umockdev preload (see tests/support/udev_fixtures.py);
the test reads what it reports.
"""

from __future__ import annotations

from typing import Any

from tests.support.udev_fixtures import JsonChild, UsbTestbed


def next_event(watcher: JsonChild) -> dict[str, Any]:
    event: dict[str, Any] = watcher.next_with("event")
    return event


def ids(readers: list[dict[str, Any]]) -> list[str]:
    return [r["reader_id"] for r in readers]


def test_reader_present_at_start_is_found(usb_testbed: UsbTestbed) -> None:
    reader = usb_testbed.plug("1-1", manufacturer="Gemalto", product="PC Twin Reader")
    watcher = usb_testbed.start_watcher()
    present = watcher.next_with("present")
    assert present == [{"reader_id": reader, "name": "Gemalto PC Twin Reader"}]
    event = next_event(watcher)  # the listing is also reported as events
    assert (event["action"], event["reader_id"], event["name"]) == (
        "added",
        reader,
        "Gemalto PC Twin Reader",
    )


def test_plug_unplug_replug(usb_testbed: UsbTestbed) -> None:
    watcher = usb_testbed.start_watcher()
    assert watcher.next_with("present") == []

    first = usb_testbed.plug("1-2")
    event = next_event(watcher)
    assert (event["action"], event["reader_id"], event["name"]) == ("added", first, "ACS ACR38U")
    assert ids(event["readers"]) == [first]

    usb_testbed.unplug("1-2")
    event = next_event(watcher)
    assert (event["action"], event["reader_id"], event["name"]) == ("removed", first, "ACS ACR38U")
    assert event["readers"] == []

    # Same reader back in another port (umockdev cannot re-add a path).
    second = usb_testbed.plug("1-3")
    event = next_event(watcher)
    assert (event["action"], event["reader_id"]) == ("added", second)
    watcher.send("present")
    assert ids(watcher.next_with("present")) == [second]


def test_keyboard_is_ignored(usb_testbed: UsbTestbed) -> None:
    keyboard = usb_testbed.plug("1-4", cls=0x03, manufacturer="Logitech", product="Keyboard")
    watcher = usb_testbed.start_watcher()
    assert watcher.next_with("present") == []
    usb_testbed.plug("1-5", cls=0x03, product="Mouse")
    usb_testbed.unplug("1-4")
    reader = usb_testbed.plug("1-6")
    # The first thing the watcher says is about the reader: nothing came from the HID devices.
    event = next_event(watcher)
    assert (event["action"], event["reader_id"]) == ("added", reader)
    assert ids(event["readers"]) == [reader]
    assert keyboard not in ids(event["readers"])


def test_burst_of_uevents_gives_one_event(usb_testbed: UsbTestbed) -> None:
    watcher = usb_testbed.start_watcher()
    assert watcher.next_with("present") == []
    reader = usb_testbed.plug("1-7")
    for action in ("bind", "change", "change", "add"):
        usb_testbed.uevent("1-7", action)
    sentinel = usb_testbed.plug("1-8")
    first, second = next_event(watcher), next_event(watcher)
    assert (first["action"], first["reader_id"]) == ("added", reader)
    # No second "added" for the same reader: the next event is the other reader's.
    assert (second["action"], second["reader_id"]) == ("added", sentinel)
    assert ids(second["readers"]) == sorted([reader, sentinel])


def test_device_removal_alone_removes_the_reader(usb_testbed: UsbTestbed) -> None:
    reader = usb_testbed.plug("1-9")
    other = usb_testbed.plug("1-10")
    watcher = usb_testbed.start_watcher()
    assert ids(watcher.next_with("present")) == sorted([reader, other])
    assert {next_event(watcher)["reader_id"] for _ in range(2)} == {reader, other}
    usb_testbed.unplug("1-9", device_only=True)  # no uevent for the interface
    event = next_event(watcher)
    assert (event["action"], event["reader_id"]) == ("removed", reader)
    assert ids(event["readers"]) == [other]


def test_watcher_stops_quickly(usb_testbed: UsbTestbed) -> None:
    usb_testbed.plug("1-11")
    watcher = usb_testbed.start_watcher()
    watcher.next_with("present")
    watcher.close_stdin()
    assert watcher.next_with("stopped") < 1.0


def test_plug_and_unplug_in_one_burst_says_nothing(usb_testbed: UsbTestbed) -> None:
    # A wide quiet window so that the helper's scheduling cannot split the burst.
    watcher = usb_testbed.start_watcher(coalesce_s=0.5)
    assert watcher.next_with("present") == []
    usb_testbed.flicker("1-12")
    sentinel = usb_testbed.plug("1-13")
    event = next_event(watcher)
    # No "added" then "removed" flicker for 1-12: the first event is the next reader's.
    assert (event["action"], event["reader_id"]) == ("added", sentinel)
    assert ids(event["readers"]) == [sentinel]
