"""`balise relay status`: the card channel to online services (issue 20) as the kiosk shows it —
open or not, for which practitioner, since when, how many requests — read from the state file
the relay process writes every second beside its socket (``BALISE_RELAY_SOCKET``, default
/run/balise/relay.sock: ``relay-status.json``). The relay runs as a process of the kiosk, not in
this command: a state left open but not rewritten for a while is a relay that no longer runs
(the kiosk stopped), said as closed. Nothing secret is in that file."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from balise.cli.common import EXIT_OK, _out, json_flag

# The relay rewrites its state every second: older than this while "open", it no longer runs.
STALE_AFTER_S: Final = 10.0

_WHY: Final = {
    "card_pulled": "carte retirée",
    "idle": "inactivité",
    "practitioner": "fermé par le praticien",
    "stopped": "relais arrêté",
}


def relay_status(env: Mapping[str, str]) -> dict[str, Any]:
    # Imported here: the relay's module loads the card's libraries, which `balise --help` need not.
    from balise.app.relay_main import read_status, relay_socket, status_path

    path = status_path(relay_socket(env))
    state = read_status(path)
    try:
        mtime = path.stat().st_mtime
    except OSError:  # replaced or removed since: the relay is starting or gone
        state = None
    if state is None:
        return {
            "open": False,
            "practitioner": None,
            "since": None,
            "requests": 0,
            "handshakes": 0,
            "closed_because": None,
            "updated": None,
        }
    still = state.open and time.time() - mtime <= STALE_AFTER_S
    closed = state.closed_because
    if state.open and not still:
        closed = "stopped"
    return {
        "open": still,
        "practitioner": state.practitioner,
        "since": state.since.isoformat() if state.since else None,
        "requests": state.requests,
        "handshakes": state.handshakes,
        "closed_because": None if still else closed or "stopped",
        "updated": datetime.fromtimestamp(mtime, UTC).isoformat(),
    }


def status_line(status: dict[str, Any]) -> str:
    if status["updated"] is None:
        return "Aucun canal ouvert."
    if status["open"]:
        return (
            f"Canal ouvert pour {status['practitioner']} depuis {status['since']} : "
            f"{status['requests']} requête(s) relayée(s)."
        )
    return f"Canal fermé ({_WHY.get(status['closed_because'], 'relais arrêté')})."


def cmd_relay_status(args: argparse.Namespace) -> int:
    status = relay_status(os.environ)
    _out(json.dumps(status, ensure_ascii=False) if args.json else status_line(status))
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    relay = sub.add_parser("relay", help="canal de la carte vers les services en ligne")
    actions = relay.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = actions.add_parser(
        "status", help="canal ouvert ou non, pour qui, depuis quand, combien de requêtes"
    )
    json_flag(status)
    status.set_defaults(func=cmd_relay_status)
