"""Canal de la carte: the card-authenticated channel to online services (issue 20) — open or
closed, for which practitioner, since when, how many requests relayed; F closes it (the card
logs out at once), Escape goes back. Read again every second while shown. Opened from Accueil (E),
once the PIN was typed: the relay starting is said, then its state, or its refusal in words."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Footer, Header

from balise.ui.i18n import moment, number, t
from balise.ui.screens.base import KioskScreen
from balise.ui.widgets.plain import Plain

if TYPE_CHECKING:
    from balise.services.relay import ChannelState

__all__ = ["ChannelScreen", "channel_line"]


def channel_line(state: ChannelState | None) -> str:
    """The one sentence the kiosk shows about the channel (plain text, never markup)."""
    if state is None:
        return t("channel.never")
    if state.open and state.since is not None:
        return t(
            "channel.open",
            who=state.practitioner,
            since=moment(state.since),
            requests=number(state.requests),
        )
    why = t(f"channel.why.{state.closed_because or 'stopped'}")
    return t("channel.closed", why=why)


class ChannelScreen(KioskScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "close_channel", "key.close_channel", id="channel-close"),
        Binding("escape", "back", "key.back", id="channel-back"),
    ]

    def __init__(
        self,
        state: Callable[[], ChannelState | None],
        close: Callable[[], None],
        opening: Callable[[], str | None] | None = None,
    ) -> None:
        """``opening``, when given, starts the relay (blocking, run in a thread): None once the
        channel is open, else the relay's refusal in words (plain text)."""
        super().__init__()
        self._state = state
        self._close = close
        self._opening = opening
        self.refused: str | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="channel-screen"):
            yield Plain("", id="channel-state")
            yield Plain("", id="channel-note", classes="attention")
            yield Plain(t("channel.help"), id="channel-help")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = t("channel.title")
        if self._opening is not None:
            self.query_one("#channel-state", Plain).update(t("channel.opening"))
            self.open_channel(self._opening)
        else:
            self.refresh_state()
        self.set_interval(1.0, self.refresh_state)

    @work(thread=True, exclusive=True, exit_on_error=False, group="channel")
    def open_channel(self, opening: Callable[[], str | None]) -> None:
        words = opening()
        self.app.call_from_thread(self._opened, words)

    def _opened(self, words: str | None) -> None:
        self._opening = None
        self.refused = words
        if words is not None:
            self.query_one("#channel-note", Plain).update(t("channel.refused", why=words))
        self.refresh_state()

    def refresh_state(self) -> None:
        if self._opening is None:
            self.query_one("#channel-state", Plain).update(channel_line(self._state()))

    def action_close_channel(self) -> None:
        self._close()
        self.refresh_state()

    def action_back(self) -> None:
        self.app.pop_screen()
