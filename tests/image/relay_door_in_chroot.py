"""Run inside a copy of the image's rootfs, as the kiosk's user, by tests/image/test_relay_ssh.py:
the relay's door — balise.adapters.relay_server.RelayServer, the code the relay process serves
the practice software with — on the relay's socket, for the one account given (the exchange
account), created in the directory the exchange role's tmpfiles made. Behind it, instead of the
card's TLS channel (tests/image/test_relay.py tests that one), each request is answered with its
own request line: what the practice software sees proves its request came through the door, hence
from the allowed uid (SO_PEERCRED). A refused peer's uid is printed as a JSON line on stdout. The
door on relay.sock also writes the relay's state file beside it with the relay process's own
writer (balise.app.relay_main), as the kiosk's user does on the box.

argv: socket path, account name. Ends on SIGTERM (or after 10 minutes), removing its socket."""

from __future__ import annotations

import json
import pwd
import signal
import sys
import threading
from pathlib import Path

from balise.adapters.relay_server import RelayServer
from balise.app.relay_main import _write_status, status_path
from balise.domain.relay import HttpHead
from balise.services.relay import ChannelState, error_answer


def _answer(head: HttpHead, body: bytes) -> bytes:
    text = f"relais atteint : {head.first[0]} {head.first[1]} ({len(body)} octets)\n"
    data = text.encode("utf-8")
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
        + f"Content-Length: {len(data)}\r\n\r\n".encode("ascii")
        + data
    )


def _refused(uid: int) -> None:
    print(json.dumps({"refused_uid": uid}), flush=True)


def main() -> int:
    path, account = Path(sys.argv[1]), sys.argv[2]
    server = RelayServer(
        path,
        allowed_uids={pwd.getpwnam(account).pw_uid},
        handler=_answer,
        refusal=error_answer,
        on_refused_peer=_refused,
    )
    server.start()
    if path.name == "relay.sock":
        state = ChannelState(True, "Dr Jeanne TEST", None, 0, 1, None)
        _write_status(status_path(path), state)
    print(json.dumps({"listening": str(path)}), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait(600)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
