"""Lot state changes: the domain's transition table, a compare-and-set, and a journal entry, as one."""

from __future__ import annotations

from balise.domain.journal import JsonValue
from balise.domain.lotstate import LotState, check_transition
from balise.ports import Clock, Journal, LotStore


class LotTransitions:
    """Every lot transition in Balise goes through here (so every one is checked and journaled)."""

    def __init__(self, lots: LotStore, journal: Journal, clock: Clock) -> None:
        self._lots = lots
        self._journal = journal
        self._clock = clock

    def move(
        self,
        lot_id: int,
        current: LotState,
        target: LotState,
        *,
        note: str = "",
        details: dict[str, JsonValue] | None = None,
        **fields: object,
    ) -> None:
        reason = check_transition(current, target)
        when = self._clock.now().isoformat(timespec="seconds")
        entry: dict[str, JsonValue] = {"from": current.value, "to": target.value, "reason": reason}
        if note:
            entry["note"] = note
        entry.update(details or {})
        with self._lots.transaction():
            self._lots.set_state(lot_id, current, target, when, **fields)
            self._journal.append("lot.state", f"lot:{lot_id}", entry)
