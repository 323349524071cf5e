"""The guided signing flow, top to bottom: reader → card → who → PIN → lots → confirm → signing →
sending → summary → "retirez votre carte". Every blocking call runs in a thread worker."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Literal

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Footer, Header, ProgressBar, Static

from balise.domain.errors import BaliseError
from balise.ui.backend import SendReport, SendStep
from balise.ui.i18n import pick, t
from balise.ui.messages import DevicesChanged
from balise.ui.screens.base import KioskDialog, KioskScreen, in_thread
from balise.ui.screens.dialogs import ChoiceDialog, ConfirmDialog, LotChoiceDialog, PinDialog
from balise.ui.widgets.plain import Plain

if TYPE_CHECKING:
    from balise.services.signing import BatchEvent, BatchResult, CardReport

Phase = Literal["before", "signing", "sending", "done"]


class SignScreen(KioskScreen):
    CSS_PATH = "../styles/sign.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "go_on", "key.continue", id="sign-continue"),
        Binding("escape", "back", "key.back", id="sign-back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.phase: Phase = "before"
        self.pin: bytearray | None = None
        self.outcome: BatchResult | None = None
        self.sending: SendReport | None = None
        self._changed = asyncio.Event()
        self._go = asyncio.Event()
        self._cancel = threading.Event()
        self._lines: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="flow"):
            yield Plain(t("sign.title"), id="step", classes="title")
            yield Plain("", id="body")
            yield ProgressBar(total=1, show_eta=False, id="progress")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = t("sign.title")
        self.query_one(ProgressBar).display = False
        self.run_flow()

    # -- what the screen says --------------------------------------------------------------

    def say(self, *lines: str, keep: bool = False) -> None:
        self._lines = [*self._lines, *lines] if keep else list(lines)
        self.query_one("#body", Static).update("\n".join(self._lines))

    @property
    def body_text(self) -> str:
        return "\n".join(self._lines)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "go_on":
            return self.phase == "done" or None
        if action == "back":
            return self.phase in ("before", "done")
        return True

    def _set_phase(self, phase: Phase) -> None:
        self.phase = phase
        self.refresh_bindings()

    # -- events ------------------------------------------------------------------------------

    def on_devices_changed(self, message: DevicesChanged) -> None:
        self._changed.set()
        if self.phase == "before" and (message.card_removed or message.reader_removed):
            self._abort(t("sign.reader_gone") if message.reader_removed else t("sign.card_removed"))
        elif self.phase == "done" and message.card_removed and self.outcome is not None:
            self.app.pop_screen()

    def _abort(self, words: str) -> None:
        """Stop the flow before signing: the PIN is forgotten, open dialogs close."""
        self.workers.cancel_group(self, "flow")
        self._wipe()
        while self.app.screen is not self and isinstance(self.app.screen, KioskDialog):
            self.app.screen.forget()
            self.app.pop_screen()
        self._set_phase("done")
        self.say(words, t("sign.enter_done"))

    def _wipe(self) -> None:
        if self.pin is not None:
            self.pin[:] = bytes(len(self.pin))
            self.pin = None

    def forget(self) -> None:
        super().forget()
        self._cancel.set()
        self._wipe()

    def action_go_on(self) -> None:
        if self.phase == "done":
            self.app.pop_screen()

    def action_back(self) -> None:
        if self.phase == "before":
            self._abort(t("sign.aborted"))
        elif self.phase == "done":
            self.app.pop_screen()

    # -- the flow ----------------------------------------------------------------------------

    async def _wait_until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self._changed.clear()
            await self._changed.wait()

    def _finish(self, *lines: str) -> None:
        self._wipe()
        self._set_phase("done")
        self.say(*lines, t("sign.enter_done"))

    @work(exclusive=True, exit_on_error=False, group="flow")
    async def run_flow(self) -> None:
        try:
            await self._flow()
        except BaliseError as exc:
            self._finish(t("sign.stopped", why=exc.message(self._lang())))
        finally:
            self._wipe()

    @staticmethod
    def _lang() -> str:
        from balise.ui.i18n import language

        return language()

    async def _flow(self) -> None:
        app = self.kiosk
        if not app.readers:
            self.say(t("sign.need_reader"))
            await self._wait_until(lambda: bool(app.readers))
        if not app.card.present:
            self.say(t("sign.need_card"))
            await self._wait_until(lambda: app.card.present)
        if not app.card.can_sign:
            self._finish(t("sign.refused", why=pick(app.card.fr, app.card.en)))
            return
        if not await in_thread(self, self.backend.clock_synchronized):
            self._finish(t("sign.clock"))
            return
        if await in_thread(self, self.backend.update_in_progress):
            self._finish(t("sign.update"))  # before the PIN: no try spent
            return
        channel = await in_thread(self, self.backend.channel_state)
        if channel is not None and channel.open:
            # One card, two processes: the relay's login would be another program's session on
            # the card while this one logs in, signs and logs out. The channel ends first.
            await in_thread(self, self.backend.close_channel)
            self.notify(t("sign.channel_closed"), timeout=8)
        self.say(t("sign.reading"))
        report = await in_thread(self, self.backend.examine_card)
        self._show_card(report)
        if report.refusal_fr is not None:
            self._finish(
                *self._lines, t("sign.refused", why=pick(report.refusal_fr, report.refusal_en))
            )
            return
        profile = report.profiles[0][0]
        if len(report.profiles) > 1:
            chosen = await app.push_screen_wait(
                ChoiceDialog(
                    t("sign.choose_profile"), [(p, f"{p} ({role})") for p, role in report.profiles]
                )
            )
            if chosen is None:
                self._finish(t("sign.aborted"))
                return
            profile = chosen
        if report.pin.protected_path:
            self.say(t("sign.pin.keypad"), keep=True)
        else:
            self.pin = await app.push_screen_wait(PinDialog(report.pin.tries_left))
            if self.pin is None:
                self._finish(t("sign.aborted"))
                return
        lots = await in_thread(self, lambda: self.backend.ready_lots(profile))
        if not lots:
            self._finish(t("sign.no_lots", name=profile))
            return
        lot_ids = await app.push_screen_wait(LotChoiceDialog(profile, lots))
        if not lot_ids:
            self._finish(t("sign.aborted"))
            return
        question = t(
            "sign.confirm", n=len(lot_ids), name=profile, holder=report.identity.holder_name
        )
        if not await app.push_screen_wait(ConfirmDialog(question, "sign.confirm.help")):
            self._finish(t("sign.aborted"))
            return
        await self._sign_and_send(profile, lot_ids)

    def _show_card(self, report: CardReport) -> None:
        who = report.identity
        lines = [
            t("sign.who", name=who.holder_name, rpps=who.rpps),
            t(
                "sign.for",
                profiles=", ".join(f"{p} ({role})" for p, role in report.profiles) or "—",
            ),
            t("sign.cert", words=pick(report.cert.words_fr, report.cert.words_en)),
        ]
        if not report.pin.protected_path:
            lines.append(t("sign.tries", n=report.pin.tries_left))
            if report.pin.final_try:
                lines.append(t("sign.final_try"))
        self.say(*lines)

    async def _sign_and_send(self, profile: str, lot_ids: list[int]) -> None:
        bar = self.query_one(ProgressBar)
        bar.update(total=len(lot_ids), progress=0)
        bar.display = True
        self._set_phase("signing")
        self.say(t("sign.signing", done=0, total=len(lot_ids)))
        pin, self.pin = self.pin, None  # the backend overwrites it after its one login

        def progress(event: BatchEvent) -> None:
            self.app.call_from_thread(self._progress, event)

        try:
            result = await in_thread(
                self, lambda: self.backend.sign(pin, profile, lot_ids, progress, self._cancel)
            )
        finally:
            if pin is not None:
                pin[:] = bytes(len(pin))
        self.outcome = result
        lines = [t("sign.signed", n=len(result.signed))]
        if result.not_signed:
            lines.append(t("sign.not_signed", n=len(result.not_signed)))
        if result.stopped_fr:
            lines.append(t("sign.stopped", why=pick(result.stopped_fr, result.stopped_en)))
        if result.signed:
            self._set_phase("sending")
            self.say(*lines, t("sign.sending", name=profile))
            report = await in_thread(
                self, lambda: self.backend.send_now(profile, lambda _step: None)
            )
            self.sending = report
            if report.sent:
                lines.append(t("sign.sent", n=report.sent))
            if report.waiting:
                why = pick(report.error_fr or "", report.error_en)
                lines.append(t("sign.waiting", n=report.waiting, why=why))
        bar.display = False
        self._set_phase("done")
        self.query_one("#step", Static).update(t("sign.summary"))
        self.say(*lines, "", t("sign.remove_card"))
        if not self.kiosk.card.present:
            self.say(*self._lines, t("sign.enter_done"))

    def _progress(self, event: BatchEvent) -> None:
        if event.kind in ("signed", "started"):
            self.query_one(ProgressBar).update(progress=event.done)
            self.say(t("sign.signing", done=event.done, total=event.total))


__all__ = ["SendStep", "SignScreen"]
