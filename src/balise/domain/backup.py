"""What a backup, its pruning and the evidence retention did (returned by their adapters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from balise.domain.codes import BackupCode
from balise.domain.errors import ValidationError


@dataclass(frozen=True, slots=True)
class BackupOutcome:
    """One archive published: its path, size in bytes and manifest."""

    path: str
    size: int
    manifest: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PruneOutcome:
    """What a prune did: the archives removed, this box's archives dated after now (ignored),
    and whether the quota, not the number kept, made it remove some."""

    removed: tuple[str, ...] = ()
    future: tuple[str, ...] = ()
    over_quota: bool = False
    kept: int = 1


@dataclass(frozen=True, slots=True)
class RetentionOutcome:
    """What one retention purge removed, and the checkpoint entry that records it."""

    cutoff: str
    removed: dict[str, int]
    journal_removed: int
    removed_sha256: str
    checkpoint_seq: int
    when: str


@dataclass(frozen=True, slots=True)
class RestoredFacts:
    """What the restore put in place, for the journal entry and the report."""

    head_seq: int
    head_hash: str
    counts: dict[str, Any]
    replaced_head: str | None
    kept_aside: str | None


class WrongPassphrase(ValidationError):
    """The recovery passphrase does not open this archive (asked again, up to N times)."""

    code = BackupCode.BACKUP_WRONG_PASSPHRASE

    def __init__(self) -> None:
        super().__init__("phrase de passe de secours incorrecte", "wrong recovery passphrase")
