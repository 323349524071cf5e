"""``retours/etat.json``: the box's state for the practice software to show (docs/exchange.md,
schema docs/schemas/exchange/etat.schema.json) — the Balise version, each practitioner's last purge
and last sending session, the alerts waiting counted by kind, the age of the last good backup and
the end of validity of every certificate the box depends on.

Only the box's own facts: no secret, no patient data, no text that came from outside (an alert's
words may quote a mail; only its kind is given). The agent calls ``refresh_in_cycle`` once per
cycle: the file is rewritten when the journal has moved since it was written (a purge, a
sending session, an alert, a lot's change: all journaled) and at least every REFRESH_S seconds
(its ``genere_le`` says the agent is alive); otherwise the call costs two indexed reads. An intake
round that took files rewrites it at once."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import balise
from balise.adapters.activity import StoreActivity
from balise.app.context import Context
from balise.domain.journal import JsonValue
from balise.services.certwatch import expiring
from balise.services.settings import box_settings, profiles

SCHEMA = "balise.etat/1"
STATE_FILE = "etat.json"
REFRESH_S = 300
# Receipts (retours/recus/) and refusal reports (retours/refus/) are kept this long.
KEEP_DAYS = 90
PRUNED_KEY = "exchange.pruned"
# Every certificate, however far its end: the state file lists them all.
_ALL_DAYS = 365 * 100


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def _fresh(raw: bytes | None, now: datetime) -> bool:
    """Whether the published state was written less than REFRESH_S ago (by this clock)."""
    if raw is None:
        return False
    try:
        held = json.loads(raw)
        written = datetime.fromisoformat(str(held["genere_le"]))
    except (ValueError, KeyError, TypeError):
        return False
    age = now - written
    return timedelta(0) <= age < timedelta(seconds=REFRESH_S)


def box_state(ctx: Context, now: datetime) -> dict[str, JsonValue]:
    """The state document (docs/exchange.md § etat.json)."""
    from balise.app.backup import backup_service

    params = ctx.params
    activity = StoreActivity(ctx.store)
    seen = activity.last_activity()
    outbox_status = _outbox_status(ctx)
    practitioners: list[JsonValue] = []
    for settings in profiles(params):
        profile = settings.id
        facts = seen.get(profile, {})
        failing = outbox_status(profile)
        practitioners.append(
            {
                "profil": profile,
                "emetteur": settings.emitter_number,
                "derniere_releve": facts.get("purge"),
                "dernier_envoi": facts.get("send"),
                "envoi_en_erreur": failing,
            }
        )
    alerts = activity.open_alerts()
    backup = backup_service(ctx).status()
    certificates: list[dict[str, JsonValue]] = []
    found = [
        *expiring(params, now, _ALL_DAYS, extra=ctx.organism_certs().watched()),
        *ctx.server_certs().expiring(now, _ALL_DAYS),
    ]
    seen_prints: set[str] = set()
    for item in sorted(found, key=lambda e: (e.not_after, e.fingerprint)):
        key = f"{item.fingerprint}|{item.where}|{item.role}"
        if key in seen_prints:
            continue
        seen_prints.add(key)
        left = item.not_after - now
        certificates.append(
            {
                "role": item.role,
                "ou": item.where,
                "empreinte": item.fingerprint,
                "expire_le": _iso(item.not_after),
                "jours_restants": left.days,
                "expire": item.expired,
            }
        )
    return {
        "schema": SCHEMA,
        "genere_le": _iso(now),
        "version": balise.__version__,
        "mode": box_settings(params).mode,
        "praticiens": practitioners,
        "alertes": {
            "total": sum(alerts.values()),
            "par_type": dict[str, JsonValue](sorted(alerts.items())),
        },
        "sauvegarde": {
            "derniere": None if backup.last_ok is None else _iso(backup.last_ok),
            "age_heures": None if backup.age is None else int(backup.age.total_seconds() // 3600),
            "trop_ancienne": backup.too_old,
        },
        "certificats": list[JsonValue](certificates),
    }


def _outbox_status(ctx: Context) -> Callable[[str], str | None]:
    """profile -> the code of the sending failure in force, or None."""
    from balise.adapters.outbox import SqliteOutbox

    outbox = SqliteOutbox(ctx.store)

    def status(profile: str) -> str | None:
        held = outbox.status(profile)
        return None if held is None else held.get("code")

    return status


def refresh_state(
    ctx: Context, env: Mapping[str, str] | None = None, *, force: bool = False
) -> bool:
    """Write ``retours/etat.json`` (whole, durable) unless, ``force`` False, it is fresh and the
    journal has not moved since; returns whether it was written."""
    exchange = ctx.exchange(env)
    now = ctx.clock.now()
    activity = StoreActivity(ctx.store)
    head = activity.journal_head()
    if (
        not force
        and activity.state_head() == head
        and _fresh(exchange.published(STATE_FILE, 256 * 1024), now)
    ):
        return False
    document = box_state(ctx, now)
    exchange.publish(
        STATE_FILE, json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"
    )
    activity.record_state_head(head)
    return True


def prune_receipts(ctx: Context, env: Mapping[str, str] | None = None) -> int:
    """Once a day: the receipts and refusal reports older than KEEP_DAYS removed (the practice
    software cannot remove them, and reads them within minutes); returns how many."""
    now = ctx.clock.now()
    today = now.date().isoformat()
    if ctx.store.meta_get(PRUNED_KEY) == today:
        return 0
    exchange = ctx.exchange(env)
    cutoff = (now - timedelta(days=KEEP_DAYS)).timestamp()
    removed = sum(exchange.prune(folder, cutoff) for folder in ("recus", "refus"))
    ctx.store.meta_set(PRUNED_KEY, today)
    return removed


def refresh_in_cycle(ctx: Context, env: Mapping[str, str] | None = None) -> None:
    """The agent's call, once per cycle: cheap while the published state is fresh (and the
    daily pruning of old receipts done)."""
    refresh_state(ctx, env)
    prune_receipts(ctx, env)


def refresh_after_intake(ctx: Context, env: Mapping[str, str] | None = None) -> None:
    """After an intake round that took files: the state at once. A failure here never stops
    intake (the receipts are written); the agent's next refresh tries again and reports."""
    with contextlib.suppress(Exception):  # a courtesy file, retried by the agent's cycle
        refresh_state(ctx, env, force=True)
