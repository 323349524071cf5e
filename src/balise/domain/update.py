"""Self-updates of the box, the app's side (pure): the version strings, the technician's policy,
the pending attempt and how a boot resolves it, and the error codes and words of the area.

The whole system image is updated by systemd-sysupdate (A/B slots, signed SHA256SUMS, boot
counting); the app tells the root helper what the technician decided (hold, allow), keeps any
new signing or sending from starting while the box prepares to restart (the update gate), and
says on Accueil and in ``balise doctor`` which version runs and how the last update went.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from balise.domain.errors import StateError, ValidationError
from balise.domain.vocabulary import moment


class UpdateCode(StrEnum):
    """Every error code of the update area (one place: the errors issue's enums may absorb it)."""

    UPDATE_VERSION = "UPDATE_VERSION"  # a version string that is not one
    UPDATE_IN_PROGRESS = "UPDATE_IN_PROGRESS"  # the gate holds: no new signing nor sending
    UPDATE_GATE_TIMEOUT = "UPDATE_GATE_TIMEOUT"  # a batch still ran when the gate gave up
    UPDATE_HEALTH = "UPDATE_HEALTH"  # a check of `balise update health` failed
    DB_MIGRATION = "DB_MIGRATION"  # a schema migration failed: the database is as it was
    DB_NEWER = "DB_NEWER"  # a newer version's database and no copy of this version's to restore


class UpdateEvent(StrEnum):
    """What the update commands did, routine or not (the ``BALISE_CODE`` of their log records
    that are not a failure's code): a technician filters the system journal on them."""

    UPDATE_GATE_READY = "UPDATE_GATE_READY"  # the gate holds: the root helper may restart
    UPDATE_GATE_RELEASED = "UPDATE_GATE_RELEASED"
    UPDATE_RECORDED = "UPDATE_RECORDED"  # a version installed in the other slot, restarting
    UPDATE_SUCCEEDED = "UPDATE_SUCCEEDED"  # the version tried is the one running: kept
    UPDATE_ROLLED_BACK = "UPDATE_ROLLED_BACK"  # the box came back to the previous version


# A version as the image's os-release says it (IMAGE_VERSION) and systemd-sysupdate compares it:
# letters, digits and . ~ ^ -, starting with a letter or digit (never an option for the root
# helper's command line; no _, which separates the version in the update's file names), 64
# characters at most — the root helper (ansible/roles/update) checks the same form.
VERSION_MAX = 64
_VERSION_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z.~^-]{0,63}")


def parse_version(raw: str) -> str:
    """A version string, checked with bounds; ValidationError UPDATE_VERSION in words."""
    value = raw.strip()
    if not _VERSION_RE.fullmatch(value):
        shown = value[:VERSION_MAX] + ("…" if len(value) > VERSION_MAX else "")
        raise ValidationError(
            f"version invalide « {shown} » : de 1 à {VERSION_MAX} lettres, chiffres ou . ~ ^ -, "
            "commençant par une lettre ou un chiffre",
            f"invalid version '{shown}': 1 to {VERSION_MAX} letters, digits or . ~ ^ -, "
            "starting with a letter or a digit",
            code=UpdateCode.UPDATE_VERSION,
        )
    return value


def version_or_empty(raw: str) -> str:
    """The ``update_allow`` parameter: a version, or empty (none allowed)."""
    return "" if not raw.strip() else parse_version(raw)


def update_in_progress() -> StateError:
    """What a signing or a sending that wants to start meets while the update gate holds."""
    return StateError(
        "Mise à jour en cours : la télétransmission reprendra après le redémarrage de la box.",
        "Update in progress: teletransmission will resume after the box restarts.",
        code=UpdateCode.UPDATE_IN_PROGRESS,
    )


def gate_timeout(seconds: float) -> StateError:
    return StateError(
        f"une signature ou un envoi est toujours en cours après {seconds:g} s : "
        "la box ne redémarre pas maintenant (nouvel essai la nuit prochaine)",
        f"a signing or a sending is still running after {seconds:g} s: the box does not "
        "restart now (another try next night)",
        code=UpdateCode.UPDATE_GATE_TIMEOUT,
    )


@dataclass(frozen=True, slots=True)
class UpdatePolicy:
    """What the root helper asks before it looks for an update."""

    hold: bool  # keep the running version: install nothing (unless allowed)
    allow: str | None  # allowed by the technician (never an older one: balise-update)
    running: str


@dataclass(frozen=True, slots=True)
class PendingUpdate:
    """An update installed, the box about to restart into it (``balise update record``)."""

    version: str
    previous: str  # the version that recorded it
    recorded: datetime


Outcome = Literal["success", "rolled_back"]


@dataclass(frozen=True, slots=True)
class LastUpdate:
    """How the last update attempt ended, as Accueil and `balise doctor` say it."""

    version: str  # the version the box tried to update to
    running: str  # the version running when it was resolved
    when: datetime
    outcome: Outcome

    def words(self) -> tuple[str, str]:
        return last_update_words(self)


def resolve(pending: PendingUpdate, running: str, now: datetime) -> LastUpdate:
    """The boot after `update record`: running the pending version is a success, anything else
    means the boot fell back to the previous slot (the new one failed its boot or health)."""
    outcome: Outcome = "success" if running == pending.version else "rolled_back"
    return LastUpdate(pending.version, running, now, outcome)


def rollback_words(running: str) -> tuple[str, str]:
    """The alert raised when the box came back to its previous version."""
    return (
        f"Mise à jour annulée, version {running} conservée.",
        f"Update cancelled, version {running} kept.",
    )


def restored_words(schema: str, newer_kept: str) -> tuple[str, str]:
    """The alert raised when this version put back the copy of the database it had before an
    update (the update was undone after the newer version changed the database's schema)."""
    return (
        f"Base de données remise comme avant la mise à jour (schéma {schema}) : ce qui a été fait "
        f"depuis la mise à jour annulée est gardé à part ({newer_kept}).",
        f"Database put back as before the update (schema {schema}): what was done since the "
        f"cancelled update is kept aside ({newer_kept}).",
    )


def last_update_words(last: LastUpdate) -> tuple[str, str]:
    """In the time zone of ``last.when`` (the caller gives it in the box's local time)."""
    when_fr, when_en = moment(last.when, "fr"), moment(last.when, "en")
    if last.outcome == "success":
        return (
            f"mise à jour {last.version} réussie le {when_fr}",
            f"update {last.version} succeeded on {when_en}",
        )
    fr, en = rollback_words(last.running)
    return (
        f"{fr[:-1]} (échec de {last.version} le {when_fr})",
        f"{en[:-1]} ({last.version} failed on {when_en})",
    )
