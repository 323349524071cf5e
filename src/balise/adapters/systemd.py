"""The system journal and the service manager, spoken directly (stdlib only, no libsystemd).

Logging: :func:`configure_logging` routes the stdlib ``logging`` records of a process to

- the journal's native protocol (datagrams on ``/run/systemd/journal/socket``) when the process
  runs under systemd: each record keeps its own priority (``PRIORITY=``, what ``journalctl -p``
  filters on), its ``SYSLOG_IDENTIFIER=`` and the Balise fields (``BALISE_CODE=`` a stable code,
  ``BALISE_STEP=`` ...);
- else, when stderr is the journal's stream (``JOURNAL_STREAM`` names it), stderr lines with the
  ``<N>`` priority prefix journald understands;
- else, plain lines on stderr for a person at a terminal (level in French, then the code).

A record's code comes from ``extra={"code": "..."}``; more fields from ``extra={"fields": {...}}``
(keys become ``BALISE_<KEY>``). A record never carries a traceback's text: an exception adds only
its type and where it was raised (file, line, function), because an exception's message may hold
anything, a password included.

Service manager: :class:`Notifier` sends ``sd_notify`` datagrams (``READY=1``, ``STATUS=``,
``WATCHDOG=1``, ``STOPPING=1``) to ``$NOTIFY_SOCKET`` and knows the watchdog interval the
manager asked for (``WATCHDOG_USEC``, for this process only when ``WATCHDOG_PID`` says so).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import IO

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
# A record is our own words, never a file: bounded so a datagram always fits.
MAX_MESSAGE_CHARS = 8 * 1024
MAX_FIELD_CHARS = 2 * 1024
MAX_TRACE_FRAMES = 12

# logging's levels as syslog priorities (journalctl -p): err, warning, info, debug.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
_WORDS_FR = {2: "critique", 3: "erreur", 4: "avertissement", 5: "notice", 6: "info", 7: "débogage"}


def priority(level: int) -> int:
    """The syslog priority of a logging level (2 crit, 3 err, 4 warning, 6 info, 7 debug)."""
    for threshold, value in _PRIORITIES:
        if level >= threshold:
            return value
    return 7


def _field_name(key: str) -> str | None:
    name = "BALISE_" + "".join(c if c.isalnum() else "_" for c in key.upper())
    ok = name.isascii() and all(c.isupper() or c.isdigit() or c == "_" for c in name)
    return name[:64] if ok else None


def _bounded(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def record_code(record: logging.LogRecord) -> str | None:
    code = getattr(record, "code", None)
    return code if isinstance(code, str) and code else None


def _trace(record: logging.LogRecord) -> str | None:
    """Where an exception was raised, without its message (it could carry a secret)."""
    if not record.exc_info or record.exc_info[1] is None:
        return None
    exc = record.exc_info[1]
    frames = traceback.extract_tb(exc.__traceback__)[-MAX_TRACE_FRAMES:]
    where = " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    return f"{type(exc).__name__} at {where}" if where else type(exc).__name__


def record_text(record: logging.LogRecord) -> str:
    """The record's words, with its code in brackets when the words do not already hold it."""
    text = record.getMessage()
    code = record_code(record)
    if code and f"[{code}]" not in text:
        text = f"{text} [{code}]"
    return _bounded(text, MAX_MESSAGE_CHARS)


def journal_fields(record: logging.LogRecord, identifier: str) -> list[tuple[str, str]]:
    """The journal fields of one record (native protocol names)."""
    fields = [
        ("MESSAGE", record_text(record)),
        ("PRIORITY", str(priority(record.levelno))),
        ("SYSLOG_IDENTIFIER", identifier),
        ("SYSLOG_PID", str(os.getpid())),
        ("CODE_FILE", record.pathname),
        ("CODE_LINE", str(record.lineno)),
        ("CODE_FUNC", record.funcName),
        ("LOGGER", record.name),
    ]
    code = record_code(record)
    if code:
        fields.append(("BALISE_CODE", code))
    extra = getattr(record, "fields", None)
    if isinstance(extra, Mapping):
        for key, value in extra.items():
            name = _field_name(str(key))
            if name is not None and name != "BALISE_CODE" and value is not None:
                fields.append((name, _bounded(str(value), MAX_FIELD_CHARS)))
    trace = _trace(record)
    if trace:
        fields.append(("BALISE_TRACE", _bounded(trace, MAX_FIELD_CHARS)))
    return fields


def encode_native(fields: list[tuple[str, str]]) -> bytes:
    """The journal's native protocol: ``KEY=value\\n``, or for a value holding a newline
    ``KEY\\n`` + its length (64-bit little endian) + the value + ``\\n``."""
    out = bytearray()
    for key, value in fields:
        data = value.encode("utf-8", errors="replace")
        if b"\n" in data:
            out += key.encode("ascii") + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode("ascii") + b"=" + data + b"\n"
    return bytes(out)


class JournalHandler(logging.Handler):
    """Sends each record to journald as one native-protocol datagram."""

    def __init__(
        self,
        identifier: str,
        *,
        socket_path: Path = JOURNAL_SOCKET,
        level: int = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        self.identifier = identifier
        self.socket_path = socket_path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = encode_native(journal_fields(record, self.identifier))
            self._sock.sendto(data, str(self.socket_path))
        except Exception:  # noqa: BLE001 — logging must never stop the service
            self.handleError(record)

    def close(self) -> None:
        self._sock.close()
        super().close()


class PrefixFormatter(logging.Formatter):
    """``<N>words [CODE]``: stderr read by journald (SyslogLevelPrefix=yes, its default)."""

    def format(self, record: logging.LogRecord) -> str:
        text = record_text(record)
        trace = _trace(record)
        if trace:
            text += f" ({trace})"
        # One record, one journal line: journald would split on a newline, losing the prefix.
        return f"<{priority(record.levelno)}>" + text.replace("\n", " ⏎ ")


class ConsoleFormatter(logging.Formatter):
    """``balise-agent: avertissement : words [CODE]`` for a person at a terminal."""

    def __init__(self, identifier: str) -> None:
        super().__init__()
        self.identifier = identifier

    def format(self, record: logging.LogRecord) -> str:
        text = record_text(record)
        trace = _trace(record)
        if trace:
            text += f" ({trace})"
        level = _WORDS_FR[priority(record.levelno)]
        return f"{self.identifier}: {level} : {text}"


def stderr_is_journal(env: Mapping[str, str], stream: IO[str]) -> bool:
    """True when ``JOURNAL_STREAM`` (``device:inode``) names this process's stderr."""
    value = env.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def under_systemd(env: Mapping[str, str]) -> bool:
    """Started by the service manager (it sets INVOCATION_ID for every unit it runs)."""
    return bool(env.get("INVOCATION_ID")) or bool(env.get("JOURNAL_STREAM"))


def make_handler(
    identifier: str,
    *,
    env: Mapping[str, str] | None = None,
    stream: IO[str] | None = None,
    socket_path: Path = JOURNAL_SOCKET,
) -> logging.Handler:
    """The handler fitting where this process runs (see the module's docstring)."""
    env = os.environ if env is None else env
    stream = sys.stderr if stream is None else stream
    if under_systemd(env) and socket_path.is_socket():
        return JournalHandler(identifier, socket_path=socket_path)
    handler = logging.StreamHandler(stream)
    if stderr_is_journal(env, stream):
        handler.setFormatter(PrefixFormatter())
    else:
        handler.setFormatter(ConsoleFormatter(identifier))
    return handler


def configure_logging(
    identifier: str,
    *,
    level: int = logging.INFO,
    env: Mapping[str, str] | None = None,
    stream: IO[str] | None = None,
    socket_path: Path = JOURNAL_SOCKET,
    logger: str = "balise",
) -> logging.Handler:
    """Route the ``balise`` loggers to the journal (or stderr); returns the handler installed
    (replacing one an earlier call installed)."""
    handler = make_handler(identifier, env=env, stream=stream, socket_path=socket_path)
    handler.setLevel(level)
    target = logging.getLogger(logger)
    for old in [h for h in target.handlers if getattr(h, "_balise", False)]:
        target.removeHandler(old)
        old.close()
    handler._balise = True  # type: ignore[attr-defined]
    target.addHandler(handler)
    target.setLevel(level)
    target.propagate = False
    return handler


class Notifier:
    """``sd_notify`` over ``$NOTIFY_SOCKET``; every method is a no-op outside systemd."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # an abstract socket
        elif address and not address.startswith("/"):
            address = ""  # vsock and other forms: not for this service
        self._address = address
        self._sock: socket.socket | None = None
        self.watchdog_s: float | None = None
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1_000_000
        self._last_ping = float("-inf")
        self._last_extend = float("-inf")
        self._last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False when there is no manager to tell or
        it could not be told (the service goes on either way)."""
        if not self._address:
            return False
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            # Never blocks: a manager that does not read (a full queue) must not hang the loop.
            self._sock.sendto(
                "\n".join(assignments).encode("utf-8"), socket.MSG_DONTWAIT, self._address
            )
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([_status(status)] if status else []))

    def status(self, text: str) -> bool:
        """``STATUS=`` (what ``systemctl status`` shows), sent only when it changed."""
        line = _status(text)
        if line == self._last_status:
            return True
        self._last_status = line
        return self.notify(line)

    def watchdog(self, *, force: bool = False) -> bool:
        """``WATCHDOG=1``, at most a few times per interval (cheap to call anywhere)."""
        if self.watchdog_s is None:
            return False
        now = time.monotonic()
        if not force and now - self._last_ping < min(1.0, self.watchdog_s / 4):
            return True
        self._last_ping = now
        return self.notify("WATCHDOG=1")

    def extend_start(self, seconds: float, status: str) -> bool:
        """``EXTEND_TIMEOUT_USEC=`` with ``STATUS=``, while a long start goes on (a database
        copied and migrated after an update): the start timeout does not fire for ``seconds``
        more. Sent at most once a second (cheap to call often); the first call sends."""
        now = time.monotonic()
        if now - self._last_extend < 1.0:
            return True
        self._last_extend = now
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}", _status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([_status(status)] if status else []))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str) -> str:
    return "STATUS=" + _bounded(" ".join(text.split()), 512)
