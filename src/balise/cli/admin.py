"""`balise` commands — Parameters, journal, doctor, keys and the demo."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path

from balise.bootstrap import resolve_data_dir
from balise.cli.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    _context,
    _err,
    _out,
    _read_stdin,
)
from balise.domain.errors import ConfigError, ValidationError
from balise.domain.params import spec_for


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
        before = ctx.journal.verified_head()
        report = ctx.journal.verify(full=args.full)
    finally:
        ctx.close()
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
        for entry in ctx.journal.entries(since_seq):
            if since_time and entry.time < since_time:
                continue
            _out(
                f"{entry.seq:>6} {entry.time} {entry.actor:<8} {entry.kind:<20} {entry.subject} {entry.details}"
            )
    finally:
        ctx.close()
    return EXIT_OK


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
            code="DEMO",
        )
    from balise.demo import run_demo

    return run_demo(args)
