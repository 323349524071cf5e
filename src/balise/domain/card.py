"""The card as the core sees it: identity from the signature certificate, PIN state, card errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from balise.domain.codes import CardCode
from balise.domain.errors import BaliseError


@dataclass(frozen=True, slots=True)
class CardIdentity:
    """Who holds the card, read WITHOUT PIN from the signature certificate (chosen by key usage
    nonRepudiation and the matching CKA_ID, never by index)."""

    holder_name: str
    rpps: str
    signature_cert_der: bytes
    extra_certs_der: tuple[bytes, ...]  # intermediate CA(s) found on the card
    not_before: datetime
    not_after: datetime
    key_id: bytes
    always_authenticate: bool = False
    token_label: str = ""
    token_serial: str = ""


@dataclass(frozen=True, slots=True)
class CardProof:
    """A challenge signed by the card's AUTHENTICATION key (never the signature key) after the
    PIN, with that key's certificate: the box verifies both before trusting who holds the card."""

    auth_cert_der: bytes
    challenge: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class PinState:
    """Read fresh before every prompt (PROFILE.md §5 mapping from the token flags)."""

    tries_left: int  # 3, 2, 1 (final try) or 0 (locked)
    protected_path: bool  # the reader has its own keypad: the PIN is typed there

    @property
    def locked(self) -> bool:
        return self.tries_left == 0

    @property
    def final_try(self) -> bool:
        return self.tries_left == 1


def tries_from_flags(*, count_low: bool, final_try: bool, locked: bool) -> int:
    """PROFILE.md §5: no flag → 3; COUNT_LOW → 2; FINAL_TRY → 1; LOCKED → 0."""
    if locked:
        return 0
    if final_try:
        return 1
    if count_low:
        return 2
    return 3


class CardError(BaliseError):
    code: StrEnum = CardCode.CARD


class WrongPin(CardError):
    code = CardCode.PIN_WRONG

    def __init__(self, tries_left: int) -> None:
        self.tries_left = tries_left
        if tries_left <= 0:
            fr, en = (
                "Code faux. La carte est maintenant bloquée.",
                "Wrong PIN. The card is now locked.",
            )
        elif tries_left == 1:
            fr = "Code faux. Dernier essai : un nouveau code faux bloquera la carte."
            en = "Wrong PIN. Final try: one more wrong PIN locks the card."
        else:
            fr = f"Code faux. Il reste {tries_left} essais."
            en = f"Wrong PIN. {tries_left} tries left."
        super().__init__(fr, en)


class PinLocked(CardError):
    code = CardCode.PIN_LOCKED

    def __init__(self) -> None:
        super().__init__(
            "Carte bloquée : aucun essai n'est fait. Le déblocage demande le code PUK de la carte, "
            "hors de ce boîtier.",
            "Card locked: no attempt is made. Unblocking needs the card's PUK, outside this box.",
        )


class CardRemoved(CardError):
    code = CardCode.CARD_REMOVED

    def __init__(self) -> None:
        super().__init__(
            "La carte a été retirée ou le lecteur débranché.",
            "The card was removed or the reader unplugged.",
        )


class CardNotSupported(CardError):
    code = CardCode.CARD_NOT_SUPPORTED
