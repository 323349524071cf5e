"""What kind of card an ATR names (PROFILE.md §5), and whether this box can sign with it.

Pure: the table and the CPS3 mask come from the ANS CryptoLib CPS sources (``card-cps.c``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal

ModuleKind = Literal["cryptolib", "opensc", "softhsm", "configured"]
"""Which PKCS#11 module drives the card (same values as ``balise.adapters.pkcs11_modules``)."""


class CardKind(StrEnum):
    CPS3 = "cps3"
    CPS3_CONTACTLESS = "cps3-contactless"
    CPS4 = "cps4"
    UNKNOWN = "unknown"


_EXACT: Final[dict[bytes, CardKind]] = {
    bytes.fromhex("3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00 0E"): (
        CardKind.CPS3_CONTACTLESS
    ),
    bytes.fromhex("3B 9B 18 80 01 00 12 25 00 64 80 04 01 00 00 90 44"): CardKind.CPS4,
    bytes.fromhex("3B 9B 18 80 01 00 12 25 00 64 80 00 04 01 00 90 44"): CardKind.CPS4,
    bytes.fromhex("3B DC 18 FF 00 00 12 25 00 64 80 00 04 01 00 90 00"): CardKind.CPS4,
}

CPS3_ATR: Final = bytes.fromhex("3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00")
CPS3_MASK: Final = bytes.fromhex("FF 00 00 00 00 FF FF FF FF FF FF 00 00 00 FF FF FF")


def _masked(atr: bytes) -> bytes:
    return bytes(a & m for a, m in zip(atr, CPS3_MASK, strict=True))


_CPS3_MASKED: Final = _masked(CPS3_ATR)


def classify_atr(atr: bytes) -> CardKind:
    """The kind of card whose ATR is ``atr``; anything not in PROFILE.md §5 is UNKNOWN.

    Exact ATRs are tried before the CPS3 mask: the CPS4 T=0 ATR also passes the CPS3 mask
    (it differs from the CPS3 ATR only in masked-out bytes), and it is a CPS4.
    """
    atr = bytes(atr)
    exact = _EXACT.get(atr)
    if exact is not None:
        return exact
    if len(atr) == len(CPS3_MASK) and _masked(atr) == _CPS3_MASKED:
        return CardKind.CPS3
    return CardKind.UNKNOWN


def can_sign(kind: CardKind, module_kind: ModuleKind) -> tuple[bool, str, str]:
    """Whether a card of ``kind`` can sign with ``module_kind``: (yes/no, French, English).

    A "no" is final for this card on this box: no PIN is asked.
    """
    if kind is CardKind.UNKNOWN:
        return (
            False,
            "carte inconnue : ce n'est pas une carte CPS",
            "unknown card: this is not a CPS card",
        )
    if kind is CardKind.CPS3_CONTACTLESS:
        # The contactless interface of a CPS3 never carries a signature (PROFILE.md §5).
        return (
            False,
            "carte sans contact : la signature se fait uniquement avec le contact",
            "contactless card: signing works only through the contacts",
        )
    if kind is CardKind.CPS4 and module_kind == "opensc":
        # OpenSC drives the CPS3 only.
        return (
            False,
            "CPS4 non prise en charge ici (module OpenSC)",
            "CPS4 not supported here (OpenSC module)",
        )
    label = "CPS3" if kind is CardKind.CPS3 else "CPS4"
    return (True, f"carte {label} prête pour la signature", f"{label} card ready to sign")
