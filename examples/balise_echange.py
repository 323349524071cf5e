#!/usr/bin/env python3
"""Reference client of the Balise exchange contract, version 1 (docs/exchange.md), for the vendors
of practice software: the standard library and OpenSSH's ``sftp`` command in batch mode, nothing
else.

    balise_echange.py --hote 192.168.1.20 --utilisateur echange --cle ~/.ssh/balise \\
        --hotes-connus balise_known_hosts deposer lot-0001.b2 lot-0002.b2
    ... lire retours/00000012345678/lot-261122-007.statut.json
    ... lister retours/00000012345678
    ... etat

``deposer`` writes each lot in depot/tmp/ then renames it into depot/new/ (the box never reads a
file being written), then waits for each file's receipt in retours/recus/ (matched by its SHA-256:
a name used before by another file has its receipt under ``<nom>.<16 hex digits>.json``) and
prints it. ``--json``: one JSON document per line instead of words. Exit status: 0 every file
accepted, 1 a file refused or a receipt not come in time, 2 a usage or connection error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CONTRACT = 1
# Names the contract allows for a dropped file (docs/exchange.md § Names).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")
POLL_S = 2.0


class Exchange:
    """The box's exchange account, through ``sftp -b`` (one connection per batch)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def batch(self, commands: list[str]) -> subprocess.CompletedProcess[str]:
        a = self.args
        argv = [
            "sftp", "-F", "/dev/null", "-b", "-", "-P", str(a.port),
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", f"IdentityFile={a.cle}",
            "-o", f"UserKnownHostsFile={a.hotes_connus}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "ConnectTimeout=10",
            "-o", "LogLevel=ERROR",
            f"{a.utilisateur}@{a.hote}",
        ]  # fmt: skip
        return subprocess.run(
            argv,
            input="\n".join(commands) + "\n",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def fetch(self, remote: list[str]) -> dict[str, bytes]:
        """The files among ``remote`` that exist now (a missing one is no error: "-get")."""
        with tempfile.TemporaryDirectory(prefix="balise-echange-") as tmp:
            local = {path: Path(tmp) / f"{i}" for i, path in enumerate(remote)}
            done = self.batch([f'-get "{path}" "{dest}"' for path, dest in local.items()])
            if done.returncode != 0:
                raise SystemExit(f"sftp : {done.stderr.strip()}")
            return {path: dest.read_bytes() for path, dest in local.items() if dest.is_file()}


def _say(args: argparse.Namespace, document: Any, words: str) -> None:
    print(json.dumps(document, ensure_ascii=False) if args.json else words, flush=True)


def _receipt_words(receipt: dict[str, Any]) -> str:
    if receipt["resultat"] == "accepte":
        lot = receipt["lot"]
        return (
            f"{receipt['fichier']} : ACCEPTÉ, lot n° {lot['id']} (émetteur {lot['emetteur']}, "
            f"lot {lot['numero']} du {lot['date_lot']}, {lot['factures']} facture(s)) ; "
            f"statut à venir dans {lot['statut']}"
        )
    lines = [f"{receipt['fichier']} : REFUSÉ" + (" (mis de côté)" if receipt["ecarte"] else "")]
    lines += [f"  [{m['code']}] {m['message']}" for m in receipt["motifs"]]
    return "\n".join(lines)


def deposer(box: Exchange, args: argparse.Namespace) -> int:
    files = [Path(f) for f in args.fichiers]
    for path in files:
        if not NAME.fullmatch(path.name):
            print(f"nom refusé par le contrat : {path.name!r}", file=sys.stderr)
            return 2
    commands: list[str] = []
    for path in files:
        commands += [
            f'put "{path}" "depot/tmp/{path.name}"',
            f'rename "depot/tmp/{path.name}" "depot/new/{path.name}"',
        ]
    done = box.batch(commands)
    if done.returncode != 0:
        print(f"dépôt impossible : {done.stderr.strip()}", file=sys.stderr)
        return 2
    wanted = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + args.attendre
    for _ in range(int(args.attendre / POLL_S) + 2):
        waiting = {n: s for n, s in wanted.items() if n not in found}
        if not waiting:
            break
        remote = {
            f"retours/recus/{name}{suffix}.json": name
            for name, sha in waiting.items()
            for suffix in ("", f".{sha[:16]}")
        }
        for where, raw in box.fetch(list(remote)).items():
            receipt = json.loads(raw)
            if receipt.get("sha256") == waiting[remote[where]]:  # this file's, not an older one's
                found[remote[where]] = receipt
        if len(found) == len(wanted) or time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    status = 0
    for name in wanted:
        receipt = found.get(name)
        if receipt is None:
            _say(args, {"fichier": name, "resultat": None}, f"{name} : pas encore d'accusé")
            status = 1
            continue
        _say(args, receipt, _receipt_words(receipt))
        if receipt["resultat"] != "accepte":
            status = 1
    return status


def lire(box: Exchange, args: argparse.Namespace) -> int:
    got = box.fetch(list(args.chemins))
    for path in args.chemins:
        raw = got.get(path)
        if raw is None:
            _say(args, {"chemin": path, "contenu": None}, f"{path} : absent")
            continue
        text = raw.decode("utf-8")
        if path.endswith(".json"):
            document = json.loads(text)
            _say(args, document, f"{path} :\n{json.dumps(document, ensure_ascii=False, indent=1)}")
        else:
            _say(args, {"chemin": path, "contenu": text}, f"{path} :\n{text}")
    return 0 if len(got) == len(args.chemins) else 1


def lister(box: Exchange, args: argparse.Namespace) -> int:
    done = box.batch([f'ls -1 "{args.dossier}"'])
    if done.returncode != 0:
        print(f"liste impossible : {done.stderr.strip()}", file=sys.stderr)
        return 1
    names = [
        line.strip().rsplit("/", 1)[-1]
        for line in done.stdout.splitlines()
        if line.strip() and not line.startswith("sftp>")
    ]
    _say(args, {"dossier": args.dossier, "fichiers": names}, "\n".join(names))
    return 0


def etat(box: Exchange, args: argparse.Namespace) -> int:
    raw = box.fetch(["retours/etat.json"]).get("retours/etat.json")
    if raw is None:
        print("retours/etat.json absent", file=sys.stderr)
        return 1
    state = json.loads(raw)
    lines = [f"Balise {state['version']} ({state['mode']}), état du {state['genere_le']}"]
    for p in state["praticiens"]:
        lines.append(
            f"  {p['profil']} : relève {p['derniere_releve'] or 'jamais'}, envoi "
            f"{p['dernier_envoi'] or 'jamais'}"
            + (f", envoi en erreur {p['envoi_en_erreur']}" if p["envoi_en_erreur"] else "")
        )
    kinds = ", ".join(f"{k} {n}" for k, n in state["alertes"]["par_type"].items())
    lines.append(
        f"  alertes en attente : {state['alertes']['total']}" + (f" ({kinds})" * bool(kinds))
    )
    backup = state["sauvegarde"]
    lines.append(f"  sauvegarde : {backup['derniere'] or 'aucune'}")
    for cert in state["certificats"][:5]:
        lines.append(f"  certificat {cert['role']} ({cert['ou']}) : fin le {cert['expire_le']}")
    _say(args, state, "\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--hote", required=True, help="adresse de la boîte sur le réseau du cabinet"
    )
    parser.add_argument("--port", type=int, default=22, help="port SFTP (22)")
    parser.add_argument("--utilisateur", default="echange", help="compte d'échange (echange)")
    parser.add_argument("--cle", required=True, help="clé privée SSH du logiciel du cabinet")
    parser.add_argument(
        "--hotes-connus", required=True, help="fichier known_hosts tenant la clé d'hôte de la boîte"
    )
    parser.add_argument("--json", action="store_true", help="un document JSON par ligne")
    commands = parser.add_subparsers(dest="commande", required=True)
    drop = commands.add_parser("deposer", help="déposer des lots et attendre leurs accusés")
    drop.add_argument("fichiers", nargs="+", help="fichiers de lots à déposer")
    drop.add_argument("--attendre", type=float, default=60.0, help="secondes d'attente (60)")
    read = commands.add_parser("lire", help="lire des fichiers de retours/")
    read.add_argument("chemins", nargs="+", help="chemins sous retours/")
    listing = commands.add_parser("lister", help="lister un dossier de retours/")
    listing.add_argument("dossier", help="dossier, par exemple retours/00000012345678")
    commands.add_parser("etat", help="l'état de la boîte (retours/etat.json)")
    args = parser.parse_args(argv)
    box = Exchange(args)
    actions = {"deposer": deposer, "lire": lire, "lister": lister, "etat": etat}
    return actions[args.commande](box, args)


if __name__ == "__main__":
    sys.exit(main())
