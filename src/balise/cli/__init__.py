"""The `balise` command: parameters, journal, lots, signing, mail, doctor, demo."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from balise.cli.admin import (
    cmd_demo,
    cmd_doctor,
    cmd_journal_show,
    cmd_journal_verify,
    cmd_kek_create,
    cmd_params_get,
    cmd_params_list,
    cmd_params_rotate,
    cmd_params_set,
)
from balise.cli.agent import cmd_agent
from balise.cli.backup import add_parsers as add_backup_parsers
from balise.cli.common import EXIT_ERROR, _err
from balise.cli.egress import cmd_egress_list
from balise.cli.kiosk import add_kiosk_parser
from balise.cli.lots import (
    cmd_import,
    cmd_intake,
    cmd_lots_cancel,
    cmd_lots_list,
    cmd_lots_show,
    cmd_sign,
)
from balise.cli.mail import (
    cmd_alerts_ack,
    cmd_alerts_list,
    cmd_lots_resend,
    cmd_purge,
    cmd_returns_list,
    cmd_send,
)
from balise.cli.trust import add_parsers as add_trust_parsers
from balise.domain.errors import BaliseError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="balise", description="Balise — boîtier de télétransmission"
    )
    parser.add_argument("--version", action=_VersionAction, help="afficher la version et quitter")
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
    j_verify = journal.add_parser(
        "verify",
        help="vérifier la chaîne et afficher la tête (les entrées nouvelles depuis la "
        "dernière vérification ; --full : toute la chaîne)",
    )
    j_verify.add_argument(
        "--full",
        action="store_true",
        help="revérifier toute la chaîne, pas seulement ce qui est nouveau",
    )
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

    egress = sub.add_parser("egress", help="hôtes joignables (pare-feu)").add_subparsers(
        dest="action", required=True
    )
    e_list = egress.add_parser("list", help="la liste unique des destinations autorisées")
    e_list.add_argument("--json", action="store_true")
    e_list.add_argument("--output", help="écrire la liste dans ce fichier (remplacement atomique)")
    e_list.set_defaults(func=cmd_egress_list)

    agent = sub.add_parser(
        "agent", help="service de fond : dépôt, envois, relève des BAL, ARL en retard"
    )
    agent.add_argument("--once", action="store_true", help="un seul cycle puis arrêt")
    agent.add_argument("--max-cycles", type=int, help="arrêt après N cycles")
    agent.add_argument(
        "--interval-scale", type=float, default=1.0, help="facteur des délais (essais : 0,01)"
    )
    agent.set_defaults(func=cmd_agent)

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
    demo.add_argument("--keep", action="store_true", help="garder le dossier à la sortie")
    demo.add_argument(
        "--no-kiosk", action="store_true", help="sans borne : les services et l'agent seuls"
    )
    demo.add_argument(
        "--once", action="store_true", help="un seul passage de l'agent, puis tout s'arrête"
    )
    demo.set_defaults(func=cmd_demo)
    add_kiosk_parser(sub)
    add_backup_parsers(sub)
    add_trust_parsers(sub)
    return parser


class _VersionAction(argparse.Action):
    """`balise --version`: the installed package's version (pyproject.toml, via its metadata),
    looked up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        import balise

        sys.stdout.write(f"balise {balise.__version__}\n")
        parser.exit()


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
