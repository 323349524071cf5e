"""The journal and service-manager adapter (balise.adapters.systemd) against the real protocols:
records sent to a real systemd-journald (private, tests/support/journald.py) and read back with
journalctl at their priorities with their codes; sd_notify datagrams received on a real unix
datagram socket standing for systemd's NOTIFY_SOCKET (the same protocol: what the test reads is
what PID 1 would read); the stderr fallbacks."""

from __future__ import annotations

import io
import logging
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from balise.adapters.systemd import (
    JournalHandler,
    Notifier,
    configure_logging,
    encode_native,
    make_handler,
    priority,
    stderr_is_journal,
)
from tests.support.journald import Journald

SECRET = "BALISE-SENTINEL-adapter-5e1f"


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("balise.test_systemd_adapter")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


def test_records_reach_journald_with_their_priority_code_and_identifier(
    journald: Journald, logger: logging.Logger
) -> None:
    logger.addHandler(JournalHandler("balise-essai", socket_path=journald.socket))
    logger.debug("détail de routine", extra={"code": "ROUTINE_DEBUG"})
    logger.info("relève : p1, 3 message(s)", extra={"code": "PURGE_DONE", "fields": {"step": "p"}})
    logger.warning("BAL injoignable", extra={"code": "POP3_UNREACHABLE", "fields": {"n": 2}})
    logger.error("disque plein", extra={"code": "DISK_FULL"})
    logger.warning("deux lignes\nla seconde", extra={"code": "TWO_LINES"})

    entries = journald.wait_for("SYSLOG_IDENTIFIER=balise-essai", count=5)
    seen = {e["BALISE_CODE"]: e for e in entries}
    assert [e["BALISE_CODE"] for e in entries] == [
        "ROUTINE_DEBUG", "PURGE_DONE", "POP3_UNREACHABLE", "DISK_FULL", "TWO_LINES",
    ]  # fmt: skip
    assert {c: seen[c]["PRIORITY"] for c in seen} == {
        "ROUTINE_DEBUG": "7", "PURGE_DONE": "6", "POP3_UNREACHABLE": "4", "DISK_FULL": "3",
        "TWO_LINES": "4",
    }  # fmt: skip
    # The code is in the words too (what `journalctl -o cat` shows), and in its own field.
    assert seen["POP3_UNREACHABLE"]["MESSAGE"] == "BAL injoignable [POP3_UNREACHABLE]"
    assert seen["POP3_UNREACHABLE"]["BALISE_N"] == "2"
    assert seen["PURGE_DONE"]["BALISE_STEP"] == "p"
    # A value with a newline travels in the protocol's binary form, whole.
    assert seen["TWO_LINES"]["MESSAGE"] == "deux lignes\nla seconde [TWO_LINES]"
    assert seen["DISK_FULL"]["_TRANSPORT"] == "journal"
    # What a technician asks for: only the warnings and worse.
    warned = journald.entries("SYSLOG_IDENTIFIER=balise-essai", priority="warning")
    assert [e["BALISE_CODE"] for e in warned] == ["POP3_UNREACHABLE", "DISK_FULL", "TWO_LINES"]


def test_an_exception_gives_its_type_and_place_never_its_message(
    journald: Journald, logger: logging.Logger
) -> None:
    logger.addHandler(JournalHandler("balise-essai", socket_path=journald.socket))
    try:
        raise ValueError(f"mot de passe {SECRET}")
    except ValueError as exc:
        logger.error("erreur interne (ValueError)", exc_info=exc, extra={"code": "INTERNAL"})

    (entry,) = journald.wait_for("SYSLOG_IDENTIFIER=balise-essai")
    assert entry["PRIORITY"] == "3" and entry["BALISE_CODE"] == "INTERNAL"
    assert entry["BALISE_TRACE"].startswith("ValueError at test_systemd_adapter.py:")
    assert SECRET not in str(entry)
    assert SECRET.encode() not in journald.raw_bytes()


def test_native_encoding_of_the_protocol() -> None:
    assert encode_native([("MESSAGE", "a=b"), ("PRIORITY", "4")]) == b"MESSAGE=a=b\nPRIORITY=4\n"
    multi = encode_native([("MESSAGE", "x\ny")])
    assert multi == b"MESSAGE\n" + struct.pack("<Q", 3) + b"x\ny\n"
    assert [priority(x) for x in (50, 40, 30, 20, 10)] == [2, 3, 4, 6, 7]


def test_stderr_is_the_journal_stream_gets_priority_prefixes(tmp_path: Path) -> None:
    path = tmp_path / "stderr"
    with path.open("w", encoding="utf-8") as stream:
        st = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert stderr_is_journal(env, stream)
        # No journal socket to speak to: journald reads stderr, the prefix carries the priority.
        handler = configure_logging(
            "balise-essai", env=env, stream=stream, socket_path=tmp_path / "absent"
        )
        log = logging.getLogger("balise")
        try:
            log.getChild("essai").warning("échec", extra={"code": "SMTP_AUTH"})
            log.getChild("essai").info("fait", extra={"code": "SEND_DONE"})
        finally:
            log.removeHandler(handler)
            handler.close()
    assert path.read_text(encoding="utf-8").splitlines() == [
        "<4>échec [SMTP_AUTH]",
        "<6>fait [SEND_DONE]",
    ]


def test_a_terminal_gets_french_lines_with_the_code(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = make_handler("balise-agent", env={}, stream=stream, socket_path=tmp_path / "x")
    record = logging.makeLogRecord(
        {"msg": "sauvegarde impossible", "levelno": 30, "code": "BACKUP_NO_PASSPHRASE"}
    )
    handler.handle(record)
    assert stream.getvalue() == (
        "balise-agent: avertissement : sauvegarde impossible [BACKUP_NO_PASSPHRASE]\n"
    )
    # Under systemd with the journal's socket there: the native protocol.
    assert isinstance(
        make_handler("x", env={"INVOCATION_ID": "1"}, socket_path=_bound(tmp_path / "j")),
        JournalHandler,
    )


def _bound(path: Path) -> Path:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.close()  # the inode stays: is_socket() is what make_handler looks at
    return path


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A unix datagram socket standing for systemd's NOTIFY_SOCKET (the protocol is this)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def datagrams(sock: socket.socket) -> list[str]:
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode("utf-8"))
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(5)
    return out


def test_sd_notify_ready_status_watchdog_stopping(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier(env)
    assert notifier.enabled and notifier.watchdog_s == 4.0
    assert notifier.ready("démarré")
    assert notifier.status("ligne 1\nligne 2")
    assert notifier.status("ligne 1\nligne 2")  # unchanged: not sent again
    assert notifier.watchdog() and notifier.watchdog()  # the second is within the rate limit
    assert notifier.stopping()
    notifier.close()
    assert datagrams(sock) == [
        "READY=1\nSTATUS=démarré",
        "STATUS=ligne 1 ligne 2",
        "WATCHDOG=1",
        "STOPPING=1",
    ]


def test_a_long_start_extends_its_timeout_at_most_once_a_second(
    notify_socket: tuple[socket.socket, str],
) -> None:
    """A migration's progress calls it thousands of times: systemd's queue (10 datagrams by
    default) must not be flooded, nor the migration slowed down."""
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    for _ in range(5000):
        assert notifier.extend_start(300, "préparation de la base")
    notifier.close()
    assert datagrams(sock) == ["EXTEND_TIMEOUT_USEC=300000000\nSTATUS=préparation de la base"]
    assert not Notifier({}).extend_start(300, "hors de systemd")


def test_sd_notify_abstract_socket_and_a_watchdog_meant_for_another_process() -> None:
    name = f"balise-test-notify-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "1000000",
                             "WATCHDOG_PID": "1"})  # fmt: skip
        assert notifier.watchdog_s is None and not notifier.watchdog()
        assert notifier.ready()
        assert sock.recv(4096) == b"READY=1"
        notifier.close()
    finally:
        sock.close()
    silent = Notifier({})
    assert not silent.enabled and not silent.ready() and not silent.watchdog()
