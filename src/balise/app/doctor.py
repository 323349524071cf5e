"""`balise doctor`: one line per check, OK / attention / problème, in words; problems exit non-zero."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

from balise.adapters.clock import SystemClock
from balise.adapters.kek import locate_kek
from balise.adapters.pkcs11_modules import probe_modules
from balise.adapters.store import DB_NAME
from balise.app.context import Context, open_context
from balise.domain.errors import BaliseError, ConfigError
from balise.domain.hygiene import findings_for
from balise.domain.journal import JsonValue
from balise.domain.params import SCHEMA, Scope
from balise.ports import Clock
from balise.services.settings import (
    box_settings,
    organism_ids,
    organism_settings,
    profile_ids,
    profile_settings,
)

Status = Literal["ok", "warn", "problem"]
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
LABELS = {"ok": "OK", "warn": "ATTENTION", "problem": "PROBLÈME"}
# The stable code of each check (`balise doctor --json`): the names are words for people.
CODES = {
    "dossier de données": "data_dir",
    "clé (KEK)": "kek",
    "base de données": "database",
    "journal": "journal",
    "paramètres": "params",
    "hygiène des BAL": "mailbox_hygiene",
    "module PKCS#11": "pkcs11_module",
    "service pcscd": "pcscd",
    "lecteurs": "readers",
    "horloge": "clock",
    "version": "version",
    "mise à jour": "last_update",
}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    message: str
    # What `balise doctor --json` also says as data (the version, the last update).
    facts: Mapping[str, JsonValue] | None = None

    @property
    def code(self) -> str:
        return CODES[self.name]

    def line(self) -> str:
        return f"{LABELS[self.status]:<10} {self.name:<22} {self.message}"


def run_checks(
    data_dir: Path, env: Mapping[str, str] | None = None, clock: Clock | None = None
) -> list[Check]:
    checks: list[Check] = []
    the_clock = clock or SystemClock()
    if data_dir.is_dir() and os.access(data_dir, os.W_OK):
        perms = data_dir.stat().st_mode & 0o777
        if perms & 0o077:
            checks.append(
                Check(
                    "dossier de données",
                    "warn",
                    f"{data_dir} accessible à d'autres utilisateurs ({perms:o})",
                )
            )
        else:
            checks.append(Check("dossier de données", "ok", str(data_dir)))
    elif data_dir.exists():
        checks.append(
            Check("dossier de données", "problem", f"{data_dir} n'est pas un dossier inscriptible")
        )
    else:
        checks.append(Check("dossier de données", "warn", f"{data_dir} pas encore créé"))

    checks.append(_version_check(env))
    ctx: Context | None = None
    try:
        source = locate_kek(env)
        ctx = open_context(data_dir, actor="doctor", env=env, clock=the_clock, create=False)
    except BaliseError as exc:
        checks.append(Check("clé (KEK)", "problem", exc.fr))
    mode = "test"
    if ctx is not None:
        try:
            mode = str(ctx.params.get("mode"))
            checks += _context_checks(ctx, mode, source.describe(), source.protection)
            checks.append(_update_check(ctx))
        finally:
            ctx.close()
    checks += _device_checks(mode)
    synced = the_clock.is_synchronized()
    checks.append(
        Check("horloge", "ok", "synchronisée")
        if synced
        else Check(
            "horloge",
            "warn",
            "non synchronisée : la signature est bloquée jusqu'à la synchronisation NTP",
        )
    )
    return checks


def _context_checks(ctx: Context, mode: str, kek_words: str, protection: str) -> list[Check]:
    checks: list[Check] = []
    override = ctx.params.get("weak_key_override") == "oui"
    if protection == "faible":
        status: Status = "problem" if mode == "production" and not override else "warn"
        extra = (
            " — le mode production refuse de démarrer sans dérogation du technicien"
            if status == "problem"
            else ""
        )
        checks.append(Check("clé (KEK)", status, kek_words + extra))
    else:
        checks.append(Check("clé (KEK)", "ok", kek_words))
    pragmas = ctx.store.pragmas()
    if pragmas["journal_mode"] == "wal" and pragmas["synchronous"] == 2:
        checks.append(
            Check(
                "base de données",
                "ok",
                f"{DB_NAME} : WAL, synchronous=FULL, {len(ctx.store.applied_migrations())} migration(s)",
            )
        )
    else:
        checks.append(
            Check(
                "base de données",
                "problem",
                "réglages de durabilité incorrects : "
                + ", ".join(f"{name}={value}" for name, value in sorted(pragmas.items())),
            )
        )
    report = ctx.journal.verify(full=False)  # what is new since the last check
    checks.append(Check("journal", "ok" if report.ok else "problem", report.describe()))
    corrupt = []
    for scope_id, name in ctx.vault.names():
        try:
            ctx.vault.get(scope_id, name)
        except BaliseError:
            corrupt.append(f"{name} ({scope_id or 'global'})")
    wrong = [] if corrupt else _wrongly_typed(ctx)
    if corrupt:
        checks.append(Check("paramètres", "problem", "entrées corrompues : " + ", ".join(corrupt)))
    elif wrong:
        checks += [Check("paramètres", "problem", words) for words in wrong]
    else:
        profiles = ctx.params.ids(Scope.PROFILE)
        organisms = ctx.params.ids(Scope.ORGANISM)
        if not profiles:
            checks.append(
                Check(
                    "paramètres", "warn", f"mode {mode} ; aucun praticien configuré pour l'instant"
                )
            )
        else:
            missing = [
                f"{p}: {spec.name}"
                for p in profiles
                for (scope, _), spec in SCHEMA.items()
                if scope is Scope.PROFILE
                and spec.default is None
                and ctx.params.get(spec.name, profile=p) is None
            ]
            words = f"mode {mode} ; {len(profiles)} praticien(s), {len(organisms)} organisme(s)"
            if missing:
                checks.append(
                    Check(
                        "paramètres",
                        "warn",
                        words
                        + " ; à compléter : "
                        + ", ".join(missing[:6])
                        + (" …" if len(missing) > 6 else ""),
                    )
                )
            else:
                checks.append(Check("paramètres", "ok", words))
            checks += _hygiene_checks(ctx)
    return checks


def _version_check(env: Mapping[str, str] | None) -> Check:
    """The version this box runs: the image's (os-release IMAGE_VERSION), else the package's."""
    from balise.adapters.update_state import image_version, os_release_paths, running_version

    running = running_version(env)
    source = "système" if image_version(os_release_paths(env)) is not None else "paquet Balise"
    return Check("version", "ok", f"{running} ({source})", {"running": running})


def _update_check(ctx: Context) -> Check:
    """How the last self-update ended, and one installed waiting for its restart."""
    from dataclasses import replace

    from balise.adapters.update_state import StoreUpdateState

    state = StoreUpdateState(ctx.store)
    last, pending = state.last(), state.pending()
    facts: dict[str, JsonValue] = {"last_update": None, "pending": None}
    words, status = "aucune mise à jour pour l'instant", "ok"
    if last is not None:
        facts["last_update"] = {
            "version": last.version,
            "running": last.running,
            "when": last.when.isoformat(timespec="seconds"),
            "outcome": last.outcome,
        }
        words = replace(last, when=last.when.astimezone()).words()[0]
        status = "ok" if last.outcome == "success" else "warn"
    if pending is not None:
        facts["pending"] = pending.version
        words += f" ; {pending.version} installée, en attente du redémarrage"
    return Check("mise à jour", "ok" if status == "ok" else "warn", words, facts)


def _wrongly_typed(ctx: Context) -> list[str]:
    """The words of each scope's first value stored with a type the box cannot use (the typed
    settings refuse it where it is needed: PARAM_TYPE)."""
    reads: list[Callable[[], object]] = [partial(box_settings, ctx.params)]
    reads += [partial(profile_settings, ctx.params, p) for p in profile_ids(ctx.params)]
    reads += [partial(organism_settings, ctx.params, o) for o in organism_ids(ctx.params)]
    out = []
    for read in reads:
        try:
            read()
        except ConfigError as exc:
            out.append(exc.fr)
    return out


def _hygiene_checks(ctx: Context) -> list[Check]:
    """Every mailbox hygiene finding, one line each (a refusal is a problem)."""
    findings = findings_for(ctx.params.view())
    if not findings:
        return [Check("hygiène des BAL", "ok", "aucune remarque")]
    return [
        Check("hygiène des BAL", "problem" if f.refused else "warn", f"{f.fr} [{f.code}]")
        for f in findings
    ]


def _device_checks(mode: str) -> list[Check]:
    checks: list[Check] = []
    modules = probe_modules(mode)
    if modules:
        checks.append(
            Check("module PKCS#11", "ok", ", ".join(f"{m.kind} {m.path}" for m in modules))
        )
    else:
        checks.append(
            Check(
                "module PKCS#11",
                "warn",
                "aucun module de carte CPS (CryptoLib CPS ou OpenSC) sur cette machine",
            )
        )
    if PCSCD_SOCKET.exists():
        checks.append(Check("service pcscd", "ok", f"socket {PCSCD_SOCKET}"))
        checks.append(_readers_check())
    else:
        checks.append(
            Check("service pcscd", "warn", "pcscd ne tourne pas : aucun lecteur de carte visible")
        )
        checks.append(Check("lecteurs", "warn", "non vérifiés (pcscd absent)"))
    return checks


def _readers_check() -> Check:
    try:
        from smartcard.System import readers

        names = [str(r) for r in readers()]
    except Exception:  # noqa: BLE001 — any PC/SC failure is reported in words
        return Check(
            "lecteurs", "warn", "liste des lecteurs impossible : pcscd ne répond pas comme prévu"
        )
    if not names:
        return Check("lecteurs", "warn", "aucun lecteur de carte branché")
    return Check("lecteurs", "ok", ", ".join(names))
