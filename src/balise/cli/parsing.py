"""argparse in French: a catalogue of argparse's own messages and the parser class of `balise`.

argparse builds its words with ``gettext`` through two module names, ``argparse._`` and
``argparse.ngettext``; :func:`install` points both at the catalogue below (English text →
French). A message missing from the catalogue stays as argparse wrote it: the tests provoke each
message a person can meet and look for English in what is shown.

:class:`Parser` does not print and exit on a usage error: it raises :class:`UsageError`, and
``balise.cli.main`` shows it (usage line and message on stderr, plus a JSON object on stdout
with ``--json``) and returns exit status 2.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any, NoReturn

CATALOGUE: dict[str, str] = {
    # Help and usage
    "usage: ": "utilisation : ",
    "positional arguments": "arguments positionnels",
    "options": "options",
    "optional arguments": "options",
    "subcommands": "sous-commandes",
    "show this help message and exit": "afficher cette aide et quitter",
    # Errors
    "%(prog)s: error: %(message)s\n": "%(prog)s : erreur : %(message)s\n",
    "argument %(argument_name)s: %(message)s": "argument %(argument_name)s : %(message)s",
    "the following arguments are required: %s": "arguments obligatoires manquants : %s",
    "one of the arguments %s is required": "l'un de ces arguments est obligatoire : %s",
    "not allowed with argument %s": "incompatible avec l'argument %s",
    "unrecognized arguments: %s": "arguments non reconnus : %s",
    "invalid choice: %(value)r (choose from %(choices)s)": (
        "choix invalide : %(value)r (choix possibles : %(choices)s)"
    ),
    "invalid %(type)s value: %(value)r": "valeur invalide (%(type)s attendu) : %(value)r",
    "expected one argument": "une valeur est attendue",
    "expected at most one argument": "une valeur au plus est attendue",
    "expected at least one argument": "au moins une valeur est attendue",
    "expected %s argument": "%s valeur attendue",
    "expected %s arguments": "%s valeurs attendues",
    "ambiguous option: %(option)s could match %(matches)s": (
        "option ambiguë : %(option)s peut désigner %(matches)s"
    ),
    "ignored explicit argument %r": "valeur %r ignorée : cette option n'en prend pas",
    "unexpected option string: %s": "option inattendue : %s",
    "unknown parser %(parser_name)r (choices: %(choices)s)": (
        "sous-commande inconnue %(parser_name)r (choix possibles : %(choices)s)"
    ),
    "can't open '%(filename)s': %(error)s": "impossible d'ouvrir « %(filename)s » : %(error)s",
    'argument "-" with mode %r': "argument « - » avec le mode %r",
}


def translate(message: str) -> str:
    return CATALOGUE.get(message, message)


def translate_plural(singular: str, plural: str, n: int) -> str:
    return translate(singular if n == 1 else plural)


def install() -> None:
    """argparse's words in French, for every parser of this process (idempotent)."""
    argparse._ = translate  # type: ignore[attr-defined]
    argparse.ngettext = translate_plural  # type: ignore[attr-defined]


class UsageError(Exception):
    """A command line argparse refused: shown by ``main`` with the usage line, exit status 2."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class Formatter(argparse.HelpFormatter):
    """Help lines wrapped between words only (a file name such as lots-list.schema.json is
    never cut at its hyphen)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class RawEpilogFormatter(Formatter):
    """The top-level help: its epilog (environment variables, exit statuses) kept as laid out."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))


class Parser(argparse.ArgumentParser):
    """The parser (and subparsers) of `balise`: usage errors raised, never printed here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(self, message)


def integer(text: str) -> int:
    """An ``int`` argument with a French message (argparse would name the Python type)."""
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"nombre entier attendu : « {text} »") from None


def number(text: str) -> float:
    """A decimal number, with a point or a French comma."""
    try:
        return float(text.replace(",", "."))
    except ValueError:
        raise argparse.ArgumentTypeError(f"nombre attendu : « {text} »") from None
