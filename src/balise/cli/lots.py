"""`balise` commands — Lots: import, intake, list, show, cancel, and signing with the card."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from balise.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_PROBLEM,
    _context,
    _err,
    _json,
    _lot,
    _lot_line,
    _out,
    _read_pin,
    wants_json,
)
from balise.cli.jsonstream import rows, write_document
from balise.domain.codes import DepotCode, LotCode
from balise.domain.errors import ValidationError
from balise.domain.journal import JsonValue
from balise.domain.lotrecord import LotRecord, QuarantineProblem, QuarantineRecord

if TYPE_CHECKING:
    from balise.services.intake import IntakeOutcome


def _problems_json(problems: Iterable[QuarantineProblem]) -> list[JsonValue]:
    return [{"code": p.code, "fr": p.fr, "en": p.en} for p in problems]


def _outcome_json(outcome: IntakeOutcome) -> JsonValue:
    """One file taken or not (import, intake): the same shape for both commands."""
    if outcome.set_aside is not None:
        kind = "set_aside"
    elif outcome.accepted:
        kind = "already" if outcome.already else "accepted"
    else:
        kind = "refused"
    return {
        "name": outcome.name,
        "outcome": kind,
        "lot_id": outcome.lot_id,
        "quarantine_id": outcome.quarantine_id,
        "set_aside": outcome.set_aside,
        "problems": _problems_json(outcome.problems),
    }


def cmd_import(args: argparse.Namespace) -> int:
    from balise.domain.lotfile import MAX_FILE_SIZE

    as_json = wants_json(args)
    ctx = _context(args)
    worst = EXIT_OK
    files: list[JsonValue] = []
    try:
        intake = ctx.intake()
        for name in args.files:
            path = Path(name)
            try:
                with path.open("rb") as handle:
                    data = handle.read(MAX_FILE_SIZE + 1)
                    size = os.fstat(handle.fileno()).st_size
            except OSError as exc:
                words = _unreadable_words(exc)
                _err(f"ILLISIBLE {name} : {words}")
                files.append(
                    {
                        "name": name,
                        "outcome": "unreadable",
                        "lot_id": None,
                        "quarantine_id": None,
                        "set_aside": None,
                        "problems": [
                            {"code": DepotCode.IMPORT_UNREADABLE, "fr": words, "en": words}
                        ],
                    }
                )
                worst = EXIT_FAILURE
                continue
            outcome = intake.import_bytes(path.name, data, f"import:{path.resolve()}", size=size)
            files.append(_outcome_json(outcome))
            if outcome.accepted and outcome.lot_id is not None:
                lot = ctx.lots.get(outcome.lot_id)
                assert lot is not None
                prefix = "DÉJÀ IMPORTÉ" if outcome.already else "ACCEPTÉ"
                if not as_json:
                    _out(f"{prefix} {outcome.name} : lot n° {lot.id}, {_lot_line(lot).strip()}")
            else:
                worst = max(worst, EXIT_PROBLEM)
                if not as_json:
                    _out(f"REFUSÉ {outcome.name} (quarantaine n° {outcome.quarantine_id}) :")
                    for problem in outcome.problems:
                        _out(f"    [{problem.code}] {problem.fr}")
    finally:
        ctx.close()
    if as_json:
        _json({"files": files})
    return worst


def _unreadable_words(exc: OSError) -> str:
    from errno import EACCES, EISDIR, ENOENT

    return {
        ENOENT: "fichier introuvable",
        EACCES: "lecture refusée (droits)",
        EISDIR: "c'est un dossier",
    }.get(exc.errno or 0, "lecture impossible")


def cmd_intake(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        if wants_json(args):
            # Streamed: a depot holds at most what intake takes in one pass, still never built.
            write_document([("files", rows(ctx.intake().scan_depot(), _outcome_json))])
            return EXIT_OK
        count = 0
        for outcome in ctx.intake().scan_depot():
            count += 1
            if outcome.set_aside is not None:
                reasons = " ; ".join(f"[{p.code}] {p.fr}" for p in outcome.problems[:3])
                _out(f"ÉCARTÉ {outcome.name} → {outcome.set_aside} : {reasons}")
                continue
            state = "ACCEPTÉ" if outcome.accepted else "REFUSÉ"
            _out(
                f"{state} {outcome.name}"
                + (f" : lot n° {outcome.lot_id}" if outcome.lot_id else "")
            )
        if not count:
            _out("aucun fichier déposé")
    finally:
        ctx.close()
    return EXIT_OK


def _lot_json(lot: LotRecord) -> JsonValue:
    return {
        "id": lot.id,
        "state": lot.state.value,
        "profile": lot.profile,
        "emitter": lot.emitter,
        "lot_number": lot.lot_number,
        "lot_date": lot.lot_date,
        "organism": lot.organism,
        "invoices": lot.invoices,
        "total_cents": lot.total,
        "sha256": lot.sha256,
        "received": lot.received,
        "message_id": lot.message_id,
        "reasons": list(lot.reasons),
    }


def _refused_json(q: QuarantineRecord) -> JsonValue:
    return {
        "id": q.id,
        "name": q.name,
        "sha256": q.sha256,
        "size": q.size,
        "content_kept": q.content_kept,
        "received": q.received,
        "problems": _problems_json(q.problems),
    }


def cmd_lots_list(args: argparse.Namespace) -> int:
    """Every lot then every refused file, streamed from the database a batch at a time (the
    JSON document is written row by row: its memory does not grow with the box's age)."""
    from balise.adapters.listings import SqliteListings

    ctx = _context(args)
    try:
        listings = SqliteListings(ctx.store)
        lots, refused = listings.lots(), listings.quarantine()
        if args.json:
            write_document(
                [("lots", rows(lots, _lot_json)), ("quarantine", rows(refused, _refused_json))]
            )
            return EXIT_OK
        empty = True
        for lot in lots:
            empty = False
            _out(_lot_line(lot))
        for q in refused:
            empty = False
            codes = ", ".join(sorted({p.code for p in q.problems}))
            kept = "" if q.content_kept else " (contenu non gardé)"
            _out(f"    -  en quarantaine (n° {q.id})        {q.name} : {codes}{kept}")
        if empty:
            _out("aucun lot")
    finally:
        ctx.close()
    return EXIT_OK


def cmd_lots_show(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        lot = _lot(ctx, args.id)
        history = list(ctx.journal.about(f"lot:{lot.id}"))
    finally:
        ctx.close()
    if wants_json(args):
        _json(
            {
                "lot": _lot_json(lot),
                "addressee": lot.addressee,
                "flow": lot.flow,
                "source": lot.source.split(":", 1)[0],
                "signer": lot.signer,
                "history": [
                    {
                        "seq": e.seq,
                        "time": e.time,
                        "actor": e.actor,
                        "kind": e.kind,
                        "details": json.loads(e.details),
                    }
                    for e in history
                ],
            }
        )
        return EXIT_OK
    _out(_lot_line(lot))
    _out(
        f"  émetteur {lot.emitter}, destinataire {lot.addressee} ({lot.organism}), flux {lot.flow}"
    )
    _out(f"  reçu le {lot.received} ({lot.source.split(':', 1)[0]}), SHA-256 {lot.sha256}")
    if lot.signer:
        _out(f"  signé par {lot.signer}")
    if lot.message_id:
        _out(f"  Message-ID {lot.message_id}")
    for reason in lot.reasons:
        _out(f"  motif : {reason}")
    _out("  historique :")
    for entry in history:
        _out(f"    {entry.time}  {entry.actor:<8} {entry.details}")
    return EXIT_OK


def cmd_lots_cancel(args: argparse.Namespace) -> int:
    from balise.domain.lotstate import LotState

    ctx = _context(args)
    try:
        lot = _lot(ctx, args.id)
        ctx.transitions().move(lot.id, lot.state, LotState.CANCELLED, note=args.reason or "")
    finally:
        ctx.close()
    if wants_json(args):
        _json({"lot_id": args.id, "state": LotState.CANCELLED.value})
        return EXIT_OK
    _out(f"lot n° {args.id} annulé")
    return EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    from balise.adapters.hardening import protect_process
    from balise.services.signing import BatchEvent, examine_card, sign_with_card

    as_json = wants_json(args)
    # With --json, stdout holds the document alone: the words for people go to stderr.
    say = _err if as_json else _out
    protect_process()
    ctx = _context(args)
    try:
        service = ctx.signing()
        signer = ctx.card_signer(args.token)
        report = examine_card(service, signer, ctx.cert_checker())
        who = report.identity
        document: dict[str, JsonValue] = {
            "card": {
                "holder": who.holder_name,
                "rpps": who.rpps,
                "certificate": report.cert.words_fr,
            },
            "profile": None,
            "signed": [],
            "not_signed": [],
            "skipped": [],
            "refusal": report.refusal_fr,
            "stopped": None,
        }
        say(f"Carte de {who.holder_name} (RPPS {who.rpps}) — {report.cert.words_fr}")
        if report.refusal_fr:
            _err(f"Signature impossible : {report.refusal_fr}")
            if as_json:
                _json(document)
            return EXIT_PROBLEM
        profiles = [p for p, _ in report.profiles]
        profile = args.profile or (profiles[0] if len(profiles) == 1 else None)
        if profile is None or profile not in profiles:
            raise ValidationError(
                "précisez --profile parmi : " + ", ".join(profiles),
                "give --profile among: " + ", ".join(profiles),
                code=LotCode.PROFILE_CHOICE,
            )
        document["profile"] = profile
        ready = service.ready_lots(profile)
        lot_ids = args.lot or [lot.id for lot in ready]
        if not lot_ids:
            say("aucun lot prêt à signer")
            if as_json:
                _json(document)
            return EXIT_OK
        say(f"{len(lot_ids)} lot(s) à signer pour {profile}")
        if report.pin.protected_path:
            say("Tapez votre code sur le lecteur.")
            pin = None
        else:
            tries = report.pin.tries_left
            say(f"Essais restants : {tries}" + (" — DERNIER ESSAI" if tries == 1 else ""))
            pin = _read_pin()
        skipped: list[JsonValue] = []

        def show(event: BatchEvent) -> None:
            if event.kind == "signed":
                say(f"  signé {event.done}/{event.total} (lot n° {event.lot_id})")
            elif event.kind == "skipped":
                skipped.append({"lot_id": event.lot_id, "message": event.message})
                say(f"  lot n° {event.lot_id} laissé prêt : {event.message}")

        result = sign_with_card(service, signer, pin, who, profile, lot_ids, progress=show)
        say(f"{len(result.signed)} lot(s) signé(s), {len(result.not_signed)} non signé(s)")
        if result.stopped_fr:
            _err(f"Arrêt : {result.stopped_fr}")
        if as_json:
            document.update(
                signed=list(result.signed),
                not_signed=list(result.not_signed),
                skipped=skipped,
                stopped=result.stopped_fr,
            )
            _json(document)
        return EXIT_PROBLEM if result.stopped_fr else EXIT_OK
    finally:
        ctx.close()
