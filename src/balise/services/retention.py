"""Evidence retention: returns, lots and journal entries older than the period (default 3 years)
are removed by the agent, and a checkpoint journal entry records what went and anchors the chain."""

from __future__ import annotations

from datetime import datetime, timedelta

from balise.domain.backup import RetentionOutcome
from balise.domain.codes import ParamCode
from balise.domain.errors import ValidationError
from balise.ports import RetentionStore
from balise.services.params import ParameterService
from balise.services.settings import box_settings

MIN_DAYS = 1


class RetentionService:
    """Computes the cutoff from the parameter (or an explicit override) and runs the purge."""

    def __init__(self, store: RetentionStore, params: ParameterService) -> None:
        self._store = store
        self._params = params

    def days(self) -> int:
        return box_settings(self._params).retention_days

    def run(self, now: datetime, *, older_than_days: int | None = None) -> RetentionOutcome:
        """Remove what is older than ``now`` minus the retention period, in one transaction."""
        days = self.days() if older_than_days is None else older_than_days
        if days < MIN_DAYS:
            raise ValidationError(
                "durée de conservation d'au moins un jour attendue",
                "a retention period of at least one day is expected",
                code=ParamCode.RETENTION_DAYS,
            )
        cutoff = (now - timedelta(days=days)).isoformat(timespec="microseconds")
        return self._store.purge(cutoff, now.isoformat(timespec="seconds"))
