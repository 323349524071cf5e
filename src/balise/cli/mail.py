"""`balise` commands — Mail: sending, resending, purge, returns and alerts."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from balise.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_PROBLEM,
    _context,
    _err,
    _ids,
    _json,
    _lot,
    _out,
    cli_language,
    wants_json,
)
from balise.cli.jsonstream import rows, write_array, write_document
from balise.domain.errors import BaliseError
from balise.domain.journal import JsonValue
from balise.domain.vocabulary import moment, pick

if TYPE_CHECKING:
    from balise.domain.mailrecords import AlertRecord, PaymentRecord, ReturnRecord
    from balise.services.purge import PurgeReport
    from balise.services.transmission import SendOutcome


def _outcome_json(outcome: SendOutcome) -> JsonValue:
    return {
        "profile": outcome.profile,
        "sent": list(outcome.sent),
        "waiting": list(outcome.waiting),
        "error": None
        if outcome.error_code is None
        else {"code": outcome.error_code, "fr": outcome.error_fr, "en": outcome.error_en},
        "next_attempt": outcome.next_attempt.isoformat() if outcome.next_attempt else None,
    }


def _outcome_status(outcome: SendOutcome) -> int:
    return EXIT_PROBLEM if outcome.waiting else EXIT_OK


def _print_outcome(outcome: SendOutcome) -> int:
    if outcome.sent:
        _out(f"{outcome.profile} : {len(outcome.sent)} lot(s) envoyé(s) ({_ids(outcome.sent)})")
    if outcome.waiting:
        when = outcome.next_attempt
        when_words = f"{moment(when, 'fr', seconds=True)} UTC" if when else "?"
        _out(
            f"{outcome.profile} : {len(outcome.waiting)} lot(s) en attente ({_ids(outcome.waiting)})"
            f" — {outcome.error_fr} [{outcome.error_code}] ; prochain essai le {when_words}"
        )
        return EXIT_PROBLEM
    if not outcome.sent:
        _out(f"{outcome.profile} : rien à envoyer")
    return EXIT_OK


def cmd_send(args: argparse.Namespace) -> int:
    import asyncio

    from balise.domain.params import Scope

    as_json = wants_json(args)
    ctx = _context(args)
    worst = EXIT_OK
    results: list[JsonValue] = []
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
                results.append(
                    {
                        "profile": profile,
                        "sent": [],
                        "waiting": [],
                        "error": {"code": exc.code, "fr": exc.fr, "en": exc.en},
                        "next_attempt": None,
                    }
                )
                worst = EXIT_FAILURE
                continue
            if as_json:
                results.append(_outcome_json(outcome))
                worst = max(worst, _outcome_status(outcome))
            else:
                worst = max(worst, _print_outcome(outcome))
    finally:
        ctx.close()
    if as_json:
        _json({"profiles": results})
    return worst


def cmd_lots_resend(args: argparse.Namespace) -> int:
    import asyncio

    ctx = _context(args)
    try:
        lot = _lot(ctx, args.id)
        service = ctx.transmission()
        service.resend(lot.id)
        if wants_json(args):
            outcome = asyncio.run(service.send_pending(lot.profile))
            _json({"lot_id": lot.id, "message_id": lot.message_id, **_send_doc(outcome)})
            return _outcome_status(outcome)
        _out(f"lot n° {lot.id} : renvoi demandé (mêmes octets, Message-ID {lot.message_id})")
        code = _print_outcome(asyncio.run(service.send_pending(lot.profile)))
    finally:
        ctx.close()
    return code


def _send_doc(outcome: SendOutcome) -> dict[str, JsonValue]:
    return {"profiles": [_outcome_json(outcome)]}


def _report_json(report: PurgeReport) -> JsonValue:
    return {
        "profile": report.profile,
        "messages": report.total,
        "returns": report.returns,
        "unknown": report.unknown,
        "duplicates": report.duplicates,
        "deleted": report.deleted,
        "bytes_received": report.bytes_received,
        "alert_id": report.alert_id,
        "stopped": report.stopped,
    }


def cmd_purge(args: argparse.Namespace) -> int:
    as_json = wants_json(args)
    say = _err if as_json else _out
    ctx = _context(args)
    purge = ctx.purge()
    worst = EXIT_OK
    reports: list[JsonValue] = []
    try:
        profiles = [args.profile] if args.profile else purge.profiles()
        if not profiles:
            say("aucune BAL configurée (pop3.host)")
        for profile in profiles:
            report = purge.run_once(
                profile,
                lambda p: say(f"  {p.profile} : message {p.done}/{p.total} ({p.outcome})"),
            )
            reports.append(_report_json(report))
            say(report.words())
            if report.stopped or report.alert_id is not None:
                worst = EXIT_PROBLEM
    finally:
        purge.close()
        ctx.close()
    if as_json:
        _json({"profiles": reports})
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
        empty, lang = True, cli_language()
        for r in returns:
            empty = False
            lot = f"lot n° {r.lot_id}" if r.lot_id is not None else "aucun lot"
            words = pick(r.words_fr, r.words_en, lang)
            _out(f"{r.id:>5}  {r.kind:<7} {r.status:<10} {r.profile:<10} {lot:<12} {words}")
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
        empty, lang = True, cli_language()
        for a in alerts:
            empty = False
            _out(f"{a.id:>5}  {a.created}  {a.kind:<18} {pick(a.fr, a.en, lang)}")
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
    if wants_json(args):
        _json({"alert_id": args.id, "acknowledged": done})
        return EXIT_OK if done else EXIT_PROBLEM
    _out("alerte acquittée" if done else "alerte inconnue ou déjà acquittée")
    return EXIT_OK if done else EXIT_PROBLEM
