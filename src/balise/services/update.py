"""Self-updates, the app's use cases: the technician's policy for the root helper, the attempt
recorded before the restart, and resolving it at the next boot (success, or the box came back to
its previous version: said on Accueil as an alert, and journaled)."""

from __future__ import annotations

from dataclasses import dataclass

from balise.domain.journal import JsonValue
from balise.domain.update import (
    LastUpdate,
    PendingUpdate,
    UpdatePolicy,
    parse_version,
    resolve,
    rollback_words,
)
from balise.ports import Alerts, Clock, Journal, StoreTransaction, UpdateState
from balise.services.settings import ParamReader, box_settings

# The alert Accueil shows when a boot came back to the previous version.
ROLLBACK_ALERT = "update.rolled_back"


@dataclass(frozen=True, slots=True)
class Resolved:
    """What this boot found: the attempt it resolved (None: nothing was pending)."""

    last: LastUpdate | None
    alert_id: int | None = None


class UpdateService:
    def __init__(
        self,
        params: ParamReader,
        state: UpdateState,
        journal: Journal,
        clock: Clock,
        alerts: Alerts,
        alerts_transaction: StoreTransaction,
        running: str,
    ) -> None:
        self._params = params
        self._state = state
        self._journal = journal
        self._clock = clock
        self._alerts = alerts
        self._transaction = alerts_transaction
        self.running = running

    def policy(self) -> UpdatePolicy:
        box = box_settings(self._params)
        return UpdatePolicy(box.update_hold, box.update_allow, self.running)

    def record(self, version: str) -> PendingUpdate:
        """Root installed ``version`` and is about to restart into it: keep it as the pending
        attempt (with the version that recorded it), journaled."""
        pending = PendingUpdate(parse_version(version), self.running, self._clock.now())
        with self._state.transaction():
            self._state.set_pending(pending)
            self._journal.append(
                "update.installed",
                f"version:{pending.version}",
                {
                    "version": pending.version,
                    "from": self.running,
                    "words": f"update to {pending.version} installed, restarting",
                },
            )
        return pending

    def last(self) -> LastUpdate | None:
        return self._state.last()

    def pending(self) -> PendingUpdate | None:
        return self._state.pending()

    def resolve_pending(self) -> Resolved:
        """This boot runs ``running``: the pending attempt (if any) succeeded when it is the
        version installed, else the box fell back to its previous slot. Cleared either way."""
        pending = self._state.pending()
        if pending is None:
            return Resolved(None)
        now = self._clock.now()
        last = resolve(pending, self.running, now)
        alert_id: int | None = None
        details: dict[str, JsonValue] = {
            "version": pending.version,
            "running": self.running,
            "previous": pending.previous,
        }
        with self._transaction.transaction():
            self._state.set_last(last)
            self._state.set_pending(None)
            if last.outcome == "success":
                self._journal.append(
                    "update.succeeded",
                    f"version:{pending.version}",
                    {**details, "words": f"mise à jour {pending.version} réussie"},
                )
            else:
                fr, en = rollback_words(self.running)
                self._journal.append(
                    "update.rolled_back", f"version:{pending.version}", {**details, "words": fr}
                )
                alert_id = self._alerts.add_alert(
                    ROLLBACK_ALERT,
                    f"version:{pending.version}",
                    (fr, en),
                    details,
                    now.isoformat(timespec="seconds"),
                )
                self._journal.append(
                    "alert.raised",
                    f"version:{pending.version}",
                    {"kind": ROLLBACK_ALERT, "alert": alert_id},
                )
        return Resolved(last, alert_id)
