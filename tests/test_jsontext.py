"""dumps_indented writes the very text json.dumps(..., ensure_ascii=False, indent=n) writes: the
lot status files under retours/ keep their bytes (a vendor's software, and the "same bytes: left
alone" rule of publication, see no change), only faster."""

from __future__ import annotations

import json
from enum import IntEnum, StrEnum

import pytest

from balise.domain.jsontext import dumps_indented


class Colour(StrEnum):
    RED = "rouge"


class Level(IntEnum):
    HIGH = 3


SAMPLES: list[object] = [
    {},
    [],
    "",
    None,
    True,
    False,
    0,
    -12345678901234567890,
    'é\u00e0\u2028\x00\x1f"\\/ \U0001f600 \ud800',
    {"a": {}, "b": [], "c": [{}], "d": [[]], "e": {"f": [1, [2, {"g": None}]]}},
    (1, "deux", (3,)),
    {"lot": "001", "paiements": [{"amo": {"demande": 4000, "etat": "P"}, "motifs": []}]},
    {"enum": Colour.RED, "int_enum": Level.HIGH, Colour.RED: "key that is a str subclass"},
    # Left to json.dumps itself: floats and keys that are not strings.
    {"float": 1.5, "nan": float("nan"), "inf": float("inf")},
    {1: "one", None: "none", False: "no", 2.5: "x"},
]


@pytest.mark.parametrize("value", SAMPLES)
@pytest.mark.parametrize("indent", [0, 1, 2, 4])
def test_same_text_as_json_dumps(value: object, indent: int) -> None:
    assert dumps_indented(value, indent) == json.dumps(value, ensure_ascii=False, indent=indent)


def test_a_status_file_of_many_payments_is_unchanged() -> None:
    status = {
        "schema": "balise.statut/1",
        "lot": "042",
        "paiements": [
            {
                "facture": 100000 + i,
                "amo": {"demande": 4000, "etat": "P", "paye": 4000},
                "amc": None,
                "motifs": ["Rejet : « assuré inconnu »"] if i % 7 == 0 else [],
                "reference_virement": f"VIR {i:06d}",
            }
            for i in range(300)
        ],
    }
    assert dumps_indented(status) == json.dumps(status, ensure_ascii=False, indent=1)


def test_what_json_dumps_refuses_is_still_refused() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        dumps_indented(loop)
    with pytest.raises(TypeError):
        dumps_indented({"when": object()})
