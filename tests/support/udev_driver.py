"""Runs the real udev reader watcher in a child process under umockdev, reporting JSON lines.

``umockdev-wrapper python -m tests.support.udev_driver [coalesce_s]`` with ``UMOCKDEV_DIR`` set to the
testbed: prints ``{"present": [...]}`` once watching, then one line per ReaderEvent; at EOF on
stdin it stops the watcher and prints ``{"stopped": seconds}``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from typing import Any

from balise.adapters.udev import UdevReaderWatcher
from balise.domain.devices import ReaderEvent

_out_lock = threading.Lock()


def _say(payload: dict[str, Any]) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()


def _on_event(event: ReaderEvent) -> None:
    _say({"event": dataclasses.asdict(event)})


def main() -> None:
    # argv[1]: quiet time that ends a burst (a test may widen it so that timing cannot flake).
    coalesce_s = float(sys.argv[1]) if len(sys.argv) > 1 else 0.05
    watcher = UdevReaderWatcher(coalesce_s=coalesce_s, max_burst_s=max(0.5, 4 * coalesce_s))
    watcher.start(_on_event)
    _say({"present": [dataclasses.asdict(r) for r in watcher.present()]})
    for line in sys.stdin:  # ends at EOF: the test is done
        if line.strip() == "present":
            _say({"present": [dataclasses.asdict(r) for r in watcher.present()]})
    started = time.monotonic()
    watcher.stop()
    _say({"stopped": time.monotonic() - started})


if __name__ == "__main__":
    main()
