"""First-start wizard, keyboard only: insert the CPS → who (read from the card) → PIN → the card
proves itself → BAL address and password, SMTP and POP3 servers, TLS modes → connection test →
emitter number → organisms → summary → saved, journaled, first backup passphrase shown once.

Nothing is saved before the summary is confirmed; a card pulled at any step before that forgets
everything typed and starts again from the card."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Footer, Header, Input, Static

from balise.domain.errors import BaliseError
from balise.domain.params import SCHEMA, Scope
from balise.ui.backend import CardCheck, MailTest, ParamScope
from balise.ui.i18n import language, pick, t
from balise.ui.messages import DevicesChanged
from balise.ui.screens.base import KioskScreen
from balise.ui.screens.dialogs import PinDialog
from balise.ui.widgets.plain import Plain

if TYPE_CHECKING:
    from balise.services.setup import OrganismPlan

Step = Literal["card", "mail", "test", "emitter", "organisms", "summary", "done"]
ORDER: tuple[Step, ...] = ("card", "mail", "test", "emitter", "organisms", "summary", "done")


@dataclass(frozen=True, slots=True)
class Field:
    name: str  # the parameter's name (or "bal_password", "ident", "pem_path")
    label_key: str
    default: str = ""
    password: bool = False


def _default(name: str) -> str:
    """A mail parameter's default, as typed: the schema's (the one place defaults are given)."""
    return str(SCHEMA[(Scope.PROFILE, name)].default)


MAIL_FIELDS = (
    Field("bal_address", "setup.f.bal_address"),
    Field("bal_password", "setup.f.bal_password", password=True),
    Field("smtp.host", "setup.f.smtp_host"),
    Field("smtp.port", "setup.f.smtp_port", _default("smtp.port")),
    Field("smtp.tls", "setup.f.smtp_tls", _default("smtp.tls")),
    Field("pop3.host", "setup.f.pop3_host"),
    Field("pop3.port", "setup.f.pop3_port", _default("pop3.port")),
    Field("pop3.tls", "setup.f.pop3_tls", _default("pop3.tls")),
)
EMITTER_FIELDS = (Field("emitter_number", "setup.f.emitter"),)
ORGANISM_FIELDS = (
    Field("ident", "setup.f.org_ident"),
    Field("type", "setup.f.org_type", "CP"),
    Field("regime", "setup.f.org_regime"),
    Field("caisse", "setup.f.org_caisse"),
    Field("centre", "setup.f.org_centre"),
    Field("address", "setup.f.org_address"),
    Field("pem_path", "setup.f.org_pem"),
)


class SetupScreen(KioskScreen):
    CSS_PATH = "../styles/technician.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "go_on", "key.continue", id="setup-continue"),
        Binding("escape", "back", "key.back", id="setup-back"),
        Binding("c", "demo_card", "key.card_demo", id="setup-demo-card"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.step: Step = "card"
        self.values: dict[str, str] = {}
        self.card: CardCheck | None = None
        self.proven = ("", "")
        self.test: MailTest | None = None
        self.organisms: list[str] | None = None  # configured already (None: not read yet)
        self.passphrase = ""
        self.busy = False
        self._lines: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="technician"):
            yield Plain(t("setup.title"), id="setup-step", classes="title")
            with VerticalScroll(id="tech-scroll"):
                yield Plain("", id="setup-body")
                yield Vertical(id="setup-fields")
            yield Plain("", id="setup-error", classes="attention")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = t("setup.title")
        self._show("card")

    # -- what the screen says ------------------------------------------------------------

    @property
    def body_text(self) -> str:
        return "\n".join(self._lines)

    @property
    def error_text(self) -> str:
        return str(self.query_one("#setup-error", Static).render())

    def say(self, *lines: str) -> None:
        self._lines = list(lines)
        self.query_one("#setup-body", Static).update("\n".join(lines))

    def error(self, words: str) -> None:
        self.query_one("#setup-error", Static).update(words)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "demo_card":
            return self.kiosk.demo is not None and self.step == "card"
        if self.busy:
            return None
        if action == "go_on":
            if self.step == "card":
                return self.card is not None and self.card.ok
            if self.step == "test":
                return self.test is not None and self.test.ok
            return self.step in ("summary", "done") or (
                self.step == "organisms" and bool(self.organisms)
            )
        if action == "back":
            return self.step != "done"
        return True

    def _busy(self, busy: bool) -> None:
        self.busy = busy
        self.refresh_bindings()

    # -- the steps ---------------------------------------------------------------------------

    def _show(self, step: Step) -> None:
        self.step = step
        self.error("")
        self._fields(())
        self.query_one("#setup-step", Static).update(t(f"setup.step.{step}"))
        if step == "card":
            self.card = None
            if self.kiosk.card.present:
                self.say(t("setup.card.reading"))
                self.read_card()
            else:
                self.say(t("setup.card.insert"))
        elif step == "mail":
            self.say(self.proven[0] if language() == "fr" else self.proven[1], t("setup.mail"))
            self._fields(MAIL_FIELDS)
        elif step == "test":
            self.test = None
            self.say(t("setup.test.running"))
            self.run_test()
        elif step == "emitter":
            self.say(t("setup.emitter"))
            self._fields(EMITTER_FIELDS)
        elif step == "organisms":
            self.say(t("setup.organisms.reading"))
            self.read_organisms()
        elif step == "summary":
            self.say(*self._summary())
        elif step == "done":
            self.say(*self._done_lines())
        self.refresh_bindings()

    def _fields(self, fields: tuple[Field, ...]) -> None:
        box = self.query_one("#setup-fields", Vertical)
        box.remove_children()
        widgets: list[Widget] = []
        for f in fields:
            widgets.append(Plain(t(f.label_key)))
            widgets.append(
                Input(
                    value=self.values.get(f.name, f.default),
                    password=f.password,
                    max_length=512,
                    id=f"f-{f.name.replace('.', '-')}",
                    name=f.name,
                    select_on_focus=False,
                )
            )
        if widgets:
            box.mount_all(widgets)
            first = widgets[1]
            self.call_after_refresh(first.focus)

    def _inputs(self) -> list[Input]:
        return list(self.query_one("#setup-fields", Vertical).query(Input))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        inputs = self._inputs()
        for field in inputs:
            self.values[field.name or ""] = field.value
        index = inputs.index(event.input)
        if index + 1 < len(inputs):
            inputs[index + 1].focus()
            return
        self.check_form(self.step, dict(self.values))

    @work(thread=True, exclusive=True, exit_on_error=False, group="setup")
    def check_form(self, step: Step, values: dict[str, str]) -> None:
        scope: ParamScope = "organism" if step == "organisms" else "profile"
        names = {
            "mail": [f.name for f in MAIL_FIELDS if f.name != "bal_password"],
            "emitter": ["emitter_number"],
            "organisms": ["type", "regime", "caisse", "centre", "address"],
        }[step]
        typed = {n: values.get(n, "") for n in names}
        if step == "mail":
            typed["smtp.password"] = values.get("bal_password", "")
        try:
            self.backend.check_values(scope, typed)
        except BaliseError as exc:
            self.app.call_from_thread(self.error, exc.message(language()))
            return
        following = ORDER[ORDER.index(step) + 1]
        self.app.call_from_thread(self._show, following)

    # card, PIN, proof

    def on_devices_changed(self, message: DevicesChanged) -> None:
        if self.step == "done":
            return
        if message.card_removed:
            self.forget()
            self._show("card")
            self.error(t("setup.card.pulled"))
        elif self.step == "card" and self.card is None and self.kiosk.card.present:
            self.say(t("setup.card.reading"))
            self.read_card()

    def forget(self) -> None:
        """Everything typed, forgotten (a card pulled, the idle timeout)."""
        for field in self.query(Input):
            field.value = ""
        self.values.clear()
        self.proven = ("", "")
        self.test = None
        self.organisms = None
        if isinstance(self.app.screen, PinDialog):
            self.app.screen.action_give_up()

    @work(thread=True, exclusive=True, exit_on_error=False, group="setup-card")
    def read_card(self) -> None:
        try:
            card = self.backend.card_check()
        except BaliseError as exc:
            self.app.call_from_thread(self.say, t("setup.card.unreadable", why=exc.fr))
            return
        self.app.call_from_thread(self._card, card)

    def _card(self, card: CardCheck) -> None:
        if self.step != "card":
            return
        self.card = card
        who = t("setup.card.who", name=card.name, rpps=card.rpps)
        if card.ok:
            self.say(who, pick(card.fr, card.en), "", t("setup.card.go"))
        else:
            self.say(who, t("setup.card.refused", why=pick(card.fr, card.en)))
        self.refresh_bindings()

    def _ask_pin(self) -> None:
        assert self.card is not None

        def entered(pin: bytearray | None) -> None:
            if pin is not None:
                self._busy(True)
                self.say(t("setup.card.proving"))
                self.prove(pin)

        self.app.push_screen(PinDialog(self.card.tries_left), entered)

    @work(thread=True, exclusive=True, exit_on_error=False, group="setup-card")
    def prove(self, pin: bytearray) -> None:
        try:
            words = self.backend.prove_card(pin, "mise en service")
        except BaliseError as exc:
            self.app.call_from_thread(self._proof_failed, exc.message(language()))
            return
        finally:
            pin[:] = bytes(len(pin))
        self.app.call_from_thread(self._proof_ok, words)

    def _proof_failed(self, words: str) -> None:
        self._busy(False)
        self._show("card")
        self.error(words)

    def _proof_ok(self, words: tuple[str, str]) -> None:
        self._busy(False)
        self.proven = words
        self._show("mail")

    # connection test

    def _mail(self) -> dict[str, str]:
        v = self.values
        bal = v.get("bal_address", "")
        return {
            "bal_address": bal,
            "smtp.host": v.get("smtp.host", ""),
            "smtp.port": v.get("smtp.port", _default("smtp.port")),
            "smtp.tls": v.get("smtp.tls", _default("smtp.tls")),
            "smtp.user": bal,
            "smtp.password": v.get("bal_password", ""),
            "pop3.host": v.get("pop3.host", ""),
            "pop3.port": v.get("pop3.port", _default("pop3.port")),
            "pop3.tls": v.get("pop3.tls", _default("pop3.tls")),
            "pop3.user": bal,
            "pop3.password": v.get("bal_password", ""),
        }

    @work(thread=True, exclusive=True, exit_on_error=False, group="setup")
    def run_test(self) -> None:
        self.app.call_from_thread(self._busy, True)
        try:
            result = self.backend.test_mail(self._mail())
        except BaliseError as exc:
            result = MailTest(False, (exc.fr,), (exc.en,))
        self.app.call_from_thread(self._tested, result)

    def _tested(self, result: MailTest) -> None:
        self._busy(False)
        if self.step != "test":
            return
        self.test = result
        lines = list(result.lines_en if language() == "en" else result.lines_fr)
        self.say(*lines, "", t("setup.test.ok" if result.ok else "setup.test.failed"))
        self.refresh_bindings()

    # organisms

    @work(thread=True, exclusive=True, exit_on_error=False, group="setup")
    def read_organisms(self) -> None:
        found = self.backend.organism_ids()
        self.app.call_from_thread(self._organisms, found)

    def _organisms(self, found: list[str]) -> None:
        self.organisms = found
        if found:
            self.say(t("setup.organisms.known", ids=", ".join(found)))
        else:
            self.say(t("setup.organisms.usb"))
            self._fields(ORGANISM_FIELDS)
        self.refresh_bindings()

    # summary and saving

    def _plan_organisms(self) -> tuple[OrganismPlan, ...]:
        from balise.services.setup import OrganismPlan

        v = self.values
        if self.organisms or not v.get("ident"):
            return ()
        return (
            OrganismPlan(
                v["ident"],
                v.get("type", "CP"),
                v.get("regime", ""),
                v.get("caisse", ""),
                v.get("centre", ""),
                v.get("address", ""),
                v.get("pem_path", ""),
            ),
        )

    def _summary(self) -> list[str]:
        card = self.card
        mail = self._mail()
        orgs = [f"{o.ident} ({o.regime} {o.caisse} {o.centre})" for o in self._plan_organisms()]
        return [
            t("setup.sum.who", name=card.name if card else "?", rpps=card.rpps if card else "?"),
            t("setup.sum.bal", bal=mail["bal_address"]),
            t("setup.sum.smtp", host=mail["smtp.host"], port=mail["smtp.port"],
              tls=mail["smtp.tls"]),
            t("setup.sum.pop3", host=mail["pop3.host"], port=mail["pop3.port"],
              tls=mail["pop3.tls"]),
            t("setup.sum.emitter", emitter=self.values.get("emitter_number", "")),
            t("setup.sum.organisms", ids=", ".join(orgs or self.organisms or [])),
            "",
            t("setup.sum.go"),
        ]  # fmt: skip

    @work(thread=True, exclusive=True, exit_on_error=False, group="setup")
    def save(self) -> None:
        from balise.services.setup import SetupPlan

        mail = self._mail()
        plan = SetupPlan(
            bal_address=mail["bal_address"],
            bal_password=mail["smtp.password"],
            smtp_host=mail["smtp.host"],
            smtp_port=mail["smtp.port"],
            smtp_tls=mail["smtp.tls"],
            pop3_host=mail["pop3.host"],
            pop3_port=mail["pop3.port"],
            pop3_tls=mail["pop3.tls"],
            emitter_number=self.values.get("emitter_number", ""),
            organisms=self._plan_organisms(),
        )
        try:
            passphrase = self.backend.complete_setup(plan)
        except BaliseError as exc:
            self.app.call_from_thread(self._save_failed, exc.message(language()))
            return
        self.app.call_from_thread(self._saved, passphrase)

    def _save_failed(self, words: str) -> None:
        self._busy(False)
        self.say(*self._summary())  # Entrée tries again, Échap goes back to correct
        self.error(t("setup.save.failed", why=words))

    def _saved(self, passphrase: str) -> None:
        self._busy(False)
        self.values.clear()  # saved: nothing typed stays in the screen
        self.passphrase = passphrase
        self._show("done")

    def _done_lines(self) -> list[str]:
        lines = [t("setup.done")]
        if self.passphrase:
            lines += ["", t("setup.done.passphrase"), "", f"    {self.passphrase}", ""]
            lines += [t("setup.done.paper")]
        return [*lines, "", t("setup.done.go")]

    # -- keys ------------------------------------------------------------------------------

    def action_go_on(self) -> None:
        if self.step == "card" and self.card is not None and self.card.ok:
            self._ask_pin()
        elif self.step == "test" and self.test is not None and self.test.ok:
            self._show("emitter")
        elif self.step == "organisms" and self.organisms:
            self._show("summary")
        elif self.step == "summary":
            self._busy(True)
            self.say(*self._lines[:-1], t("setup.saving"))
            self.save()
        elif self.step == "done":
            self.passphrase = ""  # shown once
            self.dismiss(None)

    @work(thread=True, exclusive=True, exit_on_error=False, group="demo")
    def action_demo_card(self) -> None:
        demo = self.kiosk.demo
        if demo is not None:
            words = demo.toggle_card()
            self.app.call_from_thread(self.notify, words, timeout=3)

    def action_back(self) -> None:
        if self.step == "done":
            return
        if self.step == "card":  # back to Accueil (I opens the wizard again; T: technician)
            self.forget()
            self.dismiss(None)
            return
        previous = ORDER[ORDER.index(self.step) - 1]
        if previous == "card":
            self.forget()
        self._show("mail" if previous == "test" else previous)
