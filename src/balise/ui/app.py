"""The Balise kiosk: a keyboard-only Textual app with two modes, operate and technician."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from textual.app import App, ScreenStackError
from textual.binding import Binding, BindingType
from textual.events import Event, Key
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from balise.domain.errors import BaliseError
from balise.ui import i18n
from balise.ui.deferred import CardStatus
from balise.ui.i18n import t
from balise.ui.messages import CardChanged, DevicesChanged, ReadersChanged
from balise.ui.screens.base import KioskDialog, KioskScreen
from balise.ui.screens.home import HomeScreen

if TYPE_CHECKING:  # loaded when first needed, after the first paint
    from balise.domain.devices import CardEvent, ReaderEvent
    from balise.ui.backend import KioskBackend
    from balise.ui.demo_hooks import DemoHooks

STYLES = Path(__file__).with_name("styles")


def _technician() -> Screen[Any]:
    # Imported when first needed: the first screen paints sooner.
    from balise.ui.screens.technician import TechnicianScreen

    return TechnicianScreen()


class BaliseApp(App[None]):
    """Screens only present; the backend does the work, always from thread workers."""

    # Accueil's rules are read with the app's: a screen's CSS_PATH makes Textual parse every
    # stylesheet again and restyle the whole DOM when the screen is installed, which the first
    # screen would pay before its first paint (the other screens' styles still come with them).
    CSS_PATH = [STYLES / "app.tcss", STYLES / "home.tcss"]  # noqa: RUF012 (Textual reads it once)
    ENABLE_COMMAND_PALETTE = False
    MODES: ClassVar[dict[str, Callable[[], Screen[Any]]]] = {  # type: ignore[assignment]
        "operate": HomeScreen,
        "technician": _technician,
    }
    DEFAULT_MODE = "operate"
    BINDINGS: ClassVar[list[BindingType]] = [
        # A kiosk has no shell behind it: the quit keys only say so.
        Binding("ctrl+q", "quit_key", show=False, priority=True, id="quit-q"),
        Binding("ctrl+c", "quit_key", show=False, priority=True, id="quit-c"),
    ]

    def __init__(
        self,
        backend: KioskBackend,
        *,
        kiosk: bool = True,
        lang: Literal["fr", "en"] = "fr",
        demo: DemoHooks | None = None,
        idle_timeout: float = 120.0,
    ) -> None:
        i18n.set_language(lang)
        super().__init__()
        self.backend = backend
        self.kiosk = kiosk
        self.demo = demo
        self.idle_timeout = idle_timeout
        self.readers: tuple[str, ...] = ()
        self.card = CardStatus(False)
        self._last_input = time.monotonic()
        self.title = t("app.title")

    # -- devices -------------------------------------------------------------------------

    # True once the first frame is displayed (Textual's Ready event): until then no worker
    # thread starts, so opening the box never competes with the first paint for the CPU.
    painted = False

    def on_mount(self) -> None:
        self.set_interval(min(1.0, self.idle_timeout / 4), self._check_idle, name="idle")

    def on_ready(self) -> None:
        # After the first paint: the backend may still have the box to open.
        self.painted = True
        self.run_worker(self._start_watches, thread=True, exit_on_error=False, group="watch")
        home = self.screen
        if isinstance(home, HomeScreen):
            home.refresh_bindings()  # its key bar, held back until now
            home.refresh_summary()

    def _start_watches(self) -> None:
        self.backend.start_reader_watch(self._reader_event)
        self.backend.start_card_watch(self._card_event)

    def _reader_event(self, event: ReaderEvent) -> None:
        # Watcher thread: post_message is thread-safe; a burst collapses in the queue.
        self.post_message(ReadersChanged(tuple(r.name for r in event.readers)))

    def _card_event(self, event: CardEvent) -> None:
        self.post_message(CardChanged(event, self.backend.card_status()))

    def on_readers_changed(self, message: ReadersChanged) -> None:
        removed = len(message.readers) < len(self.readers)
        self.readers = message.readers
        self._tell_screens(DevicesChanged(reader_removed=removed))

    def on_card_changed(self, message: CardChanged) -> None:
        self.card = message.status
        self._tell_screens(DevicesChanged(card_removed=message.event.action == "removed"))

    def _tell_screens(self, message: DevicesChanged) -> None:
        for screen in self.screen_stack:
            screen.post_message(
                DevicesChanged(
                    card_removed=message.card_removed, reader_removed=message.reader_removed
                )
            )

    def on_unmount(self) -> None:
        self.backend.stop_watches()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place where a failed worker becomes words on screen."""
        if event.state is not WorkerState.ERROR:
            return
        error = event.worker.error
        why = error.message(i18n.language()) if isinstance(error, BaliseError) else repr(error)
        self.notify(t("kiosk.error", why=why), severity="error", timeout=6)

    # -- keys ----------------------------------------------------------------------------

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Every toast is plain text: its words may carry a file name or a mail's words."""
        del markup
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    async def on_event(self, event: Event) -> None:
        if isinstance(event, Key):
            self._last_input = time.monotonic()
        await super().on_event(event)

    def action_quit_key(self) -> None:
        if self.kiosk:
            self.notify(t("kiosk.no_quit"), timeout=3)
        else:
            self.exit()

    # -- idle timeout ----------------------------------------------------------------------

    def _check_idle(self) -> None:
        if time.monotonic() - self._last_input < self.idle_timeout:
            return
        self._last_input = time.monotonic()
        if self.current_mode == "operate" and len(self.screen_stack) == 1:
            return
        if not self.workers or not any(
            w.group == "reset" and not w.is_finished for w in self.workers
        ):
            self.run_worker(self.reset_to_home(), group="reset", exit_on_error=False)

    async def reset_to_home(self) -> None:
        """Forget everything typed, stop the flows, back to Accueil in operate mode."""
        for stack in list(self._screen_stacks.values()):
            for screen in stack:
                if isinstance(screen, KioskScreen | KioskDialog):
                    screen.forget()
                self.workers.cancel_node(screen)
        if self.current_mode != "operate":
            await self.leave_technician()
        for _ in range(20):  # bounded: a kiosk stack is a few screens deep
            if len(self.screen_stack) <= 1:
                break
            try:
                await self.pop_screen()
            except ScreenStackError:
                break
        self.notify(t("kiosk.idle"), timeout=4)
        home = self.screen
        if isinstance(home, HomeScreen):
            home.refresh_bindings()  # its key bar, held back until now
            home.refresh_summary()

    async def leave_technician(self) -> None:
        await self.switch_mode("operate")
        await self.remove_mode("technician")
        self.add_mode("technician", _technician)
        self.run_worker(self.backend.technician_left, thread=True, exit_on_error=False)

    async def enter_technician(self) -> None:
        await self.switch_mode("technician")


def run_kiosk(
    backend: KioskBackend,
    *,
    kiosk: bool = True,
    demo: DemoHooks | None = None,
    lang: Literal["fr", "en"] = "fr",
) -> None:
    """The kiosk on this terminal. Its caller has made the process not dumpable, with no core
    file (a PIN passes through its memory): ``balise.adapters.hardening.protect_process``."""
    BaliseApp(backend, kiosk=kiosk, lang=lang, demo=demo).run()
