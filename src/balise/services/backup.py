"""Backups as a use case: one archive now, the agent's daily round over its destinations (newest N
kept, every outcome journaled), and the age of the last good backup for the kiosk and its alert."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from balise.domain.backup import BackupOutcome, PruneOutcome
from balise.domain.codes import BackupCode, GeneralCode
from balise.domain.errors import BaliseError, DiskFullError, os_error_words
from balise.domain.journal import JsonValue
from balise.ports import Alerts, BackupArchiver, Clock, Journal, StoreTransaction
from balise.services.alerting import raise_once
from balise.services.params import ParameterService
from balise.services.settings import box_settings

DAILY = timedelta(hours=24)
RETRY_AFTER_FAILURE = timedelta(hours=1)
STALE_ALERT = "backup_stale"
DISK_FULL_ALERT = "disk_full"
FUTURE_ALERT = "backup_future"
QUOTA_ALERT = "backup_quota"
ALERT_NAMES = 5
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass(frozen=True, slots=True)
class DestinationResult:
    """What happened at one destination of a round."""

    dest: str
    ok: bool
    path: str | None = None
    size: int = 0
    pruned: tuple[str, ...] = ()
    error_code: StrEnum | None = None
    error_fr: str | None = None


@dataclass(frozen=True, slots=True)
class BackupStatus:
    """The age of the last good backup, as the kiosk shows it."""

    last_ok: datetime | None
    age: timedelta | None
    max_age: timedelta
    too_old: bool

    def words(self) -> str:
        if self.last_ok is None or self.age is None:
            return "aucune sauvegarde réussie"
        hours = int(self.age.total_seconds() // 3600)
        when = "il y a moins d'une heure" if hours < 1 else f"il y a {hours} h"
        if hours >= 48:
            when = f"il y a {hours // 24} jours"
        return f"dernière sauvegarde réussie {when}" + (" — TROP ANCIENNE" if self.too_old else "")


class BackupAlerts(Alerts, StoreTransaction, Protocol):
    """The piece of the returns store backups use: raising an alert (with its journal line) in
    one transaction."""


class BackupService:
    """Makes archives through the archiver port and keeps the journal and the alerts honest."""

    def __init__(
        self,
        archiver: BackupArchiver,
        journal: Journal,
        clock: Clock,
        params: ParameterService,
        alerts: BackupAlerts,
    ) -> None:
        self._archiver = archiver
        self._journal = journal
        self._clock = clock
        self._params = params
        self._alerts = alerts
        self._failed_at: datetime | None = None

    def backup(
        self,
        dest: Path,
        *,
        keep: int | None = None,
        chunk_size: int | None = None,
        on_chunk: Callable[[int], None] | None = None,
    ) -> BackupOutcome:
        """One archive in ``dest`` now (errors raised after being journaled)."""
        result, outcome = self._one(dest, keep, chunk_size, on_chunk)
        if outcome is None:
            raise _last_error(result)
        return outcome

    def run_daily(
        self,
        dest_dirs: Sequence[Path],
        keep: int | None = None,
        *,
        force: bool = False,
        on_chunk: Callable[[int], None] | None = None,
    ) -> list[DestinationResult]:
        """The agent's hook: back up to each destination whose last good archive is a day old
        (every one with ``force``); prune to the newest ``keep``; then check the age alert. Never
        raises for one destination's failure (it is journaled, and the others still get theirs).
        ``on_chunk`` is called as the archive grows (the agent pings its watchdog there)."""
        results: list[DestinationResult] = []
        now = self._clock.now()
        # After a failed round, wait before the next try: an agent calling every cycle must not
        # fill the journal with one backup.failed per cycle.
        retry_ok = self._failed_at is None or now - self._failed_at >= RETRY_AFTER_FAILURE
        # Each destination is due on its own last good archive: a backup made elsewhere (the USB
        # key plugged this morning) counts for the age shown, but must not postpone this one.
        due = [d for d in dest_dirs if force or (retry_ok and self._due(d, now))]
        if due:
            results = [self._one(dest, keep, None, on_chunk)[0] for dest in due]
            self._failed_at = None if all(r.ok for r in results) else now
        self.check_age()
        return results

    def status(self) -> BackupStatus:
        max_age = timedelta(hours=box_settings(self._params).backup_max_age_hours)
        last = self._archiver.last_ok()
        if last is None:
            return BackupStatus(None, None, max_age, True)
        when = datetime.fromisoformat(str(last["time"]))
        age = max(self._clock.now() - when, timedelta(0))
        return BackupStatus(when, age, max_age, age > max_age)

    def check_age(self) -> int | None:
        """Raise the "backup too old" alert once (until acknowledged); returns its id if new."""
        status = self.status()
        if not status.too_old or self._alerts.open_alert(STALE_ALERT, "backup") is not None:
            return None
        hours = status.max_age.total_seconds() // 3600
        fr = (
            f"Sauvegarde trop ancienne : {status.words()} (limite {hours:.0f} h). Branchez la clé "
            "USB de sauvegarde ou prévenez le technicien."
        )
        en = (
            f"Backup too old (limit {hours:.0f} h): plug the backup USB key or call the technician."
        )
        alert_id = self._alerts.add_alert(
            STALE_ALERT, "backup", (fr, en), {}, self._clock.now().isoformat(timespec="seconds")
        )
        self._journal.append("alert.raised", "backup", {"kind": STALE_ALERT, "alert": alert_id})
        return alert_id

    # -- internals ----------------------------------------------------------------------------

    def _due(self, dest: Path, now: datetime) -> bool:
        last = self._archiver.last_ok(dest)
        return last is None or now - datetime.fromisoformat(str(last["time"])) >= DAILY

    def _one(
        self,
        dest: Path,
        keep: int | None,
        chunk_size: int | None,
        on_chunk: Callable[[int], None] | None,
    ) -> tuple[DestinationResult, BackupOutcome | None]:
        now = self._clock.now()
        keep_n = keep if keep is not None else box_settings(self._params).backup_keep
        try:
            if chunk_size is None:
                outcome = self._archiver.create(dest, now, on_chunk=on_chunk)
            else:
                outcome = self._archiver.create(dest, now, chunk_size=chunk_size, on_chunk=on_chunk)
        except DiskFullError as exc:
            return self._disk_full(dest, exc.fr, exc.en), None
        except BaliseError as exc:
            return self._failed(dest, exc.code, exc.fr, exc.en), None
        except OSError as exc:
            fr, en = os_error_words(exc)
            if exc.errno in _NO_ROOM:
                return self._disk_full(dest, f"Disque plein : {dest} ({fr})", en), None
            return self._failed(dest, BackupCode.BACKUP_IO, f"écriture impossible ({fr})", en), None
        # The archive is whole and on disk: a failure to prune does not unmake it.
        pruned = PruneOutcome()
        prune_error: str | None = None
        try:
            pruned = self._archiver.prune(
                dest,
                keep_n,
                newest=outcome.path,
                now=now,
                quota_bytes=box_settings(self._params).backup_quota_mib * 1024 * 1024,
            )
        except (BaliseError, OSError) as exc:
            prune_error = type(exc).__name__ if not isinstance(exc, BaliseError) else exc.code
        manifest = outcome.manifest
        details: dict[str, JsonValue] = {
            "dest": str(dest),
            "size": outcome.size,
            "journal_head_seq": manifest["journal_head_seq"],
            "journal_head_hash": manifest["journal_head_hash"],
            "counts": manifest["counts"],
            "pruned": list[JsonValue](pruned.removed),
        }
        if pruned.future:
            details["future"] = list[JsonValue](pruned.future)
        if prune_error is not None:
            details["prune_error"] = prune_error
        self._journal.append("backup.created", Path(outcome.path).name, details)
        self._archiver.record_ok(
            {"time": now.isoformat(timespec="seconds"), "path": outcome.path, "dest": str(dest)}
        )
        self._prune_alerts(dest, keep_n, pruned)
        done = DestinationResult(str(dest), True, outcome.path, outcome.size, pruned.removed)
        return done, outcome

    def _prune_alerts(self, dest: Path, keep: int, pruned: PruneOutcome) -> None:
        if pruned.future:
            names = ", ".join(pruned.future[:ALERT_NAMES])
            more = len(pruned.future) - ALERT_NAMES
            names += f" et {more} autre(s)" if more > 0 else ""
            self._alert(
                FUTURE_ALERT,
                f"backup:{dest}",
                f"Sauvegardes datées dans le futur dans {dest} : {names}. Faites par cette boîte "
                "quand son horloge avançait ? Elles ne sont ni comptées ni supprimées ; vérifiez "
                "l'heure de la boîte ou prévenez le technicien.",
                f"Backups dated in the future in {dest}: neither counted nor removed. Check the "
                "box's clock or call the technician.",
                {"dest": str(dest), "archives": list[JsonValue](pruned.future)},
            )
        if pruned.over_quota:
            quota = box_settings(self._params).backup_quota_mib
            self._alert(
                QUOTA_ALERT,
                f"backup:{dest}",
                f"Quota des sauvegardes atteint dans {dest} ({quota} Mio) : {pruned.kept} "
                f"sauvegarde(s) gardée(s) au lieu de {keep}. Augmentez backup_quota_mib, prenez "
                "une clé plus grande ou prévenez le technicien.",
                f"Backup quota reached in {dest} ({quota} MiB): {pruned.kept} backup(s) kept "
                f"instead of {keep}. Raise backup_quota_mib, use a larger key or call the "
                "technician.",
                {"dest": str(dest), "quota_mib": quota, "kept": pruned.kept, "keep": keep},
            )

    def _alert(
        self, kind: str, subject: str, fr: str, en: str, details: dict[str, JsonValue]
    ) -> None:
        """Raise an alert unless one of this kind and subject is still open (best effort when
        the full disk is the one holding the alerts: the backup's error still says it)."""
        when = self._clock.now().isoformat(timespec="seconds")
        raise_once(
            self._alerts, self._journal, self._alerts.transaction(), when, kind, subject,
            (fr, en), details,
        )  # fmt: skip

    def _disk_full(self, dest: Path, fr: str, en: str) -> DestinationResult:
        """No room, at the destination or for the snapshot: nothing was published (the partial
        file is gone), nothing pruned, nothing recorded as made; the alert says so."""
        result = self._failed(dest, GeneralCode.DISK_FULL, fr, en)
        self._alert(
            DISK_FULL_ALERT,
            f"backup:{dest}",
            f"Disque plein : la sauvegarde vers {dest} n'a pas pu être écrite ({fr}) ; les "
            "sauvegardes plus anciennes sont gardées. Libérez de la place ou prévenez le "
            "technicien.",
            f"Disk full: the backup to {dest} could not be written; older backups are kept. "
            "Free some space or call the technician.",
            {"dest": str(dest)},
        )
        return result

    def _failed(self, dest: Path, code: StrEnum, fr: str, en: str) -> DestinationResult:
        # When the journal's own disk is full, the error returned still says so.
        with contextlib.suppress(DiskFullError):
            self._journal.append("backup.failed", str(dest), {"code": code, "reason": en})
        return DestinationResult(str(dest), False, error_code=code, error_fr=fr)


class _BackupFailed(BaliseError):
    code = BackupCode.BACKUP_FAILED


def _last_error(result: DestinationResult) -> BaliseError:
    return _BackupFailed(
        f"sauvegarde impossible vers {result.dest} : {result.error_fr}",
        f"backup to {result.dest} failed",
        code=result.error_code or BackupCode.BACKUP_FAILED,
    )
