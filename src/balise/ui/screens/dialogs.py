"""Typed dialogs of the guided flows: each one asks one thing and dismisses with the answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Footer, Input, OptionList, SelectionList, Static
from textual.widgets.option_list import Option
from textual.widgets.selection_list import Selection

from balise.domain.lotrecord import LotRecord
from balise.ui.i18n import euros, lot_date, t
from balise.ui.screens.base import KioskDialog
from balise.ui.widgets.plain import Plain, option_text


class ConfirmDialog(KioskDialog[bool]):
    """A question answered by Entrée (yes) or Échap (no)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "answer(True)", "key.confirm", priority=True, id="confirm-yes"),
        Binding("escape", "answer(False)", "key.cancel", id="confirm-no"),
    ]

    def __init__(self, question: str, help_key: str = "tech.confirm.help") -> None:
        super().__init__()
        self.question = question
        self.help_key = help_key

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Plain(self.question, id="question")
            yield Plain(t(self.help_key), classes="help")
        yield Footer()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PinDialog(KioskDialog[bytearray | None]):
    """The card PIN: masked, digits only, 4 to 8; the field is cleared as soon as it is read."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "give_up", "key.cancel", id="pin-cancel"),
    ]

    def __init__(self, tries_left: int) -> None:
        super().__init__()
        self.tries_left = tries_left

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="pin-dialog"):
            yield Plain(t("sign.pin.title"), classes="title")
            tries = Plain(t("sign.tries", n=self.tries_left), id="tries")
            tries.set_class(self.tries_left == 1, "attention")
            yield tries
            if self.tries_left == 1:
                yield Plain(t("sign.final_try"), id="final", classes="attention")
            yield Input(
                password=True, restrict=r"[0-9]*", max_length=8, id="pin", select_on_focus=False
            )
            yield Plain(t("sign.pin.help"), classes="help")
            yield Plain("", id="pin-error", classes="attention")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#pin", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        field = event.input
        buffer = bytearray(field.value.encode("ascii", errors="replace"))
        field.value = ""  # nothing typed stays on screen or in the widget
        if not buffer.isdigit() or not 4 <= len(buffer) <= 8:
            buffer[:] = bytes(len(buffer))
            self.query_one("#pin-error", Static).update(t("sign.pin.format"))
            return
        self.dismiss(buffer)

    def action_give_up(self) -> None:
        self.forget()
        self.dismiss(None)


class LotChoiceDialog(KioskDialog[list[int] | None]):
    """This practitioner's ready lots, all ticked; Espace unticks, Entrée goes on."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_lot", "key.toggle", id="lots-toggle"),
        Binding("enter", "done", "key.continue", priority=True, id="lots-continue"),
        Binding("escape", "give_up", "key.cancel", id="lots-cancel"),
    ]

    def __init__(self, name: str, lots: Sequence[LotRecord]) -> None:
        super().__init__()
        self.name_words = name
        self.lots = list(lots)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Plain(t("sign.lots.title", name=self.name_words), classes="title")
            yield SelectionList[int](
                *(
                    Selection(
                        option_text(
                            t(
                                "sign.lot_line",
                                number=lot.lot_number,
                                date=lot_date(lot.lot_date),
                                invoices=lot.invoices,
                                total=euros(lot.total),
                                organism=lot.organism,
                            )
                        ),
                        lot.id,
                        True,
                    )
                    for lot in self.lots
                ),
                id="choice",
            )
            yield Plain(t("sign.lots.help"), classes="help")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(SelectionList).focus()

    def action_toggle_lot(self) -> None:
        choice = self.query_one("#choice", SelectionList)
        if choice.highlighted is not None:
            choice.toggle(choice.get_option_at_index(choice.highlighted).value)

    def action_done(self) -> None:
        chosen = list(self.query_one("#choice", SelectionList).selected)
        self.dismiss([lot.id for lot in self.lots if lot.id in chosen] or None)

    def action_give_up(self) -> None:
        self.dismiss(None)


class ChoiceDialog(KioskDialog[str | None]):
    """One among a few (e.g. which practitioner to sign for)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "done", "key.continue", priority=True, id="choice-continue"),
        Binding("escape", "give_up", "key.cancel", id="choice-cancel"),
    ]

    def __init__(self, question: str, choices: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self.question = question
        self.choices = list(choices)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Plain(self.question, classes="title")
            yield OptionList(*(Option(option_text(words), ident) for ident, words in self.choices))
        yield Footer()

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.highlighted = 0
        options.focus()

    def action_done(self) -> None:
        options = self.query_one(OptionList)
        index = options.highlighted
        self.dismiss(None if index is None else self.choices[index][0])

    def action_give_up(self) -> None:
        self.dismiss(None)
