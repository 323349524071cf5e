"""`balise crl ...`: the IGC-Santé revocation lists the card check relies on."""

from __future__ import annotations

import argparse
import json
from typing import Any

from balise.cli.common import EXIT_OK, EXIT_PROBLEM, _context, _out


def cmd_crl_fetch(args: argparse.Namespace) -> int:
    """Fetch every source once; one line per address; exit 1 when one gave nothing usable."""
    ctx = _context(args)
    try:
        service = ctx.crl_service()
        if not service.issuers():
            _out(
                "aucune autorité IGC-Santé configurée (igc_roots, igc_intermediates) : aucune "
                "liste à télécharger"
            )
            return EXIT_PROBLEM
        if not service.sources():
            _out(
                "aucune adresse de liste de révocation (crl_url, ou points de distribution des "
                "certificats configurés)"
            )
            return EXIT_PROBLEM
        outcomes = service.fetch_all()
        status = service.status()
    finally:
        ctx.close()
    if args.json:
        data: list[dict[str, Any]] = [
            {
                "url": o.url,
                "outcome": o.kind,
                "words": o.fr,
                "issuer": o.issuer,
                "kind": o.crl_kind,
                "number": o.number,
                "this_update": o.this_update.isoformat() if o.this_update else None,
                "next_update": o.next_update.isoformat() if o.next_update else None,
                "revoked": o.revoked,
            }
            for o in outcomes
        ]
        _out(json.dumps(data, ensure_ascii=False, indent=1))
    else:
        for o in outcomes:
            mark = "ok    " if o.ok else "refusé"
            _out(f"{mark} {o.url} : {o.fr}")
        for item in status:
            state = item.age.words()[0] if item.age is not None else "aucune liste conservée"
            _out(f"autorité {item.subject} : {state}")
    return EXIT_OK if outcomes and all(o.ok for o in outcomes) else EXIT_PROBLEM


def add_parsers(sub: Any) -> None:
    """The parser lines, called from ``build_parser``."""
    crl = sub.add_parser("crl", help="listes de révocation IGC-Santé").add_subparsers(
        dest="action", required=True
    )
    c_fetch = crl.add_parser(
        "fetch", help="télécharger, vérifier et conserver les listes des autorités acceptées"
    )
    c_fetch.add_argument("--json", action="store_true")
    c_fetch.set_defaults(func=cmd_crl_fetch)
