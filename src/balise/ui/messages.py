"""Messages the device watchers feed the kiosk; bursts collapse into the latest state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from balise.domain.devices import CardEvent
    from balise.ui.deferred import CardStatus


class ReadersChanged(Message):
    """The readers present now (a udev burst keeps only its last state)."""

    def __init__(self, readers: tuple[str, ...]) -> None:
        super().__init__()
        self.readers = readers

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ReadersChanged)


class CardChanged(Message):
    """A card went in or out; ``status`` is the card as it is now."""

    def __init__(self, event: CardEvent, status: CardStatus) -> None:
        super().__init__()
        self.event = event
        self.status = status


class DevicesChanged(Message, bubble=False):
    """Sent by the app to the active screen after a reader or card change."""

    def __init__(self, *, card_removed: bool = False, reader_removed: bool = False) -> None:
        super().__init__()
        self.card_removed = card_removed
        self.reader_removed = reader_removed
