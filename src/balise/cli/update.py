"""`balise update policy | gate | record | health`: what the image's root helpers ask of the app
around a self-update (issue 14; run as the balise user through systemd-run).

Exit statuses as every command: 0 ok, 1 no or failure, 2 usage; ``--json`` gives the document of
docs/schemas/cli/update-<action>.schema.json (an error: the error object)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from balise.cli.common import EXIT_OK, _json, _out, json_flag, wants_json
from balise.cli.parsing import number

IDENTIFIER = "balise-update"
log = logging.getLogger("balise.update")


def add_parsers(sub: Any) -> None:
    update = sub.add_parser("update", help="mises à jour de la box (appelé par root)")
    actions = update.add_subparsers(dest="action", required=True, metavar="ACTION")
    policy = actions.add_parser(
        "policy", help="version en service, maintien et version autorisée par le technicien"
    )
    json_flag(policy)
    policy.set_defaults(func=cmd_update_policy)
    gate = actions.add_parser(
        "gate",
        help="attendre la fin des signatures et envois en cours, puis empêcher tout nouveau "
        "jusqu'au redémarrage (« ready » puis attente de la fin de l'entrée standard)",
    )
    gate.add_argument(
        "--timeout",
        type=number,
        required=True,
        metavar="SECONDES",
        help="attente maximale d'un lot en cours de signature ou d'envoi",
    )
    json_flag(gate)
    gate.set_defaults(func=cmd_update_gate)
    record = actions.add_parser(
        "record", help="noter la version installée avant le redémarrage (tentative en attente)"
    )
    record.add_argument("version", metavar="VERSION", help="version installée")
    json_flag(record)
    record.set_defaults(func=cmd_update_record)
    health = actions.add_parser(
        "health",
        help="santé de ce démarrage (base, journal, paramètres) et issue de la mise à jour",
    )
    json_flag(health)
    health.set_defaults(func=cmd_update_health)


def _logging() -> None:
    from balise.adapters.systemd import configure_logging

    configure_logging(IDENTIFIER)


def cmd_update_policy(args: argparse.Namespace) -> int:
    from balise.app.update import update_service
    from balise.cli.common import _context

    ctx = _context(args)
    try:
        policy = update_service(ctx).policy()
    finally:
        ctx.close()
    if wants_json(args):
        _json({"hold": policy.hold, "allow": policy.allow, "running": policy.running})
    else:
        _out(f"version en service : {policy.running}")
        _out(f"maintien de la version : {'oui' if policy.hold else 'non'}")
        _out(f"version autorisée : {policy.allow or 'aucune'}")
    return EXIT_OK


def cmd_update_gate(args: argparse.Namespace) -> int:
    import os

    from balise.adapters.locks import take_update_gate
    from balise.app.context import resolve_data_dir
    from balise.domain.codes import GeneralCode
    from balise.domain.errors import ConfigError, ValidationError
    from balise.domain.update import UpdateEvent

    timeout = float(args.timeout)
    if not 0 <= timeout <= 24 * 3600:
        raise ValidationError(
            "--timeout : nombre de secondes entre 0 et 86400 attendu",
            "--timeout: a number of seconds between 0 and 86400 is expected",
        )
    _logging()
    data_dir = resolve_data_dir(args.data_dir)
    if not data_dir.is_dir():  # never made here: a wrong BALISE_HOME is said, not created
        raise ConfigError(
            f"dossier de données absent : {data_dir}",
            f"data directory missing: {data_dir}",
            code=GeneralCode.DATA_DIR,
        )
    try:
        fd = take_update_gate(data_dir / "locks", timeout)
    except Exception as exc:
        code = getattr(exc, "code", None)
        log.warning("verrou de mise à jour non pris : %s", exc, extra={"code": code})
        raise
    try:
        log.info(
            "verrou de mise à jour pris : aucune signature ni aucun envoi ne commence jusqu'au "
            "redémarrage",
            extra={"code": UpdateEvent.UPDATE_GATE_READY},
        )
        if wants_json(args):
            sys.stdout.write('{"ready": true}\n')
        else:
            sys.stdout.write("ready\n")
        sys.stdout.flush()
        # Held until stdin is closed (the root helper's pipe) or this process is killed.
        for _ in iter(lambda: sys.stdin.buffer.read(4096), b""):
            pass
    finally:
        os.close(fd)
    log.info("verrou de mise à jour rendu", extra={"code": UpdateEvent.UPDATE_GATE_RELEASED})
    return EXIT_OK


def cmd_update_record(args: argparse.Namespace) -> int:
    from balise.app.context import open_context, resolve_data_dir
    from balise.app.update import update_service
    from balise.domain.update import UpdateEvent, parse_version

    version = parse_version(args.version)  # before anything is opened
    _logging()
    ctx = open_context(resolve_data_dir(args.data_dir), actor="update", create=False)
    try:
        pending = update_service(ctx).record(version)
    finally:
        ctx.close()
    log.info(
        "mise à jour %s installée (depuis %s), redémarrage",
        pending.version,
        pending.previous,
        extra={"code": UpdateEvent.UPDATE_RECORDED},
    )
    if wants_json(args):
        _json(
            {
                "version": pending.version,
                "previous": pending.previous,
                "recorded": pending.recorded.isoformat(timespec="seconds"),
            }
        )
    else:
        _out(f"mise à jour {pending.version} notée (version en service : {pending.previous})")
    return EXIT_OK


def cmd_update_health(args: argparse.Namespace) -> int:
    from balise.app.context import resolve_data_dir
    from balise.app.update import check_health
    from balise.domain.errors import BaliseError
    from balise.domain.update import UpdateCode, UpdateEvent, last_update_words

    _logging()
    report = check_health(resolve_data_dir(args.data_dir))
    if not report.ok:
        failed = [c for c in report.checks if not c.ok]
        fr = "contrôle de santé en échec : " + " ; ".join(c.fr for c in failed)
        en = "health check failed: " + "; ".join(c.en for c in failed)
        log.error(fr, extra={"code": UpdateCode.UPDATE_HEALTH})
        raise BaliseError(fr, en, code=UpdateCode.UPDATE_HEALTH)
    last = report.resolved
    if last is not None:
        words_fr, _words_en = last_update_words(last)
        log.log(
            logging.INFO if last.outcome == "success" else logging.WARNING,
            words_fr,
            extra={
                "code": UpdateEvent.UPDATE_SUCCEEDED
                if last.outcome == "success"
                else UpdateEvent.UPDATE_ROLLED_BACK
            },
        )
    if wants_json(args):
        resolved: dict[str, Any] | None = None
        if last is not None:
            fr, en = last_update_words(last)
            resolved = {
                "version": last.version,
                "running": last.running,
                "when": last.when.isoformat(timespec="seconds"),
                "outcome": last.outcome,
                "fr": fr,
                "en": en,
            }
        _json(
            {
                "ok": True,
                "running": report.running,
                "checks": [
                    {"code": c.code, "ok": c.ok, "fr": c.fr, "en": c.en} for c in report.checks
                ],
                "resolved": resolved,
            }
        )
    else:
        _out(f"version en service : {report.running}")
        for check in report.checks:
            _out(f"OK {check.fr}")
        if last is not None:
            _out(last_update_words(last)[0])
    return EXIT_OK
