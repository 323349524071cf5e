"""The agent (composition root): the background loop that takes deposited lots, sends what is due,
purges every mailbox each ``pop3.interval``, checks overdue ARLs and publishes returns — no person.

Every step is guarded: a failure is journaled (and alerted once per streak) in words, the step
backs off exponentially and the loop goes on. SIGTERM (``stop()``) lets the current step finish.
A small JSON status file (``agent-status.json`` in the data dir) tells the kiosk the last and next
purge per profile and the network state.

What the agent does goes through stdlib ``logging`` (logger ``balise.agent``), each record with a
stable code (``extra={"code": ...}``, the system journal's ``BALISE_CODE``) and a priority a
technician filters on: routine work at info, a failed step or an alert at warning, what puts the
box itself at risk (a full disk, a bug, the journal or an alert not written) at error. Words only:
never an exception's message from outside Balise, never a Python repr, never a secret. Under
systemd (``Type=notify``) the loop tells the manager it is ready, pings the watchdog between steps
and inside the long ones (each purged message, each backup chunk, each deposited lot), and shows
the last purge, the last send and the alerts waiting as its status line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any, Literal

from balise.adapters.locks import update_gate_held
from balise.adapters.systemd import Notifier
from balise.app.backup import backup_service, default_destinations, retention_service
from balise.app.context import Context
from balise.domain.codes import AgentEvent, BackupCode, GeneralCode, TrustCode
from balise.domain.errors import BaliseError, Busy
from balise.domain.mailtransport import ServerUnreachable
from balise.domain.update import UpdateCode, update_in_progress
from balise.domain.vocabulary import size, stamp
from balise.services.backup import BackupService
from balise.services.certwatch import expiring
from balise.services.purge import PurgeService
from balise.services.settings import box_settings, profile_settings, profiles
from balise.services.transmission import TransmissionService

STATUS_FILE = "agent-status.json"
STATUS_VERSION = 1
TICK_S = 5.0  # between cycles: how soon a deposited lot is taken
OVERDUE_PERIOD_S = 600.0  # overdue ARLs and retours/ publication
MAX_BACKOFF_S = 900.0  # a failing step is retried at least every 15 minutes
ORGANISMS_PERIOD_S = 3600.0  # the directory is asked at most hourly (each organism weekly)
# A step's failure is told apart by its type (never by its words): a mail server out of reach
# (domain.mailtransport.ServerUnreachable) means "no network", shown as such and alerted only when
# it lasts; another process holding the job (domain.errors.Busy) is no failure, the next cycle
# tries again. A full disk or a bug (any exception that is not a BaliseError) puts the box itself
# at risk: error, not warning — told by the code, which a backup destination's outcome also has.
NETWORK_ALERT_AFTER = 3
WAITING_FR = "en attente de réseau"
WAITING_EN = "waiting for the network"
GRAVE_CODES = frozenset({GeneralCode.INTERNAL, GeneralCode.DISK_FULL})
# The code of each revocation list's and directory's outcome the agent says.
_CRL_EVENTS: dict[str, StrEnum] = {
    "stored": AgentEvent.CRL_STORED,
    "refused": AgentEvent.CRL_REFUSED,
    "unreachable": AgentEvent.CRL_UNREACHABLE,
}
_DIRECTORY_EVENTS: dict[str, StrEnum] = {
    "fetched": AgentEvent.DIRECTORY_FETCHED,
    "changed": AgentEvent.DIRECTORY_CHANGED,
    "refused": AgentEvent.DIRECTORY_REFUSED,
    "skipped": AgentEvent.DIRECTORY_SKIPPED,
    "unreachable": TrustCode.DIRECTORY_UNREACHABLE,
}

log = logging.getLogger("balise.agent")
# Not configured (the demo, a test): said nowhere by default — never Python's last-resort stderr
# line, which would land on a kiosk's screen. `balise agent` configures it (adapters.systemd).
log.addHandler(logging.NullHandler())

Network = Literal["ok", "waiting", "unknown"]


@dataclass
class StepHealth:
    """Consecutive failures of one step and when it may run again (monotonic seconds)."""

    failures: int = 0
    retry_at: float = 0.0
    code: StrEnum | None = None
    fr: str | None = None
    en: str | None = None
    network: bool = False  # the last failure: a mail server out of reach
    grave: bool = False  # the last failure: a full disk or a bug


@dataclass
class ProfileStatus:
    last_purge: str | None = None
    next_purge: str | None = None
    last_send: str | None = None
    purge_fr: str | None = None
    purge_en: str | None = None
    send_fr: str | None = None
    send_en: str | None = None
    network: Network = "unknown"


@dataclass
class CycleReport:
    """What one cycle did (for ``--once`` and the tests)."""

    taken: int = 0
    refused: int = 0
    sent: int = 0
    purged: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _words(exc: BaseException) -> tuple[StrEnum, str, str]:
    if isinstance(exc, BaliseError):
        return exc.code, exc.fr, exc.en
    # A bug, not a person's error: only the type, a message could carry anything.
    name = type(exc).__name__
    return GeneralCode.INTERNAL, f"erreur interne ({name})", f"internal error ({name})"


class Agent:
    """One agent process over one context; ``run`` loops until ``stop()`` or ``max_cycles``."""

    def __init__(
        self,
        ctx: Context,
        *,
        env: Mapping[str, str] | None = None,
        interval_scale: float = 1.0,
        status_path: Path | None = None,
        log: Callable[[str], None] | None = None,
        purge_factory: Callable[[], PurgeService] | None = None,
        transmission: TransmissionService | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        """``log`` also gets each record's words (the demo shows them); the records themselves
        go to the ``balise.agent`` logger. ``notifier`` speaks to systemd (none: silent)."""
        if not interval_scale > 0:
            raise ValueError("interval_scale must be > 0")
        self._ctx = ctx
        self._env = env
        self._scale = interval_scale
        self.status_path = status_path or ctx.data_dir / STATUS_FILE
        self._echo = log or (lambda _line: None)
        self._notifier = notifier or Notifier({})
        self._purge_factory = purge_factory or (lambda: ctx.purge(env=env))
        self._purge: PurgeService | None = None
        self._transmission = transmission or ctx.transmission()
        self._stop = threading.Event()
        self._health: dict[str, StepHealth] = {}
        self._profiles: dict[str, ProfileStatus] = {}
        self._next_purge: dict[str, float] = {}
        self._next_overdue = 0.0
        self._backup: BackupService | None = None
        self._last_retention: datetime | None = None
        self._next_crl: datetime | None = None
        self._next_organisms = 0.0
        self.cycles = 0

    # -- control ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to end after the step in progress (safe from a signal handler)."""
        self._stop.set()

    # -- what the agent says ----------------------------------------------------------------

    def _say(
        self,
        level: int,
        code: StrEnum,
        words: str,
        *,
        exc: BaseException | None = None,
        **fields: str | int | None,
    ) -> None:
        """One record: words, a stable code, a priority; ``fields`` become journal fields."""
        extra = {"code": code, "fields": {k: v for k, v in fields.items() if v is not None}}
        log.log(level, words, exc_info=exc, extra=extra, stacklevel=2)
        self._echo(words if f"[{code}]" in words else f"{words} [{code}]")

    def _alive(self, *_args: object) -> None:
        """The watchdog's ping: between steps and inside the long ones (rate-limited)."""
        self._notifier.watchdog()

    def _sleep(self, seconds: float) -> None:
        """Wait between cycles, still pinging the watchdog if its interval is shorter."""
        deadline = time.monotonic() + seconds
        slice_s = self._notifier.watchdog_s / 3 if self._notifier.watchdog_s else seconds
        while not self.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, slice_s))
            self._alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        if self._purge is not None:
            self._purge.close()
            self._purge = None

    def run(self, *, max_cycles: int | None = None) -> list[CycleReport]:
        """Cycle until stopped (or ``max_cycles`` done); returns the reports (last 10 kept)."""
        reports: list[CycleReport] = []
        try:
            self._ctx.journal.append("agent.started", "agent", {"pid": os.getpid()})
        except BaliseError as exc:  # a full disk: the loop still starts and retries its steps
            self._journal_failed(exc)
        limit = max_cycles or "sans limite"
        self._say(
            logging.INFO, AgentEvent.AGENT_STARTED, f"service de fond démarré (cycles : {limit})"
        )
        self._notifier.ready(self.status_line())
        try:
            while not self.stopping and (max_cycles is None or self.cycles < max_cycles):
                reports = [*reports[-9:], self.cycle()]
                if max_cycles is not None and self.cycles >= max_cycles:
                    break
                self._sleep(TICK_S * self._scale)
        finally:
            self._notifier.stopping("arrêt en cours")
            self.close()
            self._write_status("arrêté")
            try:
                self._ctx.journal.append("agent.stopped", "agent", {"cycles": self.cycles})
            except BaliseError as exc:
                self._journal_failed(exc)
            self._say(
                logging.INFO,
                AgentEvent.AGENT_STOPPED,
                f"service de fond arrêté après {self.cycles} cycle(s)",
                cycles=self.cycles,
            )
        return reports

    def _journal_failed(self, exc: BaliseError) -> None:
        self._say(logging.ERROR, exc.code, f"journal non écrit : {exc.fr}")

    # -- one cycle --------------------------------------------------------------------------

    def cycle(self) -> CycleReport:
        report = CycleReport()
        self.cycles += 1
        self._guard("intake", report, partial(self._intake, report))
        for profile in self._send_profiles():
            if self.stopping:
                break
            self._guard(f"send:{profile}", report, partial(self._send, profile, report))
        purge_profiles = self._purge_profiles()
        for profile in purge_profiles:
            if self.stopping:
                break
            if time.monotonic() >= self._next_purge.get(profile, 0.0):
                self._guard(f"purge:{profile}", report, partial(self._purge_one, profile, report))
        if not self.stopping and time.monotonic() >= self._next_overdue:
            self._next_overdue = time.monotonic() + OVERDUE_PERIOD_S * self._scale
            self._guard("overdue", report, self._overdue)
            if not self.stopping:
                self._guard("housekeeping", report, self._housekeeping)
        if not self.stopping and (
            self._next_crl is None or self._ctx.clock.now() >= self._next_crl
        ):
            self._guard("crl", report, self._crl)
        if not self.stopping and time.monotonic() >= self._next_organisms:
            self._next_organisms = time.monotonic() + ORGANISMS_PERIOD_S * self._scale
            self._guard("organisms", report, self._organisms)
        if not self.stopping:
            self._guard("disk", report, self._disk_space_back)
        if not self.stopping:  # retours/etat.json for the practice software (docs/exchange.md)
            from balise.app.exchange import refresh_in_cycle

            self._guard("etat", report, partial(refresh_in_cycle, self._ctx, self._env))
        self._write_status("en marche")
        return report

    def _guard(self, step: str, report: CycleReport, action: Callable[[], None]) -> None:
        health = self._health.setdefault(step, StepHealth())
        now = time.monotonic()
        if now < health.retry_at:
            report.skipped.append(step)
            return
        self._alive()
        try:
            action()
        except Exception as exc:  # noqa: BLE001 — one step's failure never stops the loop
            code, fr, en = _words(exc)
            if isinstance(exc, Busy):
                report.skipped.append(step)
                self._say(logging.INFO, code, f"{step} : {fr}", step=step)
                return
            health.failures += 1
            delay = min(TICK_S * self._scale * 2**health.failures, MAX_BACKOFF_S * self._scale)
            health.retry_at = now + delay
            health.code, health.fr, health.en = code, fr, en
            health.network = isinstance(exc, ServerUnreachable)
            health.grave = code in GRAVE_CODES
            report.failed.append(step)
            self._failed(step, health, delay, exc)
            return
        finally:
            self._alive()
        if health.failures:
            self._say(
                logging.INFO,
                AgentEvent.STEP_RECOVERED,
                f"étape « {step} » rétablie après {health.failures} échec(s)",
                step=step,
                failures=health.failures,
            )
            try:
                self._ctx.journal.append(
                    "agent.step_recovered", f"agent:{step}", {"after_failures": health.failures}
                )
            except BaliseError as exc:
                self._journal_failed(exc)
                return
        self._health[step] = StepHealth()

    def _failed(self, step: str, health: StepHealth, delay: float, exc: BaseException) -> None:
        retry = self._ctx.clock.now() + timedelta(seconds=delay)
        words = f"étape « {step} » en échec ({health.failures} fois de suite) : {health.fr}"
        words_en = f"step '{step}' failed ({health.failures} times in a row): {health.en}"
        code = health.code or GeneralCode.INTERNAL
        self._say(
            logging.ERROR if health.grave else logging.WARNING,
            code,
            f"{words} [{code}] ; nouvel essai à {retry:%H:%M:%S}",
            # Where a bug was raised (type and lines, never its message); a BaliseError is words.
            exc=None if isinstance(exc, BaliseError) else exc,
            step=step,
            failures=health.failures,
        )
        try:  # a full disk refuses the journal line too: the log above says it, the loop goes on
            self._ctx.journal.append(
                "agent.step_failed",
                f"agent:{step}",
                {
                    "code": health.code,
                    "words": health.fr,
                    "failures": health.failures,
                    "retry_at": retry.isoformat(timespec="seconds"),
                },
            )
        except BaliseError as journal_exc:
            self._journal_failed(journal_exc)
            return
        network = health.network
        if (network and health.failures == NETWORK_ALERT_AFTER) or (
            not network and health.failures == 1
        ):
            try:  # the alert store may be what fails: the journal line above stays
                self._ctx.tracking(self._env).alert(
                    "agent_step_failed",
                    f"agent:{step}",
                    f"Service de fond : {words}",
                    f"Background service: {words_en}",
                    {"step": step, "code": health.code},
                )
            except Exception as alert_exc:  # noqa: BLE001
                alert_code, alert_fr, _ = _words(alert_exc)
                self._say(logging.ERROR, alert_code, f"alerte impossible : {alert_fr}", step=step)
        profile = step.split(":", 1)[1] if ":" in step else None
        if network and profile is not None:
            self._profile(profile).network = "waiting"

    # -- steps ------------------------------------------------------------------------------

    def _intake(self, report: CycleReport) -> None:
        for outcome in self._ctx.intake(self._env).scan_depot():
            self._alive()  # a depot of many lots is one long step
            codes = ", ".join(dict.fromkeys(p.code for p in outcome.problems)) or None
            if outcome.accepted:
                report.taken += 1
                self._say(
                    logging.INFO,
                    AgentEvent.INTAKE_TAKEN,
                    f"dépôt : {outcome.name} pris (lot n° {outcome.lot_id})",
                    file=outcome.name,
                    lot=outcome.lot_id,
                )
            elif outcome.set_aside is not None:
                report.refused += 1
                self._say(
                    logging.WARNING,
                    AgentEvent.INTAKE_SET_ASIDE,
                    f"dépôt : {outcome.name} mis de côté ({outcome.set_aside})",
                    file=outcome.name,
                    problems=codes,
                )
            elif not outcome.already:
                report.refused += 1
                self._say(
                    logging.WARNING,
                    AgentEvent.INTAKE_REFUSED,
                    f"dépôt : {outcome.name} refusé" + (f" ({codes})" if codes else ""),
                    file=outcome.name,
                    problems=codes,
                )

    def _send_profiles(self) -> list[str]:
        return [p.id for p in profiles(self._ctx.params) if p.sends]

    def _send(self, profile: str, report: CycleReport) -> None:
        service = self._transmission
        if not service.due(profile):
            return  # nothing due: backoff times are the service's, nothing is retried early
        if update_gate_held(self._ctx.data_dir / "locks"):
            # The box is about to restart into an update: nothing starts, the lots stay signed
            # and go at the first cycle after the restart (no failure, no backoff).
            status = self._profile(profile)
            status.send_fr, status.send_en = update_in_progress().fr, update_in_progress().en
            self._say(
                logging.INFO, UpdateCode.UPDATE_IN_PROGRESS, f"envoi {profile} : " + status.send_fr
            )
            return
        outcome = asyncio.run(service.send_pending(profile))
        report.sent += len(outcome.sent)
        status = self._profile(profile)
        if outcome.sent:
            status.last_send = _iso(self._ctx.clock.now())
        if outcome.error_code is None:
            status.send_fr = f"{len(outcome.sent)} lot(s) envoyé(s)"
            status.send_en = f"{len(outcome.sent)} lot(s) sent"
            status.network = "ok"
        else:
            status.send_fr, status.send_en = outcome.error_fr, outcome.error_en
            if outcome.unreachable:
                status.network = "waiting"
        if outcome.sent or outcome.waiting:
            words = (
                f"envoi {profile} : {len(outcome.sent)} envoyé(s), {len(outcome.waiting)} en "
                f"attente" + (f" ({outcome.error_fr})" if outcome.error_fr else "")
            )
            self._say(
                logging.INFO if outcome.error_code is None else logging.WARNING,
                outcome.error_code or AgentEvent.SEND_DONE,
                words,
                step=f"send:{profile}",
                profile=profile,
                sent=len(outcome.sent),
                waiting=len(outcome.waiting),
            )

    def _purge_profiles(self) -> list[str]:
        return [p.id for p in profiles(self._ctx.params) if p.fetches]

    def _purge_one(self, profile: str, report: CycleReport) -> None:
        interval = profile_settings(self._ctx.params, profile).pop3_interval
        seconds = interval * self._scale
        status = self._profile(profile)
        # The next purge is planned before this one runs: a failure waits for its turn too.
        self._next_purge[profile] = time.monotonic() + seconds
        status.next_purge = _iso(self._ctx.clock.now() + timedelta(seconds=seconds))
        if self._purge is None:
            self._purge = self._purge_factory()
        try:
            # Each committed message pings the watchdog: a mailbox of thousands is one step.
            result = self._purge.run_once(profile, self._alive)
        except BaseException:
            # A fresh worker next time: the failure may have been the classifier process.
            self.close()
            raise
        report.purged += result.deleted
        status.last_purge = _iso(self._ctx.clock.now())
        status.purge_fr, status.purge_en = result.words("fr"), result.words("en")
        status.network = "ok"
        if result.total or result.stopped:
            self._say(
                logging.WARNING if result.stopped else logging.INFO,
                AgentEvent.PURGE_STOPPED if result.stopped else AgentEvent.PURGE_DONE,
                f"relève : {result.words()}",
                step=f"purge:{profile}",
                profile=profile,
                deleted=result.deleted,
            )
        else:
            self._say(
                logging.DEBUG,
                AgentEvent.PURGE_EMPTY,
                f"relève {profile} : aucun message",
                profile=profile,
            )

    def _overdue(self) -> None:
        days = box_settings(self._ctx.params).arl_overdue_days
        tracking = self._ctx.tracking(self._env)
        raised = tracking.check_overdue(days)
        if raised:
            self._say(
                logging.WARNING,
                AgentEvent.ARL_OVERDUE,
                f"{len(raised)} lot(s) sans ARL dans le délai : alerte",
                lots=len(raised),
            )
        now = self._ctx.clock.now()
        certs = tracking.check_certificates(
            [
                *expiring(self._ctx.params, now, extra=self._ctx.organism_certs().watched()),
                # What the practitioners' SMTP and POP3 servers last presented.
                *self._ctx.server_certs().expiring(now),
            ]
        )
        if certs:
            self._say(
                logging.WARNING,
                AgentEvent.CERT_EXPIRING,
                f"{len(certs)} certificat(s) expiré(s) ou à renouveler : alerte",
                certificates=len(certs),
            )
        tracking.publish_pending()

    def _disk_space_back(self) -> None:
        """A « disque plein » alert ends by itself once the data partition has room again (the
        step that met the full disk has then done its work or will at its next try): Accueil
        no longer counts it, and the journal says when the room came back."""
        from balise.domain.diskspace import is_full

        usage = shutil.disk_usage(self._ctx.data_dir)
        if is_full(usage.free, usage.total):
            return
        resolved = self._ctx.tracking(self._env).resolve_kind("disk_full", "space_recovered")
        if resolved:
            self._say(
                logging.INFO,
                AgentEvent.DISK_SPACE_BACK,
                f"place disponible de nouveau : {resolved} alerte(s) « disque plein » résolue(s)",
            )

    def _housekeeping(self) -> None:
        """Daily encrypted backup to the exchange account's sauvegardes/ (the USB key gets its
        own when plugged in, see app.backup), then evidence retention once a day."""
        if self._backup is None:
            self._backup = backup_service(self._ctx)
        for result in self._backup.run_daily(default_destinations(self._ctx), on_chunk=self._alive):
            if result.ok:
                self._say(
                    logging.INFO,
                    AgentEvent.BACKUP_DONE,
                    f"sauvegarde écrite : {result.path or result.dest} ({size(result.size, 'fr')})",
                    dest=result.dest,
                    size=result.size,
                )
            else:
                code = result.error_code or BackupCode.BACKUP_FAILED
                self._say(
                    logging.ERROR if code in GRAVE_CODES else logging.WARNING,
                    code,
                    f"sauvegarde vers {result.dest} impossible : {result.error_fr or code}",
                    step="housekeeping",
                    dest=result.dest,
                )
        now = self._ctx.clock.now()
        if self._last_retention is None or now - self._last_retention >= timedelta(days=1):
            retention_service(self._ctx).run(now)
            self._last_retention = now

    def _crl(self) -> None:
        """The IGC-Santé CRLs once a day at this box's own minute (from its identity): at once
        when one is missing or past its nextUpdate, again within the hour when none came."""
        from balise.adapters.backup_db import box_id
        from balise.domain.crl import next_fetch

        now = self._ctx.clock.now()
        service = self._ctx.crl_service()
        first = self._next_crl is None
        self._next_crl = next_fetch(box_id(self._ctx.store), now)
        status = service.status()
        if not status or not service.sources():
            return
        if first and all(i.age is not None and i.age.freshness == "fresh" for i in status):
            return
        outcomes = service.fetch_all()
        for outcome in outcomes:
            if not outcome.ok or outcome.kind == "stored":
                self._say(
                    logging.INFO if outcome.ok else logging.WARNING,
                    _CRL_EVENTS[outcome.kind],
                    f"liste de révocation {outcome.url} : {outcome.fr}",
                    url=outcome.url,
                )
        self._crl_alerts(service.status())
        if outcomes and not any(o.ok for o in outcomes):
            self._next_crl = min(self._next_crl, now + timedelta(hours=1))
            first_failure = next(o for o in outcomes if not o.ok)
            raise BaliseError(
                f"aucune liste de révocation téléchargée ({first_failure.fr})",
                f"no revocation list downloaded ({first_failure.en})",
                code=TrustCode.CRL_FETCH,
            )

    def _organisms(self) -> None:
        """The organisms' certificates from the SESAM-Vitale directory, each refreshed once a
        week (at most one try an hour while the directory does not answer)."""
        if box_settings(self._ctx.params).sesam_vitale_directory is None:
            return
        service = self._ctx.organism_certs()
        due = service.due()
        if not due:
            return
        outcomes = service.refresh(due)
        for outcome in outcomes:
            if outcome.kind != "unchanged":
                self._say(
                    logging.INFO if outcome.ok or outcome.kind == "skipped" else logging.WARNING,
                    _DIRECTORY_EVENTS[outcome.kind],
                    f"annuaire, organisme {outcome.organism} : {outcome.fr}",
                    organism=outcome.organism,
                )
        failed = [o for o in outcomes if not o.ok and o.kind != "skipped"]
        if failed and len(failed) == len([o for o in outcomes if o.kind != "skipped"]):
            raise BaliseError(
                f"annuaire SESAM-Vitale : {failed[0].fr}",
                f"SESAM-Vitale directory: {failed[0].en}",
                code=TrustCode.DIRECTORY_FETCH,
            )

    def _crl_alerts(self, status: list[Any]) -> None:
        """One alert per issuer whose CRL is missing or past its nextUpdate plus the grace
        (production then refuses to sign), raised again only after it was acknowledged."""
        tracking = self._ctx.tracking(self._env)
        store = self._ctx.returns_store
        for item in status:
            if item.age is not None and item.age.freshness != "stale":
                continue
            subject = f"crl:{item.issuer_key}"
            if store.open_alert("crl_stale", subject) is not None:
                continue
            if item.age is None:
                fr = f"aucune liste de révocation pour l'autorité {item.subject}"
                en = f"no revocation list for the authority {item.subject}"
            else:
                fr, en = item.age.words()
                fr, en = f"{item.subject} : {fr}", f"{item.subject}: {en}"
            tracking.alert(
                "crl_stale",
                subject,
                f"Liste de révocation : {fr} ; en production, la signature est refusée.",
                f"Revocation list: {en}; in production, signing is refused.",
                {"issuer": item.subject},
            )

    # -- status -----------------------------------------------------------------------------

    def _profile(self, profile: str) -> ProfileStatus:
        return self._profiles.setdefault(profile, ProfileStatus())

    def status(self, state: str = "en marche") -> dict[str, Any]:
        """What the status file holds (also for tests)."""
        profiles: dict[str, Any] = {}
        for profile in sorted(set(self._send_profiles()) | set(self._purge_profiles())):
            s = self._profile(profile)
            waiting = s.network == "waiting"
            profiles[profile] = {
                "last_purge": s.last_purge,
                "next_purge": s.next_purge,
                "last_send": s.last_send,
                "purge_fr": s.purge_fr,
                "purge_en": s.purge_en,
                "send_fr": s.send_fr,
                "send_en": s.send_en,
                "network": s.network,
                "network_fr": WAITING_FR if waiting else "réseau joignable",
                "network_en": WAITING_EN if waiting else "network reachable",
            }
            if s.network == "unknown":
                profiles[profile]["network_fr"] = "réseau pas encore essayé"
                profiles[profile]["network_en"] = "network not tried yet"
        steps = {
            name: {
                "failures": h.failures,
                "code": h.code,
                "fr": h.fr,
                "en": h.en,
            }
            for name, h in sorted(self._health.items())
            if h.failures
        }
        return {
            "version": STATUS_VERSION,
            "pid": os.getpid(),
            "state": state,
            "updated": _iso(self._ctx.clock.now()),
            "cycles": self.cycles,
            "profiles": profiles,
            "failing_steps": steps,
        }

    def status_line(self) -> str:
        """What ``systemctl status balise-agent`` shows: last purge, last send, alerts waiting."""
        purges = sorted(
            ((s.last_purge, p) for p, s in self._profiles.items() if s.last_purge), reverse=True
        )
        sends = sorted(
            ((s.last_send, p) for p, s in self._profiles.items() if s.last_send), reverse=True
        )
        parts = [
            f"dernière relève : {stamp(purges[0][0], 'fr')} ({purges[0][1]})"
            if purges
            else "aucune relève",
            f"dernier envoi : {stamp(sends[0][0], 'fr')} ({sends[0][1]})"
            if sends
            else "aucun envoi",
        ]
        try:
            waiting = len(self._ctx.returns_store.alerts())
            parts.append(f"{waiting} alerte(s) en attente")
        except Exception:  # noqa: BLE001 — the status line never stops the loop
            parts.append("alertes illisibles")
        failing = sorted(name for name, h in self._health.items() if h.failures)
        if failing:
            parts.append("en échec : " + ", ".join(failing))
        return " ; ".join(parts)

    def _write_status(self, state: str) -> None:
        if state != "arrêté":
            self._notifier.status(self.status_line())
        try:
            data = self.status(state)
            write_status(self.status_path, data)
        except Exception as exc:  # noqa: BLE001 — the status is a courtesy, never a reason to stop
            code, fr, _ = _words(exc)
            bug = None if isinstance(exc, BaliseError) else exc
            self._say(logging.ERROR, code, f"fichier d'état non écrit : {fr}", exc=bug)


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def write_status(path: Path, data: Mapping[str, Any]) -> None:
    """Replace the status file atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, ensure_ascii=False, indent=1)
    os.replace(tmp, path)


def read_status(data_dir: Path) -> dict[str, Any] | None:
    """The agent's last status (for the kiosk's wiring), or None if there is none or it is torn."""
    try:
        value = json.loads((data_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
