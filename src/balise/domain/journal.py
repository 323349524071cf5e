"""Hash-chained journal entries: canonical encoding, hashing and chain verification (pure)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring  # json's own string encoder (in C)
from typing import Any, Literal

from balise.domain.codes import StoreCode
from balise.domain.errors import ValidationError

GENESIS_HASH = "0" * 64

# Words that must never appear as detail keys: the journal is exported and shown, so no secret
# may ever enter it, even by mistake in a caller.
_FORBIDDEN_DETAIL_WORDS = ("pin", "password", "passwd", "secret", "passphrase", "kek", "token_key")

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One journal line as stored."""

    seq: int
    time: str
    kind: str
    actor: str
    subject: str
    details: str  # canonical JSON text
    prev_hash: str
    hash: str


def canonical_details(details: Mapping[str, JsonValue] | None) -> str:
    """Canonical JSON of the details (sorted keys, no spaces), refusing secret-looking keys."""
    data = dict(details or {})
    _refuse_secrets(data)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# Keys already found clean (the same few keys come back entry after entry: a purge appends
# hundreds); bounded, a key is looked at again once the memo is full.
_CLEAN_KEYS: set[str] = set()
_CLEAN_KEYS_MAX = 4096
_FORBIDDEN_PARTS = tuple(f"_{word}_" for word in _FORBIDDEN_DETAIL_WORDS)


def _refuse_secrets(value: JsonValue) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in _CLEAN_KEYS:
                _refuse_key(key)
            _refuse_secrets(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_secrets(item)


def _refuse_key(key: str) -> None:
    words = f"_{key.lower().replace('-', '_')}_"  # whole words only: "pinned" passes
    if any(part in words for part in _FORBIDDEN_PARTS):
        raise ValidationError(
            f"Le journal refuse le champ « {key} » : aucun secret n'y entre.",
            f"The journal refuses the field '{key}': no secret may enter it.",
            code=StoreCode.JOURNAL_SECRET,
        )
    if len(_CLEAN_KEYS) < _CLEAN_KEYS_MAX:
        _CLEAN_KEYS.add(key)


def entry_hash(
    prev_hash: str, seq: int, time: str, kind: str, actor: str, subject: str, details: str
) -> str:
    """SHA-256 over the previous hash and the canonical encoding of the entry.

    The body is ``json.dumps([seq, time, kind, actor, subject, details], separators=(",", ":"),
    ensure_ascii=False)``, written out with json's own string encoder (the same bytes, without
    building an encoder per entry: verification hashes millions of them)."""
    return _sha256(_body(prev_hash, seq, time, kind, actor, subject, details)).hexdigest()


_sha256 = hashlib.sha256


def _body(
    prev_hash: str, seq: int, time: str, kind: str, actor: str, subject: str, details: str
) -> bytes:
    enc = encode_basestring
    return (
        prev_hash.encode("ascii")
        + f"\n[{int(seq)},{enc(time)},{enc(kind)},{enc(actor)},{enc(subject)},{enc(details)}]".encode()
    )


Problem = Literal["edited", "missing", "reordered"]

# One stored row, the columns of JournalEntry in order: what the store's cursor yields.
JournalRow = tuple[int, str, str, str, str, str, str, str]
# Finds the seq of the stored entry whose hash is given (None: no such entry); asked only once a
# break is found, so the verification never keeps the journal in memory.
OwnerLookup = Callable[[str], int | None]


@dataclass(frozen=True, slots=True)
class ChainReport:
    """Outcome of a verification: ok with the head, or the first broken entry and why.

    ``since_seq`` is set by an incremental check: the entries up to it were verified before and
    trusted this time, and ``checked`` entries after it were hashed now."""

    ok: bool
    count: int
    head_hash: str
    broken_seq: int | None = None
    problem: Problem | None = None
    detail: str = ""
    checked: int | None = None
    since_seq: int | None = None

    def describe(self) -> str:
        if self.ok:
            words = f"journal intègre : {self.count} entrées, tête {self.head_hash}"
            if self.since_seq is not None:
                words += (
                    f" ; {self.checked or 0} nouvelle(s) entrée(s) vérifiée(s) depuis le point "
                    f"de contrôle n° {self.since_seq}"
                )
            return words
        problems = {
            "edited": "modifiée",
            "missing": "entrée(s) manquante(s)",
            "reordered": "ordre modifié",
        }
        assert self.problem is not None
        return (
            f"journal rompu à l'entrée {self.broken_seq} : {problems[self.problem]} ({self.detail})"
        )


def verify_chain(
    entries: Iterable[JournalEntry],
    *,
    anchor_hash: str = GENESIS_HASH,
    anchor_seq: int = 0,
    owner_seq: OwnerLookup | None = None,
) -> ChainReport:
    """Check the chain entry by entry; name the first broken entry and what is wrong.

    ``entries`` must be given in ascending ``seq`` order. ``anchor_*`` describe where the chain
    starts (genesis, a retention checkpoint, or the head verified last time). Memory stays
    constant: nothing is kept but the previous entry."""
    rows = (
        (e.seq, e.time, e.kind, e.actor, e.subject, e.details, e.prev_hash, e.hash) for e in entries
    )
    return verify_rows(rows, anchor_hash=anchor_hash, anchor_seq=anchor_seq, owner_seq=owner_seq)


def verify_rows(
    rows: Iterable[tuple[Any, ...]],
    *,
    anchor_hash: str = GENESIS_HASH,
    anchor_seq: int = 0,
    owner_seq: OwnerLookup | None = None,
) -> ChainReport:
    """:func:`verify_chain` over stored rows as they come from the database (streamed).

    Without ``owner_seq``, an entry linked to another stored entry than its predecessor cannot
    be told "reordered" from "missing": it is reported as a broken link."""
    sha256, enc = _sha256, encode_basestring
    prev_hash, prev_seq = anchor_hash, anchor_seq
    count = 0
    for row in rows:
        seq = row[0]
        if seq != prev_seq + 1:
            if seq > prev_seq + 1:
                missing = f"{prev_seq + 1}" + (f"–{seq - 1}" if seq - 1 > prev_seq + 1 else "")
                return ChainReport(
                    False, count, prev_hash, prev_seq + 1, "missing", f"absentes : {missing}"
                )
            return ChainReport(False, count, prev_hash, seq, "reordered", "numéro en double")
        try:
            digest = sha256(
                row[6].encode("ascii")
                + f"\n[{seq},{enc(row[1])},{enc(row[2])},{enc(row[3])},{enc(row[4])},{enc(row[5])}]".encode()
            ).hexdigest()
        except (TypeError, AttributeError, UnicodeEncodeError):
            digest = ""  # a column that is not text (or a hash that is not hex) was tampered with
        if row[6] != prev_hash or digest != row[7]:
            return _diagnose(_entry(row), prev_hash, owner_seq, count)
        prev_hash, prev_seq = row[7], seq
        count += 1
    return ChainReport(True, count, prev_hash)


def _entry(row: Iterable[Any]) -> JournalEntry:
    seq, *text = row
    return JournalEntry(int(seq), *(str(value) for value in text))


def _recompute(entry: JournalEntry, seq: int | None = None) -> str:
    try:
        return entry_hash(
            entry.prev_hash,
            entry.seq if seq is None else seq,
            entry.time,
            entry.kind,
            entry.actor,
            entry.subject,
            entry.details,
        )
    except UnicodeEncodeError:
        return ""


def _diagnose(
    entry: JournalEntry, expected_prev: str, owner_seq: OwnerLookup | None, count: int
) -> ChainReport:
    if entry.prev_hash != expected_prev:
        owner = None
        if entry.prev_hash != GENESIS_HASH and owner_seq is not None:
            owner = owner_seq(entry.prev_hash)
        if entry.prev_hash == GENESIS_HASH or owner is not None:
            real_seq = 1 if owner is None else owner + 1
            if _recompute(entry, real_seq) == entry.hash:
                return ChainReport(
                    False,
                    count,
                    expected_prev,
                    entry.seq,
                    "reordered",
                    f"cette entrée appartient à la position {real_seq}",
                )
            return ChainReport(False, count, expected_prev, entry.seq, "edited", "contenu modifié")
        return ChainReport(
            False,
            count,
            expected_prev,
            entry.seq,
            "missing",
            "le lien vers l'entrée précédente est rompu",
        )
    return ChainReport(False, count, expected_prev, entry.seq, "edited", "contenu modifié")
