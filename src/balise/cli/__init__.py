"""The `balise` command: parameters, journal, lots, signing, mail, doctor, demo."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum

from balise.adapters.systemd import stderr_is_journal
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
from balise.cli.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    _err,
    _json,
    cli_language,
    json_flag,
    wants_json,
)
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
from balise.cli.parsing import Parser, RawEpilogFormatter, UsageError, integer, number
from balise.cli.parsing import install as install_french
from balise.cli.relay import add_parsers as add_relay_parsers
from balise.cli.trust import add_parsers as add_trust_parsers
from balise.cli.update import add_parsers as add_update_parsers
from balise.domain.codes import GeneralCode
from balise.domain.errors import BaliseError, os_error_words

# The commands without --json, and why: they run until stopped and speak to people or the journal.
WITHOUT_JSON = {
    "agent": "the background service: its words go to the system journal (logging)",
    "kiosk": "the screen of the box",
    "demo": "starts the whole demonstration, then the kiosk",
}

ENVIRONMENT = """\
variables d'environnement :
  BALISE_HOME             dossier de données (sinon --data-dir)
  BALISE_KEK_FILE         fichier de la clé de chiffrement des paramètres (KEK), si aucun
                          identifiant systemd ne la fournit
  CREDENTIALS_DIRECTORY   dossier des identifiants systemd : la KEK y est lue dans balise.kek
                          (prioritaire sur BALISE_KEK_FILE)
  BALISE_EXCHANGE         dossier d'échange avec le logiciel métier (défaut : <données>/echange)
  BALISE_PROVISIONING_DIR dossier de la fenêtre de mise en service
                          (défaut : /run/balise-provisioning)
  BALISE_CHANGED_BY       provision : les paramètres changés sont journalisés comme venant
                          de la mise en service (sinon : cli)
  BALISE_LANG             en : en anglais les erreurs, les états, montants et dates et les
                          listes (lots, retours, alertes), comme la borne ; les autres
                          phrases de la commande restent en français (défaut : français)
  BALISE_DEBUG            1 : une erreur interne montre sa trace Python au lieu d'un message
  BALISE_OS_RELEASE       fichier os-release où lire la version en service (IMAGE_VERSION ;
                          défaut : /etc/os-release, sinon /usr/lib/os-release)
  BALISE_RELAY_SOCKET     borne : socket du relais de la carte pour le logiciel métier
                          (défaut : /run/balise/relay.sock)
  BALISE_RELAY_USER       borne : compte du logiciel métier admis au relais (défaut : echange)
  BALISE_WORKER_CPU       secondes de processeur du tri d'un courrier (essais)
  BALISE_WORKER_AS        mémoire (octets) du tri d'un courrier (essais)
  NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID, JOURNAL_STREAM, INVOCATION_ID
                          posées par systemd : état et chien de garde du service de fond,
                          messages au journal du système

codes de sortie :
  0 succès ; 1 échec ou problème trouvé (avertissements de doctor compris, sauf
  --allow-warnings) ; 2 ligne de commande invalide.
  --json : un document JSON sur la sortie standard, de la forme décrite par
  docs/schemas/cli/<commande>.schema.json ; une erreur y est {"error": {"code", "fr", "en"}}.
"""


def build_parser() -> argparse.ArgumentParser:
    install_french()
    parser = Parser(
        prog="balise",
        description="Balise — boîtier de télétransmission",
        epilog=ENVIRONMENT,
        formatter_class=RawEpilogFormatter,
    )
    parser.add_argument("--version", action=_VersionAction, help="afficher la version et quitter")
    parser.add_argument("--data-dir", help="dossier de données (sinon BALISE_HOME)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMANDE")

    params = sub.add_parser("params", help="paramètres chiffrés").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p_set = params.add_parser("set", help="définir un paramètre")
    p_set.add_argument("name", metavar="NOM", help="nom du paramètre (ex. smtp.host)")
    p_set.add_argument("value", nargs="?", help="valeur (sinon lue sur l'entrée standard)")
    p_set.add_argument(
        "--secret", action="store_true", help="valeur secrète lue sur l'entrée standard"
    )
    _scope_options(p_set)
    json_flag(p_set)
    p_set.set_defaults(func=cmd_params_set)
    p_get = params.add_parser("get", help="lire un paramètre (secrets masqués)")
    p_get.add_argument("name", metavar="NOM", help="nom du paramètre")
    _scope_options(p_get)
    json_flag(p_get)
    p_get.set_defaults(func=cmd_params_get)
    p_list = params.add_parser("list", help="tous les paramètres (secrets masqués)")
    json_flag(p_list)
    p_list.set_defaults(func=cmd_params_list)
    p_rot = params.add_parser(
        "rotate-key", help="nouvelle clé de données (et, en option, nouvelle KEK)"
    )
    p_rot.add_argument("--new-kek-file", help="fichier de la nouvelle KEK")
    json_flag(p_rot)
    p_rot.set_defaults(func=cmd_params_rotate)

    journal = sub.add_parser("journal", help="journal chaîné").add_subparsers(
        dest="action", required=True, metavar="ACTION"
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
    json_flag(j_verify)
    j_verify.set_defaults(func=cmd_journal_verify)
    j_show = journal.add_parser("show", help="afficher le journal")
    j_show.add_argument("--since", help="numéro d'entrée ou date ISO (AAAA-MM-JJ)")
    json_flag(j_show)
    j_show.set_defaults(func=cmd_journal_show)

    imp = sub.add_parser("import", help="importer des fichiers de lots")
    imp.add_argument("files", nargs="+", metavar="FICHIER", help="fichier de lot à importer")
    json_flag(imp)
    imp.set_defaults(func=cmd_import)
    intake = sub.add_parser("intake", help="prendre les lots déposés dans depot/new")
    intake.add_argument("--once", action="store_true", help="un seul passage (défaut)")
    json_flag(intake)
    intake.set_defaults(func=cmd_intake)

    lots = sub.add_parser("lots", help="lots").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    l_list = lots.add_parser("list", help="tous les lots et les fichiers en quarantaine")
    json_flag(l_list)
    l_list.set_defaults(func=cmd_lots_list)
    l_show = lots.add_parser("show", help="un lot et son historique")
    l_show.add_argument("id", type=integer, metavar="ID", help="numéro du lot")
    json_flag(l_show)
    l_show.set_defaults(func=cmd_lots_show)
    l_cancel = lots.add_parser("cancel", help="retirer un lot prêt ou signé")
    l_cancel.add_argument("id", type=integer, metavar="ID", help="numéro du lot")
    l_cancel.add_argument("--reason", help="motif (journalisé)")
    json_flag(l_cancel)
    l_cancel.set_defaults(func=cmd_lots_cancel)
    l_resend = lots.add_parser("resend", help="renvoyer un lot envoyé en retard (mêmes octets)")
    l_resend.add_argument("id", type=integer, metavar="ID", help="numéro du lot")
    json_flag(l_resend)
    l_resend.set_defaults(func=cmd_lots_resend)
    send = sub.add_parser("send", help="envoyer les lots signés dus (une session par BAL)")
    send.add_argument("--profile", help="un seul profil praticien")
    json_flag(send)
    send.set_defaults(func=cmd_send)

    purge = sub.add_parser("purge", help="relever et vider les BAL (retours, courrier inconnu)")
    purge.add_argument("--once", action="store_true", help="un seul passage (défaut)")
    purge.add_argument("--profile", help="une seule BAL : ce profil praticien")
    json_flag(purge)
    purge.set_defaults(func=cmd_purge)
    returns = sub.add_parser("returns", help="retours reçus").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    r_list = returns.add_parser("list", help="ARL et NOEMIE reçus, et paiements")
    json_flag(r_list)
    r_list.set_defaults(func=cmd_returns_list)
    alerts = sub.add_parser("alerts", help="alertes").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    a_list = alerts.add_parser("list", help="alertes non acquittées")
    json_flag(a_list)
    a_list.add_argument("--all", action="store_true", help="y compris les alertes acquittées")
    a_list.set_defaults(func=cmd_alerts_list)
    a_ack = alerts.add_parser("ack", help="acquitter une alerte")
    a_ack.add_argument("id", type=integer, metavar="ID", help="numéro de l'alerte")
    json_flag(a_ack)
    a_ack.set_defaults(func=cmd_alerts_ack)

    sign = sub.add_parser("sign", help="signer les lots prêts avec la carte CPS")
    sign.add_argument("--profile", help="praticien (si la carte peut signer pour plusieurs)")
    sign.add_argument(
        "--lot",
        type=integer,
        action="append",
        metavar="ID",
        help="lot à signer (sinon tous les prêts ; option répétable)",
    )
    sign.add_argument("--token", help="étiquette du jeton PKCS#11 (plusieurs cartes)")
    json_flag(sign)
    sign.set_defaults(func=cmd_sign)

    egress = sub.add_parser("egress", help="hôtes joignables (pare-feu)").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    e_list = egress.add_parser("list", help="la liste unique des destinations autorisées")
    json_flag(e_list)
    e_list.add_argument("--output", help="écrire la liste dans ce fichier (remplacement atomique)")
    e_list.set_defaults(func=cmd_egress_list)

    agent = sub.add_parser(
        "agent", help="service de fond : dépôt, envois, relève des BAL, ARL en retard"
    )
    agent.add_argument("--once", action="store_true", help="un seul cycle puis arrêt")
    agent.add_argument("--max-cycles", type=integer, help="arrêt après N cycles")
    agent.add_argument(
        "--interval-scale", type=number, default=1.0, help="facteur des délais (essais : 0,01)"
    )
    agent.set_defaults(func=cmd_agent)

    doctor = sub.add_parser("doctor", help="vérifications de l'installation")
    doctor.add_argument(
        "--allow-warnings",
        action="store_true",
        help="sortir avec 0 malgré des avertissements (seuls les problèmes donnent 1)",
    )
    json_flag(doctor)
    doctor.set_defaults(func=cmd_doctor)

    kek = sub.add_parser("kek", help="clé de chiffrement des paramètres").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    k_create = kek.add_parser("create", help="créer un fichier de clé aléatoire (0600)")
    k_create.add_argument("path", metavar="FICHIER", help="fichier à créer (jamais écrasé)")
    json_flag(k_create)
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
    demo.add_argument(
        "--mise-en-service",
        dest="first_start",
        action="store_true",
        help="boîtier sans praticien : la borne ouvre l'assistant de mise en service (réglages "
        "de la BAL dans DIR/mise-en-service.txt)",
    )
    demo.set_defaults(func=cmd_demo)
    add_kiosk_parser(sub)
    add_backup_parsers(sub)
    add_trust_parsers(sub)
    add_update_parsers(sub)
    add_relay_parsers(sub)
    _french_metavars(parser)
    return parser


# The placeholder of each option's value in usage and help (argparse would show the English
# destination name: DATA_DIR, PROFILE...).
METAVARS = {
    "data_dir": "DOSSIER",
    "profile": "PROFIL",
    "organism": "ORGANISME",
    "new_kek_file": "FICHIER",
    "since": "DEPUIS",
    "reason": "MOTIF",
    "token": "JETON",
    "output": "FICHIER",
    "max_cycles": "N",
    "interval_scale": "FACTEUR",
    "dir": "DOSSIER",
    "to": "DOSSIER",
    "extract_to": "DOSSIER",
    "older_than_days": "JOURS",
    "lot": "ID",
}


def _french_metavars(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _french_metavars(child)
        elif (
            action.option_strings
            and action.nargs != 0
            and action.metavar is None
            and action.choices is None
            and action.dest in METAVARS
        ):
            action.metavar = METAVARS[action.dest]


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
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(words)
    except UsageError as exc:
        return _usage_error(exc, "--json" in words)
    func: Callable[[argparse.Namespace], int] = args.func
    as_json = wants_json(args)
    try:
        return func(args)
    except BaliseError as exc:
        return _failure(exc.code, exc.fr, exc.en, as_json)
    except KeyboardInterrupt:
        return _failure(GeneralCode.INTERRUPTED, "interrompu", "interrupted", as_json)
    except OSError as exc:
        fr, en = _os_words(exc)
        return _failure(GeneralCode.OS_ERROR, fr, en, as_json)
    except Exception:
        if os.environ.get("BALISE_DEBUG") == "1":
            raise
        return _failure(
            GeneralCode.INTERNAL,
            "erreur interne inattendue : rien n'a été perdu ; relancez avec BALISE_DEBUG=1 "
            "pour le détail technique et signalez-le",
            "unexpected internal error: nothing was lost; run again with BALISE_DEBUG=1 for "
            "the technical detail and report it",
            as_json,
        )


def _failure(code: StrEnum, fr: str, en: str, as_json: bool) -> int:
    """A failure: a line on stderr for people; with --json, also the error object on stdout."""
    lang = cli_language()
    # A one-shot unit (USB import, egress list…) writes to the journal through stderr: the
    # failure is stored at priority err, not at info like any other line.
    prefix = "<3>" if stderr_is_journal(os.environ, sys.stderr) else ""
    words = en if lang == "en" else fr
    _err(prefix + ("error: " if lang == "en" else "erreur : ") + words + f" [{code}]")
    if as_json:
        _json({"error": {"code": code, "fr": fr, "en": en}})
    return EXIT_FAILURE


def _usage_error(exc: UsageError, as_json: bool) -> int:
    """argparse refused the command line: its usage line and the reason, exit status 2."""
    exc.parser.print_usage(sys.stderr)
    _err(f"{exc.parser.prog} : erreur : {exc.message}")
    if as_json:
        en = f"invalid command line (see {exc.parser.prog} --help)"
        _json({"error": {"code": GeneralCode.USAGE, "fr": exc.message, "en": en}})
    return EXIT_USAGE


def _os_words(exc: OSError) -> tuple[str, str]:
    """An operating system error in words (never the exception's repr)."""
    where = f"{exc.filename} : " if exc.filename else ""
    fr, en = os_error_words(exc)
    return f"{where}{fr}", f"{where}{en}"


if __name__ == "__main__":
    raise SystemExit(main())
