"""`balise agent`: the background service (intake, sending retries, purge loop, overdue ARLs).

What it does goes to the system journal when systemd runs it (one record per event, with its
priority and a BALISE_CODE field), else to stderr as lines for a person; it tells systemd when it
is ready, pings the watchdog and keeps its status line (``Type=notify``, see balise-agent.service).
"""

from __future__ import annotations

import argparse
import logging
import signal
from types import FrameType

from balise.cli.common import EXIT_OK, EXIT_PROBLEM, _context
from balise.domain.codes import AgentEvent
from balise.domain.errors import BaliseError, ValidationError

IDENTIFIER = "balise-agent"
# Each sign of progress gives the start this much more time: as much as TimeoutStartSec gives it.
# The longest silence is the migrations' commit (its log written to the database): 2.4 s for a
# ten-year database (1.0 GB) on the machine of bench/scale.py, so tens of seconds on an SD card.
STARTING_S = 300.0
STARTING_WORDS = "préparation de la base de données (mise à jour) : ne pas éteindre"


def cmd_agent(args: argparse.Namespace) -> int:
    from balise.adapters.systemd import Notifier, configure_logging
    from balise.app.agent import Agent

    scale = float(args.interval_scale)
    if not 0 < scale <= 10:
        raise ValidationError(
            "--interval-scale : nombre entre 0 (exclu) et 10 attendu",
            "--interval-scale: a number in (0, 10] is expected",
        )
    max_cycles = 1 if args.once else args.max_cycles
    if max_cycles is not None and max_cycles < 1:
        raise ValidationError("--max-cycles : au moins 1", "--max-cycles: at least 1")
    configure_logging(IDENTIFIER)
    log = logging.getLogger("balise.agent")
    notifier = Notifier()
    try:
        # The first start after an update may copy and migrate a large database (minutes on an
        # SD card): systemd is told the start goes on, while it does (balise-agent.service's
        # TimeoutStartSec would otherwise kill it half-way; it would start again from the copy).
        ctx = _context(args, busy=lambda: notifier.extend_start(STARTING_S, STARTING_WORDS))
    except BaliseError as exc:  # said at its priority too (the command's own line is info)
        log.error("démarrage impossible : %s", exc.fr, extra={"code": exc.code})
        raise
    try:
        agent = Agent(ctx, interval_scale=scale, notifier=notifier)

        def on_signal(_signum: int, _frame: FrameType | None) -> None:
            agent.stop()  # the step in progress finishes; the loop then ends

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            reports = agent.run(max_cycles=max_cycles)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        ctx.close()
        notifier.close()
    last = reports[-1] if reports else None
    if args.once and last is not None and last.failed:
        log.warning(
            "étapes en échec : %s",
            ", ".join(last.failed),
            extra={
                "code": AgentEvent.AGENT_STEPS_FAILED,
                "fields": {"steps": ",".join(last.failed)},
            },
        )
        return EXIT_PROBLEM
    return EXIT_OK
