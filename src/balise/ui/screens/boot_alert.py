"""The alert screen of a stopped boot (`balise kiosk --alerte FICHIER`, balise-alert.service).

When balise-firstboot stops the boot — the TPM2 refused it and the technician's recovery key opened
the data partition, or no key was given, or anything else — the kiosk and the agent do not start.
This small app takes tty1 instead and says, in words, what happened and what to do. It reads only
the reason balise-firstboot left in /run (root's file, a few ``key=value`` lines), shows that
reason as plain text, never as markup, and has nothing to open: no data, no parameter, no card.
Keyboard only; no key leaves it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Header

from balise.ui import i18n
from balise.ui.i18n import t
from balise.ui.widgets.plain import Plain

# balise-firstboot writes a few short lines; anything longer is not its file.
MAX_REASON_BYTES = 4096
MAX_REASON_CHARS = 400

State = Literal["secours", "refus", "echec"]
_STATES: tuple[State, ...] = ("secours", "refus", "echec")


@dataclass(frozen=True)
class BootStop:
    """Why the boot stopped, as balise-firstboot said it.

    ``state``: ``secours`` (the data partition opened by the recovery key, the parameters kept
    closed), ``refus`` (the TPM2 refused the boot, no key given), ``echec`` (anything else, or
    a file that says nothing known). ``root_modified``: dm-verity refused a block of the
    read-only root (status ``C``). ``reason``: balise-firstboot's own words, shown as they are."""

    state: State
    root_modified: bool
    reason: str


def parse_boot_stop(raw: bytes | None) -> BootStop:
    """The reason file's bytes (``None``: no file) read with bounds; unknown keys ignored, an
    unknown state read as ``echec``; control characters of the reason dropped."""
    if raw is None:
        return BootStop("echec", False, "")
    text = raw[:MAX_REASON_BYTES].decode("utf-8", errors="replace")
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("etat", "racine", "raison") and key not in values:
            values[key] = value
    found = values.get("etat", "")
    state: State = next((s for s in _STATES if s == found), "echec")
    reason = "".join(c for c in values.get("raison", "") if c.isprintable())
    return BootStop(state, values.get("racine") == "C", reason[:MAX_REASON_CHARS].strip())


class BootAlertScreen(Vertical):
    """What happened, what stays closed, what to do, then the reason as it was written."""

    DEFAULT_CSS = """
    BootAlertScreen { padding: 1 2; }
    BootAlertScreen Plain { margin-bottom: 1; }
    #boot-alert-title { text-style: bold; }
    """

    def __init__(self, stop: BootStop) -> None:
        super().__init__(id="boot-alert")
        self.stop = stop

    def compose(self) -> ComposeResult:
        stop = self.stop
        yield Plain(t(f"bootalert.{stop.state}.title"), id="boot-alert-title")
        yield Plain(t(f"bootalert.{stop.state}.what"), id="boot-alert-what")
        if stop.root_modified:
            yield Plain(t("bootalert.root_modified"), id="boot-alert-root")
        yield Plain(t(f"bootalert.{stop.state}.todo"), id="boot-alert-todo")
        if stop.reason:
            yield Plain(t("bootalert.reason", why=stop.reason), id="boot-alert-reason")
        yield Plain(t("bootalert.keys"), id="boot-alert-keys")


class BootAlertApp(App[None]):
    """tty1 while the boot is stopped: one screen, nothing to open, no key that quits."""

    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit_key", show=False, priority=True, id="alert-quit-q"),
        Binding("ctrl+c", "quit_key", show=False, priority=True, id="alert-quit-c"),
    ]

    def __init__(self, stop: BootStop, *, lang: Literal["fr", "en"] = "fr") -> None:
        i18n.set_language(lang)
        super().__init__()
        self.stop = stop
        self.title = t("app.title")

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield BootAlertScreen(self.stop)

    def action_quit_key(self) -> None:
        self.notify(t("kiosk.no_quit"), severity="warning")


def run_boot_alert(stop: BootStop, *, lang: Literal["fr", "en"] = "fr") -> None:
    """The alert on this terminal, until the box is switched off."""
    BootAlertApp(stop, lang=lang).run()
