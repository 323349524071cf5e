"""Self-service with the card: a practitioner whose CPS proved who holds it (PIN, challenge
signed by its authentication key) sees their own parameters, changes their BAL password (tested
on both servers before it is saved) and adds or removes a locum. Only the profile whose titular
the card is; the card pulled ends it."""

from __future__ import annotations

from typing import ClassVar, Literal

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Footer, Header, Input, Static

from balise.domain.errors import BaliseError
from balise.ui.backend import CardCheck, MailTest, ParamLine
from balise.ui.i18n import language, pick, t
from balise.ui.messages import DevicesChanged
from balise.ui.screens.base import KioskDialog, KioskScreen
from balise.ui.screens.dialogs import ChoiceDialog, PinDialog
from balise.ui.widgets.plain import Plain

Phase = Literal["card", "mine"]


class ProfileScreen(KioskScreen):
    CSS_PATH = "../styles/technician.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "go_on", "key.continue", id="profile-continue"),
        Binding("m", "password", "key.bal_password", id="profile-password"),
        Binding("a", "add_locum", "key.add_locum", id="profile-add-locum"),
        Binding("r", "remove_locum", "key.remove_locum", id="profile-remove-locum"),
        Binding("escape", "leave", "key.back", id="profile-back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.phase: Phase = "card"
        self.card: CardCheck | None = None
        self.locums: list[tuple[str, str]] = []
        self._lines: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="technician"):
            with VerticalScroll(id="tech-scroll"):
                yield Plain(t("profile.reading"), id="profile-body")
            yield Plain("", id="profile-message", classes="attention")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = t("profile.title")
        self.read_card()

    @property
    def body_text(self) -> str:
        return "\n".join(self._lines)

    @property
    def message_text(self) -> str:
        return str(self.query_one("#profile-message", Static).render())

    def say(self, *lines: str) -> None:
        self._lines = list(lines)
        self.query_one("#profile-body", Static).update("\n".join(lines))

    def tell(self, words: str) -> None:
        self.query_one("#profile-message", Static).update(words)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "go_on":
            return self.phase == "card" and self.card is not None and self.card.ok
        if action in ("password", "add_locum", "remove_locum"):
            return self.phase == "mine"
        return True

    def on_devices_changed(self, message: DevicesChanged) -> None:
        if message.card_removed:
            self.action_leave()

    @work(thread=True, exclusive=True, exit_on_error=False, group="profile")
    def read_card(self) -> None:
        try:
            card = self.backend.card_check()
        except BaliseError as exc:
            self.app.call_from_thread(self.say, exc.message(language()))
            return
        self.app.call_from_thread(self._card, card)

    def _card(self, card: CardCheck) -> None:
        self.card = card
        who = t("setup.card.who", name=card.name, rpps=card.rpps)
        if card.ok:
            self.say(who, pick(card.fr, card.en), "", t("setup.card.go"))
        else:
            self.say(who, t("setup.card.refused", why=pick(card.fr, card.en)))
        self.refresh_bindings()

    def action_go_on(self) -> None:
        if self.card is None or not self.card.ok:
            return

        def entered(pin: bytearray | None) -> None:
            if pin is not None:
                self.say(t("setup.card.proving"))
                self.prove(pin)

        self.app.push_screen(PinDialog(self.card.tries_left), entered)

    @work(thread=True, exclusive=True, exit_on_error=False, group="profile")
    def prove(self, pin: bytearray) -> None:
        try:
            self.backend.prove_card(pin, "libre-service")
            profile, lines = self.backend.my_parameters()
            locums = self.backend.locums()
        except BaliseError as exc:
            self.app.call_from_thread(self._refused, exc.message(language()))
            return
        finally:
            pin[:] = bytes(len(pin))
        self.app.call_from_thread(self._mine, profile, lines, locums)

    def _refused(self, words: str) -> None:
        self.phase = "card"
        self.say(words)
        self.card = None
        self.refresh_bindings()

    @work(thread=True, exclusive=True, exit_on_error=False, group="profile")
    def reload(self) -> None:
        try:
            profile, lines = self.backend.my_parameters()
            locums = self.backend.locums()
        except BaliseError as exc:
            self.app.call_from_thread(self.tell, exc.message(language()))
            return
        self.app.call_from_thread(self._mine, profile, lines, locums)

    def _mine(self, profile: str, lines: list[ParamLine], locums: list[tuple[str, str]]) -> None:
        self.phase = "mine"
        self.locums = locums
        english = language() == "en"
        shown = [t("profile.mine", profile=profile)]
        shown += [f"  {x.label_en if english else x.label_fr} : {x.shown}" for x in lines]
        shown += ["", t("profile.locums")]
        shown += [f"  {holder}" for _, holder in locums] or [t("profile.no_locum")]
        shown += ["", t("profile.help")]
        self.say(*shown)
        self.refresh_bindings()

    def action_password(self) -> None:
        def typed(password: str | None) -> None:
            if password:
                self.tell(t("profile.testing"))
                self.change_password(password)

        self.app.push_screen(TextDialog(t("profile.password.ask"), secret=True), typed)

    @work(thread=True, exclusive=True, exit_on_error=False, group="profile-change")
    def change_password(self, password: str) -> None:
        try:
            result = self.backend.change_bal_password(password)
        except BaliseError as exc:
            result = MailTest(False, (exc.fr,), (exc.en,))
        lines = result.lines_en if language() == "en" else result.lines_fr
        key = "profile.password.saved" if result.ok else "profile.password.refused"
        self.app.call_from_thread(self.tell, t(key, words=" ; ".join(lines)))
        self.app.call_from_thread(self.reload)

    def action_add_locum(self) -> None:
        def typed(path: str | None) -> None:
            if path:
                self.locum_change("add", path)

        self.app.push_screen(TextDialog(t("profile.locum.ask")), typed)

    def action_remove_locum(self) -> None:
        if not self.locums:
            self.tell(t("profile.no_locum"))
            return

        def chosen(fingerprint: str | None) -> None:
            if fingerprint:
                self.locum_change("remove", fingerprint)

        self.app.push_screen(
            ChoiceDialog(t("profile.locum.remove"), [(f, h) for f, h in self.locums]), chosen
        )

    @work(thread=True, exclusive=True, exit_on_error=False, group="profile-change")
    def locum_change(self, what: Literal["add", "remove"], value: str) -> None:
        try:
            if what == "add":
                self.backend.add_locum(value)
            else:
                self.backend.remove_locum(value)
            words = t("profile.locum.added" if what == "add" else "profile.locum.removed")
        except BaliseError as exc:
            words = t("edit.refused", why=exc.message(language()))
        self.app.call_from_thread(self.tell, words)
        self.app.call_from_thread(self.reload)

    def action_leave(self) -> None:
        self.forget()
        if self.app.screen is not self and isinstance(self.app.screen, KioskDialog):
            self.app.pop_screen()
        self.dismiss(None)


class TextDialog(KioskDialog[str | None]):
    """One line typed (masked when secret; cleared as soon as it is read)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "give_up", "key.cancel", id="text-cancel"),
    ]

    def __init__(self, question: str, *, secret: bool = False) -> None:
        super().__init__()
        self.question = question
        self.secret = secret

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Plain(self.question, classes="title")
            yield Input(password=self.secret, max_length=512, id="text")
            yield Plain(t("edit.help"), classes="help")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#text", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value
        event.input.value = ""
        self.dismiss(value or None)

    def action_give_up(self) -> None:
        self.forget()
        self.dismiss(None)
