"""`balise` commands — Mail: sending, resending, purge, returns and alerts."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from balise.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PROBLEM,
    _context,
    _err,
    _ids,
    _lot,
    _out,
)
from balise.cli.jsonstream import rows, write_array, write_document
from balise.domain.errors import BaliseError
from balise.domain.journal import JsonValue

if TYPE_CHECKING:
    from balise.ports import AlertRecord, PaymentRecord, ReturnRecord
    from balise.services.transmission import SendOutcome


def _print_outcome(outcome: SendOutcome) -> int:
    if outcome.sent:
        _out(f"{outcome.profile} : {len(outcome.sent)} lot(s) envoyé(s) ({_ids(outcome.sent)})")
    if outcome.waiting:
        when = f"{outcome.next_attempt:%d/%m/%Y %H:%M:%S} UTC" if outcome.next_attempt else "?"
        _out(
            f"{outcome.profile} : {len(outcome.waiting)} lot(s) en attente ({_ids(outcome.waiting)})"
            f" — {outcome.error_fr} [{outcome.error_code}] ; prochain essai le {when}"
        )
        return EXIT_PROBLEM
    if not outcome.sent:
        _out(f"{outcome.profile} : rien à envoyer")
    return EXIT_OK


def cmd_send(args: argparse.Namespace) -> int:
    import asyncio

    from balise.domain.params import Scope

    ctx = _context(args)
    worst = EXIT_OK
    try:
        service = ctx.transmission()
        profiles = [args.profile] if args.profile else ctx.params.ids(Scope.PROFILE)
        for profile in profiles:
            try:
                outcome = asyncio.run(service.send_pending(profile))
            except BaliseError as exc:
                if args.profile:
                    raise
                _err(f"{profile} : {exc.fr} [{exc.code}]")
                worst = EXIT_ERROR
                continue
            worst = max(worst, _print_outcome(outcome))
    finally:
        ctx.close()
    return worst


def cmd_lots_resend(args: argparse.Namespace) -> int:
    import asyncio

    ctx = _context(args)
    try:
        lot = _lot(ctx, args.id)
        service = ctx.transmission()
        service.resend(lot.id)
        _out(f"lot n° {lot.id} : renvoi demandé (mêmes octets, Message-ID {lot.message_id})")
        code = _print_outcome(asyncio.run(service.send_pending(lot.profile)))
    finally:
        ctx.close()
    return code


def cmd_purge(args: argparse.Namespace) -> int:
    ctx = _context(args)
    purge = ctx.purge()
    worst = EXIT_OK
    try:
        profiles = [args.profile] if args.profile else purge.profiles()
        if not profiles:
            _out("aucune BAL configurée (pop3.host)")
        for profile in profiles:
            report = purge.run_once(
                profile,
                lambda p: _out(f"  {p.profile} : message {p.done}/{p.total} ({p.outcome})"),
            )
            _out(report.words())
            if report.stopped or report.alert_id is not None:
                worst = EXIT_PROBLEM
    finally:
        purge.close()
        ctx.close()
    return worst


def _return_json(r: ReturnRecord) -> JsonValue:
    return {
        "id": r.id,
        "profile": r.profile,
        "kind": r.kind,
        "status": r.status,
        "emitter": r.emitter,
        "lot_number": r.lot_number,
        "lot_date": r.lot_date,
        "lot_id": r.lot_id,
        "positive": r.positive,
        "fr": r.words_fr,
        "en": r.words_en,
        "received": r.received,
        "detail": dict(r.detail),
    }


def _payment_json(p: PaymentRecord) -> JsonValue:
    return {
        "return_id": p.return_id,
        "lot_id": p.lot_id,
        "lot_number": p.lot_number,
        "lot_date": p.lot_date,
        "invoice": p.invoice_number,
        "amo": {"asked": p.amo_asked, "state": p.amo_state, "paid": p.amo_paid},
        "amc": None
        if p.amc_state is None
        else {"asked": p.amc_asked, "state": p.amc_state, "paid": p.amc_paid},
        "reasons": list(p.reasons),
    }


def _alert_json(a: AlertRecord) -> JsonValue:
    return {
        "id": a.id,
        "kind": a.kind,
        "subject": a.subject,
        "fr": a.fr,
        "en": a.en,
        "details": dict(a.details),
        "created": a.created,
        "acknowledged": a.acknowledged,
    }


def cmd_returns_list(args: argparse.Namespace) -> int:
    """Returns then payments, streamed a batch at a time (ten years of NOEMIE hold millions of
    invoices: the output is written row by row, never built whole)."""
    from balise.adapters.listings import SqliteListings

    ctx = _context(args)
    try:
        listings = SqliteListings(ctx.store)
        returns, payments = listings.returns(), listings.payments()
        if args.json:
            write_document(
                [
                    ("returns", rows(returns, _return_json)),
                    ("payments", rows(payments, _payment_json)),
                ]
            )
            return EXIT_OK
        empty = True
        for r in returns:
            empty = False
            lot = f"lot n° {r.lot_id}" if r.lot_id is not None else "aucun lot"
            _out(f"{r.id:>5}  {r.kind:<7} {r.status:<10} {r.profile:<10} {lot:<12} {r.words_fr}")
        if empty:
            _out("aucun retour")
    finally:
        ctx.close()
    return EXIT_OK


def cmd_alerts_list(args: argparse.Namespace) -> int:
    from balise.adapters.listings import SqliteListings

    ctx = _context(args)
    try:
        alerts = SqliteListings(ctx.store).alerts(include_acknowledged=args.all)
        if args.json:
            write_array(rows(alerts, _alert_json))
            _out("")
            return EXIT_OK
        empty = True
        for a in alerts:
            empty = False
            _out(f"{a.id:>5}  {a.created}  {a.kind:<18} {a.fr}")
        if empty:
            _out("aucune alerte")
    finally:
        ctx.close()
    return EXIT_OK


def cmd_alerts_ack(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        done = ctx.tracking().acknowledge(args.id, "cli")
    finally:
        ctx.close()
    _out("alerte acquittée" if done else "alerte inconnue ou déjà acquittée")
    return EXIT_OK if done else EXIT_PROBLEM
