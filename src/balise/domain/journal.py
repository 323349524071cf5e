"""Hash-chained journal entries: canonical encoding, hashing and chain verification (pure)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

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


def _refuse_secrets(value: JsonValue) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            words = f"_{key.lower().replace('-', '_')}_"  # whole words only: "pinned" passes
            if any(f"_{word}_" in words for word in _FORBIDDEN_DETAIL_WORDS):
                raise ValidationError(
                    f"Le journal refuse le champ « {key} » : aucun secret n'y entre.",
                    f"The journal refuses the field '{key}': no secret may enter it.",
                    code="JOURNAL_SECRET",
                )
            _refuse_secrets(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_secrets(item)


def entry_hash(
    prev_hash: str, seq: int, time: str, kind: str, actor: str, subject: str, details: str
) -> str:
    """SHA-256 over the previous hash and the canonical encoding of the entry."""
    body = json.dumps(
        [seq, time, kind, actor, subject, details], separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + body.encode("utf-8")).hexdigest()


def _recompute(entry: JournalEntry, seq: int | None = None) -> str:
    return entry_hash(
        entry.prev_hash,
        entry.seq if seq is None else seq,
        entry.time,
        entry.kind,
        entry.actor,
        entry.subject,
        entry.details,
    )


Problem = Literal["edited", "missing", "reordered"]


@dataclass(frozen=True, slots=True)
class ChainReport:
    """Outcome of a verification: ok with the head, or the first broken entry and why."""

    ok: bool
    count: int
    head_hash: str
    broken_seq: int | None = None
    problem: Problem | None = None
    detail: str = ""

    def describe(self) -> str:
        if self.ok:
            return f"journal intègre : {self.count} entrées, tête {self.head_hash}"
        words = {
            "edited": "modifiée",
            "missing": "entrée(s) manquante(s)",
            "reordered": "ordre modifié",
        }
        assert self.problem is not None
        return f"journal rompu à l'entrée {self.broken_seq} : {words[self.problem]} ({self.detail})"


def verify_chain(
    entries: Iterable[JournalEntry], *, anchor_hash: str = GENESIS_HASH, anchor_seq: int = 0
) -> ChainReport:
    """Check the chain entry by entry; name the first broken entry and what is wrong.

    ``entries`` must be given in ascending ``seq`` order. ``anchor_*`` describe where the chain
    starts (genesis, or a retention checkpoint).
    """
    listed = list(entries)
    by_hash = {e.hash: e for e in listed}
    prev_hash, prev_seq = anchor_hash, anchor_seq
    for entry in listed:
        if entry.seq != prev_seq + 1:
            if entry.seq > prev_seq + 1:
                missing = f"{prev_seq + 1}" + (
                    f"–{entry.seq - 1}" if entry.seq - 1 > prev_seq + 1 else ""
                )
                return ChainReport(
                    False, len(listed), prev_hash, prev_seq + 1, "missing", f"absentes : {missing}"
                )
            return ChainReport(
                False, len(listed), prev_hash, entry.seq, "reordered", "numéro en double"
            )
        if entry.prev_hash != prev_hash or _recompute(entry) != entry.hash:
            return _diagnose(entry, prev_hash, by_hash, len(listed))
        prev_hash, prev_seq = entry.hash, entry.seq
    return ChainReport(True, len(listed), prev_hash)


def _diagnose(
    entry: JournalEntry, expected_prev: str, by_hash: dict[str, JournalEntry], count: int
) -> ChainReport:
    if entry.prev_hash != expected_prev:
        owner = by_hash.get(entry.prev_hash)
        if entry.prev_hash == GENESIS_HASH or owner is not None:
            real_seq = 1 if owner is None else owner.seq + 1
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
