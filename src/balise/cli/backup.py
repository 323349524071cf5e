"""`balise` commands — backup, backup verify, backup extract, restore and the evidence retention
purge."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from balise.app.backup import (
    backup_service,
    extract_archive,
    restore_archive,
    retention_service,
    unlock_with_passphrase,
    verify_with_box_key,
)
from balise.app.context import open_context, resolve_data_dir
from balise.cli.common import EXIT_OK, _context, _json, _out, json_flag, wants_json
from balise.cli.parsing import integer
from balise.domain.errors import BaliseError, ConfigError
from balise.domain.vocabulary import size

TTY_ATTEMPTS = 3


def _ask_passphrase() -> str:
    """From the terminal without echo, or one line of standard input (scripted use, tests)."""
    if sys.stdin.isatty():
        return getpass.getpass("Phrase de passe de secours : ")
    return sys.stdin.readline().rstrip("\r\n")


def _attempts() -> int:
    return TTY_ATTEMPTS if sys.stdin.isatty() else 1


def _show_manifest(manifest: dict[str, Any]) -> None:
    counts = manifest.get("counts", {})
    _out(f"boîte          : {manifest.get('box_id')}")
    _out(f"créée le       : {manifest.get('created')}")
    _out(
        f"journal        : {counts.get('journal')} entrées, tête n° "
        f"{manifest.get('journal_head_seq')} {manifest.get('journal_head_hash')}"
    )
    states = ", ".join(f"{k} {v}" for k, v in counts.get("lots_by_state", {}).items())
    _out(f"lots           : {counts.get('lots')} ({states or 'aucun'})")
    _out(
        f"retours        : {counts.get('returns')} ; paiements {counts.get('payments')} ; "
        f"alertes {counts.get('alerts')} ; quarantaine {counts.get('quarantine_files')} "
        f"fichier(s), {counts.get('mail_quarantine')} courrier(s)"
    )
    _out(f"paramètres     : {counts.get('vault')} entrée(s) du coffre (chiffrées)")


def cmd_backup(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        service = backup_service(ctx)
        dest = Path(args.to) if args.to else ctx.exchange().root / "sauvegardes"
        outcome = service.backup(dest)
    finally:
        ctx.close()
    if wants_json(args):
        _json({"path": str(outcome.path), "size": outcome.size, "manifest": outcome.manifest})
        return EXIT_OK
    _out(f"sauvegarde écrite : {outcome.path} ({size(outcome.size, 'fr')})")
    _show_manifest(outcome.manifest)
    return EXIT_OK


def cmd_backup_verify(args: argparse.Namespace) -> int:
    archive = Path(args.archive)
    verified = None
    data_dir: Path | None
    try:
        data_dir = resolve_data_dir(args.data_dir)
    except ConfigError:
        data_dir = None
    if data_dir is not None and (data_dir / "balise.db").exists():
        try:
            ctx = open_context(data_dir, actor="cli", create=False)
        except BaliseError:
            ctx = None
        if ctx is not None:
            try:
                verified = verify_with_box_key(archive, ctx)
            finally:
                ctx.close()
    if verified is None:
        verified = unlock_with_passphrase(
            archive, _ask_passphrase, throttle_dir=data_dir, attempts=_attempts()
        )
    manifest = verified.header.manifest
    if args.json:
        _out(json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True))
    else:
        _out(f"archive intègre : {archive.name} (chaque bloc authentifié)")
        _show_manifest(manifest)
    return EXIT_OK


def cmd_backup_extract(args: argparse.Namespace) -> int:
    archive = Path(args.archive)
    facts = extract_archive(archive, Path(args.extract_to), _ask_passphrase, attempts=_attempts())
    if args.json:
        shown = {
            "database": str(facts.database),
            "header": str(facts.header_file),
            "size": facts.size,
            "manifest": facts.manifest,
        }
        _out(json.dumps(shown, ensure_ascii=False, indent=1, sort_keys=True))
        return EXIT_OK
    _out(
        f"archive ouverte : {archive.name} (chaque bloc authentifié, contenu conforme au manifeste)"
    )
    _out(f"base SQLite     : {facts.database} ({size(facts.size, 'fr')})")
    _out(f"en-tête         : {facts.header_file}")
    _show_manifest(facts.manifest)
    _out(
        "Les paramètres secrets (mots de passe, clés) restent chiffrés dans la base, comme sur la "
        "boîte : rien de secret n'est écrit en clair (voir docs/backup-format.md)."
    )
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    data_dir = resolve_data_dir(args.data_dir)
    report = restore_archive(
        Path(args.archive),
        data_dir,
        _ask_passphrase,
        force=args.force,
        attempts=_attempts(),
    )
    if wants_json(args):
        _json(
            {
                "source_box": report.source_box,
                "head_seq": report.head_seq,
                "head_hash": report.head_hash,
                "restore_seq": report.restore_seq,
                "counts": report.counts,
                "kept_aside": str(report.kept_aside) if report.kept_aside else None,
            }
        )
        return EXIT_OK
    _out(
        f"restauration faite depuis la boîte {report.source_box} : journal repris à l'entrée "
        f"n° {report.head_seq} ({report.head_hash}), restauration journalisée "
        f"n° {report.restore_seq}"
    )
    counts = report.counts
    _out(
        f"{counts.get('lots')} lot(s), {counts.get('returns')} retour(s), "
        f"{counts.get('alerts')} alerte(s), {counts.get('vault')} paramètre(s) rechiffré(s) "
        "sous la clé de cette boîte"
    )
    if report.kept_aside:
        _out(f"ancienne base gardée à côté : {report.kept_aside}")
    return EXIT_OK


def cmd_retention_run(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        outcome = retention_service(ctx).run(ctx.clock.now(), older_than_days=args.older_than_days)
    finally:
        ctx.close()
    if wants_json(args):
        _json(
            {
                "cutoff": outcome.cutoff,
                "removed": outcome.removed,
                "journal_removed": outcome.journal_removed,
                "removed_sha256": outcome.removed_sha256 or None,
                "checkpoint_seq": outcome.checkpoint_seq,
            }
        )
        return EXIT_OK
    removed = ", ".join(f"{k} {v}" for k, v in outcome.removed.items() if v) or "rien d'autre"
    _out(f"conservation : antérieur au {outcome.cutoff[:10]} retiré — {removed}")
    _out(
        f"journal : {outcome.journal_removed} entrée(s) retirée(s) (SHA-256 "
        f"{outcome.removed_sha256 or '-'}), point de contrôle n° {outcome.checkpoint_seq}"
    )
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    """The parser lines, called from ``build_parser``."""
    backup = sub.add_parser("backup", help="sauvegarde chiffrée (et sa vérification)")
    backup.add_argument("--to", help="dossier de destination (sinon sauvegardes/ de l'échange)")
    json_flag(backup)
    backup.set_defaults(func=cmd_backup)
    b_sub = backup.add_subparsers(dest="action", required=False, metavar="ACTION")
    b_verify = b_sub.add_parser("verify", help="vérifier une archive et afficher son manifeste")
    b_verify.add_argument("archive", metavar="ARCHIVE", help="fichier .sauvegarde à vérifier")
    json_flag(b_verify)
    b_verify.set_defaults(func=cmd_backup_verify)
    b_extract = b_sub.add_parser(
        "extract",
        help="ouvrir une archive sans boîte : base SQLite ordinaire et en-tête dans un dossier",
        description="Déchiffre une archive avec la phrase de passe de secours (demandée au "
        "terminal, ou lue sur l'entrée standard) et écrit dans DOSSIER la base SQLite "
        "(balise.db) et l'en-tête de l'archive (entete.json). Ni clé de la boîte ni dossier de "
        "données ne sont nécessaires.",
    )
    b_extract.add_argument("archive", help="l'archive (fichier .sauvegarde)")
    b_extract.add_argument(
        "--to",
        dest="extract_to",
        metavar="DOSSIER",
        required=True,
        help="dossier de sortie, absent ou vide (créé en 0700)",
    )
    b_extract.add_argument("--json", action="store_true", help="résultat en JSON")
    b_extract.set_defaults(func=cmd_backup_extract)
    restore = sub.add_parser("restore", help="restaurer une sauvegarde sur cette boîte")
    restore.add_argument("archive", metavar="ARCHIVE", help="fichier .sauvegarde à restaurer")
    restore.add_argument(
        "--force", action="store_true", help="remplacer les données présentes (gardées à côté)"
    )
    json_flag(restore)
    restore.set_defaults(func=cmd_restore)
    retention = sub.add_parser("retention", help="conservation des preuves").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    r_run = retention.add_parser("run", help="retirer ce qui dépasse la durée de conservation")
    r_run.add_argument(
        "--older-than-days", type=integer, help="durée en jours (sinon retention_days)"
    )
    json_flag(r_run)
    r_run.set_defaults(func=cmd_retention_run)
