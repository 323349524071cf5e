"""The `balise` command: parameters, journal, doctor, demo (and later kiosk, import, purge)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from balise.bootstrap import Context, open_context, resolve_data_dir
from balise.domain.errors import BaliseError, ValidationError
from balise.domain.lotrecord import LotRecord
from balise.domain.params import spec_for

if TYPE_CHECKING:
    from balise.services.transmission import SendOutcome

EXIT_OK, EXIT_PROBLEM, EXIT_ERROR = 0, 1, 2
MAX_STDIN = 1024 * 1024


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _context(args: argparse.Namespace) -> Context:
    return open_context(resolve_data_dir(args.data_dir), actor="cli")


def _read_stdin(secret: bool) -> str:
    if sys.stdin.isatty():
        if secret:
            first = getpass.getpass("Valeur secrète : ")
            if getpass.getpass("Confirmez : ") != first:
                raise ValidationError("les deux saisies diffèrent", "the two entries differ")
            return first
        _out("Valeur (terminez par Ctrl+D) :")
    data = sys.stdin.read(MAX_STDIN + 1)
    if len(data) > MAX_STDIN:
        raise ValidationError("valeur trop longue (1 Mio au plus)", "value too long (1 MiB max)")
    return data.rstrip("\r\n") if secret else data


def cmd_params_set(args: argparse.Namespace) -> int:
    spec = spec_for(args.name, profile=args.profile, organism=args.organism)
    if spec.secret and args.value is not None:
        raise ValidationError(
            "un secret ne se passe jamais en argument : utilisez --secret, la valeur est lue "
            "sur l'entrée standard",
            "a secret is never given as an argument: use --secret, the value is read from stdin",
            code="PARAM_SECRET_ARGV",
        )
    if spec.secret and not args.secret:
        raise ValidationError(
            f"{spec.name} est secret : utilisez --secret (valeur lue sur l'entrée standard)",
            f"{spec.name} is secret: use --secret (value read from stdin)",
            code="PARAM_SECRET_ARGV",
        )
    if args.secret and args.value is not None:
        raise ValidationError(
            "avec --secret, la valeur est lue sur l'entrée standard, jamais en argument",
            "with --secret the value is read from stdin, never from the arguments",
            code="PARAM_SECRET_ARGV",
        )
    raw = args.value if args.value is not None else _read_stdin(secret=spec.secret)
    ctx = _context(args)
    try:
        ctx.params.set(args.name, raw, profile=args.profile, organism=args.organism)
    finally:
        ctx.close()
    where = (
        f" ({'profil ' + args.profile if args.profile else 'organisme ' + args.organism})"
        if (args.profile or args.organism)
        else ""
    )
    _out(f"{spec.name}{where} : enregistré (chiffré)")
    return EXIT_OK


def cmd_params_get(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        spec = spec_for(args.name, profile=args.profile, organism=args.organism)
        value = ctx.params.get(args.name, profile=args.profile, organism=args.organism)
    finally:
        ctx.close()
    if value is None:
        _out("(non défini)")
        return EXIT_PROBLEM
    if isinstance(value, list):
        _out("\n".join(value) if value else "(vide)")
    else:
        _out(str(value))
    del spec
    return EXIT_OK


def cmd_params_list(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        rows = ctx.params.rows()
    finally:
        ctx.close()
    if args.json:
        _out(
            json.dumps(
                [
                    {"scope": r.scope.value, "id": r.ident, "name": r.name, "value": r.shown}
                    for r in rows
                ],
                ensure_ascii=False,
                indent=1,
            )
        )
        return EXIT_OK
    if not rows:
        _out("aucun paramètre défini")
    for row in rows:
        where = row.scope.value + (f":{row.ident}" if row.ident else "")
        _out(f"{where:<24} {row.name:<28} {row.shown}")
    return EXIT_OK


def cmd_params_rotate(args: argparse.Namespace) -> int:
    from balise.adapters.kek import KekSource, derive_kek

    ctx = _context(args)
    try:
        new_kek = None
        if args.new_kek_file:
            path = Path(args.new_kek_file)
            material = path.read_bytes()
            new_kek = derive_kek(material, KekSource("key-file", path, "faible"))
        with ctx.store.write():
            count = ctx.vault.rotate(new_kek)
            ctx.journal.append(
                "vault.rotated",
                "vault",
                {"entries": count, "wrapping_key_id": ctx.vault.kek_fingerprint},
            )
    finally:
        ctx.close()
    _out(f"nouvelle clé de données : {count} paramètre(s) rechiffré(s)")
    if args.new_kek_file:
        _out(
            "la nouvelle KEK est en service : remplacez l'ancienne (identifiant systemd ou fichier)"
        )
    return EXIT_OK


def cmd_journal_verify(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        report = ctx.journal.verify()
    finally:
        ctx.close()
    if report.ok:
        _out(f"OK : {report.count} entrées ; tête {report.head_hash}")
        return EXIT_OK
    _err(f"ÉCHEC : {report.describe()}")
    return EXIT_PROBLEM


def cmd_journal_show(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        since_seq, since_time = 0, ""
        if args.since:
            if args.since.isdigit():
                since_seq = int(args.since)
            else:
                since_time = args.since
        for entry in ctx.journal.entries(since_seq):
            if since_time and entry.time < since_time:
                continue
            _out(
                f"{entry.seq:>6} {entry.time} {entry.actor:<8} {entry.kind:<20} {entry.subject} {entry.details}"
            )
    finally:
        ctx.close()
    return EXIT_OK


def _euros(cents: int) -> str:
    return f"{cents / 100:,.2f} €".replace(",", " ").replace(".", ",")


def _lot_line(lot: LotRecord) -> str:
    from balise.domain.lotstate import LABELS_FR

    day = f"{lot.lot_date[4:6]}/{lot.lot_date[2:4]}/20{lot.lot_date[0:2]}"
    return (
        f"{lot.id:>5}  {LABELS_FR[lot.state]:<26} {lot.profile:<10} lot {lot.lot_number} du {day}  "
        f"{lot.invoices:>4} facture(s) {_euros(lot.total):>14}  → {lot.organism}"
    )


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


def cmd_lots_list(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        lots = ctx.lots.lots()
        quarantined = ctx.lots.quarantined()
    finally:
        ctx.close()
    if args.json:
        _out(
            json.dumps(
                {
                    "lots": [
                        {
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
                        for lot in lots
                    ],
                    "quarantine": [
                        {
                            "id": q.id,
                            "name": q.name,
                            "sha256": q.sha256,
                            "size": q.size,
                            "received": q.received,
                            "problems": [
                                {"code": p.code, "fr": p.fr, "en": p.en} for p in q.problems
                            ],
                        }
                        for q in quarantined
                    ],
                },
                ensure_ascii=False,
                indent=1,
            )
        )
        return EXIT_OK
    if not lots and not quarantined:
        _out("aucun lot")
    for lot in lots:
        _out(_lot_line(lot))
    for q in quarantined:
        codes = ", ".join(sorted({p.code for p in q.problems}))
        _out(f"    -  en quarantaine (n° {q.id})        {q.name} : {codes}")
    return EXIT_OK


def cmd_lots_show(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        lot = ctx.lots.get(args.id)
        if lot is None:
            raise ValidationError(
                f"lot {args.id} inconnu", f"unknown lot {args.id}", code="LOT_UNKNOWN"
            )
        history = [e for e in ctx.journal.entries() if e.subject == f"lot:{lot.id}"]
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
        lot = ctx.lots.get(args.id)
        if lot is None:
            raise ValidationError(
                f"lot {args.id} inconnu", f"unknown lot {args.id}", code="LOT_UNKNOWN"
            )
        ctx.transitions().move(lot.id, lot.state, LotState.CANCELLED, note=args.reason or "")
    finally:
        ctx.close()
    _out(f"lot n° {args.id} annulé")
    return EXIT_OK


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


def _ids(ids: Sequence[int]) -> str:
    return ", ".join(f"n° {i}" for i in ids)


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
        lot = ctx.lots.get(args.id)
        if lot is None:
            raise ValidationError(
                f"lot {args.id} inconnu", f"unknown lot {args.id}", code="LOT_UNKNOWN"
            )
        service = ctx.transmission()
        service.resend(lot.id)
        _out(f"lot n° {lot.id} : renvoi demandé (mêmes octets, Message-ID {lot.message_id})")
        code = _print_outcome(asyncio.run(service.send_pending(lot.profile)))
    finally:
        ctx.close()
    return code


def _read_pin() -> bytearray:
    """The PIN as a mutable buffer (overwritten after use); from the terminal without echo, or
    one line of standard input (tests, scripted use)."""
    if sys.stdin.isatty():
        text = getpass.getpass("Code de la carte (PIN) : ")
    else:
        text = sys.stdin.readline().rstrip("\r\n")
    buffer = bytearray(text.encode("ascii", errors="replace"))
    del text
    if not buffer.isdigit() or not 4 <= len(buffer) <= 8:
        buffer[:] = b"\0" * len(buffer)
        raise ValidationError(
            "le code doit faire 4 à 8 chiffres", "the PIN must be 4 to 8 digits", code="PIN_FORMAT"
        )
    return buffer


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


def cmd_doctor(args: argparse.Namespace) -> int:
    from balise.doctor import run_checks

    checks = run_checks(resolve_data_dir(args.data_dir))
    for check in checks:
        _out(check.line())
    return EXIT_PROBLEM if any(c.status == "problem" for c in checks) else EXIT_OK


def cmd_kek_create(args: argparse.Namespace) -> int:
    from balise.adapters.kek import create_key_file

    try:
        create_key_file(Path(args.path))
    except FileExistsError as exc:
        raise ValidationError(
            f"{args.path} existe déjà : rien n'est écrasé",
            f"{args.path} already exists: nothing overwritten",
        ) from exc
    _out(
        f"clé créée : {args.path} (0600) — protection faible tant qu'elle reste sur le même disque"
    )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from balise.demo import run_demo

    return run_demo(args)


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


def cmd_returns_list(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        tracking = ctx.tracking()
        returns = tracking.returns()
        payments = tracking.payments()
    finally:
        ctx.close()
    if args.json:
        _out(
            json.dumps(
                {
                    "returns": [
                        {
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
                            "detail": r.detail,
                        }
                        for r in returns
                    ],
                    "payments": [
                        {
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
                        for p in payments
                    ],
                },
                ensure_ascii=False,
                indent=1,
            )
        )
        return EXIT_OK
    if not returns:
        _out("aucun retour")
    for r in returns:
        lot = f"lot n° {r.lot_id}" if r.lot_id is not None else "aucun lot"
        _out(f"{r.id:>5}  {r.kind:<7} {r.status:<10} {r.profile:<10} {lot:<12} {r.words_fr}")
    return EXIT_OK


def cmd_alerts_list(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        alerts = ctx.tracking().alerts(include_acknowledged=args.all)
    finally:
        ctx.close()
    if args.json:
        _out(
            json.dumps(
                [
                    {
                        "id": a.id,
                        "kind": a.kind,
                        "subject": a.subject,
                        "fr": a.fr,
                        "en": a.en,
                        "details": a.details,
                        "created": a.created,
                        "acknowledged": a.acknowledged,
                    }
                    for a in alerts
                ],
                ensure_ascii=False,
                indent=1,
            )
        )
        return EXIT_OK
    if not alerts:
        _out("aucune alerte")
    for a in alerts:
        _out(f"{a.id:>5}  {a.created}  {a.kind:<18} {a.fr}")
    return EXIT_OK


def cmd_alerts_ack(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        done = ctx.tracking().acknowledge(args.id, "cli")
    finally:
        ctx.close()
    _out("alerte acquittée" if done else "alerte inconnue ou déjà acquittée")
    return EXIT_OK if done else EXIT_PROBLEM


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="balise", description="Balise — boîtier de télétransmission"
    )
    parser.add_argument("--data-dir", help="dossier de données (sinon BALISE_HOME)")
    sub = parser.add_subparsers(dest="command", required=True)

    params = sub.add_parser("params", help="paramètres chiffrés").add_subparsers(
        dest="action", required=True
    )
    p_set = params.add_parser("set", help="définir un paramètre")
    p_set.add_argument("name")
    p_set.add_argument("value", nargs="?", help="valeur (sinon lue sur l'entrée standard)")
    p_set.add_argument(
        "--secret", action="store_true", help="valeur secrète lue sur l'entrée standard"
    )
    _scope_options(p_set)
    p_set.set_defaults(func=cmd_params_set)
    p_get = params.add_parser("get", help="lire un paramètre (secrets masqués)")
    p_get.add_argument("name")
    _scope_options(p_get)
    p_get.set_defaults(func=cmd_params_get)
    p_list = params.add_parser("list", help="tous les paramètres (secrets masqués)")
    p_list.add_argument("--json", action="store_true")
    p_list.set_defaults(func=cmd_params_list)
    p_rot = params.add_parser(
        "rotate-key", help="nouvelle clé de données (et, en option, nouvelle KEK)"
    )
    p_rot.add_argument("--new-kek-file", help="fichier de la nouvelle KEK")
    p_rot.set_defaults(func=cmd_params_rotate)

    journal = sub.add_parser("journal", help="journal chaîné").add_subparsers(
        dest="action", required=True
    )
    j_verify = journal.add_parser("verify", help="vérifier la chaîne et afficher la tête")
    j_verify.set_defaults(func=cmd_journal_verify)
    j_show = journal.add_parser("show", help="afficher le journal")
    j_show.add_argument("--since", help="numéro d'entrée ou date ISO (AAAA-MM-JJ)")
    j_show.set_defaults(func=cmd_journal_show)

    imp = sub.add_parser("import", help="importer des fichiers de lots")
    imp.add_argument("files", nargs="+")
    imp.set_defaults(func=cmd_import)
    intake = sub.add_parser("intake", help="prendre les lots déposés dans depot/new")
    intake.add_argument("--once", action="store_true", help="un seul passage (défaut)")
    intake.set_defaults(func=cmd_intake)

    lots = sub.add_parser("lots", help="lots").add_subparsers(dest="action", required=True)
    l_list = lots.add_parser("list", help="tous les lots et les fichiers en quarantaine")
    l_list.add_argument("--json", action="store_true")
    l_list.set_defaults(func=cmd_lots_list)
    l_show = lots.add_parser("show", help="un lot et son historique")
    l_show.add_argument("id", type=int)
    l_show.set_defaults(func=cmd_lots_show)
    l_cancel = lots.add_parser("cancel", help="retirer un lot prêt ou signé")
    l_cancel.add_argument("id", type=int)
    l_cancel.add_argument("--reason", help="motif (journalisé)")
    l_cancel.set_defaults(func=cmd_lots_cancel)
    l_resend = lots.add_parser("resend", help="renvoyer un lot envoyé en retard (mêmes octets)")
    l_resend.add_argument("id", type=int)
    l_resend.set_defaults(func=cmd_lots_resend)
    send = sub.add_parser("send", help="envoyer les lots signés dus (une session par BAL)")
    send.add_argument("--profile", help="un seul profil praticien")
    send.set_defaults(func=cmd_send)

    purge = sub.add_parser("purge", help="relever et vider les BAL (retours, courrier inconnu)")
    purge.add_argument("--once", action="store_true", help="un seul passage (défaut)")
    purge.add_argument("--profile", help="une seule BAL : ce profil praticien")
    purge.set_defaults(func=cmd_purge)
    returns = sub.add_parser("returns", help="retours reçus").add_subparsers(
        dest="action", required=True
    )
    r_list = returns.add_parser("list", help="ARL et NOEMIE reçus, et paiements")
    r_list.add_argument("--json", action="store_true")
    r_list.set_defaults(func=cmd_returns_list)
    alerts = sub.add_parser("alerts", help="alertes").add_subparsers(dest="action", required=True)
    a_list = alerts.add_parser("list", help="alertes non acquittées")
    a_list.add_argument("--json", action="store_true")
    a_list.add_argument("--all", action="store_true", help="y compris les alertes acquittées")
    a_list.set_defaults(func=cmd_alerts_list)
    a_ack = alerts.add_parser("ack", help="acquitter une alerte")
    a_ack.add_argument("id", type=int)
    a_ack.set_defaults(func=cmd_alerts_ack)

    sign = sub.add_parser("sign", help="signer les lots prêts avec la carte CPS")
    sign.add_argument("--profile", help="praticien (si la carte peut signer pour plusieurs)")
    sign.add_argument(
        "--lot", type=int, action="append", help="lot à signer (sinon tous les prêts)"
    )
    sign.add_argument("--token", help="étiquette du jeton PKCS#11 (plusieurs cartes)")
    sign.set_defaults(func=cmd_sign)

    doctor = sub.add_parser("doctor", help="vérifications de l'installation")
    doctor.set_defaults(func=cmd_doctor)

    kek = sub.add_parser("kek", help="clé de chiffrement des paramètres").add_subparsers(
        dest="action", required=True
    )
    k_create = kek.add_parser("create", help="créer un fichier de clé aléatoire (0600)")
    k_create.add_argument("path")
    k_create.set_defaults(func=cmd_kek_create)

    demo = sub.add_parser("demo", help="démonstration sur les réglages embarqués")
    demo.add_argument("--dir", help="dossier de démonstration (sinon un dossier temporaire)")
    demo.set_defaults(func=cmd_demo)
    return parser


def _scope_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--profile", help="identifiant du profil praticien")
    group.add_argument("--organism", help="identifiant de l'organisme")


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(0o077)
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BaliseError as exc:
        lang = "en" if os.environ.get("BALISE_LANG") == "en" else "fr"
        _err(("error: " if lang == "en" else "erreur : ") + exc.message(lang) + f" [{exc.code}]")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
