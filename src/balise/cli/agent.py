"""`balise agent`: the background service (intake, sending retries, purge loop, overdue ARLs)."""

from __future__ import annotations

import argparse
import signal
from types import FrameType

from balise.cli.common import EXIT_OK, EXIT_PROBLEM, _context, _out
from balise.domain.errors import ValidationError


def cmd_agent(args: argparse.Namespace) -> int:
    from balise.agent import Agent

    scale = float(args.interval_scale)
    if not 0 < scale <= 10:
        raise ValidationError(
            "--interval-scale : nombre entre 0 (exclu) et 10 attendu",
            "--interval-scale: a number in (0, 10] is expected",
        )
    max_cycles = 1 if args.once else args.max_cycles
    if max_cycles is not None and max_cycles < 1:
        raise ValidationError("--max-cycles : au moins 1", "--max-cycles: at least 1")
    ctx = _context(args)
    try:
        agent = Agent(ctx, interval_scale=scale, log=_out)

        def on_signal(_signum: int, _frame: FrameType | None) -> None:
            agent.stop()  # the step in progress finishes; the loop then ends

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            _out(f"service de fond démarré (cycles : {max_cycles or 'sans limite'})")
            reports = agent.run(max_cycles=max_cycles)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        ctx.close()
    last = reports[-1] if reports else None
    _out(f"service de fond arrêté après {agent.cycles} cycle(s)")
    if args.once and last is not None and last.failed:
        _out("étapes en échec : " + ", ".join(last.failed))
        return EXIT_PROBLEM
    return EXIT_OK
