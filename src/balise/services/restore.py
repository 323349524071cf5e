"""Opening a backup archive with its recovery passphrase, and restoring it onto this box.

The passphrase is asked up to ``attempts`` times, with growing delays after each wrong one (kept
durably by the throttle when the box has a folder for it); every chunk and the journal chain are
checked before the database is moved in; the restore is then journaled on the restored box."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from balise.domain.backup import WrongPassphrase
from balise.ports import Clock, Journal, LockedArchive, PassphraseThrottle


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What a restore put in place."""

    source_box: str
    head_seq: int
    head_hash: str
    counts: dict[str, Any]
    kept_aside: str | None
    restore_seq: int


T = TypeVar("T")


def ask_passphrase(
    check: Callable[[str], T], ask: Callable[[], str], throttle: PassphraseThrottle, attempts: int
) -> T:
    """``check`` a passphrase asked up to ``attempts`` times: after each wrong one (its
    WrongPassphrase) the throttle makes the next wait longer, the last one's error is raised;
    any other error is raised at once. Returns what the right one's check gave."""
    for attempt in range(1, attempts + 1):
        throttle.wait()
        phrase = ask()
        try:
            checked = check(phrase)
        except WrongPassphrase:
            throttle.fail()
            if attempt == attempts:
                raise
            continue
        finally:
            del phrase
        throttle.reset()
        return checked
    raise AssertionError("unreachable")


def unlock_with_passphrase(
    archive: LockedArchive, ask: Callable[[], str], throttle: PassphraseThrottle, attempts: int
) -> None:
    """Verify the whole archive under a passphrase asked up to ``attempts`` times (see
    :func:`ask_passphrase`). Writes nothing but the throttle's counter."""
    ask_passphrase(archive.unlock, ask, throttle, attempts)


def restore(
    archive: LockedArchive,
    ask: Callable[[], str],
    throttle: PassphraseThrottle,
    *,
    attempts: int,
    force: bool,
    clock: Clock,
    restored_journal: Callable[[Clock], AbstractContextManager[Journal]],
) -> RestoreReport:
    """Restore onto this box: the target, the passphrase, every chunk and the journal chain are
    checked before the database is moved in (the vault re-wrapped under this box's KEK); then
    ``backup.restored`` is journaled on the restored box, with the chain's head it took over."""
    archive.check_target(force=force)
    unlock_with_passphrase(archive, ask, throttle, attempts)
    facts = archive.install(clock.now())
    manifest = archive.manifest
    with restored_journal(clock) as journal:
        entry = journal.append(
            "backup.restored",
            archive.name,
            {
                "source_box": str(manifest.get("box_id")),
                "source_created": str(manifest.get("created")),
                "old_head_seq": facts.head_seq,
                "old_head_hash": facts.head_hash,
                "replaced_head_hash": facts.replaced_head,
                "kept_aside": facts.kept_aside,
                "wrapping_key_id": archive.wrapping_key_id,
                "counts": facts.counts,
            },
        )
    return RestoreReport(
        str(manifest.get("box_id")),
        facts.head_seq,
        facts.head_hash,
        facts.counts,
        facts.kept_aside,
        entry.seq,
    )
