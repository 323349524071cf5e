"""The card relay as a process of its own (issue 20): ``python -m balise.app.relay_main``.

Started by the kiosk once the practitioner typed the PIN on the box: the PIN comes on the
standard input, a pipe from the kiosk (one line, read into a bytearray, wiped after the login),
never in the arguments, the environment or a file. The process loads pkcs11-provider into its own
OpenSSL (no other TLS happens in it), serves the practice software on ``--socket`` for the
``--allow-uid`` accounts, and writes its state for the kiosk to ``--status`` (JSON, no secret:
open, practitioner, since, requests, handshakes, why it closed) every second and at the end.
SIGTERM (the practitioner's key in the kiosk) closes the channel and the card's login and ends
the process; so do a pulled card and the idle time (``relay_idle_minutes``). SIGUSR1 is the
kiosk's word that its reader watcher saw the card pulled: the same close at once, said as the
card pulled, without waiting for the relay's own check of the card (within a second)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

from balise.adapters.pkcs11 import Pkcs11Signer, open_module
from balise.app.context import open_context, resolve_data_dir
from balise.app.relay import CardRelay, kept_crls_file, open_card_relay
from balise.domain.errors import BaliseError
from balise.services.relay import ChannelState, CloseReason
from balise.services.settings import box_settings, relay_settings

__all__ = [
    "RELAY_SOCKET",
    "RelayLauncher",
    "close_on_signals",
    "main",
    "read_pin",
    "read_status",
    "relay_socket",
    "status_json",
    "status_path",
]

# Where the practice software reaches the relay (through the exchange account's SSH forwarding);
# BALISE_RELAY_SOCKET elsewhere. Its state file sits beside it (status_path).
RELAY_SOCKET: Final = "/run/balise/relay.sock"


def relay_socket(env: Mapping[str, str]) -> Path:
    return Path(env.get("BALISE_RELAY_SOCKET") or RELAY_SOCKET)


def status_path(socket_path: Path) -> Path:
    """The state file the relay started by the kiosk writes (run dir ``relay`` beside the
    socket, its status ``relay-status.json``)."""
    return socket_path.parent / "relay-status.json"


_MAX_PIN: Final = 64
_MAX_STATUS: Final = 4096
_STATUS_EVERY_S: Final = 1.0
_POLL_S: Final = 0.1
EXIT_OK: Final = 0
EXIT_REFUSED: Final = 2


def read_pin(fd: int) -> bytearray | None:
    """One line from ``fd`` (bounded) as the PIN; an empty line means the reader's keypad."""
    pin = bytearray()
    while len(pin) <= _MAX_PIN:
        byte = os.read(fd, 1)
        if not byte or byte == b"\n":
            break
        pin += byte
    if len(pin) > _MAX_PIN:
        pin[:] = bytes(len(pin))
        raise ValueError("PIN too long")
    return pin or None


def status_json(state: ChannelState) -> str:
    return json.dumps(
        {
            "open": state.open,
            "practitioner": state.practitioner,
            "since": state.since.isoformat() if state.since else None,
            "requests": state.requests,
            "handshakes": state.handshakes,
            "closed_because": state.closed_because,
        },
        ensure_ascii=False,
    )


def read_status(path: Path) -> ChannelState | None:
    """The relay process's last state (None before it wrote one, or when unreadable)."""
    try:
        with path.open("rb") as f:
            data = json.loads(f.read(_MAX_STATUS))
        since = data["since"]
        closed = data["closed_because"]
        state = ChannelState(
            open=bool(data["open"]),
            practitioner=str(data["practitioner"])[:200],
            since=datetime.fromisoformat(since) if isinstance(since, str) else None,
            requests=int(data["requests"]),
            handshakes=int(data["handshakes"]),
            closed_because=closed if closed in _REASONS else None,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


_REASONS: Final = ("card_pulled", "idle", "practitioner", "stopped")


class RelayLauncher:
    """The kiosk's handle on the relay process: started with the PIN on a pipe, its state read
    from its status file, stopped with SIGTERM (the practitioner's one key)."""

    def __init__(
        self,
        *,
        data_dir: Path,
        socket_path: Path,
        allowed_uids: Sequence[int],
        run_dir: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._data_dir = data_dir
        self._socket = socket_path
        self._uids = list(allowed_uids)
        self._run_dir = run_dir
        self.status = run_dir.parent / (run_dir.name + "-status.json")
        self._env = dict(os.environ if env is None else env)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, pin: bytearray | None) -> None:
        """Start the relay; ``pin`` (None: the reader's keypad) goes to its standard input and is
        wiped here."""
        self.status.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "balise.app.relay_main", "--data-dir", str(self._data_dir)]
        argv += ["--socket", str(self._socket), "--run-dir", str(self._run_dir)]
        argv += ["--status", str(self.status)]
        for uid in self._uids:
            argv += ["--allow-uid", str(uid)]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=self._env,
        )
        assert proc.stdin is not None
        try:
            proc.stdin.write(bytes(pin or b"") + b"\n")
            proc.stdin.close()
        except BrokenPipeError:
            pass
        finally:
            if pin is not None:
                pin[:] = bytes(len(pin))
        self._proc = proc

    def refusal(self, timeout: float) -> str | None:
        """The relay's words when it ended without serving (wrong PIN, no provider…), waiting up
        to ``timeout`` seconds; None while it runs."""
        proc = self._proc
        if proc is None:
            return None
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        assert proc.stderr is not None
        words = proc.stderr.read(4096).decode("utf-8", errors="replace").strip()
        return words if code != EXIT_OK else None

    def opened(self, timeout: float) -> str | None:
        """Wait (up to ``timeout`` seconds) until the relay says its channel is open (None) or
        ended without serving (its words); a relay silent that long is stopped and said so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if state is not None and state.open:
                return None
            words = self.refusal(_POLL_S)
            if words is not None:
                return words
            if self._proc is None or self._proc.poll() is not None:
                return "Le relais s'est arrêté sans ouvrir le canal."
        self.stop()
        return "Le relais n'a pas ouvert le canal à temps (arrêté)."

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def state(self) -> ChannelState | None:
        return read_status(self.status)

    def card_pulled(self) -> None:
        """The kiosk saw the card pulled: the relay closes at once (SIGUSR1), its state saying
        why; returns without waiting (called on the card watcher's thread)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGUSR1)

    def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _write_status(path: Path, state: ChannelState) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(status_json(state) + "\n")
    os.replace(tmp, path)


def close_on_signals(done: threading.Event) -> list[CloseReason]:
    """SIGTERM (the practitioner's key) and SIGUSR1 (the kiosk saw the card pulled) set ``done``;
    the returned list's one item says why the channel is to close."""
    because: list[CloseReason] = ["practitioner"]

    def pulled(*_: object) -> None:
        because[0] = "card_pulled"
        done.set()

    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGUSR1, pulled)
    return because


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m balise.app.relay_main")
    parser.add_argument("--data-dir")
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--allow-uid", action="append", type=int, required=True)
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--status", required=True, type=Path)
    args = parser.parse_args(argv)
    # Until the channel is open, the kiosk's word that the card was pulled must not end the
    # process (SIGUSR1's default): the opening fails on its own, or the watchdog sees the card.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)

    try:
        pin = read_pin(sys.stdin.fileno())
    except ValueError:
        print("Code PIN refusé (trop long).", file=sys.stderr)
        return EXIT_REFUSED
    ctx = open_context(resolve_data_dir(args.data_dir), actor="relay", create=False)
    relay: CardRelay | None = None
    try:
        box = box_settings(ctx.params)
        settings = relay_settings(ctx.params)
        if not settings.services:
            print("Aucun service en ligne autorisé (paramètre relay_services).", file=sys.stderr)
            return EXIT_REFUSED
        lib, _candidate = open_module(box.mode, box.pkcs11_module)
        args.run_dir.mkdir(mode=0o700, exist_ok=True)
        relay = open_card_relay(
            lib=lib,
            signer=Pkcs11Signer(lib),
            pin=pin,
            services=settings.services,
            roots_pem=box.ca_bundle,
            crl_file=kept_crls_file(ctx.data_dir / "crl", args.run_dir),
            journal=ctx.journal,
            clock=ctx.clock,
            idle_seconds=settings.idle_minutes * 60,
            socket_path=args.socket,
            allowed_uids=args.allow_uid,
            runtime_dir=args.run_dir,
        )
    except BaliseError as exc:
        print(exc.fr, file=sys.stderr)
        return EXIT_REFUSED
    finally:
        if pin is not None:
            pin[:] = bytes(len(pin))
        if relay is None:
            ctx.close()
    done = threading.Event()
    because = close_on_signals(done)
    try:
        while not done.wait(_STATUS_EVERY_S):
            _write_status(args.status, relay.relay.state())
            if not relay.relay.is_open:
                break
    finally:
        relay.close(because[0])
        _write_status(args.status, relay.relay.state())
        ctx.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
