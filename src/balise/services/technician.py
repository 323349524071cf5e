"""Technician passphrase gate: Argon2id check, growing delay after each failure, lock-out after
five; failures are counted durably (a restart does not reset them) and every attempt is journaled."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from balise.domain.codes import SetupCode
from balise.domain.errors import StateError
from balise.domain.technician import GateRecord
from balise.ports import Clock, GateStore, Journal
from balise.services.params import ParameterService

PARAM = "technician_passphrase"
MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)

Verdict = Literal["ok", "wrong", "wait", "locked", "unset"]


@dataclass(frozen=True, slots=True)
class GateStatus:
    """What the screen shows: how long to wait before the next try, or until when it is locked."""

    failures: int
    wait_s: float
    locked_until: datetime | None

    @property
    def locked(self) -> bool:
        return self.locked_until is not None


@dataclass(frozen=True, slots=True)
class Attempt:
    verdict: Verdict
    status: GateStatus


def delay_after(failures: int) -> timedelta:
    """1, 2, 4, 8 s after the 1st, 2nd, 3rd, 4th failure (the 5th locks)."""
    if failures <= 0:
        return timedelta(0)
    return timedelta(seconds=2 ** (failures - 1))


class TechnicianGate:
    """The only way into technician mode. The passphrase itself is never journaled or kept."""

    def __init__(
        self, params: ParameterService, store: GateStore, journal: Journal, clock: Clock
    ) -> None:
        self._params = params
        self._store = store
        self._journal = journal
        self._clock = clock

    def has_passphrase(self) -> bool:
        return self._params.get(PARAM) is not None

    def set_passphrase(self, text: str) -> None:
        """First start without provisioning: the first passphrase is set in the kiosk, once."""
        if self.has_passphrase():
            raise StateError(
                "La phrase de passe technicien est déjà définie.",
                "The technician passphrase is already set.",
                code=SetupCode.TECH_PASSPHRASE_SET,
            )
        self._params.set(PARAM, text)
        self._journal.append("technician.passphrase_set", "technician", {})

    def status(self) -> GateStatus:
        record = self._store.load()
        now = self._clock.now()
        if record.locked_until is not None:
            if now < record.locked_until:
                wait = (record.locked_until - now).total_seconds()
                return GateStatus(record.failures, wait, record.locked_until)
            # The lock-out is over: a fresh start, but the next failure is counted from one.
            record = GateRecord()
            self._store.save(record)
        wait = 0.0
        if record.last_failure is not None:
            wait = max(
                0.0, (record.last_failure + delay_after(record.failures) - now).total_seconds()
            )
        return GateStatus(record.failures, wait, None)

    def attempt(self, candidate: str) -> Attempt:
        """One try: refused without checking while waiting or locked; journaled in every case."""
        if not self.has_passphrase():
            self._journal.append("technician.login", "technician", {"result": "unset"})
            return Attempt("unset", self.status())
        before = self.status()
        if before.locked or before.wait_s > 0:
            verdict: Verdict = "locked" if before.locked else "wait"
            self._journal.append(
                "technician.login",
                "technician",
                {"result": verdict, "failures": before.failures, "wait_s": round(before.wait_s)},
            )
            return Attempt(verdict, before)
        if self._params.check_passphrase(PARAM, candidate):
            self._store.save(GateRecord())
            self._journal.append("technician.login", "technician", {"result": "ok"})
            return Attempt("ok", GateStatus(0, 0.0, None))
        now = self._clock.now()
        failures = before.failures + 1
        locked_until = now + LOCKOUT if failures >= MAX_FAILURES else None
        self._store.save(GateRecord(failures, now, locked_until))
        after = self.status()
        self._journal.append(
            "technician.login",
            "technician",
            {
                "result": "locked" if locked_until else "wrong",
                "failures": failures,
                "wait_s": round(after.wait_s),
            },
        )
        return Attempt("locked" if locked_until else "wrong", after)
