"""Technician mode, parameters edited on the kiosk: a scope (the box, a practitioner, an organism,
or a new one), then any parameter of it, typed and saved through the same service as `balise
params set` (schema validation, mailbox hygiene, journal entry "by technicien"). A secret is
never shown back; a certificate is read from a PEM file (a USB key)."""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Footer, Header, Input, OptionList, Static
from textual.widgets.option_list import Option

from balise.domain.errors import BaliseError
from balise.ui.backend import ParamField, ParamScope
from balise.ui.i18n import language, pick, t
from balise.ui.screens.base import KioskDialog, KioskScreen
from balise.ui.widgets.plain import Plain, option_text

NEW_PROFILE = "new-profile"
NEW_ORGANISM = "new-organism"


class ParamEditScreen(KioskScreen):
    """Two levels: the scopes, then the parameters of the scope chosen (Échap goes back up)."""

    CSS_PATH = "../styles/technician.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "key.back", id="edit-back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.scope: tuple[ParamScope, str] | None = None  # None: choosing the scope
        self._scopes: list[tuple[str, str]] = []  # (option id, words)
        self.fields: list[ParamField] = []

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="technician"):
            yield Plain(t("edit.scopes"), id="edit-title", classes="title")
            yield OptionList(id="edit-list")
            yield Plain(t("edit.scopes.help"), id="edit-help", classes="help")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = t("edit.title")
        self.load_scopes()

    @property
    def title_text(self) -> str:
        return str(self.query_one("#edit-title", Static).render())

    @property
    def list_text(self) -> str:
        options = self.query_one("#edit-list", OptionList)
        return "\n".join(
            str(options.get_option_at_index(i).prompt) for i in range(options.option_count)
        )

    @work(thread=True, exclusive=True, exit_on_error=False, group="edit")
    def load_scopes(self) -> None:
        profiles = self.backend.param_ids("profile")
        organisms = self.backend.param_ids("organism")
        scopes = [("global:", t("edit.scope.global"))]
        scopes += [(f"profile:{p}", t("edit.scope.profile", id=p)) for p in profiles]
        scopes += [(f"organism:{o}", t("edit.scope.organism", id=o)) for o in organisms]
        scopes += [(NEW_PROFILE, t("edit.scope.new_profile"))]
        scopes += [(NEW_ORGANISM, t("edit.scope.new_organism"))]
        self.app.call_from_thread(self._show_scopes, scopes)

    def _show_scopes(self, scopes: list[tuple[str, str]]) -> None:
        self.scope = None
        self._scopes = scopes
        self.query_one("#edit-title", Static).update(t("edit.scopes"))
        self.query_one("#edit-help", Static).update(t("edit.scopes.help"))
        self._fill([(ident, words) for ident, words in scopes])

    def _fill(self, items: list[tuple[str, str]]) -> None:
        options = self.query_one("#edit-list", OptionList)
        options.clear_options()
        options.add_options([Option(option_text(words), ident) for ident, words in items])
        options.highlighted = 0 if items else None
        options.focus()

    @work(thread=True, exclusive=True, exit_on_error=False, group="edit")
    def load_fields(self, scope: ParamScope, ident: str, keep: int = 0) -> None:
        fields = self.backend.param_fields(scope, ident)
        self.app.call_from_thread(self._show_fields, scope, ident, fields, keep)

    def _show_fields(
        self, scope: ParamScope, ident: str, fields: list[ParamField], keep: int
    ) -> None:
        self.scope = (scope, ident)
        self.fields = fields
        title = {
            "global": t("edit.scope.global"),
            "profile": t("edit.scope.profile", id=ident),
            "organism": t("edit.scope.organism", id=ident),
        }[scope]
        self.query_one("#edit-title", Static).update(title)
        self.query_one("#edit-help", Static).update(t("edit.fields.help"))
        self._fill(
            [(f.name, f"{pick(f.label_fr, f.label_en)} ({f.name}) : {f.shown}") for f in fields]
        )
        self.query_one("#edit-list", OptionList).highlighted = min(keep, len(fields) - 1)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        chosen = event.option.id or ""
        index = event.option_index
        if self.scope is None:
            if chosen in (NEW_PROFILE, NEW_ORGANISM):
                kind: ParamScope = "profile" if chosen == NEW_PROFILE else "organism"

                def named(ident: str | None) -> None:
                    if ident:
                        self.load_fields(kind, ident)

                self.app.push_screen(NewIdDialog(kind), named)
                return
            scope, _, ident = chosen.partition(":")
            self.load_fields("profile" if scope == "profile" else
                             "organism" if scope == "organism" else "global", ident)  # fmt: skip
            return
        scope_now, ident_now = self.scope
        field = next(f for f in self.fields if f.name == chosen)

        def saved(done: bool | None) -> None:
            if done:
                self.notify(t("edit.saved", name=field.name), timeout=3)
            self.load_fields(scope_now, ident_now, index)

        self.app.push_screen(ParamDialog(scope_now, ident_now, field), saved)

    def action_back(self) -> None:
        if self.scope is not None:
            self.load_scopes()
        else:
            self.dismiss(None)


class NewIdDialog(KioskDialog[str | None]):
    """The identifier of a new practitioner profile or organism (checked when first saved)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "give_up", "key.cancel", id="newid-cancel"),
    ]

    def __init__(self, kind: ParamScope) -> None:
        super().__init__()
        self.kind = kind

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Plain(t(f"edit.new.{self.kind}"), classes="title")
            yield Input(restrict=r"[a-z0-9_-]*", max_length=32, id="new-id")
            yield Plain(t("edit.new.help"), classes="help")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#new-id", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value or None)

    def action_give_up(self) -> None:
        self.dismiss(None)


class ParamDialog(KioskDialog[bool]):
    """One parameter typed and saved; a refusal is said in words and the dialog stays (what was
    typed stays too, except a secret, which is cleared as soon as it was read)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "give_up", "key.cancel", id="param-cancel"),
    ]

    def __init__(self, scope: ParamScope, ident: str, field: ParamField) -> None:
        super().__init__()
        self.scope = scope
        self.ident = ident
        self.field = field

    def compose(self) -> ComposeResult:
        f = self.field
        with Vertical(classes="dialog wide"):
            yield Plain(f"{pick(f.label_fr, f.label_en)} ({f.name})", classes="title")
            yield Plain(t("edit.current", shown=f.shown), id="param-current")
            yield Input(
                value=f.value,
                password=f.secret,
                max_length=4096 if f.certificates else 512,
                id="param-value",
                select_on_focus=False,
            )
            key = (
                "edit.help.certificates"
                if f.certificates
                else "edit.help.secret"
                if f.secret
                else "edit.help"
            )
            yield Plain(t(key), classes="help")
            yield Plain("", id="param-error", classes="attention")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#param-value", Input).focus()

    @property
    def error_text(self) -> str:
        return str(self.query_one("#param-error", Static).render())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        raw = event.value
        if self.field.secret:
            event.input.value = ""  # a secret is read once, never kept on screen
        event.input.disabled = True
        self.query_one("#param-error", Static).update(t("edit.saving"))
        self.save(raw)

    @work(thread=True, exclusive=True, exit_on_error=False, group="param-save")
    def save(self, raw: str) -> None:
        try:
            self.backend.set_parameter(self.scope, self.ident, self.field.name, raw)
        except BaliseError as exc:
            self.app.call_from_thread(self._refused, exc.message(language()))
            return
        self.app.call_from_thread(self.dismiss, True)

    def _refused(self, words: str) -> None:
        self.query_one("#param-error", Static).update(t("edit.refused", why=words))
        field = self.query_one("#param-value", Input)
        field.disabled = False
        field.focus()

    def action_give_up(self) -> None:
        self.forget()
        self.dismiss(False)
