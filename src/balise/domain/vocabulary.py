"""The words people read, in one place: lot states, payment states, money, counts, sizes and
dates, in French and English. The kiosk (``balise.ui.i18n``) and the ``balise`` command both take
them from here; machine-readable outputs (``--json``, the exchange files) keep their own codes.

French typography, as CLDR's ``fr`` locale has it (so the box reads like ICU, browsers and office
software, and an amount copied from it compares equal): thousands grouped by a narrow no-break
space (U+202F), a decimal comma, and a no-break space (U+00A0) before the euro sign —
« 1 234,56 € » — so the amount never breaks across lines. English: « €1,234.56 ». The box's
console font (Terminus, Lat15) draws both spaces as a space; each takes one terminal cell.

Pure: no import of the rest of Balise, so every layer may use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Final, Literal

Lang = Literal["fr", "en"]
LANGUAGES: Final[tuple[Lang, ...]] = ("fr", "en")

NARROW_NBSP: Final = "\u202f"  # between groups of thousands (French)
NBSP: Final = "\u00a0"  # before the euro sign (French)

# The lot states of balise.domain.lotstate.LotState, by value: (French, English).
LOT_STATE_WORDS: Final[Mapping[str, tuple[str, str]]] = {
    "ready": ("prêt à signer", "ready to sign"),
    "signed": ("signé", "signed"),
    "sending": ("en cours d'envoi", "sending"),
    "sent": ("envoyé", "sent"),
    "acknowledged": ("accusé reçu (ARL positif)", "acknowledged (positive ARL)"),
    "rejected": ("rejeté (ARL négatif)", "rejected (negative ARL)"),
    "cancelled": ("annulé", "cancelled"),
}

# The states of an AMO or AMC share of a NOEMIE invoice (balise.domain.returns.PaymentState).
PAYMENT_STATE_WORDS: Final[Mapping[str, tuple[str, str]]] = {
    "P": ("payé", "paid"),
    "R": ("rejeté", "rejected"),
    "D": ("différé", "deferred"),
}


def language(value: str | None) -> Lang:
    """``en`` for English; anything else, absent included, is French (the box's language)."""
    return "en" if value == "en" else "fr"


def pick(fr: str, en: str | None, lang: Lang) -> str:
    """Words the core gives in both languages (errors, verdicts); French when English lacks."""
    return en if lang == "en" and en else fr


def lot_state(state: str, lang: Lang) -> str:
    """A lot state's words; an unknown value shows as a dash."""
    pair = LOT_STATE_WORDS.get(state)
    if pair is None:
        return "—"
    return pair[1] if lang == "en" else pair[0]


def payment_state(code: str | None, lang: Lang) -> str:
    """A payment state's words (P, R, D); an unknown code shows as itself, none as a dash."""
    pair = PAYMENT_STATE_WORDS.get(code or "")
    if pair is None:
        return code or "—"
    return pair[1] if lang == "en" else pair[0]


def number(n: int, lang: Lang) -> str:
    """A count as people read it: « 60 000 » (narrow no-break space), « 60,000 »."""
    text = f"{n:,}"
    return text if lang == "en" else text.replace(",", NARROW_NBSP)


def euros(cents: int, lang: Lang) -> str:
    """An amount in cents: « 1 234,56 € », « -0,05 € »; « €1,234.56 », « -€0.05 »."""
    whole, rest = divmod(abs(cents), 100)
    sign = "-" if cents < 0 else ""
    if lang == "en":
        return f"{sign}€{whole:,}.{rest:02d}"
    return f"{sign}{number(whole, 'fr')},{rest:02d}{NBSP}€"


def size(nbytes: int, lang: Lang) -> str:
    """A size in binary units, as the box's messages give it: « 1,5 Mio », « 12 Kio »
    (no-break space), « 1.5 MiB », « 12 KiB »; at least 1 Kio."""
    if nbytes >= 1024 * 1024:
        text = f"{nbytes / (1024 * 1024):.1f}"
        return f"{text} MiB" if lang == "en" else f"{text.replace('.', ',')}{NBSP}Mio"
    kib = max(round(nbytes / 1024), 1)
    return f"{kib} KiB" if lang == "en" else f"{kib}{NBSP}Kio"


def day(value: date, lang: Lang) -> str:
    """A day: « 04/03/2026 », « 2026-03-04 » (a datetime gives its own day, as it is)."""
    return f"{value:%d/%m/%Y}" if lang == "fr" else f"{value:%Y-%m-%d}"


def moment(value: datetime, lang: Lang, *, seconds: bool = False) -> str:
    """A day and an hour, as given (the caller says UTC or converts to local time):
    « 04/03/2026 à 10:05 », « 2026-03-04 10:05 »."""
    hour = f"{value:%H:%M:%S}" if seconds else f"{value:%H:%M}"
    return f"{day(value, lang)} à {hour}" if lang == "fr" else f"{day(value, lang)} {hour}"


def stamp(iso: str, lang: Lang, *, hour: bool = True) -> str:
    """A time stored as ISO 8601 text (journal, history, received), as :func:`moment` (or
    :func:`day` without the hour) writes it, at the offset it was stored with; text that is not
    such a time is shown as it is."""
    try:
        value = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return moment(value, lang) if hour else day(value, lang)


def lot_date(aammjj: str, lang: Lang) -> str:
    """A lot's date as the lot file writes it (AAMMJJ); anything else is shown as it is."""
    if len(aammjj) != 6 or not aammjj.isdigit():
        return aammjj
    try:
        value = date(2000 + int(aammjj[0:2]), int(aammjj[2:4]), int(aammjj[4:6]))
    except ValueError:
        return aammjj
    return day(value, lang)
