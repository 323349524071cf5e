"""The catalogue of words people read (balise.domain.vocabulary): complete in both languages,
correct French typography, and defined nowhere else in the code."""

from __future__ import annotations

import ast
import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from balise.cli import build_parser
from balise.cli.common import cli_language
from balise.domain import vocabulary as v
from balise.domain.lotstate import LotState
from balise.domain.returns import PaymentState
from tests.support.box import Box
from tests.support.clock import TEST_TODAY
from tests.support.lot_corpus import valid_lot

SRC = Path(__file__).resolve().parents[1] / "src" / "balise"
VOCABULARY = SRC / "domain" / "vocabulary.py"
NNBSP = "\u202f"
NBSP = "\u00a0"


def test_every_lot_state_has_words_in_both_languages() -> None:
    assert set(v.LOT_STATE_WORDS) == {s.value for s in LotState}
    for state in LotState:
        fr, en = v.lot_state(state, "fr"), v.lot_state(state, "en")
        assert fr and en and "—" not in (fr, en), state
    for lang in v.LANGUAGES:
        words = [v.lot_state(s, lang) for s in LotState]
        assert len(set(words)) == len(words), f"two states read the same in {lang}"


def test_every_payment_state_has_words_in_both_languages() -> None:
    assert set(v.PAYMENT_STATE_WORDS) == {s.value for s in PaymentState}
    assert [v.payment_state(s, "fr") for s in PaymentState] == ["payé", "rejeté", "différé"]
    assert [v.payment_state(s, "en") for s in PaymentState] == ["paid", "rejected", "deferred"]
    # What the parser and the kiosk show come from the same words.
    assert [s.words("en") for s in PaymentState] == ["paid", "rejected", "deferred"]
    assert v.payment_state("X", "fr") == "X" and v.payment_state(None, "en") == "—"


@pytest.mark.parametrize(
    ("cents", "fr", "en"),
    [
        (0, f"0,00{NBSP}€", "€0.00"),
        (5, f"0,05{NBSP}€", "€0.05"),
        (2650, f"26,50{NBSP}€", "€26.50"),
        (-5, f"-0,05{NBSP}€", "-€0.05"),
        (-123456, f"-1{NNBSP}234,56{NBSP}€", "-€1,234.56"),
        (100000, f"1{NNBSP}000,00{NBSP}€", "€1,000.00"),
        (123456789, f"1{NNBSP}234{NNBSP}567,89{NBSP}€", "€1,234,567.89"),
        (100000000000, f"1{NNBSP}000{NNBSP}000{NNBSP}000,00{NBSP}€", "€1,000,000,000.00"),
    ],
)
def test_money_in_both_languages(cents: int, fr: str, en: str) -> None:
    assert v.euros(cents, "fr") == fr
    assert v.euros(cents, "en") == en


def test_money_never_breaks_nor_uses_a_plain_space() -> None:
    """A French amount holds no breakable space: a line break never parts « 1 234,56 » from €."""
    for cents in (0, 99, 123456, -987654321):
        assert " " not in v.euros(cents, "fr") and " " not in v.euros(cents, "en")


def test_sizes() -> None:
    assert [v.size(n, "fr") for n in (0, 1536, 1024 * 1024 * 3 // 2)] == [
        f"1{NBSP}Kio",
        f"2{NBSP}Kio",
        f"1,5{NBSP}Mio",
    ]
    assert [v.size(n, "en") for n in (10, 5 * 1024 * 1024)] == ["1 KiB", "5.0 MiB"]


def test_counts_days_and_moments() -> None:
    assert (v.number(0, "fr"), v.number(60000, "fr"), v.number(1234567, "en")) == (
        "0",
        f"60{NNBSP}000",
        "1,234,567",
    )
    assert (v.day(date(2026, 3, 4), "fr"), v.day(date(2026, 3, 4), "en")) == (
        "04/03/2026",
        "2026-03-04",
    )
    when = datetime(2026, 3, 4, 9, 5, 7, tzinfo=UTC)
    assert v.moment(when, "fr") == "04/03/2026 à 09:05"
    assert v.moment(when, "en", seconds=True) == "2026-03-04 09:05:07"
    # A stored time is shown at the offset it was stored with; what is not a time, as it is.
    paris = datetime(2026, 3, 4, 10, 5, tzinfo=timezone(timedelta(hours=1)))
    assert v.stamp(paris.isoformat(), "fr") == "04/03/2026 à 10:05"
    assert v.stamp(paris.isoformat(), "en", hour=False) == "2026-03-04"
    assert v.stamp("hier", "fr") == "hier"
    assert (v.lot_date("260304", "fr"), v.lot_date("260304", "en")) == ("04/03/2026", "2026-03-04")
    assert v.lot_date("261399", "fr") == "261399" and v.lot_date("2603", "en") == "2603"


def test_language_setting() -> None:
    assert [v.language(x) for x in ("en", "fr", None, "", "de")] == ["en", "fr", "fr", "fr", "fr"]
    assert v.pick("oui", "yes", "en") == "yes" and v.pick("oui", None, "en") == "oui"
    assert v.pick("oui", "yes", "fr") == "oui"


def test_the_command_follows_the_language_the_kiosk_follows(
    box: Box, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BALISE_LANG: the command's lot lines, errors and words in English, its JSON unchanged;
    `balise kiosk` without --lang takes the same setting."""
    lot = tmp_path / "041.lot"
    lot.write_bytes(valid_lot(TEST_TODAY, lot_number=41))
    assert box.env.run("import", str(lot)).returncode == 0
    english_env = box.env.env | {"BALISE_LANG": "en"}
    french, english = box.env.run("lots", "list"), box.env.run("lots", "list", env=english_env)
    day = TEST_TODAY - timedelta(days=1)
    assert "prêt à signer" in french.stdout and f"lot 041 du {v.day(day, 'fr')}" in french.stdout
    assert re.search(rf"facture\(s\) +\d+,\d\d{NBSP}€", french.stdout), french.stdout
    assert "ready to sign" in english.stdout and f"lot 041 of {v.day(day, 'en')}" in english.stdout
    assert re.search(r"invoice\(s\) +€\d+\.\d\d", english.stdout), english.stdout
    unknown = box.env.run("lots", "show", "99", env=english_env)
    assert unknown.stderr.startswith("error: unknown lot 99 [LOT_UNKNOWN]")
    listing = [
        box.env.run("lots", "list", "--json", env=e).stdout for e in (box.env.env, english_env)
    ]
    assert listing[0] == listing[1] and '"state": "ready"' in listing[0]
    # The kiosk: --lang wins, otherwise the same setting as the command.
    assert build_parser().parse_args(["kiosk"]).lang is None
    monkeypatch.setenv("BALISE_LANG", "en")
    assert cli_language() == "en"
    monkeypatch.delenv("BALISE_LANG")
    assert cli_language() == "fr"


# -- defined once --------------------------------------------------------------------------------


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p != VOCABULARY)


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a module (f-strings' literal parts included), with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_no_state_word_is_defined_outside_the_vocabulary() -> None:
    """A literal that is exactly a state's words (« prêt à signer », « différé », « ready to
    sign »…) outside the vocabulary is a second copy of the catalogue. An ASCII identifier
    ("sent", "paid") is a code or a JSON key (LotState values, --json fields), not a word."""
    words = {w for pair in v.LOT_STATE_WORDS.values() for w in pair} | {
        w for pair in v.PAYMENT_STATE_WORDS.values() for w in pair
    }
    words = {w for w in words if not (w.isascii() and w.isidentifier())}
    assert {"prêt à signer", "ready to sign", "différé", "annulé"} <= words
    found = [
        f"{path.relative_to(SRC)}:{line}: {text!r}"
        for path in _sources()
        for line, text in _string_literals(path)
        if text in words
    ]
    assert not found, "state words defined outside balise.domain.vocabulary:\n" + "\n".join(found)


# A money format: the euro sign, or cents turned into euros by dividing by 100; a size's unit.
_MONEY = re.compile(
    r"€|\bEUR\b|cents?\s*(/|//|%)\s*100\b|divmod\([^)]*cents?[^)]*,\s*100\)|\b[KkM]i?[oB]\b\""
)
# A date format: the day/month/year order written out by hand.
_DATE = re.compile(r"%d/%m|%Y-%m-%d|\[4:6\]\}/\{[a-z_.]*\[2:4\]")


def test_no_money_or_date_format_is_defined_outside_the_vocabulary() -> None:
    found = [
        f"{path.relative_to(SRC)}:{n}: {line.strip()}"
        for path in _sources()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _MONEY.search(line) or _DATE.search(line)
    ]
    assert not found, "money or date formatted outside balise.domain.vocabulary:\n" + "\n".join(
        found
    )


def test_the_scan_would_see_a_copy(tmp_path: Path) -> None:
    """The scans above find what they look for (a copy of each kind, written to a scratch file)."""
    copy = tmp_path / "copy.py"
    copy.write_text(
        'LABEL = "en cours d\'envoi"\n'
        'def euros(cents: int) -> str:\n    return f"{cents / 100:.2f} €"\n'
        'def day(d) -> str:\n    return f"{d:%d/%m/%Y}"\n'
        'def size(n: int) -> str:\n    return f"{n // 1024} kio"\n',
        encoding="utf-8",
    )
    assert any(text == "en cours d'envoi" for _, text in _string_literals(copy))
    lines = copy.read_text(encoding="utf-8").splitlines()
    assert sum(bool(_MONEY.search(x)) for x in lines) == 2
    assert sum(bool(_DATE.search(x)) for x in lines) == 1
