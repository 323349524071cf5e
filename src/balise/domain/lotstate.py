"""The lot lifecycle: states and exactly the transition table of ARCHITECTURE.md (pure). The
states' words live in balise.domain.vocabulary."""

from __future__ import annotations

from enum import StrEnum

from balise.domain.codes import LotCode
from balise.domain.errors import StateError, ValidationError
from balise.domain.vocabulary import lot_state


class LotState(StrEnum):
    READY = "ready"
    SIGNED = "signed"
    SENDING = "sending"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


S = LotState
# (from, to) -> when. A file that fails validation never becomes a lot (quarantine instead).
TRANSITIONS: dict[tuple[LotState, LotState], str] = {
    (S.READY, S.SIGNED): "signé par la carte dans un lot confirmé",
    (S.SIGNED, S.SENDING): "enveloppé (compostage figé) et remis au serveur SMTP",
    (S.SENDING, S.SENT): "accepté par le serveur (250) et enregistré",
    (S.SENDING, S.SIGNED): "refusé ou hors ligne avant le 250 : nouvel essai plus tard",
    (S.SENDING, S.ACKNOWLEDGED): "ARL positif reçu alors que l'envoi n'avait pas été enregistré",
    (S.SENDING, S.REJECTED): "ARL négatif reçu alors que l'envoi n'avait pas été enregistré",
    (S.SENT, S.ACKNOWLEDGED): "ARL positif",
    (S.SENT, S.REJECTED): "ARL négatif",
    (S.SENT, S.SENDING): "renvoi explicite d'un lot en retard, mêmes octets, même Message-ID",
    (S.READY, S.CANCELLED): "retiré par le praticien ou le technicien",
    (S.SIGNED, S.CANCELLED): "retiré par le praticien ou le technicien",
}

TERMINAL = frozenset({S.ACKNOWLEDGED, S.REJECTED, S.CANCELLED})


def check_transition(current: LotState, target: LotState) -> str:
    """The reason words of an allowed transition; a StateError for anything else."""
    reason = TRANSITIONS.get((current, target))
    if reason is None:
        raise StateError(
            f"le lot ne peut pas passer de « {lot_state(current, 'fr')} » "
            f"à « {lot_state(target, 'fr')} »",
            f"the lot cannot go from '{lot_state(current, 'en')}' to '{lot_state(target, 'en')}'",
            code=LotCode.LOT_TRANSITION,
        )
    return reason


class UnknownLot(ValidationError):
    """No lot has this number (a number typed or passed by a person, or a stale screen)."""

    code = LotCode.LOT_UNKNOWN

    def __init__(self, lot_id: int) -> None:
        super().__init__(f"lot {lot_id} inconnu", f"unknown lot {lot_id}")
        self.lot_id = lot_id
