"""What the box's state file (retours/etat.json) needs from the database, cheaply: the last purge
and the last sending session of each practitioner (read from the journal incrementally: only the
entries appended since the last call, the running answer kept in the meta table) and the open
alerts counted by kind (through the alerts_open index)."""

from __future__ import annotations

import json
from typing import Any

from balise.adapters.store import Store

ACTIVITY_KEY = "exchange.activity"
# The journal's head when retours/etat.json was last written: nothing journaled since, nothing new.
STATE_HEAD_KEY = "exchange.etat.head"
# journal kind -> what it tells about its profile (subject "profile:<id>")
_KINDS = {"purge.run": "purge", "transmission.session": "send"}


class StoreActivity:
    def __init__(self, store: Store) -> None:
        self._store = store

    def last_activity(self) -> dict[str, dict[str, str]]:
        """profile -> {"purge": ISO time, "send": ISO time} (a key absent: never seen)."""
        raw = self._store.meta_get(ACTIVITY_KEY)
        state: dict[str, Any] = {}
        if raw is not None:
            try:
                loaded = json.loads(raw)
            except ValueError:
                loaded = None
            if isinstance(loaded, dict):
                state = loaded
        seq = state.get("seq")
        since = seq if isinstance(seq, int) else 0
        known = state.get("profiles")
        profiles: dict[str, dict[str, str]] = {}
        if isinstance(known, dict):
            for profile, facts in known.items():
                if isinstance(facts, dict):
                    profiles[str(profile)] = {str(k): str(v) for k, v in facts.items()}
        marks = ", ".join("?" for _ in _KINDS)
        head = self._store.conn.execute("SELECT MAX(seq) FROM journal").fetchone()[0]
        # Row by row (the first call on a box of ten years meets every purge it ever made: held
        # at once, they took the agent's first cycle to 226 MiB).
        rows = self._store.conn.execute(
            f"SELECT seq, time, kind, subject FROM journal WHERE seq > ? AND seq <= ? "  # noqa: S608
            f"AND kind IN ({marks}) ORDER BY seq",
            (since, head if isinstance(head, int) else since, *_KINDS),
        )
        for _seq, time, kind, subject in rows:
            if not str(subject).startswith("profile:"):
                continue
            profiles.setdefault(str(subject)[8:], {})[_KINDS[str(kind)]] = str(time)
        if isinstance(head, int) and head > since:
            self._store.meta_set(
                ACTIVITY_KEY, json.dumps({"seq": head, "profiles": profiles}, sort_keys=True)
            )
        return profiles

    def journal_head(self) -> int:
        head = self._store.conn.execute("SELECT MAX(seq) FROM journal").fetchone()[0]
        return head if isinstance(head, int) else 0

    def state_head(self) -> int | None:
        """The journal head recorded with the last state written (None: never)."""
        raw = self._store.meta_get(STATE_HEAD_KEY)
        return int(raw) if raw is not None and raw.isdigit() else None

    def record_state_head(self, head: int) -> None:
        self._store.meta_set(STATE_HEAD_KEY, str(head))

    def open_alerts(self) -> dict[str, int]:
        """kind -> number of alerts not acknowledged."""
        rows = self._store.conn.execute(
            "SELECT kind, COUNT(*) FROM alerts WHERE acknowledged IS NULL GROUP BY kind"
        ).fetchall()
        return {str(kind): int(count) for kind, count in rows}
