"""`balise crl ...` and `balise organisms ...`: the IGC-Santé revocation lists the card check relies
on, and the organisms' encryption certificates from the SESAM-Vitale directory."""

from __future__ import annotations

import argparse
from typing import Any

from balise.cli.common import EXIT_OK, EXIT_PROBLEM, _context, _json, _out, json_flag, wants_json
from balise.domain.codes import TrustCode
from balise.domain.errors import ConfigError


def cmd_crl_fetch(args: argparse.Namespace) -> int:
    """Fetch every source once; one line per address; exit 1 when one gave nothing usable."""
    ctx = _context(args)
    try:
        service = ctx.crl_service()
        if not service.issuers():
            raise ConfigError(
                "aucune autorité IGC-Santé configurée (igc_roots, igc_intermediates) : aucune "
                "liste à télécharger",
                "no IGC-Santé authority configured (igc_roots, igc_intermediates): no list to "
                "fetch",
                code=TrustCode.CRL_NO_AUTHORITY,
            )
        if not service.sources():
            raise ConfigError(
                "aucune adresse de liste de révocation (crl_url, ou points de distribution des "
                "certificats configurés)",
                "no revocation list address (crl_url, or the configured certificates' "
                "distribution points)",
                code=TrustCode.CRL_NO_SOURCE,
            )
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
        _json(data)
    else:
        for o in outcomes:
            mark = "ok    " if o.ok else "refusé"
            _out(f"{mark} {o.url} : {o.fr}")
        for item in status:
            state = item.age.words()[0] if item.age is not None else "aucune liste conservée"
            _out(f"autorité {item.subject} : {state}")
    return EXIT_OK if outcomes and all(o.ok for o in outcomes) else EXIT_PROBLEM


def cmd_organisms_fetch(args: argparse.Namespace) -> int:
    """Ask the directory for one organism (--organism) or all (--all); one line each; exit 1
    when one got nothing usable (its last good certificate is kept)."""
    ctx = _context(args)
    try:
        service = ctx.organism_certs()
        outcomes = service.refresh(None if args.all else [args.organism])
    finally:
        ctx.close()
    if not outcomes:
        raise ConfigError(
            "aucun organisme de ce nom" if not args.all else "aucun organisme configuré",
            "no organism of that name" if not args.all else "no organism configured",
            code=TrustCode.ORGANISM_UNKNOWN,
        )
    if wants_json(args):
        _json(
            [{"organism": o.organism, "outcome": o.kind, "fr": o.fr, "en": o.en} for o in outcomes]
        )
    for o in outcomes if not wants_json(args) else ():
        _out(f"{'ok    ' if o.ok else 'refusé'} {o.organism} : {o.fr}")
    return EXIT_OK if all(o.ok or o.kind == "skipped" for o in outcomes) else EXIT_PROBLEM


def cmd_organisms_list(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        listing = ctx.organism_certs().listing()
    finally:
        ctx.close()
    if args.json:
        _json(
            [
                {
                    "organism": o.organism,
                    "directory_name": o.directory_name,
                    "used": o.used,
                    "last_check": o.last_check,
                    "last_error": o.last_error,
                    "certificates": [
                        {
                            "source": c.source,
                            "role": c.role,
                            "subject": c.subject,
                            "sha256": c.fingerprint,
                            "not_before": c.not_before,
                            "not_after": c.not_after,
                        }
                        for c in o.certificates
                    ],
                }
                for o in listing
            ]
        )
        return EXIT_OK
    for o in listing:
        used = {"saisi": "certificats saisis", "annuaire": "certificat de l'annuaire"}.get(
            o.used, "AUCUN certificat utilisable : ses lots restent prêts"
        )
        check = o.last_check or "jamais"
        _out(f"{o.organism} ({o.directory_name or 'régime/caisse non renseignés'}) : {used}")
        _out(f"  dernière vérification de l'annuaire : {check}")
        if o.last_error:
            _out(f"  dernier problème : {o.last_error}")
        for c in o.certificates:
            _out(
                f"  {c.source:<8} {c.role:<11} expire le {c.not_after[:10]}  "
                f"{c.fingerprint[:16]}…  {c.subject}"
            )
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    """The parser lines, called from ``build_parser``."""
    crl = sub.add_parser("crl", help="listes de révocation IGC-Santé").add_subparsers(
        dest="action", required=True
    )
    c_fetch = crl.add_parser(
        "fetch", help="télécharger, vérifier et conserver les listes des autorités acceptées"
    )
    json_flag(c_fetch)
    c_fetch.set_defaults(func=cmd_crl_fetch)
    organisms = sub.add_parser(
        "organisms", help="certificats de chiffrement des organismes"
    ).add_subparsers(dest="action", required=True)
    o_fetch = organisms.add_parser(
        "fetch", help="interroger l'annuaire SESAM-Vitale et vérifier les certificats"
    )
    which = o_fetch.add_mutually_exclusive_group(required=True)
    which.add_argument("--organism", help="un organisme")
    which.add_argument("--all", action="store_true", help="tous les organismes")
    json_flag(o_fetch)
    o_fetch.set_defaults(func=cmd_organisms_fetch)
    o_list = organisms.add_parser(
        "list", help="certificats de chaque organisme : origine, expiration, vérification"
    )
    json_flag(o_list)
    o_list.set_defaults(func=cmd_organisms_list)
