"""The technician passphrase: checked by the backend's gate (growing delays, lock-out, journal);
created here, typed twice, when provisioning did not set one."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Footer, Input, Static

from balise.ui.i18n import t
from balise.ui.screens.base import KioskDialog
from balise.ui.widgets.plain import Plain

if TYPE_CHECKING:
    from balise.services.technician import Attempt, GateStatus

MIN_LENGTH = 10


class PassphraseScreen(KioskDialog[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "key.back", id="passphrase-back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.creating: bool | None = None
        self._first: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="passphrase-dialog"):
            yield Plain(t("tech.passphrase"), classes="title")
            yield Plain(t("tech.passphrase.help"), id="passphrase-help", classes="help")
            yield Input(password=True, max_length=256, id="passphrase", disabled=True)
            yield Plain("", id="passphrase-message", classes="attention")
        yield Footer()

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="gate")
    def load(self) -> None:
        has = self.backend.has_passphrase()
        status = self.backend.passphrase_status()
        self.app.call_from_thread(self._ready, has, status)

    def _ready(self, has: bool, status: GateStatus) -> None:
        first_time = self.creating is None
        self.creating = not has
        if self.creating and first_time:
            self.query_one("#passphrase-help", Static).update(t("tech.create"))
        self._apply(status)

    def _message(self, words: str) -> None:
        self.query_one("#passphrase-message", Static).update(words)

    @property
    def message_text(self) -> str:
        return str(self.query_one("#passphrase-message", Static).render())

    def _apply(self, status: GateStatus) -> None:
        field = self.query_one("#passphrase", Input)
        if status.locked and status.locked_until is not None:
            field.disabled = True
            until = status.locked_until.astimezone().strftime("%H:%M")
            self._message(t("tech.locked", until=until))
            self.set_timer(min(status.wait_s, 5.0), self.load)
            return
        if status.wait_s > 0:
            # The gate's clock decides, not this timer: ask it again shortly.
            field.disabled = True
            self.set_timer(min(status.wait_s, 0.5), self.load)
            return
        self._enable()

    def _enable(self) -> None:
        field = self.query_one("#passphrase", Input)
        field.disabled = False
        field.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value
        event.input.value = ""
        event.input.disabled = True
        if self.creating:
            self._create(text)
        else:
            self._message(t("tech.checking"))
            self.attempt(text)

    def _create(self, text: str) -> None:
        if self._first is None:
            if len(text) < MIN_LENGTH:
                self._message(t("tech.create.short"))
                self._enable()
                return
            self._first = text
            self._message(t("tech.create.again"))
            self._enable()
            return
        first, self._first = self._first, None
        if first != text:
            self._message(t("tech.create.mismatch"))
            self._enable()
            return
        self.save(text)

    @work(thread=True, exclusive=True, exit_on_error=False, group="gate")
    def save(self, text: str) -> None:
        self.backend.set_passphrase(text)
        self.app.call_from_thread(self.notify, t("tech.created"), timeout=3)
        self.app.call_from_thread(self.dismiss, True)

    @work(thread=True, exclusive=True, exit_on_error=False, group="gate")
    def attempt(self, text: str) -> None:
        result = self.backend.passphrase_attempt(text)
        self.app.call_from_thread(self._answer, result)

    def _answer(self, result: Attempt) -> None:
        status = result.status
        if result.verdict == "ok":
            self.dismiss(True)
            return
        if result.verdict == "wrong":
            self._message(t("tech.wrong", n=status.failures, s=round(status.wait_s)))
        elif result.verdict == "wait":
            self._message(t("tech.wait", s=round(status.wait_s)))
        self._apply(status)

    def forget(self) -> None:
        super().forget()
        self._first = None

    def action_back(self) -> None:
        self.forget()
        self.dismiss(False)
