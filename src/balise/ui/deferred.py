"""What the kiosk needs of its backend before the first paint: the card's state and the backend
opened on first use. Kept apart from :mod:`balise.ui.backend` (re-exported there), whose fourteen
dataclasses and Protocol take longer to define than this whole module: the screens import that
one when they first show, after the first paint."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from balise.domain.atr import CardKind
    from balise.ui.backend import KioskBackend

__all__ = ["CardStatus", "DeferredBackend", "deferred_backend"]


@dataclass(frozen=True, slots=True)
class CardStatus:
    """The card in the reader, in words (kind from its ATR; no PIN involved)."""

    present: bool
    kind: CardKind | None = None
    can_sign: bool = False
    fr: str = "aucune carte"
    en: str = "no card"


# What opens the box, given a callback to call now and then while that takes long (a database
# copied and migrated after an update: balise.adapters.store.Store's ``busy``).
Build = Callable[[Callable[[], object]], "KioskBackend"]


class DeferredBackend:
    """A backend opened on first use: the kiosk paints its first screen at once and the box (key,
    database, services) opens in the first worker thread that needs it."""

    def __init__(self, build: Build) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._backend: KioskBackend | None = None
        self._preparing = threading.Event()

    @property
    def preparing(self) -> bool:
        """The box is still being opened and said it takes long (its database prepared after an
        update): Accueil says so instead of « Chargement… ». Never waits for the opening."""
        return self._backend is None and self._preparing.is_set()

    def _real(self) -> KioskBackend:
        with self._lock:
            if self._backend is None:
                self._backend = self._build(self._preparing.set)
            return self._backend

    def stop_watches(self) -> None:
        with self._lock:
            backend = self._backend
        if backend is not None:
            backend.stop_watches()

    def __getattr__(self, name: str) -> object:
        return getattr(self._real(), name)


def deferred_backend(build: Build) -> KioskBackend:
    return cast("KioskBackend", DeferredBackend(build))
