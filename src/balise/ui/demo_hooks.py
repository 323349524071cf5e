"""What `balise demo` adds to the kiosk: a key that inserts or removes the virtual demo card."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DemoHooks:
    toggle_card: Callable[[], str]  # inserts/removes the virtual card; returns words to show
    help_fr: str  # one line shown on Accueil, e.g. "Démo : touche C pour insérer/retirer la carte"
    help_en: str = ""
