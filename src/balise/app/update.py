"""Self-updates, composed: the update service on a box's data, and `balise update health` — the
app's side of this boot's health check (database opens with its migrations applied, the
journal's daily check verifies, the parameters' vault opens), which also resolves the pending
attempt once every check passed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from balise.adapters.schema_copies import RestoredCopy
from balise.adapters.update_state import StoreUpdateState, running_version
from balise.app.context import Context, open_context
from balise.domain.errors import BaliseError
from balise.domain.journal import JsonValue
from balise.domain.update import LastUpdate, restored_words
from balise.ports import Clock
from balise.services.update import UpdateService


def update_service(ctx: Context, env: Mapping[str, str] | None = None) -> UpdateService:
    store = ctx.returns_store
    return UpdateService(
        ctx.params,
        StoreUpdateState(ctx.store),
        ctx.journal,
        ctx.clock,
        store,
        store,
        running_version(env),
    )


def last_update(ctx: Context) -> LastUpdate | None:
    """The last update attempt resolved on this box (for Accueil and `balise doctor`)."""
    return StoreUpdateState(ctx.store).last()


@dataclass(frozen=True, slots=True)
class HealthCheck:
    code: str  # database, journal, vault
    ok: bool
    fr: str
    en: str


@dataclass(slots=True)
class HealthReport:
    running: str
    checks: list[HealthCheck] = field(default_factory=list)
    resolved: LastUpdate | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)


def check_health(
    data_dir: Path, *, env: Mapping[str, str] | None = None, clock: Clock | None = None
) -> HealthReport:
    """Never prompts; each check says why it failed. The pending attempt is resolved only when
    every check passed: a failing boot leaves it to the boot after (the previous slot), which
    then says the update was cancelled."""
    report = HealthReport(running_version(env))
    try:
        ctx = open_context(data_dir, actor="update", env=env, clock=clock, create=False)
    except BaliseError as exc:
        report.checks.append(
            HealthCheck("database", False, f"base de données : {exc.fr}", f"database: {exc.en}")
        )
        return report
    try:
        migrations = len(ctx.store.applied_migrations())
        report.checks.append(
            HealthCheck(
                "database",
                True,
                f"base de données ouverte, {migrations} migration(s) appliquée(s)",
                f"database open, {migrations} migration(s) applied",
            )
        )
        journal = ctx.journal.verify(full=False)
        report.checks.append(
            HealthCheck(
                "journal",
                journal.ok,
                journal.describe(),
                f"journal {'intact' if journal.ok else 'broken'}: {journal.count} entries"
                + ("" if journal.ok else " (balise journal verify --full says where)"),
            )
        )
        report.checks.append(_vault_check(ctx))
        if report.ok:
            report.resolved = update_service(ctx, env).resolve_pending().last
    finally:
        ctx.close()
    return report


def _vault_check(ctx: Context) -> HealthCheck:
    """Every parameter of the vault decrypts (the data key unwrapped by this boot's KEK)."""
    broken = []
    count = 0
    for scope_id, name in ctx.vault.names():
        count += 1
        try:
            ctx.vault.get(scope_id, name)
        except BaliseError:
            broken.append(f"{name} ({scope_id or 'global'})")
    if broken:
        listed = ", ".join(broken[:6])
        return HealthCheck(
            "vault",
            False,
            f"paramètres illisibles : {listed}",
            f"unreadable parameters: {listed}",
        )
    return HealthCheck(
        "vault", True, f"paramètres lisibles ({count})", f"parameters readable ({count})"
    )


# The alert Accueil shows when an older version put back its copy of the database.
RESTORED_ALERT = "database.restored"


def note_restored(ctx: Context, restored: RestoredCopy) -> None:
    """Journal the restore of the pre-update copy and raise its alert (once: only the process
    that restored it gets here)."""
    fr, en = restored_words(restored.schema, restored.newer_kept.name)
    details: dict[str, JsonValue] = {
        "schema": restored.schema,
        "newer_schema": restored.newer_schema,
        "copy": restored.copy.name,
        "newer_kept": restored.newer_kept.name,
    }
    store = ctx.returns_store
    now = ctx.clock.now().isoformat(timespec="seconds")
    with store.transaction():
        ctx.journal.append(RESTORED_ALERT, "database", {**details, "words": fr})
        alert_id = store.add_alert(RESTORED_ALERT, "database", (fr, en), details, now)
        ctx.journal.append("alert.raised", "database", {"kind": RESTORED_ALERT, "alert": alert_id})
