"""`balise egress list`: the ONE list of hosts the box may reach, derived from the parameters
(balise.services.egress, rules in balise.domain.egress), printed or written for the root helper
of the appliance (ansible/roles/hardening/files/balise-egress-apply), which resolves it and loads
it into the nftables sets of the default-drop output policy. A refused destination is said on
stderr, the others stay allowed.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path

from balise.cli.common import EXIT_OK, _context, _err, _out
from balise.domain.egress import EgressEntry
from balise.services.egress import egress_entries

_SHOWN_MAX = 80


def _shown(text: str) -> str:
    """A hostile value as one printable line (no control character reaches a terminal)."""
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return escaped if len(escaped) <= _SHOWN_MAX else escaped[: _SHOWN_MAX - 1] + "…"


def entry_line(entry: EgressEntry) -> str:
    """One line of the listing (a refused destination with its reason; no control character)."""
    if entry.refused:
        port = str(entry.port) if entry.port else "?"
        where = f"{_shown(entry.host):<40} {port}/{entry.proto}"
        return f"{_shown(entry.purpose):<16} {where} refusé : {entry.refused}"
    return f"{entry.purpose:<16} {entry.host:<40} {entry.port}/{entry.proto}"


def cmd_egress_list(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        entries = egress_entries(ctx.params)
    finally:
        ctx.close()
    for entry in entries:
        if entry.refused:
            # stderr: the journal of balise-egress.service, the technician's terminal.
            _err(
                f"balise egress : destination refusée ({_shown(entry.purpose)}) "
                f"« {_shown(entry.host)} » : {entry.refused} ; les autres restent autorisées"
            )
    if args.json:
        text = json.dumps([asdict(e) for e in entries], ensure_ascii=False, indent=1)
    else:
        text = "\n".join(entry_line(e) for e in entries)
    if args.output:
        # Written through a temporary name so the root helper never reads half a list.
        target = Path(args.output)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, target)
    else:
        _out(text)
    return EXIT_OK
