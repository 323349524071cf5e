"""Receipts: for every entry intake takes from depot/new, a JSON file under ``retours/recus/``
says what became of it — accepted with its lot, or refused with its codes — for the practice
software to read (docs/exchange.md, schema docs/schemas/exchange/recu.schema.json).

A receipt is named after the file: ``recus/<name>.json``. A name is the practice software's, and
it may drop two different files under one name: a receipt of ANOTHER file is never replaced; the
later file's receipt is then ``recus/<name>.<first 16 hex digits of its SHA-256>.json`` (the
practice software can compute it), and for an entry the box could not read (no SHA-256)
``recus/<name>.ecarte-<n>.json``, n = 2, 3, … the first free. The same file taken again (a
second drop of the same bytes, a crash before its removal) gets its own receipt rewritten."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Literal

from balise.domain.journal import JsonValue
from balise.domain.lotrecord import LotRecord, QuarantineProblem
from balise.ports import Exchange

SCHEMA = "balise.recu/1"
FOLDER = "recus"
# Enough for any receipt the box writes (names are bounded, problems are few): a longer file is
# not one of ours.
READ_LIMIT = 512 * 1024
MAX_NUMBERED = 1000

Result = Literal["accepte", "refuse"]


def status_path(lot: LotRecord) -> str:
    """Where the lot's status file is published (relative to the exchange root)."""
    return f"retours/{lot.emitter}/lot-{lot.lot_date}-{lot.lot_number}.statut.json"


def receipt_document(
    *,
    name: str,
    sha256: str | None,
    size: int | None,
    taken: str,
    lot: LotRecord | None,
    problems: Sequence[QuarantineProblem] = (),
    again: bool = False,
    set_aside: bool = False,
) -> dict[str, JsonValue]:
    """The receipt of one entry (``lot`` for an accepted one, ``problems`` for a refusal)."""
    result: Result = "accepte" if lot is not None else "refuse"
    lot_part: JsonValue = None
    if lot is not None:
        lot_part = {
            "id": lot.id,
            "emetteur": lot.emitter,
            "numero": lot.lot_number,
            "date_lot": lot.lot_date,
            "organisme": lot.organism,
            "factures": lot.invoices,
            "montant_centimes": lot.total,
            "statut": status_path(lot),
        }
    reasons: list[JsonValue] = [
        {"code": p.code, "enregistrement": p.record, "message": p.fr, "message_en": p.en}
        for p in problems
    ]
    return {
        "schema": SCHEMA,
        "fichier": name,
        "sha256": sha256,
        "taille": size,
        "recu_le": taken,
        "resultat": result,
        "deja_recu": again,
        "lot": lot_part,
        "motifs": reasons,
        "ecarte": set_aside,
        "rapport": None if lot is not None else f"retours/refus/{name}.txt",
    }


def encode(document: dict[str, JsonValue]) -> bytes:
    return json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"


def _candidates(name: str, sha256: str | None) -> Iterator[str]:
    yield f"{FOLDER}/{name}.json"
    if sha256 is not None:
        yield f"{FOLDER}/{name}.{sha256[:16]}.json"
        yield f"{FOLDER}/{name}.{sha256}.json"
    for number in range(2, MAX_NUMBERED):
        yield f"{FOLDER}/{name}.ecarte-{number}.json"


def _holder(raw: bytes) -> str | None:
    """The SHA-256 a published receipt is about (None: unknown, or not a receipt)."""
    try:
        held = json.loads(raw)
    except ValueError:
        return None
    sha = held.get("sha256") if isinstance(held, dict) else None
    return sha if isinstance(sha, str) else None


def receipt_name(exchange: Exchange, name: str, sha256: str | None) -> str:
    """The path under retours/ where this file's receipt goes: free, or holding this same
    file's receipt (never another file's)."""
    for candidate in _candidates(name, sha256):
        raw = exchange.published(candidate, READ_LIMIT)
        if raw is None:
            return candidate
        if sha256 is not None and _holder(raw) == sha256:
            return candidate
    # A thousand unreadable entries under one name: the last one is told again, never lost.
    return f"{FOLDER}/{name}.ecarte-{MAX_NUMBERED}.json"


def publish_receipt(exchange: Exchange, document: dict[str, JsonValue]) -> str:
    """Write the receipt whole and durable (temporary name, fsync, rename, folder fsync) before
    intake lets the file go; returns its path under retours/."""
    name = str(document["fichier"])
    sha = document["sha256"]
    where = receipt_name(exchange, name, sha if isinstance(sha, str) else None)
    exchange.publish(where, encode(document))
    return where
