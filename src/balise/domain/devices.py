"""Reader and card events as the core sees them: USB readers coming and going, cards in and out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from balise.domain.atr import CardKind


@dataclass(frozen=True, slots=True)
class UsbReader:
    """A USB smart-card reader (CCID interface) present on the box."""

    reader_id: str  # the USB device's sysfs path (e.g. /devices/pci0000:00/.../1-1): unique
    name: str  # manufacturer and product, for people


@dataclass(frozen=True, slots=True)
class ReaderEvent:
    """One reader plugged in or pulled out; ``readers`` is every reader present afterwards.

    A burst of uevents is coalesced: consumers may keep only the last event's ``readers``.
    """

    action: Literal["added", "removed"]
    reader_id: str
    name: str
    readers: tuple[UsbReader, ...] = ()


@dataclass(frozen=True, slots=True)
class CardEvent:
    """A card inserted in (or removed from) the PC/SC reader named ``reader``.

    ``atr`` is None when the card does not answer (mute, or inserted the wrong way round); a
    removal carries the ATR and kind of the card that left, when they were known.
    """

    action: Literal["inserted", "removed"]
    reader: str
    atr: bytes | None
    kind: CardKind | None
