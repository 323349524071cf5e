"""One error tree for Balise: every error a person can meet has a stable code and words in French and English."""

from __future__ import annotations

import errno
from enum import StrEnum

from balise.domain.codes import DepotCode, GeneralCode, ReturnsCode, StoreCode


class BaliseError(Exception):
    """Base of every error Balise raises on purpose.

    ``code`` is stable (used in tests, the journal and quarantine records): a member of one of
    the enums of ``balise.domain.codes`` (or of an area's own enum), never a bare string, so
    that a code is spelled in one place. ``fr`` and ``en`` are the messages shown to people. The
    exception text is the French message, never a secret.
    """

    code: StrEnum = GeneralCode.BALISE

    def __init__(self, fr: str, en: str | None = None, *, code: StrEnum | None = None) -> None:
        if code is not None:
            self.code = code
        self.fr = fr
        self.en = en if en is not None else fr
        super().__init__(f"[{self.code}] {fr}")

    def message(self, lang: str = "fr") -> str:
        return self.en if lang == "en" else self.fr


class ConfigError(BaliseError):
    """A parameter, the KEK or the data dir is missing or wrong."""

    code: StrEnum = GeneralCode.CONFIG


class ValidationError(BaliseError):
    """A value given by a person or a file does not have the expected form."""

    code: StrEnum = GeneralCode.INVALID


class IntegrityError(BaliseError):
    """Stored data failed an integrity check (vault tag, journal chain, archive)."""

    code: StrEnum = GeneralCode.INTEGRITY


class StateError(BaliseError):
    """An action not allowed in the current state (lot transition, lock held...)."""

    code: StrEnum = GeneralCode.STATE


class Busy(StateError):
    """Another process is doing this job right now (a purge of the same mailbox, a send of the
    same profile's lots): not a failure, a later try runs it."""


class UnreadableFileError(ValidationError):
    """A dropped file the box cannot take as bytes: a link (never followed), a folder, a named
    pipe, a file it may not read or whose read fails. It is set aside, never retried."""

    code = DepotCode.DEPOT_UNREADABLE


class DiskFullError(BaliseError):
    """No room left where the box had to write: the action is not done and nothing half-written
    is kept (what was to be taken stays where it was, to be taken later)."""

    code = GeneralCode.DISK_FULL


class StoreError(BaliseError):
    """The box's database could not be used: the action is not done, nothing of it was kept.
    Each kind says what a person can do; the store adapter decides the kind from SQLite's result
    code (adapters/store.py), never from its message, which is English and says nothing useful."""

    code: StrEnum = StoreCode.DB_UNAVAILABLE
    words = (
        "la base de données de la boîte ne peut pas être ouverte : rien n'a été enregistré",
        "the box's database cannot be opened: nothing was recorded",
    )

    def __init__(self) -> None:
        super().__init__(*self.words)


class DatabaseLocked(StoreError):
    """Another process held the database's write lock for longer than the busy timeout."""

    code = StoreCode.DB_LOCKED
    words = (
        "base de données occupée par un autre traitement de la boîte : rien n'a été enregistré, "
        "réessayez dans un moment",
        "database busy with another task of the box: nothing was recorded, try again in a while",
    )


class DatabaseReadOnly(StoreError):
    """The database, its folder or its disk cannot be written."""

    code = StoreCode.DB_READONLY
    words = (
        "la base de données ne peut pas être écrite (disque ou dossier en lecture seule) : rien "
        "n'a été enregistré ; appelez le technicien",
        "the database cannot be written (read-only disk or folder): nothing was recorded; call "
        "the technician",
    )


class DatabaseIoError(StoreError):
    """The disk under the database failed to read or write."""

    code = StoreCode.DB_IO
    words = (
        "erreur d'entrée-sortie du disque de la base de données : rien n'a été enregistré ; "
        "appelez le technicien",
        "input/output error on the database's disk: nothing was recorded; call the technician",
    )


class DatabaseCorrupt(StoreError):
    """The database file is damaged or is not a database."""

    code = StoreCode.DB_CORRUPT
    words = (
        "la base de données de la boîte est endommagée : appelez le technicien (restauration "
        "de la dernière sauvegarde)",
        "the box's database is damaged: call the technician (restore the last backup)",
    )


class FileSystemError(BaliseError):
    """A file or folder the box needs could not be made or opened (a read-only or failing disk,
    a file where a folder should be...): what could not be done and the system's reason in
    words, never the exception's repr. A full disk is a DiskFullError instead."""

    code = GeneralCode.OS_ERROR

    def __init__(self, what_fr: str, what_en: str, exc: OSError) -> None:
        fr, en = os_error_words(exc)
        super().__init__(f"{what_fr} : {fr}", f"{what_en}: {en}")
        self.errno = exc.errno


# What an operating system error means, in French (strerror is English, whatever the locale of a
# service): the errors a person can meet on a box.
_ERRNO_FR = {
    errno.EACCES: "permission refusée",
    errno.EPERM: "opération non permise",
    errno.ENOENT: "fichier ou dossier introuvable",
    errno.ENOSPC: "disque plein",
    errno.EDQUOT: "quota de disque dépassé",
    errno.EROFS: "système de fichiers en lecture seule",
    errno.EEXIST: "existe déjà",
    errno.ENOTDIR: "n'est pas un dossier",
    errno.EISDIR: "est un dossier",
    errno.ENOTEMPTY: "dossier non vide",
    errno.ELOOP: "lien symbolique (jamais suivi)",
    errno.EIO: "erreur d'entrée-sortie du disque",
    errno.EBUSY: "ressource occupée",
    errno.ENAMETOOLONG: "nom trop long",
    errno.EMFILE: "trop de fichiers ouverts",
    errno.ECONNREFUSED: "connexion refusée",
    errno.ETIMEDOUT: "délai de connexion dépassé",
    errno.EHOSTUNREACH: "hôte injoignable",
    errno.ENETUNREACH: "réseau injoignable",
}


def os_error_words(exc: OSError) -> tuple[str, str]:
    """An operating system error in words, French and English, without the file name (the
    caller says which file): never the exception's repr nor an English-only strerror."""
    en = exc.strerror or errno.errorcode.get(exc.errno or 0, "system error")
    return _ERRNO_FR.get(exc.errno or 0, f"erreur du système ({en})"), en


class AnalysisFailed(BaliseError):
    """The classifier worker overran its time or memory limit, or died, on one message."""

    code = ReturnsCode.ANALYSIS_FAILED

    def __init__(self, fr: str, en: str, *, code: StrEnum, exhausted: bool = False) -> None:
        super().__init__(fr, en, code=code)
        self.exhausted = exhausted  # restarts used up: the purge must stop, not guess
