"""`balise demo`: runs the demonstration box (balise.app.demo) — the kiosk on this terminal, or
the agent alone, or one agent cycle — and stops everything at exit, on Ctrl+C, SIGTERM or SIGHUP.
Loaded only by `balise demo`, after checking the simulators are installed (cli/admin.py)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Final

from balise.app.agent import Agent
from balise.app.demo import (
    DemoAgent,
    DemoBox,
    Say,
    demo_backend,
    help_line_en,
    help_line_fr,
    prepare_base,
    remove_tree,
    start_demo,
)

# -- the command ---------------------------------------------------------------------------------


_WAKE_S: Final = 0.2


class Stopped(Exception):
    """SIGTERM or SIGHUP: unwind like Ctrl+C so that every component is stopped."""


class SignalGate:
    """Ctrl+C, SIGTERM and SIGHUP become exceptions in the main thread, wherever it is. While
    the demo starts, one landing between a component's start and the registration of its stop
    would leave that component running (the agent's thread went on writing into the removed
    folder): ``holding()`` keeps them until every stop is registered, then raises the first."""

    SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self._held: list[int] | None = None

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self._held is not None:
            self._held.append(signum)
            return
        self.raise_for(signum)

    @staticmethod
    def raise_for(signum: int) -> None:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Stopped(signal.Signals(signum).name)

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
        if held:  # the block ended normally: its components' stops are all registered
            self.raise_for(held[0])


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run_demo(args: argparse.Namespace) -> int:
    """`balise demo [--dir D] [--keep] [--no-kiosk] [--once] [--mise-en-service]`."""
    keep = bool(getattr(args, "keep", False))
    kiosk = not bool(getattr(args, "no_kiosk", False))
    once = bool(getattr(args, "once", False))
    gate = SignalGate()
    previous = {sig: signal.signal(sig, gate.handle) for sig in SignalGate.SIGNALS}
    try:
        base, created = prepare_base(getattr(args, "dir", None))
        with contextlib.ExitStack() as stack:
            with gate.holding():
                box = _start(stack, base, created, args, keep=keep, kiosk=kiosk, once=once)
            if once:
                return _run_once(box)
            if kiosk:
                _run_kiosk(box)
            else:
                _wait_forever(box)
        return 0
    except (KeyboardInterrupt, Stopped):
        _say("Démonstration arrêtée : tout ce qu'elle avait démarré est arrêté.")
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _start(
    stack: contextlib.ExitStack,
    base: Path,
    created: bool,
    args: argparse.Namespace,
    *,
    keep: bool,
    kiosk: bool,
    once: bool,
) -> DemoBox:
    """Every component, each stop registered on ``stack``; then the agent's thread (not for
    --once), its stop registered before it starts."""
    if not keep:
        stack.callback(remove_tree, base, created)
    _say(f"Démonstration Balise dans {base} — démarrage :")
    box = start_demo(stack, base, say=_say, first_start=bool(getattr(args, "first_start", False)))
    # PKCS#11 reads SOFTHSM2_CONF once, when the kiosk loads the module in this process.
    saved = {k: os.environ.get(k) for k in box.env if k.startswith(("BALISE_", "SOFTHSM"))}
    os.environ.update({k: box.env[k] for k in saved})
    stack.callback(_restore_environ, saved)
    _say("Tout est démarré.")
    if once:
        return box
    # The kiosk owns the terminal: the agent then writes its lines to a file.
    log = _file_logger(stack, base / "agent.log") if kiosk else _agent_say
    agent = DemoAgent(box, log=log)
    stack.callback(_report_agent, agent)
    stack.callback(agent.stop)
    agent.start()
    return box


def _restore_environ(saved: Mapping[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _report_agent(agent: DemoAgent) -> None:
    for line in agent.errors[-5:]:
        sys.stderr.write(f"agent de démonstration : {line}\n")


def _agent_say(line: str) -> None:
    _say(f"agent : {line}")


def _file_logger(stack: contextlib.ExitStack, path: Path) -> Say:
    out = stack.enter_context(path.open("a", encoding="utf-8", buffering=1))
    lock = threading.Lock()

    def log(line: str) -> None:
        with lock:
            if not out.closed:
                out.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    return log


def _run_once(box: DemoBox) -> int:
    """One agent cycle (intake, sending, purge), then a summary: for tests and a quick check."""
    before = box.bal_count()
    ctx = box.open_context("agent")
    try:
        agent = Agent(ctx, env=box.env, log=_agent_say)
        try:
            report = agent.cycle()
        finally:
            agent.close()
        alerts = len(ctx.tracking(box.env).alerts())
    finally:
        ctx.close()
    _say(f"Lots acceptés : {report.taken} · fichiers refusés : {report.refused}")
    _say(f"BAL : {before} message(s) avant la relève, {box.bal_count()} après")
    _say(f"Messages supprimés de la BAL : {report.purged} · alertes : {alerts}")
    if report.failed:
        _say("Étapes en échec : " + ", ".join(report.failed))
        return 1
    return 0


def _wait_forever(box: DemoBox) -> None:
    _say(help_line_fr().replace("Ctrl+Q", "Ctrl+C"))
    _say(f"Données : BALISE_HOME={box.data_dir} BALISE_KEK_FILE={box.env['BALISE_KEK_FILE']}")
    while True:  # until Ctrl+C, SIGTERM or SIGHUP
        # Short waits: a signal the kernel hands to another thread (the agent's, the OCT
        # simulator's) runs its handler only when this thread next runs Python code.
        time.sleep(_WAKE_S)


def _run_kiosk(box: DemoBox) -> None:
    from balise.adapters.hardening import protect_process
    from balise.ui.app import run_kiosk
    from balise.ui.demo_hooks import DemoHooks

    hooks = DemoHooks(toggle_card=box.toggle_card, help_fr=help_line_fr(), help_en=help_line_en())
    ctx = box.open_context("kiosk")
    protect_process()  # not dumpable, no core file: a PIN passes through the kiosk's memory
    try:
        backend = demo_backend(box, ctx, hooks)
        run_kiosk(backend, kiosk=False, demo=hooks)
    finally:
        ctx.close()
