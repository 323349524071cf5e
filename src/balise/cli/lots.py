"""`balise` commands — Lots: import, intake, list, show, cancel, and signing with the card."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from balise.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PROBLEM,
    _context,
    _err,
    _lot,
    _lot_line,
    _out,
    _read_pin,
)
from balise.cli.jsonstream import rows, write_document
from balise.domain.errors import ValidationError
from balise.domain.journal import JsonValue
from balise.domain.lotrecord import LotRecord, QuarantineRecord


def cmd_import(args: argparse.Namespace) -> int:
    from balise.domain.lotfile import MAX_FILE_SIZE

    ctx = _context(args)
    worst = EXIT_OK
    try:
        intake = ctx.intake()
        for name in args.files:
            path = Path(name)
            try:
                with path.open("rb") as handle:
                    data = handle.read(MAX_FILE_SIZE + 1)
                    size = os.fstat(handle.fileno()).st_size
            except OSError as exc:
                _err(f"ILLISIBLE {name} : {exc.strerror}")
                worst = EXIT_ERROR
                continue
            outcome = intake.import_bytes(path.name, data, f"import:{path.resolve()}", size=size)
            if outcome.accepted and outcome.lot_id is not None:
                lot = ctx.lots.get(outcome.lot_id)
                assert lot is not None
                prefix = "DÉJÀ IMPORTÉ" if outcome.already else "ACCEPTÉ"
                _out(f"{prefix} {outcome.name} : lot n° {lot.id}, {_lot_line(lot).strip()}")
            else:
                worst = max(worst, EXIT_PROBLEM)
                _out(f"REFUSÉ {outcome.name} (quarantaine n° {outcome.quarantine_id}) :")
                for problem in outcome.problems:
                    _out(f"    [{problem.code}] {problem.fr}")
    finally:
        ctx.close()
    return worst


def cmd_intake(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
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
        "problems": [{"code": p.code, "fr": p.fr, "en": p.en} for p in q.problems],
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
    _out(f"lot n° {args.id} annulé")
    return EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    from balise.hardening import protect_process
    from balise.services.signing import BatchEvent, examine_card, sign_with_card

    protect_process()
    ctx = _context(args)
    try:
        service = ctx.signing()
        signer = ctx.card_signer(args.token)
        report = examine_card(service, signer, ctx.cert_checker())
        who = report.identity
        _out(f"Carte de {who.holder_name} (RPPS {who.rpps}) — {report.cert.words_fr}")
        if report.refusal_fr:
            _err(f"Signature impossible : {report.refusal_fr}")
            return EXIT_PROBLEM
        profiles = [p for p, _ in report.profiles]
        profile = args.profile or (profiles[0] if len(profiles) == 1 else None)
        if profile is None or profile not in profiles:
            raise ValidationError(
                "précisez --profile parmi : " + ", ".join(profiles),
                "give --profile among: " + ", ".join(profiles),
                code="PROFILE_CHOICE",
            )
        ready = service.ready_lots(profile)
        lot_ids = args.lot or [lot.id for lot in ready]
        if not lot_ids:
            _out("aucun lot prêt à signer")
            return EXIT_OK
        _out(f"{len(lot_ids)} lot(s) à signer pour {profile}")
        if report.pin.protected_path:
            _out("Tapez votre code sur le lecteur.")
            pin = None
        else:
            tries = report.pin.tries_left
            _out(f"Essais restants : {tries}" + (" — DERNIER ESSAI" if tries == 1 else ""))
            pin = _read_pin()

        def show(event: BatchEvent) -> None:
            if event.kind == "signed":
                _out(f"  signé {event.done}/{event.total} (lot n° {event.lot_id})")
            elif event.kind == "skipped":
                _out(f"  lot n° {event.lot_id} laissé prêt : {event.message}")

        result = sign_with_card(service, signer, pin, who, profile, lot_ids, progress=show)
        _out(f"{len(result.signed)} lot(s) signé(s), {len(result.not_signed)} non signé(s)")
        if result.stopped_fr:
            _err(f"Arrêt : {result.stopped_fr}")
            return EXIT_PROBLEM
        return EXIT_OK
    finally:
        ctx.close()
