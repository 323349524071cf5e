"""`balise` commands — Parameters, journal, doctor, keys and the demo."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path

from balise.app.context import resolve_data_dir
from balise.cli.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    _context,
    _err,
    _json,
    _out,
    _read_stdin,
    wants_json,
)
from balise.cli.jsonstream import write_array
from balise.domain.codes import GeneralCode, ParamCode
from balise.domain.errors import ConfigError, ValidationError
from balise.domain.params import spec_for
from balise.services.params import as_json, as_lines


def changed_by(env: Mapping[str, str] | None = None) -> str:
    """Who the journal names for a change made here: "provision" when provision.yml runs the
    command (it sets BALISE_CHANGED_BY=provision), else "cli"."""
    environ = os.environ if env is None else env
    return "provision" if environ.get("BALISE_CHANGED_BY") == "provision" else "cli"


def cmd_params_set(args: argparse.Namespace) -> int:
    spec = spec_for(args.name, profile=args.profile, organism=args.organism)
    if spec.secret and args.value is not None:
        raise ValidationError(
            "un secret ne se passe jamais en argument : utilisez --secret, la valeur est lue "
            "sur l'entrée standard",
            "a secret is never given as an argument: use --secret, the value is read from stdin",
            code=ParamCode.PARAM_SECRET_ARGV,
        )
    if spec.secret and not args.secret:
        raise ValidationError(
            f"{spec.name} est secret : utilisez --secret (valeur lue sur l'entrée standard)",
            f"{spec.name} is secret: use --secret (value read from stdin)",
            code=ParamCode.PARAM_SECRET_ARGV,
        )
    if args.secret and args.value is not None:
        raise ValidationError(
            "avec --secret, la valeur est lue sur l'entrée standard, jamais en argument",
            "with --secret the value is read from stdin, never from the arguments",
            code=ParamCode.PARAM_SECRET_ARGV,
        )
    raw = args.value if args.value is not None else _read_stdin(secret=spec.secret)
    ctx = _context(args)
    try:
        ctx.params.set(
            args.name, raw, profile=args.profile, organism=args.organism, by=changed_by()
        )
    finally:
        ctx.close()
    where = (
        f" ({'profil ' + args.profile if args.profile else 'organisme ' + args.organism})"
        if (args.profile or args.organism)
        else ""
    )
    if wants_json(args):
        _json(
            {
                "name": spec.name,
                "profile": args.profile,
                "organism": args.organism,
                "secret": spec.secret,
                "saved": True,
            }
        )
        return EXIT_OK
    _out(f"{spec.name}{where} : enregistré (chiffré)")
    return EXIT_OK


def cmd_params_get(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        spec = spec_for(args.name, profile=args.profile, organism=args.organism)
        value = ctx.params.get(args.name, profile=args.profile, organism=args.organism)
    finally:
        ctx.close()
    if wants_json(args):
        # get() shows a secret masked (********): the JSON holds what the text shows.
        _json(
            {
                "name": spec.name,
                "profile": args.profile,
                "organism": args.organism,
                "secret": spec.secret,
                "defined": value is not None,
                "value": as_json(value),
            }
        )
        return EXIT_OK if value is not None else EXIT_PROBLEM
    if value is None:
        _out("(non défini)")
        return EXIT_PROBLEM
    _out(as_lines(value))
    return EXIT_OK


def cmd_params_list(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        rows = ctx.params.rows()
    finally:
        ctx.close()
    if args.json:
        _json(
            [
                {"scope": r.scope.value, "id": r.ident, "name": r.name, "value": r.shown}
                for r in rows
            ]
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
    if wants_json(args):
        _json({"reencrypted": count, "new_kek": bool(args.new_kek_file)})
        return EXIT_OK
    _out(f"nouvelle clé de données : {count} paramètre(s) rechiffré(s)")
    if args.new_kek_file:
        _out(
            "la nouvelle KEK est en service : remplacez l'ancienne (identifiant systemd ou fichier)"
        )
    return EXIT_OK


def cmd_journal_verify(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        before = ctx.journal.verified_head()
        report = ctx.journal.verify(full=args.full)
    finally:
        ctx.close()
    if wants_json(args):
        _json(
            {
                "ok": report.ok,
                "entries": report.count,
                "checked": report.checked,
                "head_hash": report.head_hash,
                "full": report.since_seq is None,
                "since_seq": report.since_seq,
                "last_verified": before.verified if before is not None else None,
                "last_full_verified": before.full_verified if before is not None else None,
                "broken_seq": report.broken_seq,
                "problem": None if report.ok else report.describe(),
            }
        )
        return EXIT_OK if report.ok else EXIT_PROBLEM
    if report.ok:
        _out(f"OK : {report.count} entrées ; tête {report.head_hash}")
        if report.since_seq is not None and before is not None:
            last_full = (
                f", la dernière vérification complète le {before.full_verified[:10]}"
                if before.full_verified
                else ""
            )
            _out(
                f"vérification incrémentale : {report.checked} nouvelle(s) entrée(s) après "
                f"l'entrée {report.since_seq}, vérifiée le {before.verified[:10]}{last_full} ; "
                "les entrées antérieures ne sont pas revérifiées (balise journal verify --full)"
            )
        else:
            _out("vérification complète : toute la chaîne depuis son ancre")
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
        entries = (
            entry
            for entry in ctx.journal.entries(since_seq)
            if not since_time or entry.time >= since_time
        )
        if wants_json(args):
            # Streamed: a journal of ten years is never held whole.
            write_array(
                {
                    "seq": e.seq,
                    "time": e.time,
                    "actor": e.actor,
                    "kind": e.kind,
                    "subject": e.subject,
                    "details": json.loads(e.details),
                }
                for e in entries
            )
            _out("")
            return EXIT_OK
        for entry in entries:
            _out(
                f"{entry.seq:>6} {entry.time} {entry.actor:<8} {entry.kind:<20} {entry.subject} "
                f"{entry.details}"
            )
    finally:
        ctx.close()
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from balise.app.doctor import run_checks

    checks = run_checks(resolve_data_dir(args.data_dir))
    problems = sum(c.status == "problem" for c in checks)
    warnings = sum(c.status == "warn" for c in checks)
    # A warning is a problem found unless the technician said it is tolerated here.
    failed = problems > 0 or (warnings > 0 and not args.allow_warnings)
    if wants_json(args):
        _json(
            {
                "ok": not failed,
                "problems": problems,
                "warnings": warnings,
                "warnings_allowed": bool(args.allow_warnings),
                "checks": [
                    {"code": c.code, "name": c.name, "status": c.status, "message": c.message}
                    for c in checks
                ],
                # The running version and the last self-update, as data (issue 14).
                **{k: v for c in checks if c.facts is not None for k, v in c.facts.items()},
            }
        )
    else:
        for check in checks:
            _out(check.line())
    return EXIT_PROBLEM if failed else EXIT_OK


def cmd_kek_create(args: argparse.Namespace) -> int:
    from balise.adapters.kek import create_key_file

    try:
        create_key_file(Path(args.path))
    except FileExistsError as exc:
        raise ValidationError(
            f"{args.path} existe déjà : rien n'est écrasé",
            f"{args.path} already exists: nothing overwritten",
        ) from exc
    if wants_json(args):
        _json({"path": args.path, "created": True})
        return EXIT_OK
    _out(
        f"clé créée : {args.path} (0600) — protection faible tant qu'elle reste sur le même disque"
    )
    return EXIT_OK


# What `balise demo` needs beyond the box: the `sim` extra of pyproject.toml (never installed on
# the box, so nothing on the box's runtime path may import it).
SIM_EXTRA_MODULES = ("aiosmtpd",)


def cmd_demo(args: argparse.Namespace) -> int:
    from importlib.util import find_spec

    missing = [name for name in SIM_EXTRA_MODULES if find_spec(name) is None]
    if missing:
        names = ", ".join(missing)
        raise ConfigError(
            f"la démonstration a besoin des simulateurs, absents de cette installation "
            f"(manque : {names}) ; ils ne font pas partie du boîtier. Installez-les avec "
            f"pip install 'balise[sim]', ou lancez make demo depuis le dépôt, qui installe tout",
            f"the demo needs the simulators, missing from this installation (missing: {names}); "
            f"they are not part of the box. Install them with pip install 'balise[sim]', or run "
            f"make demo from the repository, which installs everything",
            code=GeneralCode.DEMO,
        )
    from balise.cli.demo import run_demo

    return run_demo(args)
