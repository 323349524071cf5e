"""Shared pieces of the `balise` command: output, exit codes, context, reading secrets."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from balise.app.context import Context, open_context, resolve_data_dir
from balise.domain.codes import CardCode
from balise.domain.errors import ValidationError
from balise.domain.lotrecord import LotRecord
from balise.domain.lotstate import UnknownLot
from balise.domain.vocabulary import Lang, euros, language, lot_date, lot_state

# Exit statuses of every `balise` command (README, "Conventions of the command"):
EXIT_OK = 0  # success: the work is done, nothing to report
EXIT_FAILURE = 1  # a failure, or a problem found (doctor's warnings included, unless tolerated)
EXIT_USAGE = 2  # the command line itself is wrong (argparse: unknown option, missing argument)
EXIT_PROBLEM = EXIT_FAILURE  # "a problem found" reads better at some call sites
EXIT_ERROR = EXIT_FAILURE  # older name, kept for the modules that still use it
MAX_STDIN = 1024 * 1024
# Where the JSON Schema of each command's --json output lives in the repository.
SCHEMA_DIR = "docs/schemas/cli"


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def _json(document: Any) -> None:
    """One JSON document on stdout (the shape of docs/schemas/cli/<command>.schema.json)."""
    sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=1) + "\n")


def json_flag(p: argparse.ArgumentParser) -> None:
    """``--json`` on a command that reports something; its shape is the command's schema."""
    name = "-".join(p.prog.split()[1:])
    p.add_argument(
        "--json",
        action="store_true",
        help=f"sortie JSON (forme : docs/schemas/cli/{name}.schema.json)",
    )


def _context(args: argparse.Namespace, busy: Callable[[], object] | None = None) -> Context:
    return open_context(resolve_data_dir(args.data_dir), actor="cli", busy=busy)


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


def cli_language() -> Lang:
    """The language of the words people read: ``BALISE_LANG=en`` for English, French otherwise.
    The kiosk follows the same setting (``balise kiosk --lang`` defaults to it)."""
    return language(os.environ.get("BALISE_LANG"))


def _lot_line(lot: LotRecord) -> str:
    lang = cli_language()
    state = lot_state(lot.state, lang)
    day, total = lot_date(lot.lot_date, lang), euros(lot.total, lang)
    if lang == "en":
        return (
            f"{lot.id:>5}  {state:<27} {lot.profile:<10} lot {lot.lot_number} of {day}  "
            f"{lot.invoices:>4} invoice(s) {total:>14}  → {lot.organism}"
        )
    return (
        f"{lot.id:>5}  {state:<26} {lot.profile:<10} lot {lot.lot_number} du {day}  "
        f"{lot.invoices:>4} facture(s) {total:>14}  → {lot.organism}"
    )


def _ids(ids: Sequence[int]) -> str:
    return ", ".join(f"n° {i}" for i in ids)


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
            "le code doit faire 4 à 8 chiffres",
            "the PIN must be 4 to 8 digits",
            code=CardCode.PIN_FORMAT,
        )
    return buffer


def _lot(ctx: Context, lot_id: int) -> LotRecord:
    """The lot, or the error a person reads when the number is wrong."""
    lot = ctx.lots.get(lot_id)
    if lot is None:
        raise UnknownLot(lot_id)
    return lot
