"""ATR classification (PROFILE.md §5) and whether a card may sign with the box's PKCS#11 module."""

from __future__ import annotations

from typing import get_args

import pytest

from balise.domain.atr import CPS3_MASK, CardKind, ModuleKind, can_sign, classify_atr

H = bytes.fromhex

# Every ATR of PROFILE.md §5, typed again here from the table (not imported from the code).
PROFILE_ATRS = {
    "cps3": (H("3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00"), CardKind.CPS3),
    "cps3-contactless": (
        H("3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00 0E"),
        CardKind.CPS3_CONTACTLESS,
    ),
    "cps4": (H("3B 9B 18 80 01 00 12 25 00 64 80 04 01 00 00 90 44"), CardKind.CPS4),
    "cps4-variant": (H("3B 9B 18 80 01 00 12 25 00 64 80 00 04 01 00 90 44"), CardKind.CPS4),
    "cps4-t0": (H("3B DC 18 FF 00 00 12 25 00 64 80 00 04 01 00 90 00"), CardKind.CPS4),
}
CPS3 = PROFILE_ATRS["cps3"][0]


def flip(atr: bytes, index: int, value: int) -> bytes:
    return atr[:index] + bytes([value]) + atr[index + 1 :]


@pytest.mark.parametrize(("atr", "kind"), PROFILE_ATRS.values(), ids=PROFILE_ATRS.keys())
def test_profile_atrs(atr: bytes, kind: CardKind) -> None:
    assert classify_atr(atr) is kind


MASKED_OUT = [i for i, m in enumerate(CPS3_MASK) if m == 0x00]
MASKED_IN = [i for i, m in enumerate(CPS3_MASK) if m == 0xFF]


def test_mask_is_the_profile_one() -> None:
    assert H("FF 00 00 00 00 FF FF FF FF FF FF 00 00 00 FF FF FF") == CPS3_MASK
    assert MASKED_OUT == [1, 2, 3, 4, 11, 12, 13]


@pytest.mark.parametrize("index", MASKED_OUT)
def test_cps3_variant_in_masked_out_byte_is_still_cps3(index: int) -> None:
    # Another CPS3 batch (e.g. other historical bytes or interface bytes) keeps its kind.
    assert classify_atr(flip(CPS3, index, CPS3[index] ^ 0x5A)) is CardKind.CPS3


def test_cps3_with_every_masked_out_byte_changed_is_cps3() -> None:
    atr = CPS3
    for index in MASKED_OUT:
        atr = flip(atr, index, 0xEE)
    assert classify_atr(atr) is CardKind.CPS3


@pytest.mark.parametrize("index", MASKED_IN)
def test_cps3_with_a_kept_byte_changed_is_unknown(index: int) -> None:
    assert classify_atr(flip(CPS3, index, CPS3[index] ^ 0x01)) is CardKind.UNKNOWN


def test_cps4_t0_passes_the_cps3_mask_but_is_a_cps4() -> None:
    # Trap: exact CPS4 ATRs must be checked before the CPS3 mask.
    atr = PROFILE_ATRS["cps4-t0"][0]
    assert bytes(a & m for a, m in zip(atr, CPS3_MASK, strict=True)) == bytes(
        a & m for a, m in zip(CPS3, CPS3_MASK, strict=True)
    )
    assert classify_atr(atr) is CardKind.CPS4


@pytest.mark.parametrize("name", ["cps3-contactless", "cps4", "cps4-variant", "cps4-t0"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_exact_atrs_with_any_byte_changed_are_not_that_kind(name: str, where: str) -> None:
    atr, kind = PROFILE_ATRS[name]
    index = {"first": 1, "middle": len(atr) // 2, "last": len(atr) - 1}[where]
    changed = flip(atr, index, atr[index] ^ 0x01)
    assert classify_atr(changed) is not kind


@pytest.mark.parametrize(
    "atr",
    [
        b"",
        H("3B"),
        CPS3[:-1],  # truncated
        CPS3 + H("00"),  # one byte too many: the mask needs the exact length
        PROFILE_ATRS["cps3-contactless"][0][:-1],
        PROFILE_ATRS["cps4"][0] + H("00"),
        H("3B FD 13 00 00 81 31 FE 15 80 73 C0 21 C0 57 59 75 62 69 4B 65 79 40"),  # YubiKey 5
        H("3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A"),  # a MIFARE card
    ],
    ids=[
        "empty",
        "ts-only",
        "cps3-short",
        "cps3-long",
        "cl-short",
        "cps4-long",
        "yubikey",
        "mifare",
    ],
)
def test_other_atrs_are_unknown(atr: bytes) -> None:
    assert classify_atr(atr) is CardKind.UNKNOWN


MODULES: tuple[ModuleKind, ...] = get_args(ModuleKind)

# (kind, module) -> may sign. Written out in full: every pair is a decision someone made.
SIGN_TABLE: dict[tuple[CardKind, ModuleKind], bool] = {
    (CardKind.CPS3, "cryptolib"): True,
    (CardKind.CPS3, "opensc"): True,
    (CardKind.CPS3, "softhsm"): True,
    (CardKind.CPS3, "configured"): True,
    (CardKind.CPS4, "cryptolib"): True,
    (CardKind.CPS4, "opensc"): False,
    (CardKind.CPS4, "softhsm"): True,
    (CardKind.CPS4, "configured"): True,
    **{(CardKind.CPS3_CONTACTLESS, m): False for m in MODULES},
    **{(CardKind.UNKNOWN, m): False for m in MODULES},
}


def test_sign_table_covers_every_pair() -> None:
    assert set(SIGN_TABLE) == {(k, m) for k in CardKind for m in MODULES}


@pytest.mark.parametrize(("pair", "allowed"), SIGN_TABLE.items(), ids=lambda v: str(v))
def test_can_sign(pair: tuple[CardKind, ModuleKind], allowed: bool) -> None:
    ok, fr, en = can_sign(*pair)
    assert ok is allowed
    assert fr and en and fr != en


@pytest.mark.parametrize("module", MODULES)
def test_contactless_never_signs_and_says_why(module: ModuleKind) -> None:
    assert can_sign(CardKind.CPS3_CONTACTLESS, module) == (
        False,
        "carte sans contact : la signature se fait uniquement avec le contact",
        "contactless card: signing works only through the contacts",
    )


@pytest.mark.parametrize("module", MODULES)
def test_unknown_card_is_not_a_cps(module: ModuleKind) -> None:
    ok, fr, _ = can_sign(CardKind.UNKNOWN, module)
    assert (ok, fr) == (False, "carte inconnue : ce n'est pas une carte CPS")


def test_cps4_with_opensc_is_not_supported_here() -> None:
    ok, fr, en = can_sign(CardKind.CPS4, "opensc")
    assert (ok, fr) == (False, "CPS4 non prise en charge ici (module OpenSC)")
    assert "OpenSC" in en


def test_classified_profile_atr_feeds_can_sign() -> None:
    assert can_sign(classify_atr(PROFILE_ATRS["cps4-t0"][0]), "opensc")[0] is False
    assert can_sign(classify_atr(CPS3), "opensc")[0] is True
