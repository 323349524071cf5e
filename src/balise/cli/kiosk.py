"""`balise kiosk`: the Textual kiosk on the box's data (udev readers, PC/SC cards, the CPS)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from balise.app.context import resolve_data_dir
from balise.cli.common import EXIT_OK, cli_language

if TYPE_CHECKING:
    from balise.ui.backend import KioskBackend


def read_boot_stop(path: str, limit: int) -> bytes | None:
    """balise-firstboot's reason file, at most ``limit`` bytes (root's file in /run; ``None``:
    none)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(limit)
    except FileNotFoundError:
        return None


def cmd_kiosk(args: argparse.Namespace) -> int:
    if args.alerte is not None:
        return cmd_boot_alert(args)
    from balise.adapters.hardening import protect_process
    from balise.adapters.systemd import configure_logging, under_systemd
    from balise.app.context import Context
    from balise.ui.app import run_kiosk
    from balise.ui.deferred import deferred_backend

    data_dir = resolve_data_dir(args.data_dir)
    opened: list[Context] = []

    def build(busy: Callable[[], object]) -> KioskBackend:
        # Opened by the first worker that needs it: the first screen is painted before, and says
        # so when ``busy`` is called (the database prepared after an update: minutes).
        from balise.app.context import open_context
        from balise.app.kiosk import build_backend

        ctx = open_context(data_dir, actor="kiosk", busy=busy)
        opened.append(ctx)
        return build_backend(ctx, env=os.environ)

    if under_systemd(os.environ):
        # The card and reader watches' warnings go to the journal, never onto the kiosk's
        # screen (outside systemd, a terminal running the kiosk gets no log lines at all).
        configure_logging("balise-kiosk")
    backend = deferred_backend(build)
    protect_process()  # not dumpable, no core file: a PIN passes through the kiosk's memory
    try:
        run_kiosk(backend, kiosk=not args.no_kiosk, lang=args.lang or cli_language())
    finally:
        backend.stop_watches()
        for ctx in opened:
            ctx.close()
    return EXIT_OK


def cmd_boot_alert(args: argparse.Namespace) -> int:
    """`balise kiosk --alerte FICHIER`: the boot stopped (balise-alert.service); what happened,
    in words, on this terminal. Opens no data, no parameter, no card."""
    from balise.ui.screens.boot_alert import MAX_REASON_BYTES, parse_boot_stop, run_boot_alert

    try:
        raw = read_boot_stop(args.alerte, MAX_REASON_BYTES)
    except OSError:
        raw = None  # unreadable: the screen still says the boot stopped
    run_boot_alert(parse_boot_stop(raw), lang=args.lang or cli_language())
    return EXIT_OK


def add_kiosk_parser(sub: Any) -> None:
    kiosk = sub.add_parser("kiosk", help="la borne (écran et clavier du boîtier)")
    kiosk.add_argument(
        "--lang", choices=("fr", "en"), help="langue de l'écran (défaut : BALISE_LANG, sinon fr)"
    )
    kiosk.add_argument(
        "--no-kiosk", action="store_true", help="Ctrl+Q quitte (maintenance, jamais sur tty1)"
    )
    kiosk.add_argument(
        "--alerte",
        metavar="FICHIER",
        help="écran d'alerte d'un démarrage arrêté (balise-alert.service), la raison lue dans "
        "FICHIER ; n'ouvre ni données ni paramètres",
    )
    kiosk.set_defaults(func=cmd_kiosk)
